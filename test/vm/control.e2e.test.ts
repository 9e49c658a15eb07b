/**
 * End-to-end: the control socket of a running VM (the `socket` option), driven through
 * ControlClient and raw lines, with the probe as the guest. The probe's blkresize driver (one
 * round) shows that `disk_resize` through the socket reaches the guest; `probe.cmd=spin` then keeps
 * it running for the other commands.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, lstatSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, VirtualMachine } from '../../src';
import { ControlClient, ControlConnectionError, ControlRequestError } from '../../src/control/ControlClient';
import { VirtioBlock } from '../../src/devices/virtio/block/VirtioBlock';
import { parseProbeLines } from '../guest/probe/parse';
import { HAS_KVM, warnNoKvm } from '../helpers/env';
import { probeWithTest } from '../control/probeImage';

warnNoKvm();
const MiB = 1024 * 1024;
let dir = '';
let kernel = '';

/** One raw request line and its response line. */
function raw(path: string, line: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(path);
    let buf = '';
    s.setEncoding('utf8');
    s.on('data', (c: string) => {
      buf += c;
      const nl = buf.indexOf('\n');
      if (nl >= 0) {
        s.destroy();
        resolve(buf.slice(0, nl));
      }
    });
    s.on('error', reject);
    s.write(`${line}\n`);
  });
}

