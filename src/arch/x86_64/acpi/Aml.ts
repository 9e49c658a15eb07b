/**
 * A tiny AML (ACPI Machine Language) encoder: just the terms kvmkit's DSDT needs.
 *
 * Encodings from ACPI 6.5 §20 "ACPI Machine Language (AML) Specification" (grammar in §20.2)
 * and §6.4 "Resource Data Types for ACPI". Each function returns the encoded bytes; compose them
 * by passing the results as children. Unit tests compare the output with what `iasl` emits.
 * @module
 */

/** AML opcodes used here (ACPI 6.5 §20.3, Table 20.2). */
export const AmlOp = {
  ZERO: 0x00,
  ONE: 0x01,
  NAME: 0x08,
  BYTE_PREFIX: 0x0a,
  WORD_PREFIX: 0x0b,
  DWORD_PREFIX: 0x0c,
  STRING_PREFIX: 0x0d,
  QWORD_PREFIX: 0x0e,
  SCOPE: 0x10,
  BUFFER: 0x11,
  PACKAGE: 0x12,
  DUAL_NAME_PREFIX: 0x2e,
  MULTI_NAME_PREFIX: 0x2f,
  EXT_PREFIX: 0x5b,
  ROOT_CHAR: 0x5c,
  PARENT_PREFIX: 0x5e,
  /** Second byte of DeviceOp (0x5B 0x82). */
  EXT_DEVICE: 0x82,
} as const;

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * PkgLength for a term whose body (everything after the PkgLength) is `bodyLength` bytes
 * (§20.2.4). The encoded length counts the PkgLength bytes themselves: one byte up to 63, else a
 * lead byte holding the count of following bytes in bits 7..6 and the low nibble, then the rest
 * of the length 8 bits at a time.
 */
export function pkgLength(bodyLength: number): Uint8Array {
  if (bodyLength + 1 < 0x40) return Uint8Array.of(bodyLength + 1);
  for (let extra = 1; extra <= 3; extra++) {
    const total = bodyLength + 1 + extra;
    if (total < 2 ** (4 + 8 * extra)) {
      const out = new Uint8Array(1 + extra);
      out[0] = (extra << 6) | (total & 0x0f);
      for (let i = 1; i <= extra; i++) out[i] = (total >>> (4 + 8 * (i - 1))) & 0xff;
      return out;
    }
  }
  throw new RangeError(`AML package of ${bodyLength} bytes exceeds the 2^28 PkgLength limit`);
}

/** A 4-character NameSeg (§20.2.2): leading A-Z or `_`, then A-Z, 0-9 or `_`; shorter names are padded with `_`. */
export function nameSeg(name: string): Uint8Array {
  if (!/^[A-Z_][A-Z0-9_]{0,3}$/.test(name)) throw new RangeError(`invalid AML NameSeg "${name}"`);
  const padded = name.padEnd(4, '_');
  return Uint8Array.from(padded, (c) => c.charCodeAt(0));
}

/**
 * A NameString (§20.2.2): an optional `\` root prefix, then NameSegs separated by `.`, e.g.
 * `_S5_`, `\_SB_.PCI0`, `_SB.PCI0`.
 */
export function nameString(path: string): Uint8Array {
  const root = path.startsWith('\\');
  const segs = (root ? path.slice(1) : path).split('.').map(nameSeg);
  const prefix = root ? [Uint8Array.of(AmlOp.ROOT_CHAR)] : [];
  if (segs.length === 1) return concat([...prefix, segs[0]!]);
  if (segs.length === 2) return concat([...prefix, Uint8Array.of(AmlOp.DUAL_NAME_PREFIX), ...segs]);
  if (segs.length > 255) throw new RangeError(`AML name path "${path}" has too many segments`);
  return concat([...prefix, Uint8Array.of(AmlOp.MULTI_NAME_PREFIX, segs.length), ...segs]);
}

