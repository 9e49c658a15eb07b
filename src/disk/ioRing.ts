/**
 * The SharedArrayBuffer ring between a disk's main-thread front ({@link IoWorkerPool}) and its
 * I/O worker threads. One producer (the main thread) publishes request slots in a submission ring;
 * the workers claim them with compare-and-swap, run the system calls and push the slot into a
 * completion ring, then wake the main thread through `Atomics.notify` (it waits with
 * `Atomics.waitAsync`, so its event loop is never blocked).
 *
 * Layout (Int32 control words, Int32 rings, then Float64 slot headers and segments):
 * ```
 * ctl[16]            CTL.* below
 * sq[SLOTS]          slot numbers, published by the main thread at SQ_TAIL
 * cq[SLOTS]          slot number + 1 of finished slots (0 = empty), reserved by workers at CQ_TAIL
 * hdr[SLOTS * HDR]   per slot: op, offset, length, segment count, flags, result
 * seg[SLOTS * MAX_SEGMENTS * 2]  per slot: (host address, length) pairs
 * ```
 * Host addresses are those of the caller's views (guest RAM is one mmap'd range per region, so a
 * view's address is stable until the VM frees its memory); they are below 2^47 on x86_64 and
 * aarch64 Linux and fit a Float64 exactly.
 * @module
 */
/** Request slots per disk: more than the worker threads, so they never wait for a slot. */
export const SLOTS = 64;
/**
 * Segments one slot carries: a virtio-blk chain from a 256-entry queue has at most 256 buffers,
 * plus a few where a buffer crosses a guest RAM region. Longer lists are split by the pool.
 */
export const MAX_SEGMENTS = 272;
/** Float64 fields per slot header. */
export const HDR = 8;

/** Int32 indices of the control words. */
export const CTL = {
  /** Submissions claimed by workers (free-running). */
  SQ_HEAD: 0,
  /** Submissions published by the main thread (free-running). */
  SQ_TAIL: 1,
  /** Bumped by the main thread after publishing or stopping; workers sleep on it. */
  DOORBELL: 2,
  /** Completion entries reserved by workers (free-running). */
  CQ_TAIL: 3,
  /** Bumped by a worker after each completion; the main thread waits on it. */
  CQ_WAKE: 4,
  /** Set to 1 to make the workers exit. */
  STOP: 5,
  /** Workers that have started (loaded koffi and entered their loop). */
  STARTED: 6,
  /** Requests that went through a worker's O_DIRECT bounce buffer (a statistic). */
  BOUNCED: 7,
  LENGTH: 16,
} as const;

/** Offsets inside a slot header. */
export const H = {
  OP: 0,
  OFFSET: 1,
  LENGTH: 2,
  NSEG: 3,
  FLAGS: 4,
  /** Bytes transferred (>= 0) or -errno. */
  RESULT: 5,
} as const;

/** Operation codes. */
export const OP = {
  READ: 1,
  WRITE: 2,
  FLUSH: 3,
  DISCARD: 4,
  WRITE_ZEROES: 5,
  /** ftruncate to LENGTH; with FLAG.ALLOCATE also fallocate(mode 0) the whole new size. */
  TRUNCATE: 6,
} as const;

/** Bits of the FLAGS field. */
export const FLAG = {
  /** WRITE_ZEROES: the range may be deallocated. */
  UNMAP: 1,
  /** TRUNCATE: allocate the new size. */
  ALLOCATE: 2,
  /** Set by the main thread: skip the request and complete it with -ECANCELED. */
  CANCELLED: 4,
  /** WRITE_ZEROES: the image is sparse, so punching a hole is an acceptable fallback. */
  MAY_PUNCH: 8,
} as const;

/** Views of one ring buffer. */
export interface RingViews {
  ctl: Int32Array;
  sq: Int32Array;
  cq: Int32Array;
  hdr: Float64Array;
  seg: Float64Array;
}

/** Bytes of the SharedArrayBuffer. */
export const RING_BYTES = 4 * (CTL.LENGTH + 2 * SLOTS) + 8 * SLOTS * (HDR + 2 * MAX_SEGMENTS);

/** Lay the views over `sab` (the worker repeats this arithmetic; see ioWorker.ts). */
export function ringViews(sab: SharedArrayBuffer): RingViews {
  const ctl = new Int32Array(sab, 0, CTL.LENGTH);
  const sq = new Int32Array(sab, 4 * CTL.LENGTH, SLOTS);
  const cq = new Int32Array(sab, 4 * (CTL.LENGTH + SLOTS), SLOTS);
  const f64 = 4 * (CTL.LENGTH + 2 * SLOTS);
  const hdr = new Float64Array(sab, f64, SLOTS * HDR);
  const seg = new Float64Array(sab, f64 + 8 * SLOTS * HDR, SLOTS * MAX_SEGMENTS * 2);
  return { ctl, sq, cq, hdr, seg };
}

/** Everything a worker needs, sent as `workerData`. */
export interface IoWorkerData {
  /** Absolute path of koffi's entry point (the worker resolves nothing itself). */
  koffiPath: string;
  /** libc prototypes to bind (libcFile.ts FILE_PROTOTYPES). */
  prototypes: Readonly<Record<string, string>>;
  sab: SharedArrayBuffer;
  fd: number;
  /** The descriptor was opened with O_DIRECT. */
  direct: boolean;
  /** O_DIRECT file offset and length alignment (a power of two). */
  offsetAlign: number;
  /** O_DIRECT buffer address alignment (a power of two). */
  memAlign: number;
  /** Bytes of each worker's aligned bounce buffer (a multiple of offsetAlign). */
  bounceBytes: number;
  /** Layout and protocol numbers (the worker cannot import this module). */
  layout: {
    slots: number; maxSegments: number; hdr: number;
    ctl: typeof CTL; h: typeof H; op: typeof OP; flag: typeof FLAG;
    errno: { EINTR: number; EIO: number; EINVAL: number; EOPNOTSUPP: number; ECANCELED: number; ENOSYS: number };
    falloc: { KEEP_SIZE: number; PUNCH_HOLE: number; ZERO_RANGE: number };
  };
}
