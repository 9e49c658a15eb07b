/**
 * Linux native AIO driven from the main thread, QEMU's `aio=native` model: aligned O_DIRECT reads,
 * writes and flushes are io_submit'ted in one batch per event-loop turn, and their completions
 * signal an eventfd (IOCB_FLAG_RESFD) that the event loop watches, so a request costs two
 * wake-ups of one thread (doorbell in, completion back) and no thread hand-off at all. With
 * O_DIRECT, io_submit only queues the I/O to the device; it does not wait for it.
 *
 * What AIO cannot do here (unaligned buffers, discard, write-zeroes, resize), what the kernel
 * refuses, and short transfers are handed back (`undefined` result) for the blocking I/O threads.
 * @module
 */
import koffi from 'koffi';
import { EventFd } from '../hypervisor/kvm/EventFd';
import { EINTR, EINVAL } from './constants';
import { MAX_SEGMENTS, OP } from './ioRing';
import type { IoRequest } from './IoWorkerPool';
import { libcFile } from './libcFile';
import { aioDestroy, aioSetup, IO_EVENT, IOCB, IOCB_CMD, AIO_SYSCALLS, SYSCALL_PROTOTYPE } from './linuxAio';

/** iocb.aio_flags: signal `aio_resfd` on completion (aio_abi.h). */
const IOCB_FLAG_RESFD = 1;
/** Offsets of aio_flags and aio_resfd in struct iocb (aio_abi.h). */
const IOCB_FLAGS = 56;
const IOCB_RESFD = 60;
const TWO32 = 0x1_0000_0000;
/** Each iocb is followed by its struct iovec[MAX_SEGMENTS] (16 bytes each on 64-bit Linux). */
const STRIDE = IOCB.size + 16 * MAX_SEGMENTS;

/** Called with bytes transferred (>= 0) or -errno, or `undefined`: run the request another way. */
export type AioDone = (result: number | undefined) => void;

type Syscall = (nr: number, ...typedArgs: unknown[]) => number;

/** One AIO context and its eventfd, for one O_DIRECT file descriptor. */
export class AioEngine {
  private readonly sys: Syscall;
  private readonly done: (AioDone | undefined)[];
  private readonly expected: number[];
  private readonly free: number[] = [];
  private readonly batch: number[] = [];
  private readonly ptrsAt: number;
  private readonly eventsAt: number;
  private readonly timespecAt: number;
  private readonly bytes: number;
  private readonly dv: DataView;
  private submitScheduled = false;
  private fdsync = true;
  private running = 0;
  private closed = false;

  private constructor(
    private readonly fd: number,
    private readonly ctx: bigint,
    private readonly efd: EventFd,
    private readonly area: number,
    private readonly capacity: number,
    private readonly align: { offset: number; mem: number },
  ) {
    this.sys = koffi.load('libc.so.6').func(SYSCALL_PROTOTYPE) as Syscall;
    this.done = new Array<AioDone | undefined>(capacity).fill(undefined);
    this.expected = new Array<number>(capacity).fill(0);
    for (let i = capacity - 1; i >= 0; i--) this.free.push(i);
    this.ptrsAt = capacity * STRIDE;
    this.eventsAt = this.ptrsAt + 8 * capacity;
    this.timespecAt = this.eventsAt + IO_EVENT.size * capacity;
    this.bytes = this.timespecAt + 16;
    this.dv = new DataView(koffi.view(BigInt(area) as never, this.bytes) as ArrayBuffer);
    efd.watch(() => this.reap(0));
  }

  /**
   * An engine for `fd` (opened with O_DIRECT) with up to `capacity` requests in flight, or
   * undefined when the kernel has no AIO to give (ENOSYS, aio-max-nr reached).
   */
  static create(fd: number, capacity: number, align: { offset: number; mem: number }): AioEngine | undefined {
    const setup = aioSetup(capacity);
    if (!('ctx' in setup)) return undefined;
    const c = libcFile();
    const bytes = capacity * (STRIDE + 8 + IO_EVENT.size) + 16;
    const area = Number(c.mmap(0, bytes, 3, 0x22, -1, 0)); // PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS
    if (area === -1 || area >= 2 ** 53) {
      aioDestroy(setup.ctx);
      return undefined;
    }
    return new AioEngine(fd, setup.ctx, new EventFd(), area, capacity, align);
  }

  /** Requests submitted (or about to be) and not completed. */
  get inFlight(): number {
    return this.running;
  }

