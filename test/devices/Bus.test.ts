import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Bus } from '../../src/devices/Bus';
import type { BusDevice } from '../../src/devices/BusDevice';
import { BusOverlapError } from '../../src/devices/errors';
import { ConfigError } from '../../src/errors';

function dev(name: string): BusDevice & { reads: [number, number][]; writes: [number, number[]][] } {
  const reads: [number, number][] = [];
  const writes: [number, number[]][] = [];
  return {
    name,
    reads,
    writes,
    read(offset, data) {
      reads.push([offset, data.length]);
      data.fill(0xab);
    },
    write(offset, data) {
      writes.push([offset, [...data]]);
    },
  };
}

describe('Bus', () => {
  it('routes accesses by address with in-range offsets', () => {
    const bus = new Bus('pio');
    const a = dev('a');
    const b = dev('b');
    bus.insert(a, 0x3f8, 8);
    bus.insert(b, 0x70, 2);
    const d = new Uint8Array(1);
    expect(bus.read(0x3fd, d)).toBe(true);
    expect(d[0]).toBe(0xab);
    expect(a.reads).toEqual([[5, 1]]);
    expect(bus.write(0x71, Uint8Array.of(7))).toBe(true);
    expect(b.writes).toEqual([[1, [7]]]);
    expect(bus.ranges.map((r) => r.device.name)).toEqual(['b', 'a']);
  });

  it('lookup edges: first and last address in, one before and one past out', () => {
    const bus = new Bus();
    const a = dev('a');
    bus.insert(a, 0x100, 0x10);
    expect(bus.lookup(0xff)).toBeUndefined();
    expect(bus.lookup(0x100)?.device).toBe(a);
    expect(bus.lookup(0x10f)?.device).toBe(a);
    expect(bus.lookup(0x110)).toBeUndefined();
    expect(bus.lookup(NaN)).toBeUndefined();
    expect(bus.lookup(-1)).toBeUndefined();
  });

  it('returns false and leaves data alone when nothing is mapped', () => {
    const bus = new Bus();
    const d = Uint8Array.of(1, 2);
    expect(bus.read(0x80, d)).toBe(false);
    expect([...d]).toEqual([1, 2]);
    expect(bus.write(0x80, d)).toBe(false);
  });

  it('maps MMIO addresses above 4 GiB exactly', () => {
    const bus = new Bus('mmio');
    const a = dev('a');
    const base = 2 ** 52 - 0x1000;
    bus.insert(a, base, 0x1000);
    expect(bus.lookup(base + 0xfff)?.device).toBe(a);
    expect(bus.lookup(base - 1)).toBeUndefined();
    bus.read(base + 8, new Uint8Array(8));
    expect(a.reads).toEqual([[8, 8]]);
  });

  it('rejects overlapping ranges, naming both devices', () => {
    const bus = new Bus('pio');
    bus.insert(dev('serial'), 0x3f8, 8);
    bus.insert(dev('right'), 0x400, 4);
    const tryInsert = (base: number, len: number) => () => bus.insert(dev('new'), base, len);
    expect(tryInsert(0x3f0, 9)).toThrow(BusOverlapError);
    expect(tryInsert(0x3ff, 1)).toThrow(/new.*serial/);
    expect(tryInsert(0x3f9, 1)).toThrow(BusOverlapError);
    expect(tryInsert(0x3f0, 0x100)).toThrow(BusOverlapError);
    expect(tryInsert(0x403, 1)).toThrow(/right/);
    // Touching ranges are fine.
    bus.insert(dev('left'), 0x3f0, 8);
    bus.insert(dev('mid'), 0x404, 1);
    expect(bus.ranges.map((r) => r.device.name)).toEqual(['left', 'serial', 'right', 'mid']);
    try {
      tryInsert(0x3fc, 1)();
    } catch (e) {
      expect(e).toBeInstanceOf(BusOverlapError);
      const err = e as BusOverlapError;
      expect([err.device, err.existing, err.existingBase, err.existingLength]).toEqual(['new', 'serial', 0x3f8, 8]);
      expect(err.message).toBe('cannot map new at [0x3fc, 0x3fd): it overlaps serial at [0x3f8, 0x400); give one of them another address');
    }
  });

  it('rejects bad ranges with ConfigError', () => {
    const bus = new Bus();
    expect(() => bus.insert(dev('x'), -1, 1)).toThrow(ConfigError);
    expect(() => bus.insert(dev('x'), 0, 0)).toThrow(ConfigError);
    expect(() => bus.insert(dev('x'), 1.5, 1)).toThrow(ConfigError);
    expect(() => bus.insert(dev('x'), 2 ** 53 - 1, 2)).toThrow(ConfigError);
  });

  it('removes a range by base', () => {
    const bus = new Bus();
    const a = dev('a');
    bus.insert(a, 0x10, 4);
    expect(bus.remove(0x11)).toBeUndefined();
    expect(bus.remove(0x10)).toBe(a);
    expect(bus.lookup(0x10)).toBeUndefined();
    bus.insert(dev('b'), 0x10, 4);
  });

  it('property: lookup agrees with a linear scan and never finds unmapped addresses', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ base: fc.integer({ min: 0, max: 0x1000 }), len: fc.integer({ min: 1, max: 0x80 }) }), { maxLength: 30 }),
        fc.array(fc.integer({ min: -2, max: 0x1100 }), { maxLength: 60 }),
        (ranges, probes) => {
          const bus = new Bus();
          const mapped: { base: number; len: number; d: BusDevice }[] = [];
          ranges.forEach((r, i) => {
            const d = dev(`d${i}`);
            const overlaps = mapped.some((m) => m.base < r.base + r.len && r.base < m.base + m.len);
            if (overlaps) {
              expect(() => bus.insert(d, r.base, r.len)).toThrow(BusOverlapError);
            } else {
              bus.insert(d, r.base, r.len);
              mapped.push({ base: r.base, len: r.len, d });
            }
          });
          for (const a of probes) {
            const want = mapped.find((m) => a >= m.base && a < m.base + m.len);
            const got = bus.lookup(a);
            expect(got?.device).toBe(want?.d);
            if (got) expect(a - got.base).toBeLessThan(got.length);
            expect(bus.read(a, new Uint8Array(1))).toBe(want !== undefined);
          }
        },
      ),
    );
  });
});
