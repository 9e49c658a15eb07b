/**
 * virtio-blk, the block device (virtio 1.2 §5.2), on a raw image file. One request queue of 256;
 * every request is checked on the main thread, then its data moves between the image and guest
 * RAM in the disk's I/O threads (disk/RawDiskImage) without a copy. Requests run concurrently and
 * complete out of order, each with a status byte:
 *
 * | request | answer |
 * |---|---|
 * | IN / OUT | data at `sector × 512`, whole logical blocks (`blockSize`) inside the disk, else IOERR; OUT on a read-only disk: IOERR |
 * | FLUSH | `fdatasync` |
 * | GET_ID | the `id`, NUL-padded to 20 bytes (as much as the buffer holds) |
 * | DISCARD / WRITE_ZEROES | segments `{sector, num_sectors, flags}`: UNSUPP for unknown flags and for `unmap` on DISCARD (§5.2.6.2, whatever else is wrong), then IOERR on a read-only disk, UNSUPP when not negotiated, IOERR for ranges past the end or not whole blocks |
 * | anything else | UNSUPP |
 *
 * WRITE_ZEROES is offered on every writable disk, DISCARD only on a sparse one (crosvm's rule);
 * a read-only disk offers neither. With `blockSize` above 512 the protocol still counts 512-byte
 * sectors (§5.2.5) and the spec leaves open what a request that is not whole blocks gets: kvmkit
 * answers IOERR, as QEMU's virtio-blk-pci with `logical_block_size` does (the probe's
 * `virtio-blk-align` lines show both), so no request needs a read-modify-write of a block.
 *
 * A chain without a writable status byte or with a header shorter than 16 bytes is malformed: it
 * is returned with used length 0 and nothing written, and the VMM carries on. The used length is
 * the number of bytes written (data + status).
 * @module
 */
import type { DiskImage } from '../../../disk/DiskImage';
import { RawDiskImage } from '../../../disk/RawDiskImage';
import { VIRTIO_ID_BLOCK, VIRTQUEUE_FEATURES } from '../constants';
import type { DescriptorChain } from '../DescriptorChain';
import type { VirtQueue } from '../VirtQueue';
import { QueueCompletions } from '../QueueCompletions';
import { VirtioDevice, type VirtioActivation } from '../VirtioDevice';
import {
  BLK_CONFIG, VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_F_DISCARD, VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_RO, VIRTIO_BLK_F_SEG_MAX,
  VIRTIO_BLK_F_WRITE_ZEROES, VIRTIO_BLK_ID_BYTES, VIRTIO_BLK_REQ_HEADER_SIZE, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK,
  VIRTIO_BLK_S_UNSUPP, VIRTIO_BLK_SECTOR_SIZE, VIRTIO_BLK_SEGMENT_SIZE, VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_FLUSH,
  VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT, VIRTIO_BLK_T_WRITE_ZEROES, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP,
} from './constants';
import { resolveBlockOptions, type VirtioBlockOptions } from './VirtioBlockOptions';

/** Entries in the request queue (crosvm and QEMU use 256 too). */
export const BLOCK_QUEUE_SIZE = 256;
/** Data segments per request we announce (`seg_max`): the queue size less header and status (crosvm's rule). */
export const BLOCK_SEG_MAX = BLOCK_QUEUE_SIZE - 2;
/** Segments per DISCARD / WRITE_ZEROES request (`max_discard_seg`, `max_write_zeroes_seg`). */
export const BLOCK_MAX_DISCARD_SEGMENTS = 32;
/** How long a device reset waits for running I/O before it gives up on it (ms). */
export const BLOCK_RESET_DRAIN_MS = 5000;

const STATUS = [new Uint8Array([VIRTIO_BLK_S_OK]), new Uint8Array([VIRTIO_BLK_S_IOERR]), new Uint8Array([VIRTIO_BLK_S_UNSUPP])];
const TWO32 = 0x1_0000_0000;

