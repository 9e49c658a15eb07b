import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { KvmError } from '../../src/errors';
import { KvmHypervisor, kvmOpenError, openKvmDevice } from '../../src/hypervisor/kvm/KvmHypervisor';
import { GuestMemory } from '../../src/memory/GuestMemory';
import { ACCESS, PORT } from '../../src/vm/mailbox';
import { VcpuThread } from '../../src/vm/VcpuThread';

const hasKvm = existsSync('/dev/kvm');
if (!hasKvm) console.warn('SKIPPING KVM tests: /dev/kvm does not exist on this machine');

// Real-mode code at 0x1000: print "Hi" on port 0x3f8, then write 0xABCD to port 0x604, then spin.
// mov dx,0x3f8; mov al,'H'; out dx,al; mov al,'i'; out dx,al; mov dx,0x604; mov ax,0xabcd; out dx,ax; jmp $
const CODE = Uint8Array.from([
  0xba, 0xf8, 0x03, 0xb0, 0x48, 0xee, 0xb0, 0x69, 0xee, 0xba, 0x04, 0x06, 0xb8, 0xcd, 0xab, 0xef, 0xeb, 0xfe,
]);

/** A VM with an in-kernel irqchip and 1 MiB of RAM at 0, for hand-written guest code. */
function bareVm() {
  const kvm = new KvmHypervisor();
  const vm = kvm.createVm();
  vm.setTssAddress(0xfffbd000);
  vm.createIrqchip();
  const mem = GuestMemory.allocate([{ guestAddress: 0, size: 1 << 20 }]);
  mem.regions.forEach((r, i) => vm.setUserMemoryRegion(i, r.guestAddress, r.size, r.hostAddress));
  const close = (): void => {
    vm.close();
    mem.free();
    kvm.close();
  };
  return { kvm, vm, mem, close };
}

