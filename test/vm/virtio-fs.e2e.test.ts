/**
 * End-to-end: kvmkit's VirtioFs (src/devices/virtio/fs, FUSE server in src/fuse) driven by the
 * probe's virtio-fs client (test/guest/probe/virtio_fs.c). The probe sends every operation, error
 * and confinement case one FUSE request at a time; kvmkit must answer as the shared table says
 * (test/guest/probe/fsExpectations.ts): exactly QEMU+virtiofsd's answer where the FUSE protocol
 * or the system call behind the operation fixes it, one of the listed answers where it does not.
 * Where kvmkit and virtiofsd differ within what is allowed, the test prints the list.
 */
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VirtioFs } from '../../src';
import { checkCachePolicy, checkFsBad, checkFsRun, FS_BAD, FS_CASES, type FsCachePolicy } from '../guest/probe/fsExpectations';
import type { ProbeRecord } from '../guest/probe/parse';
import { buildProbe } from '../guest/probe/qemu';
import { prepareShare, type FsShare } from '../guest/probe/virtiofsd';
import { ensureProbe, HAS_KVM, warnNoKvm } from '../helpers/env';
import { runProbe } from '../helpers/runProbe';

warnNoKvm();
let probe = '';
let dir = '';

async function runFs(share: FsShare, params: string, tag = 'myfs', cache?: FsCachePolicy, timeoutMs = 120_000) {
  const fs = new VirtioFs({ sharedDir: share.sharedDir, tag, cache });
  const r = await runProbe({ kernel: probe, mem: 256, devices: [fs], params: `probe.quiet probe.ring=3 ${params}` }, { timeoutMs });
  return { ...r, fs, stats: r.vm.deviceStats() };
}

const one = (records: ProbeRecord[], key: string): ProbeRecord => {
  const r = records.filter((x) => x.key === key);
  expect(r, `exactly one PROBE ${key} line in ${JSON.stringify(records.map((x) => x.key))}`).toHaveLength(1);
  return r[0]!;
};

function checkDevice(records: ProbeRecord[], tag: string, output: string): void {
  expect(records.find((r) => r.key === 'exception' || r.key === 'error'), output).toBeUndefined();
  expect(one(records, 'virtio-fs-count')['virtio-fs-count']).toBe('1');
  expect(one(records, 'virtio-fs-pci')).toMatchObject({ dev: '00:01.0', id: '1af4:105a', cfg: 'cf8' });
  const dev = one(records, 'virtio-fs');
  expect(dev, output).toMatchObject({ init: 'ok', status: '0xf', tag, tag_len: String(tag.length), num_request_queues: '1', num_queues: '2' });
  expect(BigInt(dev.negotiated!) & (1n << 32n)).toBe(1n << 32n); // VERSION_1
  expect(BigInt(dev.offered!) & 1n).toBe(0n); // no VIRTIO_FS_F_NOTIFICATION
  expect(one(records, 'fs-init')).toMatchObject({ err: '0', major: '7' });
}

