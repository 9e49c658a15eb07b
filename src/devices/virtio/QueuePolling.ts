/**
 * Adaptive polling of a virtqueue after it was served, as QEMU's I/O threads do (`poll-max-ns`,
 * default 32,768 ns, util/aio-posix.c): a driver that sends its next request right after a reply
 * (one request in flight, the common case for FUSE and for synchronous block I/O) is served
 * without a kick and without a wake-up of this thread. On this host a wake-up of an event loop by
 * an eventfd costs ~30 µs (DESIGN.md), more than the FUSE server needs for a LOOKUP.
 *
 * While polling, available-buffer notifications are off (§2.7.10: VIRTQ_USED_F_NO_NOTIFY, or
 * `avail_event` left behind with EVENT_IDX), so the driver does not exit to ring the doorbell
 * either; they are turned on again, and the ring looked at once more, before the thread goes back
 * to its event loop (§2.7.13.4's race).
 *
 * Bounds: the window restarts after every chain served, but one call spins at most
 * {@link POLL_BUDGET_MS} in all, so a driver that never stops sending cannot starve the event loop
 * (vCPU exits, timers, `vm.stop()`): the caller then serves the rest from a `setImmediate`.
 * @module
 */
import type { VirtQueue } from './VirtQueue';

/** QEMU's default `poll-max-ns` for I/O threads (IOTHREAD_POLL_MAX_NS_DEFAULT, iothread.c). */
export const DEFAULT_POLL_MAX_NS = 32_768;
/** Longest one {@link pollQueue} call spins before it gives the event loop a turn (ms). */
export const POLL_BUDGET_MS = 2;

/** How a {@link pollQueue} call ended. */
export type PollOutcome =
  /** The window passed with nothing new: notifications are on again. */
  | 'idle'
  /** Asynchronous work started (its completion needs the event loop): notifications are on again. */
  | 'busy'
  /** The budget ran out with chains still available: serve them again soon (notifications are on). */
  | 'more';

/**
 * Spin on `queue` for up to `maxNs` after the last chain, calling `serve()` whenever chains are
 * available. `busy()` says whether asynchronous work is running; polling stops then.
 * @param maxNs the window in nanoseconds; 0 returns at once
 */
export function pollQueue(queue: VirtQueue, maxNs: number, serve: () => void, busy: () => boolean): PollOutcome {
  if (maxNs <= 0 || busy()) return busy() ? 'busy' : 'idle';
  const windowMs = maxNs / 1e6;
  const start = performance.now();
  let now = start;
  let deadline = now + windowMs;
  queue.disableNotifications();
  for (;;) {
    while (now < deadline) {
      if (queue.hasAvailable()) {
        serve();
        if (busy()) {
          if (queue.enableNotifications()) return 'more';
          return 'busy';
        }
        now = performance.now();
        if (now - start > POLL_BUDGET_MS) {
          return queue.enableNotifications() || queue.hasAvailable() ? 'more' : 'idle';
        }
        deadline = now + windowMs;
      } else {
        now = performance.now();
      }
    }
    // Notifications back on, then one more look: a chain made available in between sent no kick.
    if (!queue.enableNotifications()) return 'idle';
    serve();
    if (busy()) return 'busy';
    now = performance.now();
    if (now - start > POLL_BUDGET_MS) return queue.hasAvailable() ? 'more' : 'idle';
    queue.disableNotifications();
    deadline = now + windowMs;
  }
}
