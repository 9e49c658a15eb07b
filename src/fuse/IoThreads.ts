/**
 * The FUSE server's I/O threads: a few `worker_threads` Workers, each with a one-call mailbox in
 * a SharedArrayBuffer (ioThreadMain.ts). Large writes, large reads the page cache does not hold,
 * fsync and fallocate run there, so the main thread (which serves the vCPUs' device exits) never
 * waits for the disk.
 *
 * Why not koffi's `.async` (libuv's pool), which served the same purpose first? A reset must be
 * able to wait for running I/O synchronously before guest RAM is released (virtio 1.2 §2.4: no
 * writes after a reset), which a libuv job does not allow: `quiesce()` waits on the mailboxes with
 * `Atomics.wait`. The main-thread cost of the hop is about the same either way (30–80 µs per
 * call here, mostly the wake-up of the main loop; see ASYNC_IO_MIN_BYTES in PassthroughFs.ts). Submitting costs a few stores and one `Atomics.notify`; the completion wakes the
 * main thread through `Atomics.waitAsync`. A no-op call's round trip measures 90–190 µs on this
 * 2-CPU host under load: with the vCPU thread polling on one CPU, the main thread and the woken I/O
 * thread share the other, so the time seen "in" `Atomics.notify` (≈140 µs in a profile during
 * writes) is most likely the waker waiting for the CPU the wakee took (not measured directly); it
 * is not contention on the mailbox (one notify per call, one call per thread). Threads start when
 * the FUSE session does (`warm`) or on first use, and do not keep the process alive while idle.
 * @module
 */
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import { viewAddress } from '../disk/libcFile';
import { ioThreadMain } from './ioThreadMain';

/** Mailbox states and operation codes shared with ioThreadMain. */
const K = {
  IDLE: 0, BUSY: 1, DONE: 2, STOP: 3,
  PREADV: 1, PWRITEV: 2, FSYNC: 3, FDATASYNC: 4, FALLOCATE: 5,
  ENOSYS: 38, EIO: 5,
} as const;

/** One system call for a thread. Numbers travel as Float64: addresses and offsets must be below 2^53. */
interface Job {
  op: number;
  fd: number;
  args: [number, number, number];
  /** Kept referenced until the call returns (the iovec array and the views it points into). */
  keep: unknown;
  resolve: (result: number) => void;
}

interface Thread {
  worker: Worker;
  state: Int32Array;
  args: Float64Array;
  job: Job | undefined;
  /** Resolves when the worker has exited. */
  exited: Promise<void>;
}

/** Longest a completion can go unnoticed if its wake-up is lost (ms). */
const WATCH_MS = 20;

let workerSource: string | undefined;
let koffiPath: string | undefined;

/** A small pool of I/O threads. */
export class IoThreads {
  private readonly threads: Thread[] = [];
  private readonly queue: Job[] = [];
  private broken: Error | undefined;
  private closed = false;
  /** Completions found by the timed re-check rather than the wake-up (diagnostics). */
  lateWakeups = 0;

  /** @param count threads to start on first use (the host's 2 CPUs are saturated by 2) */
  constructor(readonly count = 2) {}

  /**
   * Start the threads now rather than on the first call: a Worker takes tens of milliseconds to
   * boot (more on a loaded host), which the first large transfer would otherwise wait for.
   */
  warm(): void {
    while (!this.closed && !this.broken && this.threads.length < this.count) {
      if (!this.start()) return;
    }
  }

  /** Why the threads stopped working (every call then answers EIO), or undefined. */
  get error(): Error | undefined {
    return this.broken;
  }

  /** Threads started (they start on {@link warm} or on first use, up to `count`). */
  get started(): number {
    return this.threads.length;
  }

  /** Calls running or queued. */
  get inFlight(): number {
    return this.queue.length + this.threads.filter((t) => t.job).length;
  }

  /** preadv(fd, iov, iovcnt, offset) on a thread: bytes read or -errno. `iov` holds host addresses. */
  preadv(fd: number, iov: Uint8Array, iovcnt: number, offset: number, keep: unknown): Promise<number> {
    return this.submit(K.PREADV, fd, [viewAddress(iov), iovcnt, offset], [iov, keep]);
  }

  /** pwritev(fd, iov, iovcnt, offset) on a thread: bytes written or -errno. */
  pwritev(fd: number, iov: Uint8Array, iovcnt: number, offset: number, keep: unknown): Promise<number> {
    return this.submit(K.PWRITEV, fd, [viewAddress(iov), iovcnt, offset], [iov, keep]);
  }

  /** fsync (fdatasync when `dataOnly`) on a thread: 0 or -errno. */
  fsync(fd: number, dataOnly: boolean): Promise<number> {
    return this.submit(dataOnly ? K.FDATASYNC : K.FSYNC, fd, [0, 0, 0], undefined);
  }

  /** fallocate on a thread: 0 or -errno. */
  fallocate(fd: number, mode: number, offset: number, length: number): Promise<number> {
    return this.submit(K.FALLOCATE, fd, [mode, offset, length], undefined);
  }

