/**
 * Initial registers of the bootstrap processor for the Linux 64-bit boot protocol
 * (Documentation/arch/x86/boot.rst "64-bit BOOT PROTOCOL"): long mode with paging on, an
 * identity map covering the kernel, boot_params and the command line, flat segments from a
 * loaded GDT, interrupts off, RSI = boot_params. Values as Firecracker's regs.rs
 * (`setup_regs`, `configure_segments_and_sregs`, `setup_page_tables`); bit numbers from the Intel
 * SDM Vol. 3A §2.5 (CR0, CR4) and §2.2.1 / Linux msr-index.h (EFER).
 * @module
 */

import { bootGdtr, bootSegments } from './Gdt';
import { BOOT_STACK_POINTER, IDT_START, KERNEL_64BIT_ENTRY_OFFSET, KERNEL_START, PML4_START, ZERO_PAGE_START } from './Layout';
import type { X86Fpu, X86Regs, X86Sregs } from './types';

/** CR0 bits (SDM Vol. 3A §2.5). */
export const Cr0 = {
  /** Protection enable. */
  PE: 0x1,
  /** Extension type: always 1 on modern CPUs. */
  ET: 0x10,
  /** Native x87 error reporting (what Linux sets itself, CR0_STATE in asm/processor-flags.h). */
  NE: 0x20,
  /** Paging. */
  PG: 0x8000_0000,
} as const;
/** CR4.PAE (bit 5): required for long mode. */
export const CR4_PAE = 0x20;
/** EFER bits (msr-index.h `EFER_LME`, `EFER_LMA`). */
export const Efer = { LME: 0x100, LMA: 0x400 } as const;
/** RFLAGS with only the reserved bit 1 set (interrupts disabled). */
export const RFLAGS_RESERVED = 0x2;

/**
 * CR0 kvmkit sets: PE | ET | NE | PG = 0x8000_0031. Firecracker ORs PE and PG into KVM's reset
 * value 0x6000_0010, which also leaves CD and NW (caches disabled) set; kvmkit starts with caches on.
 */
export const BOOT_CR0 = (Cr0.PE | Cr0.ET | Cr0.NE | Cr0.PG) >>> 0;
/** CR4 kvmkit sets. */
export const BOOT_CR4 = CR4_PAE;
/** EFER kvmkit sets: long mode enabled and active. */
export const BOOT_EFER = Efer.LME | Efer.LMA;
/** IDT limit: one 8-byte null descriptor (Firecracker); any exception before the kernel's own IDT is a triple fault. */
export const BOOT_IDT_LIMIT = 7;

/** x87/SSE state for every vCPU: FCW 0x37F (all exceptions masked, extended precision) and MXCSR 0x1F80 (all masked), the reset values (SDM Vol. 1 §8.1.5, §10.2.3.1). */
export function bootFpu(): X86Fpu {
  return { fcw: 0x37f, mxcsr: 0x1f80 };
}

/** General-purpose registers of the BSP: RIP at the 64-bit entry, stack at 0x8FF0, RSI = boot_params. */
export function bootRegs(): X86Regs {
  return {
    rip: KERNEL_START + KERNEL_64BIT_ENTRY_OFFSET,
    rsp: BOOT_STACK_POINTER,
    rbp: BOOT_STACK_POINTER,
    rsi: ZERO_PAGE_START,
    rflags: RFLAGS_RESERVED,
  };
}

/** Special registers of the BSP: segments from the boot GDT, GDTR/IDTR, long mode with paging. */
export function bootSregs(): X86Sregs {
  return {
    ...bootSegments(),
    gdt: bootGdtr(),
    idt: { base: IDT_START, limit: BOOT_IDT_LIMIT },
    cr0: BOOT_CR0,
    cr3: PML4_START,
    cr4: BOOT_CR4,
    efer: BOOT_EFER,
  };
}
