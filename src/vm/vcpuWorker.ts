/**
 * The body of a vCPU worker thread: a tight synchronous KVM_RUN loop (DESIGN.md, threading model).
 * Port I/O and MMIO exits for devices go to the main thread through the mailbox; accesses to
 * unmapped ports are answered here. Emulation failures of a paravirtual KVM are recovered here.
 * Built by tsup as its own entry (dist/vcpu-worker.js); it imports only what it needs.
 * @module
 */
import { parentPort } from 'node:worker_threads';
import { KVM, KVM_EXIT, KVM_INTERNAL_ERROR_EMULATION } from '../hypervisor/kvm/ioctls';
import { KICK_SIGNAL, libc, nativeView, SIG_BLOCK } from '../hypervisor/kvm/libc';
import {
  decodeControlRegs, decodeRegs, EV_EXCEPTION_HAS_ERROR_CODE, EV_EXCEPTION_INJECTED, EV_EXCEPTION_NR,
  FPU_MXCSR_OFF, FPU_SIZE, registerDump, REGS_SIZE, SREGS_SIZE, VCPU_EVENTS_SIZE,
} from '../hypervisor/kvm/structs';
import { GuestMemory } from '../memory/GuestMemory';
import { ACCESS, type CrashReport, MB, PORT, POST_SLOTS, VcpuRunState, type VcpuWorkerData, type VcpuWorkerMessage } from './mailbox';
import { decodeRecoverable } from './x86Recovery';
import { installKickHandler, sigsetWith } from './signals';

// The worker is spawned early (while the VM is still being laid out) and receives its vCPU in
// its first message; loading koffi and libc here overlaps with that work.
const c = libc();
let data: VcpuWorkerData;
let mb: Int32Array;
let portMap: Uint8Array;
let shadow: Int16Array;
let runBytes: Uint8Array;
let run: DataView;
let memory: GuestMemory;
const post = (m: VcpuWorkerMessage): void => parentPort!.postMessage(m);

// struct kvm_run offsets (include/uapi/linux/kvm.h, x86_64)
const RUN_IMMEDIATE_EXIT = 1;
const RUN_EXIT_REASON = 8;
const RUN_U = 32; // the exit union
const EINTR = 4;
const EAGAIN = 11;

// Block the kick signal in this thread outside KVM_RUN; KVM_SET_SIGNAL_MASK unblocks everything inside it.
installKickHandler();
const kickSet = sigsetWith(KICK_SIGNAL);
if (c.pthread_sigmask(SIG_BLOCK, kickSet, null) !== 0) throw new Error('pthread_sigmask failed');
const zeroTimeout = new Uint8Array(16); // struct timespec {0, 0}

function init(wd: VcpuWorkerData): void {
  data = wd;
  mb = new Int32Array(data.mailbox);
  portMap = new Uint8Array(data.portMap);
  shadow = new Int16Array(data.portShadow);
  runBytes = new Uint8Array(nativeView(data.runAddress, data.runSize));
  run = new DataView(runBytes.buffer);
  memory = GuestMemory.fromMapped(data.regions);
  const sm = new Uint8Array(4 + 8); // struct kvm_signal_mask { len u32; sigset[8] = 0 }
  new DataView(sm.buffer).setUint32(0, 8, true);
  if (c.ioctlPtr(data.fd, KVM.SET_SIGNAL_MASK, sm) < 0) throw new Error(`KVM_SET_SIGNAL_MASK failed: errno ${c.errno()}`);
  Atomics.store(mb, MB.TID, c.gettid());
  Atomics.store(mb, MB.STATE, VcpuRunState.RUNNING);
  Atomics.notify(mb, MB.STATE);
  post({ type: 'ready' });
}

/** Ask the main thread to serve an access; returns with the answer in DATA_LO/HI. */
function callMain(kind: number, addr: number, size: number, lo: number, hi: number): void {
  mb[MB.KIND] = kind;
  mb[MB.ADDR_LO] = addr | 0;
  mb[MB.ADDR_HI] = Math.floor(addr / 0x1_0000_0000) | 0;
  mb[MB.SIZE] = size;
  mb[MB.DATA_LO] = lo;
  mb[MB.DATA_HI] = hi;
  const resp = Atomics.load(mb, MB.RESP_SEQ);
  Atomics.add(mb, MB.REQ_SEQ, 1);
  wakeMain();
  while (Atomics.load(mb, MB.RESP_SEQ) === resp) Atomics.wait(mb, MB.RESP_SEQ, resp, 1000);
}

