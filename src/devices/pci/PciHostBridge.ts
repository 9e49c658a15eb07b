/**
 * The host bridge at 00:00.0. Linux only trusts configuration mechanism #1 after finding a host
 * bridge or a VGA device among the first functions of bus 0 (arch/x86/pci/direct.c
 * `pci_sanity_check`, run when there is no ACPI MCFG); without one it ignores the 0xCF8 ports and
 * sees no PCI devices. QEMU's i440FX and crosvm's `PciRootConfiguration` answer there too (devices/src/pci/pci_root.rs).
 * @module
 */

import { PciConfigSpace } from './PciConfigSpace';
import type { PciDevice } from './PciDevice';
import { PCI_COMMAND, PCI_COMMAND_MEMORY, PCI_COMMAND_MASTER } from './PciRegisters';

/** PCI class code of a host bridge: base class 0x06 (bridge), subclass 0x00 (host), prog-if 0 (PCI Code and ID Assignment spec §1.7). */
export const PCI_CLASS_BRIDGE_HOST = 0x060000;
/** Vendor ID of the host bridge: Intel, as QEMU's i440FX and crosvm's root (0x8086). */
export const HOST_BRIDGE_VENDOR_ID = 0x8086;
/** Device ID of the host bridge: 0x1237, the Intel 82441 (i440FX PMC), as QEMU's `pc` and crosvm's `PciRoot`. */
export const HOST_BRIDGE_DEVICE_ID = 0x1237;

/**
 * A type-0 host bridge function with no BARs and no capabilities. Its identity registers are
 * read-only; the command register keeps the writable bits guests toggle. Add it at device 0.
 */
export class PciHostBridge implements PciDevice {
  readonly name = 'host-bridge';
  /** The config space (exposed for tests and diagnostics). */
  readonly config: PciConfigSpace;

  constructor() {
    this.config = new PciConfigSpace({ vendorId: HOST_BRIDGE_VENDOR_ID, deviceId: HOST_BRIDGE_DEVICE_ID, classCode: PCI_CLASS_BRIDGE_HOST });
    // A host bridge decodes memory and masters the bus from reset (firmware would set these).
    this.config.writeU16(PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
  }

  readConfig(reg: number): number {
    return this.config.readConfig(reg);
  }

  writeConfig(reg: number, offset: number, data: Uint8Array): void {
    this.config.writeConfig(reg, offset, data);
  }
}
