/**
 * The main-thread side of a disk's I/O threads: a few `worker_threads` Workers that run the
 * system calls, fed through a SharedArrayBuffer ring (ioRing.ts). Submitting costs a few stores and
 * at most one `Atomics.notify` per batch; completions wake the main thread through
 * `Atomics.waitAsync`, so neither the vCPU threads nor the event loop ever wait for the disk.
 *
 * Measured on this machine (bench/disk-io.mjs) against koffi's `.async` calls, which run on
 * libuv's thread pool: see RawDiskImage for the figures and the choice.
 * @module
 */
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import { ECANCELED, EINTR, EINVAL, EIO, ENOSYS, EOPNOTSUPP, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_ZERO_RANGE } from './constants';
import { FILE_PROTOTYPES } from './libcFile';
import { CTL, FLAG, H, HDR, type IoWorkerData, MAX_SEGMENTS, OP, RING_BYTES, ringViews, type RingViews, SLOTS } from './ioRing';
import { ioWorkerMain } from './ioWorker';
import { AioEngine } from './AioEngine';

/** One operation for the workers. `segments` holds (host address, length) pairs for READ/WRITE. */
export interface IoRequest {
  op: number;
  offset: number;
  length: number;
  flags: number;
  segments: readonly number[];
  /** Objects to keep alive until completion (the views whose addresses are in `segments`). */
  keep?: unknown;
}

/** Settings of an {@link IoWorkerPool}. */
export interface IoWorkerPoolOptions {
  fd: number;
  /** The descriptor has O_DIRECT: serialise overlapping read-modify-write requests. */
  direct: boolean;
  /** O_DIRECT file offset alignment. */
  offsetAlign: number;
  /** O_DIRECT buffer address alignment. */
  memAlign: number;
  /** Worker threads. */
  threads: number;
  /** Bytes of each worker's bounce buffer (O_DIRECT with unaligned buffers). */
  bounceBytes?: number;
  /**
   * With `direct`: aligned reads, writes and flushes go through Linux AIO from the main thread
   * (AioEngine), the rest to at most 2 blocking threads. Default true; all blocking threads when
   * the kernel has no AIO context to give.
   */
  aio?: boolean;
}

interface Pending {
  req: IoRequest;
  done: (result: number) => void;
  /** Aligned file range for the O_DIRECT ordering rule (write-class requests only). */
  start: number;
  end: number;
  writeClass: boolean;
  rmw: boolean;
  barrier: boolean;
  /** AIO handed it back (short transfer, refused): the threads run it. */
  threadsOnly?: boolean;
}

let workerSource: string | undefined;
let koffiPath: string | undefined;

/** Source text of the eval'd worker (see ioWorker.ts). */
function source(): string {
  workerSource ??= `(${ioWorkerMain.toString()})(require);`;
  return workerSource;
}

/** Workers and ring of one open disk image. */
export class IoWorkerPool {
  private readonly ring: RingViews;
  private readonly workers: Worker[] = [];
  private readonly freeSlots: number[] = [];
  private readonly bySlot: (Pending | undefined)[] = new Array(SLOTS).fill(undefined);
  private readonly queued: Pending[] = [];
  private running = 0;
  private changing = 0;
  private cqHead = 0;
  private waiting = false;
  private kickScheduled = false;
  private referenced = false;
  private broken: Error | undefined;
  private closing = false;
  private idleWaiters: (() => void)[] = [];
  private readonly exited: Promise<void>[] = [];
  private readonly aio: AioEngine | undefined;
  private readonly aioRunning = new Set<Pending>();
  private quiescing = false;

