/**
 * Parser for the Linux x86 boot protocol header of a bzImage.
 *
 * Offsets are those of `struct setup_header` in arch/x86/include/uapi/asm/bootparam.h, which
 * Documentation/arch/x86/boot.rst ("THE REAL-MODE KERNEL HEADER") lists as file offsets.
 * @module
 */

import { BootImageError } from '../../errors';

/** setup_header field offsets, as file offsets (= offsets in struct boot_params). boot.rst table. */
export const SetupHeaderOffset = {
  /** u8: size of the setup code in 512-byte sectors; 0 means 4 (boot.rst, protocol 2.00). */
  SETUP_SECTS: 0x1f1,
  /** u16: VGA mode. */
  VID_MODE: 0x1fa,
  /** u16: 0xAA55. */
  BOOT_FLAG: 0x1fe,
  /** u16: jump instruction (0xEB, rel8); the header ends at 0x202 + rel8. */
  JUMP: 0x200,
  /** u32: "HdrS" (0x53726448). */
  HEADER: 0x202,
  /** u16: boot protocol version (major << 8 | minor). */
  VERSION: 0x206,
  /** u8: boot loader identifier. */
  TYPE_OF_LOADER: 0x210,
  /** u8: boot protocol option flags. */
  LOADFLAGS: 0x211,
  /** u32: 32-bit entry point, default 0x100000. */
  CODE32_START: 0x214,
  /** u32: initrd load address (low 32 bits). */
  RAMDISK_IMAGE: 0x218,
  /** u32: initrd size (low 32 bits). */
  RAMDISK_SIZE: 0x21c,
  /** u16: free memory after setup end (real mode only). */
  HEAP_END_PTR: 0x224,
  /** u32: command line address (low 32 bits). */
  CMD_LINE_PTR: 0x228,
  /** u32: highest legal initrd address (protocol 2.03+). */
  INITRD_ADDR_MAX: 0x22c,
  /** u32: physical alignment required for a relocatable kernel (2.05+). */
  KERNEL_ALIGNMENT: 0x230,
  /** u8: whether the kernel is relocatable (2.05+). */
  RELOCATABLE_KERNEL: 0x234,
  /** u8: minimum alignment, as a power of two (2.10+). */
  MIN_ALIGNMENT: 0x235,
  /** u16: XLF_* flags (2.12+). */
  XLOADFLAGS: 0x236,
  /** u32: maximum command line size without the terminating NUL (2.06+). */
  CMDLINE_SIZE: 0x238,
  /** u64: preferred load address (2.10+). */
  PREF_ADDRESS: 0x258,
  /** u32: linear memory required during initialization (2.10+). */
  INIT_SIZE: 0x260,
} as const;

/** boot_flag magic (boot.rst). */
export const BOOT_FLAG_MAGIC = 0xaa55;
/** "HdrS" little-endian (boot.rst). */
export const HDRS_MAGIC = 0x5372_6448;
/** Oldest boot protocol kvmkit accepts: 2.12 introduced xloadflags and XLF_KERNEL_64. */
export const MIN_BOOT_PROTOCOL = 0x020c;

/** loadflags bit 0: protected-mode code is loaded at 0x100000 (bootparam.h `LOADED_HIGH`). */
export const LOADFLAG_LOADED_HIGH = 0x01;
/** loadflags bit 7: heap_end_ptr is valid (bootparam.h `CAN_USE_HEAP`). */
export const LOADFLAG_CAN_USE_HEAP = 0x80;

/** xloadflags bit 0: the kernel has the legacy 64-bit entry point at 0x200 (bootparam.h `XLF_KERNEL_64`). */
export const XLF_KERNEL_64 = 1 << 0;
/** xloadflags bit 1: kernel/boot_params/cmdline/ramdisk may be above 4 GiB (bootparam.h `XLF_CAN_BE_LOADED_ABOVE_4G`). */
export const XLF_CAN_BE_LOADED_ABOVE_4G = 1 << 1;

/** Where the setup header ends at most: struct boot_params' `edd_mbr_sig_buffer` starts at 0x290 (bootparam.h). */
export const SETUP_HEADER_LIMIT = 0x290;

