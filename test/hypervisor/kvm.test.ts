import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { KvmError } from '../../src/errors';
import { KvmHypervisor } from '../../src/hypervisor/kvm/KvmHypervisor';
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
    const kvm = new KvmHypervisor();
    const vm = kvm.createVm();
    vm.setTssAddress(0xfffbd000);
    vm.createIrqchip();
    const mem = GuestMemory.allocate([{ guestAddress: 0, size: 1 << 20 }]);
    mem.regions.forEach((r, i) => vm.setUserMemoryRegion(i, r.guestAddress, r.size, r.hostAddress));
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
    vm.close();
    mem.free();
    kvm.close();
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
