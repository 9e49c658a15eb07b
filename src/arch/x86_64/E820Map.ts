/**
 * The e820 memory map kvmkit reports to the guest, and its encoding into boot_params.
 * @module
 */

import {
  BIOS_AREA_END,
  BIOS_AREA_START,
  EBDA_END,
  EBDA_START,
  HIGH_RAM_START,
  KERNEL_START,
  MMIO_HOLE_START,
} from './Layout';

/** e820 entry types (arch/x86/include/asm/e820/types.h `enum e820_type`). */
export const E820Type = {
  RAM: 1,
  RESERVED: 2,
  ACPI: 3,
  NVS: 4,
  UNUSABLE: 5,
} as const;

/** One e820 entry (struct boot_e820_entry: addr u64, size u64, type u32). */
export interface E820Entry {
  addr: number;
  size: number;
  type: number;
}

/** Offset of `e820_entries` (u8) in struct boot_params (bootparam.h). */
export const E820_ENTRIES_OFFSET = 0x1e8;
/** Offset of `e820_table[]` in struct boot_params (bootparam.h). */
export const E820_TABLE_OFFSET = 0x2d0;
/** Size of struct boot_e820_entry (packed: u64 + u64 + u32). */
export const E820_ENTRY_SIZE = 20;
/** Capacity of boot_params.e820_table (bootparam.h `E820_MAX_ENTRIES_ZEROPAGE`). */
export const E820_MAX_ENTRIES_ZEROPAGE = 128;

/**
 * The e820 map for `memBytes` of guest RAM laid out by `X86Layout.ramRegions`:
 * conventional RAM below the EBDA, the EBDA (MP table) and the ACPI/BIOS area reserved, RAM from
 * 1 MiB to the MMIO hole and the rest above 4 GiB. The legacy VGA/ROM hole [0xA0000, 0xE0000)
 * is left out, as on PCs.
 */
export function buildE820Map(memBytes: number): E820Entry[] {
  const lowEnd = Math.min(memBytes, MMIO_HOLE_START);
  const entries: E820Entry[] = [
    { addr: 0, size: EBDA_START, type: E820Type.RAM },
    { addr: EBDA_START, size: EBDA_END - EBDA_START, type: E820Type.RESERVED },
    { addr: BIOS_AREA_START, size: BIOS_AREA_END - BIOS_AREA_START, type: E820Type.RESERVED },
  ];
  if (lowEnd > KERNEL_START) entries.push({ addr: KERNEL_START, size: lowEnd - KERNEL_START, type: E820Type.RAM });
  if (memBytes > MMIO_HOLE_START) entries.push({ addr: HIGH_RAM_START, size: memBytes - MMIO_HOLE_START, type: E820Type.RAM });
  return entries;
}

/**
 * Write `entries` into a boot_params buffer: the count at 0x1E8 and the table at 0x2D0.
 * @throws RangeError if there are more than {@link E820_MAX_ENTRIES_ZEROPAGE} entries.
 */
export function writeE820(view: DataView, entries: readonly E820Entry[]): void {
  if (entries.length > E820_MAX_ENTRIES_ZEROPAGE) {
    throw new RangeError(`e820 map has ${entries.length} entries, boot_params holds at most ${E820_MAX_ENTRIES_ZEROPAGE}`);
  }
  view.setUint8(E820_ENTRIES_OFFSET, entries.length);
  entries.forEach((entry, i) => {
    const at = E820_TABLE_OFFSET + i * E820_ENTRY_SIZE;
    view.setBigUint64(at, BigInt(entry.addr), true);
    view.setBigUint64(at + 8, BigInt(entry.size), true);
    view.setUint32(at + 16, entry.type, true);
  });
}
