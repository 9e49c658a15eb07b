/**
 * x86_64 initial vCPU state as plain data. Layouts produce it; `vm/` applies it with
 * KVM_SET_REGS / KVM_SET_SREGS / KVM_SET_CPUID2 / KVM_SET_MSRS / KVM_SET_FPU / KVM_SET_LAPIC.
 * Field names follow struct kvm_regs / kvm_sregs / kvm_segment in linux/arch/x86/include/uapi/asm/kvm.h.
 * @module
 */

/** General-purpose registers (struct kvm_regs). Unset fields are left as KVM reset them. */
export interface X86Regs {
  rax?: number; rbx?: number; rcx?: number; rdx?: number;
  rsi?: number; rdi?: number; rsp?: number; rbp?: number;
  rip?: number; rflags?: number;
}

/** A segment register (struct kvm_segment). */
export interface X86Segment {
  base: number;
  limit: number;
  selector: number;
  type: number;
  present: number;
  dpl: number;
  db: number;
  s: number;
  l: number;
  g: number;
  avl: number;
  unusable?: number;
}

/** A descriptor-table register (struct kvm_dtable). */
export interface X86DescriptorTable {
  base: number;
  limit: number;
}

/** Special registers (struct kvm_sregs); fields left undefined keep KVM's values. */
export interface X86Sregs {
  cs?: X86Segment; ds?: X86Segment; es?: X86Segment; fs?: X86Segment; gs?: X86Segment; ss?: X86Segment;
  tr?: X86Segment;
  gdt?: X86DescriptorTable;
  idt?: X86DescriptorTable;
  cr0?: number; cr3?: number; cr4?: number; efer?: number;
}

/** One CPUID leaf (struct kvm_cpuid_entry2). */
export interface CpuidEntry {
  function: number;
  index: number;
  /** KVM_CPUID_FLAG_SIGNIFCANT_INDEX = 1 (asm/kvm.h). */
  flags: number;
  eax: number;
  ebx: number;
  ecx: number;
  edx: number;
}

/** One MSR value (struct kvm_msr_entry). */
export interface MsrEntry {
  index: number;
  data: bigint;
}

/** FPU state fields kvmkit sets (struct kvm_fpu). */
export interface X86Fpu {
  fcw: number;
  mxcsr: number;
}

/** Everything one x86_64 vCPU needs before its first KVM_RUN. */
export interface X86VcpuInit {
  /** APIC id of this vCPU (equals its index). */
  apicId: number;
  /** Registers, for the bootstrap processor only; application processors wait for INIT/SIPI. */
  regs?: X86Regs;
  sregs?: X86Sregs;
  fpu: X86Fpu;
  msrs: MsrEntry[];
}
