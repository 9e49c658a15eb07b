/**
 * Encoders and decoders for the KVM structures kvmkit exchanges with the kernel, at the fixed
 * offsets of arch/x86/include/uapi/asm/kvm.h (x86_64). DataViews at fixed offsets: koffi's struct
 * decoding costs ~250 ns per field (DESIGN.md), these cost almost nothing.
 * @module
 */
import type { CpuidEntry, MsrEntry, X86DescriptorTable, X86Regs, X86Segment, X86Sregs } from '../../arch/x86_64/types';

const big = (n: number): bigint => BigInt(n);
const num = (b: bigint): number => Number(b);

/** struct kvm_regs field order (asm/kvm.h): 18 × u64. */
export const REGS_FIELDS = [
  'rax', 'rbx', 'rcx', 'rdx', 'rsi', 'rdi', 'rsp', 'rbp',
  'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15', 'rip', 'rflags',
] as const;
/** sizeof(struct kvm_regs) */
export const REGS_SIZE = 144;

/** All general registers, as read back from a vCPU (bigint: values use the full 64 bits). */
export type FullRegs = Record<(typeof REGS_FIELDS)[number], bigint>;

export function decodeRegs(buf: Uint8Array): FullRegs {
  const dv = new DataView(buf.buffer, buf.byteOffset, REGS_SIZE);
  const out = {} as FullRegs;
  REGS_FIELDS.forEach((f, i) => (out[f] = dv.getBigUint64(i * 8, true)));
  return out;
}

/** Overwrite the given fields of a kvm_regs buffer. */
export function patchRegs(buf: Uint8Array, regs: X86Regs): void {
  const dv = new DataView(buf.buffer, buf.byteOffset, REGS_SIZE);
  REGS_FIELDS.forEach((f, i) => {
    const v = (regs as Record<string, number | undefined>)[f];
    if (v !== undefined) dv.setBigUint64(i * 8, big(v), true);
  });
}

/** sizeof(struct kvm_sregs) and offsets (asm/kvm.h). */
export const SREGS_SIZE = 312;
const SEG_OFFSETS = { cs: 0, ds: 24, es: 48, fs: 72, gs: 96, ss: 120, tr: 144, ldt: 168 } as const;
const GDT_OFF = 192;
const IDT_OFF = 208;
const CR_OFFSETS = { cr0: 224, cr2: 232, cr3: 240, cr4: 248, cr8: 256, efer: 264, apic_base: 272 } as const;

function writeSegment(dv: DataView, off: number, s: X86Segment): void {
  // struct kvm_segment: base u64, limit u32, selector u16, type, present, dpl, db, s, l, g, avl, unusable, padding (u8)
  dv.setBigUint64(off, big(s.base), true);
  dv.setUint32(off + 8, s.limit >>> 0, true);
  dv.setUint16(off + 12, s.selector, true);
  dv.setUint8(off + 14, s.type);
  dv.setUint8(off + 15, s.present);
  dv.setUint8(off + 16, s.dpl);
  dv.setUint8(off + 17, s.db);
  dv.setUint8(off + 18, s.s);
  dv.setUint8(off + 19, s.l);
  dv.setUint8(off + 20, s.g);
  dv.setUint8(off + 21, s.avl);
  dv.setUint8(off + 22, s.unusable ?? 0);
}

function writeDtable(dv: DataView, off: number, t: X86DescriptorTable): void {
  // struct kvm_dtable: base u64, limit u16, padding[3] u16
  dv.setBigUint64(off, big(t.base), true);
  dv.setUint16(off + 8, t.limit, true);
}

/** Overwrite the given fields of a kvm_sregs buffer (read with KVM_GET_SREGS first). */
export function patchSregs(buf: Uint8Array, s: X86Sregs): void {
  const dv = new DataView(buf.buffer, buf.byteOffset, SREGS_SIZE);
  for (const k of ['cs', 'ds', 'es', 'fs', 'gs', 'ss', 'tr'] as const) {
    const seg = s[k];
    if (seg) writeSegment(dv, SEG_OFFSETS[k], seg);
  }
  if (s.gdt) writeDtable(dv, GDT_OFF, s.gdt);
  if (s.idt) writeDtable(dv, IDT_OFF, s.idt);
  for (const k of ['cr0', 'cr3', 'cr4', 'efer'] as const) {
    const v = s[k];
    if (v !== undefined) dv.setBigUint64(CR_OFFSETS[k], big(v), true);
  }
}

