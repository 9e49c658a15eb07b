import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  FDT_BEGIN_NODE,
  FDT_END,
  FDT_END_NODE,
  FDT_MAGIC,
  FDT_PROP,
  FdtError,
  FdtHeaderOffset,
  nodeNameProblem,
  propertyNameProblem,
} from '../../../src/arch/aarch64/Fdt';
import { cellsOf, findNode, findProperty, parseFdt, stringsOf } from '../../../src/arch/aarch64/FdtReader';
import { FdtWriter } from '../../../src/arch/aarch64/FdtWriter';
import { NODE_CHARS, PROPERTY_CHARS, normalize, reservationsArbitrary, treeArbitrary, writeModel } from './fdtArbitraries';

const header = (blob: Uint8Array, field: keyof typeof FdtHeaderOffset): number => new DataView(blob.buffer, blob.byteOffset).getUint32(FdtHeaderOffset[field]);

function smallTree(): Uint8Array {
  return new FdtWriter({ bootCpuidPhys: 3 })
    .addReservation(0x1000, 0x2000)
    .beginNode('')
    .propertyU32('#address-cells', 2)
    .propertyString('compatible', 'linux,dummy-virt')
    .beginNode('cpus')
    .propertyU32('#address-cells', 1)
    .beginNode('cpu@0')
    .propertyU32('reg', 0)
    .propertyStringList('compatible', ['arm,armv8', 'x'])
    .endNode()
    .endNode()
    .beginNode('memory@80000000')
    .propertyU64List('reg', [0x8000_0000, 2n ** 33n])
    .propertyEmpty('dma-coherent')
    .endNode()
    .endNode()
    .finish();
}

describe('FdtWriter: DTB format (devicetree spec v0.4 chapter 5)', () => {
  it('writes a version 17 header whose offsets and sizes describe the blob', () => {
    const blob = smallTree();
    expect(header(blob, 'magic')).toBe(FDT_MAGIC);
    expect(header(blob, 'totalsize')).toBe(blob.length);
    expect(header(blob, 'version')).toBe(17);
    expect(header(blob, 'last_comp_version')).toBe(16);
    expect(header(blob, 'boot_cpuid_phys')).toBe(3);
    expect(header(blob, 'off_mem_rsvmap')).toBe(40);
    // one reservation + the zero terminator, 16 bytes each
    expect(header(blob, 'off_dt_struct')).toBe(40 + 2 * 16);
    expect(header(blob, 'off_dt_struct') % 4).toBe(0);
    expect(header(blob, 'off_dt_strings')).toBe(header(blob, 'off_dt_struct') + header(blob, 'size_dt_struct'));
    expect(header(blob, 'off_dt_strings') + header(blob, 'size_dt_strings')).toBe(blob.length);
    const view = new DataView(blob.buffer);
    expect(view.getBigUint64(40)).toBe(0x1000n);
    expect(view.getBigUint64(48)).toBe(0x2000n);
    expect(view.getBigUint64(56)).toBe(0n);
    expect(view.getBigUint64(64)).toBe(0n);
  });

  it('emits the structure tokens in order, 4-byte aligned, ending with FDT_END', () => {
    const blob = new FdtWriter().beginNode('').beginNode('ab').propertyU32('p', 7).endNode().endNode().finish();
    const view = new DataView(blob.buffer);
    const at = header(blob, 'off_dt_struct');
    const words = Array.from({ length: header(blob, 'size_dt_struct') / 4 }, (_, i) => view.getUint32(at + i * 4));
    // BEGIN "" (name padded to 4 bytes), BEGIN "ab\0" + pad, PROP len=4 nameoff=0 value, END_NODE, END_NODE, END
    expect(words).toEqual([FDT_BEGIN_NODE, 0, FDT_BEGIN_NODE, 0x61620000, FDT_PROP, 4, 0, 7, FDT_END_NODE, FDT_END_NODE, FDT_END]);
  });

  it('stores each property name once in the strings block', () => {
    const w = new FdtWriter().beginNode('').propertyU32('reg', 1);
    for (let i = 0; i < 5; i++) w.beginNode(`n@${i}`).propertyU32('reg', i).propertyString('compatible', 'c').endNode();
    const blob = w.endNode().finish();
    const strings = new TextDecoder().decode(blob.subarray(header(blob, 'off_dt_strings'), blob.length));
    expect(strings).toBe('reg\0compatible\0');
  });

  it('reads back through our own reader', () => {
    const tree = parseFdt(smallTree());
    expect(tree.reservations).toEqual([{ address: 0x1000n, size: 0x2000n }]);
    expect(tree.bootCpuidPhys).toBe(3);
    const cpu = findNode(tree.root, '/cpus/cpu@0')!;
    expect(stringsOf(findProperty(cpu, 'compatible')!)).toEqual(['arm,armv8', 'x']);
    expect(cellsOf(findProperty(findNode(tree.root, '/memory@80000000')!, 'reg')!)).toEqual([0, 0x8000_0000, 2, 0]);
    expect(findProperty(findNode(tree.root, '/memory@80000000')!, 'dma-coherent')).toEqual(new Uint8Array(0));
  });
});

