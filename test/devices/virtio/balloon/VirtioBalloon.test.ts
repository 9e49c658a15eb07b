import { afterAll, describe, expect, it } from 'vitest';
import {
  BALLOON_DEFLATEQ, BALLOON_INFLATEQ, BALLOON_STATSQ, BalloonError, VIRTIO_BALLOON_F_DEFLATE_ON_OOM, VIRTIO_BALLOON_F_STATS_VQ,
  VIRTIO_BALLOON_S_AVAIL, VIRTIO_BALLOON_S_MEMFREE, VIRTIO_BALLOON_S_MEMTOT, VIRTIO_BALLOON_S_SWAP_IN, VirtioBalloon,
} from '../../../../src/devices/virtio/balloon';
import { VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_VERSION_1, VIRTIO_ID_BALLOON } from '../../../../src/devices/virtio/constants';
import { TimeoutError } from '../../../../src/errors';
import { residentBytes } from '../../../memory/residentPages';
import { activate, allocRam } from '../driver';

const MiB = 1 << 20;
const PAGE = 4096;
const mem = allocRam(8 * MiB);
afterAll(() => mem.free());

/** Pages the tests give away live from 4 MiB up; buffers for PFN arrays and stats at 0x40000+. */
const POOL = 4 * MiB;
const BUF = 0x40000;

function pfnArray(addr: number, pfns: number[]): void {
  const b = new Uint8Array(4 * pfns.length);
  const v = new DataView(b.buffer);
  pfns.forEach((p, i) => v.setUint32(4 * i, p >>> 0, true));
  mem.write(addr, b);
}

function statsBuffer(addr: number, entries: [number, bigint][]): number {
  const b = new Uint8Array(10 * entries.length);
  const v = new DataView(b.buffer);
  entries.forEach(([tag, val], i) => {
    v.setUint16(10 * i, tag, true);
    v.setBigUint64(10 * i + 2, val, true);
  });
  mem.write(addr, b);
  return b.length;
}