/** The control registers of a kvm_sregs buffer, for crash reports. */
export function decodeControlRegs(buf: Uint8Array): Record<keyof typeof CR_OFFSETS | 'cs_base' | 'cs_selector' | 'cs_l' | 'cs_db', bigint> {
  const dv = new DataView(buf.buffer, buf.byteOffset, SREGS_SIZE);
  const out = {} as Record<string, bigint>;
  for (const [k, off] of Object.entries(CR_OFFSETS)) out[k] = dv.getBigUint64(off, true);
  out.cs_base = dv.getBigUint64(0, true);
  out.cs_selector = big(dv.getUint16(12, true));
  out.cs_l = big(dv.getUint8(19));
  out.cs_db = big(dv.getUint8(17));
  return out as Record<keyof typeof CR_OFFSETS | 'cs_base' | 'cs_selector' | 'cs_l' | 'cs_db', bigint>;
}

/** sizeof(struct kvm_fpu); fcw at 128, mxcsr at 408 (asm/kvm.h). */
export const FPU_SIZE = 416;
export const FPU_FCW_OFF = 128;
export const FPU_MXCSR_OFF = 408;

/** sizeof(struct kvm_cpuid_entry2) (asm/kvm.h). */
export const CPUID_ENTRY_SIZE = 40;

/** Encode struct kvm_cpuid2 { nent u32, padding u32, entries[] }. */
export function encodeCpuid2(entries: CpuidEntry[], capacity = entries.length): Uint8Array {
  const buf = new Uint8Array(8 + capacity * CPUID_ENTRY_SIZE);
  const dv = new DataView(buf.buffer);
  dv.setUint32(0, capacity, true);
  entries.forEach((e, i) => {
    const o = 8 + i * CPUID_ENTRY_SIZE;
    dv.setUint32(o, e.function >>> 0, true);
    dv.setUint32(o + 4, e.index >>> 0, true);
    dv.setUint32(o + 8, e.flags >>> 0, true);
    dv.setUint32(o + 12, e.eax >>> 0, true);
    dv.setUint32(o + 16, e.ebx >>> 0, true);
    dv.setUint32(o + 20, e.ecx >>> 0, true);
    dv.setUint32(o + 24, e.edx >>> 0, true);
  });
  return buf;
}

/** Decode struct kvm_cpuid2 as filled by KVM_GET_SUPPORTED_CPUID. */
export function decodeCpuid2(buf: Uint8Array): CpuidEntry[] {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const n = dv.getUint32(0, true);
  const out: CpuidEntry[] = [];
  for (let i = 0; i < n; i++) {
    const o = 8 + i * CPUID_ENTRY_SIZE;
    out.push({
      function: dv.getUint32(o, true),
      index: dv.getUint32(o + 4, true),
      flags: dv.getUint32(o + 8, true),
      eax: dv.getUint32(o + 12, true),
      ebx: dv.getUint32(o + 16, true),
      ecx: dv.getUint32(o + 20, true),
      edx: dv.getUint32(o + 24, true),
    });
  }
  return out;
}

/** Encode struct kvm_msrs { nmsrs u32, pad u32, entries[]: { index u32, reserved u32, data u64 } }. */
export function encodeMsrs(msrs: MsrEntry[]): Uint8Array {
  const buf = new Uint8Array(8 + msrs.length * 16);
  const dv = new DataView(buf.buffer);
  dv.setUint32(0, msrs.length, true);
  msrs.forEach((m, i) => {
    dv.setUint32(8 + i * 16, m.index >>> 0, true);
    dv.setBigUint64(8 + i * 16 + 8, m.data, true);
  });
  return buf;
}

/** struct kvm_userspace_memory_region (linux/kvm.h). */
export function encodeMemoryRegion(slot: number, flags: number, guestPhys: number, size: number, userAddr: number | bigint): Uint8Array {
  const buf = new Uint8Array(32);
  const dv = new DataView(buf.buffer);
  dv.setUint32(0, slot, true);
  dv.setUint32(4, flags, true);
  dv.setBigUint64(8, big(guestPhys), true);
  dv.setBigUint64(16, big(size), true);
  dv.setBigUint64(24, BigInt(userAddr), true);
  return buf;
}

/** struct kvm_vcpu_events (asm/kvm.h): exception.injected at 0, nr at 1, has_error_code at 2, pending at 3, error_code at 4. */
export const VCPU_EVENTS_SIZE = 64;
export const EV_EXCEPTION_INJECTED = 0;
export const EV_EXCEPTION_NR = 1;
export const EV_EXCEPTION_HAS_ERROR_CODE = 2;

/** struct kvm_translation (linux/kvm.h): linear_address u64 in; physical_address u64, valid u8, writeable u8, usermode u8 out. */
export const TRANSLATION_SIZE = 24;

/** General and control registers as `0x…` strings, the form crash reports and `registers()` use. */
export function registerDump(...sets: Record<string, bigint>[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const set of sets) for (const [k, v] of Object.entries(set)) out[k] = `0x${v.toString(16)}`;
  return out;
}

export { num as bigToNumber };