describe('FdtWriter: rejects what the format or the spec forbids, with clear errors', () => {
  const root = (): FdtWriter => new FdtWriter().beginNode('');
  it.each([
    ['a child before the root', () => new FdtWriter().beginNode('cpus'), /first node must be the root/],
    ['a second root', () => root().endNode().beginNode(''), /root node is already closed/],
    ['an unclosed node', () => root().beginNode('a').endNode().finish(), /node \/ is still open/],
    ['an unclosed child', () => root().beginNode('a').finish(), /node \/a is still open/],
    ['an empty tree', () => new FdtWriter().finish(), /tree is empty/],
    ['endNode without beginNode', () => new FdtWriter().endNode(), /without a matching beginNode/],
    ['a property outside any node', () => new FdtWriter().propertyU32('reg', 1), /outside any node/],
    ['a property after a child', () => root().beginNode('a').endNode().propertyU32('reg', 1), /comes after a child node.*§5\.4\.2/],
    ['a duplicate property', () => root().propertyU32('reg', 1).propertyU32('reg', 2), /already has a property "reg"/],
    ['a duplicate child', () => root().beginNode('a@1').endNode().beginNode('a@1'), /already has a child named "a@1"/],
    ['a node name with a bad character', () => root().beginNode('cpu$0'), /Table 2\.1/],
    ['a node name starting with a digit', () => root().beginNode('0cpu'), /must start with a letter/],
    ['a 32-character node name', () => root().beginNode('a'.repeat(32)), /1 to 31/],
    ['an empty unit address', () => root().beginNode('cpu@'), /unit-address after "@" is empty/],
    ['a unit address with a bad character', () => root().beginNode('cpu@1@2'), /unit-address "1@2"/],
    ['an empty node-name', () => root().beginNode('@10'), /node-name before "@" is empty/],
    ['an empty child name', () => root().beginNode(''), /node-name before "@" is empty/],
    ['a property name with a bad character', () => root().propertyU32('re g', 1), /Table 2\.2/],
    ['a 32-character property name', () => root().propertyU32('p'.repeat(32), 1), /1 to 31/],
    ['an empty property name', () => root().propertyU32('', 1), /cannot be empty/],
    ['a NUL inside a string', () => root().propertyString('s', 'a\0b'), /contains a NUL/],
    ['an empty string list', () => root().propertyStringList('s', []), /at least one string/],
    ['a cell above 32 bits', () => root().propertyCells('c', [2 ** 32]), /0 to 0xffffffff/],
    ['a negative cell', () => root().propertyU32('c', -1), /0 to 0xffffffff/],
    ['a fractional cell', () => root().propertyU32('c', 1.5), /0 to 0xffffffff/],
    ['a u64 above 64 bits', () => root().propertyU64('c', 1n << 64n), /fit in 64 bits/],
    ['an unsafe u64 number', () => root().propertyU64('c', 2 ** 60), /safe integer/],
    ['a zero-size reservation', () => new FdtWriter().addReservation(0x1000, 0), /size 0/],
    ['a reservation that overflows', () => new FdtWriter().addReservation((1n << 64n) - 1n, 2), /overflows 64 bits/],
    ['use after finish', () => {
      const w = root();
      w.endNode().finish();
      w.beginNode('');
    }, /is finished/],
  ])('%s', (_what, act, message) => {
    expect(act).toThrow(FdtError);
    expect(act).toThrow(message);
  });

  it('names the path of the node in errors', () => {
    expect(() => new FdtWriter().beginNode('').beginNode('cpus').beginNode('cpu@0').propertyU32('x y', 1)).toThrow(/in \/cpus\/cpu@0/);
  });
});

