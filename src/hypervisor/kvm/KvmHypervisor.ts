/**
 * The KVM implementation of the hypervisor interfaces, through koffi ioctls on /dev/kvm.
 * @module
 */
import { existsSync } from 'node:fs';
import type { CpuidEntry, MsrEntry, X86Fpu, X86Regs, X86Sregs } from '../../arch/x86_64/types';
import { KvmError } from '../../errors';
import type { Hypervisor, Vcpu, Vm } from '../Hypervisor';
import { KVM, KVM_API_VERSION, KVM_CAP, KVM_IOCTL_NAMES, KVM_PIT_SPEAKER_DUMMY } from './ioctls';
import { encodeIoeventfd, type IoeventfdBinding } from './Ioeventfd';
import { encodeIrqfd } from './Irqfd';
import { encodeIrqRouting, type IrqRoute } from './IrqRouting';
import { libc, MAP_FAILED, MAP_SHARED, O_CLOEXEC, O_RDWR, PROT_READ, PROT_WRITE } from './libc';
import {
  decodeControlRegs, decodeCpuid2, decodeRegs, encodeCpuid2, encodeMemoryRegion, encodeMsrs, FPU_FCW_OFF, FPU_MXCSR_OFF, FPU_SIZE,
  type FullRegs, patchRegs, patchSregs, REGS_SIZE, SREGS_SIZE,
} from './structs';

/** Path of the KVM device. */
export const KVM_DEVICE = '/dev/kvm';

function check(ret: number, req: number | string): number {
  if (ret < 0) {
    const name = typeof req === 'string' ? req : (KVM_IOCTL_NAMES.get(req) ?? `ioctl 0x${req.toString(16)}`);
    throw new KvmError(name, libc().errno());
  }
  return ret;
}

function ioctlPtr(fd: number, req: number, buf: Uint8Array | null): number {
  return check(libc().ioctlPtr(fd, req, buf), req);
}

function ioctlInt(fd: number, req: number, arg: number | bigint = 0): number {
  return check(libc().ioctlInt(fd, req, arg), req);
}

/** errno EINTR (asm-generic/errno-base.h). */
const EINTR = 4;
/** How often KVM_CREATE_VM is tried when signals interrupt it. */
const CREATE_VM_ATTEMPTS = 10;

/** True when the host's KVM is the paravirtual nested kvm_pvm (DESIGN.md). */
export function isParavirtualKvm(): boolean {
  return existsSync('/sys/module/kvm_pvm');
}

/** The error for a failed open of the KVM device: says how to fix a missing or forbidden device. */
export function kvmOpenError(path: string, errno: number): KvmError {
  let hint: string;
  if (errno === 2) {
    hint = `${path} does not exist: this host has no KVM. Enable virtualization (VT-x/AMD-V) in firmware, load the module (modprobe kvm_intel or kvm_amd), or, inside a VM, enable nested virtualization`;
  } else if (errno === 13 || errno === 1) {
    hint = `${path} is not permitted for this user: add the user to the group that owns it (sudo usermod -aG kvm $USER, then log in again) or run as root`;
  } else {
    hint = `cannot open ${path}`;
  }
  return new KvmError('open', errno, `${hint} (errno ${errno})`);
}

/** Open the KVM device (default /dev/kvm). */
export function openKvmDevice(path = KVM_DEVICE): number {
  const fd = libc().open(path, O_RDWR | O_CLOEXEC);
  if (fd >= 0) return fd;
  throw kvmOpenError(path, libc().errno());
}

/** /dev/kvm. */
export class KvmHypervisor implements Hypervisor {
  readonly fd: number;
  readonly paravirtual: boolean;
  readonly vcpuMmapSize: number;
  private cpuidCache?: CpuidEntry[];

  constructor() {
    this.fd = openKvmDevice();
    try {
      const version = ioctlInt(this.fd, KVM.GET_API_VERSION);
      if (version !== KVM_API_VERSION) {
        throw new KvmError('KVM_GET_API_VERSION', 0, `KVM API version ${version}, kvmkit needs ${KVM_API_VERSION}`);
      }
      for (const [name, cap] of Object.entries({ IRQCHIP: KVM_CAP.IRQCHIP, USER_MEMORY: KVM_CAP.USER_MEMORY, IMMEDIATE_EXIT: KVM_CAP.IMMEDIATE_EXIT, PIT2: KVM_CAP.PIT2 })) {
        if (ioctlInt(this.fd, KVM.CHECK_EXTENSION, cap) <= 0) {
          throw new KvmError('KVM_CHECK_EXTENSION', 0, `this KVM lacks KVM_CAP_${name}, which kvmkit needs`);
        }
      }
      this.vcpuMmapSize = ioctlInt(this.fd, KVM.GET_VCPU_MMAP_SIZE);
      this.paravirtual = isParavirtualKvm();
    } catch (e) {
      libc().close(this.fd);
      throw e;
    }
  }

