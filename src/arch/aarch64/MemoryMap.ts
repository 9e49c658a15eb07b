/**
 * The aarch64 guest-physical memory map, modelled on crosvm's (aarch64/src/lib.rs in
 * google/crosvm, read at commit f1e797a6). Everything that is not RAM lies below RAM at
 * 0x8000_0000, except the platform and 64-bit PCI windows, which follow the end of RAM.
 *
 * ```
 * 0x0000_03f8  ns16550a serial (8 bytes)
 * 0x0001_0000  PCI ECAM, window of 16 MiB (bus 0 uses the first 1 MiB)
 * 0x0200_0000  PCI 32-bit MMIO window (32 MiB)
 *     ...      GICv3 redistributors (128 KiB per vCPU), growing down from the distributor
 * 0x3fff_0000  GICv3 distributor (64 KiB)
 * 0x8000_0000  RAM: kernel at the start, initrd after it, FDT in the last 2 MiB
 * RAM end      platform MMIO window (1 GiB)
 * + 1 GiB      PCI 64-bit prefetchable MMIO window, up to 2^40
 * ```
 * @module
 */

import { ConfigError } from '../../errors';

/** Start of guest RAM. crosvm aarch64/src/lib.rs `AARCH64_PHYS_MEM_START`. */
export const AARCH64_PHYS_MEM_START = 0x8000_0000;
/** Size of the platform MMIO window after RAM. crosvm aarch64/src/lib.rs `AARCH64_PLATFORM_MMIO_SIZE`. */
export const AARCH64_PLATFORM_MMIO_SIZE = 0x4000_0000;
/**
 * Guest physical address bits: KVM's default IPA size when the VM type does not ask for another
 * (linux arch/arm64/kvm/mmu.c; crosvm hypervisor/src/kvm/aarch64.rs `get_guest_phys_addr_bits`:
 * "Default physical address size is 40 bits"). The 64-bit PCI window ends here.
 */
export const AARCH64_GUEST_PHYS_ADDR_BITS = 40;

/** GICv3 distributor size. crosvm aarch64/src/lib.rs `AARCH64_GIC_DIST_SIZE`. */
export const AARCH64_GIC_DIST_SIZE = 0x1_0000;
/** GICv3 distributor base, just below 1 GiB. crosvm aarch64/src/lib.rs `AARCH64_GIC_DIST_BASE`. */
export const AARCH64_GIC_DIST_BASE = 0x4000_0000 - AARCH64_GIC_DIST_SIZE;
/**
 * One GICv3 redistributor per vCPU (RD_base + SGI_base frames, 2 x 64 KiB), placed directly below
 * the distributor. crosvm aarch64/src/lib.rs `AARCH64_GIC_REDIST_SIZE` and aarch64/src/fdt.rs
 * `create_gic_node`.
 */
export const AARCH64_GIC_REDIST_SIZE = 0x2_0000;

/** The first serial port's MMIO address. crosvm arch/src/serial.rs `SERIAL_ADDR[0]`. */
export const AARCH64_SERIAL_ADDR = 0x3f8;
/** A 16550 UART uses 8 bytes of address space. crosvm arch/src/serial.rs `add_serial_devices`. */
export const AARCH64_SERIAL_SIZE = 0x8;
/** The serial's `clock-frequency`. crosvm aarch64/src/lib.rs `AARCH64_SERIAL_SPEED` ("the speed kvmtool used"). */
export const AARCH64_SERIAL_SPEED = 1_843_200;
/** The serial's SPI number (GIC INTID 32). crosvm aarch64/src/lib.rs `AARCH64_SERIAL_1_3_IRQ`. */
export const AARCH64_SERIAL_IRQ = 0;

/** PCI configuration window base. crosvm aarch64/src/lib.rs `AARCH64_PCI_CAM_BASE_DEFAULT`. */
export const AARCH64_PCI_CFG_BASE = 0x1_0000;
/** PCI configuration window size reserved in the map. crosvm aarch64/src/lib.rs `AARCH64_PCI_CAM_SIZE_DEFAULT`. */
export const AARCH64_PCI_CFG_WINDOW_SIZE = 0x100_0000;
/**
 * ECAM space per bus: 32 devices x 8 functions x 4 KiB (PCIe base spec "Enhanced Configuration
 * Access Mechanism"; linux drivers/pci/ecam.c `bus_shift = 20`). kvmkit describes ECAM
 * (`pci-host-ecam-generic`) where crosvm describes CAM; only bus 0 exists, so `reg` is 1 MiB.
 */
export const AARCH64_PCI_ECAM_BUS_SIZE = 0x10_0000;
/** PCI 32-bit MMIO window. crosvm aarch64/src/lib.rs `AARCH64_PCI_MEM_BASE_DEFAULT`. */
export const AARCH64_PCI_MEM_BASE = 0x200_0000;
/** PCI 32-bit MMIO window size. crosvm aarch64/src/lib.rs `AARCH64_PCI_MEM_SIZE_DEFAULT`. */
export const AARCH64_PCI_MEM_SIZE = 0x200_0000;
/** First SPI handed to PCI/virtio devices. crosvm aarch64/src/lib.rs `AARCH64_IRQ_BASE`. */
export const AARCH64_IRQ_BASE = 4;
/**
 * SPIs the in-kernel vGIC is created with (64 IRQs - 32 private). crosvm
 * devices/src/irqchip/kvm/aarch64.rs `AARCH64_GIC_NR_SPIS` / `AARCH64_GIC_NR_IRQS`.
 */