function wakeMain(): void {
  Atomics.add(mb, MB.WAKE, 1);
  Atomics.notify(mb, MB.WAKE);
}

/** Queue a port write for the main thread without waiting; false when the ring is full. */
function postWrite(port: number, size: number, value: number): boolean {
  const head = mb[MB.POST_HEAD];
  if (head - Atomics.load(mb, MB.POST_TAIL) >= POST_SLOTS) return false;
  const at = MB.POST_RING + (head % POST_SLOTS) * 3;
  mb[at] = port;
  mb[at + 1] = size;
  mb[at + 2] = value;
  Atomics.store(mb, MB.POST_HEAD, head + 1);
  wakeMain();
  return true;
}

function handleIo(): void {
  const dir = run.getUint8(RUN_U); // KVM_EXIT_IO_IN = 0, OUT = 1
  const size = run.getUint8(RUN_U + 1);
  const port = run.getUint16(RUN_U + 2, true);
  const count = run.getUint32(RUN_U + 4, true);
  const off = Number(run.getBigUint64(RUN_U + 8, true));
  for (let i = 0; i < count; i++) {
    const at = off + i * size;
    const flags = portMap[port];
    if (!flags) {
      if (dir === 0) runBytes.fill(0xff, at, at + size);
      Atomics.add(mb, MB.UNHANDLED, 1);
      continue;
    }
    if (dir === 0) {
      // A status poll: answered here when no write of ours is still queued.
      if (size === 1 && flags & PORT.SHADOW_READ && mb[MB.POST_HEAD] === Atomics.load(mb, MB.POST_TAIL)) {
        const v = Atomics.load(shadow, port);
        if (v >= 0) {
          runBytes[at] = v;
          continue;
        }
      }
      callMain(ACCESS.PIO_READ, port, size, 0, 0);
      writeData(at, size);
    } else if (!(flags & PORT.POSTED_WRITE) || !postWrite(port, size, readLo(at, size))) {
      callMain(ACCESS.PIO_WRITE, port, size, readLo(at, size), 0);
    }
  }
}

function readLo(at: number, size: number): number {
  if (size === 1) return run.getUint8(at);
  if (size === 2) return run.getUint16(at, true);
  return run.getUint32(at, true) | 0;
}

function writeData(at: number, size: number): void {
  const lo = mb[MB.DATA_LO];
  const hi = mb[MB.DATA_HI];
  for (let b = 0; b < size; b++) runBytes[at + b] = b < 4 ? (lo >>> (8 * b)) & 0xff : (hi >>> (8 * (b - 4))) & 0xff;
}

function handleMmio(): void {
  const addr = Number(run.getBigUint64(RUN_U, true));
  const len = run.getUint32(RUN_U + 16, true);
  const isWrite = run.getUint8(RUN_U + 20);
  const at = RUN_U + 8;
  if (isWrite) {
    const lo = len >= 4 ? run.getUint32(at, true) | 0 : len === 2 ? run.getUint16(at, true) : run.getUint8(at);
    const hi = len === 8 ? run.getUint32(at + 4, true) | 0 : 0;
    callMain(ACCESS.MMIO_WRITE, addr, len, lo, hi);
  } else {
    callMain(ACCESS.MMIO_READ, addr, len, 0, 0);
    writeData(at, Math.min(len, 8));
  }
}

const hex = (v: bigint | number): string => `0x${v.toString(16)}`;

function readRegs(): { regs: ReturnType<typeof decodeRegs>; cr: ReturnType<typeof decodeControlRegs> } {
  const r = new Uint8Array(REGS_SIZE);
  const s = new Uint8Array(SREGS_SIZE);
  c.ioctlPtr(data.fd, KVM.GET_REGS, r);
  c.ioctlPtr(data.fd, KVM.GET_SREGS, s);
  return { regs: decodeRegs(r), cr: decodeControlRegs(s) };
}

