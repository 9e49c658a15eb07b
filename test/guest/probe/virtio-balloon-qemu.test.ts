/**
 * The probe's balloon driver (virtio_balloon.c) against QEMU's virtio-balloon-pci
 * (disable-legacy=on, deflate-on-oom=on) under TCG, driven over QMP: `balloon` (QEMU's argument is
 * the guest's logical memory size, so a 64 MiB balloon on 256 MiB is `balloon 192 MiB`),
 * `query-balloon`, and `qom-get guest-stats` with `guest-stats-polling-interval` set, which
 * makes QEMU return the stats buffer periodically. The same scenario runs on kvmkit's
 * VirtioBalloon (when /dev/kvm exists) and the probe must report the same results on both: the
 * same page counts, every deflated page zero-filled (both VMMs discard what the guest gave), and
 * stats the host decodes to the numbers the probe printed.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VirtualMachine } from '../../../src';
import { VirtioBalloon, type BalloonStats } from '../../../src/devices/virtio/balloon';
import { HAS_KVM } from '../../helpers/env';
import { Qmp } from '../../linux/support/qmp';
import { parseProbeLines, type ProbeRecord } from './parse';
import { buildProbe, qemuAvailable, qemuProbeArgs, QEMU_BINARY } from './qemu';

const haveQemu = qemuAvailable();
if (!haveQemu) {
  console.warn('\n*** SKIPPING the probe balloon QEMU test: qemu-system-x86_64 not found (install qemu-system-x86 or set KVMKIT_QEMU) ***\n');
}

const MiB = 1 << 20;
const RAM = 256 * MiB;
const BALLOON = 64 * MiB;
const PAGES = BALLOON / 4096;
const APPEND = 'probe.quiet probe.ring=3 probe.test=balloon probe.balloon.mib=72 probe.balloon.idle_ms=120000';

let dir = '';
let kernel = '';

/** One VMM running the probe: its output, and the host's two balloon controls. */
interface Guest {
  output(): string;
  /** Set the balloon to `bytes`. */
  balloon(bytes: number): Promise<void>;
  /** The balloon size the VMM says the driver reported, bytes. */
  actual(): Promise<number>;
  /** The guest's stats as the VMM decoded them, once `ready(stats)` holds. */
  stats(ready: (s: BalloonStats['stats']) => boolean): Promise<BalloonStats['stats']>;
  close(): Promise<void>;
}

