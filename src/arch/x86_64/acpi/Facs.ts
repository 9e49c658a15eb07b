/**
 * The Firmware ACPI Control Structure (signature `FACS`), 64 bytes, no checksum.
 *
 * Layout: ACPI 6.5 §5.2.10, Table 5.14. It must be 64-byte aligned. kvmkit has no firmware
 * waking vector (no S3) and no global lock owner, so everything but the signature, length and
 * version is zero; it exists because non-hardware-reduced platforms are expected to have one
 * (QEMU and crosvm provide it too).
 * @module
 */

import { writeAscii } from './AcpiTable';

/** FACS length. */
export const FACS_LENGTH = 64;
/** Required alignment of the FACS. */
export const FACS_ALIGNMENT = 64;
/** FACS version (ACPI 6.5 Table 5.14: 2 for ACPI 4.0+ without 64-bit wake support flags in use). */
export const FACS_VERSION = 2;

/** Build the FACS. */
export function buildFacs(): Uint8Array {
  const bytes = new Uint8Array(FACS_LENGTH);
  const view = new DataView(bytes.buffer);
  writeAscii(bytes, 0, 'FACS', 4);
  view.setUint32(4, FACS_LENGTH, true); // Length
  view.setUint32(8, 0, true); // Hardware Signature
  bytes[32] = FACS_VERSION; // Version
  return bytes;
}