/** Translate a linear address with the guest's page tables (4-level long mode or no paging). */
function linearToPhysical(linear: bigint, cr: ReturnType<typeof decodeControlRegs>): number | undefined {
  const PG = 1n << 31n;
  const LMA = 1n << 10n;
  if ((cr.cr0 & PG) === 0n) return Number(linear & 0xffff_ffffn);
  if ((cr.efer & LMA) === 0n) return undefined; // 32-bit paging: not needed for the recoveries
  const ADDR = 0x000f_ffff_ffff_f000n;
  let table = cr.cr3 & ADDR;
  const shifts = [39n, 30n, 21n, 12n];
  for (let level = 0; level < 4; level++) {
    const idx = (linear >> shifts[level]) & 0x1ffn;
    const pa = Number(table + idx * 8n);
    if (!memory.contains(pa, 8)) return undefined;
    const e = memory.readU64(pa);
    if ((e & 1n) === 0n) return undefined;
    if ((level === 1 || level === 2) && (e & 0x80n) !== 0n) {
      const pageMask = (1n << shifts[level]) - 1n;
      return Number((e & ADDR & ~pageMask) + (linear & pageMask));
    }
    table = e & ADDR;
  }
  return Number(table + (linear & 0xfffn));
}

function instructionBytes(rip: bigint, cr: ReturnType<typeof decodeControlRegs>): Uint8Array | undefined {
  const linear = cr.cs_l ? rip : cr.cs_base + rip;
  const out: number[] = [];
  for (let i = 0n; i < 16n; i++) {
    const pa = linearToPhysical(linear + i, cr);
    if (pa === undefined || !memory.contains(pa, 1)) break;
    out.push(memory.readU8(pa));
  }
  return out.length ? Uint8Array.from(out) : undefined;
}

function crash(reason: string, extra?: string[]): void {
  const { regs, cr } = readRegs();
  const registers = registerDump(regs, cr);
  const bytes = instructionBytes(regs.rip, cr);
  const detail: CrashReport = {
    reason,
    vcpu: data.vcpuId,
    registers,
    instructionBytes: bytes ? Buffer.from(bytes).toString('hex') : undefined,
    data: extra,
  };
  post({ type: 'exit', reason: 'crash', detail });
}

let lastFailure = '';
let sameFailures = 0;
/** Re-run a failed instruction at most this many times when its bytes changed under the emulator. */
const MAX_RETRIES = 3;

/** Try the DESIGN.md recoveries for an emulation failure; true when the guest can go on. */
function recover(): boolean {
  const { regs, cr } = readRegs();
  const bytes = instructionBytes(regs.rip, cr);
  if (!bytes) return false;
  const fix = decodeRecoverable(bytes);
  if (!fix) {
    // Another vCPU may have rewritten the instruction since the emulator fetched it (Linux's
    // text_poke puts an int3 there while patching): run it again, a bounded number of times.
    const key = `${regs.rip}:${Buffer.from(bytes).toString('hex')}`;
    sameFailures = key === lastFailure ? sameFailures + 1 : 1;
    lastFailure = key;
    if (sameFailures > MAX_RETRIES) return false;
    post({ type: 'recovered', what: 'retry', rip: hex(regs.rip) });
    return true;
  }
  lastFailure = '';
  if (fix.kind === 'breakpoint') {
    // Inject #BP (vector 3) with RIP past the int3, as the CPU would after executing it.
    const ev = new Uint8Array(VCPU_EVENTS_SIZE);
    c.ioctlPtr(data.fd, KVM.GET_VCPU_EVENTS, ev);
    ev[EV_EXCEPTION_INJECTED] = 1;
    ev[EV_EXCEPTION_NR] = 3;
    ev[EV_EXCEPTION_HAS_ERROR_CODE] = 0;
    if (c.ioctlPtr(data.fd, KVM.SET_VCPU_EVENTS, ev) < 0) return false;
  } else if (fix.kind === 'ldmxcsr') {
    // The kernel only loads the default MXCSR (DESIGN.md): set it and skip the instruction.
    const fpu = new Uint8Array(FPU_SIZE);
    c.ioctlPtr(data.fd, KVM.GET_FPU, fpu);
    new DataView(fpu.buffer).setUint32(FPU_MXCSR_OFF, 0x1f80, true);
    if (c.ioctlPtr(data.fd, KVM.SET_FPU, fpu) < 0) return false;
  }
  const r = new Uint8Array(REGS_SIZE);
  c.ioctlPtr(data.fd, KVM.GET_REGS, r);
  const dv = new DataView(r.buffer);
  dv.setBigUint64(128, regs.rip + BigInt(fix.length), true); // kvm_regs.rip
  if (c.ioctlPtr(data.fd, KVM.SET_REGS, r) < 0) return false;
  post({ type: 'recovered', what: fix.kind, rip: hex(regs.rip) });
  return true;
}

