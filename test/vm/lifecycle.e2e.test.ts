/**
 * Lifecycle robustness on the probe: repeated start/stop without leaks, bad input refused before
 * anything starts, and a process that forgets stop() still exits.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { BootImageError, ConfigError, KvmkitError, VirtualMachine, type VirtualMachineOptions } from '../../src';
import { ensureProbe, HAS_KVM, processResources, ROOT, warnNoKvm } from '../helpers/env';

warnNoKvm();
let probe = '';
const tmp = mkdtempSync(join(tmpdir(), 'kvmkit-life-'));

describe.skipIf(!HAS_KVM)('VM lifecycle on KVM', () => {
  beforeAll(() => {
    probe = ensureProbe();
  });

  it('20 start/stop cycles leave open fds and threads where they started', async () => {
    // One warm-up cycle loads koffi and libc bindings and fills the idle vCPU-thread pool, which stay.
    const warm = new VirtualMachine({ kernel: probe, cpus: 2, params: 'probe.cmd=spin' });
    await warm.start();
    await warm.stop();
    await new Promise((r) => setTimeout(r, 50));
    const before = processResources();
    for (let i = 0; i < 20; i++) {
      const vm = new VirtualMachine({ kernel: probe, cpus: 2, params: 'probe.cmd=spin' });
      await vm.start();
      await vm.serial.waitFor('PROBE spinning', { timeoutMs: 10_000 });
      const info = await vm.stop();
      expect(info.reason).toBe('stopped');
    }
    await new Promise((r) => setTimeout(r, 200));
    const after = processResources();
    expect(after.fds).toBe(before.fds);
    expect(after.threads).toBe(before.threads);
  });

  const notBz = join(tmp, 'not-a-bzimage');
  const bad: [string, () => Partial<VirtualMachineOptions>, new (...a: never[]) => KvmkitError, RegExp][] = [
    ['a missing kernel', () => ({ kernel: join(tmp, 'nope') }), BootImageError, /kernel file .*nope cannot be read: ENOENT/],
    ['a file that is not a bzImage', () => ({ kernel: notBz }), BootImageError, /not a bzImage/],
    ['cpus: 0', () => ({ kernel: probe, cpus: 0 }), ConfigError, /^cpus must be an integer from 1 to 254, got 0$/],
    ['mem: 1', () => ({ kernel: probe, mem: 1 }), ConfigError, /^mem must be an integer number of MiB from 16/],
    ['a missing initrd', () => ({ kernel: probe, initrd: join(tmp, 'no-initrd') }), BootImageError, /initrd file .*no-initrd cannot be read: ENOENT/],
  ];
  it.each(bad)('%s is a typed error with a clear message, and nothing is started', async (_name, opts, type, msg) => {
    writeFileSync(notBz, Buffer.alloc(8192, 0x41));
    const before = processResources();
    let err: unknown;
    try {
      const vm = new VirtualMachine({ kernel: probe, ...opts() } as VirtualMachineOptions);
      await vm.start();
      await vm.stop();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(type);
    expect((err as Error).message).toMatch(msg);
    const after = processResources();
    expect(after.fds).toBe(before.fds);
    expect(after.threads).toBe(before.threads);
  });

  it('a process that exits without stopping its VM still exits', () => {
    const script = `
      import { VirtualMachine } from ${JSON.stringify(join(ROOT, 'dist', 'index.js'))};
      const vm = new VirtualMachine({ kernel: ${JSON.stringify(probe)}, cpus: 2, params: 'probe.cmd=spin' });
      await vm.start();
      await vm.serial.waitFor('PROBE spinning');
      console.log('spinning');
      process.exit(7);
    `;
    const t0 = Date.now();
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 20_000 });
    expect(r.stdout).toContain('spinning');
    expect(r.signal).toBeNull();
    expect(r.status).toBe(7);
    expect(Date.now() - t0).toBeLessThan(15_000);
  });
});
