/**
 * virtio-fs, the shared file system device (virtio 1.2 §5.11): a host directory the guest mounts
 * with `mount -t virtiofs TAG /mnt`, served by kvmkit's FUSE server (src/fuse) in this process.
 *
 * - Configuration space (§5.11.4): `tag[36]` (UTF-8, NUL-padded) and le32 `num_request_queues` (1).
 * - Queues (§5.11.2): 0 is the high-priority queue (the Linux driver sends FORGET there), 1 the
 *   request queue; both serve every opcode the same way. No feature bits of its own (§5.11.3).
 * - Each descriptor chain is one FUSE request (device-readable) and its reply area
 *   (device-writable) (§5.11.6); the used length is the reply's length, 0 when there is none.
 * - The requests are served by the device's queue thread (FsQueueService.ts, fsWorkerMain.ts):
 *   inline, in order (FSYNC and FALLOCATE on the I/O threads may finish later), then the queue is
 *   polled for `pollMaxNs` (QueuePolling.ts, QEMU's `poll-max-ns`).
 *
 * See FuseServer for the wire behaviour and PassthroughFs for the confinement rules.
 * @module
 */
import { KvmkitError } from '../../../errors';
import { Allowlist, AllowlistError } from '../../../fuse/Allowlist';
import { dupCloexec, fsLibc } from '../../../fuse/libcFs';
import { openSharedDir } from '../../../fuse/PassthroughFs';
import { AllowlistSocket } from './AllowlistSocket';
import { VIRTIO_ID_FS, VIRTQUEUE_FEATURES } from '../constants';
import { VirtioDevice, type VirtioActivation } from '../VirtioDevice';
import { FS_RESET_DRAIN_MS, FS_STATS_FIELDS, type VirtioFsStats } from './FsQueueService';
import { FsQueueThread } from './FsQueueThread';
import type { FromFsWorker, ToFsWorker } from './fsWorkerProtocol';
import { MAX_TAG_BYTES, resolveFsOptions, type CachePolicy, type VirtioFsOptions } from './VirtioFsOptions';

export { FS_RESET_DRAIN_MS, type VirtioFsStats };

/** Entries per queue (crosvm's virtio-fs queue size; Linux caps FUSE requests at the queue size in pages). */
export const FS_QUEUE_SIZE = 1024;
/** Request queues besides the high-priority one (`num_request_queues`). */
export const FS_REQUEST_QUEUES = 1;
/** Bytes of the configuration space: tag[36] and le32 num_request_queues (§5.11.4). */
export const FS_CONFIG_SIZE = MAX_TAG_BYTES + 4;
/** Longest wait for the queue thread to take a reset or an allowlist change (ms), beyond the reset's own drain. */
const QUEUE_THREAD_ANSWER_MS = 5000;

