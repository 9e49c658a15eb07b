/**
 * What serves virtio-fs's queues: the FUSE server and its file system over the driver's
 * virtqueues, from activation to reset. `VirtioFs` runs one in its own worker thread
 * (fsWorkerMain.ts), so neither the file system calls nor the queue polling hold the main thread.
 *
 * - Each descriptor chain is one FUSE request (device-readable) and its reply area
 *   (device-writable) (virtio 1.2 §5.11.6); the used length is the reply's length, 0 when there is
 *   none. Operations that go asynchronous (FSYNC, FALLOCATE on the I/O threads) complete out of
 *   order.
 * - After serving a queue it is polled for `pollMaxNs` (QueuePolling.ts, QEMU's `poll-max-ns`):
 *   FUSE drivers keep one request in flight per waiting task, and the next one usually follows
 *   the reply within microseconds, so it is served without a kick and a wake-up.
 * @module
 */
import { Allowlist } from '../../../fuse/Allowlist';
import { FuseServer } from '../../../fuse/FuseServer';
import { PassthroughFs } from '../../../fuse/PassthroughFs';
import { QueueCompletions } from '../QueueCompletions';
import { pollQueue } from '../QueuePolling';
import type { VirtioActivation } from '../VirtioDevice';
import type { VirtQueue } from '../VirtQueue';
import type { ResolvedFsOptions } from './VirtioFsOptions';

/** How long a device reset waits for running I/O before it gives up on it (ms), as virtio-blk. */
export const FS_RESET_DRAIN_MS = 5000;

/** Counters of a virtio-fs device, for tests and diagnostics. */
export interface VirtioFsStats {
  /** Descriptor chains taken from the queues. */
  chains: number;
  /** Malformed chains the queue rejected (returned with length 0). */
  malformed: number;
  /** FUSE replies written (errors included). */
  replies: number;
  /** Error replies. */
  errors: number;
  /** Requests that could not be answered at all (no room for a header, shorter than one). */
  unanswerable: number;
  /** FORGET, BATCH_FORGET and INTERRUPT (no reply by design). */
  noReply: number;
  /** Unexpected failures inside the server (each also answered EIO). */
  internalErrors: number;
  /** Node ids the guest holds (the root included). */
  inodes: number;
  /** Open file and directory handles. */
  handles: number;
  /** Requests running on the I/O threads. */
  inFlight: number;
  /** Doorbells the queue thread took from the queues' ioeventfds (a read may cover several writes). */
  doorbells: number;
  /** Guest doorbell writes those reads covered (the eventfd counters' sum). */
  doorbellWrites: number;
  /** Used-buffer interrupts the queue thread sent through an irqfd itself (the rest go through the main thread). */
  irqfdSignals: number;
}

/** The field order of {@link VirtioFsStats} in a shared Float64Array. */
export const FS_STATS_FIELDS = ['chains', 'malformed', 'replies', 'errors', 'unanswerable', 'noReply', 'internalErrors', 'inodes', 'handles', 'inFlight', 'doorbells', 'doorbellWrites', 'irqfdSignals'] as const;

/** The FUSE server over one virtio-fs device's queues. */
export class FsQueueService {
  /** The file system (inodes, handles) behind the server. */
  readonly fs: PassthroughFs;
  /** The FUSE server. */
  readonly server: FuseServer;
  readonly #completions = new QueueCompletions();
  readonly #pollMaxNs: number;
  #chains = 0;
  #doorbells = 0;
  #doorbellWrites = 0;
  #irqfdSignals = 0;
  #malformed = 0;
  /** Requests running on the I/O threads. */
  #asyncInFlight = 0;

  /**
   * @param options the device's resolved options
   * @param asyncMinBytes reads and writes from this size run on the I/O threads (PassthroughFs); the
   *   worker serves them inline (Infinity), as crosvm's and virtiofsd's queue threads do
   */
  constructor(options: ResolvedFsOptions, asyncMinBytes?: number) {
    this.#pollMaxNs = options.pollMaxNs;
    this.fs = new PassthroughFs({
      sharedDir: options.sharedDir,
      writeback: options.writeback,
      allowlist: options.allowedPaths ? new Allowlist(options.allowedPaths) : undefined,
      asyncMinBytes,
    });
    this.server = new FuseServer(this.fs, { cache: options.cache, timeout: options.timeout, writeback: options.writeback });
  }