  constructor(private readonly options: IoWorkerPoolOptions) {
    const sab = new SharedArrayBuffer(RING_BYTES);
    this.ring = ringViews(sab);
    for (let s = SLOTS - 1; s >= 0; s--) this.freeSlots.push(s);
    koffiPath ??= createRequire(import.meta.url).resolve('koffi');
    this.aio = options.direct && options.aio !== false ? AioEngine.create(options.fd, SLOTS, { offset: options.offsetAlign, mem: options.memAlign }) : undefined;
    const data: IoWorkerData = {
      koffiPath,
      prototypes: FILE_PROTOTYPES,
      sab,
      fd: options.fd,
      direct: options.direct,
      offsetAlign: options.offsetAlign,
      memAlign: options.memAlign,
      bounceBytes: Math.max(options.bounceBytes ?? 1 << 20, options.offsetAlign),
      layout: {
        slots: SLOTS, maxSegments: MAX_SEGMENTS, hdr: HDR, ctl: CTL, h: H, op: OP, flag: FLAG,
        errno: { EINTR, EIO, EINVAL, EOPNOTSUPP, ECANCELED, ENOSYS },
        falloc: { KEEP_SIZE: FALLOC_FL_KEEP_SIZE, PUNCH_HOLE: FALLOC_FL_PUNCH_HOLE, ZERO_RANGE: FALLOC_FL_ZERO_RANGE },
      },
    };
    // --input-type (node -e) is refused by workers: keep the parent's other flags.
    const execArgv = process.execArgv.filter((a) => !a.startsWith('--input-type'));
    const threads = Math.max(1, this.aio ? Math.min(2, options.threads) : options.threads);
    for (let i = 0; i < threads; i++) {
      const w = new Worker(source(), { eval: true, workerData: data, execArgv });
      w.unref(); // idle I/O threads never keep the process alive; see setReferenced()
      w.on('error', (err) => this.fail(err));
      this.exited.push(
        new Promise((resolve) =>
          w.once('exit', (code) => {
            if (!this.closing) this.fail(new Error(`disk I/O worker exited unexpectedly (code ${code})`));
            resolve();
          }),
        ),
      );
      this.workers.push(w);
    }
  }

  /**
   * Requests that change the file (writes, write-zeroes, discards, resizes) submitted and not yet
   * completed: while there are any, a read done elsewhere could see the file half-way through one.
   */
  get changesInFlight(): number {
    return this.changing;
  }

  /** Requests handed to the workers and not yet completed, plus those waiting for a slot or their turn. */
  get inFlight(): number {
    return this.running + this.aioRunning.size + this.queued.length;
  }

  /** Queue `req`; `done` receives bytes transferred (>= 0) or -errno, on the main thread. */
  submit(req: IoRequest, done: (result: number) => void): void {
    if (this.broken || this.closing) {
      done(-EIO);
      return;
    }
    if (req.segments.length > 2 * MAX_SEGMENTS) {
      this.submitSplit(req, done);
      return;
    }
    const writeClass = req.op === OP.WRITE || req.op === OP.WRITE_ZEROES || req.op === OP.DISCARD;
    if (writeClass || req.op === OP.TRUNCATE) {
      this.changing++;
      const settle = done;
      done = (r) => {
        this.changing--;
        settle(r);
      };
    }
    const a = this.options.offsetAlign;
    const length = req.op === OP.WRITE ? sumLengths(req.segments) : req.length;
    const p: Pending = {
      req,
      done,
      start: Math.floor(req.offset / a) * a,
      end: Math.ceil((req.offset + length) / a) * a,
      writeClass,
      rmw: writeClass && (req.offset % a !== 0 || length % a !== 0),
      barrier: req.op === OP.TRUNCATE,
    };
    this.queued.push(p);
    this.pump();
  }

  /** A segment list longer than a slot holds: run it as consecutive parts, one after the other. */
  private submitSplit(req: IoRequest, done: (result: number) => void): void {
    let at = 0;
    let offset = req.offset;
    let total = 0;
    const next = (): void => {
      const part = req.segments.slice(at, at + 2 * MAX_SEGMENTS);
      at += part.length;
      const want = sumLengths(part);
      this.submit({ ...req, offset, segments: part, length: want }, (r) => {
        if (r < 0) return done(r);
        total += r;
        offset += r;
        if (r < want || at >= req.segments.length) return done(total);
        next();
      });
    };
    next();
  }

  /** Move queued requests into free slots, keeping O_DIRECT read-modify-writes apart. */
  private pump(): void {
    let published = 0;
    for (let i = 0; i < this.queued.length; ) {
      const p = this.queued[i]!;
      if (this.blocked(p, i)) {
        i++;
        continue;
      }
      if (this.aio && !p.threadsOnly && this.aio.start(p.req, (r) => this.aioFinished(p, r))) {
        this.queued.splice(i, 1);
        this.aioRunning.add(p);
        this.updateReferenced();
        continue;
      }
      if (this.freeSlots.length === 0) {
        i++;
        continue;
      }
      this.queued.splice(i, 1);
      this.publish(p);
      published++;
    }
    if (published > 0) this.scheduleKick();
  }