  /**
   * Wait (blocking the calling thread) until no system call is running, at most `timeoutMs`.
   * Queued calls not started are left queued. Returns whether every thread is idle.
   */
  quiesce(timeoutMs: number): boolean {
    const deadline = Date.now() + timeoutMs;
    for (const t of this.threads) {
      for (;;) {
        if (Atomics.load(t.state, 0) !== K.BUSY) break;
        const left = deadline - Date.now();
        if (left <= 0) return false;
        Atomics.wait(t.state, 0, K.BUSY, left);
      }
    }
    return true;
  }

  /** Drop the calls not started yet; they resolve with -EIO. */
  cancelQueued(): void {
    for (const j of this.queue.splice(0)) j.resolve(-K.EIO);
  }

  /** Stop the threads once their current call returns (queued calls resolve with -EIO). */
  async close(): Promise<void> {
    this.closed = true;
    this.cancelQueued();
    this.quiesce(10_000);
    for (const t of this.threads) {
      t.worker.ref(); // until it has exited
      Atomics.store(t.state, 0, K.STOP);
      Atomics.notify(t.state, 0);
    }
    await Promise.all(this.threads.map((t) => t.exited));
    this.threads.length = 0;
  }

  private submit(op: number, fd: number, args: [number, number, number], keep: unknown): Promise<number> {
    if (this.closed || this.broken) return Promise.resolve(-K.EIO);
    return new Promise((resolve) => {
      this.queue.push({ op, fd, args, keep, resolve });
      this.pump();
    });
  }

  /** Give queued calls to idle threads (starting threads up to `count`). */
  private pump(): void {
    while (this.queue.length > 0) {
      let t = this.threads.find((x) => !x.job);
      if (!t) {
        if (this.threads.length >= this.count) return;
        t = this.start();
        if (!t) return;
      }
      this.run(t, this.queue.shift()!);
    }
  }

  private run(t: Thread, job: Job): void {
    t.job = job;
    t.args[0] = job.op;
    t.args[1] = job.fd;
    t.args[2] = job.args[0];
    t.args[3] = job.args[1];
    t.args[4] = job.args[2];
    t.args[6] = 0;
    t.worker.ref(); // a running call keeps the process alive until it is answered
    Atomics.store(t.state, 0, K.BUSY); // publishes the arguments too (sequentially consistent)
    Atomics.notify(t.state, 0);
    this.watch(t);
  }

  /**
   * Wait for `t`'s call to finish. The wait re-arms every {@link WATCH_MS} and looks at the state
   * itself, so a completion is never missed for longer than that. (One stress run of 9,000 reads,
   * under a load average of 14, hung with one call unanswered before this re-check was
   * added; the cause was not found. The timed wait costs nothing otherwise; `lateWakeups` counts
   * completions the re-check found.)
   */
  private watch(t: Thread): void {
    const w = Atomics.waitAsync(t.state, 0, K.BUSY, WATCH_MS);
    if (!w.async) {
      queueMicrotask(() => this.finish(t));
      return;
    }
    void w.value.then((how) => {
      if (Atomics.load(t.state, 0) === K.BUSY) return this.watch(t);
      if (how === 'timed-out') this.lateWakeups++;
      this.finish(t);
    });
  }

  private finish(t: Thread): void {
    const job = t.job;
    if (!job || Atomics.load(t.state, 0) !== K.DONE) return;
    const result = t.args[6]!;
    t.job = undefined;
    Atomics.store(t.state, 0, K.IDLE);
    t.worker.unref();
    job.resolve(result);
    this.pump();
  }

  private start(): Thread | undefined {
    const sab = new SharedArrayBuffer(8 + 7 * 8);
    workerSource ??= `(${ioThreadMain.toString()})(require);`;
    koffiPath ??= createRequire(import.meta.url).resolve('koffi');
    // --input-type (node -e) is refused by workers: keep the parent's other flags.
    const execArgv = process.execArgv.filter((a) => !a.startsWith('--input-type'));
    const worker = new Worker(workerSource, { eval: true, workerData: { koffiPath, sab, codes: K }, execArgv });
    worker.unref();
    worker.on('error', (e) => this.fail(e));
    const exited = new Promise<void>((resolve) =>
      worker.once('exit', (code) => {
        if (!this.closed) this.fail(new Error(`FUSE I/O thread exited unexpectedly (code ${code})`));
        resolve();
      }),
    );
    const t: Thread = { worker, state: new Int32Array(sab, 0, 1), args: new Float64Array(sab, 8, 7), job: undefined, exited };
    this.threads.push(t);
    return t;
  }

  /** A thread died: every call it or the queue held answers EIO, and so do later ones. */
  private fail(e: Error): void {
    if (this.broken) return;
    this.broken = e;
    for (const t of this.threads) {
      if (t.job) t.job.resolve(-K.EIO);
      t.job = undefined;
    }
    this.cancelQueued();
  }
}
