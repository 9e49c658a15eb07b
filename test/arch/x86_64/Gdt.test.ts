import { describe, expect, it } from 'vitest';
import { BOOT_GDT, bootGdtr, bootSegments, decodeSegment, gdtBytes, gdtEntry, GDT_CODE64, GDT_DATA, GDT_TSS } from '../../../src/arch/x86_64/Gdt';

describe('GDT', () => {
  it('has Firecracker\'s descriptors', () => {
    expect(GDT_CODE64).toBe(0x00af9b000000ffffn);
    expect(GDT_DATA).toBe(0x00cf93000000ffffn);
    expect(GDT_TSS).toBe(0x008f8b000000ffffn);
    expect(BOOT_GDT[0]).toBe(0n);
  });

  it('serializes little-endian, 8 bytes per entry', () => {
    const bytes = gdtBytes();
    expect(bytes.length).toBe(32);
    expect([...bytes.subarray(8, 16)]).toEqual([0xff, 0xff, 0, 0, 0, 0x9b, 0xaf, 0x00]);
    expect(bootGdtr()).toEqual({ base: 0x500, limit: 31 });
  });

  it('decodes a descriptor like Firecracker\'s field_parse test', () => {
    const seg = decodeSegment(gdtEntry(0xa09b, 0x10_0000, 0xfffff), 0);
    expect(seg).toMatchObject({ g: 1, db: 0, l: 1, avl: 0, present: 1, dpl: 0, s: 1, type: 0xb, base: 0x10_0000, limit: 0xffff_ffff, unusable: 0 });
  });

  it('decodes base and limit bits in every position', () => {
    const seg = decodeSegment(gdtEntry(0x40f3, 0xab_cd_ef_12, 0x5_4321), 7);
    expect(seg).toMatchObject({ base: 0xabcdef12, limit: 0x54321, g: 0, db: 1, dpl: 3, type: 3, s: 1, selector: 56 });
  });

  it('marks a non-present descriptor unusable', () => {
    expect(decodeSegment(0n, 0)).toMatchObject({ present: 0, unusable: 1, selector: 0 });
  });

  it('derives the boot segment registers from the same descriptors', () => {
    const s = bootSegments();
    expect(s.cs).toMatchObject({ selector: 0x08, l: 1, db: 0, type: 0xb, limit: 0xffff_ffff, present: 1 });
    for (const d of [s.ds, s.es, s.fs, s.gs, s.ss]) expect(d).toMatchObject({ selector: 0x10, type: 3, db: 1, l: 0, g: 1, limit: 0xffff_ffff });
    expect(s.tr).toMatchObject({ selector: 0x18, type: 0xb, s: 0, present: 1, base: 0 });
  });
});
