/**
 * Reads served on the calling thread when the host page cache already holds the data.
 * `preadv2(..., RWF_NOWAIT)` copies cached pages into the caller's buffers and fails with EAGAIN
 * instead of waiting for the disk, so the event loop never waits for I/O; a read that would wait
 * goes to the I/O threads as before. A cached read done here skips the two thread hand-offs of
 * the worker path (a doorbell to a sleeping worker, then a completion back through
 * `Atomics.waitAsync`), which cost far more than a 4 KiB copy: on this 2-CPU host, under load,
 * each wake-up waits for a CPU (bench/blk.mjs, kvmkit-pc rows).
 * @module
 */
import { EINVAL, ENOSYS, EOPNOTSUPP, RWF_NOWAIT } from './constants';
import { libcFile } from './libcFile';

/** Bytes one read may copy on the main thread (larger ones always go to the I/O threads). */
export const DEFAULT_INLINE_READ_MAX = 1 << 20;
/** Buffers one inline read may have (longer scatter lists go to the I/O threads). */
export const INLINE_READ_SEGMENTS = 64;

const TWO32 = 0x1_0000_0000;

/** Counters of a {@link NowaitReader}. */
export interface NowaitReadStats {
  /** Reads served from the page cache on the calling thread. */
  hits: number;
  /** Reads tried and handed on (not all cached, or interrupted). */
  misses: number;
}

/** Page-cache reads of one file descriptor, on the calling thread, never waiting for the disk. */
export class NowaitReader {
  /** struct iovec[INLINE_READ_SEGMENTS] { void *iov_base; size_t iov_len; } as 32-bit halves (16 bytes each on 64-bit Linux). */
  private readonly iov32 = new Uint32Array(4 * INLINE_READ_SEGMENTS);
  private readonly iovBytes = new Uint8Array(this.iov32.buffer);
  private disabledBy: number | undefined;
  readonly stats: NowaitReadStats = { hits: 0, misses: 0 };

  /**
   * @param fd a descriptor opened without O_DIRECT
   * @param maxBytes largest read to try here
   */
  constructor(
    private readonly fd: number,
    readonly maxBytes: number,
  ) {}

  /** Why inline reads were switched off (the errno the kernel gave for RWF_NOWAIT), if they were. */
  get disabledErrno(): number | undefined {
    return this.disabledBy;
  }

  /**
   * Read `total` bytes at `offset` into the (host address, length) pairs of `segments`, if the
   * page cache holds all of them.
   * @returns true when every byte was read; false when the caller must do the read another way
   *   (buffers may then hold part of the data, which that read overwrites)
   */
  tryRead(offset: number, segments: readonly number[], total: number): boolean {
    const n = segments.length / 2;
    if (this.disabledBy !== undefined || total > this.maxBytes || n > INLINE_READ_SEGMENTS || n === 0) return false;
    const iov = this.iov32;
    for (let i = 0; i < n; i++) {
      const a = segments[2 * i]!;
      const l = segments[2 * i + 1]!;
      const k = 4 * i;
      iov[k] = a % TWO32;
      iov[k + 1] = Math.floor(a / TWO32);
      iov[k + 2] = l % TWO32;
      iov[k + 3] = Math.floor(l / TWO32);
    }
    const c = libcFile();
    const r = c.preadv2(this.fd, this.iovBytes, n, offset, RWF_NOWAIT);
    if (r === total) {
      this.stats.hits++;
      return true;
    }
    // A short read (part cached, or the file shrank), EAGAIN, EINTR or an I/O error: the I/O
    // threads redo the whole read and report any error.
    if (r < 0) {
      const e = c.errno();
      // No RWF_NOWAIT for this file system or kernel (EINVAL: flags unknown before Linux 4.14): stop trying.
      if (e === EOPNOTSUPP || e === ENOSYS || (e === EINVAL && this.stats.hits === 0)) {
        this.disabledBy = e;
        return false;
      }
    }
    this.stats.misses++;
    return false;
  }
}
