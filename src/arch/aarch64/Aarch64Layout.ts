/**
 * The aarch64 implementation of the {@link ArchLayout} seam: crosvm's memory map, the arm64 Image
 * loaded at the start of RAM, the initrd after it, the device tree at the top of RAM, and vCPU 0
 * starting at the kernel with X0 = the device tree while the others wait for PSCI CPU_ON.
 * @module
 */

import type { ArchLayout, BootPlan, GuestWrite, LayoutInput, RamRegion } from '../ArchLayout';
import { buildAarch64Fdt } from './Aarch64Fdt';
import { parseArmImageHeader } from './ArmImage';
import { kernelExtentOf, placeAarch64Boot } from './BootPlacement';
import { aarch64MemoryMap, checkAarch64Ram } from './MemoryMap';
import { type Aarch64VcpuInit, aarch64VcpuInits } from './VcpuInit';

/** Options of {@link Aarch64Layout}; the defaults are what a guest should get. */
export interface Aarch64LayoutOptions {
  /** Fixed `/chosen/kaslr-seed` (default: random per build). */
  kaslrSeed?: bigint;
  /** Fixed `/chosen/rng-seed` bytes, or `null` for none (default: 256 random bytes per build). */
  rngSeed?: Uint8Array | null;
  /** Set `/chosen/linux,pci-probe-only` (default false: the guest assigns PCI BARs itself). */
  pciProbeOnly?: boolean;
}

/** Lays out an aarch64 Linux guest. Pure: it computes bytes and registers and touches no KVM. */
export class Aarch64Layout implements ArchLayout<Aarch64VcpuInit> {
  readonly arch = 'aarch64' as const;

  constructor(private readonly options: Aarch64LayoutOptions = {}) {}

  /** One region: RAM starts at 0x8000_0000 and has no holes (all MMIO is below it or after it). */
  ramRegions(memBytes: number): RamRegion[] {
    checkAarch64Ram(memBytes);
    const { ram } = aarch64MemoryMap(memBytes, 1);
    return [{ guestAddress: ram.base, size: ram.size }];
  }

  /**
   * Parse the Image, place kernel, initrd and FDT, build the FDT and the vCPUs' initial state.
   * Throws `BootImageError` for a kernel that is not a usable arm64 Image or a kernel or
   * initrd that does not fit, `ConfigError` for bad `memBytes`, `cpus`, `cmdline` or PCI devices.
   */
  build(input: LayoutInput): BootPlan<Aarch64VcpuInit> {
    const map = aarch64MemoryMap(input.memBytes, input.cpus);
    const kernelFile = input.kernelPath ?? 'kernel';
    const header = parseArmImageHeader(input.kernel, kernelFile);
    const placement = placeAarch64Boot(input.memBytes, kernelExtentOf(header, input.kernel.length), input.initrd?.length, {
      kernel: kernelFile,
      initrd: 'initrd',
    });
    const fdt = buildAarch64Fdt({
      map,
      cpus: input.cpus,
      cmdline: input.cmdline,
      ...(placement.initrd === undefined ? {} : { initrd: placement.initrd }),
      ...(input.pciDevices === undefined ? {} : { pciDevices: input.pciDevices }),
      ...this.options,
    });
    const writes: GuestWrite[] = [{ guestAddress: placement.kernelLoad, data: input.kernel, what: 'kernel' }];
    if (input.initrd !== undefined && placement.initrd !== undefined) {
      writes.push({ guestAddress: placement.initrd.start, data: input.initrd, what: 'initrd' });
    }
    writes.push({ guestAddress: placement.fdtAddress, data: fdt, what: 'fdt' });
    return {
      ramRegions: [{ guestAddress: map.ram.base, size: map.ram.size }],
      writes,
      vcpus: aarch64VcpuInits(input.cpus, placement.kernelLoad, placement.fdtAddress),
    };
  }
}