describe.skipIf(!HAS_KVM)('virtio-fs on kvmkit (probe guest)', () => {
  beforeAll(() => {
    ensureProbe(); // and the vCPU worker bundle
    dir = mkdtempSync(join(tmpdir(), 'kvmkit-virtio-fs-e2e-'));
    probe = buildProbe(dir); // this checkout's virtio_fs.c, whatever test/fixtures holds
  });
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('probe.test=fs: every operation, error code and confinement case answers as the shared table allows', async () => {
    const share = prepareShare(mkdtempSync(join(dir, 'fs-')));
    const { info, records, output, errors, stats, fs } = await runFs(share, 'probe.test=fs');
    expect(info.reason, output).toBe('poweroff');
    expect(errors).toEqual([]);
    // every notification of both queues went through the ioeventfds to the device's queue thread,
    // none through the main thread or as an MMIO exit
    const kicks = Number(one(records, 'fs-done').kicks);
    expect(stats).toHaveLength(1);
    expect(stats[0]).toMatchObject({ kind: 'virtio-fs', address: '00:01.0', mmioDoorbells: 0, doorbellWrites: 0 });
    expect(fs.stats.doorbellWrites).toBe(kicks);
    checkDevice(records, 'myfs', output);
    checkFsRun(records, share, 'kvmkit', output);
    // where kvmkit's answer differs from virtiofsd's (allowed by the table): say so
    const differ = records
      .filter((r) => r.key === 'fs' && r.case && FS_CASES[r.case] && r.err !== FS_CASES[r.case]!.qemu)
      .map((r) => `${r.case}: kvmkit ${r.err}, virtiofsd ${FS_CASES[r.case!]!.qemu}`);
    const conc = records.find((r) => r.case === 'concurrent-reads')!;
    console.log(`18 requests in flight completed in this order: ${conc.order}`);
    if (differ.length) console.log(`virtio-fs answers that differ from QEMU+virtiofsd (allowed):\n  ${differ.join('\n  ')}`);
    // crosvm's defaults: cache=auto, 5 s timeouts, no open flags
    checkCachePolicy(records, 'auto', { timeout: '5.000000000', open: '0x0', opendir: '0x0' });
  }, 150_000);

  // crosvm: never = DIRECT_IO (kvmkit: and 0 s timeouts by default, as virtiofsd's cache=none),
  // always = KEEP_CACHE on files, CACHE_DIR on directories
  it.each([
    { cache: 'never', exact: { timeout: '0.000000000', open: '0x1', opendir: '0x0' } },
    { cache: 'always', exact: { timeout: '5.000000000', open: '0x2', opendir: '0x8' } },
  ] as const)('cache=$cache: the same answers, and the timeouts and open flags of that policy', async ({ cache, exact }) => {
    const share = prepareShare(mkdtempSync(join(dir, 'fs-')));
    const { info, records, output } = await runFs(share, 'probe.test=fs', 'myfs', cache);
    expect(info.reason, output).toBe('poweroff');
    checkFsRun(records, share, 'kvmkit', output);
    checkCachePolicy(records, cache, exact);
  }, 150_000);

  it('plain descriptors without EVENT_IDX, MSI-X masked, a 36-byte tag: the same answers', async () => {
    const tag = 'a-tag-of-exactly-thirty-six-bytes-36';
    const share = prepareShare(mkdtempSync(join(dir, 'fs-')));
    const { info, records, output } = await runFs(share, 'probe.test=fs probe.fs.indirect=0 probe.fs.eventidx=0 probe.virtio.msix=2', tag);
    expect(info.reason, output).toBe('poweroff');
    checkDevice(records, tag, output);
    expect(BigInt(one(records, 'virtio-fs').negotiated!) & ((1n << 28n) | (1n << 29n))).toBe(0n);
    checkFsRun(records, share, 'kvmkit', output);
  }, 150_000);

  it('malformed requests (broken framing, short buffers, bogus FORGETs): each is answered, dropped or flagged, and the device serves on', async () => {
    const share = prepareShare(mkdtempSync(join(dir, 'bad-')));
    const { info, records, output, errors } = await runFs(share, 'probe.test=fs probe.fs.bad=all');
    expect(info.reason, output).toBe('poweroff');
    checkFsBad(records, 'kvmkit', Object.keys(FS_BAD), output);
    checkFsRun(records, share, 'kvmkit', output);
    // a malformed request is the guest's error: answered on the wire, not a VM error event
    expect(errors.map((e) => e.message)).toEqual([]);
  }, 150_000);

  // kvmkit only: virtiofsd has no allowlist (crosvm's feature)
  it('allowlist from the driver\'s side: only allowed paths and the directories leading to them are visible; widened and revoked while the guest runs', async () => {
    const share = prepareShare(mkdtempSync(join(dir, 'allow-')));
    const fs = new VirtioFs({ sharedDir: share.sharedDir, tag: 'myfs', allowedPaths: ['/dir/sub', '/dir/a.txt'] });
    // Round WIDEN's line is printed after its lookups, so rounds up to it show the old state; the
    // change is made as soon as the line is seen, while the guest waits round_ms before the next
    // round, so GRACE rounds after it may still show either; later ones must show the new state.
    const WIDEN = 3;
    const REVOKE = 12;
    const GRACE = 3;
    const params =
      'probe.quiet probe.ring=3 probe.test=fsvisible probe.fs.paths=hello.txt,dir,dir/a.txt,dir/b.txt,dir/sub,escape ' +
      'probe.fs.hold=dir/a.txt probe.fs.rounds=30 probe.fs.round_ms=30';
    const { info, records, output, errors } = await runProbe({ kernel: probe, mem: 256, devices: [fs], params }, {
      timeoutMs: 120_000,
      whileRunning: async (vm) => {
        await vm.serial.waitFor(new RegExp(`PROBE fs-visible round=${WIDEN} `), { timeoutMs: 60_000 });
        fs.allowPaths(['/hello.txt']);
        await vm.serial.waitFor(new RegExp(`PROBE fs-visible round=${REVOKE} `), { timeoutMs: 60_000 });
        fs.revokePaths(['/dir/a.txt', '/dir/sub']);
      },
    });
    expect(info.reason, output).toBe('poweroff');
    expect(errors).toEqual([]);
    const all = records.filter((r) => r.key === 'fs-visible');
    expect(all.find((r) => r.hold !== undefined)).toMatchObject({ hold: 'dir/a.txt', err: '0' });
    const rounds = all.filter((r) => r.round !== undefined);
    expect(rounds.map((r) => Number(r.round))).toEqual([...Array(30).keys()]);
    const initial = { 'hello.txt': 'ENOENT', dir: '0', 'dir/a.txt': '0', 'dir/b.txt': 'ENOENT', 'dir/sub': '0', escape: 'ENOENT', root: '.:4,..:4,dir:4', held_open: '0' };
    const widened = { ...initial, 'hello.txt': '0', root: '.:4,..:4,dir:4,hello.txt:8' };
    // revoked at once for new lookups and opens of the node the guest holds; the directory that
    // only led to them goes too
    const revoked = { ...widened, dir: 'ENOENT', 'dir/a.txt': 'ENOENT', 'dir/sub': 'ENOENT', root: '.:4,..:4,hello.txt:8', held_open: 'EACCES' };
    const pick = (r: ProbeRecord) => Object.fromEntries(Object.keys(initial).map((k) => [k, r[k]]));
    for (const r of rounds) {
      const n = Number(r.round);
      const states = n <= WIDEN ? [initial] : n <= WIDEN + GRACE ? [initial, widened] : n <= REVOKE ? [widened] : n <= REVOKE + GRACE ? [widened, revoked] : [revoked];
      expect(states, `round ${n}: ${JSON.stringify(pick(r))}`).toContainEqual(pick(r));
      // the handle opened before any change reads on: revocation does not take back open files
      expect(r, `round ${n}`).toMatchObject({ held_read: '0', held_read_bytes: '1' });
    }
    // each path changes once (no flapping back)
    for (const k of Object.keys(initial)) {
      const seq = rounds.map((r) => r[k]);
      const changes = seq.filter((v, i) => i > 0 && v !== seq[i - 1]).length;
      expect(changes, `${k}: ${seq.join(' ')}`).toBeLessThanOrEqual(k === 'root' ? 2 : 1);
    }
    const last = rounds[rounds.length - 1]!;
    console.log(`allowlist: held nodeid after revocation: getattr ${last.held_getattr}, open ${last.held_open}, read ${last.held_read}`);
  }, 150_000);

  it('fsbench (small sizes), then fs in the same boot after DESTROY and a device reset', async () => {
    const share = prepareShare(mkdtempSync(join(dir, 'bench-')));
    const { info, records, output } = await runFs(share, 'probe.test=fsbench,fs probe.fs.lookups=500 probe.fs.files=300 probe.fs.size=8');
    expect(info.reason, output).toBe('poweroff');
    const bench = records.filter((r) => r.key === 'fsbench');
    expect(bench.map((b) => b.case)).toEqual(['lookup-getattr', 'create-write-release', 'seqwrite', 'rewrite', 'seqread']);
    for (const b of bench) expect(b, JSON.stringify(b)).toMatchObject({ errors: '0', first_err: '0' });
    expect(bench[0]!.ops).toBe('500');
    expect(bench[1]).toMatchObject({ ops: '300', bytes: String(300 * 4096) });
    expect(bench[2]).toMatchObject({ ops: '8', bytes: String(8 << 20), fsync_err: '0' });
    expect(bench[3]).toMatchObject({ ops: '8', bytes: String(8 << 20) });
    const files = readdirSync(join(share.sharedDir, 'bench-files'));
    expect(files).toHaveLength(300);
    for (const f of files) expect(statSync(join(share.sharedDir, 'bench-files', f)).size).toBe(4096);
    expect(statSync(join(share.sharedDir, 'bench.bin')).size).toBe(8 << 20);
    // the second INIT, after the reset, serves the whole functional test
    expect(records.filter((r) => r.key === 'fs-init').map((r) => r.err)).toEqual(['0', '0']);
    const second = records.findIndex((r, i) => r.key === 'virtio-fs-count' && records.slice(0, i).some((q) => q.key === 'virtio-fs-count'));
    expect(second).toBeGreaterThan(0);
    // bench.bin and bench-files/ are in the share now: the fs checks only look at their own names
    checkFsRun(records.slice(second), share, 'kvmkit', output);
  }, 150_000);
});
