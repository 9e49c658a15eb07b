/**
 * The boot GDT and the segment registers derived from it.
 *
 * Descriptors are Firecracker's (`arch/src/x86_64/regs.rs`, LinuxBoot): a flat 64-bit code
 * segment, a flat data segment and a busy TSS. The bit layout of a segment descriptor is
 * Intel SDM Vol. 3A §3.4.5 ("Segment Descriptors", Figure 3-8).
 * @module
 */

import type { X86DescriptorTable, X86Segment } from './types';
import { GDT_START } from './Layout';

/** Build a descriptor from its flags (type/S/DPL/P in bits 0..7, AVL/L/D/G in bits 12..15), base and limit (Firecracker `gdt_entry`). */
export function gdtEntry(flags: number, base: number, limit: number): bigint {
  const b = BigInt(base >>> 0);
  const l = BigInt(limit >>> 0);
  const f = BigInt(flags & 0xf0ff);
  return (
    ((b & 0xff00_0000n) << 32n) | // base 31:24 -> bits 63:56
    (f << 40n) | // access byte -> bits 47:40, flags nibble -> bits 55:52
    ((l & 0xf_0000n) << 32n) | // limit 19:16 -> bits 51:48
    ((b & 0x00ff_ffffn) << 16n) | // base 23:0 -> bits 39:16
    (l & 0xffffn) // limit 15:0 -> bits 15:0
  );
}

/** GDT index 0: the mandatory null descriptor. */
export const GDT_NULL = 0n;
/** GDT index 1: 64-bit code, execute/read, accessed, DPL 0, L=1, G=1 (flags 0xa09b). */
export const GDT_CODE64 = gdtEntry(0xa09b, 0, 0xfffff);
/** GDT index 2: data, read/write, accessed, D/B=1, G=1 (flags 0xc093). */
export const GDT_DATA = gdtEntry(0xc093, 0, 0xfffff);
/** GDT index 3: 64-bit TSS (busy), G=1 (flags 0x808b). KVM needs a usable TR to enter the guest. */
export const GDT_TSS = gdtEntry(0x808b, 0, 0xfffff);

/** The boot GDT, in order. */
export const BOOT_GDT: readonly bigint[] = [GDT_NULL, GDT_CODE64, GDT_DATA, GDT_TSS];

/** Selectors (index * 8, TI=0, RPL=0) of the boot GDT. */
export const Selector = { CODE: 0x08, DATA: 0x10, TSS: 0x18 } as const;

/** The GDT as bytes (8 little-endian bytes per descriptor). */
export function gdtBytes(table: readonly bigint[] = BOOT_GDT): Uint8Array {
  const bytes = new Uint8Array(table.length * 8);
  const view = new DataView(bytes.buffer);
  table.forEach((entry, i) => view.setBigUint64(i * 8, entry, true));
  return bytes;
}

/** The GDTR value for {@link BOOT_GDT} at {@link GDT_START}. */
export function bootGdtr(): X86DescriptorTable {
  return { base: GDT_START, limit: BOOT_GDT.length * 8 - 1 };
}

const bit = (entry: bigint, n: bigint): number => Number((entry >> n) & 1n);

/**
 * Decode a segment descriptor into the kvm_segment KVM_SET_SREGS takes (Firecracker
 * `kvm_segment_from_gdt`). With G=1 the limit is in 4 KiB units and is scaled to bytes.
 * A descriptor that is not present is marked unusable.
 *
 * @param entry The 8-byte descriptor.
 * @param index Its GDT index; the selector is `index * 8`.
 */
export function decodeSegment(entry: bigint, index: number): X86Segment {
  const base = Number(((entry >> 32n) & 0xff00_0000n) | ((entry >> 16n) & 0x00ff_ffffn));
  const rawLimit = Number(((entry >> 32n) & 0xf_0000n) | (entry & 0xffffn));
  const g = bit(entry, 55n);
  const present = bit(entry, 47n);
  return {
    base,
    limit: g ? rawLimit * 0x1000 + 0xfff : rawLimit,
    selector: index * 8,
    type: Number((entry >> 40n) & 0xfn),
    present,
    dpl: Number((entry >> 45n) & 3n),
    db: bit(entry, 54n),
    s: bit(entry, 44n),
    l: bit(entry, 53n),
    g,
    avl: bit(entry, 52n),
    unusable: present ? 0 : 1,
  };
}

/** Segment registers for the 64-bit boot: CS = code, DS/ES/FS/GS/SS = data, TR = TSS. */
export interface BootSegments {
  cs: X86Segment;
  ds: X86Segment;
  es: X86Segment;
  fs: X86Segment;
  gs: X86Segment;
  ss: X86Segment;
  tr: X86Segment;
}

/** The segment registers derived from {@link BOOT_GDT}. */
export function bootSegments(): BootSegments {
  const code = decodeSegment(GDT_CODE64, Selector.CODE / 8);
  const data = (): X86Segment => decodeSegment(GDT_DATA, Selector.DATA / 8);
  return { cs: code, ds: data(), es: data(), fs: data(), gs: data(), ss: data(), tr: decodeSegment(GDT_TSS, Selector.TSS / 8) };
}
