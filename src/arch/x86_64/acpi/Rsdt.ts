/**
 * The Root System Description Table (signature `RSDT`): 32-bit pointers to the other tables.
 *
 * Layout: ACPI 6.5 §5.2.7, Table 5.5. Operating systems that understand ACPI 2.0 use the
 * XSDT; the RSDT is there for simple 32-bit parsers (such as a test guest).
 * @module
 */

import { ACPI_HEADER_SIZE, newAcpiTable, sealAcpiTable } from './AcpiTable';

/** RSDT revision (Table 5.5). */
export const RSDT_REVISION = 1;

/** Size of an RSDT with `count` entries. */
export function rsdtLength(count: number): number {
  return ACPI_HEADER_SIZE + 4 * count;
}

/** Build the RSDT listing `tables` (physical addresses below 4 GiB). */
export function buildRsdt(tables: readonly number[]): Uint8Array {
  const { bytes, view } = newAcpiTable({ signature: 'RSDT', revision: RSDT_REVISION, oemTableId: 'KVMKRSDT' }, rsdtLength(tables.length));
  tables.forEach((addr, i) => {
    if (addr > 0xffff_ffff) throw new RangeError(`RSDT entry 0x${addr.toString(16)} is above 4 GiB`);
    view.setUint32(ACPI_HEADER_SIZE + 4 * i, addr, true);
  });
  return sealAcpiTable(bytes);
}