  /** Whether `p` (at `index` in the queue) must wait for a request running or queued before it. */
  private blocked(p: Pending, index: number): boolean {
    const conflict = (o: Pending): boolean =>
      p.barrier || o.barrier ||
      (this.options.direct && p.writeClass && o.writeClass && (p.rmw || o.rmw) && p.start < o.end && o.start < p.end);
    for (const o of this.bySlot) if (o && conflict(o)) return true;
    for (const o of this.aioRunning) if (conflict(o)) return true;
    for (let j = 0; j < index; j++) if (conflict(this.queued[j]!)) return true;
    return false;
  }

  private publish(p: Pending): void {
    const { ctl, sq, hdr, seg } = this.ring;
    const slot = this.freeSlots.pop()!;
    this.bySlot[slot] = p;
    const o = slot * HDR;
    const segs = p.req.segments;
    hdr[o + H.OP] = p.req.op;
    hdr[o + H.OFFSET] = p.req.offset;
    hdr[o + H.LENGTH] = p.req.length;
    hdr[o + H.NSEG] = segs.length / 2;
    hdr[o + H.FLAGS] = p.req.flags;
    hdr[o + H.RESULT] = 0;
    const base = slot * MAX_SEGMENTS * 2;
    for (let i = 0; i < segs.length; i++) seg[base + i] = segs[i]!;
    const tail = Atomics.load(ctl, CTL.SQ_TAIL);
    Atomics.store(sq, tail & (SLOTS - 1), slot);
    Atomics.store(ctl, CTL.SQ_TAIL, (tail + 1) | 0); // publishes the slot's fields too (seq-cst)
    this.running++;
    this.updateReferenced();
    if (!this.waiting) void this.waitForCompletions();
  }

  /** Ring the doorbell once per batch of submissions (a microtask after the first one). */
  private scheduleKick(): void {
    if (this.kickScheduled) return;
    this.kickScheduled = true;
    queueMicrotask(() => {
      this.kickScheduled = false;
      this.kick();
    });
  }

  private kick(): void {
    const { ctl } = this.ring;
    Atomics.add(ctl, CTL.DOORBELL, 1);
    Atomics.notify(ctl, CTL.DOORBELL, Math.min(this.workers.length, Math.max(1, this.running)));
  }

  /** Take finished slots off the completion ring and call their callbacks. */
  private reap(): void {
    const { cq, hdr } = this.ring;
    for (;;) {
      const i = this.cqHead & (SLOTS - 1);
      const v = Atomics.load(cq, i);
      if (v === 0) break;
      Atomics.store(cq, i, 0);
      this.cqHead = (this.cqHead + 1) | 0;
      const slot = v - 1;
      this.finish(slot, hdr[slot * HDR + H.RESULT]!);
    }
  }

  private finish(slot: number, result: number): void {
    const p = this.bySlot[slot];
    if (!p) return; // already failed by fail()
    this.bySlot[slot] = undefined;
    this.freeSlots.push(slot);
    this.running--;
    this.settle(p, result);
  }

  /** AIO finished `p`, or handed it back (`undefined`) for the threads. */
  private aioFinished(p: Pending, result: number | undefined): void {
    this.aioRunning.delete(p);
    if (result === undefined) {
      if (this.quiescing) result = -ECANCELED; // nothing may start during a reset
      else if (this.broken) result = -EIO;
      else {
        p.threadsOnly = true;
        this.queued.unshift(p);
        this.pump();
        return;
      }
    }
    this.settle(p, result);
  }

  private settle(p: Pending, result: number): void {
    this.updateReferenced();
    try {
      p.done(result);
    } finally {
      if (this.queued.length > 0) this.pump();
      if (this.inFlight === 0) this.notifyIdle();
    }
  }

