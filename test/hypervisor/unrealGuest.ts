/**
 * A tiny test guest for the eventfd paths, shared by test/hypervisor and test/vm: 16-bit code in
 * "unreal" mode with handlers for three interrupt vectors and a doorbell loop, in a one-vCPU KVM
 * VM whose vCPU runs in a real kvmkit worker thread (so MMIO exits take the mailbox path).
 */
import type { X86Segment } from '../../src/arch/x86_64/types';
import { KvmHypervisor, type KvmVcpu, type KvmVm } from '../../src/hypervisor/kvm/KvmHypervisor';
import { GuestMemory } from '../../src/memory/GuestMemory';
import { ACCESS } from '../../src/vm/mailbox';
import { VcpuThread, type AccessHandler } from '../../src/vm/VcpuThread';

// ---- The guest: 16-bit code (GNU as .code16) at 0x1000 in "unreal" mode: real mode (CR0.PE = 0)
// with DS given a 4 GiB limit through KVM_SET_SREGS, so addr32 accesses reach the LAPIC, IOAPIC and
// MMIO. Real mode because KVM's instruction emulator, which runs all ring-0 code on a paravirtual
// (PVM) host, implements IRET only in real mode (arch/x86/kvm/emulate.c em_iret).
// main (0x1000):
//   mov $0xfee000f0,%ebx; movl $0x1ff,(%ebx)        LAPIC SVR: software enable
//   mov $0xfec00000,%ebx; movl $0x31,(%ebx)         IOAPIC IOREGSEL: redirection entry 16, high dword
//   movl $0,0x10(%ebx)                              IOWIN: destination APIC id 0
//   movl $0x30,(%ebx); movl $0x8041,0x10(%ebx)      low dword: vector 0x41, fixed, active high, level, unmasked
//   sti; 1: hlt; jmp 1b
const MAIN = [
  0x66, 0xbb, 0xf0, 0x00, 0xe0, 0xfe, 0x67, 0x66, 0xc7, 0x03, 0xff, 0x01, 0x00, 0x00, 0x66, 0xbb, 0x00, 0x00, 0xc0, 0xfe,
  0x67, 0x66, 0xc7, 0x03, 0x31, 0x00, 0x00, 0x00, 0x67, 0x66, 0xc7, 0x43, 0x10, 0x00, 0x00, 0x00, 0x00, 0x67, 0x66, 0xc7,
  0x03, 0x30, 0x00, 0x00, 0x00, 0x67, 0x66, 0xc7, 0x43, 0x10, 0x41, 0x80, 0x00, 0x00, 0xfb, 0xf4, 0xeb, 0xfd,
];
// msi_handler (0x1100, vector 0x40): addr32 incl 0x3000; mov $0xfee000b0,%ebx; movl $0,(%ebx) (EOI);
//   mov $0xd0000,%ebx; movw $0,(%ebx) (doorbell); iret
const MSI_HANDLER = [
  0x67, 0x66, 0xff, 0x05, 0x00, 0x30, 0x00, 0x00, 0x66, 0xbb, 0xb0, 0x00, 0xe0, 0xfe, 0x67, 0x66, 0xc7, 0x03, 0x00, 0x00,
  0x00, 0x00, 0x66, 0xbb, 0x00, 0x00, 0x0d, 0x00, 0x67, 0xc7, 0x03, 0x00, 0x00, 0xcf,
];
// intx_handler (0x1180, vector 0x41): addr32 incl 0x3004; mov $0xc0000000,%ebx; mov (%ebx),%eax (ISR read:
//   an MMIO exit); mov $0xfee000b0,%ebx; movl $0,(%ebx) (EOI); mov $0xd0000,%ebx; movw $0,(%ebx); iret
const INTX_HANDLER = [
  0x67, 0x66, 0xff, 0x05, 0x04, 0x30, 0x00, 0x00, 0x66, 0xbb, 0x00, 0x00, 0x00, 0xc0, 0x67, 0x66, 0x8b, 0x03, 0x66, 0xbb,
  0xb0, 0x00, 0xe0, 0xfe, 0x67, 0x66, 0xc7, 0x03, 0x00, 0x00, 0x00, 0x00, 0x66, 0xbb, 0x00, 0x00, 0x0d, 0x00, 0x67, 0xc7,
  0x03, 0x00, 0x00, 0xcf,
];
// doorbells (0x1200, ECX = count): mov $0xd0000,%ebx; 2: movw $1,(%ebx); addr32 loop 2b;
//   movl $1,4(%ebx) (no ioeventfd there: one MMIO exit); outb %al,$0x80 (done); 3: jmp 3b
const DOORBELLS = [
  0x66, 0xbb, 0x00, 0x00, 0x0d, 0x00, 0x67, 0xc7, 0x03, 0x01, 0x00, 0x67, 0xe2, 0xf8, 0x67, 0x66, 0xc7, 0x43, 0x04, 0x01,
  0x00, 0x00, 0x00, 0xe6, 0x80, 0xeb, 0xfe,
];
// mmio_handler (0x1280, vector 0x42): addr32 incl 0x3008; EOI; mov $0xd0008,%ebx; movw $0,(%ebx) (a doorbell
//   where no ioeventfd listens: an MMIO exit served on the main thread); iret
const MMIO_HANDLER = [
  0x67, 0x66, 0xff, 0x05, 0x08, 0x30, 0x00, 0x00, 0x66, 0xbb, 0xb0, 0x00, 0xe0, 0xfe, 0x67, 0x66, 0xc7, 0x03, 0x00, 0x00,
  0x00, 0x00, 0x66, 0xbb, 0x08, 0x00, 0x0d, 0x00, 0x67, 0xc7, 0x03, 0x00, 0x00, 0xcf,
];
export const CODE = 0x1000;
export const ENTRY = { main: CODE, doorbells: CODE + 0x200 };
export const IVT = 0x0;
export const COUNTERS = 0x3000;
export const DOORBELL = 0xd_0000; // not RAM (RAM is [0, 0x80000)): MMIO
export const ISR = 0xc000_0000;
export const MSI_VECTOR = 0x40;
export const INTX_VECTOR = 0x41;
export const MMIO_DOORBELL_VECTOR = 0x42;
export const MMIO_DOORBELL = DOORBELL + 8;
export const INTX_GSI = 16;

