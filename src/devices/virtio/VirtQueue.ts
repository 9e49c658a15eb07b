/**
 * The split virtqueue (virtio 1.2 §2.7), device side, over {@link GuestMemory}.
 *
 * The transport sets the fields the driver writes in the common configuration (`size`,
 * `descTable`, `availRing`, `usedRing`, `ready`, `msixVector`) and the negotiated ring features
 * (`setFeatures`); the device pops descriptor chains, returns them with `addUsed`, and asks
 * `shouldNotify` whether to interrupt. Everything the guest wrote is untrusted: indices, addresses,
 * lengths and chain shapes are checked before use, and a malformed chain or ring becomes a
 * {@link VirtQueueError}, never an access outside guest RAM or an endless loop.
 * @module
 */
import { GuestMemoryError, KvmkitError } from '../../errors';
import type { GuestMemory } from '../../memory/GuestMemory';
import {
  VIRTIO_F_EVENT_IDX,
  VIRTIO_F_INDIRECT_DESC,
  VIRTIO_MSI_NO_VECTOR,
  VIRTQ_AVAIL_ALIGN,
  VIRTQ_AVAIL_F_NO_INTERRUPT,
  VIRTQ_DESC_ALIGN,
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
  VIRTQ_DESC_SIZE,
  VIRTQ_MAX_SIZE,
  VIRTQ_USED_ALIGN,
  VIRTQ_USED_ELEM_SIZE,
  VIRTQ_USED_F_NO_NOTIFY,
  vringNeedEvent,
} from './constants';
import { DescriptorChain, type DescriptorBuffer } from './DescriptorChain';

/**
 * A virtqueue was set up wrongly or the guest put something malformed in it.
 *
 * - `fatal` false, `head` set: one descriptor chain was malformed. The queue has consumed it and
 *   goes on; return it to the driver with `addUsed(head, 0)` (or an error status the device can
 *   still write) so the driver can reclaim its descriptors.
 * - `fatal` true: the ring itself is unusable (bad layout, an `avail.idx` that jumped more than
 *   the queue size, a head index outside the table). The queue refuses further work until
 *   `reset()`; the transport should set DEVICE_NEEDS_RESET (§2.1.2).
 */
export class VirtQueueError extends KvmkitError {
  /** Queue number, when the queue knows it. */
  readonly queue: number | undefined;
  /** Head index of the malformed chain, when the error is confined to one chain. */
  readonly head: number | undefined;
  /** The whole queue is unusable until a device reset. */
  readonly fatal: boolean;

  constructor(message: string, details: { queue?: number; head?: number; fatal: boolean; cause?: unknown }) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.queue = details.queue;
    this.head = details.head;
    this.fatal = details.fatal;
  }
}

/** Options for {@link VirtQueue}. */
export interface VirtQueueOptions {
  /** Queue number within its device, named in errors. Default 0. */
  index?: number;
  /** Guest memory the rings and buffers live in; can also be set later through `mem`. */
  mem?: GuestMemory;
}

/** Longest chain payload: the used ring reports lengths as le32 (§2.7.8; §2.7.5.2 caps chains at 2^32 bytes). */
const MAX_CHAIN_BYTES = 0xffff_ffff;

// Offsets inside the rings (§2.7.6 struct virtq_avail, §2.7.8 struct virtq_used).
const RING_FLAGS = 0; // le16 flags
const RING_IDX = 2; // le16 idx
const RING_ENTRIES = 4; // avail: le16 ring[size], then le16 used_event; used: virtq_used_elem ring[size], then le16 avail_event

/** A full memory barrier: a sequentially consistent atomic on shared memory (a locked instruction on x86). */
const fenceCell = new Int32Array(new SharedArrayBuffer(4));
function fullFence(): void {
  Atomics.add(fenceCell, 0, 0);
}

