/**
 * Adaptive queue polling (QueuePolling.ts): chains that arrive inside the window are served
 * without a notification, notifications are off while polling and on again afterwards (§2.7.10),
 * the window and the budget end the spin, and asynchronous work stops it.
 */
import { describe, expect, it } from 'vitest';
import { POLL_BUDGET_MS, pollQueue } from '../../../src/devices/virtio/QueuePolling';
import type { VirtQueue } from '../../../src/devices/virtio/VirtQueue';
import { allocRam, LAYOUT, TestDriver } from './driver';

const VIRTQ_USED_F_NO_NOTIFY = 1;

/** A driver whose next request follows each reply at once, `more` times; the device side answers everything. */
function pingPong(opts: { eventIdx?: boolean; more: number }): {
  driver: TestDriver;
  queue: VirtQueue;
  serve: () => void;
  served: () => number;
  flagsSeen: number[];
} {
  const driver = new TestDriver(allocRam(), LAYOUT);
  const queue = driver.queue({ eventIdx: opts.eventIdx ?? false });
  let served = 0;
  let left = opts.more;
  const flagsSeen: number[] = [];
  const serve = (): void => {
    for (const chain of queue.drain()) {
      queue.addUsed(chain.head, 0);
      served++;
    }
    flagsSeen.push(driver.usedFlags);
    if (left-- > 0) driver.addChain([{ addr: 0x8000, len: 16 }]);
  };
  return { driver, queue, serve, served: () => served, flagsSeen };
}

describe('pollQueue', () => {
  it('serves requests that follow each reply without a notification, with kicks suppressed meanwhile', () => {
    const p = pingPong({ more: 50 });
    p.driver.addChain([{ addr: 0x8000, len: 16 }]);
    p.serve(); // what processQueue does on the doorbell
    expect(pollQueue(p.queue, 100_000, p.serve, () => false)).toBe('idle');
    expect(p.served()).toBe(51);
    // every serve inside the window saw VIRTQ_USED_F_NO_NOTIFY; afterwards the driver is asked to kick again
    expect(p.flagsSeen.slice(1).every((f) => f === VIRTQ_USED_F_NO_NOTIFY)).toBe(true);
    expect(p.driver.usedFlags).toBe(0);
    expect(p.driver.usedIdx).toBe(51);
  });

  it('with EVENT_IDX, leaves avail_event behind while polling and points it at the next chain afterwards', () => {
    const p = pingPong({ eventIdx: true, more: 5 });
    p.driver.addChain([{ addr: 0x8000, len: 16 }]);
    p.serve();
    const during: number[] = [];
    expect(pollQueue(p.queue, 100_000, () => {
      during.push(p.driver.availEvent);
      p.serve();
    }, () => false)).toBe('idle');
    expect(p.served()).toBe(6);
    expect(new Set(during).size).toBe(1); // not moved by the pops inside the window
    expect(p.driver.availEvent).toBe(6);
  });

  it('returns at once with a zero window, and stops when asynchronous work starts', () => {
    const p = pingPong({ more: 10 });
    expect(pollQueue(p.queue, 0, p.serve, () => false)).toBe('idle');
    expect(p.flagsSeen.length).toBe(0);
    let busy = false;
    p.driver.addChain([{ addr: 0x8000, len: 16 }]);
    expect(pollQueue(p.queue, 100_000, () => {
      p.serve();
      busy = true;
    }, () => busy)).toBe('more'); // the served chain queued the next one: notifications on, and it is still there
    expect(p.served()).toBe(1);
    expect(p.driver.usedFlags).toBe(0);
    expect(pollQueue(p.queue, 100_000, p.serve, () => true)).toBe('busy');
  });

  it('gives the event loop a turn after the budget when the driver never stops', () => {
    const p = pingPong({ more: Number.POSITIVE_INFINITY });
    p.driver.addChain([{ addr: 0x8000, len: 16 }]);
    const t0 = performance.now();
    expect(pollQueue(p.queue, 100_000, p.serve, () => false)).toBe('more');
    const ms = performance.now() - t0;
    expect(ms).toBeGreaterThanOrEqual(POLL_BUDGET_MS);
    expect(p.served()).toBeGreaterThan(10);
    expect(p.driver.usedFlags).toBe(0);
  });

  it('ends the window when nothing arrives', () => {
    const p = pingPong({ more: 0 });
    const t0 = performance.now();
    expect(pollQueue(p.queue, 200_000, p.serve, () => false)).toBe('idle');
    expect(performance.now() - t0).toBeGreaterThanOrEqual(0.2);
    expect(p.served()).toBe(0);
  });
});