/** Counters, for tests and diagnostics. */
export interface VirtioBlockStats {
  /** Requests answered with a status byte. */
  requests: number;
  /** Chains returned with length 0 (malformed). */
  malformed: number;
  /** Requests answered IOERR or UNSUPP. */
  errors: number;
}

/** A virtio-blk device: `new VirtioBlock({ path: 'disk.img', ro: true, id: 'SERIAL1' })`. */
export class VirtioBlock extends VirtioDevice {
  readonly deviceKind = 'virtio-blk';
  readonly deviceType = VIRTIO_ID_BLOCK; // §5.2.1
  readonly queueMaxSizes = [BLOCK_QUEUE_SIZE]; // requestq (§5.2.2; no VIRTIO_BLK_F_MQ)
  /** The image file. */
  readonly path: string;
  /** Read-only disk (VIRTIO_BLK_F_RO). */
  readonly readOnly: boolean;
  /** The guest's root file system: the VM adds `root=/dev/vdX ro|rw` for this disk's letter. */
  readonly root: boolean;
  /** DISCARD and WRITE_ZEROES offered; holes allowed in the image. */
  readonly sparse: boolean;
  /** Image opened with O_DIRECT. */
  readonly directIo: boolean;
  /** Logical block size the guest sees (`blk_size`). */
  readonly blockSize: number;
  /** Serial number answered to GET_ID, if any. */
  readonly id: string | undefined;
  /** The open image. */
  readonly disk: DiskImage;
  /** Request counters since construction. */
  readonly stats: VirtioBlockStats = { requests: 0, malformed: 0, errors: 0 };

  private readonly idBytes = new Uint8Array(VIRTIO_BLK_ID_BYTES);
  private readonly header = new Uint8Array(VIRTIO_BLK_REQ_HEADER_SIZE);
  private readonly headerView = new DataView(this.header.buffer);
  private readonly completions = new QueueCompletions();
  private running = 0;

  /**
   * Validate the options and open the image as a {@link RawDiskImage} (synchronously; its I/O
   * threads start in the background).
   * @param disk an image opened already (another format, or a test double) instead of `path`'s raw
   *   file; the device is read-only if either the options or the image say so, and offers DISCARD
   *   only if both allow holes
   * @throws ConfigError for a bad option (`block_size must be a power of two >= 512, got 1000`);
   *   DiskError when the image cannot be opened (missing, no permission, O_DIRECT refused)
   */
  constructor(options: VirtioBlockOptions, disk?: DiskImage) {
    super();
    const o = resolveBlockOptions(options);
    this.path = o.path;
    this.readOnly = o.ro || (disk?.readOnly ?? false);
    this.root = o.root;
    this.sparse = o.sparse && (disk?.sparse ?? true);
    this.directIo = o.directIo;
    this.blockSize = o.blockSize;
    this.id = o.id;
    if (o.id !== undefined) for (let i = 0; i < o.id.length; i++) this.idBytes[i] = o.id.charCodeAt(i);
    this.disk = disk ?? RawDiskImage.open(o.path, { readOnly: o.ro, sparse: o.sparse, directIo: o.directIo, blockSize: o.blockSize });
  }

  /** Disk size in 512-byte sectors (`capacity`). */
  get capacity(): number {
    return Math.floor(this.disk.size / VIRTIO_BLK_SECTOR_SIZE);
  }

  /** Requests whose I/O has not completed yet. */
  get inFlight(): number {
    return this.running;
  }

  /** Whether DISCARD is offered: a sparse, writable image. */
  private get offersDiscard(): boolean {
    return this.sparse && !this.readOnly;
  }

  /** Whether WRITE_ZEROES is offered: a writable image (it punches holes only when sparse). */
  private get offersWriteZeroes(): boolean {
    return !this.readOnly;
  }

  /** Sectors per logical block. */
  private get sectorsPerBlock(): number {
    return this.blockSize / VIRTIO_BLK_SECTOR_SIZE;
  }

