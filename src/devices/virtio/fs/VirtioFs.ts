/**
 * virtio-fs, the shared file system device (virtio 1.2 §5.11): a host directory the guest mounts
 * with `mount -t virtiofs TAG /mnt`, served by kvmkit's FUSE server (src/fuse) in this process.
 *
 * - Configuration space (§5.11.4): `tag[36]` (UTF-8, NUL-padded) and le32 `num_request_queues` (1).
 * - Queues (§5.11.2): 0 is the high-priority queue (the Linux driver sends FORGET there), 1 the
 *   request queue; both serve every opcode the same way. No feature bits of its own (§5.11.3).
 * - Each descriptor chain is one FUSE request (device-readable) and its reply area
 *   (device-writable) (§5.11.6); the used length is the reply's length, 0 when there is none.
 *   Replies go out as operations finish, so large reads and writes (run on the thread pool)
 *   complete out of order.
 * - After serving a queue the device polls it for `pollMaxNs` (QueuePolling.ts, QEMU's
 *   `poll-max-ns`): FUSE drivers keep one request in flight per waiting task, and the next one
 *   usually follows the reply within microseconds, so it is served without a kick and a wake-up
 *   (bench/fs.mjs: LOOKUP+GETATTR pairs/s 8,282 without, 25,754 with, on this host).
 *
 * See FuseServer for the wire behaviour and PassthroughFs for the confinement rules.
 * @module
 */
import { Allowlist, AllowlistError } from '../../../fuse/Allowlist';
import { AllowlistSocket } from './AllowlistSocket';
import { FuseServer } from '../../../fuse/FuseServer';
import { PassthroughFs } from '../../../fuse/PassthroughFs';
import { VIRTIO_ID_FS, VIRTQUEUE_FEATURES } from '../constants';
import { QueueCompletions } from '../QueueCompletions';
import { pollQueue } from '../QueuePolling';
import { VirtioDevice, type VirtioActivation } from '../VirtioDevice';
import type { VirtQueue } from '../VirtQueue';
import { MAX_TAG_BYTES, resolveFsOptions, type CachePolicy, type VirtioFsOptions } from './VirtioFsOptions';

/** Entries per queue (crosvm's virtio-fs queue size; Linux caps FUSE requests at the queue size in pages). */
export const FS_QUEUE_SIZE = 1024;
/** Request queues besides the high-priority one (`num_request_queues`). */
export const FS_REQUEST_QUEUES = 1;
/** How long a device reset waits for running I/O before it gives up on it (ms), as virtio-blk. */
export const FS_RESET_DRAIN_MS = 5000;
/** Bytes of the configuration space: tag[36] and le32 num_request_queues (§5.11.4). */
export const FS_CONFIG_SIZE = MAX_TAG_BYTES + 4;

/** Counters, for tests and diagnostics (the FUSE server keeps its own in `server.stats`). */
export interface VirtioFsStats {
  /** Descriptor chains taken from the queues. */
  chains: number;
  /** Malformed chains the queue rejected (returned with length 0). */
  malformed: number;
}

/**
 * A virtio-fs device: `new VirtioFs({ sharedDir: './share', tag: 'my_shared_tag' })`.
 * @example
 * ```ts
 * const fs = new VirtioFs({ sharedDir: './share', tag: 'my_shared_tag', cache: 'auto' });
 * const vm = new VirtualMachine({ kernel: 'vmlinuz', initrd: 'initrd.img', devices: [fs] });
 * await vm.start();
 * // in the guest: mount -t virtiofs my_shared_tag /mnt
 * ```
 */
export class VirtioFs extends VirtioDevice {
  readonly deviceKind = 'virtio-fs';
  readonly deviceType = VIRTIO_ID_FS; // §5.11.1
  readonly queueMaxSizes = Array.from({ length: 1 + FS_REQUEST_QUEUES }, () => FS_QUEUE_SIZE);
  /** The shared host directory. */
  readonly sharedDir: string;
  /** The mount tag. */
  readonly tag: string;
  /** Cache policy given to the guest. */
  readonly cache: CachePolicy;
  /** Entry/attribute timeout in seconds. */
  readonly timeout: number;
  /** FUSE_WRITEBACK_CACHE offered. */
  readonly writeback: boolean;
  /** The allowlist control socket path, if configured (served by the allowlist socket module). */
  readonly allowlistSocket: string | undefined;
  /** The file system (inodes, handles) behind the server. */
  readonly fs: PassthroughFs;
  /** The FUSE server. */
  readonly server: FuseServer;
  /** Queue counters since construction. */
  readonly stats: VirtioFsStats = { chains: 0, malformed: 0 };
  /** The socket serving `allowlistSocket` (crosvm's protocol), from construction until {@link close}. */
  readonly allowlistServer: AllowlistSocket | undefined;

  /** How long the queue is polled after it was served, in ns (see {@link VirtioFsOptions.pollMaxNs}). */
  readonly pollMaxNs: number;

  private readonly completions = new QueueCompletions();
  /** Requests running on the I/O threads. */
  private asyncInFlight = 0;