/** Split virtqueue state for one queue of a device. */
export class VirtQueue {
  /** Largest size the device offers (queue_size reads this after reset, §4.1.4.3). */
  readonly maxSize: number;
  /** Queue number within the device. */
  readonly index: number;
  /** queue_enable: the driver finished configuring this queue (§4.1.4.3). */
  ready = false;
  /** queue_msix_vector (§4.1.4.3, §4.1.5.1.2); {@link VIRTIO_MSI_NO_VECTOR} when unmapped. */
  msixVector = VIRTIO_MSI_NO_VECTOR;
  /** VIRTIO_F_EVENT_IDX was negotiated: use used_event / avail_event (§2.7.7, §2.7.10). */
  eventIdx = false;
  /** VIRTIO_F_INDIRECT_DESC was negotiated: accept indirect tables (§2.7.5.3). */
  indirect = false;

  private memValue: GuestMemory | undefined;
  private sizeValue: number;
  private descValue = 0;
  private availValue = 0;
  private usedValue = 0;
  private validated = false;
  private failure: VirtQueueError | undefined;
  private nextAvailIdx = 0; // free-running 16-bit index of the next avail entry to consume
  private nextUsedIdx = 0; // free-running 16-bit index of the next used entry to write
  private seenAvailIdx = 0; // last avail.idx read from the guest
  private lastCheckedUsed = 0; // used idx at the previous shouldNotify()
  private publishedUsed = 0; // used.idx as last written to guest memory
  private inFlightCount = 0; // chains popped and not yet returned
  private kicksSuppressed = false;

  /**
   * @param maxSize largest queue size the device supports: a power of two, 1..32768 (§2.7)
   */
  constructor(maxSize: number, options: VirtQueueOptions = {}) {
    if (!isPowerOfTwo(maxSize) || maxSize > VIRTQ_MAX_SIZE) {
      throw new VirtQueueError(`virtqueue maximum size must be a power of two from 1 to ${VIRTQ_MAX_SIZE}, got ${maxSize}`, {
        queue: options.index,
        fatal: true,
      });
    }
    this.maxSize = maxSize;
    this.sizeValue = maxSize;
    this.index = options.index ?? 0;
    this.memValue = options.mem;
  }

  /** Guest memory the rings and buffers live in. */
  get mem(): GuestMemory | undefined {
    return this.memValue;
  }
  set mem(v: GuestMemory | undefined) {
    this.memValue = v;
    this.validated = false;
  }
  /** queue_size chosen by the driver (§4.1.4.3); checked by {@link validate}. Default `maxSize`. */
  get size(): number {
    return this.sizeValue;
  }
  set size(v: number) {
    this.sizeValue = v;
    this.validated = false;
  }
  /** queue_desc: guest-physical address of the descriptor table (Descriptor Area, §2.7). */
  get descTable(): number {
    return this.descValue;
  }
  set descTable(v: number) {
    this.descValue = v;
    this.validated = false;
  }
  /** queue_driver: guest-physical address of the available ring (Driver Area, §2.7). */
  get availRing(): number {
    return this.availValue;
  }
  set availRing(v: number) {
    this.availValue = v;
    this.validated = false;
  }
  /** queue_device: guest-physical address of the used ring (Device Area, §2.7). */
  get usedRing(): number {
    return this.usedValue;
  }
  set usedRing(v: number) {
    this.usedValue = v;
    this.validated = false;
  }

  /** Free-running 16-bit index of the next available-ring entry the device will consume. */
  get nextAvail(): number {
    return this.nextAvailIdx;
  }
  /** Free-running 16-bit index of the next used-ring entry the device will write (= used.idx). */
  get nextUsed(): number {
    return this.nextUsedIdx;
  }
  /** Chains popped (including malformed ones) and not yet given back with {@link addUsed}. */
  get inFlight(): number {
    return this.inFlightCount;
  }
  /** The fatal error that stopped this queue, until {@link reset}. */
  get error(): VirtQueueError | undefined {
    return this.failure;
  }

  /** Apply the negotiated feature bits that change ring behaviour (EVENT_IDX, INDIRECT_DESC). */
  setFeatures(features: bigint): void {
    this.eventIdx = (features & VIRTIO_F_EVENT_IDX) !== 0n;
    this.indirect = (features & VIRTIO_F_INDIRECT_DESC) !== 0n;
  }