  /** Largest vCPU count KVM allows (KVM_CAP_MAX_VCPUS, else KVM_CAP_NR_VCPUS). */
  maxVcpus(): number {
    return ioctlInt(this.fd, KVM.CHECK_EXTENSION, KVM_CAP.MAX_VCPUS) || ioctlInt(this.fd, KVM.CHECK_EXTENSION, KVM_CAP.NR_VCPUS) || 1;
  }

  supportedCpuid(): CpuidEntry[] {
    if (!this.cpuidCache) {
      const buf = encodeCpuid2([], 256);
      ioctlPtr(this.fd, KVM.GET_SUPPORTED_CPUID, buf);
      this.cpuidCache = decodeCpuid2(buf);
    }
    return this.cpuidCache.map((e) => ({ ...e }));
  }

  createVm(): KvmVm {
    // KVM_CREATE_VM's argument is the machine type: 0 = default. It can fail with EINTR when a
    // signal arrives while KVM sets the VM up (seen under `node --cpu-prof`'s SIGPROF): retry.
    for (let attempt = 1; ; attempt++) {
      try {
        return new KvmVm(ioctlInt(this.fd, KVM.CREATE_VM, 0), this.vcpuMmapSize);
      } catch (e) {
        if (!(e instanceof KvmError) || e.errno !== EINTR || attempt >= CREATE_VM_ATTEMPTS) throw e;
      }
    }
  }

  close(): void {
    libc().close(this.fd);
  }
}

/** A KVM VM file descriptor. */
export class KvmVm implements Vm {
  private readonly irqLevel = new Uint8Array(8);
  private readonly vcpus: KvmVcpu[] = [];
  constructor(readonly fd: number, private readonly vcpuMmapSize: number) {}

  setUserMemoryRegion(slot: number, guestAddress: number, size: number, hostAddress: number | bigint): void {
    ioctlPtr(this.fd, KVM.SET_USER_MEMORY_REGION, encodeMemoryRegion(slot, 0, guestAddress, size, hostAddress));
  }

  setTssAddress(address: number): void {
    ioctlInt(this.fd, KVM.SET_TSS_ADDR, address);
    // The identity-map page sits just below the TSS's three pages (Firecracker/crosvm layout).
    const ident = new Uint8Array(8);
    new DataView(ident.buffer).setBigUint64(0, BigInt(address - 0x1000), true);
    ioctlPtr(this.fd, KVM.SET_IDENTITY_MAP_ADDR, ident);
  }

  createIrqchip(): void {
    ioctlInt(this.fd, KVM.CREATE_IRQCHIP);
  }

  createPit2(): void {
    const cfg = new Uint8Array(64); // struct kvm_pit_config { flags u32, pad[15] }
    new DataView(cfg.buffer).setUint32(0, KVM_PIT_SPEAKER_DUMMY, true);
    ioctlPtr(this.fd, KVM.CREATE_PIT2, cfg);
  }

  setIrqLine(irq: number, level: boolean): void {
    const dv = new DataView(this.irqLevel.buffer); // struct kvm_irq_level { irq u32, level u32 }
    dv.setUint32(0, irq, true);
    dv.setUint32(4, level ? 1 : 0, true);
    ioctlPtr(this.fd, KVM.IRQ_LINE, this.irqLevel);
  }

  /** KVM_CHECK_EXTENSION on the VM fd: > 0 when `cap` (a KVM_CAP_* number) is available. */
  checkExtension(cap: number): number {
    const r = libc().ioctlInt(this.fd, KVM.CHECK_EXTENSION, cap);
    return r < 0 ? 0 : r;
  }

  setGsiRouting(routes: readonly IrqRoute[]): void {
    ioctlPtr(this.fd, KVM.SET_GSI_ROUTING, encodeIrqRouting(routes));
  }

