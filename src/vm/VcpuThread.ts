/**
 * The main thread's handle on one vCPU worker: starts it, serves its device accesses from the
 * mailbox, kicks it out of KVM_RUN, pauses, resumes and stops it.
 * @module
 */
import { Worker } from 'node:worker_threads';
import { KICK_SIGNAL, libc, nativeView } from '../hypervisor/kvm/libc';
import type { Vcpu } from '../hypervisor/Hypervisor';
import { KvmkitError } from '../errors';
import { builtWorkerPath, workerExecArgv } from '../workerScript';
import type { GuestRegion } from '../memory/GuestMemory';
import { ACCESS, MB, POST_SLOTS, VcpuRunState, type VcpuWorkerData, type VcpuWorkerMessage } from './mailbox';

/** Serves one device access; for reads, returns the value (up to 8 bytes, little-endian). */
export type AccessHandler = (kind: number, addr: number, size: number, value: bigint) => bigint | void;

/** Locate the built worker script (dist/vcpu-worker.js beside this bundle, or the package's dist/). */
export function vcpuWorkerPath(): string {
  return builtWorkerPath('vcpu-worker.js', 'vCPU worker');
}

/** Idle vCPU workers kept for the next VM in this process (spawning one with koffi costs tens of ms). */
const idleWorkers: Worker[] = [];
/** Most idle workers kept; more are terminated. */
const MAX_IDLE_WORKERS = 16;

function acquireWorker(name: string): Worker {
  const w = idleWorkers.pop();
  if (w) {
    w.ref();
    return w;
  }
  return new Worker(vcpuWorkerPath(), { name, execArgv: workerExecArgv() });
}

/** Remove our listeners only: Worker keeps internal newListener/removeListener hooks that must stay. */
function detach(w: Worker): void {
  for (const e of ['message', 'error', 'exit'] as const) w.removeAllListeners(e);
}

function releaseWorker(w: Worker): void {
  detach(w);
  if (idleWorkers.length >= MAX_IDLE_WORKERS) {
    void w.terminate();
    return;
  }
  // An idle worker must not keep the process alive, and one that dies is forgotten.
  w.unref();
  w.once('exit', () => {
    const i = idleWorkers.indexOf(w);
    if (i >= 0) idleWorkers.splice(i, 1);
  });
  idleWorkers.push(w);
}

/** Terminate the idle vCPU workers this process keeps for later VMs. */
export async function terminateIdleVcpuThreads(): Promise<void> {
  const all = idleWorkers.splice(0);
  await Promise.all(all.map((w) => w.terminate()));
}

/**
 * A vCPU worker thread. Its worker is taken from the idle pool or spawned first (loading koffi
 * takes tens of milliseconds, which overlaps with setting up the VM) and is given its vCPU with
 * {@link VcpuThread.start}. When the vCPU's loop ends the worker goes back to the pool.
 */
export class VcpuThread {
  private readonly mailbox = new SharedArrayBuffer(MB.LENGTH * 4);
  private readonly mb = new Int32Array(this.mailbox);
  private runBytes?: Uint8Array;
  readonly worker: Worker;
  private serving = false;
  private started = false;
  private done = false;
  private handler: AccessHandler = () => undefined;
  private afterAccess: () => void = () => {};
  private onMessage: (m: VcpuWorkerMessage) => void = () => {};
  private finish!: (m: VcpuWorkerMessage & { type: 'exit' }) => void;
  /** Resolves with the worker's final message. */
  readonly exited: Promise<VcpuWorkerMessage & { type: 'exit' }>;

  constructor(readonly name = 'vcpu') {
    this.worker = acquireWorker(name);
    this.exited = new Promise((resolve) => (this.finish = resolve));
    this.worker.on('message', (m: VcpuWorkerMessage) => {
      this.onMessage(m);
      if (m.type === 'exit') this.end(m, true);
    });
    this.worker.on('error', (err) => {
      this.end({ type: 'exit', reason: 'crash', detail: { reason: `vCPU worker failed: ${err.message}`, vcpu: -1, registers: {} } }, false);
    });
    this.worker.on('exit', () => this.end({ type: 'exit', reason: 'stopped' }, false));
  }

  /** The vCPU loop ended (`reusable`: the worker is alive and idle again). */
  private end(m: VcpuWorkerMessage & { type: 'exit' }, reusable: boolean): void {
    if (this.done) return;
    this.done = true;
    if (this.started) Atomics.store(this.mb, MB.POST_TAIL, this.drainPosted()); // writes queued before the loop ended
    this.serving = false;
    this.runBytes = undefined; // the kvm_run mapping may be unmapped from now on: never touch it
    Atomics.store(this.mb, MB.STATE, VcpuRunState.EXITED);
    Atomics.notify(this.mb, MB.WAKE);
    if (reusable) releaseWorker(this.worker);
    else detach(this.worker);
    this.finish(m);
  }

  /** True once the worker has been given its vCPU. */
  get isStarted(): boolean {
    return this.started;
  }

