/**
 * End-to-end: the virtio-fs allowlist socket (crosvm's wire protocol) changing what a running
 * guest sees. kvmkit's VirtioFs with `allowlistSocket` (empty allowlist) serves the probe's
 * `fsbench` LOOKUP+GETATTR loop on `hello.txt` (test/guest/probe/README.md, "virtio-fs"); while it
 * runs, the test sends AddPaths ["/hello.txt"] and later RemovePaths ["/hello.txt"] over the
 * socket with the typed client.
 *
 * The guest's side: its `fsbench case=lookup-getattr` line counts every LOOKUP answered ENOENT
 * (`errors=`) and the first answer it got (`first_err=ENOENT`: invisible first). The host's side:
 * the FUSE server's counters sampled around each command (the socket and the FUSE requests are
 * served on the same event loop, so a command takes effect between two requests): before AddPaths
 * every request failed, between the two commands none did, after RemovePaths they failed again.
 * The guest's error count must equal the host's, and both phases of failures and the successful
 * one must be non-empty.
 */
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VirtioFs, VirtualMachine } from '../../src';
import { AllowlistClient } from '../../src/devices/virtio/fs/AllowlistSocket';
import { parseProbeLines } from '../guest/probe/parse';
import { buildProbe } from '../guest/probe/qemu';
import { prepareShare } from '../guest/probe/virtiofsd';
import { ensureProbe, HAS_KVM, warnNoKvm } from '../helpers/env';

warnNoKvm();
let probe = '';
let dir = '';

/** LOOKUP+GETATTR iterations the probe runs: three phases of {@link PHASE} need ~1,000 (measured here: ~3,800 a second on a loaded host, so ~8 s). */
const LOOKUPS = 30_000;
/** Requests each phase must see before the test moves on. */
const PHASE = 300;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Wait (yielding to the event loop, which serves the guest) until `cond()` holds. */
async function until(cond: () => boolean, what: string, timeoutMs = 60_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(1);
  }
}

describe.skipIf(!HAS_KVM)('virtio-fs allowlist socket while the probe runs', () => {
  beforeAll(() => {
    ensureProbe();
    dir = mkdtempSync(join(tmpdir(), 'kvmkit-fs-allowlist-e2e-'));
    probe = buildProbe(dir);
  });
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('hello.txt: invisible, visible after AddPaths, invisible after RemovePaths, as the guest counts and the server answered', async () => {
    const share = prepareShare(mkdtempSync(join(dir, 'share-')));
    const sock = join(dir, 'allowlist.sock');
    const fs = new VirtioFs({ sharedDir: share.sharedDir, tag: 'myfs', allowlistSocket: sock });
    const vm = new VirtualMachine({
      kernel: probe, mem: 256, devices: [fs],
      params: `probe.quiet probe.ring=3 probe.test=fsbench probe.fs.bench=lookup probe.fs.lookups=${LOOKUPS}`,
    });
    const errors: Error[] = [];
    vm.on('error', (e) => errors.push(e));
    expect(statSync(sock).mode & 0o777).toBe(0o600); // listening from construction, before the VM starts
    const client = AllowlistClient.connect(sock);
    await vm.start();
    const timer = setTimeout(() => void vm.stop(), 170_000);
    let exited = false;
    void vm.exited.then(() => (exited = true));
    try {
      // phase 1: the allowlist is empty, every LOOKUP fails (replies: INIT's + one per failed LOOKUP)
      await until(() => fs.stats.errors >= PHASE || exited, 'failed lookups before AddPaths');
      expect(exited, vm.serial.output).toBe(false);
      const beforeAdd = { ...fs.stats };
      expect(beforeAdd.replies - beforeAdd.errors).toBe(1); // nothing but INIT succeeded
      await client.addPaths(['/hello.txt']);
      const tAdd = performance.now();
      const atAdd = { ...fs.stats };
      // phase 2: lookups succeed, no new errors
      await until(() => fs.stats.replies - atAdd.replies >= 2 * PHASE || exited, 'successful lookups after AddPaths');
      const beforeRemove = { ...fs.stats };
      expect(beforeRemove.errors).toBe(atAdd.errors); // not one failure while the path was allowed
      await client.removePaths(['/hello.txt']);
      const tRemove = performance.now();
      const atRemove = { ...fs.stats };
      // phase 3: failing again
      await until(() => fs.stats.errors - atRemove.errors >= PHASE || exited, 'failed lookups after RemovePaths');
      expect(exited, 'the probe ended before the third phase: raise LOOKUPS').toBe(false);
      const info = await vm.exited;
      const tEnd = performance.now();
      expect(info.reason, vm.serial.output).toBe('poweroff');
      expect(errors).toEqual([]);
      expect(existsSync(sock)).toBe(false); // the socket went with the VM

      const records = parseProbeLines(vm.serial.output);
      const bench = records.filter((r) => r.key === 'fsbench');
      expect(bench, vm.serial.output).toHaveLength(1);
      const line = bench[0]!;
      expect(line).toMatchObject({ case: 'lookup-getattr', ops: String(LOOKUPS), first_err: 'ENOENT' });
      const guestErrors = Number(line.errors);
      // the guest counted exactly the ENOENTs the server sent: the failures of phases 1 and 3
      expect(guestErrors).toBe(fs.stats.errors);
      expect(fs.stats.replies - 2 - fs.stats.errors).toBe(2 * (LOOKUPS - guestErrors)); // INIT, DESTROY, and each success: LOOKUP + GETATTR
      const phase1 = atAdd.errors;
      const phase3 = guestErrors - atAdd.errors;
      const visible = LOOKUPS - guestErrors;
      expect(phase1).toBeGreaterThanOrEqual(PHASE);
      expect(phase3).toBeGreaterThanOrEqual(PHASE);
      expect(visible).toBeGreaterThanOrEqual(PHASE);
      console.log(
        `allowlist e2e: ${phase1} LOOKUPs answered ENOENT before AddPaths, ${visible} LOOKUP+GETATTR pairs answered between AddPaths and RemovePaths ` +
          `(${((tRemove - tAdd) / 1000).toFixed(2)} s), ${phase3} ENOENT after RemovePaths (${((tEnd - tRemove) / 1000).toFixed(2)} s to the end); ` +
          `the guest's line: ops=${line.ops} errors=${line.errors} first_err=${line.first_err} ops_s=${line.ops_s}`,
      );
    } finally {
      clearTimeout(timer);
      client.close();
      if (!exited) await vm.stop();
    }
  }, 200_000);
});
