/**
 * Write the device tree an aarch64 guest would get to a file, like crosvm's
 * `--dump-device-tree-blob`, without starting a VM (and on any host).
 * @module
 */

import { open, stat, writeFile } from 'node:fs/promises';
import type { PciDeviceDescription } from '../ArchLayout';
import { BootImageError, ConfigError } from '../../errors';
import { buildAarch64Fdt } from './Aarch64Fdt';
import { ARM64_IMAGE_HEADER_SIZE, parseArmImageHeader } from './ArmImage';
import { type Aarch64BootPlacement, type KernelExtent, kernelExtentOf, placeAarch64Boot } from './BootPlacement';
import { AARCH64_MAX_RAM, AARCH64_MIN_RAM, aarch64MemoryMap } from './MemoryMap';

const MiB = 0x10_0000;

/** The machine to describe. */
export interface DeviceTreeBlobOptions {
  /** Guest RAM in MiB. */
  mem: number;
  /** Number of vCPUs. */
  cpus: number;
  /** Kernel command line (`/chosen/bootargs`). */
  cmdline: string;
  /** Path of the arm64 Image; only its header and size are read, to place the initrd exactly as a boot would. */
  kernel?: string;
  /** Path of the initrd; its size sets `linux,initrd-start`/`end`. */
  initrd?: string;
  /** Initrd size in bytes, instead of `initrd` (needs `kernel`, since the initrd goes after it). */
  initrdSize?: number;
  /** PCI devices on bus 0, for `/pci` `interrupt-map`. */
  pciDevices?: PciDeviceDescription[];
  /** Fixed `/chosen/kaslr-seed` (default random). */
  kaslrSeed?: bigint;
  /** Fixed `/chosen/rng-seed` bytes, `null` for none (default 256 random bytes). */
  rngSeed?: Uint8Array | null;
}

/** What {@link writeDeviceTreeBlob} wrote. */
export interface DeviceTreeBlobResult {
  /** Size of the blob in bytes. */
  size: number;
  /** Where kernel, initrd and the blob itself would go in guest RAM. */
  placement: Aarch64BootPlacement;
}

async function kernelExtentFromFile(path: string): Promise<KernelExtent> {
  let handle;
  try {
    handle = await open(path, 'r');
  } catch (cause) {
    throw new BootImageError(path, `cannot open kernel ${path}: ${(cause as Error).message}`, { cause });
  }
  try {
    const header = new Uint8Array(ARM64_IMAGE_HEADER_SIZE);
    const { bytesRead } = await handle.read(header, 0, header.length, 0);
    const { size } = await handle.stat();
    return kernelExtentOf(parseArmImageHeader(header.subarray(0, bytesRead), path), size);
  } finally {
    await handle.close();
  }
}

async function fileSize(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch (cause) {
    throw new BootImageError(path, `cannot read initrd ${path}: ${(cause as Error).message}`, { cause });
  }
}

/**
 * Build the device tree blob an aarch64 guest with these options would boot with and write it to
 * `path`. Throws `ConfigError` for bad options, `BootImageError` for an unusable kernel or initrd.
 */
export async function writeDeviceTreeBlob(options: DeviceTreeBlobOptions, path: string): Promise<DeviceTreeBlobResult> {
  if (!Number.isSafeInteger(options.mem) || options.mem < AARCH64_MIN_RAM / MiB || options.mem > AARCH64_MAX_RAM / MiB) {
    throw new ConfigError('mem', `must be a whole number of MiB from ${AARCH64_MIN_RAM / MiB} to ${AARCH64_MAX_RAM / MiB} for an aarch64 guest`, options.mem);
  }
  const memBytes = options.mem * MiB;
  const map = aarch64MemoryMap(memBytes, options.cpus);
  const initrdSize = options.initrd !== undefined ? await fileSize(options.initrd) : options.initrdSize;
  if (initrdSize !== undefined && options.kernel === undefined) {
    throw new ConfigError('kernel', 'is needed to describe an initrd: the initrd is placed after the kernel, so its address depends on the kernel size');
  }
  const extent: KernelExtent = options.kernel !== undefined ? await kernelExtentFromFile(options.kernel) : { textOffset: 0, size: 0 };
  const placement = placeAarch64Boot(memBytes, extent, initrdSize, { kernel: options.kernel ?? 'kernel', initrd: options.initrd ?? 'initrd' });
  const blob = buildAarch64Fdt({
    map,
    cpus: options.cpus,
    cmdline: options.cmdline,
    ...(placement.initrd === undefined ? {} : { initrd: placement.initrd }),
    ...(options.pciDevices === undefined ? {} : { pciDevices: options.pciDevices }),
    ...(options.kaslrSeed === undefined ? {} : { kaslrSeed: options.kaslrSeed }),
    ...(options.rngSeed === undefined ? {} : { rngSeed: options.rngSeed }),
  });
  await writeFile(path, blob);
  return { size: blob.length, placement };
}
