/**
 * What a virtio device that completes requests asynchronously needs between `activate()` and
 * `reset()`: the activation, a generation that tells completions from before a reset apart, one
 * interrupt decision per batch of completions, and a DEVICE_NEEDS_RESET request sent once when a
 * queue breaks outside a transport call. VirtioBlock and VirtioFs share it.
 *
 * Completions write their used element with `queue.addUsed(head, len, false)`; `used.idx` is
 * published by {@link QueueCompletions.notify} right before it reads `used_event`, so a driver
 * polling the used ring cannot consume the entry and move `used_event` on before the device has
 * decided whether to interrupt (§2.7.7.2, §2.7.10).
 * @module
 */
import type { VirtioActivation } from './VirtioDevice';
import { VirtQueueError, type VirtQueue } from './VirtQueue';

/** Activation, generation and batched used-buffer notifications of one device. */
export class QueueCompletions {
  #active: VirtioActivation | undefined;
  #generation = 0;
  #resetReported = false;
  readonly #scheduled = new Set<number>();

  /** The driver's activation, or undefined before DRIVER_OK and after a reset. */
  get active(): VirtioActivation | undefined {
    return this.#active;
  }

  /** Changes at every reset: capture it when I/O starts and compare with {@link isCurrent}. */
  get generation(): number {
    return this.#generation;
  }

  /** The driver set DRIVER_OK. */
  activate(activation: VirtioActivation): void {
    this.#active = activation;
    this.#resetReported = false;
  }

  /** Device reset: completions of an earlier generation are dropped from now on. */
  reset(): void {
    this.#generation++;
    this.#active = undefined;
  }

  /** Whether `generation` is the current one (no reset since it was captured). */
  isCurrent(generation: number): boolean {
    return generation === this.#generation;
  }

  /**
   * A request of the current generation finished asynchronously: give its chain back (`len`
   * bytes written) and schedule the interrupt decision. Dropped if the device was reset since
   * `generation`; a broken queue becomes a DEVICE_NEEDS_RESET request.
   */
  complete(generation: number, index: number, queue: VirtQueue, head: number, len: number): void {
    if (!this.isCurrent(generation)) return;
    try {
      queue.addUsed(head, len, false);
    } catch (e) {
      this.giveUp(e);
      return;
    }
    this.scheduleNotify(index);
  }

  /**
   * Decide on queue `index`'s interrupt once the current run of completions is over: they settle
   * in the same microtask run, so a batch costs one decision (and at most one interrupt).
   */
  scheduleNotify(index: number): void {
    if (this.#scheduled.has(index)) return;
    this.#scheduled.add(index);
    const generation = this.#generation;
    queueMicrotask(() => {
      this.#scheduled.delete(index);
      if (this.isCurrent(generation)) this.notify(index);
    });
  }

  /** Publish queue `index`'s used entries and interrupt if the driver asked for it. */
  notify(index: number): void {
    const a = this.#active;
    const queue = a?.queues[index];
    if (!a || !queue) return;
    try {
      if (queue.shouldNotify()) a.interrupt.signalUsedQueue(index);
    } catch (e) {
      this.giveUp(e);
    }
  }

  /** A queue broke outside a transport call: ask the transport for DEVICE_NEEDS_RESET, once per activation. */
  giveUp(e: unknown): void {
    const a = this.#active;
    if (this.#resetReported || !a) return;
    this.#resetReported = true;
    a.interrupt.needsReset?.(e instanceof Error ? e : new VirtQueueError(String(e), { fatal: true }));
  }
}
