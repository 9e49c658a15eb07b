/**
 * The Linux "zero page" (struct boot_params) a 64-bit boot loader hands the kernel in RSI.
 *
 * Offsets from arch/x86/include/uapi/asm/bootparam.h; field semantics from
 * Documentation/arch/x86/boot.rst ("DETAILS OF HEADER FIELDS", "64-bit BOOT PROTOCOL").
 * @module
 */

import { LOADFLAG_CAN_USE_HEAP, SetupHeaderOffset } from './BzImage';
import { type E820Entry, writeE820 } from './E820Map';
import { ZERO_PAGE_SIZE } from './Layout';

/** struct boot_params offsets outside the setup header (bootparam.h); the e820 offsets are in E820Map.ts. */
export const BootParamsOffset = {
  /** u64: physical address of the ACPI RSDP (protocol 2.14+). */
  ACPI_RSDP_ADDR: 0x070,
  /** u32: high 32 bits of ramdisk_image. */
  EXT_RAMDISK_IMAGE: 0x0c0,
  /** u32: high 32 bits of ramdisk_size. */
  EXT_RAMDISK_SIZE: 0x0c4,
  /** u32: high 32 bits of cmd_line_ptr. */
  EXT_CMD_LINE_PTR: 0x0c8,
  /** u8: if non-zero, the loader did not clear boot_params and the kernel zeroes fields (sanitize_boot_params); kvmkit leaves it 0. */
  SENTINEL: 0x1ef,
  /** Start of struct setup_header inside boot_params. */
  HDR: 0x1f1,
} as const;

/** type_of_loader value for "undefined" loaders (boot.rst: 0xFF = undefined; kvmkit has no assigned id). */
export const LOADER_TYPE_UNDEFINED = 0xff;
/** vid_mode 0xFFFF = "normal" (80x25) text mode, i.e. no mode change (boot.rst "vid_mode"). */
export const VID_MODE_NORMAL = 0xffff;
/** heap_end_ptr kvmkit reports, as QEMU does: end of setup heap/stack (offset from the real-mode code) minus 0x200 (boot.rst). */
export const HEAP_END_PTR = 0xfe00;

/** What goes into boot_params besides the kernel's own setup header. */
export interface BootParamsInput {
  /** Setup header bytes from the bzImage (file offsets 0x1F1..), copied verbatim to offset 0x1F1. */
  setupHeader: Uint8Array;
  /** Guest-physical address of the NUL-terminated command line. */
  cmdlineAddr: number;
  /** Guest-physical address and size of the initrd, if any. */
  initrd?: { addr: number; size: number };
  /** Guest-physical address of the ACPI RSDP, if ACPI tables are present. */
  acpiRsdpAddr?: number;
  /** The memory map. */
  e820: readonly E820Entry[];
}

/** Build the 4096-byte boot_params page. */
export function buildBootParams(input: BootParamsInput): Uint8Array {
  const page = new Uint8Array(ZERO_PAGE_SIZE);
  const view = new DataView(page.buffer);
  page.set(input.setupHeader, BootParamsOffset.HDR);

  view.setUint16(SetupHeaderOffset.VID_MODE, VID_MODE_NORMAL, true);
  view.setUint8(SetupHeaderOffset.TYPE_OF_LOADER, LOADER_TYPE_UNDEFINED);
  view.setUint8(SetupHeaderOffset.LOADFLAGS, view.getUint8(SetupHeaderOffset.LOADFLAGS) | LOADFLAG_CAN_USE_HEAP);
  view.setUint16(SetupHeaderOffset.HEAP_END_PTR, HEAP_END_PTR, true);

  setSplit(view, SetupHeaderOffset.CMD_LINE_PTR, BootParamsOffset.EXT_CMD_LINE_PTR, input.cmdlineAddr);
  if (input.initrd && input.initrd.size > 0) {
    setSplit(view, SetupHeaderOffset.RAMDISK_IMAGE, BootParamsOffset.EXT_RAMDISK_IMAGE, input.initrd.addr);
    setSplit(view, SetupHeaderOffset.RAMDISK_SIZE, BootParamsOffset.EXT_RAMDISK_SIZE, input.initrd.size);
  }
  if (input.acpiRsdpAddr !== undefined) {
    view.setBigUint64(BootParamsOffset.ACPI_RSDP_ADDR, BigInt(input.acpiRsdpAddr), true);
  }
  writeE820(view, input.e820);
  return page;
}

/** Store the low 32 bits of `value` at `lowAt` and the high 32 bits at `highAt`. */
function setSplit(view: DataView, lowAt: number, highAt: number, value: number): void {
  view.setUint32(lowAt, value >>> 0, true);
  view.setUint32(highAt, Math.floor(value / 0x1_0000_0000) >>> 0, true);
}