describe.skipIf(!HAS_KVM)('control socket on a running VM (probe guest)', () => {
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'kvmkit-ctl-e2e-'));
    kernel = probeWithTest('blkresize');
  });
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('status, suspend, resume, disk_resize, malformed requests and stop; the 0600 socket goes away with the VM', async () => {
    const sockDir = mkdtempSync(join(dir, 'run-'));
    const disk = join(dir, 'disk.img');
    writeFileSync(disk, Buffer.alloc(8 * MiB));
    const vm = new VirtualMachine({
      kernel, cpus: 2, mem: 128, socket: sockDir, // a directory: kvmkit-<pid>.sock inside, as crosvm
      devices: [new VirtioBlock({ path: disk })],
      params: 'probe.quiet probe.ring=3 probe.test=blkresize probe.blkresize.rounds=1 probe.cmd=spin',
    });
    const resized: unknown[] = [];
    vm.on('diskResized', (e) => resized.push(e));
    const t0 = performance.now();
    await vm.start();
    const path = join(sockDir, `kvmkit-${process.pid}.sock`);
    expect(vm.controlSocket).toBe(path);
    const st = lstatSync(path);
    expect(st.isSocket()).toBe(true);
    expect(st.mode & 0o777).toBe(0o600);
    expect(readdirSync(sockDir)).toEqual([`kvmkit-${process.pid}.sock`]); // nothing else left beside it

    const c = await ControlClient.connect(path);
    try {
      await vm.serial.waitFor(/PROBE blkresize-ready round=0 /, { timeoutMs: 20_000 });
      const status = await c.status();
      expect(status).toMatchObject({
        state: 'running', cpus: 2, mem: 128,
        devices: [{ kind: 'virtio-blk', pci: '00:01.0', disk: 0, path: disk, bytes: 8 * MiB, capacity: 16384, blockSize: 512, readOnly: false }],
      });
      expect(status.uptimeMs).toBeGreaterThan(0);
      expect(status.uptimeMs).toBeLessThanOrEqual(performance.now() - t0);

      // disk_resize through the socket reaches the guest's driver
      await c.diskResize(0, 12 * MiB);
      expect(statSync(disk).size).toBe(12 * MiB);
      await vm.serial.waitFor('PROBE spinning', { timeoutMs: 20_000 });
      const rec = parseProbeLines(vm.serial.output);
      expect(rec.find((r) => r.key === 'blkresize-config' && r.round === '1')).toMatchObject({ capacity: String((12 * MiB) / 512) });
      expect(rec.find((r) => r.key === 'blkresize-done')).toMatchObject({ changes: '1' });
      expect(resized).toEqual([{ index: 0, bytes: 12 * MiB }]);
      expect((await c.status()).devices[0]).toMatchObject({ bytes: 12 * MiB, capacity: (12 * MiB) / 512 });
      await expect(c.diskResize(0, 12 * MiB + 1)).rejects.toThrow(new ControlRequestError(`bytes must be a positive multiple of disk 0's block size (512) below 2^53, got ${12 * MiB + 1}`));
      await expect(c.diskResize(1, MiB)).rejects.toThrow(/^index must be an integer from 0 to 0/);

      // suspend parks the vCPUs (registers() needs a paused VM), resume continues
      await c.suspend();
      expect(vm.state).toBe('paused');
      expect(vm.registers()).toHaveLength(2);
      expect((await c.status()).state).toBe('paused');
      await expect(c.suspend()).rejects.toThrow(/needs a running VM; this one is paused/);
      await c.resume();
      expect(vm.state).toBe('running');
      await expect(c.resume()).rejects.toThrow(/needs a paused VM; this one is running/);

      // this VM has no balloon device: an error answer, and the VM runs on
      await expect(c.balloon(16 * MiB)).rejects.toThrow(/VirtioBalloon|no balloon device/);

      // malformed requests, on their own connections and on this one: errors, never a stop
      for (const line of ['{', 'stop', '{"command":"STOP"}', '{"command":"stop","force":1}', '{"command":"disk_resize","index":0,"bytes":"1G"}', '\u0000\u00ff']) {
        const r = JSON.parse(await raw(path, line)) as { ok: boolean; error?: string };
        expect(r.ok, line).toBe(false);
        expect(r.error, line).toMatch(/\S/);
      }
      expect(await c.sendLine('[]')).toMatchObject({ ok: false });
      expect(vm.state).toBe('running');
      expect((await c.status()).state).toBe('running');

      // stop answers once the VM ended; the socket file is gone by then
      const stopT0 = performance.now();
      expect(await c.stop()).toEqual({ reason: 'stopped' });
      console.log(`control stop → answered in ${(performance.now() - stopT0).toFixed(1)} ms`);
      expect(vm.state).toBe('exited');
      expect(existsSync(path)).toBe(false);
      await expect(ControlClient.connect(path, { timeoutMs: 500 })).rejects.toThrow(ControlConnectionError);
    } finally {
      c.close();
      if (vm.state !== 'exited') await vm.stop();
    }
  });

  it('VirtualMachine.fromConfig: a crosvm-style config object with a socket; balloon requests reach its balloon', async () => {
    const path = join(dir, 'cfg.sock');
    const img = join(dir, 'cfg.img');
    writeFileSync(img, Buffer.alloc(MiB));
    const vm = await VirtualMachine.fromConfig({ kernel, mem: 64, socket: path, block: [{ path: img, ro: true }], params: 'probe.quiet probe.ring=3 probe.cmd=spin' });
    expect(vm.options.devices.map((d) => d.deviceKind)).toEqual(['virtio-blk', 'virtio-balloon']); // a balloon by default, as crosvm
    await vm.start();
    const c = await ControlClient.connect(path);
    try {
      expect((await c.status()).devices).toMatchObject([{ kind: 'virtio-blk', path: img, readOnly: true }, { kind: 'virtio-balloon', pci: '00:02.0' }]);
      expect(await c.balloon(8 * MiB)).toEqual({ bytes: 8 * MiB }); // the target is set; the probe has no balloon driver running
      await expect(c.balloon(65 * MiB)).rejects.toThrow(/^bytes must be an integer from 0 to the guest's RAM/);
      await expect(c.diskResize(0, 2 * MiB)).rejects.toThrow(/^index names read-only disk/);
      expect(await c.stop()).toEqual({ reason: 'stopped' });
    } finally {
      c.close();
      if (vm.state !== 'exited') await vm.stop();
    }
    expect(existsSync(path)).toBe(false);
  });

  it('a stop that arrives while the VM is still starting waits for the boot, then stops it', async () => {
    const path = join(dir, 'early.sock');
    const vm = new VirtualMachine({ kernel, socket: path, params: 'probe.quiet probe.ring=3 probe.cmd=spin' });
    const starting = vm.start();
    expect(vm.state).toBe('starting');
    const stopping = vm.stop(); // what a control-socket `stop` during the boot does
    await starting;
    expect(await stopping).toEqual({ reason: 'stopped' });
    expect(vm.state).toBe('exited');
    expect(existsSync(path)).toBe(false);
    // and a stop during a start that fails says so
    const bad = new VirtualMachine({ kernel: join(dir, 'missing'), socket: path });
    const failing = bad.start();
    await expect(bad.stop()).rejects.toThrow(/the VM failed to start/);
    await expect(failing).rejects.toThrow(/cannot be read/);
  });

  it('the socket is removed when the guest powers off, refused while live, and a stale one is replaced', async () => {
    const path = join(dir, 'vm.sock');
    // a live VM holds the path: a second VM on it does not start, and the first is untouched
    const a = new VirtualMachine({ kernel, socket: path, params: 'probe.quiet probe.ring=3 probe.cmd=spin' });
    await a.start();
    const b = new VirtualMachine({ kernel, socket: path, params: 'probe.quiet probe.ring=3' });
    const e = await b.start().then(() => undefined, (x: unknown) => x);
    expect(e).toBeInstanceOf(ConfigError);
    expect((e as Error).message).toMatch(/^socket is in use: a running server answers there/);
    expect(b.state).toBe('exited');
    expect(JSON.parse(await raw(path, '{"command":"status"}'))).toMatchObject({ ok: true, result: { state: 'running' } });
    await a.stop();
    expect(existsSync(path)).toBe(false);

    // a guest that powers off by itself: the socket goes with it
    const p = new VirtualMachine({ kernel, socket: path, params: 'probe.quiet probe.ring=3' });
    await p.start();
    expect(existsSync(path)).toBe(true);
    expect((await p.exited).reason).toBe('poweroff');
    expect(existsSync(path)).toBe(false);

    // a stale socket file (its VMM was killed) is replaced
    execFileSync('python3', ['-c', 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])', path]);
    expect(lstatSync(path).isSocket()).toBe(true);
    const s = new VirtualMachine({ kernel, socket: path, params: 'probe.quiet probe.ring=3 probe.cmd=spin' });
    await s.start();
    expect(JSON.parse(await raw(path, '{"command":"stop"}'))).toEqual({ ok: true, result: { reason: 'stopped' } });
    expect(s.state).toBe('exited');
    expect(existsSync(path)).toBe(false);

    // a start that fails (missing kernel) leaves no socket behind
    const f = new VirtualMachine({ kernel: join(dir, 'no-such-kernel'), socket: path });
    await expect(f.start()).rejects.toThrow(/cannot be read/);
    expect(existsSync(path)).toBe(false);
  });
});
