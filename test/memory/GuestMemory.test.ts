import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { GuestMemoryError } from '../../src/errors';
import { GuestMemory } from '../../src/memory/GuestMemory';
import { X86Layout } from '../../src/arch/x86_64';

const MiB = 1 << 20;

describe('GuestMemory', () => {
  it('reads back what was written, at typed widths and across a 1 GiB view boundary', () => {
    const mem = GuestMemory.allocate([{ guestAddress: 0, size: 1024 * MiB + 4096 }]);
    try {
      mem.write(0x1000, Uint8Array.of(1, 2, 3));
      expect([...mem.read(0x1000, 3)]).toEqual([1, 2, 3]);
      mem.writeU64(0x2000, 0x1122334455667788n);
      expect(mem.readU32(0x2000)).toBe(0x55667788);
      expect(mem.readU16(0x2006)).toBe(0x1122);
      expect(mem.readU64(0x2000)).toBe(0x1122334455667788n);
      const edge = 1024 * MiB - 2;
      mem.write(edge, Uint8Array.of(9, 8, 7, 6));
      expect([...mem.read(edge, 4)]).toEqual([9, 8, 7, 6]);
      expect(() => mem.slice(edge, 4)).toThrow(GuestMemoryError); // a zero-copy view must not span views
    } finally {
      mem.free();
    }
  });

  it('keeps the MMIO hole out of RAM for large mem and bounds-checks every access', () => {
    const layout = new X86Layout();
    const ram = layout.ramRegions(5 * 1024 * MiB);
    const mem = GuestMemory.allocate(ram);
    try {
      expect(mem.regions.map((r) => [r.guestAddress, r.size])).toEqual([
        [0, 0xc000_0000],
        [0x1_0000_0000, 5 * 1024 * MiB - 0xc000_0000],
      ]);
      expect(mem.size).toBe(5 * 1024 * MiB);
      mem.writeU32(0x1_0000_0000, 0xdeadbeef);
      expect(mem.readU32(0x1_0000_0000)).toBe(0xdeadbeef);
      expect(mem.contains(0xbfff_fff0, 16)).toBe(true);
      expect(mem.contains(0xbfff_fff0, 17)).toBe(false); // runs into the hole
      for (const [addr, len] of [[0xc000_0000, 1], [0xfee0_0000, 4], [0xbfff_ffff, 2], [2 ** 40, 8], [-1, 1]] as const) {
        expect(() => mem.read(addr, len)).toThrow(GuestMemoryError);
        expect(() => mem.write(addr, new Uint8Array(len))).toThrow(GuestMemoryError);
      }
      expect(() => mem.readU32(0xc000_0000)).toThrow(/outside guest RAM/);
    } finally {
      mem.free();
    }
  });

  it('never touches host memory outside the mapping for any address and length (property)', () => {
    const mem = GuestMemory.allocate([{ guestAddress: 0, size: 2 * MiB }, { guestAddress: 4 * MiB, size: MiB }]);
    try {
      fc.assert(
        fc.property(fc.integer({ min: -10, max: 8 * MiB }), fc.integer({ min: 0, max: 3 * MiB }), (addr, len) => {
          const inside = addr >= 0 && ((addr + len <= 2 * MiB) || (addr >= 4 * MiB && addr + len <= 5 * MiB));
          expect(mem.contains(addr, len)).toBe(inside);
          if (inside) expect(mem.read(addr, len).length).toBe(len);
          else expect(() => mem.read(addr, len)).toThrow(GuestMemoryError);
        }),
        { numRuns: 2000 },
      );
    } finally {
      mem.free();
    }
  });

  it('refuses access after free()', () => {
    const mem = GuestMemory.allocate([{ guestAddress: 0, size: MiB }]);
    mem.free();
    expect(() => mem.read(0, 1)).toThrow(GuestMemoryError);
  });

  it('aligned loadU16/U32 and storeU16/U32 agree with the byte view, in every region, and check address, alignment and free()', () => {
    const mem = GuestMemory.allocate([{ guestAddress: 0, size: 2 * MiB }, { guestAddress: 4 * MiB, size: MiB }]);
    try {
      fc.assert(
        fc.property(fc.integer({ min: 0, max: 6 * MiB }), fc.integer({ min: 0, max: 0xffff_ffff }), (raw, v) => {
          const a4 = raw - (raw % 4);
          const inside = mem.contains(a4, 4);
          if (!inside) {
            expect(() => mem.loadU32(a4)).toThrow(GuestMemoryError);
            expect(() => mem.storeU16(a4, 1)).toThrow(GuestMemoryError);
            return;
          }
          mem.storeU32(a4, v);
          expect(mem.readU32(a4)).toBe(v);
          expect(mem.loadU32(a4)).toBe(v);
          expect(mem.loadU16(a4)).toBe(v & 0xffff);
          expect(mem.loadU16(a4 + 2)).toBe(v >>> 16);
          mem.storeU16(a4 + 2, 0xbeef);
          expect([...mem.read(a4 + 2, 2)]).toEqual([0xef, 0xbe]);
        }),
        { numRuns: 3000 },
      );
      expect(() => mem.loadU16(1)).toThrow(RangeError);
      expect(() => mem.loadU32(2)).toThrow(RangeError);
      expect(() => mem.storeU32(6, 0)).toThrow(RangeError);
      expect(() => mem.loadU32(2 * MiB)).toThrow(GuestMemoryError); // the gap between the regions
      expect(mem.contains(2 * MiB - 4, 8)).toBe(false);
    } finally {
      mem.free();
    }
    expect(() => mem.loadU16(0)).toThrow(GuestMemoryError);
    expect(mem.contains(0, 4)).toBe(false);
  });
});
