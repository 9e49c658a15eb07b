/**
 * Random trees written by FdtWriter, checked by a tool we did not write: Debian's dtc must accept
 * each blob, re-emit it as a DTB our reader decodes to the same tree, and print DTS text whose
 * values are the bytes we wrote.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseFdt } from '../../../src/arch/aarch64/FdtReader';
import { FdtWriter } from '../../../src/arch/aarch64/FdtWriter';
import { type DtsNode, decompile, dtsValueBytes, haveDtc, parseDts, runOnBlob } from './dtc';
import { type TreeModel, normalize, reservationsArbitrary, treeArbitrary, writeModel } from './fdtArbitraries';

/** dtc runs per property: bounded so the file stays within a few seconds. */
const DTC_RUNS = 150;

function dtsToModel(node: DtsNode): unknown {
  return {
    name: node.name,
    properties: [...node.properties].map(([name, pieces]) => [name, Array.from(dtsValueBytes(pieces))]),
    children: node.children.map(dtsToModel),
  };
}

describe.skipIf(!haveDtc)('FdtWriter output through dtc (device-tree-compiler)', () => {
  it(`dtc -I dtb -O dtb and -O dts keep every random tree intact (${DTC_RUNS} runs)`, () => {
    fc.assert(
      fc.property(treeArbitrary({ dtcSafe: true }), reservationsArbitrary, fc.nat({ max: 0xffff_ffff }), (tree: TreeModel, reservations, bootCpuidPhys) => {
        const w = new FdtWriter({ bootCpuidPhys });
        for (const r of reservations) w.addReservation(r.address, r.size);
        writeModel(w, tree);
        const blob = w.finish();

        const again = runOnBlob('dtc', ['-I', 'dtb', '-O', 'dtb', '-o', '{out}', '{}'], blob);
        expect(again.stderr).not.toMatch(/ERROR/);
        expect(again.status).toBe(0);
        const back = parseFdt(again.output!);
        expect(normalize(back.root)).toEqual(normalize(tree));
        expect(back.reservations).toEqual(reservations);
        expect(back.bootCpuidPhys).toBe(bootCpuidPhys);

        const dts = decompile(blob);
        expect(dts.status).toBe(0);
        const parsed = parseDts(dts.stdout);
        expect(dtsToModel(parsed.root)).toEqual(normalize(tree));
        expect(parsed.memreserve).toEqual(reservations.map((r) => [r.address, r.size]));
      }),
      { numRuns: DTC_RUNS },
    );
  });

  it('fdtget reads properties of a written tree', () => {
    const blob = new FdtWriter()
      .beginNode('')
      .beginNode('chosen')
      .propertyString('bootargs', 'console=ttyS0 root=/dev/vda rw')
      .propertyCells('cells', [1, 0xdeadbeef])
      .endNode()
      .endNode()
      .finish();
    expect(runOnBlob('fdtget', ['-t', 's', '{}', '/chosen', 'bootargs'], blob).stdout.trim()).toBe('console=ttyS0 root=/dev/vda rw');
    expect(runOnBlob('fdtget', ['-t', 'x', '{}', '/chosen', 'cells'], blob).stdout.trim()).toBe('1 deadbeef');
  });
});
