/**
 * MSR values for a vCPU before its first run, like Firecracker's `create_boot_msr_entries`
 * (arch/src/x86_64/msr.rs). Indices from Linux arch/x86/include/asm/msr-index.h and the Intel SDM
 * Vol. 4 "Model-Specific Registers".
 * @module
 */

import type { MsrEntry } from './types';

/** MSR indices (msr-index.h). */
export const Msr = {
  /** Time-stamp counter. */
  IA32_TSC: 0x10,
  IA32_SYSENTER_CS: 0x174,
  IA32_SYSENTER_ESP: 0x175,
  IA32_SYSENTER_EIP: 0x176,
  /** Miscellaneous feature enables. */
  IA32_MISC_ENABLE: 0x1a0,
  /** Default memory type for ranges no MTRR covers (msr-index.h `MSR_MTRRdefType`). */
  MTRR_DEF_TYPE: 0x2ff,
  /** SYSCALL target segments (legacy mode SYSCALL/SYSRET CS/SS). */
  STAR: 0xc000_0081,
  /** 64-bit SYSCALL target RIP. */
  LSTAR: 0xc000_0082,
  /** Compatibility-mode SYSCALL target RIP. */
  CSTAR: 0xc000_0083,
  /** RFLAGS mask applied by SYSCALL (msr-index.h `MSR_SYSCALL_MASK`). */
  SYSCALL_MASK: 0xc000_0084,
  /** GS base swapped in by SWAPGS. */
  KERNEL_GS_BASE: 0xc000_0102,
} as const;

/** IA32_MISC_ENABLE bit 0: fast-strings enable (msr-index.h `MSR_IA32_MISC_ENABLE_FAST_STRING`). */
export const MISC_ENABLE_FAST_STRING = 1n << 0n;
/** IA32_MTRR_DEF_TYPE bit 11: MTRRs enabled (SDM Vol. 3A §12.11.2.1). */
export const MTRR_ENABLE = 1n << 11n;
/** Memory type write-back (SDM Vol. 3A Table 12-8), in IA32_MTRR_DEF_TYPE bits 7:0. */
export const MTRR_TYPE_WRITEBACK = 6n;

/**
 * The boot MSRs: SYSENTER/SYSCALL state and the TSC zeroed, fast strings on, and MTRRs enabled
 * with write-back as the default type (so all of RAM is cacheable before the kernel sets MTRRs).
 * Returns a new array each call.
 */
export function bootMsrs(): MsrEntry[] {
  const zero = (index: number): MsrEntry => ({ index, data: 0n });
  return [
    zero(Msr.IA32_SYSENTER_CS),
    zero(Msr.IA32_SYSENTER_ESP),
    zero(Msr.IA32_SYSENTER_EIP),
    zero(Msr.STAR),
    zero(Msr.CSTAR),
    zero(Msr.KERNEL_GS_BASE),
    zero(Msr.SYSCALL_MASK),
    zero(Msr.LSTAR),
    zero(Msr.IA32_TSC),
    { index: Msr.IA32_MISC_ENABLE, data: MISC_ENABLE_FAST_STRING },
    { index: Msr.MTRR_DEF_TYPE, data: MTRR_ENABLE | MTRR_TYPE_WRITEBACK },
  ];
}