  /** Wait (asynchronously) for completions while anything runs. */
  private async waitForCompletions(): Promise<void> {
    this.waiting = true;
    const { ctl } = this.ring;
    try {
      while (this.running > 0 && !this.broken) {
        const seen = Atomics.load(ctl, CTL.CQ_WAKE);
        this.reap();
        if (this.running === 0) break;
        const w = Atomics.waitAsync(ctl, CTL.CQ_WAKE, seen);
        if (w.async) await w.value;
      }
    } finally {
      this.waiting = false;
    }
  }

  private updateReferenced(): void {
    this.setReferenced(this.running + this.aioRunning.size > 0);
  }

  /** While requests run, the workers keep the process alive (a pending waitAsync does not). */
  private setReferenced(on: boolean): void {
    if (on === this.referenced) return;
    this.referenced = on;
    for (const w of this.workers) {
      if (on) w.ref();
      else w.unref();
    }
  }

  /**
   * Cancel what has not started and wait, blocking this thread for at most `timeoutMs`, for the
   * requests the workers are running. Cancelled requests complete with -ECANCELED.
   * @returns true when nothing is in flight any more
   */
  quiesce(timeoutMs: number): boolean {
    this.quiescing = true;
    try {
      return this.drain(timeoutMs);
    } finally {
      this.quiescing = false;
    }
  }

  private drain(timeoutMs: number): boolean {
    for (const p of this.queued.splice(0)) p.done(-ECANCELED);
    const { ctl, sq, hdr } = this.ring;
    // Claim the published requests no worker has taken yet, as a worker would.
    for (;;) {
      const head = Atomics.load(ctl, CTL.SQ_HEAD);
      if (head === Atomics.load(ctl, CTL.SQ_TAIL)) break;
      const slot = Atomics.load(sq, head & (SLOTS - 1));
      if (Atomics.compareExchange(ctl, CTL.SQ_HEAD, head, (head + 1) | 0) !== head) continue;
      hdr[slot * HDR + H.FLAGS] = FLAG.CANCELLED;
      this.finish(slot, -ECANCELED);
    }
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const seen = Atomics.load(ctl, CTL.CQ_WAKE);
      this.reap();
      this.aio?.reap(0);
      if ((this.running === 0 || this.broken) && this.aioRunning.size === 0) break;
      const left = deadline - performance.now();
      if (left <= 0) break;
      if (this.aioRunning.size > 0) this.aio!.reap(Math.min(left, 2)); // both kinds may be running: look at the ring again soon
      else Atomics.wait(ctl, CTL.CQ_WAKE, seen, left);
    }
    return this.inFlight === 0;
  }

  private notifyIdle(): void {
    for (const w of this.idleWaiters.splice(0)) w();
  }

  /** Resolves when nothing is in flight. */
  idle(): Promise<void> {
    if (this.inFlight === 0 || this.broken) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** A worker died: fail everything in flight and refuse new work. */
  private fail(err: Error): void {
    if (this.broken) return;
    this.broken = err;
    for (const p of this.queued.splice(0)) p.done(-EIO);
    for (let s = 0; s < SLOTS; s++) if (this.bySlot[s]) this.finish(s, -EIO);
    this.notifyIdle();
  }

  /** Requests the workers ran through their O_DIRECT bounce buffer so far. */
  get bounced(): number {
    return Atomics.load(this.ring.ctl, CTL.BOUNCED);
  }

  /** Whether O_DIRECT requests go through Linux AIO (else blocking threads). */
  get usesAio(): boolean {
    return this.aio !== undefined;
  }

  /** Why the pool stopped working, if it did. */
  get error(): Error | undefined {
    return this.broken;
  }

  /** Wait for the requests in flight, then stop the workers. */
  async close(): Promise<void> {
    if (this.closing) {
      await Promise.all(this.exited);
      return;
    }
    await this.idle();
    this.closing = true;
    const { ctl } = this.ring;
    Atomics.store(ctl, CTL.STOP, 1);
    Atomics.add(ctl, CTL.DOORBELL, 1);
    Atomics.notify(ctl, CTL.DOORBELL);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        for (const w of this.workers) void w.terminate();
        resolve();
      }, 5000);
    });
    await Promise.race([Promise.all(this.exited), timeout]);
    clearTimeout(timer);
    this.aio?.close();
  }
}

function sumLengths(segments: readonly number[]): number {
  let n = 0;
  for (let i = 1; i < segments.length; i += 2) n += segments[i]!;
  return n;
}