  /**
   * Validate the options and open the shared directory (synchronously).
   * @throws ConfigError for a bad option (`tag must be 1 to 36 bytes ...`) or a directory that
   *   cannot be opened
   */
  constructor(options: VirtioFsOptions) {
    super();
    const o = resolveFsOptions(options);
    this.sharedDir = o.sharedDir;
    this.tag = o.tag;
    this.cache = o.cache;
    this.timeout = o.timeout;
    this.writeback = o.writeback;
    this.allowlistSocket = o.allowlistSocket;
    this.pollMaxNs = o.pollMaxNs;
    this.fs = new PassthroughFs({
      sharedDir: o.sharedDir,
      writeback: o.writeback,
      allowlist: o.allowedPaths ? new Allowlist(o.allowedPaths) : undefined,
    });
    this.server = new FuseServer(this.fs, { cache: o.cache, timeout: o.timeout, writeback: o.writeback });
    if (o.allowlistSocket !== undefined) {
      try {
        this.allowlistServer = AllowlistSocket.listen(o.allowlistSocket, this);
      } catch (e) {
        void this.fs.close();
        throw e;
      }
    }
  }

  /** The allowlist in force, or undefined when the share is not restricted. */
  get allowlist(): Allowlist | undefined {
    return this.fs.allowlist;
  }

  /**
   * Make `paths` (relative to the share's root, starting with `/`) and everything below them
   * visible, with the directories leading to them. Takes effect for the next request. Atomic.
   * @throws AllowlistError for a malformed path (nothing changes), or when the device was created
   *   without an allowlist (`allowlistSocket` or `allowedPaths`)
   */
  allowPaths(paths: readonly string[]): void {
    this.requireAllowlist().allow(paths);
  }

  /**
   * Stop showing `paths`: new lookups answer ENOENT and opens of node ids the guest still holds
   * EACCES at once. Files and directories the guest already opened stay open until it closes them
   * (their descriptors are not revoked), as with permissions on a local file system. Atomic.
   * @throws AllowlistError for a malformed path or one that is not allowed (nothing changes), or
   *   when the device was created without an allowlist
   */
  revokePaths(paths: readonly string[]): void {
    this.requireAllowlist().revoke(paths);
  }

  /** No device-specific feature bits (§5.11.3: VIRTIO_FS_F_NOTIFICATION is not offered). */
  deviceFeatures(): bigint {
    return VIRTQUEUE_FEATURES;
  }

  /** struct virtio_fs_config (§5.11.4): tag[36], le32 num_request_queues. */
  override configSpace(): Uint8Array {
    const b = new Uint8Array(FS_CONFIG_SIZE);
    b.set(new TextEncoder().encode(this.tag));
    new DataView(b.buffer).setUint32(MAX_TAG_BYTES, FS_REQUEST_QUEUES, true);
    return b;
  }

  activate(activation: VirtioActivation): void {
    this.completions.activate(activation);
  }

  processQueue(index: number): void {
    const c = this.completions;
    const queue = c.active?.queues[index];
    if (!queue) return;
    if (this.serve(index, queue)) c.notify(index);
    this.poll(index, queue);
  }

  /** Serve every available chain of `queue`; true when some reply was given synchronously. */
  private serve(index: number, queue: VirtQueue): boolean {
    const c = this.completions;
    const generation = c.generation;
    let answered = false;
    const onMalformed = (): void => {
      this.stats.malformed++;
      answered = true;
    };
    for (const chain of queue.drain(onMalformed)) {
      this.stats.chains++;
      const r = this.server.handle(chain);
      if (typeof r === 'number') {
        queue.addUsed(chain.head, r, false); // published by the notify below
        answered = true;
        continue;
      }
      this.asyncInFlight++;
      r.then(
        (n) => {
          this.asyncInFlight--;
          c.complete(generation, index, queue, chain.head, n);
          // After the interrupt decision (queued by complete() before this): the driver's next
          // request usually follows at once.
          if (this.asyncInFlight === 0) queueMicrotask(() => this.pollAfterCompletion(generation, index));
        },
        (e: unknown) => {
          this.asyncInFlight--;
          c.giveUp(e);
        },
      );
    }
    return answered;
  }

  /** Poll queue `index` after serving it ({@link pollQueue}); serve the rest later if the budget ran out. */
  private poll(index: number, queue: VirtQueue): void {
    const c = this.completions;
    const generation = c.generation;
    const outcome = pollQueue(
      queue,
      this.pollMaxNs,
      () => {
        if (this.serve(index, queue)) c.notify(index);
      },
      () => this.asyncInFlight > 0,
    );
    if (outcome === 'more') {
      setImmediate(() => {
        if (c.isCurrent(generation)) this.serveFromEventLoop(index);
      });
    }
  }

  private pollAfterCompletion(generation: number, index: number): void {
    if (this.completions.isCurrent(generation) && this.asyncInFlight === 0) this.serveFromEventLoop(index);
  }

  /** processQueue from a callback of this device's own: a broken queue asks for DEVICE_NEEDS_RESET. */
  private serveFromEventLoop(index: number): void {
    try {
      this.processQueue(index);
    } catch (e) {
      this.completions.giveUp(e);
    }
  }

  /**
   * Driver reset: the FUSE session ends (node ids and handles are dropped; the guest sends INIT
   * again). I/O still running on the I/O threads is waited for (up to {@link FS_RESET_DRAIN_MS}),
   * and its completion discarded, so nothing writes guest RAM after the reset (§2.4.1).
   */
  reset(): void {
    this.completions.reset();
    this.server.abandonInFlight();
    this.fs.quiesce(FS_RESET_DRAIN_MS);
    this.server.endSession();
  }

  /** Reset, wait for running I/O and close every descriptor. Call before guest RAM is freed. */
  override async close(): Promise<void> {
    this.allowlistServer?.close();
    this.reset();
    await this.fs.close();
  }

  private requireAllowlist(): Allowlist {
    const al = this.fs.allowlist;
    if (!al) throw new AllowlistError(`virtio-fs ${this.tag} has no allowlist: create it with allowlistSocket or allowedPaths`, undefined);
    return al;
  }
}