  deviceFeatures(): bigint {
    let f = VIRTQUEUE_FEATURES | VIRTIO_BLK_F_SEG_MAX | VIRTIO_BLK_F_BLK_SIZE | VIRTIO_BLK_F_FLUSH;
    if (this.readOnly) f |= VIRTIO_BLK_F_RO;
    if (this.offersDiscard) f |= VIRTIO_BLK_F_DISCARD;
    if (this.offersWriteZeroes) f |= VIRTIO_BLK_F_WRITE_ZEROES;
    return f;
  }

  /** struct virtio_blk_config (§5.2.4), the fields up to `unused1`; fields of features not offered are 0. */
  override configSpace(): Uint8Array {
    const b = new Uint8Array(BLK_CONFIG.length);
    const v = new DataView(b.buffer);
    const capacity = this.capacity;
    v.setUint32(BLK_CONFIG.capacity, capacity % TWO32, true);
    v.setUint32(BLK_CONFIG.capacity + 4, Math.floor(capacity / TWO32), true);
    v.setUint32(BLK_CONFIG.segMax, BLOCK_SEG_MAX, true);
    v.setUint32(BLK_CONFIG.blkSize, this.blockSize, true);
    v.setUint16(BLK_CONFIG.numQueues, 1, true);
    const align = this.sectorsPerBlock;
    const maxSectors = Math.floor(0xffff_ffff / align) * align; // a multiple of the alignment, in le32
    if (this.offersDiscard) {
      v.setUint32(BLK_CONFIG.maxDiscardSectors, maxSectors, true);
      v.setUint32(BLK_CONFIG.maxDiscardSeg, BLOCK_MAX_DISCARD_SEGMENTS, true);
      v.setUint32(BLK_CONFIG.discardSectorAlignment, align, true);
    }
    if (this.offersWriteZeroes) {
      v.setUint32(BLK_CONFIG.maxWriteZeroesSectors, maxSectors, true);
      v.setUint32(BLK_CONFIG.maxWriteZeroesSeg, BLOCK_MAX_DISCARD_SEGMENTS, true);
      b[BLK_CONFIG.writeZeroesMayUnmap] = this.sparse ? 1 : 0; // holes only in a sparse image
    }
    return b;
  }

  activate(activation: VirtioActivation): void {
    this.completions.activate(activation);
  }

  processQueue(index: number): void {
    const a = this.completions.active;
    const queue = a?.queues[index];
    if (!a || index !== 0 || !queue) return;
    let answered = false;
    const onMalformed = (): void => {
      this.stats.malformed++; // drain() already returned it with length 0
      answered = true;
    };
    for (const chain of queue.drain(onMalformed)) {
      if (this.start(a, queue, chain)) answered = true;
    }
    if (answered) this.completions.notify(0);
  }

  /**
   * Stop serving the queues: requests not started are cancelled and running I/O is waited for
   * (up to {@link BLOCK_RESET_DRAIN_MS}), so nothing writes guest memory after the reset (§2.4.1).
   */
  reset(): void {
    this.completions.reset();
    if (this.running > 0) this.disk.quiesce(BLOCK_RESET_DRAIN_MS);
  }

  /** Reset, then close the image (after its I/O threads finish). Call before guest RAM is freed. */
  override async close(): Promise<void> {
    this.reset();
    await this.disk.close();
  }

  /**
   * Change the disk's size (`ftruncate`; re-allocated when not sparse) and tell the driver with a
   * configuration change notification (§5.2.6.2: capacity may change during operation).
   * @throws DiskError on a read-only disk or when the file cannot be resized
   */
  async resize(bytes: number): Promise<void> {
    await this.disk.resize(bytes);
    this.completions.active?.interrupt.signalConfigChange();
  }

  // ---- requests ----

