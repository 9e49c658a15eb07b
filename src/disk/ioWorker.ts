/**
 * The body of a disk I/O worker thread: claims requests from the ring (ioRing.ts), runs the system
 * calls synchronously through koffi and posts completions.
 *
 * The function is shipped to the thread as source text (`new Worker(source, { eval: true })`), so
 * the same code runs under vitest, from `dist/` and from a bundle without a separate worker file.
 * It must therefore be self-contained: it closes over nothing, imports only types, and receives
 * `require`, koffi's path, the libc prototypes and the ring layout from its caller.
 *
 * Data path: reads and writes use `pread`/`preadv`/`pwrite`/`pwritev` straight on the callers'
 * buffers (host addresses of guest RAM views), with no copy. With O_DIRECT, a request whose file
 * range is not aligned to `offsetAlign` or whose buffers are not aligned to `memAlign` goes through
 * an mmap'd, page-aligned bounce buffer instead (read-modify-write for partial blocks); so does one
 * the kernel refuses with EINVAL.
 *
 * O_DIRECT images with Linux AIO (AioEngine.ts) send only what AIO cannot do to these threads.
 * @module
 */
import type { IoWorkerData } from './ioRing';

/** `require` of the worker's CommonJS scope. */
export type NodeRequire = (id: string) => unknown;