  /**
   * Start `req` if AIO can run it: an aligned READ or WRITE, or a FLUSH. `done` is called on the
   * main loop, later (never from inside this call).
   * @returns false when the request must go to the I/O threads
   */
  start(req: IoRequest, done: AioDone): boolean {
    if (this.closed || this.free.length === 0) return false;
    let opcode: number;
    let buf = 0;
    let nbytes = 0;
    let total = 0;
    const segs = req.segments;
    const n = segs.length / 2;
    if (req.op === OP.FLUSH) {
      if (!this.fdsync) return false;
      opcode = IOCB_CMD.FDSYNC;
    } else if ((req.op === OP.READ || req.op === OP.WRITE) && n > 0 && n <= MAX_SEGMENTS) {
      if (req.offset % this.align.offset !== 0) return false;
      for (let i = 0; i < n; i++) {
        if (segs[2 * i]! % this.align.mem !== 0 || segs[2 * i + 1]! % this.align.offset !== 0) return false;
        total += segs[2 * i + 1]!;
      }
      if (n === 1) {
        opcode = req.op === OP.READ ? IOCB_CMD.PREAD : IOCB_CMD.PWRITE;
        buf = segs[0]!;
        nbytes = total;
      } else {
        opcode = req.op === OP.READ ? IOCB_CMD.PREADV : IOCB_CMD.PWRITEV;
        const index = this.free[this.free.length - 1]!;
        const iov = index * STRIDE + IOCB.size;
        for (let i = 0; i < 2 * n; i++) this.u64(iov + 8 * i, segs[i]!);
        buf = this.area + iov;
        nbytes = n;
      }
    } else {
      return false;
    }
    const index = this.free.pop()!;
    const o = index * STRIDE;
    const dv = this.dv;
    for (let i = 0; i < IOCB.size; i += 4) dv.setUint32(o + i, 0, true);
    this.u64(o + IOCB.data, index);
    dv.setUint16(o + IOCB.opcode, opcode, true);
    dv.setUint32(o + IOCB.fildes, this.fd, true);
    this.u64(o + IOCB.buf, buf);
    this.u64(o + IOCB.nbytes, nbytes);
    this.u64(o + IOCB.offset, req.offset);
    dv.setUint32(o + IOCB_FLAGS, IOCB_FLAG_RESFD, true);
    dv.setUint32(o + IOCB_RESFD, this.efd.fd, true);
    this.done[index] = done;
    this.expected[index] = req.op === OP.FLUSH ? 0 : total;
    this.batch.push(index);
    this.running++;
    if (!this.submitScheduled) {
      this.submitScheduled = true;
      queueMicrotask(() => this.submit());
    }
    return true;
  }

  /** io_submit everything started this turn; what the kernel refuses goes back to the caller. */
  private submit(): void {
    this.submitScheduled = false;
    const b = this.batch;
    let at = 0;
    while (at < b.length) {
      for (let i = at; i < b.length; i++) this.u64(this.ptrsAt + 8 * (i - at), this.area + b[i]! * STRIDE);
      const r = this.sys(AIO_SYSCALLS.submit, 'uint64_t', this.ctx, 'long', b.length - at, 'uintptr_t', this.area + this.ptrsAt);
      if (r > 0) {
        at += r;
        continue;
      }
      const e = r < 0 ? koffi.errno() : 0;
      if (e === EINTR) continue;
      const index = b[at++]!;
      if (this.dv.getUint16(index * STRIDE + IOCB.opcode, true) === IOCB_CMD.FDSYNC) this.fdsync = false; // no AIO fsync (before Linux 4.18)
      this.complete(index, undefined);
    }
    b.length = 0;
  }

  /**
   * Take completed requests and call their callbacks; with `waitMs` > 0, first wait up to that
   * long for at least one (a blocking wait, for quiesce).
   * @returns completions taken
   */
  reap(waitMs: number): number {
    if (this.closed) return 0;
    const dv = this.dv;
    let taken = 0;
    for (let min = waitMs > 0 && this.running > 0 ? 1 : 0; ; min = 0) {
      this.u64(this.timespecAt, Math.floor(waitMs / 1000) * (min ? 1 : 0));
      this.u64(this.timespecAt + 8, min ? Math.round((waitMs % 1000) * 1e6) : 0);
      const got = this.sys(AIO_SYSCALLS.getevents, 'uint64_t', this.ctx, 'long', min, 'long', this.capacity, 'uintptr_t', this.area + this.eventsAt, 'uintptr_t', this.area + this.timespecAt);
      if (got < 0) {
        if (koffi.errno() === EINTR) continue;
        throw new Error(`io_getevents failed (errno ${koffi.errno()})`);
      }
      for (let i = 0; i < got; i++) {
        const at = this.eventsAt + i * IO_EVENT.size;
        const index = dv.getUint32(at + IO_EVENT.data, true);
        const res = dv.getInt32(at + IO_EVENT.res + 4, true) * TWO32 + dv.getUint32(at + IO_EVENT.res, true);
        const want = this.expected[index]!;
        // A short transfer or EINVAL (more alignment wanted than statx said): the threads redo it.
        this.complete(index, res === want || (res < 0 && res !== -EINVAL) ? res : undefined);
      }
      taken += got;
      if (got < this.capacity) return taken;
    }
  }

  private complete(index: number, result: number | undefined): void {
    const done = this.done[index];
    this.done[index] = undefined;
    this.free.push(index);
    this.running--;
    done?.(result);
  }

  private u64(at: number, v: number): void {
    this.dv.setUint32(at, v % TWO32, true);
    this.dv.setUint32(at + 4, Math.floor(v / TWO32), true);
  }

  /** Release the context (waiting for anything still in flight), the eventfd and the memory. */
  close(): void {
    if (this.closed) return;
    if (this.submitScheduled) this.submit();
    this.closed = true;
    aioDestroy(this.ctx);
    this.efd.close();
    libcFile().munmap(this.area, this.bytes);
  }
}