  /** Begin one request. Returns true when it was answered at once. */
  private start(a: VirtioActivation, queue: VirtQueue, chain: DescriptorChain): boolean {
    const wl = chain.writableLength;
    if (wl < 1 || chain.readableLength < VIRTIO_BLK_REQ_HEADER_SIZE) {
      queue.addUsed(chain.head, 0); // no status byte to write, or no header to read
      this.stats.malformed++;
      return true;
    }
    chain.readBytes(0, this.header);
    const type = this.headerView.getUint32(0, true);
    const sectorLo = this.headerView.getUint32(8, true);
    const sectorHi = this.headerView.getUint32(12, true);
    const statusAt = wl - 1;
    const answer = (status: number, written = 0): true => {
      this.answer(queue, chain, statusAt, status, written);
      return true;
    };
    switch (type) {
      case VIRTIO_BLK_T_IN: {
        const len = statusAt;
        const offset = this.dataOffset(sectorLo, sectorHi, len);
        if (offset < 0) return answer(VIRTIO_BLK_S_IOERR);
        if (len === 0) return answer(VIRTIO_BLK_S_OK);
        this.track(queue, chain, statusAt, this.disk.read(offset, chain.writableViews(0, len)), (n) => (n === len ? len : -1));
        return false;
      }
      case VIRTIO_BLK_T_OUT: {
        if (this.readOnly) return answer(VIRTIO_BLK_S_IOERR); // §5.2.6.2: IOERR, and no data written
        const len = chain.readableLength - VIRTIO_BLK_REQ_HEADER_SIZE;
        const offset = this.dataOffset(sectorLo, sectorHi, len);
        if (offset < 0) return answer(VIRTIO_BLK_S_IOERR);
        if (len === 0) return answer(VIRTIO_BLK_S_OK);
        this.track(queue, chain, statusAt, this.disk.write(offset, chain.readableViews(VIRTIO_BLK_REQ_HEADER_SIZE, len)), () => 0);
        return false;
      }
      case VIRTIO_BLK_T_FLUSH:
        this.track(queue, chain, statusAt, this.disk.flush(), () => 0);
        return false;
      case VIRTIO_BLK_T_GET_ID: {
        const n = Math.min(VIRTIO_BLK_ID_BYTES, statusAt);
        chain.writeBytes(0, this.idBytes.subarray(0, n));
        return answer(VIRTIO_BLK_S_OK, n);
      }
      case VIRTIO_BLK_T_DISCARD:
      case VIRTIO_BLK_T_WRITE_ZEROES: {
        const work = this.segments(a, chain, type);
        if (typeof work === 'number') return answer(work);
        this.track(queue, chain, statusAt, work, () => 0);
        return false;
      }
      default:
        return answer(VIRTIO_BLK_S_UNSUPP); // including GET_LIFETIME, SECURE_ERASE (features not offered)
    }
  }

  /**
   * Byte offset of a data transfer of `len` bytes at sector `hi:lo`, or -1 when the range is not
   * whole logical blocks inside the disk (also when `sector × 512` overflows).
   */
  private dataOffset(lo: number, hi: number, len: number): number {
    if (len % this.blockSize !== 0) return -1;
    return this.inDisk(lo, hi, len / VIRTIO_BLK_SECTOR_SIZE) ? (hi * TWO32 + lo) * VIRTIO_BLK_SECTOR_SIZE : -1;
  }

  /** Sectors `[hi:lo, hi:lo + count)` lie inside the disk and start on a logical block. */
  private inDisk(lo: number, hi: number, count: number): boolean {
    if (hi >= 0x20_0000) return false; // sector >= 2^53: past any disk, and inexact as a Number
    // 2^32 is a multiple of every block size in sectors (<= 128), so the low half decides.
    if (lo % this.sectorsPerBlock !== 0) return false;
    return hi * TWO32 + lo + count <= this.capacity;
  }

