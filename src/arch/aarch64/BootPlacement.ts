/**
 * Where the kernel, initrd and device tree go in aarch64 guest RAM: the kernel `text_offset`
 * bytes above the (2 MiB aligned) start of RAM, the initrd after it on a 16 MiB boundary, the
 * FDT in the last 2 MiB block, as crosvm's aarch64/src/lib.rs `build_vm` does with
 * `FdtPosition::End`.
 * @module
 */

import { BootImageError } from '../../errors';
import { ARM64_IMAGE_BASE_ALIGN, type ArmImageHeader } from './ArmImage';
import {
  AARCH64_FDT_ALIGN,
  AARCH64_FDT_MAX_SIZE,
  AARCH64_INITRD_ALIGN,
  AARCH64_PHYS_MEM_START,
  checkAarch64Ram,
} from './MemoryMap';

/**
 * booting.rst: the initrd "must reside entirely within a 1 GB aligned physical memory window of up
 * to 32 GB in size that fully covers the kernel Image as well".
 */
const INITRD_WINDOW_ALIGN = 0x4000_0000;
const INITRD_WINDOW_SIZE = 32 * 0x4000_0000;

const MiB = 0x10_0000;

/** How much room a kernel needs: load offset from its 2 MiB aligned base, and bytes from there. */
export interface KernelExtent {
  /** `text_offset` from the header. */
  textOffset: number;
  /** Bytes the kernel uses from its load address: the larger of the file and the header's `image_size`. */
  size: number;
}

/** Where each boot item lands. Addresses are guest-physical; every `end` is exclusive. */
export interface Aarch64BootPlacement {
  /** The 2 MiB aligned base the Image is placed relative to (booting.rst). */
  kernelBase: number;
  /** Load address of the Image's first byte, also the entry point (PC). */
  kernelLoad: number;
  kernelEnd: number;
  initrd?: { start: number; end: number };
  /** Address of the device tree blob (X0). */
  fdtAddress: number;
}

/** The room an Image needs: booting.rst says at least `image_size` bytes from its start must be free. */
export function kernelExtentOf(header: ArmImageHeader, fileSize: number): KernelExtent {
  return { textOffset: header.textOffset, size: Math.max(fileSize, header.imageSize) };
}

function mib(n: number): string {
  return `${(n / MiB).toFixed(n % MiB === 0 ? 0 : 1)} MiB`;
}

function alignUp(n: number, align: number): number {
  return Math.ceil(n / align) * align;
}

/**
 * Place a kernel (and an initrd of `initrdSize` bytes) in `memBytes` of RAM. Throws
 * {@link BootImageError} naming `files.kernel` or `files.initrd` when it does not fit.
 */
export function placeAarch64Boot(
  memBytes: number,
  kernel: KernelExtent,
  initrdSize: number | undefined,
  files: { kernel: string; initrd: string } = { kernel: 'kernel', initrd: 'initrd' },
): Aarch64BootPlacement {
  checkAarch64Ram(memBytes);
  const ramEnd = AARCH64_PHYS_MEM_START + memBytes;
  // crosvm FdtPosition::End: the last 2 MiB aligned block that holds AARCH64_FDT_MAX_SIZE bytes.
  const fdtAddress = Math.floor((ramEnd - AARCH64_FDT_MAX_SIZE) / AARCH64_FDT_ALIGN) * AARCH64_FDT_ALIGN;
  // booting.rst: a 2 MiB aligned base; the start of DRAM also satisfies flags bit 3 = 0 ("as close
  // as possible to the base of DRAM"), so every Image goes here, as in crosvm.
  const kernelBase = Math.ceil(AARCH64_PHYS_MEM_START / ARM64_IMAGE_BASE_ALIGN) * ARM64_IMAGE_BASE_ALIGN;
  const kernelLoad = kernelBase + kernel.textOffset;
  const kernelEnd = kernelLoad + kernel.size;
  const room = fdtAddress - kernelBase;
  if (kernelEnd > fdtAddress) {
    throw new BootImageError(
      files.kernel,
      `${files.kernel} does not fit in ${mib(memBytes)} of RAM: it needs ${mib(kernelEnd - kernelBase)} ` +
        `(text_offset 0x${kernel.textOffset.toString(16)} + ${mib(kernel.size)}) but ${mib(room)} lie below the device tree at 0x${fdtAddress.toString(16)}; give the guest more memory`,
    );
  }
  const placement: Aarch64BootPlacement = { kernelBase, kernelLoad, kernelEnd, fdtAddress };
  if (initrdSize !== undefined) {
    if (!Number.isSafeInteger(initrdSize) || initrdSize < 0) throw new BootImageError(files.initrd, `${files.initrd}: size ${initrdSize} is not a byte count`);
    const start = alignUp(kernelEnd, AARCH64_INITRD_ALIGN);
    const end = start + initrdSize;
    if (end > fdtAddress) {
      throw new BootImageError(
        files.initrd,
        `${files.initrd} (${mib(initrdSize)}) does not fit in ${mib(memBytes)} of RAM: it goes at 0x${start.toString(16)}, after the kernel on a 16 MiB boundary, ` +
          `and only ${mib(Math.max(0, fdtAddress - start))} lie between there and the device tree at 0x${fdtAddress.toString(16)}; give the guest more memory`,
      );
    }
    const windowStart = Math.floor(kernelBase / INITRD_WINDOW_ALIGN) * INITRD_WINDOW_ALIGN;
    if (end - windowStart > INITRD_WINDOW_SIZE) {
      throw new BootImageError(files.initrd, `${files.initrd} would end ${mib(end - windowStart)} above the 1 GiB boundary below the kernel; booting.rst wants kernel and initrd inside one 32 GiB window`);
    }
    placement.initrd = { start, end };
  }
  return placement;
}