  /** Hand the worker its vCPU; it enters KVM_RUN and posts `ready`. */
  start(vcpu: Vcpu, portMap: SharedArrayBuffer, portShadow: SharedArrayBuffer, regions: readonly GuestRegion[], paravirtual: boolean, handler: AccessHandler, onMessage: (m: VcpuWorkerMessage) => void, afterAccess: () => void = () => {}): void {
    this.handler = handler;
    this.onMessage = onMessage;
    this.afterAccess = afterAccess;
    this.runBytes = new Uint8Array(nativeView(vcpu.runAddress, vcpu.runSize));
    const wd: VcpuWorkerData = {
      vcpuId: vcpu.id, fd: vcpu.fd, runAddress: vcpu.runAddress, runSize: vcpu.runSize, mailbox: this.mailbox, portMap, portShadow,
      regions: regions.map((r) => ({ ...r })), paravirtual,
    };
    this.started = true;
    this.serving = true;
    this.worker.postMessage(wd);
    void this.serve();
  }

  /** The worker's state slot (see VcpuRunState). */
  get state(): number {
    return Atomics.load(this.mb, MB.STATE);
  }

  /** Port accesses answered in the worker because no device is mapped there. */
  get unhandledAccesses(): number {
    return Atomics.load(this.mb, MB.UNHANDLED);
  }

  private async serve(): Promise<void> {
    let wake = 0;
    let seen = 0;
    while (this.serving) {
      const w = Atomics.waitAsync(this.mb, MB.WAKE, wake);
      if (w.async) await w.value;
      wake = Atomics.load(this.mb, MB.WAKE);
      // Posted writes first: a request that follows them must see their effects.
      const tail = this.drainPosted();
      const cur = Atomics.load(this.mb, MB.REQ_SEQ);
      if (cur !== seen) {
        seen = cur;
        this.serveRequest();
      }
      this.afterAccess();
      // Only now may the worker trust the shadow table again (it reads shadows when the ring is empty).
      Atomics.store(this.mb, MB.POST_TAIL, tail);
    }
  }

  /** Apply the queued writes; returns the new tail, which the caller publishes. */
  private drainPosted(): number {
    const head = Atomics.load(this.mb, MB.POST_HEAD);
    let tail = this.mb[MB.POST_TAIL];
    while (tail !== head) {
      const at = MB.POST_RING + (tail % POST_SLOTS) * 3;
      this.call(ACCESS.PIO_WRITE, this.mb[at], this.mb[at + 1], BigInt(this.mb[at + 2] >>> 0));
      tail++;
    }
    return tail;
  }

  private call(kind: number, addr: number, size: number, value: bigint): bigint | void {
    try {
      return this.handler(kind, addr, size, value);
    } catch {
      // A device must never fail the VMM; the handler reports its own errors. Reads see all ones.
      return kind === ACCESS.PIO_READ || kind === ACCESS.MMIO_READ ? -1n : undefined;
    }
  }

  private serveRequest(): void {
    const kind = this.mb[MB.KIND];
    const addr = (this.mb[MB.ADDR_LO] >>> 0) + (this.mb[MB.ADDR_HI] >>> 0) * 0x1_0000_0000;
    const size = this.mb[MB.SIZE];
    const value = BigInt(this.mb[MB.DATA_LO] >>> 0) | (BigInt(this.mb[MB.DATA_HI] >>> 0) << 32n);
    const result = this.call(kind, addr, size, value);
    if (typeof result === 'bigint') {
      this.mb[MB.DATA_LO] = Number(result & 0xffff_ffffn) | 0;
      this.mb[MB.DATA_HI] = Number((result >> 32n) & 0xffff_ffffn) | 0;
    }
    Atomics.add(this.mb, MB.RESP_SEQ, 1);
    Atomics.notify(this.mb, MB.RESP_SEQ);
  }

  /** Force the vCPU out of KVM_RUN (immediate_exit + a signal to its thread). Synchronous, safe to call on process exit. */
  kick(): void {
    if (!this.runBytes) return;
    this.runBytes[1] = 1; // kvm_run.immediate_exit
    const tid = Atomics.load(this.mb, MB.TID);
    if (tid > 0 && this.state !== VcpuRunState.EXITED) libc().tgkill(libc().getpid(), tid, KICK_SIGNAL);
  }

  /** Ask the worker to leave its loop; resolves when the thread has ended. */
  async stop(): Promise<void> {
    if (!this.started) {
      this.end({ type: 'exit', reason: 'stopped' }, true);
      return;
    }
    Atomics.store(this.mb, MB.STOP, 1);
    Atomics.notify(this.mb, MB.PAUSE);
    this.kick();
    const timer = setInterval(() => this.kick(), 20); // a kick can race with entry into KVM_RUN
    try {
      await this.exited;
    } finally {
      clearInterval(timer);
    }
  }

  /** Request a stop without waiting (process exit path). */
  requestStop(): void {
    if (!this.started) return;
    Atomics.store(this.mb, MB.STOP, 1);
    Atomics.notify(this.mb, MB.PAUSE);
    this.kick();
  }

  /** Park the vCPU outside KVM_RUN; resolves once it is parked. */
  async pause(): Promise<void> {
    Atomics.store(this.mb, MB.PAUSE, 1);
    const deadline = Date.now() + 5000;
    while (this.state === VcpuRunState.RUNNING || this.state === VcpuRunState.STARTING) {
      this.kick();
      const w = Atomics.waitAsync(this.mb, MB.STATE, this.state, 20);
      if (w.async) await w.value;
      if (Date.now() > deadline) throw new KvmkitError(`${this.name} did not pause within 5 s`);
    }
  }

  resume(): void {
    Atomics.store(this.mb, MB.PAUSE, 0);
    Atomics.notify(this.mb, MB.PAUSE);
  }
}