/** The first complete PROBE line with this key and fields, waiting up to `timeoutMs`. */
async function line(g: Guest, key: string, fields: Record<string, string> = {}, timeoutMs = 60_000): Promise<ProbeRecord> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const out = g.output();
    const found = parseProbeLines(out.slice(0, out.lastIndexOf('\n') + 1)).find((r) => r.key === key && Object.entries(fields).every(([k, v]) => r[k] === v));
    if (found) return found;
    if (Date.now() > deadline) throw new Error(`no "PROBE ${key}" line with ${JSON.stringify(fields)} in:\n${out.slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** QEMU's guest-stats names (hw/virtio/virtio-balloon.c balloon_stat_names) for our fields; (u64)-1 = not reported. */
const QEMU_STAT_NAMES: Record<string, keyof BalloonStats['stats']> = {
  'stat-swap-in': 'swapIn', 'stat-swap-out': 'swapOut', 'stat-major-faults': 'majorFaults', 'stat-minor-faults': 'minorFaults',
  'stat-free-memory': 'freeMemory', 'stat-total-memory': 'totalMemory', 'stat-available-memory': 'availableMemory',
  'stat-disk-caches': 'diskCaches', 'stat-htlb-pgalloc': 'hugetlbAllocations', 'stat-htlb-pgfail': 'hugetlbFailures',
};

async function startQemu(): Promise<Guest> {
  const sock = join(dir, `qmp-${process.pid}-${Date.now()}.sock`);
  const argv = qemuProbeArgs({
    machine: 'pc', accel: 'tcg', cpus: 1, memMiB: RAM / MiB, kernel, append: APPEND, timeoutMs: 0,
    extraArgs: ['-device', 'virtio-balloon-pci,id=balloon0,disable-legacy=on,deflate-on-oom=on', '-qmp', `unix:${sock},server=on,wait=off`],
  });
  const child: ChildProcess = spawn(QEMU_BINARY, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString('latin1')));
  child.stderr!.on('data', (c: Buffer) => (out += c.toString('latin1')));
  const exited = new Promise<void>((r) => child.on('close', () => r()));
  const qmp = await Qmp.connect(sock);
  // QEMU returns the stats buffer every second from now on (the driver refills it each time)
  await qmp.execute('qom-set', { path: '/machine/peripheral/balloon0', property: 'guest-stats-polling-interval', value: 1 });
  return {
    output: () => out,
    balloon: async (bytes) => void (await qmp.execute('balloon', { value: RAM - bytes })),
    actual: async () => RAM - ((await qmp.execute('query-balloon')) as { actual: number }).actual,
    stats: async (ready) => {
      const deadline = Date.now() + 30_000;
      for (;;) {
        const r = (await qmp.execute('qom-get', { path: '/machine/peripheral/balloon0', property: 'guest-stats' })) as { stats: Record<string, number> };
        const s: BalloonStats['stats'] = {};
        for (const [name, v] of Object.entries(r.stats)) if (v < 2 ** 63 && QEMU_STAT_NAMES[name]) s[QEMU_STAT_NAMES[name]!] = v;
        if (ready(s)) return s;
        if (Date.now() > deadline) throw new Error(`QEMU's guest-stats never matched: ${JSON.stringify(r)}`);
        await new Promise((res) => setTimeout(res, 200));
      }
    },
    close: async () => {
      await qmp.execute('quit').catch(() => undefined); // QEMU may close the socket before answering
      qmp.close();
      await exited;
    },
  };
}

async function startKvmkit(): Promise<Guest> {
  const device = new VirtioBalloon();
  const vm = new VirtualMachine({ kernel, mem: RAM / MiB, devices: [device], params: APPEND });
  await vm.start();
  return {
    output: () => vm.serial.output,
    balloon: (bytes) => vm.balloon(bytes),
    actual: async () => device.actual,
    stats: async (ready) => {
      const deadline = Date.now() + 30_000;
      for (;;) {
        const s = (await vm.balloonStats()).stats;
        if (ready(s)) return s;
        if (Date.now() > deadline) throw new Error(`kvmkit's balloon stats never matched: ${JSON.stringify(s)}`);
      }
    },
    close: async () => void (await vm.stop()),
  };
}

/** What a run shows; the two VMMs must give equal summaries (absolute memory sizes differ: the e820 maps do). */
interface Summary {
  init: Record<string, string | undefined>;
  inflate: Record<string, string | undefined>;
  deflate: Record<string, string | undefined>;
  /** The stats the host decoded, by name. */
  statNames: string[];
  /** Free memory the guest reported before inflating minus after, and after deflating minus before. */
  freeDrop: number;
  freeBack: number;
  /** `actual` as the VMM read it, inflated and deflated. */
  actualInflated: number;
  actualDeflated: number;
}

const pick = (r: ProbeRecord, keys: string[]): Record<string, string | undefined> => Object.fromEntries(keys.map((k) => [k, r[k]]));