function parkWhilePaused(): void {
  Atomics.store(mb, MB.STATE, VcpuRunState.PAUSED);
  Atomics.notify(mb, MB.STATE);
  while (Atomics.load(mb, MB.PAUSE) === 1 && Atomics.load(mb, MB.STOP) === 0) Atomics.wait(mb, MB.PAUSE, 1, 1000);
  Atomics.store(mb, MB.STATE, VcpuRunState.RUNNING);
  Atomics.notify(mb, MB.STATE);
}

function loop(): void {
  for (;;) {
    if (Atomics.load(mb, MB.STOP)) return post({ type: 'exit', reason: 'stopped' });
    if (Atomics.load(mb, MB.PAUSE)) {
      parkWhilePaused();
      continue;
    }
    const ret = c.ioctlInt(data.fd, KVM.RUN, 0);
    if (ret < 0) {
      const errno = c.errno();
      if (errno === EINTR || errno === EAGAIN) {
        runBytes[RUN_IMMEDIATE_EXIT] = 0;
        c.sigtimedwait(kickSet, null, zeroTimeout); // consume the kick, if it was one
        continue;
      }
      return crash(`KVM_RUN failed with errno ${errno}`);
    }
    const reason = run.getUint32(RUN_EXIT_REASON, true);
    switch (reason) {
      case KVM_EXIT.IO:
        handleIo();
        break;
      case KVM_EXIT.MMIO:
        handleMmio();
        break;
      case KVM_EXIT.INTR:
        break;
      case KVM_EXIT.HLT:
        break; // never with the in-kernel irqchip (DESIGN.md)
      case KVM_EXIT.SHUTDOWN:
        return crash('triple fault (KVM_EXIT_SHUTDOWN)');
      case KVM_EXIT.FAIL_ENTRY:
        return crash(`KVM_EXIT_FAIL_ENTRY hardware_entry_failure_reason=${hex(run.getBigUint64(RUN_U, true))}`);
      case KVM_EXIT.SYSTEM_EVENT:
        return crash(`KVM_EXIT_SYSTEM_EVENT type=${run.getUint32(RUN_U, true)}`);
      case KVM_EXIT.INTERNAL_ERROR: {
        const sub = run.getUint32(RUN_U, true);
        const n = Math.min(run.getUint32(RUN_U + 4, true), 16);
        const extra: string[] = [];
        for (let i = 0; i < n; i++) extra.push(hex(run.getBigUint64(RUN_U + 8 + i * 8, true)));
        if (sub === KVM_INTERNAL_ERROR_EMULATION && data.paravirtual && recover()) break;
        return crash(`KVM_EXIT_INTERNAL_ERROR suberror ${sub}${sub === 1 ? ' (emulation failure)' : ''}`, extra);
      }
      default:
        return crash(`unexpected KVM exit reason ${reason}`);
    }
  }
}

// One vCPU per message: after a VM ends the thread waits here for the next one (the main thread
// keeps idle workers in a pool).
parentPort!.on('message', (wd: VcpuWorkerData) => {
  try {
    init(wd);
    loop();
  } catch (e) {
    post({ type: 'exit', reason: 'crash', detail: { reason: `vCPU thread failed: ${(e as Error).message}`, vcpu: wd.vcpuId, registers: {} } });
  } finally {
    if (mb) {
      Atomics.store(mb, MB.STATE, VcpuRunState.EXITED);
      Atomics.notify(mb, MB.STATE);
    }
    lastFailure = '';
    sameFailures = 0;
  }
});
