/**
 * A raw disk image on a host file (or block device): the guest's byte `n` is the file's byte `n`.
 *
 * - read-only images are opened `O_RDONLY`, so no code path can change their bytes;
 * - `directIo` opens with `O_DIRECT`; transfers are then whole blocks of {@link RawDiskImage.directAlignment}
 *   bytes from buffers aligned to {@link RawDiskImage.directMemoryAlignment} (statx `STATX_DIOALIGN`, else the
 *   page size), through an aligned bounce buffer when the caller's are not;
 * - `sparse: false` allocates the whole file at open (`fallocate` mode 0) and refuses `discard`.
 *
 * I/O path (chosen by measurement, `node bench/disk-io.mjs`, this 2-CPU host, 256 MiB image on
 * ext4): each image has a few worker threads fed through a SharedArrayBuffer ring (IoWorkerPool);
 * they call pread/preadv/pwrite/pwritev synchronously on the addresses of the callers' views, so
 * data moves between the file and guest RAM without a copy. The alternative, koffi's `.async` calls
 * on libuv's thread pool, costs ~40 µs of main-thread time per request (a JS callback, a promise
 * and a loop wake each): cached 4 KiB random reads at depth 32 reached 22–25 k IOPS with the main
 * thread saturated, against 175–207 k through the ring with the main thread 40–60 % busy
 * (~3 µs per request). 1 MiB sequential I/O is bound by memory copies either way (3.5–15 GB/s
 * cached, both paths, ±50 % run to run here); with O_DIRECT the ring's 4 threads matched or beat
 * the 4-thread libuv pool (4 KiB depth 32: 25–26 k vs 11–20 k IOPS). Unaligned O_DIRECT buffers
 * go through the bounce buffer at a cost of 0–35 % (4 KiB random reads −20 % at depth 32).
 *
 * Two shortcuts around the threads (bench/blk.mjs, the probe guest against QEMU): every thread
 * hand-off is a wake-up that waits for a CPU on a loaded host, so the fewer per request the better.
 * - page cache: a read the cache holds is copied on the calling thread (NowaitReader,
 *   `preadv2(RWF_NOWAIT)`, never waits for the disk): one wake-up per request instead of three;
 * - O_DIRECT: aligned reads, writes and flushes are submitted and reaped with Linux AIO on the main
 *   thread (AioEngine, QEMU's `aio=native`): the device sees the guest's whole queue depth, not one
 *   request per blocking thread, and completions come back through an eventfd.
 * @module
 */
import { fstatSync } from 'node:fs';
import { ConfigError, errnoName } from '../errors';
import {
  AT_EMPTY_PATH, DEFAULT_DIO_MEM_ALIGN, EINVAL, EOPNOTSUPP, EROFS, O_CLOEXEC, O_DIRECT, O_RDONLY, O_RDWR, SECTOR_SIZE,
  SEEK_END, STATX_DIOALIGN, STATX_OFF, STATX_SIZEOF,
} from './constants';
import { DiskError, type DiskImage, type WriteZeroesOptions } from './DiskImage';
import { FLAG, OP } from './ioRing';
import { IoWorkerPool, type IoRequest } from './IoWorkerPool';
import { libcFile, viewAddress } from './libcFile';
import { DEFAULT_INLINE_READ_MAX, NowaitReader } from './nowaitRead';

/** Options of {@link RawDiskImage.open}. */
export interface RawDiskImageOptions {
  /** Open read-only (`O_RDONLY`). Default false. */
  readOnly?: boolean;
  /** Holes allowed; false allocates the whole file at open. Default true. */
  sparse?: boolean;
  /** Open with `O_DIRECT`. Default false. */
  directIo?: boolean;
  /** Logical block size: a power of two from 512 to 65536. Default 512. */
  blockSize?: number;
  /** I/O worker threads. Default {@link DEFAULT_IO_THREADS}. */
  ioThreads?: number;
  /**
   * Page-cache images: reads up to this many bytes whose data the page cache holds are copied on
   * the calling thread (`preadv2(RWF_NOWAIT)`, which never waits for the disk) instead of in the I/O
   * threads. 0 turns this off. Default {@link DEFAULT_INLINE_READ_MAX}; ignored with `directIo`.
   */
  inlineReadMax?: number;
  /**
   * With `directIo`: aligned reads, writes and flushes go through Linux AIO submitted and reaped
   * on the main thread (QEMU's `aio=native`), so the device sees every request the guest has in
   * flight and a request costs no thread hand-off; the rest goes to at most 2 blocking threads.
   * false: `ioThreads` blocking threads. Default true (blocking threads where the kernel has no AIO).
   */
  nativeAio?: boolean;
}

