/** The `kvmkit` command line, spawned as a child process like a user would run it. */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { VirtualMachine } from '../../src';
import { ensureProbe, HAS_KVM, ROOT } from '../helpers/env';

const CLI = join(ROOT, 'dist', 'cli.js');
const kvmkit = (args: string[], input?: string) =>
  spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 30_000, input });
let probe = '';
beforeAll(() => {
  probe = ensureProbe();
});

describe.skipIf(!HAS_KVM)('kvmkit run', () => {
  it('boots the probe with the console on stdout and exits 0 on guest poweroff', () => {
    const r = kvmkit(['run', '-c', '2', '-m', '128', '-p', 'probe.cmd=poweroff', '-p', 'cli=yes', probe]);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('PROBE cpus_online=2');
    expect(r.stdout).toMatch(/PROBE cmdline=".* probe\.cmd=poweroff cli=yes"/);
    expect(r.stderr).toContain('guest ended: poweroff');
  });

  it('exits 32 after a guest reboot', () => {
    const r = kvmkit(['run', '-p', 'probe.cmd=reboot', probe]);
    expect(r.stderr).toContain('guest ended: reboot');
    expect(r.status).toBe(32);
  });

  it('types stdin into the guest console', async () => {
    // Type only once the probe listens: input sent before the guest initialises its UART is dropped
    // with the receive FIFO, as on real hardware.
    const child = spawn(process.execPath, [CLI, 'run', '-p', 'probe.cmd=echo', probe], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    const code = await new Promise<number | null>((resolve) => {
      const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
      child.stdout.on('data', (d: Buffer) => {
        const before = out;
        out += d.toString();
        if (!before.includes('PROBE echo_ready') && out.includes('PROBE echo_ready')) child.stdin.write('typed line\nquit\n');
      });
      child.on('exit', (c) => {
        clearTimeout(timer);
        resolve(c);
      });
    });
    expect(out).toContain('PROBE echo="typed line"');
    expect(code).toBe(0);
  });

  it('fails with a message naming the option for bad values', () => {
    const r = kvmkit(['run', '-c', '0', probe]);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain('cpus must be an integer from 1 to 254, got 0');
    const r2 = kvmkit(['run', '--mem', 'lots', probe]);
    expect(r2.status).not.toBe(0);
    expect(r2.stderr).toContain('mem must be an integer number of MiB from 16 to 1048576, got "lots"');
  });
});

describe('kvmkit dump-fdt', () => {
  it('writes the aarch64 device tree for a configuration, readable by dtc', () => {
    const out = join(mkdtempSync(join(tmpdir(), 'kvmkit-fdt-')), 'vm.dtb');
    const r = kvmkit(['dump-fdt', '-c', '3', '-m', '1024', '-p', 'console=ttyS0 root=/dev/vda', out]);
    expect(r.status).toBe(0);
    const dts = spawnSync('dtc', ['-I', 'dtb', '-O', 'dts', out], { encoding: 'utf8' });
    expect(dts.status).toBe(0);
    expect(dts.stderr).toBe('');
    expect(dts.stdout).toContain('bootargs = "console=ttyS0 root=/dev/vda";');
    expect(dts.stdout).toContain('reg = <0x00 0x80000000 0x00 0x40000000>;');
    expect(dts.stdout.match(/cpu@[0-9a-f]+ \{/g)).toHaveLength(3);
  });
});

describe('arch option', () => {
  it('an aarch64 guest on this x86_64 host is a clear error at start(), not before', async () => {
    const vm = new VirtualMachine({ kernel: probe, arch: 'aarch64' });
    await expect(vm.start()).rejects.toThrow(/^arch "aarch64" cannot run on this x86_64 host/);
    expect(vm.state).toBe('exited');
  });
});
