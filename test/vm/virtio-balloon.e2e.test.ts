/**
 * End-to-end: the memory balloon on kvmkit with the probe as the guest driver (probe.test=balloon,
 * test/guest/probe/virtio_balloon.c). The probe fills a pool of its RAM with a pattern (so it is
 * resident on the host), gives pages on the host's request and takes them back; the host side
 * checks that inflated guest RAM leaves the VMM's resident memory (mincore over the guest RAM
 * mapping, and the process's VmRSS), that balloonStats() carries exactly the numbers the probe
 * printed, and that deflated pages come back (zero-filled, as MADV_DONTNEED leaves them).
 */
import { describe, expect, it, beforeAll } from 'vitest';
import { ConfigError, VmStateError, VirtualMachine, type VirtualMachineOptions } from '../../src';
import { BalloonError, VirtioBalloon, VIRTIO_BALLOON_F_DEFLATE_ON_OOM } from '../../src/devices/virtio/balloon';
import { VirtioRng } from '../../src/devices/virtio/rng/VirtioRng';
import type { GuestMemory } from '../../src/memory/GuestMemory';
import { parseProbeLines, type ProbeRecord } from '../guest/probe/parse';
import { ensureProbe, HAS_KVM, warnNoKvm } from '../helpers/env';
import { processRss, residentBytes } from '../memory/residentPages';

warnNoKvm();
const MiB = 1 << 20;
const PAGE = 4096;
let probe = '';

