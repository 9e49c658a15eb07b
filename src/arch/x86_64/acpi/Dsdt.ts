/**
 * The Differentiated System Description Table: kvmkit's AML namespace.
 *
 * It holds what the fixed tables cannot say:
 * - `\_S5_` (ACPI 6.5 §7.4.2.5 "\_S5 (Soft Off)"): Package { SLP_TYPa, SLP_TYPb, 0, 0 }, so the
 *   guest powers off by writing SLP_TYP=5 with SLP_EN to PM1a_CNT.
 * - `\_SB_.PCI0`, a PCI host bridge (PNP0A03) for bus 0 reached through the 0xCF8/0xCFC config
 *   ports. Linux with ACPI only enumerates PCI under ACPI host bridges (arch/x86/pci/acpi.c
 *   `pci_acpi_init` returns 0, so `pci_legacy_init` is not run), so without it no virtio-pci
 *   device would be found. `_CRS` gives bus 0, the config ports, the I/O windows around them and
 *   the 32-bit MMIO window [0xC000_0000, 0xFEC0_0000); `_PRT` routes INTx pins of the PCI
 *   devices given to the layout to their GSIs (Firecracker's pci_segment.rs does the same).
 * @module
 */

import type { PciDeviceDescription } from '../../ArchLayout';
import { PCI_MMIO32_END, PCI_MMIO32_START, S5_SLP_TYP } from '../Layout';
import * as aml from './Aml';
import { ACPI_HEADER_SIZE, newAcpiTable, sealAcpiTable } from './AcpiTable';

/** DSDT revision 2: AML integers are 64-bit (ACPI 6.5 §5.2.11.1). */
export const DSDT_REVISION = 2;

/** PCI configuration address port (PCI Local Bus 3.0 §3.2.2.3.2), decoded by the host bridge. */
const PCI_CONFIG_ADDRESS_PORT = 0xcf8;

/** `Name (_S5_, Package (4) { 5, 5, Zero, Zero })`. */
export function s5Package(): Uint8Array {
  return aml.name('_S5_', aml.pkg([aml.integer(S5_SLP_TYP), aml.integer(S5_SLP_TYP), aml.integer(0), aml.integer(0)]));
}

/**
 * `_PRT` entries: Package { Address = (device << 16) | 0xFFFF, Pin (0 = INTA), Source = Zero, Source Index = GSI }
 * (ACPI 6.5 §6.2.13 "_PRT (PCI Routing Table)").
 */
export function pciRoutingTable(devices: readonly PciDeviceDescription[]): Uint8Array | undefined {
  const routed = devices.filter((d) => d.intPin !== undefined && d.irq !== undefined);
  if (routed.length === 0) return undefined;
  const entries = routed.map((d) => {
    if (d.device < 0 || d.device > 31) throw new RangeError(`PCI device number ${d.device} is not in 0..31`);
    if (d.intPin! < 1 || d.intPin! > 4) throw new RangeError(`PCI device ${d.device}: intPin ${d.intPin} is not in 1..4 (INTA..INTD)`);
    return aml.pkg([aml.dword(((d.device << 16) | 0xffff) >>> 0), aml.integer(d.intPin! - 1), aml.integer(0), aml.integer(d.irq!)]);
  });
  return aml.name('_PRT', aml.pkg(entries));
}

/** `Device (_SB_.PCI0)` with `_HID`, `_SEG`, `_UID`, `_BBN`, `_CRS` and, if any device has a pin, `_PRT`. */
export function pciHostBridge(devices: readonly PciDeviceDescription[] = []): Uint8Array {
  const crs = aml.resourceTemplate([
    aml.wordBusNumber(0, 0),
    aml.ioPort(PCI_CONFIG_ADDRESS_PORT, PCI_CONFIG_ADDRESS_PORT, 1, 8),
    aml.wordIo(0x0000, PCI_CONFIG_ADDRESS_PORT - 1),
    aml.wordIo(PCI_CONFIG_ADDRESS_PORT + 8, 0xffff),
    aml.dwordMemory(PCI_MMIO32_START, PCI_MMIO32_END - 1),
  ]);
  const children = [
    aml.name('_HID', aml.eisaId('PNP0A03')),
    aml.name('_SEG', aml.integer(0)),
    aml.name('_UID', aml.integer(0)),
    aml.name('_BBN', aml.integer(0)),
    aml.name('_CRS', crs),
  ];
  const prt = pciRoutingTable(devices);
  if (prt) children.push(prt);
  return aml.device('_SB_.PCI0', children);
}

/** The DSDT AML body (everything after the header). */
export function dsdtAml(pciDevices: readonly PciDeviceDescription[] = []): Uint8Array {
  return aml.terms([s5Package(), pciHostBridge(pciDevices)]);
}

/** Build the DSDT. */
export function buildDsdt(pciDevices: readonly PciDeviceDescription[] = []): Uint8Array {
  const body = dsdtAml(pciDevices);
  const { bytes } = newAcpiTable({ signature: 'DSDT', revision: DSDT_REVISION, oemTableId: 'KVMKDSDT' }, ACPI_HEADER_SIZE + body.length);
  bytes.set(body, ACPI_HEADER_SIZE);
  return sealAcpiTable(bytes);
}