/** The boot-protocol facts kvmkit needs from a bzImage. */
export interface BzImageHeader {
  /** Setup sectors as stored (0 is reported as 4, per boot.rst). */
  setupSects: number;
  bootFlag: number;
  /** Boot protocol version, e.g. 0x020f for 2.15. */
  version: number;
  loadflags: number;
  code32Start: number;
  initrdAddrMax: number;
  kernelAlignment: number;
  relocatableKernel: boolean;
  /** Maximum command line length in bytes, without the terminating NUL. */
  cmdlineSize: number;
  xloadflags: number;
  prefAddress: number;
  /** Bytes of contiguous memory the kernel needs from its runtime start address before it reads the memory map. */
  initSize: number;
  /** File offset of the protected-mode kernel: (setup_sects + 1) * 512. */
  protectedModeOffset: number;
  /** Size in bytes of the protected-mode kernel (file size minus {@link BzImageHeader.protectedModeOffset}). */
  protectedModeSize: number;
  /**
   * The setup header bytes, file offsets 0x1F1 .. 0x202 + byte[0x201], to be copied to the same
   * offset of boot_params (boot.rst, "LOADING THE REST OF THE KERNEL").
   */
  setupHeader: Uint8Array;
}

/**
 * Parse and validate the boot protocol header of a bzImage.
 *
 * @param bytes The whole kernel file.
 * @param path The file's path, used in error messages.
 * @throws {@link BootImageError} if the file is too small, is not a bzImage, uses a boot protocol
 *   older than 2.12 or has no 64-bit entry point.
 */
export function parseBzImage(bytes: Uint8Array, path: string): BzImageHeader {
  const minimum = SetupHeaderOffset.INIT_SIZE + 4;
  if (bytes.length < minimum) {
    throw new BootImageError(path, `${path}: too small for a bzImage (${bytes.length} bytes, the boot header alone needs ${minimum})`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const bootFlag = view.getUint16(SetupHeaderOffset.BOOT_FLAG, true);
  if (bootFlag !== BOOT_FLAG_MAGIC) {
    throw new BootImageError(path, `${path}: not a bzImage (no 0xAA55 boot flag at 0x1FE, found 0x${hex(bootFlag, 4)})`);
  }
  if (view.getUint32(SetupHeaderOffset.HEADER, true) !== HDRS_MAGIC) {
    throw new BootImageError(path, `${path}: not a bzImage (no HdrS magic at 0x202)`);
  }
  const version = view.getUint16(SetupHeaderOffset.VERSION, true);
  if (version < MIN_BOOT_PROTOCOL) {
    throw new BootImageError(
      path,
      `${path}: boot protocol ${version >> 8}.${version & 0xff} is too old, kvmkit needs 2.12 or newer (Linux 3.8+)`,
    );
  }
  const xloadflags = view.getUint16(SetupHeaderOffset.XLOADFLAGS, true);
  if ((xloadflags & XLF_KERNEL_64) === 0) {
    throw new BootImageError(path, `${path}: kernel has no 64-bit entry point (XLF_KERNEL_64 not set in xloadflags); build it for x86_64`);
  }
  const rawSects = bytes[SetupHeaderOffset.SETUP_SECTS]!;
  const setupSects = rawSects === 0 ? 4 : rawSects;
  const protectedModeOffset = (setupSects + 1) * 512;
  if (protectedModeOffset >= bytes.length) {
    throw new BootImageError(
      path,
      `${path}: truncated bzImage (setup is ${protectedModeOffset} bytes but the file has only ${bytes.length})`,
    );
  }
  // The jump at 0x200 is `EB rel8`; the header runs to the jump target (boot.rst: "the end of the
  // setup header can be calculated as follows: 0x0202 + byte value at offset 0x0201").
  const headerEnd = Math.min(0x202 + bytes[SetupHeaderOffset.JUMP + 1]!, SETUP_HEADER_LIMIT);
  const prefLow = view.getUint32(SetupHeaderOffset.PREF_ADDRESS, true);
  const prefHigh = view.getUint32(SetupHeaderOffset.PREF_ADDRESS + 4, true);
  return {
    setupSects,
    bootFlag,
    version,
    loadflags: bytes[SetupHeaderOffset.LOADFLAGS]!,
    code32Start: view.getUint32(SetupHeaderOffset.CODE32_START, true),
    initrdAddrMax: view.getUint32(SetupHeaderOffset.INITRD_ADDR_MAX, true),
    kernelAlignment: view.getUint32(SetupHeaderOffset.KERNEL_ALIGNMENT, true),
    relocatableKernel: bytes[SetupHeaderOffset.RELOCATABLE_KERNEL]! !== 0,
    cmdlineSize: view.getUint32(SetupHeaderOffset.CMDLINE_SIZE, true),
    xloadflags,
    prefAddress: prefHigh * 0x1_0000_0000 + prefLow,
    initSize: view.getUint32(SetupHeaderOffset.INIT_SIZE, true),
    protectedModeOffset,
    protectedModeSize: bytes.length - protectedModeOffset,
    setupHeader: bytes.slice(SetupHeaderOffset.SETUP_SECTS, headerEnd),
  };
}

function hex(value: number, digits: number): string {
  return value.toString(16).toUpperCase().padStart(digits, '0');
}