  /**
   * Check the layout the driver configured: size a power of two ≤ `maxSize`, the three areas
   * aligned (§2.7: descriptor table 16, available ring 2, used ring 4) and inside guest RAM.
   * The transport calls it when the driver enables the queue or sets DRIVER_OK; `pop()` calls
   * it too if the layout changed since.
   * @throws VirtQueueError (fatal) naming what is wrong
   */
  validate(): void {
    const size = this.sizeValue;
    const fail = (what: string): never => {
      throw new VirtQueueError(`virtqueue ${this.index}: ${what}`, { queue: this.index, fatal: true });
    };
    if (!this.mem) fail('no guest memory attached (set `mem` before use)');
    if (!isPowerOfTwo(size) || size > this.maxSize) {
      fail(`queue size ${size} is not a power of two from 1 to the device maximum ${this.maxSize} (§2.7)`);
    }
    const areas: [string, number, number, number][] = [
      ['descriptor table', this.descValue, VIRTQ_DESC_ALIGN, VIRTQ_DESC_SIZE * size],
      ['available ring', this.availValue, VIRTQ_AVAIL_ALIGN, 6 + 2 * size],
      ['used ring', this.usedValue, VIRTQ_USED_ALIGN, 6 + VIRTQ_USED_ELEM_SIZE * size],
    ];
    for (const [name, addr, align, len] of areas) {
      if (!Number.isSafeInteger(addr) || addr < 0) fail(`${name} address ${String(addr)} is not a valid guest address`);
      if (addr % align !== 0) fail(`${name} at 0x${addr.toString(16)} is not ${align}-byte aligned (§2.7)`);
      if (!this.mem!.contains(addr, len)) {
        fail(`${name} at 0x${addr.toString(16)} (${len} bytes for ${size} entries) is not inside guest RAM`);
      }
    }
    this.validated = true;
  }

  /**
   * Whether the driver has made chains available that were not popped yet.
   * @throws VirtQueueError (fatal) if the queue is broken or `avail.idx` ran ahead by more than `size`
   */
  hasAvailable(): boolean {
    if (!this.ready) return false;
    this.usable();
    try {
      return this.pendingCount() > 0;
    } catch (e) {
      throw this.asQueueError(e);
    }
  }

  /**
   * Take the next available descriptor chain, or `undefined` when the driver has offered none (or
   * the queue is not ready). With EVENT_IDX it also moves `avail_event` along so the driver kicks
   * for the next chain (§2.7.10), unless {@link disableNotifications} is in force.
   *
   * Checks (each failure is a {@link VirtQueueError}): head and `next` indices inside their table;
   * at most `size` descriptors per chain (so loops end, §2.7.5.3.1); INDIRECT only when
   * negotiated, never nested, never with NEXT, its table a non-empty multiple of 16 bytes in RAM
   * (§2.7.5.3); every buffer inside guest RAM; no device-readable buffer after a device-writable
   * one (§2.7.4.2); at most 2^32-1 bytes in total (§2.7.5.2). A chain-level error has `head` set
   * and the entry is consumed; ring-level errors are `fatal`.
   */
  pop(): DescriptorChain | undefined {
    if (!this.ready) return undefined;
    this.usable();
    try {
      if (this.pendingCount() === 0) {
        if (!this.eventIdx || this.kicksSuppressed) return undefined;
        // Ask for a kick on the next chain, then look again: the driver may have published one
        // between our read of avail.idx and its read of avail_event (§2.7.13.4).
        this.writeAvailEvent(this.nextAvailIdx);
        fullFence();
        if (this.pendingCount() === 0) return undefined;
      }
      const mem = this.mem!;
      const slot = this.nextAvailIdx & (this.sizeValue - 1);
      const head = readU16(mem, this.availValue + RING_ENTRIES + 2 * slot);
      this.nextAvailIdx = (this.nextAvailIdx + 1) & 0xffff;
      if (this.eventIdx && !this.kicksSuppressed) this.writeAvailEvent(this.nextAvailIdx);
      if (head >= this.sizeValue) {
        this.fail(`available ring entry ${slot} names descriptor ${head}, outside the table of ${this.sizeValue}`);
      }
      this.inFlightCount++;
      return this.walk(head);
    } catch (e) {
      throw this.asQueueError(e);
    }
  }