describe('FdtWriter: name rules match the devicetree spec v0.4 §2.2.1 / §2.2.4 for any string', () => {
  const nodeRule = /^[a-zA-Z][0-9a-zA-Z,._+-]{0,30}(@[0-9a-zA-Z,._+-]+)?$/;
  const propRule = /^[0-9a-zA-Z,._+?#-]{1,31}$/;
  const anyName = fc.oneof(
    fc.string({ maxLength: 40 }),
    fc.string({ unit: fc.constantFrom(...`${PROPERTY_CHARS}@ $/\0é`.split('')), maxLength: 40 }),
    fc.string({ unit: fc.constantFrom(...`${NODE_CHARS}@`.split('')), maxLength: 40 }),
  );
  it('node names', () => {
    fc.assert(fc.property(anyName, (name) => (nodeNameProblem(name) === undefined) === nodeRule.test(name)), { numRuns: 3000 });
  });
  it('property names', () => {
    fc.assert(fc.property(anyName, (name) => (propertyNameProblem(name) === undefined) === propRule.test(name)), { numRuns: 3000 });
  });
});

describe('FdtWriter + FdtReader: any valid tree round-trips in-process', () => {
  it('random trees, reservations and boot CPU ids (1000 runs)', () => {
    fc.assert(
      fc.property(treeArbitrary(), reservationsArbitrary, fc.nat({ max: 0xffff_ffff }), (tree, reservations, bootCpuidPhys) => {
        const w = new FdtWriter({ bootCpuidPhys });
        for (const r of reservations) w.addReservation(r.address, r.size);
        writeModel(w, tree);
        const blob = w.finish();
        const back = parseFdt(blob);
        expect(normalize(back.root)).toEqual(normalize(tree));
        expect(back.reservations).toEqual(reservations);
        expect(back.bootCpuidPhys).toBe(bootCpuidPhys);
        expect(header(blob, 'totalsize')).toBe(blob.length);
        // strings block de-duplicated: one entry per distinct property name
        const names = new Set<string>();
        const collect = (n: typeof tree): void => {
          n.properties.forEach((p) => names.add(p.name));
          n.children.forEach(collect);
        };
        collect(tree);
        expect(header(blob, 'size_dt_strings')).toBe([...names].reduce((sum, n) => sum + n.length + 1, 0));
      }),
      { numRuns: 1000 },
    );
  });

  it('the reader survives corrupted blobs: every failure is an FdtError (2000 runs)', () => {
    const blob = smallTree();
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat({ max: blob.length - 1 }), fc.nat({ max: 255 })), { minLength: 1, maxLength: 4 }), fc.nat({ max: blob.length }), (edits, cut) => {
        const bad = blob.slice(0, Math.max(cut, 41));
        for (const [at, v] of edits) if (at < bad.length) bad[at] = v;
        try {
          parseFdt(bad);
        } catch (e) {
          expect(e).toBeInstanceOf(FdtError);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('the reader skips FDT_NOP tokens', () => {
    // Replace the root's second property token stream with NOPs by hand-building: BEGIN "", NOP, END_NODE, END.
    const w = new FdtWriter().beginNode('').propertyU32('a', 1).endNode();
    const blob = w.finish();
    const view = new DataView(blob.buffer);
    const at = header(blob, 'off_dt_struct');
    // the PROP token + len + nameoff + value are 4 words: overwrite them with FDT_NOP (spec v0.4 §5.4.1)
    for (let i = 0; i < 4; i++) view.setUint32(at + 4 + 4 + i * 4, 0x4);
    expect(normalize(parseFdt(blob).root)).toEqual({ name: '', properties: [], children: [] });
  });
});