  /**
   * Check a DISCARD / WRITE_ZEROES request and start its segments, or return the status to answer
   * at once, in this order: IOERR for a payload that is not whole segments; UNSUPP for too many
   * segments, unknown flags or `unmap` on DISCARD (§5.2.6.2 makes the flags a MUST, whatever else
   * is wrong); IOERR on a read-only disk (§5.2.6.2); UNSUPP when the feature was not negotiated;
   * IOERR for a range outside the disk or not whole logical blocks.
   */
  private segments(a: VirtioActivation, chain: DescriptorChain, type: number): Promise<unknown> | number {
    const discard = type === VIRTIO_BLK_T_DISCARD;
    const payload = chain.readableLength - VIRTIO_BLK_REQ_HEADER_SIZE;
    if (payload === 0 || payload % VIRTIO_BLK_SEGMENT_SIZE !== 0) return VIRTIO_BLK_S_IOERR;
    const count = payload / VIRTIO_BLK_SEGMENT_SIZE;
    if (count > BLOCK_MAX_DISCARD_SEGMENTS) return VIRTIO_BLK_S_UNSUPP;
    const bytes = new Uint8Array(payload);
    chain.readBytes(VIRTIO_BLK_REQ_HEADER_SIZE, bytes);
    const v = new DataView(bytes.buffer);
    const ranges: { offset: number; length: number; unmap: boolean }[] = [];
    for (let i = 0; i < count; i++) {
      const flags = v.getUint32(16 * i + 12, true);
      if (flags & ~VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP) return VIRTIO_BLK_S_UNSUPP;
      if (discard && flags & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP) return VIRTIO_BLK_S_UNSUPP;
    }
    if (this.readOnly) return VIRTIO_BLK_S_IOERR;
    if (!(a.features & (discard ? VIRTIO_BLK_F_DISCARD : VIRTIO_BLK_F_WRITE_ZEROES))) return VIRTIO_BLK_S_UNSUPP;
    for (let i = 0; i < count; i++) {
      const lo = v.getUint32(16 * i, true);
      const hi = v.getUint32(16 * i + 4, true);
      const sectors = v.getUint32(16 * i + 8, true);
      if (!this.inDisk(lo, hi, sectors) || sectors % this.sectorsPerBlock !== 0) return VIRTIO_BLK_S_IOERR;
      if (sectors === 0) continue;
      const unmap = (v.getUint32(16 * i + 12, true) & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP) !== 0;
      ranges.push({ offset: (hi * TWO32 + lo) * VIRTIO_BLK_SECTOR_SIZE, length: sectors * VIRTIO_BLK_SECTOR_SIZE, unmap });
    }
    return Promise.all(
      ranges.map((r) => (discard ? this.disk.discard(r.offset, r.length) : this.disk.writeZeroes(r.offset, r.length, { unmap: r.unmap }))),
    );
  }

  /**
   * Answer when `io` settles: OK with `written(result)` data bytes, or IOERR when it rejects or
   * `written` returns a negative number. Dropped if the device was reset meanwhile.
   */
  private track<T>(queue: VirtQueue, chain: DescriptorChain, statusAt: number, io: Promise<T>, written: (result: T) => number): void {
    const generation = this.completions.generation;
    this.running++;
    io.then(
      (r) => {
        const n = written(r);
        this.settle(generation, queue, chain, statusAt, n < 0 ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_OK, Math.max(n, 0));
      },
      () => this.settle(generation, queue, chain, statusAt, VIRTIO_BLK_S_IOERR, 0),
    );
  }

  private settle(generation: number, queue: VirtQueue, chain: DescriptorChain, statusAt: number, status: number, written: number): void {
    this.running--;
    if (!this.completions.isCurrent(generation)) return; // reset since: the queue is not ours any more
    try {
      this.answer(queue, chain, statusAt, status, written);
    } catch (e) {
      this.completions.giveUp(e);
      return;
    }
    this.completions.scheduleNotify(0);
  }

  /** Write the status byte (the last writable byte, §5.2.6) and return the chain. */
  private answer(queue: VirtQueue, chain: DescriptorChain, statusAt: number, status: number, written: number): void {
    chain.writeBytes(statusAt, STATUS[status]!);
    // used.idx is published by QueueCompletions.notify(), right before it reads used_event (§2.7.10)
    queue.addUsed(chain.head, written + 1, false);
    this.stats.requests++;
    if (status !== VIRTIO_BLK_S_OK) this.stats.errors++;
  }
}