  /**
   * Pop every available chain. A malformed chain is given back to the driver at once with length
   * 0 and reported to `onMalformed`; a fatal error is thrown. Typical device loop:
   * `for (const chain of queue.drain()) { ...; queue.addUsed(chain.head, written); }`.
   */
  *drain(onMalformed?: (error: VirtQueueError) => void): Generator<DescriptorChain, void, void> {
    for (;;) {
      let chain: DescriptorChain | undefined;
      try {
        chain = this.pop();
      } catch (e) {
        if (!(e instanceof VirtQueueError) || e.fatal || e.head === undefined) throw e;
        this.addUsed(e.head, 0);
        onMalformed?.(e);
        continue;
      }
      if (!chain) return;
      yield chain;
    }
  }

  /**
   * Return a chain to the driver: write used element `{id: head, len}` and then publish it by
   * incrementing `used.idx` (§2.7.8, §2.7.8.2). `len` is the number of bytes written into the
   * chain's writable buffers. With `publish` false the element is written but `used.idx` is
   * left for {@link publishUsed} (or {@link shouldNotify}, which publishes first): a device that
   * completes a batch publishes once and decides on the interrupt right after, before the
   * driver can consume the entries and move `used_event` on (§2.7.7.2, §2.7.10).
   * @throws VirtQueueError if the queue is not ready or broken, `head` is not a valid index, or no
   *   chain is in flight (a device bug: a chain returned twice, or after a reset)
   */
  addUsed(head: number, len: number, publish = true): void {
    if (!this.ready) {
      throw new VirtQueueError(`virtqueue ${this.index}: addUsed(${head}) on a queue that is not ready (reset since the pop?)`, {
        queue: this.index,
        fatal: false,
      });
    }
    if (!Number.isInteger(len) || len < 0 || len > MAX_CHAIN_BYTES) {
      throw new RangeError(`used length must be an integer from 0 to 2^32-1, got ${len}`);
    }
    this.usable();
    if (!Number.isInteger(head) || head < 0 || head >= this.sizeValue) {
      throw new VirtQueueError(`virtqueue ${this.index}: addUsed head ${head} is outside the table of ${this.sizeValue}`, {
        queue: this.index,
        fatal: false,
      });
    }
    if (this.inFlightCount === 0) {
      throw new VirtQueueError(`virtqueue ${this.index}: addUsed(${head}) with no chain in flight (returned twice?)`, {
        queue: this.index,
        head,
        fatal: false,
      });
    }
    try {
      const mem = this.mem!;
      writeUsedElem(mem, this.usedValue + RING_ENTRIES + VIRTQ_USED_ELEM_SIZE * (this.nextUsedIdx & (this.sizeValue - 1)), head, len);
      this.nextUsedIdx = (this.nextUsedIdx + 1) & 0xffff;
      this.inFlightCount--;
      if (publish) this.writeUsedIdx();
    } catch (e) {
      throw this.asQueueError(e);
    }
  }

  /**
   * Publish the used elements added with `addUsed(head, len, false)`: write `used.idx` (§2.7.8.2).
   * {@link shouldNotify} does this itself.
   */
  publishUsed(): void {
    if (!this.ready || !this.mem || this.failure || !this.validated) return;
    try {
      this.writeUsedIdx();
    } catch (e) {
      throw this.asQueueError(e);
    }
  }

  private writeUsedIdx(): void {
    if (this.publishedUsed === this.nextUsedIdx) return;
    // The elements are visible before idx: stores are not reordered on x86 (TSO) nor by V8.
    writeU16(this.mem!, this.usedValue + RING_IDX, this.nextUsedIdx);
    this.publishedUsed = this.nextUsedIdx;
  }