describe('VirtioBalloon', () => {
  it('is balloon device 5 with inflateq, deflateq and statsq, offering STATS_VQ and DEFLATE_ON_OOM', () => {
    const b = new VirtioBalloon();
    expect([b.deviceKind, b.deviceType, b.queueMaxSizes]).toEqual(['virtio-balloon', VIRTIO_ID_BALLOON, [256, 256, 4]]);
    const ring = VIRTIO_F_VERSION_1 | VIRTIO_F_INDIRECT_DESC | VIRTIO_F_EVENT_IDX;
    expect(b.deviceFeatures()).toBe(ring | VIRTIO_BALLOON_F_STATS_VQ | VIRTIO_BALLOON_F_DEFLATE_ON_OOM);
    expect(new VirtioBalloon({ stats: false, deflateOnOom: false }).deviceFeatures()).toBe(ring);
    expect([...b.configSpace()]).toEqual([0, 0, 0, 0, 0, 0, 0, 0]);
  });

  it('sets num_pages from a byte target (rounded down to pages) and tells a running driver with a config change', () => {
    const b = new VirtioBalloon();
    b.setTarget(64 * MiB + 4095); // before any driver: only the config space changes
    expect(b.target).toBe(64 * MiB);
    expect(new DataView(b.configSpace().buffer).getUint32(0, true)).toBe(16384);
    const { interrupt } = activate(b, mem);
    expect(interrupt.configChanges).toBe(0);
    b.setTarget(32 * MiB);
    expect(interrupt.configChanges).toBe(1);
    b.setTarget(32 * MiB + 100); // same page count: nothing to tell
    expect(interrupt.configChanges).toBe(1);
    expect(() => b.setTarget(-1)).toThrow(RangeError);
    expect(() => b.setTarget(1.5)).toThrow(RangeError);
    expect(() => b.setTarget(2 ** 46)).toThrow(RangeError);
  });

  it('takes `actual` from the driver (any access width), ignores writes to num_pages, and reports changes', async () => {
    const b = new VirtioBalloon();
    const seen: { actual: number; target: number }[] = [];
    b.onChange((c) => seen.push(c));
    b.setTarget(8 * PAGE);
    const reached = b.waitForActual(8 * PAGE, 1000);
    b.writeConfig(0, Uint8Array.of(0xff, 0xff, 0xff, 0xff)); // num_pages is the device's
    expect(b.target).toBe(8 * PAGE);
    b.writeConfig(4, Uint8Array.of(3, 0, 0, 0));
    b.writeConfig(5, Uint8Array.of(0)); // byte write, no change
    b.writeConfig(4, Uint8Array.of(8, 0));
    await reached;
    expect(b.actual).toBe(8 * PAGE);
    expect(seen).toEqual([{ actual: 0, target: 8 * PAGE }, { actual: 3 * PAGE, target: 8 * PAGE }, { actual: 8 * PAGE, target: 8 * PAGE }]);
    expect([...b.configSpace()]).toEqual([8, 0, 0, 0, 8, 0, 0, 0]);
    await expect(b.waitForActual(PAGE, 20)).rejects.toThrow(TimeoutError);
  });

  it('releases inflated pages to the host, skips PFNs outside RAM, and returns every buffer with length 0', () => {
    const b = new VirtioBalloon();
    const { drivers, interrupt } = activate(b, mem);
    mem.write(POOL, new Uint8Array(2 * MiB).fill(0x5a));
    expect(residentBytes(mem, POOL, 2 * MiB)).toBe(2 * MiB);
    const first = POOL / PAGE;
    // 256 consecutive pages (1 MiB), then scattered ones, a PFN past RAM and one far beyond
    const pfns = [...Array.from({ length: 256 }, (_, i) => first + i), first + 300, first + 302, mem.size / PAGE, 0xffff_ffff];
    pfnArray(BUF, pfns);
    // the array split over two buffers, one PFN straddling them
    const h = drivers[BALLOON_INFLATEQ]!.addChain([{ addr: BUF, len: 4 * 200 + 2 }, { addr: BUF + 4 * 200 + 2, len: 4 * pfns.length - 4 * 200 - 2 }]);
    b.processQueue(BALLOON_INFLATEQ);
    expect(drivers[BALLOON_INFLATEQ]!.takeUsed()).toEqual([{ id: h, len: 0 }]);
    expect(interrupt.used).toEqual([BALLOON_INFLATEQ]);
    expect(b.counters).toMatchObject({ inflatedPages: 258, ignoredPfns: 2, malformed: 0 });
    expect(residentBytes(mem, POOL, 2 * MiB)).toBe(2 * MiB - 258 * PAGE);
    expect(residentBytes(mem, POOL, MiB)).toBe(0);
    expect(mem.readU8(POOL + 301 * PAGE)).toBe(0x5a); // between two given pages: kept
    expect(mem.readU8(POOL + 300 * PAGE + 7)).toBe(0); // given: refills with zeros on touch
  });

  it('accepts deflates and counts the pages the guest took back beyond the target (DEFLATE_ON_OOM)', () => {
    const b = new VirtioBalloon();
    const { drivers } = activate(b, mem);
    const first = POOL / PAGE;
    b.setTarget(8 * PAGE);
    pfnArray(BUF, Array.from({ length: 8 }, (_, i) => first + i));
    drivers[BALLOON_INFLATEQ]!.addChain([{ addr: BUF, len: 32 }]);
    b.processQueue(BALLOON_INFLATEQ);
    b.setTarget(4 * PAGE);
    pfnArray(BUF + 64, [first, first + 1, first + 2, first + 3, first + 4, first + 5, 0xfff_ffff]);
    const h = drivers[BALLOON_DEFLATEQ]!.addChain([{ addr: BUF + 64, len: 28 }]);
    b.processQueue(BALLOON_DEFLATEQ);
    expect(drivers[BALLOON_DEFLATEQ]!.takeUsed()).toEqual([{ id: h, len: 0 }]);
    // 4 pages were asked back, the guest took 6 (an out-of-RAM PFN is ignored)
    expect(b.counters).toMatchObject({ inflatedPages: 8, deflatedPages: 6, unrequestedDeflatePages: 2, ignoredPfns: 1 });
  });

  it('holds the stats buffer, gives it back on request and decodes the refilled one (§5.5.6.3)', async () => {
    const b = new VirtioBalloon();
    const { drivers, interrupt } = activate(b, mem);
    const d = drivers[BALLOON_STATSQ]!;
    await expect(b.requestStats(20)).rejects.toThrow(TimeoutError); // no buffer yet
    // driver start-up: the first buffer, with the stats of that moment
    let len = statsBuffer(BUF, [[VIRTIO_BALLOON_S_MEMTOT, 256n * BigInt(MiB)], [VIRTIO_BALLOON_S_MEMFREE, 200n * BigInt(MiB)]]);
    const h1 = d.addChain([{ addr: BUF, len }]);
    b.processQueue(BALLOON_STATSQ);
    expect(d.takeUsed()).toEqual([]); // held
    expect(b.latestStats).toEqual({ totalMemory: 256 * MiB, freeMemory: 200 * MiB });
    b.writeConfig(4, Uint8Array.of(16, 0, 0, 0));
    const pending = b.requestStats(1000);
    expect(d.takeUsed()).toEqual([{ id: h1, len: 0 }]);
    expect(interrupt.used).toContain(BALLOON_STATSQ);
    const again = b.requestStats(1000); // joins the same request
    len = statsBuffer(BUF, [[VIRTIO_BALLOON_S_MEMTOT, 256n * BigInt(MiB)], [VIRTIO_BALLOON_S_MEMFREE, 100n * BigInt(MiB)], [VIRTIO_BALLOON_S_AVAIL, 99n], [VIRTIO_BALLOON_S_SWAP_IN, 0n], [0x7777, 5n]]);
    d.addChain([{ addr: BUF, len }]);
    b.processQueue(BALLOON_STATSQ);
    const want = { actual: 16 * PAGE, target: 0, stats: { totalMemory: 256 * MiB, freeMemory: 100 * MiB, availableMemory: 99, swapIn: 0 } };
    await expect(pending).resolves.toEqual(want);
    await expect(again).resolves.toEqual(want);
    expect(b.counters.statsBuffers).toBe(2);
  });

  it('returns the older of two stats buffers, and rejects waiters on reset', async () => {
    const b = new VirtioBalloon();
    const { drivers } = activate(b, mem);
    const d = drivers[BALLOON_STATSQ]!;
    const a1 = d.addChain([{ addr: BUF, len: statsBuffer(BUF, [[VIRTIO_BALLOON_S_MEMFREE, 1n]]) }]);
    d.addChain([{ addr: BUF + 64, len: statsBuffer(BUF + 64, [[VIRTIO_BALLOON_S_MEMFREE, 2n]]) }]);
    b.processQueue(BALLOON_STATSQ);
    expect(d.takeUsed()).toEqual([{ id: a1, len: 0 }]);
    expect(b.latestStats).toEqual({ freeMemory: 2 });
    const waiting = b.requestStats(1000);
    b.reset();
    await expect(waiting).rejects.toThrow(BalloonError);
    await expect(b.requestStats()).rejects.toThrow(/no driver runs the balloon/);
  });

  it('refuses stats when the driver did not negotiate the stats queue', async () => {
    const b = new VirtioBalloon();
    activate(b, mem, { features: VIRTIO_F_VERSION_1 });
    await expect(b.requestStats()).rejects.toThrow(/VIRTIO_BALLOON_F_STATS_VQ/);
  });

  it('answers a malformed chain with length 0 and a reset empties the balloon', () => {
    const b = new VirtioBalloon();
    const { drivers } = activate(b, mem);
    const bad = drivers[BALLOON_INFLATEQ]!.addChain([{ addr: mem.size - 8, len: 64 }]); // past RAM
    b.processQueue(BALLOON_INFLATEQ);
    expect(drivers[BALLOON_INFLATEQ]!.takeUsed()).toEqual([{ id: bad, len: 0 }]);
    expect(b.counters.malformed).toBe(1);
    b.writeConfig(4, Uint8Array.of(5, 0, 0, 0));
    b.reset();
    expect(b.actual).toBe(0);
    b.processQueue(BALLOON_INFLATEQ); // after reset: nothing touched
  });
});
