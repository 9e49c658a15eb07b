/**
 * The Root System Description Pointer, ACPI 2.0+ form (36 bytes).
 *
 * Layout: ACPI 6.5 §5.2.5.3, Table 5.3. The first checksum covers bytes 0..19 (the ACPI 1.0
 * structure), the extended checksum the whole 36 bytes.
 * @module
 */

import { OEM_ID, checksumFor, setU64, writeAscii } from './AcpiTable';

/** RSDP length (revision 2). */
export const RSDP_LENGTH = 36;
/** RSDP revision 2 = ACPI 2.0 or later. */
export const RSDP_REVISION = 2;

/** RSDP field offsets (Table 5.3). */
export const RsdpOffset = {
  SIGNATURE: 0,
  CHECKSUM: 8,
  OEM_ID: 9,
  REVISION: 15,
  RSDT_ADDRESS: 16,
  LENGTH: 20,
  XSDT_ADDRESS: 24,
  EXTENDED_CHECKSUM: 32,
} as const;

/** Addresses the RSDP points to. */
export interface RsdpInput {
  /** 32-bit RSDT address (0 if none). */
  rsdtAddr: number;
  xsdtAddr: number;
}

/** Build the RSDP. */
export function buildRsdp(input: RsdpInput): Uint8Array {
  const bytes = new Uint8Array(RSDP_LENGTH);
  const view = new DataView(bytes.buffer);
  writeAscii(bytes, RsdpOffset.SIGNATURE, 'RSD PTR ', 8);
  writeAscii(bytes, RsdpOffset.OEM_ID, OEM_ID, 6);
  bytes[RsdpOffset.REVISION] = RSDP_REVISION;
  view.setUint32(RsdpOffset.RSDT_ADDRESS, input.rsdtAddr, true);
  view.setUint32(RsdpOffset.LENGTH, RSDP_LENGTH, true);
  setU64(view, RsdpOffset.XSDT_ADDRESS, input.xsdtAddr);
  bytes[RsdpOffset.CHECKSUM] = checksumFor(bytes, 0, 20);
  bytes[RsdpOffset.EXTENDED_CHECKSUM] = checksumFor(bytes, 0, RSDP_LENGTH);
  return bytes;
}
