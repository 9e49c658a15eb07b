/**
 * The probe's virtio-fs driver and FUSE client (virtio_fs.c) against QEMU's vhost-user-fs-pci
 * with Debian's virtiofsd (QEMU 7.2's C virtiofsd, /usr/lib/qemu/virtiofsd from
 * qemu-system-common), under TCG. What virtiofsd answers here is the reference kvmkit's VirtioFs
 * must match wherever the FUSE protocol fixes the answer: the table is fsExpectations.ts, shared
 * with test/vm/virtio-fs.e2e.test.ts.
 */
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkCachePolicy, checkFsBad, checkFsRun, FS_BAD, QEMU_CACHE, VIRTIOFSD_CACHE, type FsCachePolicy } from './fsExpectations';
import type { ProbeRecord } from './parse';
import { buildProbe, qemuAvailable, runProbeUnderQemu, type QemuProbeResult } from './qemu';
import { findVirtiofsd, prepareShare, qemuVirtiofsArgs, startVirtiofsd, type FsShare } from './virtiofsd';

const haveQemu = qemuAvailable();
const virtiofsd = findVirtiofsd();
const isRoot = process.getuid?.() === 0;
const skipReason = !haveQemu
  ? 'qemu-system-x86_64 not found (install qemu-system-x86 or set KVMKIT_QEMU)'
  : !virtiofsd
    ? 'virtiofsd not found (Debian: qemu-system-common ships /usr/lib/qemu/virtiofsd; or package virtiofsd; or set KVMKIT_VIRTIOFSD)'
    : !isRoot
      ? 'virtiofsd sandboxes itself in new namespaces, which needs root'
      : '';
if (skipReason) console.warn(`\n*** SKIPPING the probe virtio-fs QEMU tests: ${skipReason} ***\n`);

const MEM_MIB = 256;
let dir = '';
let kernel = '';
let runs = 0;

interface FsRun {
  r: QemuProbeResult;
  share: FsShare;
  daemonLog: string;
}

async function runWithVirtiofsd(opts: { machine: 'pc' | 'microvm'; append: string; tag?: string; cache?: FsCachePolicy }): Promise<FsRun> {
  const n = runs++;
  const share = prepareShare(mkdtempSync(join(dir, `share${n}-`)));
  const socketPath = join(dir, `vfs${n}.sock`); // outside the base: the test lists it
  const daemon = await startVirtiofsd({ binary: virtiofsd!, socketPath, sharedDir: share.sharedDir, cache: VIRTIOFSD_CACHE[opts.cache ?? 'auto'], options: ['xattr'] });
  try {
    const r = await runProbeUnderQemu({
      machine: opts.machine,
      machineOptions: opts.machine === 'microvm' ? 'pcie=on' : undefined,
      accel: 'tcg',
      cpus: 1,
      memMiB: MEM_MIB,
      kernel,
      timeoutMs: 120_000,
      append: `probe.quiet probe.ring=3 ${opts.append}`,
      extraArgs: qemuVirtiofsArgs(socketPath, opts.tag ?? 'myfs', MEM_MIB),
    });
    return { r, share, daemonLog: daemon.log() };
  } finally {
    await daemon.stop();
  }
}

function one(r: QemuProbeResult, key: string): ProbeRecord {
  const recs = r.probe.filter((p) => p.key === key);
  expect(recs, `exactly one "PROBE ${key}" line in:\n${r.output}`).toHaveLength(1);
  return recs[0]!;
}

function checkBoot(run: FsRun, machine: 'pc' | 'microvm', tag: string): void {
  const { r } = run;
  const ctx = `${r.output}\n--- virtiofsd ---\n${run.daemonLog}`;
  expect(r.timedOut, ctx).toBe(false);
  expect(r.exitCode, ctx).toBe(0);
  expect(r.probe.find((p) => p.key === 'exception' || p.key === 'error'), ctx).toBeUndefined();
  expect(one(r, 'virtio-fs-count')['virtio-fs-count']).toBe('1');
  // virtio 1.2 §5.11: device id 26 -> PCI 0x1040 + 26
  const pci = one(r, 'virtio-fs-pci');
  expect(pci).toMatchObject({ id: '1af4:105a', cfg: machine === 'pc' ? 'cf8' : 'ecam' });
  expect(BigInt(pci.device_cfg!)).toBeGreaterThan(0n);
  const dev = one(r, 'virtio-fs');
  expect(dev, ctx).toMatchObject({ init: 'ok', status: '0xf', tag, tag_len: String(tag.length), num_request_queues: '1', num_queues: '2' });
  const negotiated = BigInt(dev.negotiated!);
  expect(negotiated & (1n << 32n)).toBe(1n << 32n); // VERSION_1
  expect(negotiated & 1n).toBe(0n); // VIRTIO_FS_F_NOTIFICATION is never accepted
  // QEMU 7.2 + virtiofsd: FUSE 7.36, 1 MiB writes, 256 pages
  expect(one(r, 'fs-init')).toMatchObject({ err: '0', major: '7', minor: '36', max_write: '1048576', max_pages: '256' });
}