  registerIoeventfd(fd: number, binding: IoeventfdBinding): void {
    ioctlPtr(this.fd, KVM.IOEVENTFD, encodeIoeventfd(fd, binding));
  }

  unregisterIoeventfd(fd: number, binding: IoeventfdBinding): void {
    ioctlPtr(this.fd, KVM.IOEVENTFD, encodeIoeventfd(fd, binding, true));
  }

  registerIrqfd(fd: number, gsi: number, resampleFd?: number): void {
    ioctlPtr(this.fd, KVM.IRQFD, encodeIrqfd(fd, gsi, resampleFd === undefined ? {} : { resampleFd }));
  }

  unregisterIrqfd(fd: number, gsi: number): void {
    ioctlPtr(this.fd, KVM.IRQFD, encodeIrqfd(fd, gsi, { deassign: true }));
  }

  createVcpu(id: number): KvmVcpu {
    const fd = ioctlInt(this.fd, KVM.CREATE_VCPU, id);
    const addr = libc().mmap(0, this.vcpuMmapSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (BigInt(addr) === MAP_FAILED) {
      const errno = libc().errno();
      libc().close(fd);
      throw new KvmError('mmap(kvm_run)', errno);
    }
    const vcpu = new KvmVcpu(id, fd, addr, this.vcpuMmapSize);
    this.vcpus.push(vcpu);
    return vcpu;
  }

  close(): void {
    for (const v of this.vcpus) v.close();
    this.vcpus.length = 0;
    libc().close(this.fd);
  }
}

/** A KVM vCPU file descriptor and its kvm_run mapping. */
export class KvmVcpu implements Vcpu {
  private closed = false;
  constructor(readonly id: number, readonly fd: number, readonly runAddress: number | bigint, readonly runSize: number) {}

  getRegs(): FullRegs {
    const buf = new Uint8Array(REGS_SIZE);
    ioctlPtr(this.fd, KVM.GET_REGS, buf);
    return decodeRegs(buf);
  }

  /** Control registers and CS (cr0, cr2, cr3, cr4, cr8, efer, apic_base, cs_*), from KVM_GET_SREGS. */
  getControlRegisters(): Record<string, bigint> {
    const buf = new Uint8Array(SREGS_SIZE);
    ioctlPtr(this.fd, KVM.GET_SREGS, buf);
    return decodeControlRegs(buf);
  }

  setRegs(regs: X86Regs): void {
    const buf = new Uint8Array(REGS_SIZE);
    ioctlPtr(this.fd, KVM.GET_REGS, buf);
    patchRegs(buf, regs);
    ioctlPtr(this.fd, KVM.SET_REGS, buf);
  }

  setSregs(sregs: X86Sregs): void {
    const buf = new Uint8Array(SREGS_SIZE);
    ioctlPtr(this.fd, KVM.GET_SREGS, buf);
    patchSregs(buf, sregs);
    ioctlPtr(this.fd, KVM.SET_SREGS, buf);
  }

  setCpuid(entries: CpuidEntry[]): void {
    ioctlPtr(this.fd, KVM.SET_CPUID2, encodeCpuid2(entries));
  }

  setMsrs(msrs: MsrEntry[]): void {
    const n = check(libc().ioctlPtr(this.fd, KVM.SET_MSRS, encodeMsrs(msrs)), KVM.SET_MSRS);
    if (n !== msrs.length) {
      const bad = msrs[n];
      throw new KvmError('KVM_SET_MSRS', 0, `KVM_SET_MSRS set ${n} of ${msrs.length} MSRs; MSR 0x${bad?.index.toString(16)} was refused`);
    }
  }

  setFpu(fpu: X86Fpu): void {
    const buf = new Uint8Array(FPU_SIZE);
    const dv = new DataView(buf.buffer);
    dv.setUint16(FPU_FCW_OFF, fpu.fcw, true);
    dv.setUint32(FPU_MXCSR_OFF, fpu.mxcsr, true);
    ioctlPtr(this.fd, KVM.SET_FPU, buf);
  }

  patchLapic(patch: (state: Uint8Array) => void): void {
    const buf = new Uint8Array(1024);
    ioctlPtr(this.fd, KVM.GET_LAPIC, buf);
    patch(buf);
    ioctlPtr(this.fd, KVM.SET_LAPIC, buf);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    libc().munmap(this.runAddress, this.runSize);
    libc().close(this.fd);
  }
}