  /** The counters now. */
  stats(): VirtioFsStats {
    const s = this.server.stats;
    return {
      chains: this.#chains,
      malformed: this.#malformed,
      replies: s.replies,
      errors: s.errors,
      unanswerable: s.unanswerable,
      noReply: s.noReply,
      internalErrors: s.internalErrors,
      inodes: this.fs.inodes.size,
      handles: this.fs.handles.size,
      inFlight: this.fs.inFlight,
      doorbells: this.#doorbells,
      doorbellWrites: this.#doorbellWrites,
      irqfdSignals: this.#irqfdSignals,
    };
  }

  /** Count an interrupt sent through an irqfd. */
  countIrqfd(): void {
    this.#irqfdSignals++;
  }

  /** Count a doorbell eventfd read of `writes` guest writes. */
  countDoorbell(writes: number): void {
    this.#doorbells++;
    this.#doorbellWrites += writes;
  }

  /** Called after every batch served and every completion (the worker publishes the counters there). */
  onProgress: (() => void) | undefined;

  /** The driver set DRIVER_OK. */
  activate(activation: VirtioActivation): void {
    this.#completions.activate(activation);
  }

  /** Whether the driver's activation is in force (no reset since). */
  get active(): boolean {
    return this.#completions.active !== undefined;
  }

  /**
   * Serve queue `index` (a doorbell), then poll it. A fatal queue error is thrown (the transport
   * sets DEVICE_NEEDS_RESET).
   */
  processQueue(index: number): void {
    const c = this.#completions;
    const queue = c.active?.queues[index];
    if (!queue) return;
    const answered = this.#serve(index, queue);
    this.onProgress?.();
    if (answered) c.notify(index);
    this.#poll(index, queue);
  }

  /** Serve every available chain of `queue`; true when some reply was given synchronously. */
  #serve(index: number, queue: VirtQueue): boolean {
    const c = this.#completions;
    const generation = c.generation;
    let answered = false;
    const onMalformed = (): void => {
      this.#malformed++;
      answered = true;
    };
    for (const chain of queue.drain(onMalformed)) {
      this.#chains++;
      const r = this.server.handle(chain);
      if (typeof r === 'number') {
        queue.addUsed(chain.head, r, false); // published by the notify that follows
        answered = true;
        continue;
      }
      this.#asyncInFlight++;
      r.then(
        (n) => {
          this.#asyncInFlight--;
          c.complete(generation, index, queue, chain.head, n);
          this.onProgress?.();
          // After the interrupt decision (queued by complete() before this): the driver's next
          // request usually follows at once.
          if (this.#asyncInFlight === 0) queueMicrotask(() => this.#pollAfterCompletion(generation, index));
        },
        (e: unknown) => {
          this.#asyncInFlight--;
          c.giveUp(e);
        },
      );
    }
    return answered;
  }

  /** Poll queue `index` after serving it ({@link pollQueue}); serve the rest later if the budget ran out. */
  #poll(index: number, queue: VirtQueue): void {
    const c = this.#completions;
    const generation = c.generation;
    const outcome = pollQueue(
      queue,
      this.#pollMaxNs,
      () => {
        const answered = this.#serve(index, queue);
        this.onProgress?.();
        if (answered) c.notify(index);
      },
      () => this.#asyncInFlight > 0,
    );
    if (outcome === 'more') {
      setImmediate(() => {
        if (c.isCurrent(generation)) this.#serveFromEventLoop(index);
      });
    }
  }

  #pollAfterCompletion(generation: number, index: number): void {
    if (this.#completions.isCurrent(generation) && this.#asyncInFlight === 0) this.#serveFromEventLoop(index);
  }

  /** processQueue from a callback of this service's own: a broken queue asks for DEVICE_NEEDS_RESET. */
  #serveFromEventLoop(index: number): void {
    try {
      this.processQueue(index);
    } catch (e) {
      this.#completions.giveUp(e);
    }
  }

  /**
   * Driver reset: the FUSE session ends (node ids and handles are dropped; the guest sends INIT
   * again). I/O still running on the I/O threads is waited for (up to {@link FS_RESET_DRAIN_MS}),
   * and its completion discarded, so nothing writes guest RAM after the reset (§2.4.1).
   */
  reset(): void {
    this.#completions.reset();
    this.server.abandonInFlight();
    this.fs.quiesce(FS_RESET_DRAIN_MS);
    this.server.endSession();
    this.onProgress?.();
  }

  /** Reset, wait for running I/O and close every descriptor. */
  async close(): Promise<void> {
    this.reset();
    await this.fs.close();
  }
}