/** An integer constant in its shortest encoding: ZeroOp, OneOp, or Byte/Word/DWord/QWord prefix (§20.2.3). */
export function integer(value: number | bigint): Uint8Array {
  const v = BigInt(value);
  if (v < 0n || v > 0xffff_ffff_ffff_ffffn) throw new RangeError(`AML integer ${v} out of range`);
  if (v === 0n) return Uint8Array.of(AmlOp.ZERO);
  if (v === 1n) return Uint8Array.of(AmlOp.ONE);
  const [prefix, size] =
    v <= 0xffn ? [AmlOp.BYTE_PREFIX, 1] : v <= 0xffffn ? [AmlOp.WORD_PREFIX, 2] : v <= 0xffff_ffffn ? [AmlOp.DWORD_PREFIX, 4] : [AmlOp.QWORD_PREFIX, 8];
  const out = new Uint8Array(1 + size);
  out[0] = prefix;
  for (let i = 0; i < size; i++) out[1 + i] = Number((v >> BigInt(8 * i)) & 0xffn);
  return out;
}

/** A DWordConst, always 4 bytes of data even for small values (§20.2.3), as `EisaId()` and `_PRT` addresses are emitted. */
export function dword(value: number): Uint8Array {
  const out = new Uint8Array(5);
  out[0] = AmlOp.DWORD_PREFIX;
  new DataView(out.buffer).setUint32(1, value >>> 0, true);
  return out;
}

/** `Name (name, object)` (§20.2.5.1 DefName := NameOp NameString DataRefObject). */
export function name(path: string, object: Uint8Array): Uint8Array {
  return concat([Uint8Array.of(AmlOp.NAME), nameString(path), object]);
}

/** `Package (n) { elements }` (§20.2.5.4 DefPackage := PackageOp PkgLength NumElements PackageElementList). */
export function pkg(elements: readonly Uint8Array[]): Uint8Array {
  if (elements.length > 255) throw new RangeError(`AML Package with ${elements.length} elements needs VarPackage`);
  const body = concat([Uint8Array.of(elements.length), ...elements]);
  return concat([Uint8Array.of(AmlOp.PACKAGE), pkgLength(body.length), body]);
}

/** `Buffer (n) { bytes }` (§20.2.5.4 DefBuffer := BufferOp PkgLength BufferSize ByteList). */
export function buffer(bytes: Uint8Array): Uint8Array {
  const body = concat([integer(bytes.length), bytes]);
  return concat([Uint8Array.of(AmlOp.BUFFER), pkgLength(body.length), body]);
}

/** `Device (path) { children }` (§20.2.5.2 DefDevice := DeviceOp PkgLength NameString TermList). */
export function device(path: string, children: readonly Uint8Array[]): Uint8Array {
  const body = concat([nameString(path), ...children]);
  return concat([Uint8Array.of(AmlOp.EXT_PREFIX, AmlOp.EXT_DEVICE), pkgLength(body.length), body]);
}

/** `Scope (path) { children }` (§20.2.5.1 DefScope := ScopeOp PkgLength NameString TermList). */
export function scope(path: string, children: readonly Uint8Array[]): Uint8Array {
  const body = concat([nameString(path), ...children]);
  return concat([Uint8Array.of(AmlOp.SCOPE), pkgLength(body.length), body]);
}

/**
 * `EisaId ("PNP0A03")` (§19.6.35): three uppercase letters packed 5 bits each ('A' = 1) and four
 * hex digits, stored big-endian in a DWordConst.
 */
export function eisaId(id: string): Uint8Array {
  if (!/^[A-Z]{3}[0-9A-F]{4}$/.test(id)) throw new RangeError(`invalid EISA id "${id}"`);
  const c = (i: number): number => id.charCodeAt(i) - 0x40;
  const vendor = (c(0) << 10) | (c(1) << 5) | c(2);
  const product = parseInt(id.slice(3), 16);
  const bigEndian = ((vendor << 16) | product) >>> 0;
  const swapped = ((bigEndian & 0xff) << 24) | ((bigEndian & 0xff00) << 8) | ((bigEndian >>> 8) & 0xff00) | (bigEndian >>> 24);
  return dword(swapped >>> 0);
}

