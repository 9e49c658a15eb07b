/**
 * The main thread's handle on a virtio-fs queue thread (fsWorkerMain.ts): messages, calls that
 * wait for the thread to carry them out, and a small pool, so that a device created after another
 * one closed (the next VM of a test suite, a benchmark's measured boot after its warm-up) gets a
 * thread that is already running and whose code V8 has already compiled, as vCPU workers are
 * kept (VcpuThread.ts).
 * @module
 */
import { Worker } from 'node:worker_threads';
import { KvmkitError } from '../../../errors';
import { builtWorkerPath, workerExecArgv } from '../../../workerScript';
import { FS_STATS_FIELDS } from './FsQueueService';
import { CTL_ACK, CTL_SLOTS, MAX_FS_QUEUES, type FromFsWorker, type FsWorkerData, type ToFsWorker } from './fsWorkerProtocol';

/** Idle queue threads kept for the next device; more are terminated. */
const MAX_IDLE = 4;
const idle: FsQueueThread[] = [];

/** A virtio-fs queue thread, owned by one device between {@link FsQueueThread.acquire} and {@link FsQueueThread.release}. */
export class FsQueueThread {
  readonly #worker: Worker;
  readonly #ctl = new Int32Array(new SharedArrayBuffer(CTL_SLOTS * 4));
  /** Each queue's direct irqfd for the thread, or -1 (fsWorkerProtocol.ts). */
  readonly irqfds = new Int32Array(new SharedArrayBuffer(MAX_FS_QUEUES * 4)).fill(-1);
  /** The counters the thread publishes (FS_STATS_FIELDS order). */
  readonly counters = new Float64Array(new SharedArrayBuffer(FS_STATS_FIELDS.length * 8));
  #seq = 0;
  #failure: string | undefined;
  #onMessage: ((m: FromFsWorker) => void) | undefined;

  private constructor() {
    const workerData: FsWorkerData = {
      ctl: this.#ctl.buffer as SharedArrayBuffer,
      stats: this.counters.buffer as SharedArrayBuffer,
      irqfds: this.irqfds.buffer as SharedArrayBuffer,
    };
    this.#worker = new Worker(builtWorkerPath('fs-worker.js', 'virtio-fs queue thread'), { name: 'virtio-fs', workerData, execArgv: workerExecArgv() });
    this.#worker.unref(); // the VM keeps the process alive, not its devices
    this.#worker.on('error', (e) => {
      this.#failure = e.message;
    });
    this.#worker.on('exit', () => {
      this.#failure ??= 'the thread exited';
    });
  }

  /** An idle thread, or a new one; `onMessage` receives what it sends until {@link release}. */
  static acquire(onMessage: (m: FromFsWorker) => void): FsQueueThread {
    let t = idle.pop();
    while (t && t.#failure !== undefined) t = idle.pop();
    t ??= new FsQueueThread();
    t.counters.fill(0); // nothing of the previous device's, even before the thread takes `open`
    t.#onMessage = onMessage;
    t.#worker.on('message', onMessage);
    return t;
  }

  /** Why the thread cannot serve (it died), if so. */
  get failure(): string | undefined {
    return this.#failure;
  }

  /** Send `m` (in order with every other message). */
  post(m: ToFsWorker): void {
    this.#worker.postMessage(m);
  }

  /**
   * Send `m` and wait, blocking this thread, until the queue thread has carried it out.
   * @throws KvmkitError when it does not within `timeoutMs`
   */
  call(m: Extract<ToFsWorker, { seq: number }>, timeoutMs: number, what: string): void {
    const seq = this.#send(m);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const now = Atomics.load(this.#ctl, CTL_ACK);
      if (now >= seq) return;
      const left = deadline - Date.now();
      if (left <= 0 || this.#failure !== undefined) {
        throw new KvmkitError(`${what}: the queue thread did not carry out ${m.type} within ${timeoutMs} ms${this.#failure ? ` (${this.#failure})` : ''}`);
      }
      Atomics.wait(this.#ctl, CTL_ACK, now, left);
    }
  }

  /** As {@link call}, without blocking: resolves true once carried out, false after `timeoutMs`. */
  async callAsync(m: Extract<ToFsWorker, { seq: number }>, timeoutMs: number): Promise<boolean> {
    const seq = this.#send(m);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const now = Atomics.load(this.#ctl, CTL_ACK);
      if (now >= seq) return true;
      if (Date.now() >= deadline || this.#failure !== undefined) return false;
      const r = Atomics.waitAsync(this.#ctl, CTL_ACK, now, Math.min(100, deadline - Date.now()));
      if (r.async) await r.value;
    }
  }

  /** Post `m` with the next sequence number, which the thread acknowledges when done. */
  #send(m: Extract<ToFsWorker, { seq: number }>): number {
    const seq = ++this.#seq;
    this.#worker.postMessage({ ...m, seq });
    return seq;
  }

  /**
   * The device is done with the thread (after a `close` it carried out, `clean`): keep it for the
   * next device, or end it. A thread that did not close cleanly is ended.
   */
  async release(clean: boolean): Promise<void> {
    this.irqfds.fill(-1);
    if (this.#onMessage) this.#worker.off('message', this.#onMessage);
    this.#onMessage = undefined;
    if (clean && this.#failure === undefined && idle.length < MAX_IDLE) {
      idle.push(this);
      return;
    }
    this.#failure ??= 'ended';
    await this.#worker.terminate();
  }
}
