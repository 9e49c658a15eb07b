import { describe, expect, it } from 'vitest';
import { buildE820Map, E820_TABLE_OFFSET, E820Type, writeE820 } from '../../../src/arch/x86_64/E820Map';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

describe('buildE820Map', () => {
  it('describes 256 MiB', () => {
    expect(buildE820Map(256 * MiB)).toEqual([
      { addr: 0, size: 0x9fc00, type: E820Type.RAM },
      { addr: 0x9fc00, size: 0x400, type: E820Type.RESERVED },
      { addr: 0xe0000, size: 0x20000, type: E820Type.RESERVED },
      { addr: 0x100000, size: 255 * MiB, type: E820Type.RAM },
    ]);
  });

  it('splits 5 GiB around the MMIO hole', () => {
    expect(buildE820Map(5 * GiB)).toEqual([
      { addr: 0, size: 0x9fc00, type: E820Type.RAM },
      { addr: 0x9fc00, size: 0x400, type: E820Type.RESERVED },
      { addr: 0xe0000, size: 0x20000, type: E820Type.RESERVED },
      { addr: 0x100000, size: 3 * GiB - MiB, type: E820Type.RAM },
      { addr: 4 * GiB, size: 2 * GiB, type: E820Type.RAM },
    ]);
  });

  it('encodes entries at 0x2D0, 20 bytes each, and the count at 0x1E8', () => {
    const page = new Uint8Array(4096);
    const view = new DataView(page.buffer);
    writeE820(view, buildE820Map(5 * GiB));
    expect(page[0x1e8]).toBe(5);
    const at = E820_TABLE_OFFSET + 4 * 20;
    expect(view.getBigUint64(at, true)).toBe(4n * 2n ** 30n);
    expect(view.getBigUint64(at + 8, true)).toBe(2n * 2n ** 30n);
    expect(view.getUint32(at + 16, true)).toBe(1);
    expect(view.getUint32(E820_TABLE_OFFSET + 20 + 16, true)).toBe(2);
  });

  it('refuses more than 128 entries', () => {
    const many = Array.from({ length: 129 }, (_, i) => ({ addr: i * 4096, size: 4096, type: 1 }));
    expect(() => writeE820(new DataView(new ArrayBuffer(4096)), many)).toThrow(RangeError);
  });
});