/** Join terms into one byte array (a TermList). */
export function terms(parts: readonly Uint8Array[]): Uint8Array {
  return concat(parts);
}

// ---- Resource descriptors (ACPI 6.5 §6.4) ----

/** Address space resource types (§6.4.3.5.1 Table 6.50 "Resource Type"). */
const ResourceType = { MEMORY: 0, IO: 1, BUS_NUMBER: 2 } as const;
/**
 * General flags of an address space descriptor for a bridge window (§6.4.3.5.1): bit 0 = 0
 * ResourceProducer, bit 1 = 0 PosDecode, bit 2 MinFixed, bit 3 MaxFixed.
 */
const PRODUCER_MIN_MAX_FIXED = 0b1100;

/** `IO (Decode16, min, max, align, length)`: I/O Port Descriptor, small item 0x47 (§6.4.2.5). */
export function ioPort(min: number, max: number, alignment: number, length: number): Uint8Array {
  const out = new Uint8Array(8);
  const v = new DataView(out.buffer);
  out[0] = 0x47;
  out[1] = 0x01; // bit 0: decodes 16-bit addresses
  v.setUint16(2, min, true);
  v.setUint16(4, max, true);
  out[6] = alignment;
  out[7] = length;
  return out;
}

/** A Word Address Space Descriptor, large item 0x88, length 13 (§6.4.3.5.3). */
function wordAddressSpace(type: number, typeFlags: number, min: number, max: number): Uint8Array {
  const out = new Uint8Array(16);
  const v = new DataView(out.buffer);
  out[0] = 0x88;
  v.setUint16(1, 13, true);
  out[3] = type;
  out[4] = PRODUCER_MIN_MAX_FIXED;
  out[5] = typeFlags;
  v.setUint16(6, 0, true); // granularity
  v.setUint16(8, min, true);
  v.setUint16(10, max, true);
  v.setUint16(12, 0, true); // translation offset
  v.setUint16(14, max - min + 1, true); // length
  return out;
}

/** `WordBusNumber (ResourceProducer, MinFixed, MaxFixed, PosDecode, 0, min, max, 0, n)` (§6.4.3.5.3, §19.6.151). */
export function wordBusNumber(min: number, max: number): Uint8Array {
  return wordAddressSpace(ResourceType.BUS_NUMBER, 0, min, max);
}

/** `WordIO (ResourceProducer, MinFixed, MaxFixed, PosDecode, EntireRange, 0, min, max, 0, n)`; type-specific flags _RNG=3 (§6.4.3.5.3, Table 6.52). */
export function wordIo(min: number, max: number): Uint8Array {
  return wordAddressSpace(ResourceType.IO, 0b11, min, max);
}

/**
 * `DWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed, NonCacheable, ReadWrite, 0, min, max, 0, n)`:
 * DWord Address Space Descriptor, large item 0x87, length 23 (§6.4.3.5.2); type-specific flags
 * _RW=1, _MEM=0 non-cacheable, _MTP=0 AddressRangeMemory (Table 6.51).
 */
export function dwordMemory(min: number, max: number): Uint8Array {
  const out = new Uint8Array(26);
  const v = new DataView(out.buffer);
  out[0] = 0x87;
  v.setUint16(1, 23, true);
  out[3] = ResourceType.MEMORY;
  out[4] = PRODUCER_MIN_MAX_FIXED;
  out[5] = 0x01; // read/write, non-cacheable
  v.setUint32(6, 0, true); // granularity
  v.setUint32(10, min >>> 0, true);
  v.setUint32(14, max >>> 0, true);
  v.setUint32(18, 0, true); // translation offset
  v.setUint32(22, (max - min + 1) >>> 0, true);
  return out;
}

/** `ResourceTemplate () { descriptors }`: a Buffer ending with an End Tag, small item 0x79 with checksum 0 (§6.4.2.9). */
export function resourceTemplate(descriptors: readonly Uint8Array[]): Uint8Array {
  return buffer(concat([...descriptors, Uint8Array.of(0x79, 0x00)]));
}