export const AARCH64_GIC_NR_SPIS = 32;

/** Room kept for the device tree. crosvm aarch64/src/lib.rs `AARCH64_FDT_MAX_SIZE`; booting.rst: "must not exceed 2 megabytes". */
export const AARCH64_FDT_MAX_SIZE = 0x20_0000;
/** FDT alignment. crosvm aarch64/src/lib.rs `AARCH64_FDT_ALIGN` (booting.rst asks only 8 bytes, but a 2 MiB block of its own). */
export const AARCH64_FDT_ALIGN = 0x20_0000;
/** initrd alignment. crosvm aarch64/src/lib.rs `AARCH64_INITRD_ALIGN`. */
export const AARCH64_INITRD_ALIGN = 0x100_0000;
/** Kernel command line limit, NUL included. linux arch/arm64/include/uapi/asm/setup.h `COMMAND_LINE_SIZE`; crosvm `AARCH64_CMDLINE_MAX_SIZE`. */
export const AARCH64_CMDLINE_MAX_SIZE = 2048;
/** vCPU limit. linux arch/arm64/include/asm/kvm_host.h `KVM_MAX_VCPUS` = `VGIC_V3_MAX_CPUS` (include/kvm/arm_vgic.h). */
export const AARCH64_MAX_VCPUS = 512;

/** Guest page size the RAM size must be a multiple of. */
export const AARCH64_RAM_GRANULE = 0x1000;
/** Smallest RAM: room for the FDT's 2 MiB block. */
export const AARCH64_MIN_RAM = AARCH64_FDT_MAX_SIZE;
/**
 * Largest RAM kvmkit lays out: 512 GiB, which keeps the 64-bit PCI window (after RAM and the
 * platform window) about 0.5 TiB large inside the default 40-bit IPA space.
 */
export const AARCH64_MAX_RAM = 0x80_0000_0000;

/** A guest-physical address range. */
export interface AddressRange {
  base: number;
  size: number;
}

/** Every region of an aarch64 guest's address space, for a given RAM size and vCPU count. */
export interface Aarch64MemoryMap {
  ram: AddressRange;
  serial: AddressRange;
  /** The whole configuration window reserved for PCI (crosvm's CAM window). */
  pciConfigWindow: AddressRange;
  /** The ECAM space of bus 0, the `reg` of the `/pci` node. */
  pciEcam: AddressRange;
  pciMmio32: AddressRange;
  pciMmio64: AddressRange;
  gicDistributor: AddressRange;
  gicRedistributors: AddressRange;
  platformMmio: AddressRange;
}

/** Check `memBytes` as aarch64 guest RAM; throws {@link ConfigError}. */
export function checkAarch64Ram(memBytes: number): void {
  if (!Number.isSafeInteger(memBytes) || memBytes < AARCH64_MIN_RAM || memBytes > AARCH64_MAX_RAM || memBytes % AARCH64_RAM_GRANULE !== 0) {
    throw new ConfigError('mem', 'must be a multiple of 4 KiB from 2 MiB to 512 GiB for an aarch64 guest (value in bytes)', memBytes);
  }
}

/** Check a vCPU count; throws {@link ConfigError}. */
export function checkAarch64Cpus(cpus: number): void {
  if (!Number.isInteger(cpus) || cpus < 1 || cpus > AARCH64_MAX_VCPUS) {
    throw new ConfigError('cpus', `must be an integer from 1 to ${AARCH64_MAX_VCPUS} (KVM_MAX_VCPUS on arm64)`, cpus);
  }
}

/** The memory map for `memBytes` of RAM and `cpus` vCPUs. Throws {@link ConfigError} for bad values. */
export function aarch64MemoryMap(memBytes: number, cpus: number): Aarch64MemoryMap {
  checkAarch64Ram(memBytes);
  checkAarch64Cpus(cpus);
  const ramEnd = AARCH64_PHYS_MEM_START + memBytes;
  const high64Base = ramEnd + AARCH64_PLATFORM_MMIO_SIZE;
  const redistSize = AARCH64_GIC_REDIST_SIZE * cpus;
  return {
    ram: { base: AARCH64_PHYS_MEM_START, size: memBytes },
    serial: { base: AARCH64_SERIAL_ADDR, size: AARCH64_SERIAL_SIZE },
    pciConfigWindow: { base: AARCH64_PCI_CFG_BASE, size: AARCH64_PCI_CFG_WINDOW_SIZE },
    pciEcam: { base: AARCH64_PCI_CFG_BASE, size: AARCH64_PCI_ECAM_BUS_SIZE },
    pciMmio32: { base: AARCH64_PCI_MEM_BASE, size: AARCH64_PCI_MEM_SIZE },
    pciMmio64: { base: high64Base, size: 2 ** AARCH64_GUEST_PHYS_ADDR_BITS - high64Base },
    gicDistributor: { base: AARCH64_GIC_DIST_BASE, size: AARCH64_GIC_DIST_SIZE },
    gicRedistributors: { base: AARCH64_GIC_DIST_BASE - redistSize, size: redistSize },
    platformMmio: { base: ramEnd, size: AARCH64_PLATFORM_MMIO_SIZE },
  };
}
