/**
 * The seam between the VM and an architecture's boot layout. A layout is pure data: it says where
 * RAM is, what bytes go where in guest memory before the first vCPU runs, and each vCPU's initial
 * state. `vm/` applies it through `memory/` and `hypervisor/`; a layout never touches KVM.
 * @module
 */

/** Architectures kvmkit can lay out. */
export type ArchName = 'x86_64' | 'aarch64';

/** A contiguous range of guest RAM, in guest-physical bytes. */
export interface RamRegion {
  /** Guest-physical start address. */
  guestAddress: number;
  /** Length in bytes. */
  size: number;
}

/** Bytes to copy into guest RAM before boot. */
export interface GuestWrite {
  guestAddress: number;
  data: Uint8Array;
  /** What this is (`kernel`, `initrd`, `boot_params`, `gdt`, `acpi:FACP`...), for errors and debugging. */
  what: string;
}

/** A PCI device as the guest firmware tables must describe it (aarch64 FDT interrupt-map, x86 ACPI later). */
export interface PciDeviceDescription {
  /** Device number on bus 0 (0..31). */
  device: number;
  /** Legacy INTx pin 1..4 (INTA..INTD), if the device uses one. */
  intPin?: number;
  /** Interrupt number (GSI/SPI) the pin is wired to. */
  irq?: number;
}

/** What a layout needs to build a boot plan. */
export interface LayoutInput {
  /** Guest RAM in bytes. */
  memBytes: number;
  /** Number of vCPUs (>= 1). */
  cpus: number;
  /** The kernel file's bytes (bzImage on x86_64, arm64 `Image` on aarch64). */
  kernel: Uint8Array;
  /** Path of the kernel, used in error messages. */
  kernelPath?: string;
  /** The initrd's bytes, if any. */
  initrd?: Uint8Array;
  /** The full kernel command line. */
  cmdline: string;
  /** PCI devices on bus 0, for layouts that describe them to the guest. */
  pciDevices?: PciDeviceDescription[];
}

/** The result of laying out a guest: RAM, bytes to write and per-vCPU initial state. */
export interface BootPlan<VcpuInit> {
  ramRegions: RamRegion[];
  writes: GuestWrite[];
  /** One entry per vCPU, index = vCPU id. */
  vcpus: VcpuInit[];
}

/** An architecture's layout builder. */
export interface ArchLayout<VcpuInit = unknown> {
  readonly arch: ArchName;
  /** RAM regions for `memBytes` of guest memory (respecting the architecture's MMIO holes). */
  ramRegions(memBytes: number): RamRegion[];
  /** Lay out a guest. Throws {@link BootImageError} for a malformed kernel. */
  build(input: LayoutInput): BootPlan<VcpuInit>;
}