describe.skipIf(skipReason !== '')('probe virtio-fs client against QEMU vhost-user-fs-pci + virtiofsd (TCG)', () => {
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'kvmkit-probe-virtiofs-'));
    kernel = buildProbe(dir);
  });
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('pc, indirect + event_idx, MSI-X off: every operation, error and confinement case answers as the table says', async () => {
    const run = await runWithVirtiofsd({ machine: 'pc', append: 'probe.test=fs' });
    checkBoot(run, 'pc', 'myfs');
    checkFsRun(run.r.probe, run.share, 'qemu', run.r.output);
    // virtiofsd gives READDIRPLUS entries a nodeid except "." and ".."
    expect(run.r.probe.find((p) => p.case === 'readdirplus')!.with_nodeid).toBe('4');
    // virtiofsd serves a queue from one thread: in submission order
    expect(run.r.probe.find((p) => p.case === 'concurrent-reads')!.in_order).toBe('1');
    checkCachePolicy(run.r.probe, 'auto', QEMU_CACHE.auto);
  }, 150_000);

  it.each(['never', 'always'] as const)('cache=%s: the same answers, and the timeouts and open flags of that policy', async (cache) => {
    const run = await runWithVirtiofsd({ machine: 'pc', append: 'probe.test=fs', cache });
    checkBoot(run, 'pc', 'myfs');
    checkFsRun(run.r.probe, run.share, 'qemu', run.r.output);
    checkCachePolicy(run.r.probe, cache, QEMU_CACHE[cache]);
  }, 150_000);

  it('microvm (ECAM, BARs from the probe), plain descriptors, MSI-X masked, a 36-byte tag: the same answers', async () => {
    const tag = 'a-tag-of-exactly-thirty-six-bytes-36';
    expect(tag).toHaveLength(36);
    const run = await runWithVirtiofsd({
      machine: 'microvm',
      tag,
      append: 'probe.test=fs probe.fs.indirect=0 probe.fs.eventidx=0 probe.virtio.msix=2',
    });
    checkBoot(run, 'microvm', tag);
    const dev = one(run.r, 'virtio-fs');
    expect(BigInt(dev.negotiated!) & ((1n << 28n) | (1n << 29n))).toBe(0n);
    checkFsRun(run.r.probe, run.share, 'qemu', run.r.output);
  }, 150_000);

  it('fsbench: LOOKUP+GETATTR, small files, sequential write and read report their figures; the host sees the files', async () => {
    const run = await runWithVirtiofsd({
      machine: 'pc',
      append: 'probe.test=fsbench probe.fs.lookups=500 probe.fs.files=300 probe.fs.size=8',
    });
    checkBoot(run, 'pc', 'myfs');
    const bench = run.r.probe.filter((p) => p.key === 'fsbench');
    expect(bench.map((b) => b.case)).toEqual(['lookup-getattr', 'create-write-release', 'seqwrite', 'rewrite', 'seqread']);
    for (const b of bench) {
      expect(b, JSON.stringify(b)).toMatchObject({ errors: '0', first_err: '0' });
      expect(Number(b.us)).toBeGreaterThan(0);
      expect(Number(b.tsc_cycles)).toBeGreaterThan(0);
      expect(b.mb_s).toMatch(/^\d+\.\d$/);
    }
    expect(bench[0]!.ops).toBe('500');
    expect(bench[1]).toMatchObject({ ops: '300', bytes: String(300 * 4096) });
    expect(bench[2]).toMatchObject({ ops: '8', bytes: String(8 << 20), bs: '1048576', fsync_err: '0' });
    expect(bench[3]).toMatchObject({ ops: '8', bytes: String(8 << 20), bs: '1048576' });
    const files = readdirSync(join(run.share.sharedDir, 'bench-files'));
    expect(files).toHaveLength(300);
    for (const f of files) expect(statSync(join(run.share.sharedDir, 'bench-files', f)).size).toBe(4096);
    expect(statSync(join(run.share.sharedDir, 'bench.bin')).size).toBe(8 << 20);
    expect(one(run.r, 'fs-done')).toMatchObject({ timeouts: '0', bad_replies: '0' });
  }, 150_000);

  // one boot per case: virtiofsd stops serving after some of them, even across a device reset
  it.each(Object.keys(FS_BAD))('malformed request %s: virtiofsd\'s answer, and whether it serves on', async (c) => {
    const run = await runWithVirtiofsd({ machine: 'pc', append: `probe.test=fs probe.fs.bad=${c} probe.fs.timeout_ms=1000` });
    expect(run.r.exitCode, run.r.output).toBe(0);
    checkFsBad(run.r.probe, 'qemu', [c], run.r.output);
  }, 150_000);

  it('fs then fsbench in one boot: after DESTROY and a device reset, a new INIT serves again', async () => {
    const run = await runWithVirtiofsd({
      machine: 'pc',
      append: 'probe.test=fs,fsbench probe.fs.bench=lookup probe.fs.lookups=50',
    });
    const inits = run.r.probe.filter((p) => p.key === 'fs-init');
    expect(inits.map((i) => i.err), run.r.output).toEqual(['0', '0']);
    const b = run.r.probe.find((p) => p.key === 'fsbench')!;
    expect(b).toMatchObject({ case: 'lookup-getattr', ops: '50', errors: '0' });
    // the fs test's lines are those before the second device set-up
    const second = run.r.probe.findIndex((p, i) => p.key === 'virtio-fs-count' && i > 0 && run.r.probe.slice(0, i).some((q) => q.key === 'virtio-fs-count'));
    expect(second).toBeGreaterThan(0);
    checkFsRun(run.r.probe.slice(0, second), run.share, 'qemu', run.r.output);
  }, 150_000);
});