/** Worker threads per image (bench/disk-io.mjs: 1–2 saturate cached I/O on a 2-CPU host; deeper queues gain little from more). */
export const DEFAULT_IO_THREADS = 2;
/** Worker threads per image opened with O_DIRECT without Linux AIO (`nativeAio: false` or no AIO in the kernel), where the device has parallelism to use (4 KiB depth 32: 10 k IOPS with 1 thread, 17–19 k with 2, 25–26 k with 4). With AIO, at most 2 threads take what AIO cannot do. */
export const DEFAULT_DIRECT_IO_THREADS = 4;
/** Largest accepted block size (Linux guests accept up to their page size; 64 KiB pages exist). */
export const MAX_BLOCK_SIZE = 65536;

/** Check a logical block size: a power of two from 512 to 65536. */
export function checkBlockSize(option: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < SECTOR_SIZE || (value & (value - 1)) !== 0) {
    throw new ConfigError(option, `must be a power of two >= ${SECTOR_SIZE}`, value);
  }
  if (value > MAX_BLOCK_SIZE) throw new ConfigError(option, `must be at most ${MAX_BLOCK_SIZE}`, value);
  return value;
}

/** A raw image file opened for a block device. */
export class RawDiskImage implements DiskImage {
  readonly path: string;
  readonly readOnly: boolean;
  readonly sparse: boolean;
  readonly directIo: boolean;
  readonly blockSize: number;
  /** O_DIRECT: file offsets and lengths are multiples of this (max of blockSize and the file system's). */
  readonly directAlignment: number;
  /** O_DIRECT: buffer addresses are multiples of this, else the bounce buffer is used. */
  readonly directMemoryAlignment: number;
  /** The open file descriptor. */
  readonly fd: number;
  private fileSize: number;
  private readonly pool: IoWorkerPool;
  private readonly nowait: NowaitReader | undefined;
  private closed = false;

  private constructor(path: string, fd: number, fileSize: number, o: Required<RawDiskImageOptions>, align: { offset: number; mem: number }) {
    this.path = path;
    this.fd = fd;
    this.fileSize = fileSize;
    this.readOnly = o.readOnly;
    this.sparse = o.sparse;
    this.directIo = o.directIo;
    this.blockSize = o.blockSize;
    this.directAlignment = align.offset;
    this.directMemoryAlignment = align.mem;
    this.pool = new IoWorkerPool({ fd, direct: o.directIo, offsetAlign: align.offset, memAlign: align.mem, threads: o.ioThreads, aio: o.nativeAio });
    this.nowait = !o.directIo && o.inlineReadMax > 0 ? new NowaitReader(fd, o.inlineReadMax) : undefined;
  }