describe.skipIf(!hasKvm)('KVM bindings on /dev/kvm', () => {
  it('reports the supported CPUID and the vCPU mmap size', () => {
    const kvm = new KvmHypervisor();
    try {
      const cpuid = kvm.supportedCpuid();
      expect(cpuid.find((e) => e.function === 0)).toBeDefined();
      expect(cpuid.find((e) => e.function === 1)).toBeDefined();
      expect(kvm.vcpuMmapSize).toBeGreaterThanOrEqual(4096);
    } finally {
      kvm.close();
    }
  });

  it('runs real-mode guest code in a worker: port I/O reaches the main thread, stop() kicks a spinning vCPU', async () => {
    const { kvm, vm, mem, close } = bareVm();
    mem.write(0x1000, CODE);
    const vcpu = vm.createVcpu(0);
    vcpu.setSregs({ cs: { base: 0, limit: 0xffff, selector: 0, type: 0xb, present: 1, dpl: 0, db: 0, s: 1, l: 0, g: 0, avl: 0 } });
    vcpu.setRegs({ rip: 0x1000, rflags: 2 });
    const portMap = new SharedArrayBuffer(0x10000);
    new Uint8Array(portMap).fill(PORT.MAPPED, 0x3f8, 0x400).fill(PORT.MAPPED, 0x604, 0x606);
    const out: number[] = [];
    let sawPm!: () => void;
    const pm = new Promise<number>((r) => (sawPm = () => r(0)));
    let pmValue = 0;
    const thread = new VcpuThread();
    thread.start(vcpu, portMap, new SharedArrayBuffer(0x20000), mem.regions, kvm.paravirtual, (kind, addr, size, value) => {
      if (kind === ACCESS.PIO_WRITE && addr === 0x3f8) out.push(Number(value));
      if (kind === ACCESS.PIO_WRITE && addr === 0x604) {
        expect(size).toBe(2);
        pmValue = Number(value);
        sawPm();
      }
    }, () => {});
    await pm;
    expect(String.fromCharCode(...out)).toBe('Hi');
    expect(pmValue).toBe(0xabcd);
    const t0 = performance.now();
    await thread.stop();
    expect(performance.now() - t0).toBeLessThan(1000);
    const exit = await thread.exited;
    expect(exit.reason).toBe('stopped');
    close();
  });

  it('a guest that triple-faults ends as a crash carrying its registers and instruction bytes', async () => {
    const { kvm, vm, mem, close } = bareVm();
    mem.write(0x2000, Uint8Array.of(0x90, 0x0f, 0x0b, 0xf4)); // nop; ud2; hlt
    // 64-bit mode, identity-mapped first 2 MiB, and an empty IDT: #UD -> #DF -> triple fault.
    mem.writeU64(0x9000, 0xa000n | 3n);
    mem.writeU64(0xa000, 0xb000n | 3n);
    mem.writeU64(0xb000, 0x83n);
    const vcpu = vm.createVcpu(0);
    const seg = (selector: number, type: number, l: number) => ({ base: 0, limit: 0xfffff, selector, type, present: 1, dpl: 0, db: l ? 0 : 1, s: 1, l, g: 1, avl: 0 });
    vcpu.setSregs({
      cs: seg(0x08, 0xb, 1), ds: seg(0x10, 3, 0), es: seg(0x10, 3, 0), ss: seg(0x10, 3, 0), fs: seg(0x10, 3, 0), gs: seg(0x10, 3, 0),
      cr0: 0x80000011, cr3: 0x9000, cr4: 0x20, efer: 0x500, idt: { base: 0, limit: 0 },
    });
    vcpu.setRegs({ rip: 0x2000, rsp: 0x8000, rflags: 2 });
    const thread = new VcpuThread();
    thread.start(vcpu, new SharedArrayBuffer(0x10000), new SharedArrayBuffer(0x20000), mem.regions, kvm.paravirtual, () => undefined, () => {});
    const exit = await Promise.race([thread.exited, new Promise<never>((_, rej) => setTimeout(() => rej(new Error('no exit within 20 s')), 20_000))]);
    expect(exit.reason).toBe('crash');
    if (exit.reason !== 'crash') return;
    expect(exit.detail.reason).toMatch(/triple fault|KVM_EXIT_INTERNAL_ERROR|KVM_EXIT_SHUTDOWN/);
    expect(exit.detail.vcpu).toBe(0);
    expect(Object.keys(exit.detail.registers)).toEqual(expect.arrayContaining(['rip', 'rsp', 'rflags', 'cr0', 'cr3', 'efer']));
    // The bytes at RIP are the guest's code from 0x2000 on.
    const rip = Number(exit.detail.registers.rip);
    expect(rip).toBeGreaterThanOrEqual(0x2000);
    expect(rip).toBeLessThanOrEqual(0x2003);
    expect(exit.detail.instructionBytes).toBe(Buffer.from(mem.read(rip, 16)).toString('hex'));
    close();
  });

  it('says how to fix a missing or forbidden KVM device', () => {
    expect(() => openKvmDevice('/nonexistent/kvm')).toThrow(/^\/nonexistent\/kvm does not exist: this host has no KVM\. Enable virtualization .* \(errno 2\)$/);
    const denied = kvmOpenError('/dev/kvm', 13);
    expect(denied).toBeInstanceOf(KvmError);
    expect(denied.errno).toBe(13);
    expect(denied.message).toMatch(/^\/dev\/kvm is not permitted for this user: add the user to the group that owns it \(sudo usermod -aG kvm \$USER/);
  });

  it('throws KvmError naming the ioctl and errno', () => {
    const kvm = new KvmHypervisor();
    const vm = kvm.createVm();
    try {
      vm.createVcpu(0);
      let err: unknown;
      try {
        vm.createVcpu(0); // the same id twice: EEXIST
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(KvmError);
      expect((err as KvmError).ioctl).toBe('KVM_CREATE_VCPU');
      expect((err as KvmError).errno).toBeGreaterThan(0);
      expect((err as Error).message).toMatch(/^KVM_CREATE_VCPU failed: E[A-Z]+ \(errno \d+\)$/);
    } finally {
      vm.close();
      kvm.close();
    }
  });
});
