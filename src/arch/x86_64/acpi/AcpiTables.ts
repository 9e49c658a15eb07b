/**
 * Places kvmkit's ACPI tables in the BIOS area: RSDP at 0xE0000 (where the OS's RSDP scan and
 * boot_params.acpi_rsdp_addr find it), then RSDT, XSDT, FACS, DSDT, FADT and MADT, each on a
 * 16-byte boundary (the FACS on a 64-byte one, ACPI 6.5 §5.2.10).
 * @module
 */

import type { PciDeviceDescription } from '../../ArchLayout';
import { alignUp, MPTABLE_OVERFLOW_START, RSDP_START } from '../Layout';
import { buildDsdt } from './Dsdt';
import { buildFacs, FACS_ALIGNMENT, FACS_LENGTH } from './Facs';
import { buildFadt, FADT_LENGTH } from './Fadt';
import { buildMadt } from './Madt';
import { buildRsdp, RSDP_LENGTH } from './Rsdp';
import { buildRsdt, rsdtLength } from './Rsdt';
import { buildXsdt, xsdtLength } from './Xsdt';

/** Alignment between tables. */
const TABLE_ALIGNMENT = 16;

/** One table placed in guest memory. */
export interface PlacedAcpiTable {
  /** `RSDP`, `RSDT`, `XSDT`, `FACS`, `DSDT`, `FACP` or `APIC`. */
  signature: string;
  addr: number;
  data: Uint8Array;
}

/** The ACPI tables and where they go. */
export interface AcpiTables {
  /** Address of the RSDP, for boot_params.acpi_rsdp_addr. */
  rsdpAddr: number;
  tables: PlacedAcpiTable[];
  /** First byte after the last table. */
  end: number;
}

/** What the tables describe. */
export interface AcpiTablesInput {
  cpus: number;
  /** IOAPIC id for the MADT. */
  ioapicId: number;
  pciDevices?: readonly PciDeviceDescription[];
  /** Where the RSDP goes (default 0xE0000). */
  base?: number;
  /** The tables must end at or below this address (default 0xF0000, the MP table overflow area). */
  limit?: number;
}

/** Build and place all ACPI tables. */
export function buildAcpiTables(input: AcpiTablesInput): AcpiTables {
  const base = input.base ?? RSDP_START;
  const limit = input.limit ?? MPTABLE_OVERFLOW_START;
  const dsdt = buildDsdt(input.pciDevices ?? []);
  const madt = buildMadt({ cpus: input.cpus, ioapicId: input.ioapicId });
  const pointed = 2; // FADT, MADT

  let next = base;
  const place = (length: number, align = TABLE_ALIGNMENT): number => {
    const addr = alignUp(next, align);
    next = addr + length;
    return addr;
  };
  const rsdpAddr = place(RSDP_LENGTH);
  const rsdtAddr = place(rsdtLength(pointed));
  const xsdtAddr = place(xsdtLength(pointed));
  const facsAddr = place(FACS_LENGTH, FACS_ALIGNMENT);
  const dsdtAddr = place(dsdt.length);
  const fadtAddr = place(FADT_LENGTH);
  const madtAddr = place(madt.length);
  if (next > limit) {
    throw new RangeError(`ACPI tables need ${next - base} bytes from 0x${base.toString(16)}, more than the ${limit - base} available`);
  }

  const tables: PlacedAcpiTable[] = [
    { signature: 'RSDP', addr: rsdpAddr, data: buildRsdp({ rsdtAddr, xsdtAddr }) },
    { signature: 'RSDT', addr: rsdtAddr, data: buildRsdt([fadtAddr, madtAddr]) },
    { signature: 'XSDT', addr: xsdtAddr, data: buildXsdt([fadtAddr, madtAddr]) },
    { signature: 'FACS', addr: facsAddr, data: buildFacs() },
    { signature: 'DSDT', addr: dsdtAddr, data: dsdt },
    { signature: 'FACP', addr: fadtAddr, data: buildFadt({ dsdtAddr, facsAddr }) },
    { signature: 'APIC', addr: madtAddr, data: madt },
  ];
  return { rsdpAddr, tables, end: next };
}
