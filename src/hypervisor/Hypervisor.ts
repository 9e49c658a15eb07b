/**
 * The hypervisor abstraction: what `vm/` needs from KVM, as interfaces, so that the machine model
 * does not depend on ioctl details. `kvm/` implements them on /dev/kvm.
 * @module
 */
import type { CpuidEntry, MsrEntry, X86Fpu, X86Regs, X86Sregs } from '../arch/x86_64/types';
import type { FullRegs } from './kvm/structs';
import type { IoeventfdBinding } from './kvm/Ioeventfd';
import type { IrqRoute } from './kvm/IrqRouting';

/** A hypervisor: opens VMs. */
export interface Hypervisor {
  /** True on a paravirtual nested KVM (kvm_pvm) where kvmkit applies the DESIGN.md recoveries. */
  readonly paravirtual: boolean;
  /** KVM_GET_SUPPORTED_CPUID. */
  supportedCpuid(): CpuidEntry[];
  /** Size of each vCPU's kvm_run mapping. */
  readonly vcpuMmapSize: number;
  createVm(): Vm;
  close(): void;
}

/** A virtual machine: memory slots, interrupt controller, vCPUs. */
export interface Vm {
  readonly fd: number;
  /** Map host memory at `hostAddress` as guest-physical `[guestAddress, guestAddress + size)`. */
  setUserMemoryRegion(slot: number, guestAddress: number, size: number, hostAddress: number | bigint): void;
  /** x86: KVM_SET_TSS_ADDR + KVM_SET_IDENTITY_MAP_ADDR, needed before vCPUs run on Intel hosts. */
  setTssAddress(address: number): void;
  /** In-kernel PIC + IOAPIC + LAPICs. */
  createIrqchip(): void;
  /** In-kernel i8254 PIT. */
  createPit2(): void;
  /** Set an irqchip input line (GSI) level. */
  setIrqLine(irq: number, level: boolean): void;
  /**
   * Replace the GSI routing table (KVM_SET_GSI_ROUTING). The table must include the default
   * irqchip routes to keep ISA interrupts working (see `GsiRoutingTable`).
   */
  setGsiRouting(routes: readonly IrqRoute[]): void;
  /** Signal eventfd `fd` on guest writes matching `binding`, with no exit (KVM_IOEVENTFD). */
  registerIoeventfd(fd: number, binding: IoeventfdBinding): void;
  /** Undo {@link registerIoeventfd} (the same `fd` and `binding`). */
  unregisterIoeventfd(fd: number, binding: IoeventfdBinding): void;
  /**
   * Raise `gsi` whenever eventfd `fd` is written (KVM_IRQFD). With `resampleFd` the GSI is
   * level-triggered: KVM lowers it when the guest EOIs and then signals `resampleFd`.
   */
  registerIrqfd(fd: number, gsi: number, resampleFd?: number): void;
  /** Undo {@link registerIrqfd}. */
  unregisterIrqfd(fd: number, gsi: number): void;
  createVcpu(id: number): Vcpu;
  close(): void;
}

/** A virtual CPU before and between runs (the run loop lives in a worker thread). */
export interface Vcpu {
  readonly id: number;
  readonly fd: number;
  /** Address of this vCPU's mmap'd struct kvm_run. */
  readonly runAddress: number | bigint;
  readonly runSize: number;
  getRegs(): FullRegs;
  /** Control registers and CS fields (KVM_GET_SREGS), for diagnostics. */
  getControlRegisters(): Record<string, bigint>;
  setRegs(regs: X86Regs): void;
  setSregs(sregs: X86Sregs): void;
  setCpuid(entries: CpuidEntry[]): void;
  setMsrs(msrs: MsrEntry[]): void;
  setFpu(fpu: X86Fpu): void;
  /** Read, transform and write back the 1 KiB struct kvm_lapic_state. */
  patchLapic(patch: (state: Uint8Array) => void): void;
  close(): void;
}
