/**
 * Helpers shared by the ACPI table builders: the common System Description Table header,
 * checksums and Generic Address Structures.
 *
 * References are to the ACPI Specification 6.5 (uefi.org/specs/ACPI/6.5).
 * @module
 */

/** Size of the System Description Table header (ACPI 6.5 §5.2.6, Table 5.4). */
export const ACPI_HEADER_SIZE = 36;

/** System Description Table header offsets (ACPI 6.5 §5.2.6, Table 5.4). */
export const AcpiHeaderOffset = {
  SIGNATURE: 0,
  LENGTH: 4,
  REVISION: 8,
  CHECKSUM: 9,
  OEM_ID: 10,
  OEM_TABLE_ID: 16,
  OEM_REVISION: 24,
  CREATOR_ID: 28,
  CREATOR_REVISION: 32,
} as const;

/** OEM ID in every kvmkit table (6 characters). */
export const OEM_ID = 'KVMKIT';
/** OEM revision of every kvmkit table. */
export const OEM_REVISION = 1;
/** Creator ID (the "ASL compiler" vendor, 4 characters). */
export const CREATOR_ID = 'KVMK';
/** Creator revision. */
export const CREATOR_REVISION = 1;

/** Sum of `bytes[start..end)` modulo 256. */
export function byteSum(bytes: Uint8Array, start = 0, end = bytes.length): number {
  let sum = 0;
  for (let i = start; i < end; i++) sum = (sum + bytes[i]!) & 0xff;
  return sum;
}

/** The byte that makes `bytes[start..end)` sum to 0 mod 256 when the checksum byte inside it is 0. */
export function checksumFor(bytes: Uint8Array, start = 0, end = bytes.length): number {
  return (0x100 - byteSum(bytes, start, end)) & 0xff;
}

/** Write ASCII `text` at `offset`, padded with spaces to `width` bytes. */
export function writeAscii(bytes: Uint8Array, offset: number, text: string, width: number): void {
  if (text.length > width) throw new RangeError(`"${text}" is longer than ${width} characters`);
  for (let i = 0; i < width; i++) bytes[offset + i] = i < text.length ? text.charCodeAt(i) & 0x7f : 0x20;
}

/** Store a u64 given as a JS number (< 2^53). */
export function setU64(view: DataView, offset: number, value: number): void {
  view.setBigUint64(offset, BigInt(value), true);
}

/** Identity of a System Description Table. */
export interface AcpiTableId {
  /** 4-character signature, e.g. `FACP`. */
  signature: string;
  revision: number;
  /** Up to 8 characters (padded with spaces). */
  oemTableId: string;
}

/** A zero-filled table of `length` bytes with its header written (checksum still 0). */
export function newAcpiTable(id: AcpiTableId, length: number): { bytes: Uint8Array; view: DataView } {
  if (id.signature.length !== 4) throw new RangeError(`ACPI signature "${id.signature}" is not 4 characters`);
  const bytes = new Uint8Array(length);
  const view = new DataView(bytes.buffer);
  writeAscii(bytes, AcpiHeaderOffset.SIGNATURE, id.signature, 4);
  view.setUint32(AcpiHeaderOffset.LENGTH, length, true);
  view.setUint8(AcpiHeaderOffset.REVISION, id.revision);
  writeAscii(bytes, AcpiHeaderOffset.OEM_ID, OEM_ID, 6);
  writeAscii(bytes, AcpiHeaderOffset.OEM_TABLE_ID, id.oemTableId, 8);
  view.setUint32(AcpiHeaderOffset.OEM_REVISION, OEM_REVISION, true);
  writeAscii(bytes, AcpiHeaderOffset.CREATOR_ID, CREATOR_ID, 4);
  view.setUint32(AcpiHeaderOffset.CREATOR_REVISION, CREATOR_REVISION, true);
  return { bytes, view };
}

/** Set the header checksum so the whole table sums to 0 (ACPI 6.5 §5.2.6). Returns `bytes`. */
export function sealAcpiTable(bytes: Uint8Array): Uint8Array {
  bytes[AcpiHeaderOffset.CHECKSUM] = 0;
  bytes[AcpiHeaderOffset.CHECKSUM] = checksumFor(bytes);
  return bytes;
}

/** Address space ids of a Generic Address Structure (ACPI 6.5 §5.2.3.2, Table 5.1). */
export const AddressSpace = { SYSTEM_MEMORY: 0, SYSTEM_IO: 1 } as const;
/** Access sizes of a Generic Address Structure (Table 5.1). */
export const AccessSize = { UNDEFINED: 0, BYTE: 1, WORD: 2, DWORD: 3, QWORD: 4 } as const;
/** Size of a Generic Address Structure. */
export const GAS_SIZE = 12;

/** A Generic Address Structure (ACPI 6.5 §5.2.3.2). */
export interface GenericAddress {
  spaceId: number;
  bitWidth: number;
  bitOffset: number;
  accessSize: number;
  address: number;
}

/** Write a Generic Address Structure at `offset`. */
export function writeGas(view: DataView, offset: number, gas: GenericAddress): void {
  view.setUint8(offset, gas.spaceId);
  view.setUint8(offset + 1, gas.bitWidth);
  view.setUint8(offset + 2, gas.bitOffset);
  view.setUint8(offset + 3, gas.accessSize);
  setU64(view, offset + 4, gas.address);
}

/** A system I/O port register of `bytes` bytes, accessed in units of `accessBytes`. */
export function ioPortGas(port: number, bytes: number, accessBytes: number): GenericAddress {
  const accessSize = { 1: AccessSize.BYTE, 2: AccessSize.WORD, 4: AccessSize.DWORD }[accessBytes];
  if (accessSize === undefined) throw new RangeError(`unsupported access width ${accessBytes}`);
  return { spaceId: AddressSpace.SYSTEM_IO, bitWidth: bytes * 8, bitOffset: 0, accessSize, address: port };
}
