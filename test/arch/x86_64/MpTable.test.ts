import { describe, expect, it } from 'vitest';
import { byteSum } from '../../../src/arch/x86_64/acpi/AcpiTable';
import { ConfigError } from '../../../src/errors';
import { buildMpTable, mpConfigTableSize } from '../../../src/arch/x86_64/MpTable';

const ascii = (b: Uint8Array, at: number, n: number): string => String.fromCharCode(...b.subarray(at, at + n));

describe('buildMpTable', () => {
  it('fits in the EBDA up to 40 vCPUs and moves to 0xF0000 beyond', () => {
    expect(0x9fc10 + mpConfigTableSize(40)).toBeLessThanOrEqual(0xa0000);
    expect(0x9fc10 + mpConfigTableSize(41)).toBeGreaterThan(0xa0000);
    expect(buildMpTable({ cpus: 40, ioapicId: 40 }).configTable.addr).toBe(0x9fc10);
    expect(buildMpTable({ cpus: 41, ioapicId: 41 }).configTable.addr).toBe(0xf0000);
    const big = buildMpTable({ cpus: 254, ioapicId: 254 }).configTable;
    expect(big.addr + big.data.length).toBeLessThanOrEqual(0x100000);
  });

  it('rejects 0 or more than 254 vCPUs, naming cpus', () => {
    for (const cpus of [0, 255, 1.5]) {
      expect(() => buildMpTable({ cpus, ioapicId: 0 })).toThrow(ConfigError);
      expect(() => buildMpTable({ cpus, ioapicId: 0 })).toThrow(/^cpus must be an integer from 1 to 254/);
    }
  });

  describe.each([1, 4, 40, 41, 254])('with %i vCPUs', (cpus) => {
    const mp = buildMpTable({ cpus, ioapicId: cpus });
    const mpf = mp.floatingPointer.data;
    const t = mp.configTable.data;
    const v = new DataView(t.buffer);

    it('has a valid floating pointer at 0x9FC00', () => {
      expect(mp.floatingPointer.addr).toBe(0x9fc00);
      expect(mpf.length).toBe(16);
      expect(ascii(mpf, 0, 4)).toBe('_MP_');
      expect(new DataView(mpf.buffer).getUint32(4, true)).toBe(mp.configTable.addr);
      expect(mpf[8]).toBe(1);
      expect(mpf[9]).toBe(4);
      expect(mpf[11]).toBe(0); // MP configuration table present
      expect(byteSum(mpf)).toBe(0);
    });

    it('has a valid configuration table header', () => {
      expect(ascii(t, 0, 4)).toBe('PCMP');
      expect(v.getUint16(4, true)).toBe(t.length);
      expect(t[6]).toBe(4);
      expect(byteSum(t)).toBe(0);
      expect(v.getUint32(36, true)).toBe(0xfee00000);
      expect(v.getUint16(34, true)).toBe(cpus + 1 + 1 + 16 + 2);
    });

    it('lists processors, the ISA bus, the IOAPIC, ISA IRQs 0..15 and LINT0/LINT1', () => {
      const entries: number[] = [];
      let at = 44;
      const cpusSeen: [number, number][] = [];
      const irqs: [number, number, number, number][] = [];
      const lints: [number, number, number][] = [];
      while (at < t.length) {
        const type = t[at]!;
        entries.push(type);
        if (type === 0) {
          cpusSeen.push([t[at + 1]!, t[at + 3]!]);
          at += 20;
          continue;
        }
        if (type === 1) expect(ascii(t, at + 2, 6)).toBe('ISA   ');
        if (type === 2) {
          expect(t[at + 1]).toBe(cpus);
          expect(t[at + 3]! & 1).toBe(1);
          expect(v.getUint32(at + 4, true)).toBe(0xfec00000);
        }
        if (type === 3) irqs.push([t[at + 5]!, t[at + 6]!, t[at + 7]!, v.getUint16(at + 2, true)]);
        if (type === 4) lints.push([t[at + 1]!, t[at + 6]!, t[at + 7]!]);
        at += 8;
      }
      expect(at).toBe(t.length);
      expect(cpusSeen).toEqual(Array.from({ length: cpus }, (_, i) => [i, i === 0 ? 3 : 1]));
      expect(entries.filter((x) => x === 1)).toHaveLength(1);
      expect(irqs).toEqual(Array.from({ length: 16 }, (_, i) => [i, cpus, i, i === 9 ? 0x0d : 0]));
      expect(lints).toEqual([
        [3, 0, 0], // ExtINT -> BSP LINT0
        [1, 0xff, 1], // NMI -> all LINT1
      ]);
      // entries are ordered by type, as MP spec §4.3 requires
      expect([...entries].sort((a, b) => a - b)).toEqual(entries);
    });
  });
});
