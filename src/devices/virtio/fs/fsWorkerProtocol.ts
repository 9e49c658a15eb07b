/**
 * Messages between `VirtioFs` (main thread) and its queue thread (fsWorkerMain.ts).
 *
 * - Main → worker, in order: `open` (a device takes the thread: its options), `doorbells` (the
 *   queues' ioeventfds, once), `activate`, `kick` (a doorbell that reached the main thread),
 *   `reset`, `allow`/`revoke`, `close` (the device is done; the thread waits for the next `open`,
 *   so a later device in the process finds its code already compiled). Those with a
 *   `seq` are acknowledged by storing `seq` in `ctl[CTL_ACK]` and notifying it, so the main thread
 *   can wait for them synchronously (`Atomics.wait`): a reset must be over, and an allowlist
 *   change in force, when the call returns.
 * - Worker → main: `used` (queue `index` needs its interrupt, decided by the worker with
 *   EVENT_IDX), `needsReset`, `error` (the share could not be opened in the worker).
 * - Counters: the worker stores FS_STATS_FIELDS in a shared Float64Array after every batch.
 * - Interrupts: `irqfds[queue]` is the eventfd that raises the queue's interrupt directly
 *   (VirtioInterrupt.usedQueueIrqfd, duplicated by the main thread), or -1: then the worker sends
 *   `used` and the main thread raises it (INTx, a masked vector's pending bit).
 * @module
 */
import type { GuestRegion } from '../../../memory/GuestMemory';
import type { ResolvedFsOptions } from './VirtioFsOptions';

/** `ctl[CTL_ACK]`: the last acknowledged `seq`. */
export const CTL_ACK = 0;
/** Int32 slots of the control array. */
export const CTL_SLOTS = 2;
/** Queues an `irqfds` array has room for. */
export const MAX_FS_QUEUES = 8;

/** What the worker starts with. */
export interface FsWorkerData {
  /** SharedArrayBuffer of {@link CTL_SLOTS} Int32. */
  ctl: SharedArrayBuffer;
  /** SharedArrayBuffer of one Float64 per FS_STATS_FIELDS entry. */
  stats: SharedArrayBuffer;
  /** SharedArrayBuffer of {@link MAX_FS_QUEUES} Int32: each queue's direct irqfd, or -1. */
  irqfds: SharedArrayBuffer;
}

/** A queue as the transport configured it (virtio 1.2 §4.1.4.3), to rebuild in the worker. */
export interface QueueConfig {
  index: number;
  maxSize: number;
  size: number;
  descTable: number;
  availRing: number;
  usedRing: number;
}

export type ToFsWorker =
  | { type: 'open'; options: ResolvedFsOptions }
  | { type: 'doorbells'; fds: (number | undefined)[] }
  | { type: 'activate'; epoch: number; regions: GuestRegion[]; queues: (QueueConfig | undefined)[]; features: bigint }
  | { type: 'kick'; epoch: number; index: number }
  | { type: 'reset'; seq: number }
  | { type: 'allow' | 'revoke'; seq: number; paths: string[] }
  | { type: 'close'; seq: number };

export type FromFsWorker =
  | { type: 'used'; epoch: number; index: number }
  | { type: 'needsReset'; epoch: number; message: string }
  | { type: 'error'; message: string };