  /**
   * Whether to send a used-buffer notification for the entries added since the last call
   * (§2.7.7.2): without EVENT_IDX, unless the driver set VIRTQ_AVAIL_F_NO_INTERRUPT; with
   * EVENT_IDX, when `used_event` lies in the window of used indices just written
   * (`vring_need_event(used_event, new, old)`). False when nothing was added since the last call.
   */
  shouldNotify(): boolean {
    if (!this.ready || !this.mem || this.failure || !this.validated) return false;
    try {
      this.writeUsedIdx();
      const oldIdx = this.lastCheckedUsed;
      const newIdx = this.nextUsedIdx;
      this.lastCheckedUsed = newIdx;
      if (oldIdx === newIdx) return false;
      fullFence(); // used.idx is visible before we read the driver's suppression fields
      const mem = this.mem!;
      if (this.eventIdx) {
        const usedEvent = readU16(mem, this.availValue + RING_ENTRIES + 2 * this.sizeValue);
        return vringNeedEvent(usedEvent, newIdx, oldIdx);
      }
      return (readU16(mem, this.availValue + RING_FLAGS) & VIRTQ_AVAIL_F_NO_INTERRUPT) === 0;
    } catch (e) {
      throw this.asQueueError(e);
    }
  }

  /**
   * Write `avail_event` (EVENT_IDX only): the driver need not kick until it publishes the entry at
   * ring index `idx` (§2.7.10). No effect without EVENT_IDX.
   */
  setAvailEvent(idx: number): void {
    if (!this.eventIdx || !this.ready) return;
    this.guard(() => this.writeAvailEvent(idx & 0xffff));
  }

  /**
   * Ask the driver not to send available-buffer notifications (§2.7.10): VIRTQ_USED_F_NO_NOTIFY
   * without EVENT_IDX; with EVENT_IDX, `avail_event` stops following `pop()`. Only a hint.
   */
  disableNotifications(): void {
    if (!this.ready) return;
    this.kicksSuppressed = true;
    if (!this.eventIdx) this.guard(() => writeU16(this.mem!, this.usedValue + RING_FLAGS, VIRTQ_USED_F_NO_NOTIFY));
  }

  /**
   * Ask for available-buffer notifications again, then look at the ring once more.
   * @returns true when chains arrived while notifications were off: process them now, as no kick
   *   will come for them
   */
  enableNotifications(): boolean {
    if (!this.ready) return false;
    this.kicksSuppressed = false;
    return this.guard(() => {
      if (this.eventIdx) this.writeAvailEvent(this.nextAvailIdx);
      else writeU16(this.mem!, this.usedValue + RING_FLAGS, 0);
      fullFence();
      return this.pendingCount() > 0;
    });
  }

  /**
   * Back to the state after a device reset (§2.4): not ready, size = `maxSize`, addresses 0, no
   * MSI-X vector, features off, indices 0, nothing in flight, no fatal error. `mem` is kept.
   */
  reset(): void {
    this.ready = false;
    this.msixVector = VIRTIO_MSI_NO_VECTOR;
    this.eventIdx = false;
    this.indirect = false;
    this.sizeValue = this.maxSize;
    this.descValue = 0;
    this.availValue = 0;
    this.usedValue = 0;
    this.validated = false;
    this.failure = undefined;
    this.nextAvailIdx = 0;
    this.nextUsedIdx = 0;
    this.seenAvailIdx = 0;
    this.lastCheckedUsed = 0;
    this.publishedUsed = 0;
    this.inFlightCount = 0;
    this.kicksSuppressed = false;
  }

  // ---- internals ----

  /** Throw unless the queue can be used: not broken, layout valid (checked once per change). */
  private usable(): void {
    if (this.failure) throw this.failure;
    if (!this.validated) this.validate();
  }

  /** What to throw for `e`: a GuestMemoryError (e.g. RAM released) breaks the queue. */
  private asQueueError(e: unknown): unknown {
    return e instanceof GuestMemoryError ? this.breakQueue(`guest memory access failed: ${e.message}`, e) : e;
  }

  /** Run `fn` on a usable queue (cold paths; the hot ones inline the same). */
  private guard<T>(fn: () => T): T {
    this.usable();
    try {
      return fn();
    } catch (e) {
      throw this.asQueueError(e);
    }
  }

