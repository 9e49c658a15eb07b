/**
 * virtio-balloon, the traditional memory balloon (virtio 1.2 §5.5). The host sets a target,
 * `num_pages` (4 KiB pages the guest should give up), and raises a configuration change; the
 * driver gives page frames on the inflate queue and takes them back on the deflate queue, and
 * reports its balloon size in `actual`. Inflated pages are released to the host
 * ({@link GuestMemory.discard}, `madvise(MADV_DONTNEED)`): they leave the VMM's resident memory
 * and come back as zero pages when the guest touches them after a deflate.
 *
 * | queue | what the device does |
 * |---|---|
 * | inflateq (0) | le32 PFNs: each page inside guest RAM is discarded; PFNs outside RAM are counted and skipped |
 * | deflateq (1) | le32 PFNs: accepted (the memory comes back on touch); deflates the host did not ask for are counted |
 * | statsq (2, VIRTIO_BALLOON_F_STATS_VQ) | the driver's stats buffer is held; {@link VirtioBalloon.requestStats} returns it so the driver refills it (§5.5.6.3) |
 *
 * VIRTIO_BALLOON_F_DEFLATE_ON_OOM is offered (option `deflateOnOom`): a guest short of memory may
 * then deflate below the target, and the device accepts it (`counters.unrequestedDeflatePages`).
 * Every buffer is answered with used length 0 (the device writes nothing).
 * @module
 */
import { KvmkitError, TimeoutError } from '../../../errors';
import type { GuestMemory } from '../../../memory/GuestMemory';
import { VIRTIO_ID_BALLOON, VIRTQUEUE_FEATURES } from '../constants';
import type { DescriptorChain } from '../DescriptorChain';
import type { VirtQueue } from '../VirtQueue';
import { VirtioDevice, type VirtioActivation } from '../VirtioDevice';
import {
  BALLOON_CONFIG, BALLOON_DEFLATEQ, BALLOON_INFLATEQ, BALLOON_PAGE_SIZE, BALLOON_STATSQ, VIRTIO_BALLOON_F_DEFLATE_ON_OOM,
  VIRTIO_BALLOON_F_STATS_VQ,
} from './constants';
import { BALLOON_STATS_MAX_BYTES, parseGuestStats, type BalloonGuestStats } from './guestStats';
import { pageFrameRuns, type PageRun } from './pageFrames';

/** Entries of the inflate and deflate queues (QEMU and crosvm use 128..256; Linux sends 256 PFNs per buffer). */
export const BALLOON_QUEUE_SIZE = 256;
/** Entries of the stats queue: the driver keeps one buffer there. */
export const BALLOON_STATS_QUEUE_SIZE = 4;
/** How long {@link VirtioBalloon.requestStats} waits for the driver's refilled buffer by default (ms). */
export const BALLOON_STATS_TIMEOUT_MS = 5000;
/** Largest target: `num_pages` is a le32 count of 4 KiB pages. */
export const BALLOON_MAX_BYTES = 0xffff_ffff * BALLOON_PAGE_SIZE;

/** The balloon cannot do what was asked (no driver, no stats queue, device reset while waiting). */
export class BalloonError extends KvmkitError {}

/** Options of {@link VirtioBalloon}. */
export interface VirtioBalloonOptions {
  /** A name for this device in errors and events. */
  id?: string;
  /** Offer VIRTIO_BALLOON_F_DEFLATE_ON_OOM (default true). */
  deflateOnOom?: boolean;
  /** Offer the stats queue, VIRTIO_BALLOON_F_STATS_VQ (default true). */
  stats?: boolean;
}

/** The balloon's state and the guest's memory statistics, as {@link VirtioBalloon.requestStats} returns them. */
export interface BalloonStats {
  /** The balloon's size as the driver reports it (`actual` × 4096), bytes. */
  actual: number;
  /** The size the host asked for (`num_pages` × 4096), bytes. */
  target: number;
  /** What the guest reported in its stats buffer. */
  stats: BalloonGuestStats;
}