/** Run a disk I/O worker until the ring's STOP word is set. Called in the worker thread only. */
export function ioWorkerMain(nodeRequire: NodeRequire): void {
  const threads = nodeRequire('node:worker_threads') as typeof import('node:worker_threads');
  const d = threads.workerData as IoWorkerData;
  const koffi = nodeRequire(d.koffiPath) as typeof import('koffi');
  const L = d.layout;
  const C = L.ctl;
  const H = L.h;
  const OP = L.op;
  const FLAG = L.flag;
  const E = L.errno;
  const F = L.falloc;
  const lib = koffi.load('libc.so.6');
  const P = d.prototypes;
  type IoFn = (fd: number, buf: number, count: number, offset: number) => number;
  type IovFn = (fd: number, iov: Uint8Array, cnt: number, offset: number) => number;
  const pread = lib.func(P.pread!) as IoFn;
  const pwrite = lib.func(P.pwrite!) as IoFn;
  const preadv = lib.func(P.preadv!) as IovFn;
  const pwritev = lib.func(P.pwritev!) as IovFn;
  const fallocate = lib.func(P.fallocate!) as (fd: number, mode: number, off: number, len: number) => number;
  const ftruncate = lib.func(P.ftruncate!) as (fd: number, len: number) => number;
  const fdatasync = lib.func(P.fdatasync!) as (fd: number) => number;
  const mmap = lib.func(P.mmap!) as (a: number, l: number, p: number, f: number, fd: number, o: number) => number | bigint;

  // Ring views: the same arithmetic as ioRing.ts ringViews().
  const slots = L.slots;
  const mask = slots - 1;
  const maxSeg = L.maxSegments;
  const ctl = new Int32Array(d.sab, 0, C.LENGTH);
  const sq = new Int32Array(d.sab, 4 * C.LENGTH, slots);
  const cq = new Int32Array(d.sab, 4 * (C.LENGTH + slots), slots);
  const f64 = 4 * (C.LENGTH + 2 * slots);
  const hdr = new Float64Array(d.sab, f64, slots * L.hdr);
  const seg = new Float64Array(d.sab, f64 + 8 * slots * L.hdr, slots * maxSeg * 2);

  const fd = d.fd;
  const A = d.offsetAlign;
  const M = d.memAlign;
  const iov32 = new Uint32Array(4 * maxSeg); // struct iovec { void *iov_base; size_t iov_len; } (x86_64/aarch64: 16 bytes)
  const iovBytes = new Uint8Array(iov32.buffer);
  const TWO32 = 0x1_0000_0000;

  let bounceAddr = 0;
  let bounce: Uint8Array | undefined;
  let zeroAddr = 0;

  /** An mmap'd (so page-aligned) anonymous buffer: MAP_PRIVATE | MAP_ANONYMOUS, PROT_READ | PROT_WRITE. */
  function alignedBuffer(len: number): number {
    const p = mmap(0, len, 3, 0x22, -1, 0);
    if (BigInt(p) === 0xffffffffffffffffn) throw new Error(`mmap of a ${len}-byte bounce buffer failed (errno ${koffi.errno()})`);
    return Number(p);
  }
  function bounceBuffer(): Uint8Array {
    if (!bounce) {
      bounceAddr = alignedBuffer(d.bounceBytes);
      bounce = new Uint8Array(koffi.view(BigInt(bounceAddr) as never, d.bounceBytes));
    }
    return bounce;
  }
  /** A guest (or caller) buffer as a view, for bounce copies only. */
  function viewAt(addr: number, len: number): Uint8Array {
    return new Uint8Array(koffi.view(BigInt(addr) as never, len));
  }

  /** Run `call` until it does not fail with EINTR; returns its result or -errno. */
  function retry(call: () => number): number {
    for (;;) {
      const r = call();
      if (r >= 0) return r;
      const e = koffi.errno();
      if (e !== E.EINTR) return -e;
    }
  }

  /** pread/pwrite all of `[addr, addr+n)` at `pos`; returns bytes done (short only at EOF on a read) or -errno. */
  function whole(write: boolean, addr: number, n: number, pos: number): number {
    let done = 0;
    while (done < n) {
      const r = retry(() => (write ? pwrite : pread)(fd, addr + done, n - done, pos + done));
      if (r < 0) return r;
      if (r === 0) return write ? -E.EIO : done;
      done += r;
    }
    return done;
  }

  function segmentTotal(base: number, nseg: number): number {
    let total = 0;
    for (let i = 0; i < nseg; i++) total += seg[base + 2 * i + 1]!;
    return total;
  }

  function directAligned(off: number, total: number, base: number, nseg: number): boolean {
    if (off % A !== 0 || total % A !== 0) return false;
    for (let i = 0; i < nseg; i++) {
      if (seg[base + 2 * i]! % M !== 0 || seg[base + 2 * i + 1]! % A !== 0) return false;
    }
    return true;
  }

  /** preadv/pwritev straight on the segments; partial transfers continue where they stopped. */
  function vectored(write: boolean, off: number, total: number, base: number, nseg: number): number {
    let done = 0;
    let si = 0;
    let skip = 0;
    while (done < total) {
      let cnt = 0;
      for (let i = si; i < nseg && cnt < maxSeg; i++) {
        const a = seg[base + 2 * i]! + (i === si ? skip : 0);
        const l = seg[base + 2 * i + 1]! - (i === si ? skip : 0);
        const k = 4 * cnt++;
        iov32[k] = a % TWO32;
        iov32[k + 1] = Math.floor(a / TWO32);
        iov32[k + 2] = l % TWO32;
        iov32[k + 3] = Math.floor(l / TWO32);
      }
      const pos = off + done;
      let r: number;
      if (cnt === 1) {
        const a = seg[base + 2 * si]! + skip;
        const l = seg[base + 2 * si + 1]! - skip;
        r = retry(() => (write ? pwrite : pread)(fd, a, l, pos));
      } else {
        r = retry(() => (write ? pwritev : preadv)(fd, iovBytes, cnt, pos));
      }
      if (r < 0) return r;
      if (r === 0) return write ? -E.EIO : done;
      done += r;
      let adv = r;
      while (adv > 0 && si < nseg) {
        const rem = seg[base + 2 * si + 1]! - skip;
        if (adv >= rem) {
          adv -= rem;
          si++;
          skip = 0;
        } else {
          skip += adv;
          adv = 0;
        }
      }
    }
    return done;
  }

  /**
   * O_DIRECT through the bounce buffer: the file range widened to whole aligned blocks, in chunks
   * of the bounce size; partial head and tail blocks of a write are read first (read-modify-write;
   * the pool never runs two overlapping ones at once). `zero`: write zeroes instead of segments.
   */
  function bounced(write: boolean, off: number, total: number, base: number, nseg: number, zero: boolean): number {
    const buf = bounceBuffer();
    const size = buf.length;
    Atomics.add(ctl, C.BOUNCED, 1);
    const start = Math.floor(off / A) * A;
    const end = Math.ceil((off + total) / A) * A;
    let done = 0;
    let si = 0; // segment cursor for the copies
    let skip = 0;
    const copy = (toSegments: boolean, at: number, count: number): void => {
      let left = count;
      let b = at;
      while (left > 0 && si < nseg) {
        const l = Math.min(seg[base + 2 * si + 1]! - skip, left);
        const v = viewAt(seg[base + 2 * si]! + skip, l);
        if (toSegments) v.set(buf.subarray(b, b + l));
        else buf.set(v, b);
        b += l;
        left -= l;
        skip += l;
        if (skip === seg[base + 2 * si + 1]!) {
          si++;
          skip = 0;
        }
      }
    };
    for (let cs = start; cs < end; ) {
      const ce = Math.min(end, cs + size);
      const n = ce - cs;
      const lo = Math.max(off, cs);
      const hi = Math.min(off + total, ce);
      if (!write) {
        const r = whole(false, bounceAddr, n, cs);
        if (r < 0) return r;
        const upto = Math.min(hi, cs + r);
        if (upto > lo) copy(true, lo - cs, upto - lo);
        if (upto < hi) return done + Math.max(0, upto - lo);
      } else {
        if (lo > cs) {
          const r = whole(false, bounceAddr, A, cs);
          if (r < 0) return r;
          buf.fill(0, r, A);
        }
        if (hi < ce && !(lo > cs && n === A)) {
          const r = whole(false, bounceAddr + n - A, A, ce - A);
          if (r < 0) return r;
          buf.fill(0, n - A + r, n);
        }
        if (zero) buf.fill(0, lo - cs, hi - cs);
        else copy(false, lo - cs, hi - lo);
        const r = whole(true, bounceAddr, n, cs);
        if (r < 0) return r;
      }
      done += hi - lo;
      cs = ce;
    }
    return done;
  }

  function transfer(write: boolean, off: number, base: number, nseg: number): number {
    const total = segmentTotal(base, nseg);
    if (d.direct && !directAligned(off, total, base, nseg)) return bounced(write, off, total, base, nseg, false);
    const r = vectored(write, off, total, base, nseg);
    // Some file systems want more alignment than statx reported: retry through the bounce buffer.
    if (d.direct && r === -E.EINVAL) return bounced(write, off, total, base, nseg, false);
    return r;
  }

  /** Write zeroes with pwrite, for file systems without ZERO_RANGE (and non-sparse images). */
  function writtenZeroes(off: number, len: number): number {
    if (d.direct && (off % A !== 0 || len % A !== 0)) return bounced(true, off, len, 0, 0, true);
    if (!zeroAddr) zeroAddr = alignedBuffer(d.bounceBytes); // never written: reads as zeroes
    for (let done = 0; done < len; ) {
      const n = Math.min(len - done, d.bounceBytes);
      const r = whole(true, zeroAddr, n, off + done);
      if (r < 0) return r;
      done += n;
    }
    return len;
  }

  function zeroes(off: number, len: number, flags: number): number {
    const punch = (): number => retry(() => fallocate(fd, F.PUNCH_HOLE | F.KEEP_SIZE, off, len));
    const unsupported = (r: number): boolean => r === -E.EOPNOTSUPP || r === -E.ENOSYS || r === -E.EINVAL;
    if (flags & FLAG.UNMAP) {
      const r = punch();
      if (r >= 0) return 0;
      if (!unsupported(r)) return r;
    }
    const r = retry(() => fallocate(fd, F.ZERO_RANGE | F.KEEP_SIZE, off, len));
    if (r >= 0) return 0;
    if (!unsupported(r)) return r;
    if (flags & FLAG.MAY_PUNCH) {
      const p = punch();
      if (p >= 0) return 0;
      if (!unsupported(p)) return p;
    }
    const w = writtenZeroes(off, len);
    return w < 0 ? w : 0;
  }

  function run(slot: number): number {
    const o = slot * L.hdr;
    const op = hdr[o + H.OP]!;
    const off = hdr[o + H.OFFSET]!;
    const len = hdr[o + H.LENGTH]!;
    const flags = hdr[o + H.FLAGS]!;
    if (flags & FLAG.CANCELLED) return -E.ECANCELED;
    switch (op) {
      case OP.READ:
      case OP.WRITE:
        return transfer(op === OP.WRITE, off, slot * maxSeg * 2, hdr[o + H.NSEG]!);
      case OP.FLUSH:
        return retry(() => fdatasync(fd));
      case OP.DISCARD:
        return retry(() => fallocate(fd, F.PUNCH_HOLE | F.KEEP_SIZE, off, len));
      case OP.WRITE_ZEROES:
        return zeroes(off, len, flags);
      case OP.TRUNCATE: {
        const r = retry(() => ftruncate(fd, len));
        if (r < 0 || !(flags & FLAG.ALLOCATE) || len === 0) return r;
        return retry(() => fallocate(fd, 0, 0, len));
      }
      default:
        return -E.EINVAL;
    }
  }

  /** Post a finished slot to the completion ring and wake the main thread. */
  function complete(slot: number, result: number): void {
    hdr[slot * L.hdr + H.RESULT] = result;
    const ci = Atomics.add(ctl, C.CQ_TAIL, 1);
    Atomics.store(cq, ci & mask, slot + 1);
    Atomics.add(ctl, C.CQ_WAKE, 1);
    Atomics.notify(ctl, C.CQ_WAKE);
  }

  function runSafely(slot: number): number {
    try {
      return run(slot);
    } catch {
      return -E.EIO;
    }
  }

  /** Claim the next published slot; -1 when the submission ring is empty. */
  function claim(): number {
    for (;;) {
      const head = Atomics.load(ctl, C.SQ_HEAD);
      if (head === Atomics.load(ctl, C.SQ_TAIL)) return -1;
      // Read the slot before claiming: the main thread rewrites this ring entry only after it was claimed.
      const slot = Atomics.load(sq, head & mask);
      if (Atomics.compareExchange(ctl, C.SQ_HEAD, head, (head + 1) | 0) === head) return slot;
    }
  }

  /** Blocking worker: run each claimed request with synchronous system calls. */
  function syncLoop(): void {
    for (;;) {
      const bell = Atomics.load(ctl, C.DOORBELL);
      const slot = claim();
      if (slot >= 0) {
        complete(slot, runSafely(slot));
        continue;
      }
      if (Atomics.load(ctl, C.STOP)) break;
      Atomics.wait(ctl, C.DOORBELL, bell);
    }
  }

  Atomics.add(ctl, C.STARTED, 1);
  Atomics.notify(ctl, C.STARTED);
  syncLoop();
}
