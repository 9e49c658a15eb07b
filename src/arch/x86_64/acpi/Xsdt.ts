/**
 * The Extended System Description Table (signature `XSDT`): 64-bit pointers to the other tables.
 *
 * Layout: ACPI 6.5 §5.2.8, Table 5.6.
 * @module
 */

import { ACPI_HEADER_SIZE, newAcpiTable, sealAcpiTable, setU64 } from './AcpiTable';

/** XSDT revision (Table 5.6). */
export const XSDT_REVISION = 1;

/** Size of an XSDT with `count` entries. */
export function xsdtLength(count: number): number {
  return ACPI_HEADER_SIZE + 8 * count;
}

/** Build the XSDT listing `tables`. */
export function buildXsdt(tables: readonly number[]): Uint8Array {
  const { bytes, view } = newAcpiTable({ signature: 'XSDT', revision: XSDT_REVISION, oemTableId: 'KVMKXSDT' }, xsdtLength(tables.length));
  tables.forEach((addr, i) => setU64(view, ACPI_HEADER_SIZE + 8 * i, addr));
  return sealAcpiTable(bytes);
}
