/**
 * What a block device needs from a disk image: byte-addressed scatter/gather reads and writes into
 * `Uint8Array` views (views of guest RAM, so data moves between the file and the guest without a
 * copy), flush, discard, write-zeroes and resize. Every operation runs off the calling thread and
 * resolves on the main event loop; nothing here blocks it.
 * @module
 */
import { errnoName, KvmkitError } from '../errors';

/** A disk image operation failed. `errno` is the Linux error when a system call failed. */
export class DiskError extends KvmkitError {
  constructor(
    /** What was attempted: `open`, `read`, `write`, `flush`, `discard`, `write-zeroes`, `resize`, `close`. */
    readonly op: string,
    /** The image file. */
    readonly path: string,
    /** Linux errno, when a system call failed. */
    readonly errno: number | undefined,
    message?: string,
    options?: { cause?: unknown },
  ) {
    super(message ?? `disk image ${path}: ${op} failed${errno === undefined ? '' : `: ${errnoName(errno)} (errno ${errno})`}`, options);
  }
}

/** Options of {@link DiskImage.writeZeroes}. */
export interface WriteZeroesOptions {
  /**
   * The range may be deallocated instead of written, as long as it reads back as zeroes
   * (virtio-blk's `unmap` flag). Only honoured by sparse images.
   */
  unmap?: boolean;
}

/** A disk image as block devices see it. Offsets and lengths are in bytes. */
export interface DiskImage {
  /** The image file (or device) path, for messages. */
  readonly path: string;
  /** Bytes the guest can address. */
  readonly size: number;
  /**
   * Logical block size in bytes (a power of two >= 512). With O_DIRECT every transfer is made in
   * whole aligned blocks of at least this size.
   */
  readonly blockSize: number;
  /** Opened read-only: writes, discards, write-zeroes and resizes are refused and the file never changes. */
  readonly readOnly: boolean;
  /** Holes allowed: {@link DiskImage.discard} deallocates and {@link DiskImage.writeZeroes} may unmap. */
  readonly sparse: boolean;
  /** Opened with O_DIRECT (host page cache bypassed). */
  readonly directIo: boolean;

  /**
   * Read `offset .. offset + total length` into `buffers`, filled in order.
   * @returns bytes read: the total length, or less only where the file ends
   * @throws DiskError (rejection) on an I/O error or a range past {@link DiskImage.size}
   */
  read(offset: number, buffers: readonly Uint8Array[]): Promise<number>;

  /**
   * Write the concatenation of `buffers` at `offset`.
   * @returns bytes written (always the total length)
   * @throws DiskError (rejection) on an I/O error, a read-only image or a range past {@link DiskImage.size}
   */
  write(offset: number, buffers: readonly Uint8Array[]): Promise<number>;

  /** Make completed writes durable (`fdatasync`). */
  flush(): Promise<void>;

  /**
   * Deallocate a range (`fallocate(PUNCH_HOLE | KEEP_SIZE)`); it reads back as zeroes. A hint:
   * resolves without effect when the file system cannot punch holes.
   * @throws DiskError (rejection) on a read-only or non-sparse image or a range past {@link DiskImage.size}
   */
  discard(offset: number, length: number): Promise<void>;

  /**
   * Make a range read back as zeroes: `fallocate(ZERO_RANGE)`, else `PUNCH_HOLE` (sparse images),
   * else writing zeroes.
   */
  writeZeroes(offset: number, length: number, options?: WriteZeroesOptions): Promise<void>;

  /** Change the size (`ftruncate`; a non-sparse image is allocated again up to the new size). */
  resize(size: number): Promise<void>;

  /** Bytes the host file system has allocated for the image (`st_blocks` × 512). */
  allocatedBytes(): number;

  /**
   * Cancel the requests that have not started and wait, blocking the calling thread for at most
   * `timeoutMs`, for the running ones to finish, so that no I/O touches the callers' buffers
   * afterwards (a device reset). Cancelled requests reject with a {@link DiskError} (`ECANCELED`).
   * @returns true when nothing is in flight any more
   */
  quiesce(timeoutMs: number): boolean;

  /** Wait for the requests in flight, then release the file and the I/O threads. */
  close(): Promise<void>;
}