const real = (type: number): X86Segment => ({ base: 0, limit: 0xffff, selector: 0, type, present: 1, dpl: 0, db: 0, s: 1, l: 0, g: 0, avl: 0 });

/** The VM, its RAM, the vCPU thread and the MMIO exits it saw. */
export interface Rig {
  kvm: KvmHypervisor;
  vm: KvmVm;
  mem: GuestMemory;
  thread: VcpuThread;
  vcpu: KvmVcpu;
  mmioExits: { read: number; write: number };
  onAccess: AccessHandler;
  /** Start the vCPU (done by makeRig unless `start: false`). */
  run(): void;
  close(): Promise<void>;
}

/**
 * A one-vCPU VM with the guest above and its interrupt vector table, starting at `entry` with
 * ECX = `ecx`. `doorbell` moves the doorbell loop's target address (default {@link DOORBELL}).
 */
export function makeRig(entry: number, options: { ecx?: number; doorbell?: number; start?: boolean } = {}): Rig {
  const ecx = options.ecx ?? 0;
  const kvm = new KvmHypervisor();
  const vm = kvm.createVm();
  vm.setTssAddress(0xfffb_d000);
  vm.createIrqchip();
  const mem = GuestMemory.allocate([{ guestAddress: 0, size: 0x8_0000 }]);
  mem.regions.forEach((r, i) => vm.setUserMemoryRegion(i, r.guestAddress, r.size, r.hostAddress));
  mem.write(CODE, Uint8Array.from(MAIN));
  mem.write(CODE + 0x100, Uint8Array.from(MSI_HANDLER));
  mem.write(CODE + 0x180, Uint8Array.from(INTX_HANDLER));
  const loop = Uint8Array.from(DOORBELLS);
  new DataView(loop.buffer).setUint32(2, options.doorbell ?? DOORBELL, true); // mov $imm32,%ebx
  mem.write(CODE + 0x200, loop);
  mem.write(CODE + 0x280, Uint8Array.from(MMIO_HANDLER));
  // Real-mode interrupt vector table: segment 0, offset = handler.
  for (const [vector, handler] of [[MSI_VECTOR, CODE + 0x100], [INTX_VECTOR, CODE + 0x180], [MMIO_DOORBELL_VECTOR, CODE + 0x280]] as const) {
    mem.write(IVT + vector * 4, Uint8Array.of(handler & 0xff, handler >> 8, 0, 0));
  }
  const vcpu = vm.createVcpu(0);
  vcpu.setCpuid(kvm.supportedCpuid());
  vcpu.setSregs({ cs: real(0xb), ds: { ...real(3), limit: 0xffff_ffff, g: 1 }, es: real(3), ss: real(3) });
  vcpu.setRegs({ rip: entry, rflags: 2, rsp: 0x7000, rcx: ecx });
  const portMap = new SharedArrayBuffer(0x10000);
  new Uint8Array(portMap)[0x80] = 1;
  const thread = new VcpuThread('eventfd-test');
  let started = false;
  const r: Rig = {
    kvm, vm, mem, thread, vcpu, mmioExits: { read: 0, write: 0 }, onAccess: () => undefined,
    run() {
      if (started) return;
      started = true;
      thread.start(vcpu, portMap, new SharedArrayBuffer(0x20000), mem.regions, kvm.paravirtual, (kind, addr, size, value) => {
        if (kind === ACCESS.MMIO_READ) r.mmioExits.read++;
        if (kind === ACCESS.MMIO_WRITE) r.mmioExits.write++;
        return r.onAccess(kind, addr, size, value);
      }, () => {});
    },
    async close() {
      await thread.stop();
      vm.close();
      mem.free();
      kvm.close();
    },
  };
  if (options.start !== false) r.run();
  return r;
}