/**
 * A virtio-fs device: `new VirtioFs({ sharedDir: './share', tag: 'my_shared_tag' })`.
 *
 * The FUSE server runs in the device's own worker thread (its queue thread, like crosvm's fs
 * worker and virtiofsd's queue thread), woken by the queues' ioeventfds without the main thread,
 * serving requests inline and polling the queue after each batch (FsQueueService). This object
 * keeps the device's identity, configuration space and allowlist on the main thread.
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
  /** How long the queue is polled after it was served, in ns (see {@link VirtioFsOptions.pollMaxNs}). */
  readonly pollMaxNs: number;
  /** The socket serving `allowlistSocket` (crosvm's protocol), from construction until {@link close}. */
  readonly allowlistServer: AllowlistSocket | undefined;

  readonly #allowlist: Allowlist | undefined;
  readonly #thread: FsQueueThread;
  /** Counts activations and resets; the queue thread's messages carry the one they belong to. */
  #epoch = 0;
  #active: VirtioActivation | undefined;
  /** Our duplicates of the queues' ioeventfds, watched by the queue thread. */
  #doorbells: number[] = [];
  /** The transport's irqfds → our duplicates the queue thread signals. */
  readonly #irqfdCopies = new Map<number, number>();
  #failure: string | undefined;
  #closing: Promise<void> | undefined;

  /**
   * Validate the options, check the shared directory and start the queue thread.
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
    fsLibc().close(openSharedDir(o.sharedDir)); // a bad path is a ConfigError here; the queue thread opens its own
    // The queue thread keeps its own copy; this one checks paths first, so both always agree.
    this.#allowlist = o.allowedPaths ? new Allowlist(o.allowedPaths) : undefined;
    if (o.allowlistSocket !== undefined) this.allowlistServer = AllowlistSocket.listen(o.allowlistSocket, this);
    this.#thread = FsQueueThread.acquire((m) => this.#fromWorker(m));
    this.#thread.post({ type: 'open', options: o });
  }

  /** Counters as the queue thread last published them (after every batch of requests). */
  get stats(): VirtioFsStats {
    const s = {} as VirtioFsStats;
    FS_STATS_FIELDS.forEach((k, i) => (s[k] = this.#thread.counters[i]!));
    return s;
  }

  /** Why the queue thread cannot serve (the share could not be opened there, or the thread died), if so. */
  get failure(): string | undefined {
    return this.#failure ?? this.#thread.failure;
  }

  /** The allowlist in force, or undefined when the share is not restricted. */
  get allowlist(): Allowlist | undefined {
    return this.#allowlist;
  }

  /**
   * Make `paths` (relative to the share's root, starting with `/`) and everything below them
   * visible, with the directories leading to them. In force for every request the queue thread
   * takes after this returns. Atomic.
   * @throws AllowlistError for a malformed path (nothing changes), or when the device was created
   *   without an allowlist (`allowlistSocket` or `allowedPaths`)
   */
  allowPaths(paths: readonly string[]): void {
    this.requireAllowlist().allow(paths);
    this.#call({ type: 'allow', seq: 0, paths: [...paths] }, QUEUE_THREAD_ANSWER_MS);
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
    this.#call({ type: 'revoke', seq: 0, paths: [...paths] }, QUEUE_THREAD_ANSWER_MS);
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

  /** The queue thread waits on the doorbells itself (duplicates of the transport's eventfds). */
  override takeDoorbells(fds: readonly number[]): boolean {
    if (this.#closing || this.#doorbells.length > 0) return false;
    const c = fsLibc();
    const dups: number[] = [];
    for (const fd of fds) {
      const d = dupCloexec(fd);
      if (d < 0) {
        for (const x of dups) c.close(x);
        return false; // the transport keeps watching them and kicks through processQueue
      }
      dups.push(d);
    }
    this.#doorbells = dups;
    this.#post({ type: 'doorbells', fds: dups });
    return true;
  }

  activate(activation: VirtioActivation): void {
    this.#active = activation;
    const epoch = ++this.#epoch;
    this.interruptRoutingChanged();
    this.#post({
      type: 'activate',
      epoch,
      regions: activation.mem.regions.map((r) => ({ ...r })),
      queues: activation.queues.map((q) =>
        q ? { index: q.index, maxSize: this.queueMaxSizes[q.index] ?? q.size, size: q.size, descTable: q.descTable, availRing: q.availRing, usedRing: q.usedRing } : undefined,
      ),
      features: activation.features,
    });
  }

  /**
   * Give the queue thread the irqfds it can signal itself (MSI-X, unmasked), duplicated so that
   * they stay valid while it may use them; -1 sends the interrupt through this thread.
   */
  override interruptRoutingChanged(): void {
    const a = this.#active;
    const irqfds = this.#thread.irqfds;
    for (let q = 0; q < this.queueMaxSizes.length; q++) {
      const fd = a?.interrupt.usedQueueIrqfd?.(q);
      Atomics.store(irqfds, q, fd === undefined ? -1 : this.#irqfdCopy(fd));
    }
  }

  /** Our duplicate of the transport's irqfd `fd` (closed when the device closes), or -1. */
  #irqfdCopy(fd: number): number {
    let d = this.#irqfdCopies.get(fd);
    if (d === undefined) {
      d = dupCloexec(fd);
      if (d < 0) return -1;
      this.#irqfdCopies.set(fd, d);
    }
    return d;
  }

  /** A doorbell that reached the main thread (an MMIO write, or a transport that kept the eventfds): the queue thread serves it. */
  processQueue(index: number): void {
    if (this.#active) this.#post({ type: 'kick', epoch: this.#epoch, index });
  }

  /**
   * Driver reset: the FUSE session ends (node ids and handles are dropped; the guest sends INIT
   * again). Returns when the queue thread has stopped: the request it was serving is finished, I/O
   * on the I/O threads waited for (up to {@link FS_RESET_DRAIN_MS}) and its completion discarded,
   * so nothing writes guest RAM after the reset (§2.4.1).
   */
  reset(): void {
    this.#deactivate();
    if (this.#closing) return;
    this.#call({ type: 'reset', seq: 0 }, FS_RESET_DRAIN_MS + QUEUE_THREAD_ANSWER_MS);
  }

  /** Reset, wait for running I/O, close every descriptor and end the queue thread. Call before guest RAM is freed. */
  override close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.allowlistServer?.close();
    this.#deactivate();
    const clean = await this.#thread.callAsync({ type: 'close', seq: 0 }, FS_RESET_DRAIN_MS + QUEUE_THREAD_ANSWER_MS);
    await this.#thread.release(clean);
    const c = fsLibc();
    for (const fd of [...this.#doorbells, ...this.#irqfdCopies.values()]) c.close(fd);
    this.#doorbells = [];
    this.#irqfdCopies.clear();
  }

  /** The driver's activation is over: its interrupts and messages are stale from now on. */
  #deactivate(): void {
    this.#active = undefined;
    this.#epoch++;
    this.#thread.irqfds.fill(-1);
  }

  #post(m: ToFsWorker): void {
    if (!this.#closing) this.#thread.post(m);
  }

  /** Send `m` and wait (blocking this thread) until the queue thread has carried it out. */
  #call(m: Extract<ToFsWorker, { seq: number }>, timeoutMs: number): void {
    if (this.#closing) return;
    this.#thread.call(m, timeoutMs, `virtio-fs ${this.tag}`);
  }

  #fromWorker(m: FromFsWorker): void {
    switch (m.type) {
      case 'used':
        if (m.epoch === this.#epoch) this.#active?.interrupt.signalUsedQueue(m.index);
        return;
      case 'needsReset':
        if (m.epoch === this.#epoch) this.#active?.interrupt.needsReset?.(new KvmkitError(`virtio-fs ${this.tag}: ${m.message}`));
        return;
      case 'error':
        this.#failure = m.message;
        return;
    }
  }

  private requireAllowlist(): Allowlist {
    const al = this.#allowlist;
    if (!al) throw new AllowlistError(`virtio-fs ${this.tag} has no allowlist: create it with allowlistSocket or allowedPaths`, undefined);
    return al;
  }
}
