import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { GuestMemoryError } from '../../src/errors';
import { GuestMemory, HOST_PAGE_SIZE } from '../../src/memory/GuestMemory';
import { residentBytes } from './residentPages';

const MiB = 1 << 20;

describe('GuestMemory.discard', () => {
  it('returns touched pages to the host: they leave the resident set and read back as zeros', () => {
    const mem = GuestMemory.allocate([{ guestAddress: 0, size: 16 * MiB }]);
    try {
      expect(residentBytes(mem)).toBe(0); // MAP_NORESERVE anonymous: nothing resident yet
      mem.write(0, new Uint8Array(16 * MiB).fill(0x5a));
      expect(residentBytes(mem)).toBe(16 * MiB);
      mem.discard(4 * MiB, 8 * MiB);
      expect(residentBytes(mem)).toBe(8 * MiB);
      expect(residentBytes(mem, 4 * MiB, 8 * MiB)).toBe(0);
      mem.writeU8(5 * MiB, 1); // touching again faults in one fresh page: 4 KiB, or 2 MiB where THP backs guest RAM
      expect([HOST_PAGE_SIZE, 2 * MiB]).toContain(residentBytes(mem, 4 * MiB, 8 * MiB));
      // (reads are checked last: mincore counts pages mapped to the shared zero page as resident)
      const back = mem.read(4 * MiB, 8 * MiB);
      expect(back[MiB]).toBe(1);
      back[MiB] = 0;
      expect(back.every((b) => b === 0)).toBe(true);
      expect(mem.readU8(4 * MiB - 1)).toBe(0x5a);
      expect(mem.readU8(12 * MiB)).toBe(0x5a);
    } finally {
      mem.free();
    }
  });

  it('spans RAM regions and refuses ranges outside RAM or not page-aligned, leaving RAM untouched', () => {
    const mem = GuestMemory.allocate([{ guestAddress: 0, size: MiB }, { guestAddress: MiB, size: MiB }, { guestAddress: 4 * MiB, size: MiB }]);
    try {
      for (const a of [0, MiB, 4 * MiB]) mem.write(a, new Uint8Array(MiB).fill(7));
      mem.discard(MiB - HOST_PAGE_SIZE, 2 * HOST_PAGE_SIZE); // across two adjacent regions
      expect(mem.readU8(MiB - HOST_PAGE_SIZE)).toBe(0);
      expect(mem.readU8(MiB)).toBe(0);
      expect(mem.readU8(MiB + HOST_PAGE_SIZE)).toBe(7);
      expect(mem.readU8(MiB - HOST_PAGE_SIZE - 1)).toBe(7);
      expect(() => mem.discard(2 * MiB - HOST_PAGE_SIZE, 2 * HOST_PAGE_SIZE)).toThrow(GuestMemoryError); // into the gap
      expect(() => mem.discard(3 * MiB, HOST_PAGE_SIZE)).toThrow(GuestMemoryError);
      expect(() => mem.discard(5 * MiB, HOST_PAGE_SIZE)).toThrow(GuestMemoryError);
      expect(() => mem.discard(100, HOST_PAGE_SIZE)).toThrow(RangeError);
      expect(() => mem.discard(0, 100)).toThrow(RangeError);
      expect(mem.readU8(4 * MiB)).toBe(7);
      expect(mem.readU8(2 * MiB - 1)).toBe(7);
    } finally {
      mem.free();
    }
    expect(() => mem.discard(0, HOST_PAGE_SIZE)).toThrow(GuestMemoryError); // released
  });

  it('discards exactly the pages asked for (property)', () => {
    const pages = 64;
    const mem = GuestMemory.allocate([{ guestAddress: 0, size: pages * HOST_PAGE_SIZE }]);
    try {
      fc.assert(
        fc.property(fc.nat(pages - 1), fc.nat(pages), (first, count) => {
          const n = Math.min(count, pages - first);
          mem.write(0, new Uint8Array(pages * HOST_PAGE_SIZE).fill(0xff));
          mem.discard(first * HOST_PAGE_SIZE, n * HOST_PAGE_SIZE);
          for (let p = 0; p < pages; p++) {
            const gone = p >= first && p < first + n;
            expect(mem.readU8(p * HOST_PAGE_SIZE + 123)).toBe(gone ? 0 : 0xff);
          }
        }),
        { numRuns: 50 },
      );
    } finally {
      mem.free();
    }
  });
});