/** Counters since construction, for tests and diagnostics. */
export interface VirtioBalloonCounters {
  /** Pages received on the inflate queue and discarded. */
  inflatedPages: number;
  /** Pages received on the deflate queue. */
  deflatedPages: number;
  /** Deflated pages beyond what the target asked for (a guest under memory pressure, DEFLATE_ON_OOM). */
  unrequestedDeflatePages: number;
  /** PFNs on the inflate or deflate queue that name no guest RAM: skipped. */
  ignoredPfns: number;
  /** Malformed chains, returned with length 0. */
  malformed: number;
  /** Stats buffers received from the driver. */
  statsBuffers: number;
}

/** What changed, for {@link VirtioBalloon.onChange} listeners. */
export interface BalloonChange {
  /** `actual` in bytes. */
  actual: number;
  /** `num_pages` in bytes. */
  target: number;
}

interface StatsWaiter {
  resolve: (s: BalloonStats) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

/** A memory balloon: `new VirtioBalloon()`, then `vm.balloon(bytes)` and `vm.balloonStats()`. */
export class VirtioBalloon extends VirtioDevice {
  readonly deviceKind = 'virtio-balloon';
  readonly deviceType = VIRTIO_ID_BALLOON; // §5.5.1
  /** inflateq, deflateq, statsq (§5.5.2). */
  readonly queueMaxSizes = [BALLOON_QUEUE_SIZE, BALLOON_QUEUE_SIZE, BALLOON_STATS_QUEUE_SIZE];
  /** Counters since construction. */
  readonly counters: VirtioBalloonCounters = {
    inflatedPages: 0, deflatedPages: 0, unrequestedDeflatePages: 0, ignoredPfns: 0, malformed: 0, statsBuffers: 0,
  };

  private readonly offered: bigint;
  private targetPages = 0;
  private actualPages = 0;
  /** Pages in the balloon as the device counts them from the queues (inflated - deflated, in RAM). */
  private heldPages = 0;
  private active: VirtioActivation | undefined;
  private statsChain: DescriptorChain | undefined;
  private lastStats: BalloonGuestStats | undefined;
  private statsWaiters: StatsWaiter[] = [];
  private readonly listeners = new Set<(c: BalloonChange) => void>();

  constructor(readonly options: VirtioBalloonOptions = {}) {
    super();
    this.offered = VIRTQUEUE_FEATURES
      | (options.stats ?? true ? VIRTIO_BALLOON_F_STATS_VQ : 0n)
      | (options.deflateOnOom ?? true ? VIRTIO_BALLOON_F_DEFLATE_ON_OOM : 0n);
  }

  deviceFeatures(): bigint {
    return this.offered;
  }

  /** The balloon size the host asks for (`num_pages` × 4096), bytes. */
  get target(): number {
    return this.targetPages * BALLOON_PAGE_SIZE;
  }

  /** The balloon size the driver reports (`actual` × 4096), bytes. */
  get actual(): number {
    return this.actualPages * BALLOON_PAGE_SIZE;
  }

  /** The guest's last stats buffer, without asking for a fresh one (undefined before the first). */
  get latestStats(): BalloonGuestStats | undefined {
    return this.lastStats;
  }

  /** The features the driver accepted, while it drives the device. */
  get negotiated(): bigint | undefined {
    return this.active?.features;
  }

  /** struct virtio_balloon_config (§5.5.4): `num_pages`, `actual`. */
  override configSpace(): Uint8Array {
    const b = new Uint8Array(BALLOON_CONFIG.length);
    const v = new DataView(b.buffer);
    v.setUint32(BALLOON_CONFIG.numPages, this.targetPages, true);
    v.setUint32(BALLOON_CONFIG.actual, this.actualPages, true);
    return b;
  }

  /** The driver writes `actual` (§5.5.6: after each inflate or deflate); `num_pages` is the device's and writes to it are ignored. */
  override writeConfig(offset: number, data: Uint8Array): void {
    const cfg = this.configSpace();
    let touched = false;
    for (let i = 0; i < data.length; i++) {
      const at = offset + i;
      if (at >= BALLOON_CONFIG.actual && at < BALLOON_CONFIG.actual + 4) {
        cfg[at] = data[i]!;
        touched = true;
      }
    }
    if (!touched) return;
    const actual = new DataView(cfg.buffer).getUint32(BALLOON_CONFIG.actual, true);
    if (actual === this.actualPages) return;
    this.actualPages = actual;
    this.changed();
  }

