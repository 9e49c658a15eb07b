/**
 * The arm64 Linux `Image` header. Source: Linux Documentation/arch/arm64/booting.rst, section
 * "4. Call the kernel image" (the 64-byte header), and arch/arm64/include/asm/image.h for the
 * flag bit names; crosvm kernel_loader/src/arm64.rs reads it the same way.
 * @module
 */

import { BootImageError } from '../../errors';

/** Size of the Image header (booting.rst: code0 .. res5, 64 bytes). */
export const ARM64_IMAGE_HEADER_SIZE = 64;
/** Offset of the `magic` field (booting.rst). */
export const ARM64_IMAGE_MAGIC_OFFSET = 56;
/** "ARM\x64" read as a little-endian u32 (booting.rst; ARM64_IMAGE_MAGIC in asm/image.h). */
export const ARM64_IMAGE_MAGIC = 0x644d5241;
/** booting.rst: "Where image_size is zero, text_offset can be assumed to be 0x80000." (kernels before v3.17) */
export const ARM64_TEXT_OFFSET_DEFAULT = 0x80000;
/** booting.rst: the Image is placed `text_offset` bytes from a 2 MiB aligned base address. */
export const ARM64_IMAGE_BASE_ALIGN = 0x20_0000;

/** Flag bits (booting.rst "Header notes"; ARM64_IMAGE_FLAG_* in asm/image.h). */
const FLAG_BE_MASK = 0x1n; // bit 0: 1 = big-endian kernel
const FLAG_PAGE_SIZE_SHIFT = 1n; // bits 1-2: 0 unspecified, 1 4K, 2 16K, 3 64K
const FLAG_PAGE_SIZE_MASK = 0x3n;
const FLAG_PHYS_BASE_SHIFT = 3n; // bit 3: 1 = the 2 MiB aligned base may be anywhere in RAM

/** Page sizes by the flags' bits 1-2 (booting.rst). */
const PAGE_SIZES: readonly (number | undefined)[] = [undefined, 4096, 16384, 65536];

/** Field offsets inside the header (booting.rst). */
const Offset = { code0: 0, code1: 4, textOffset: 8, imageSize: 16, flags: 24, res5: 60 } as const;

/** The decoded header of an arm64 `Image`. */
export interface ArmImageHeader {
  /** `code0`, the first instruction; `MZ...` when the Image carries an EFI stub. */
  code0: number;
  code1: number;
  /** Image load offset from the 2 MiB aligned base, after booting.rst's rule for `image_size == 0`. */
  textOffset: number;
  /** Effective size of the kernel image in memory (text, data and bss), 0 if the header does not say. */
  imageSize: number;
  /** The raw 64-bit `flags` field. */
  flags: bigint;
  /** Kernel page size in bytes from flags bits 1-2, `undefined` when unspecified. */
  pageSize: number | undefined;
  /** Flags bit 3: the base may be anywhere in physical memory (else as close as possible to the start of DRAM). */
  placeAnywhere: boolean;
  /** `res5`: the offset of the PE/COFF header when the Image has an EFI stub (`MZ` in code0), else 0. */
  peHeaderOffset: number;
  /** True when code0 starts with `MZ`, i.e. the Image also is an EFI application. */
  hasEfiStub: boolean;
}

function u64(view: DataView, offset: number, file: string, field: string): number {
  const v = view.getBigUint64(offset, true);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new BootImageError(file, `${file}: arm64 Image header ${field} 0x${v.toString(16)} is impossibly large; the file is corrupt`);
  }
  return Number(v);
}

/** A recognisable compressed kernel, so the error can say what to do instead of "no magic". */
function compressedKind(bytes: Uint8Array): string | undefined {
  if (bytes[0] === 0x1f && bytes[1] === 0x8b) return 'gzip-compressed (decompress it with gunzip first)';
  // EFI zboot (drivers/firmware/efi/libstub/zboot-header.S): "MZ", then "zimg" at offset 4 and the
  // compression type as a NUL-terminated string at offset 24.
  if (bytes.length >= 32 && bytes[0] === 0x4d && bytes[1] === 0x5a && String.fromCharCode(...bytes.subarray(4, 8)) === 'zimg') {
    const type = String.fromCharCode(...bytes.subarray(24, 32)).replace(/\0.*$/s, '');
    return `an EFI zboot image (${type || 'compressed'}); extract the Image from its payload first`;
  }
  return undefined;
}

/**
 * Parse and check the header of an arm64 `Image`. `file` names the kernel in errors.
 * Throws {@link BootImageError} for a file that is too small, not an arm64 Image, compressed, or
 * big-endian.
 */
export function parseArmImageHeader(bytes: Uint8Array, file = 'kernel'): ArmImageHeader {
  if (bytes.length < ARM64_IMAGE_HEADER_SIZE) {
    throw new BootImageError(file, `${file} is too small to be an arm64 Image: ${bytes.length} bytes, the header alone is ${ARM64_IMAGE_HEADER_SIZE}`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (view.getUint32(ARM64_IMAGE_MAGIC_OFFSET, true) !== ARM64_IMAGE_MAGIC) {
    const kind = compressedKind(bytes);
    throw new BootImageError(
      file,
      kind === undefined
        ? `${file} is not an arm64 Image (no ARM\\x64 magic at offset 56)`
        : `${file} is not an arm64 Image (no ARM\\x64 magic at offset 56): it is ${kind}`,
    );
  }
  const flags = view.getBigUint64(Offset.flags, true);
  if ((flags & FLAG_BE_MASK) !== 0n) {
    throw new BootImageError(file, `${file} is a big-endian arm64 Image (flags bit 0 set); kvmkit boots little-endian kernels only`);
  }
  const rawTextOffset = u64(view, Offset.textOffset, file, 'text_offset');
  const imageSize = u64(view, Offset.imageSize, file, 'image_size');
  const code0 = view.getUint32(Offset.code0, true);
  return {
    code0,
    code1: view.getUint32(Offset.code1, true),
    textOffset: imageSize === 0 ? ARM64_TEXT_OFFSET_DEFAULT : rawTextOffset,
    imageSize,
    flags,
    pageSize: PAGE_SIZES[Number((flags >> FLAG_PAGE_SIZE_SHIFT) & FLAG_PAGE_SIZE_MASK)],
    placeAnywhere: ((flags >> FLAG_PHYS_BASE_SHIFT) & 1n) === 1n,
    peHeaderOffset: view.getUint32(Offset.res5, true),
    hasEfiStub: (code0 & 0xffff) === 0x5a4d,
  };
}