/** A running probe with a balloon, and helpers to wait for its PROBE lines. */
async function boot(params: string, balloon = new VirtioBalloon(), extra: Partial<VirtualMachineOptions> = {}) {
  const vm = new VirtualMachine({ kernel: probe, devices: [balloon], params: `probe.ring=3 probe.quiet probe.test=balloon ${params}`, ...extra });
  const errors: Error[] = [];
  vm.on('error', (e) => errors.push(e));
  await vm.start();
  /** The first PROBE line with this key and these fields (waiting for it up to `timeoutMs`). */
  const line = async (key: string, fields: Record<string, string> = {}, timeoutMs = 20_000): Promise<ProbeRecord> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const out = vm.serial.output;
      const complete = out.slice(0, out.lastIndexOf('\n') + 1); // a line still being printed is not parsed
      const found = parseProbeLines(complete).find((r) => r.key === key && Object.entries(fields).every(([k, v]) => r[k] === v));
      if (found) return found;
      if (Date.now() > deadline || vm.state === 'exited') {
        throw new Error(`no "PROBE ${key}" line with ${JSON.stringify(fields)} in:\n${vm.serial.output.slice(-3000)}`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  return { vm, balloon, errors, line };
}

/** Guest RAM of a running VM (a private field: the test measures its residency with mincore). */
function guestRam(vm: VirtualMachine): GuestMemory {
  const mem = (vm as unknown as { memory?: GuestMemory }).memory;
  if (!mem) throw new Error('the VM has no guest memory (not running?)');
  return mem;
}

describe.skipIf(!HAS_KVM)('virtio-balloon on kvmkit (probe guest)', () => {
  beforeAll(() => {
    probe = ensureProbe();
  });

  it('balloon(64 MiB) releases 64 MiB of resident guest RAM to the host, stats show the guest\'s numbers, balloon(0) brings it back', async () => {
    const { vm, balloon, errors, line } = await boot('probe.balloon.idle_ms=60000');
    try {
      const ready = await line('balloon-ready');
      const init = await line('balloon');
      expect(init).toMatchObject({ init: 'ok', stats_vq: '1', deflate_on_oom: '1', must_tell_host_offered: '0', num_queues: '3' });
      const pool = Number(ready.pool);
      const poolBytes = Number(ready.pool_pages) * PAGE;
      expect(poolBytes).toBeGreaterThanOrEqual(64 * MiB);
      const mem = guestRam(vm);
      expect(residentBytes(mem, pool, poolBytes)).toBe(poolBytes); // the probe touched its whole pool
      const before = { ram: residentBytes(mem), rss: await processRss() };
      const stats0 = await vm.balloonStats();
      const s0 = await line('balloon-stats', { request: '1' });

      await vm.balloon(64 * MiB + 4095); // rounded down to 4 KiB pages
      expect(balloon.target).toBe(64 * MiB);
      await balloon.waitForActual(64 * MiB);
      const inflate = await line('balloon-inflate');
      expect(inflate).toMatchObject({ num_pages: '16384', actual: '16384', pages: '16384', limited: '0', why: 'host' });
      const inflated = { ram: residentBytes(mem), rss: await processRss() };
      expect(residentBytes(mem, pool, 64 * MiB)).toBe(0); // exactly the pages given are gone
      expect(before.ram - inflated.ram).toBeGreaterThanOrEqual(63 * MiB);
      expect(before.ram - inflated.ram).toBeLessThanOrEqual(64 * MiB);
      expect(before.rss - inflated.rss).toBeGreaterThan(48 * MiB); // the whole process, with its noise

      const stats1 = await vm.balloonStats();
      const s1 = await line('balloon-stats', { request: '2' });
      expect(stats1).toEqual({
        actual: 64 * MiB,
        target: 64 * MiB,
        stats: {
          swapIn: 0, swapOut: 0, majorFaults: 0, minorFaults: 0, diskCaches: 0,
          freeMemory: Number(s1.memfree), totalMemory: Number(s1.memtot), availableMemory: Number(s1.avail),
        },
      });
      expect(stats0.stats.freeMemory).toBe(Number(s0.memfree));
      expect(stats0.stats.freeMemory! - stats1.stats.freeMemory!).toBe(64 * MiB); // the guest's free memory dropped
      expect(stats1.stats.totalMemory).toBe(Number(ready.memtot)); // DEFLATE_ON_OOM: MemTotal stays, as in Linux

      await vm.balloon(0);
      await balloon.waitForActual(0);
      const deflate = await line('balloon-deflate');
      // every page given came back zero-filled: the host had really released it
      expect(deflate).toMatchObject({ num_pages: '0', actual: '0', pages: '16384', zeroed: '16384', kept_pattern: '0', other: '0', why: 'host' });
      const deflated = { ram: residentBytes(mem), rss: await processRss() };
      expect(residentBytes(mem, pool, poolBytes)).toBe(poolBytes); // the probe refilled them
      expect(deflated.ram - inflated.ram).toBeGreaterThanOrEqual(63 * MiB);
      expect(deflated.rss - inflated.rss).toBeGreaterThan(48 * MiB);
      const stats2 = await vm.balloonStats();
      expect(stats2).toMatchObject({ actual: 0, target: 0, stats: { freeMemory: stats0.stats.freeMemory } });

      expect(balloon.counters).toMatchObject({ inflatedPages: 16384, deflatedPages: 16384, unrequestedDeflatePages: 0, ignoredPfns: 0, malformed: 0 });
      expect(errors).toEqual([]);
      const f = (n: number): string => `${(n / MiB).toFixed(1)} MiB`;
      console.log(`balloon 64 MiB: guest RAM resident ${f(before.ram)} -> ${f(inflated.ram)} -> ${f(deflated.ram)}; ` +
        `process VmRSS ${f(before.rss)} -> ${f(inflated.rss)} -> ${f(deflated.rss)}; probe inflate ${inflate.ms} ms, deflate+touch ${deflate.ms} ms`);
    } finally {
      await vm.stop();
    }
  });

  it('works with MSI-X (config change on a masked vector: the probe still sees ISR bit 1) and a target set before the driver starts', async () => {
    const balloon = new VirtioBalloon();
    balloon.setTarget(8 * MiB); // read by the driver at start-up, no notification needed
    const { vm, line } = await boot('probe.virtio.msix=2 probe.balloon.mib=16', balloon);
    try {
      expect(await line('balloon-ready')).toMatchObject({ num_pages: '2048', msix_mode: '2' });
      await balloon.waitForActual(8 * MiB);
      await vm.balloon(4 * MiB);
      await balloon.waitForActual(4 * MiB);
      expect(await line('balloon-deflate')).toMatchObject({ pages: '1024', zeroed: '1024' });
      await vm.balloon(32 * MiB); // more than the probe's pool: it gives what it has
      await balloon.waitForActual(16 * MiB);
      expect(await line('balloon-inflate', { num_pages: '8192' })).toMatchObject({ actual: '4096', limited: '1' });
    } finally {
      await vm.stop();
    }
  });

  it('accepts a deflate the host did not ask for when DEFLATE_ON_OOM is negotiated, and the probe does not do it otherwise', async () => {
    const a = await boot('probe.balloon.oom_pages=256');
    try {
      await a.line('balloon-ready');
      await a.vm.balloon(16 * MiB);
      expect(await a.line('balloon-deflate', { why: 'oom' })).toMatchObject({ pages: '256', actual: String(4096 - 256), zeroed: '256' });
      await a.balloon.waitForActual(15 * MiB);
      expect(a.balloon.counters).toMatchObject({ inflatedPages: 4096, deflatedPages: 256, unrequestedDeflatePages: 256 });
      expect((a.balloon.negotiated ?? 0n) & VIRTIO_BALLOON_F_DEFLATE_ON_OOM).toBe(VIRTIO_BALLOON_F_DEFLATE_ON_OOM);
    } finally {
      await a.vm.stop();
    }
    const b = await boot('probe.balloon.oom_pages=256', new VirtioBalloon({ deflateOnOom: false }));
    try {
      expect(await b.line('balloon')).toMatchObject({ init: 'ok', deflate_on_oom: '0' });
      await b.line('balloon-ready');
      await b.vm.balloon(16 * MiB);
      await b.line('balloon-oom-deflate', { result: 'not-negotiated' });
      expect(b.balloon.actual).toBe(16 * MiB);
      expect(b.balloon.counters).toMatchObject({ inflatedPages: 4096, deflatedPages: 0, unrequestedDeflatePages: 0 });
      // without DEFLATE_ON_OOM the probe, like Linux, takes the balloon out of MemTotal
      const s = await b.vm.balloonStats();
      expect(s.stats.totalMemory).toBe(Number((await b.line('balloon-ready')).memtot) - 16 * MiB);
    } finally {
      await b.vm.stop();
    }
  });

  it('refuses what cannot be done with typed errors', async () => {
    const balloon = new VirtioBalloon();
    const idle = new VirtualMachine({ kernel: probe, devices: [balloon] });
    await expect(idle.balloon(MiB)).rejects.toThrow(VmStateError);
    const noBalloon = new VirtualMachine({ kernel: probe, devices: [new VirtioRng()], params: 'probe.ring=3 probe.cmd=spin' });
    await noBalloon.start();
    try {
      await expect(noBalloon.balloon(MiB)).rejects.toThrow(ConfigError);
      await expect(noBalloon.balloonStats()).rejects.toThrow(/no VirtioBalloon/);
    } finally {
      await noBalloon.stop();
    }
    const { vm, line } = await boot('probe.balloon.stats=0', balloon);
    try {
      expect(await line('balloon')).toMatchObject({ init: 'ok', stats_vq: '0' });
      await expect(vm.balloon(256 * MiB + PAGE)).rejects.toThrow(/bytes must be an integer from 0 to the guest's RAM \(268435456\)/);
      await expect(vm.balloon(-1)).rejects.toThrow(ConfigError);
      await expect(vm.balloonStats()).rejects.toThrow(BalloonError); // the driver has no stats queue
      await vm.pause();
      await expect(vm.balloonStats()).rejects.toThrow(VmStateError);
      await vm.balloon(MiB); // allowed while paused: the guest acts on it when resumed
      vm.resume();
      await balloon.waitForActual(MiB);
    } finally {
      await vm.stop();
    }
    await expect(vm.balloonStats()).rejects.toThrow(VmStateError);
  });
});