  /**
   * Ask the guest for a balloon of `bytes` (rounded down to 4 KiB pages): sets `num_pages` and,
   * while a driver runs the device, sends a configuration change notification (§5.5.6). The
   * driver inflates or deflates in its own time; watch {@link actual} or {@link onChange}.
   * @throws RangeError when `bytes` is not an integer from 0 to {@link BALLOON_MAX_BYTES}
   */
  setTarget(bytes: number): void {
    if (!Number.isSafeInteger(bytes) || bytes < 0 || bytes > BALLOON_MAX_BYTES) {
      throw new RangeError(`balloon size must be an integer number of bytes from 0 to ${BALLOON_MAX_BYTES}, got ${bytes}`);
    }
    const pages = Math.floor(bytes / BALLOON_PAGE_SIZE);
    if (pages === this.targetPages) return;
    this.targetPages = pages;
    this.active?.interrupt.signalConfigChange();
    this.changed();
  }

  /** Call `fn` whenever `actual` or the target changes. Returns a function that removes it. */
  onChange(fn: (c: BalloonChange) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /**
   * Resolve once the driver reports a balloon of `bytes` (rounded down to pages) in `actual`.
   * @throws TimeoutError after `timeoutMs`
   */
  waitForActual(bytes: number, timeoutMs = 30_000): Promise<void> {
    const pages = Math.floor(bytes / BALLOON_PAGE_SIZE);
    if (this.actualPages === pages) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        off();
        reject(new TimeoutError(`the balloon driver did not reach ${pages * BALLOON_PAGE_SIZE} bytes in ${timeoutMs} ms (actual ${this.actual}, target ${this.target})`));
      }, timeoutMs);
      const off = this.onChange(() => {
        if (this.actualPages !== pages) return;
        clearTimeout(timer);
        off();
        resolve();
      });
    });
  }

  /**
   * Fresh memory statistics from the guest (§5.5.6.3): the device gives the driver's stats buffer
   * back (used), the driver refills it with current values and makes it available again, and
   * that buffer is decoded. Concurrent calls share one request.
   * @throws BalloonError when no driver runs the device or it did not negotiate
   *   VIRTIO_BALLOON_F_STATS_VQ, or the device is reset while waiting; TimeoutError when the
   *   driver does not answer within `timeoutMs`
   */
  requestStats(timeoutMs = BALLOON_STATS_TIMEOUT_MS): Promise<BalloonStats> {
    const a = this.active;
    if (!a) return Promise.reject(new BalloonError('no driver runs the balloon device yet (the guest has not set DRIVER_OK)'));
    const queue = a.queues[BALLOON_STATSQ];
    if (!(a.features & VIRTIO_BALLOON_F_STATS_VQ) || !queue) {
      return Promise.reject(new BalloonError('the guest driver did not enable the balloon stats queue (VIRTIO_BALLOON_F_STATS_VQ)'));
    }
    const p = new Promise<BalloonStats>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.statsWaiters = this.statsWaiters.filter((w) => w.timer !== timer);
        reject(new TimeoutError(`the guest did not refill the balloon stats buffer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.statsWaiters.push({ resolve, reject, timer });
    });
    const held = this.statsChain;
    if (held) {
      // Give the buffer back: the driver refills it with fresh numbers (§5.5.6.3).
      this.statsChain = undefined;
      queue.addUsed(held.head, 0);
      if (queue.shouldNotify()) a.interrupt.signalUsedQueue(BALLOON_STATSQ);
    }
    return p;
  }

  activate(activation: VirtioActivation): void {
    this.active = activation;
  }

  processQueue(index: number): void {
    const a = this.active;
    const queue = a?.queues[index];
    if (!a || !queue) return;
    if (index === BALLOON_STATSQ) {
      this.receiveStats(a, queue);
      return;
    }
    if (index !== BALLOON_INFLATEQ && index !== BALLOON_DEFLATEQ) return;
    let answered = false;
    const onMalformed = (): void => {
      this.counters.malformed++;
      answered = true;
    };
    for (const chain of queue.drain(onMalformed)) {
      const runs = pageFrameRuns(chain.readableViews());
      if (index === BALLOON_INFLATEQ) this.inflate(a.mem, runs);
      else this.deflate(a.mem, runs);
      queue.addUsed(chain.head, 0, false);
      answered = true;
    }
    if (answered && queue.shouldNotify()) a.interrupt.signalUsedQueue(index);
  }

  /** Device reset: the balloon is empty again (every page is the guest's), `actual` is 0; the target stays. */
  reset(): void {
    this.active = undefined;
    this.statsChain = undefined;
    this.heldPages = 0;
    const waiters = this.statsWaiters;
    this.statsWaiters = [];
    for (const w of waiters) {
      clearTimeout(w.timer);
      w.reject(new BalloonError('the balloon device was reset while waiting for the guest\'s stats'));
    }
    if (this.actualPages !== 0) {
      this.actualPages = 0;
      this.changed();
    }
  }

  // ---- internals ----

  private inflate(mem: GuestMemory, runs: readonly PageRun[]): void {
    for (const run of runs) {
      const addr = run.first * BALLOON_PAGE_SIZE;
      if (mem.contains(addr, run.count * BALLOON_PAGE_SIZE)) {
        mem.discard(addr, run.count * BALLOON_PAGE_SIZE);
        this.counters.inflatedPages += run.count;
        this.heldPages += run.count;
        continue;
      }
      // Partly or not at all in RAM (a run across a hole, or a bogus PFN): page by page.
      for (let i = 0; i < run.count; i++) {
        const page = addr + i * BALLOON_PAGE_SIZE;
        if (mem.contains(page, BALLOON_PAGE_SIZE)) {
          mem.discard(page, BALLOON_PAGE_SIZE);
          this.counters.inflatedPages++;
          this.heldPages++;
        } else {
          this.counters.ignoredPfns++;
        }
      }
    }
  }

  private deflate(mem: GuestMemory, runs: readonly PageRun[]): void {
    for (const run of runs) {
      const addr = run.first * BALLOON_PAGE_SIZE;
      let inRam = run.count;
      if (!mem.contains(addr, run.count * BALLOON_PAGE_SIZE)) {
        inRam = 0;
        for (let i = 0; i < run.count; i++) if (mem.contains(addr + i * BALLOON_PAGE_SIZE, BALLOON_PAGE_SIZE)) inRam++;
        this.counters.ignoredPfns += run.count - inRam;
      }
      // Pages the host asked back are those above the target; the rest the guest took on its own
      // (allowed with DEFLATE_ON_OOM, §5.5.6.1). Nothing to do for the memory: it refills on touch.
      const requested = Math.max(0, Math.min(inRam, this.heldPages - this.targetPages));
      this.counters.unrequestedDeflatePages += inRam - requested;
      this.counters.deflatedPages += inRam;
      this.heldPages = Math.max(0, this.heldPages - inRam);
    }
  }

  private receiveStats(a: VirtioActivation, queue: VirtQueue): void {
    let returned = false;
    const onMalformed = (): void => {
      this.counters.malformed++;
      returned = true;
    };
    for (const chain of queue.drain(onMalformed)) {
      const bytes = new Uint8Array(Math.min(chain.readableLength, BALLOON_STATS_MAX_BYTES));
      chain.readBytes(0, bytes);
      this.lastStats = parseGuestStats(bytes);
      this.counters.statsBuffers++;
      if (this.statsChain) {
        // A second buffer while one is held (not what §5.5.6.3 describes): keep the newest.
        queue.addUsed(this.statsChain.head, 0, false);
        returned = true;
      }
      this.statsChain = chain;
    }
    if (returned && queue.shouldNotify()) a.interrupt.signalUsedQueue(BALLOON_STATSQ);
    if (this.statsWaiters.length === 0 || !this.lastStats) return;
    const result: BalloonStats = { actual: this.actual, target: this.target, stats: { ...this.lastStats } };
    const waiters = this.statsWaiters;
    this.statsWaiters = [];
    for (const w of waiters) {
      clearTimeout(w.timer);
      w.resolve(result);
    }
  }

  private changed(): void {
    const c: BalloonChange = { actual: this.actual, target: this.target };
    for (const fn of [...this.listeners]) fn(c);
  }
}