  /** Mark the queue broken (until reset) and return the fatal error. */
  private breakQueue(what: string, cause?: unknown): VirtQueueError {
    this.failure = new VirtQueueError(`virtqueue ${this.index}: ${what}; the device needs a reset`, {
      queue: this.index,
      fatal: true,
      cause,
    });
    return this.failure;
  }

  /** Mark the queue broken and throw. */
  private fail(what: string, cause?: unknown): never {
    throw this.breakQueue(what, cause);
  }

  /** Available chains not yet popped; re-reads avail.idx when the cached value is used up. */
  private pendingCount(): number {
    let pending = (this.seenAvailIdx - this.nextAvailIdx) & 0xffff;
    if (pending === 0) {
      this.seenAvailIdx = readU16(this.mem!, this.availValue + RING_IDX);
      pending = (this.seenAvailIdx - this.nextAvailIdx) & 0xffff;
      if (pending > this.sizeValue) {
        this.fail(
          `avail.idx ${this.seenAvailIdx} is ${pending} entries ahead of the ${this.nextAvailIdx} consumed, ` +
            `more than the queue size ${this.sizeValue} (§2.7.6, §2.7.13)`,
        );
      }
    }
    return pending;
  }

  private writeAvailEvent(idx: number): void {
    writeU16(this.mem!, this.usedValue + RING_ENTRIES + VIRTQ_USED_ELEM_SIZE * this.sizeValue, idx);
  }

  /** Follow the chain starting at descriptor `head` of the main table. */
  private walk(head: number): DescriptorChain {
    const mem = this.mem!;
    const size = this.sizeValue;
    const bad = (what: string): never => {
      throw new VirtQueueError(`virtqueue ${this.index}: descriptor chain at head ${head}: ${what}`, {
        queue: this.index,
        head,
        fatal: false,
      });
    };
    const buffers: DescriptorBuffer[] = [];
    let table = this.descValue;
    let tableLen = size; // entries in the table being walked
    let inIndirect = false;
    let idx = head;
    let steps = 0; // descriptors visited in the current table
    let count = 0; // descriptors in the chain (not counting an indirect pointer)
    let total = 0;
    let sawWritable = false;
    for (;;) {
      if (idx >= tableLen) bad(`next index ${idx} is outside the ${inIndirect ? 'indirect table' : 'descriptor table'} of ${tableLen}`);
      if (++steps > tableLen) bad(`the chain loops (more than ${tableLen} descriptors in its table)`);
      const d = readDescriptor(mem, table + VIRTQ_DESC_SIZE * idx);
      if (d.flags & VIRTQ_DESC_F_INDIRECT) {
        if (inIndirect) bad('an indirect table contains an INDIRECT descriptor (§2.7.5.3.1)');
        if (!this.indirect) bad('INDIRECT descriptor but VIRTIO_F_INDIRECT_DESC was not negotiated (§2.7.5.3.1)');
        if (d.flags & VIRTQ_DESC_F_NEXT) bad('descriptor has both INDIRECT and NEXT (§2.7.5.3.1)');
        if (d.len === 0 || d.len % VIRTQ_DESC_SIZE !== 0) bad(`indirect table length ${d.len} is not a non-zero multiple of 16 (§2.7.5.3)`);
        if (d.addr === undefined || !mem.contains(d.addr, d.len)) {
          bad(`indirect table at ${hexAddr(d)} (+${d.len}) is not inside guest RAM`);
        }
        // The WRITE flag of the pointer is ignored (§2.7.5.3.2).
        table = d.addr!;
        tableLen = d.len / VIRTQ_DESC_SIZE;
        inIndirect = true;
        idx = 0;
        steps = 0;
        continue;
      }
      if (++count > size) bad(`more than ${size} descriptors, the queue size (§2.7.5.3.1)`);
      const writable = (d.flags & VIRTQ_DESC_F_WRITE) !== 0;
      if (writable) sawWritable = true;
      else if (sawWritable) bad('a device-readable descriptor follows a device-writable one (§2.7.4.2)');
      if (d.len > 0) {
        if (d.addr === undefined || !mem.contains(d.addr, d.len)) bad(`buffer at ${hexAddr(d)} (+${d.len}) is not inside guest RAM`);
        total += d.len;
        if (total > MAX_CHAIN_BYTES) bad('the buffers add up to more than 2^32-1 bytes (§2.7.5.2)');
        buffers.push({ addr: d.addr!, len: d.len, writable });
      }
      if (!(d.flags & VIRTQ_DESC_F_NEXT)) break;
      idx = d.next;
    }
    return new DescriptorChain(mem, head, buffers, count, inIndirect);
  }
}