/** Inflate to 64 MiB, read stats, deflate to 0, read stats; checks that hold on any conforming VMM. */
async function scenario(g: Guest): Promise<Summary> {
  const init = await line(g, 'balloon');
  const ready = await line(g, 'balloon-ready');
  const poolFree = Number((await line(g, 'balloon-stats', { request: '0' })).memfree);
  const memtot = Number(ready.memtot);
  // the host decodes exactly what the probe sent (probe: no swap, no faults, free = what it did not give)
  const expected = (free: number): BalloonStats['stats'] => ({
    swapIn: 0, swapOut: 0, majorFaults: 0, minorFaults: 0, freeMemory: free, totalMemory: memtot, availableMemory: free, diskCaches: 0,
  });
  const statsReady = await g.stats((s) => s.freeMemory === poolFree);
  expect(statsReady).toEqual(expected(poolFree));

  await g.balloon(BALLOON);
  const inflate = await line(g, 'balloon-inflate');
  expect(inflate).toMatchObject({ num_pages: String(PAGES), actual: String(PAGES), pages: String(PAGES), limited: '0', why: 'host' });
  const actualInflated = await g.actual();
  const statsInflated = await g.stats((s) => s.freeMemory === poolFree - BALLOON);
  expect(statsInflated).toEqual(expected(poolFree - BALLOON));

  await g.balloon(0);
  const deflate = await line(g, 'balloon-deflate');
  // every page the probe got back reads as zeros: the VMM had discarded it
  expect(deflate).toMatchObject({ num_pages: '0', actual: '0', pages: String(PAGES), zeroed: String(PAGES), kept_pattern: '0', other: '0' });
  const actualDeflated = await g.actual();
  const statsDeflated = await g.stats((s) => s.freeMemory === poolFree);
  return {
    init: pick(init, ['init', 'stats_vq', 'deflate_on_oom', 'must_tell_host_offered', 'num_queues', 'status']),
    inflate: pick(inflate, ['num_pages', 'actual', 'pages', 'pool_pages', 'limited', 'buffers']),
    deflate: pick(deflate, ['num_pages', 'actual', 'pages', 'zeroed', 'kept_pattern', 'other', 'touched', 'buffers']),
    statNames: Object.keys(statsReady).sort(),
    freeDrop: statsReady.freeMemory! - statsInflated.freeMemory!,
    freeBack: statsDeflated.freeMemory! - statsReady.freeMemory!,
    actualInflated,
    actualDeflated,
  };
}

describe.skipIf(!haveQemu)('probe balloon driver vs QEMU virtio-balloon-pci (TCG, QMP)', () => {
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'kvmkit-balloon-qemu-'));
    kernel = buildProbe(dir);
  });
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  let qemu: Summary | undefined;

  it('QEMU: inflate 64 MiB over QMP, guest-stats carry the probe\'s numbers, deflate returns zero-filled pages', async () => {
    const g = await startQemu();
    try {
      qemu = await scenario(g);
      // QEMU offers PAGE_POISON (bit 4) as well; the probe asks only for STATS_VQ, DEFLATE_ON_OOM and EVENT_IDX
      expect(qemu.init).toMatchObject({ init: 'ok', stats_vq: '1', deflate_on_oom: '1', must_tell_host_offered: '0', status: '0xf' });
      const init = await line(g, 'balloon');
      expect(BigInt(init.negotiated!)).toBe((1n << 32n) | (1n << 29n) | 0b110n); // VERSION_1, EVENT_IDX, DEFLATE_ON_OOM, STATS_VQ
      console.log(`QEMU virtio-balloon-pci offers ${init.offered}`);
      expect(qemu.actualInflated).toBe(BALLOON); // query-balloon: QEMU read `actual` as the probe wrote it
      expect(qemu.actualDeflated).toBe(0);
    } finally {
      await g.close();
    }
  }, 180_000);

  it.skipIf(!HAS_KVM)('kvmkit: the same scenario gives the same results as QEMU', async () => {
    const g = await startKvmkit();
    let kvmkit: Summary;
    try {
      kvmkit = await scenario(g);
    } finally {
      await g.close();
    }
    expect(qemu, 'the QEMU run must pass first').toBeDefined();
    // QEMU has 3 queues too (statsq exists without the feature as well), and offers more feature bits
    expect(kvmkit).toEqual(qemu);
  }, 120_000);
});
