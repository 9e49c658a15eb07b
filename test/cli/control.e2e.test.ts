/**
 * crosvm's control commands end to end: a spawned `kvmkit run -s DIR` with the probe guest, driven
 * by spawned `kvmkit status|suspend|resume|disk resize|balloon|balloon_stats|stop DIR/kvmkit-<pid>.sock`.
 * Needs the control socket server (src/control/); skipped with a reason until it exists.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync, mkdtempSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureProbe, HAS_KVM, ROOT, warnNoKvm } from '../helpers/env';
import { CLI, kvmkitAsync as kvmkit } from './runCli';

const HAS_CONTROL = existsSync(join(ROOT, 'src', 'control', 'ControlServer.ts'));
if (!HAS_CONTROL) console.warn('\n*** SKIPPING the control-socket CLI tests: src/control/ (the control socket server) does not exist yet ***\n');

describe.skipIf(!HAS_KVM || !HAS_CONTROL)('kvmkit control subcommands against a running guest', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kvmkit-ctl-e2e-'));
  const sockDir = join(dir, 'run');
  const disk = join(dir, 'disk.img');
  let vm: ChildProcessWithoutNullStreams;
  let sock = '';
  let out = '';
  let err = '';
  let exited: Promise<number | null>;

  beforeAll(async () => {
    warnNoKvm();
    const probe = ensureProbe();
    mkdirSync(sockDir);
    writeFileSync(disk, Buffer.alloc(1 << 20));
    // probe.cmd=echo keeps the guest running (echoing its console) until it reads "quit"
    vm = spawn(process.execPath, [CLI, 'run', '-s', sockDir, '-b', `${disk},id=CTL`, '-p', 'probe.ring=3', '-p', 'probe.cmd=echo', probe], { stdio: ['pipe', 'pipe', 'pipe'] });
    vm.stdout.on('data', (d: Buffer) => (out += d.toString()));
    vm.stderr.on('data', (d: Buffer) => (err += d.toString()));
    exited = new Promise((resolve) => vm.on('exit', resolve));
    sock = join(sockDir, `kvmkit-${vm.pid}.sock`); // a directory gets kvmkit-<pid>.sock, as crosvm names crosvm-<pid>.sock
    const deadline = Date.now() + 30_000;
    while (!(out.includes('PROBE echo_ready') && existsSync(sock))) {
      if (Date.now() > deadline || vm.exitCode !== null) throw new Error(`the VM did not come up: ${err}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  });

  afterAll(() => {
    if (vm.exitCode === null) vm.kill('SIGKILL');
  });

  it('the socket is created with mode 0600 inside the directory given to -s, and kvmkit run says where', () => {
    expect(err).toContain(`kvmkit: control socket ${sock}\n`);
    const st = statSync(sock);
    expect(st.isSocket()).toBe(true);
    expect(st.mode & 0o777).toBe(0o600);
  });

  it('status prints the VM as JSON', async () => {
    const r = await kvmkit(['status', sock]);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const s = JSON.parse(r.stdout) as { state: string; cpus: number; mem: number; devices: { kind: string; disk?: number; bytes?: number }[] };
    expect(s).toMatchObject({ state: 'running', cpus: 1, mem: 256 });
    expect(s.devices.map((d) => d.kind)).toEqual(['virtio-blk', 'virtio-balloon']);
    expect(s.devices[0]).toMatchObject({ disk: 0, bytes: 1 << 20 });
  });

  it('suspend pauses the vCPUs and resume runs them again (the guest still answers)', async () => {
    const suspend = await kvmkit(['suspend', sock]);
    expect([suspend.status, suspend.stdout, suspend.stderr]).toEqual([0, '', '']);
    expect(JSON.parse((await kvmkit(['status', sock])).stdout)).toMatchObject({ state: 'paused' });
    const resume = await kvmkit(['resume', sock]);
    expect([resume.status, resume.stderr]).toEqual([0, '']);
    expect(JSON.parse((await kvmkit(['status', sock])).stdout)).toMatchObject({ state: 'running' });
    const before = out.length;
    vm.stdin.write('after resume\n');
    const deadline = Date.now() + 10_000;
    while (!out.slice(before).includes('PROBE echo="after resume"') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(out.slice(before)).toContain('PROBE echo="after resume"');
  });

  it('disk resize grows the image and the device', async () => {
    const r = await kvmkit(['disk', 'resize', '0', '2M', sock]);
    expect([r.status, r.stderr]).toEqual([0, '']);
    expect(statSync(disk).size).toBe(2 << 20);
    const s = JSON.parse((await kvmkit(['status', sock])).stdout) as { devices: { bytes?: number; capacity?: number }[] };
    expect(s.devices[0]).toMatchObject({ bytes: 2 << 20, capacity: 4096 });
    const bad = await kvmkit(['disk', 'resize', '5', '2M', sock]);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/^kvmkit: disk_resize failed: .+\n$/);
  });

  it('balloon sets the target; balloon_stats answers or says why not (the probe runs no balloon driver here)', async () => {
    const b = await kvmkit(['balloon', '1M', sock]);
    expect([b.status, b.stderr]).toEqual([0, '']);
    const stats = await kvmkit(['balloon_stats', sock, '--timeout', '5']);
    if (stats.status === 0) expect(JSON.parse(stats.stdout)).toHaveProperty('actual');
    else expect(stats.stderr).toMatch(/^kvmkit: balloon_stats failed: .+\n$/);
  });

  it('stop ends the guest: kvmkit run exits 0 and removes its socket; later commands find no VM', async () => {
    const r = await kvmkit(['stop', sock]);
    expect([r.status, r.stdout, r.stderr]).toEqual([0, '', '']);
    expect(await exited).toBe(0);
    expect(err).toContain('guest ended: stopped');
    expect(existsSync(sock)).toBe(false);
    const after = await kvmkit(['status', sock]);
    expect(after.status).toBe(1);
    expect(after.stderr).toBe(`kvmkit: no kvmkit VM listens on ${sock} (ENOENT)\n`);
  });
});