/** A descriptor as read from guest memory; `addr` is undefined when it is not a safe integer. */
interface RawDescriptor {
  addr: number | undefined;
  addrHi: number;
  addrLo: number;
  len: number;
  flags: number;
  next: number;
}

/** Read struct virtq_desc (§2.7.5) at `addr`, which the caller checked lies in RAM. */
function readDescriptor(mem: GuestMemory, addr: number): RawDescriptor {
  let addrLo: number, addrHi: number, len: number, flagsNext: number;
  if (addr % 4 === 0) {
    // The hot path: descriptor tables are 16-byte aligned (§2.7); four loads, no view per access.
    addrLo = mem.loadU32(addr);
    addrHi = mem.loadU32(addr + 4);
    len = mem.loadU32(addr + 8);
    flagsNext = mem.loadU32(addr + 12);
  } else {
    // An indirect table may be anywhere: read the 16 bytes through a view (or a copy across a boundary).
    const b = bytesAt(mem, addr, VIRTQ_DESC_SIZE);
    const v = new DataView(b.buffer, b.byteOffset, VIRTQ_DESC_SIZE);
    addrLo = v.getUint32(0, true);
    addrHi = v.getUint32(4, true);
    len = v.getUint32(8, true);
    flagsNext = v.getUint32(12, true);
  }
  return {
    // Above 2^53 no guest RAM exists (and the number would be inexact).
    addr: addrHi < 0x20_0000 ? addrHi * 0x1_0000_0000 + addrLo : undefined,
    addrHi,
    addrLo,
    len,
    flags: flagsNext & 0xffff,
    next: flagsNext >>> 16,
  };
}

function hexAddr(d: RawDescriptor): string {
  return `0x${d.addrHi.toString(16)}${d.addrLo.toString(16).padStart(8, '0')}`.replace(/^0x0+(?=.)/, '0x');
}

/** A view of `len` bytes at `addr` in RAM, or a copy when they straddle a mapping boundary. */
function bytesAt(mem: GuestMemory, addr: number, len: number): Uint8Array {
  try {
    return mem.slice(addr, len);
  } catch (e) {
    if (e instanceof GuestMemoryError) return mem.read(addr, len);
    throw e;
  }
}

/**
 * Load a le16 ring field in one access. The driver updates `avail.idx`, `used_event` and flags
 * while we read them; a DataView or byte-wise read can tear (V8's unoptimised DataView reads byte
 * by byte), a Uint16Array element load cannot. Ring fields are 2-byte aligned (§2.7).
 */
function readU16(mem: GuestMemory, addr: number): number {
  if (addr % 2 === 0) return mem.loadU16(addr);
  const b = bytesAt(mem, addr, 2);
  return b[0]! | (b[1]! << 8);
}

/** Store a le16 ring field (`used.idx`, `avail_event`, `used.flags`) in one access; see `readU16`. */
function writeU16(mem: GuestMemory, addr: number, v: number): void {
  mem.storeU16(addr, v); // ring fields are 2-byte aligned (validate())
}

/** Write struct virtq_used_elem {le32 id; le32 len} (§2.7.8); 4-byte aligned like the used ring. */
function writeUsedElem(mem: GuestMemory, addr: number, id: number, len: number): void {
  mem.storeU32(addr, id);
  mem.storeU32(addr + 4, len);
}

function isPowerOfTwo(n: number): boolean {
  return Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;
}