  /**
   * Open `path` (synchronously: open, statx and, for `sparse: false`, fallocate) and start its
   * I/O threads. They do not keep the process alive while idle.
   * @throws ConfigError for a bad block size; DiskError when the file cannot be opened or allocated
   */
  static open(path: string, options: RawDiskImageOptions = {}): RawDiskImage {
    const o = {
      readOnly: options.readOnly ?? false,
      sparse: options.sparse ?? true,
      directIo: options.directIo ?? false,
      blockSize: checkBlockSize('blockSize', options.blockSize ?? SECTOR_SIZE),
      ioThreads: options.ioThreads ?? (options.directIo ? DEFAULT_DIRECT_IO_THREADS : DEFAULT_IO_THREADS),
      inlineReadMax: options.inlineReadMax ?? DEFAULT_INLINE_READ_MAX,
      nativeAio: options.nativeAio ?? true,
    };
    if (typeof path !== 'string' || path === '') throw new ConfigError('path', 'must name a disk image file', path);
    if (!Number.isInteger(o.ioThreads) || o.ioThreads < 1 || o.ioThreads > 64) throw new ConfigError('ioThreads', 'must be an integer from 1 to 64', o.ioThreads);
    if (!Number.isSafeInteger(o.inlineReadMax) || o.inlineReadMax < 0) throw new ConfigError('inlineReadMax', 'must be a whole number of bytes >= 0', o.inlineReadMax);
    const c = libcFile();
    const flags = (o.readOnly ? O_RDONLY : O_RDWR) | O_CLOEXEC | (o.directIo ? O_DIRECT : 0);
    const fd = c.open(path, flags);
    if (fd < 0) {
      const e = c.errno();
      const why = o.directIo && e === EINVAL
        ? `${path}'s file system refuses O_DIRECT (tmpfs does); open it without direct I/O`
        : `cannot open disk image ${path}${o.readOnly ? ' read-only' : ' for reading and writing'}: ${errnoName(e)} (errno ${e})`;
      throw new DiskError('open', path, e, why);
    }
    try {
      const st = fstatSync(fd);
      if (!st.isFile() && !st.isBlockDevice()) throw new DiskError('open', path, undefined, `disk image ${path} is not a regular file or a block device`);
      const fileSize = c.lseek(fd, 0, SEEK_END);
      if (fileSize < 0) throw new DiskError('open', path, c.errno());
      const align = directAlign(fd, o.blockSize);
      if (!o.readOnly && !o.sparse && fileSize > 0 && st.isFile()) {
        if (c.fallocate(fd, 0, 0, fileSize) < 0) {
          const e = c.errno();
          throw new DiskError('allocate', path, e, `cannot allocate all ${fileSize} bytes of ${path} (sparse=false): ${errnoName(e)} (errno ${e})`);
        }
      }
      return new RawDiskImage(path, fd, fileSize, o, align);
    } catch (e) {
      c.close(fd);
      throw e;
    }
  }

  /**
   * Bytes the guest can address: the file size, rounded down to {@link RawDiskImage.directAlignment} with
   * O_DIRECT (a partial last block cannot be transferred; crosvm hides such a tail the same way).
   */
  get size(): number {
    return this.directIo ? this.fileSize - (this.fileSize % this.directAlignment) : this.fileSize;
  }

  read(offset: number, buffers: readonly Uint8Array[]): Promise<number> {
    return this.transfer(OP.READ, 'read', offset, buffers);
  }

  write(offset: number, buffers: readonly Uint8Array[]): Promise<number> {
    if (this.readOnly) return Promise.reject(this.readOnlyError('write'));
    return this.transfer(OP.WRITE, 'write', offset, buffers);
  }

  flush(): Promise<void> {
    return this.run('flush', { op: OP.FLUSH, offset: 0, length: 0, flags: 0, segments: [] }).then(() => undefined);
  }

  discard(offset: number, length: number): Promise<void> {
    if (this.readOnly) return Promise.reject(this.readOnlyError('discard'));
    if (!this.sparse) return Promise.reject(new DiskError('discard', this.path, undefined, `disk image ${this.path} is not sparse (sparse=false): discard is refused`));
    const bad = this.checkRange('discard', offset, length);
    if (bad) return Promise.reject(bad);
    if (length === 0) return Promise.resolve();
    // A hint: file systems that cannot punch holes leave the data (crosvm ignores the error too).
    return this.run('discard', { op: OP.DISCARD, offset, length, flags: 0, segments: [] }, [EOPNOTSUPP]).then(() => undefined);
  }

  writeZeroes(offset: number, length: number, options: WriteZeroesOptions = {}): Promise<void> {
    if (this.readOnly) return Promise.reject(this.readOnlyError('write-zeroes'));
    const bad = this.checkRange('write-zeroes', offset, length);
    if (bad) return Promise.reject(bad);
    if (length === 0) return Promise.resolve();
    const flags = this.sparse ? FLAG.MAY_PUNCH | (options.unmap ? FLAG.UNMAP : 0) : 0;
    return this.run('write-zeroes', { op: OP.WRITE_ZEROES, offset, length, flags, segments: [] }).then(() => undefined);
  }

  async resize(size: number): Promise<void> {
    if (this.readOnly) throw this.readOnlyError('resize');
    if (!Number.isSafeInteger(size) || size < 0) throw new ConfigError('size', 'must be a whole number of bytes >= 0', size);
    await this.run('resize', { op: OP.TRUNCATE, offset: 0, length: size, flags: this.sparse ? 0 : FLAG.ALLOCATE, segments: [] });
    this.fileSize = size;
  }

  allocatedBytes(): number {
    return fstatSync(this.fd).blocks * SECTOR_SIZE;
  }

  quiesce(timeoutMs: number): boolean {
    return this.pool.quiesce(timeoutMs);
  }

  /** O_DIRECT requests that needed the aligned bounce buffer so far (the rest went straight to the caller's buffers). */
  get bouncedRequests(): number {
    return this.pool.bounced;
  }

  /** O_DIRECT requests go through Linux AIO from the main thread rather than blocking threads. */
  get nativeAio(): boolean {
    return this.pool.usesAio;
  }

  /** Reads served from the host page cache on the calling thread (see {@link RawDiskImageOptions.inlineReadMax}). */
  get inlineReads(): number {
    return this.nowait?.stats.hits ?? 0;
  }

  /** Requests in flight (running or queued). */
  get inFlight(): number {
    return this.pool.inFlight;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.pool.close();
    libcFile().close(this.fd);
  }

  // ---- internals ----

  private transfer(op: number, name: string, offset: number, buffers: readonly Uint8Array[]): Promise<number> {
    let length = 0;
    const segments: number[] = [];
    for (const b of buffers) {
      if (b.length === 0) continue;
      segments.push(viewAddress(b), b.length);
      length += b.length;
    }
    const bad = this.checkRange(name, offset, length);
    if (bad) return Promise.reject(bad);
    if (length === 0) return Promise.resolve(0);
    if (op === OP.READ && this.nowait && this.pool.changesInFlight === 0 && this.nowait.tryRead(offset, segments, length)) return Promise.resolve(length);
    return this.run(name, { op, offset, length, flags: 0, segments, keep: buffers });
  }

  private checkRange(op: string, offset: number, length: number): DiskError | undefined {
    if (this.closed) return new DiskError(op, this.path, undefined, `disk image ${this.path} is closed`);
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.size) {
      return new DiskError(op, this.path, undefined, `${op} of ${length} bytes at offset ${offset} is outside disk image ${this.path} (${this.size} bytes)`);
    }
    return undefined;
  }

  private readOnlyError(op: string): DiskError {
    return new DiskError(op, this.path, EROFS, `disk image ${this.path} is read-only: ${op} refused`);
  }

  /** Submit and map -errno to a DiskError (`ignore`: errnos that count as success). */
  private run(name: string, req: IoRequest, ignore: readonly number[] = []): Promise<number> {
    return new Promise((resolve, reject) => {
      this.pool.submit(req, (r) => {
        if (r >= 0 || ignore.includes(-r)) resolve(Math.max(r, 0));
        else reject(new DiskError(name, this.path, -r));
      });
    });
  }
}

/** O_DIRECT alignments from statx STATX_DIOALIGN (Linux 6.1+); without it, the page size for both. */
function directAlign(fd: number, blockSize: number): { offset: number; mem: number } {
  const buf = new Uint8Array(STATX_SIZEOF);
  let offset = 0;
  let mem = 0;
  if (libcFile().statx(fd, '', AT_EMPTY_PATH, STATX_DIOALIGN, buf) === 0) {
    const v = new DataView(buf.buffer);
    if (v.getUint32(STATX_OFF.mask, true) & STATX_DIOALIGN) {
      offset = v.getUint32(STATX_OFF.dioOffsetAlign, true);
      mem = v.getUint32(STATX_OFF.dioMemAlign, true);
    }
  }
  const pow2 = (n: number): boolean => n > 0 && (n & (n - 1)) === 0;
  return {
    offset: Math.max(blockSize, pow2(offset) ? offset : DEFAULT_DIO_MEM_ALIGN),
    mem: pow2(mem) ? mem : DEFAULT_DIO_MEM_ALIGN,
  };
}
