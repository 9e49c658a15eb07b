/**
 * One Linux check, two boots: on kvmkit (the device under test) and under QEMU TCG with QEMU's
 * devices (the reference, which runs everywhere and so proves the script and the assertions).
 * Each VMM boots once per file; every assertion is an `it` of both.
 *
 * ```ts
 * describeLinuxTwins({
 *   file: 'test/linux/x.e2e.test.ts', title: 'virtio-x under Linux', devices: ['blk'],
 *   prepare: (dir) => ({ devices: [{ kind: 'blk', path: `${dir}/d.img` }], script: 'val SIZE $(cat /sys/block/vda/size)' }),
 *   checks: { 'vda has 2048 sectors': (run) => expect(value(run, 'SIZE')).toBe('2048') },
 * });
 * ```
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IS_PVM, warnNoKvm } from '../../helpers/env';
import { linuxFixture } from './fixture';
import { bootKvmkit, kvmkitSkipReason } from './kvmkitBoot';
import { bootQemu, qemuSkipReason } from './qemuBoot';
import type { DeviceSpec, LinuxCheck, TwinRun } from './spec';

/** The time a boot may take: KVMKIT_LINUX_TIMEOUT_MIN for kvmkit (default 5, or 90 on PVM), 5 min under TCG. */
const KVMKIT_TIMEOUT_MS = Number(process.env.KVMKIT_LINUX_TIMEOUT_MIN ?? (IS_PVM ? 90 : 5)) * 60_000;
const QEMU_TIMEOUT_MS = Number(process.env.KVMKIT_QEMU_TIMEOUT_S ?? 300) * 1000;

export interface LinuxTwinsOptions {
  /** This test file, for the printed skip reasons. */
  file: string;
  title: string;
  /** The device kinds the check uses (decides what the QEMU twin needs before anything boots). */
  devices: DeviceSpec['kind'][];
  /** Makes a fresh check, its images and directories inside `dir` (one per boot). */
  prepare: (dir: string, vmm: TwinRun['vmm']) => LinuxCheck | Promise<LinuxCheck>;
  /** Named assertions on the finished boot; `dir` still holds the images the guest changed. */
  checks: Record<string, (run: TwinRun, dir: string) => void | Promise<void>>;
}

/** The end of the console and any host-side errors, for assertion messages. */
export function context(run: TwinRun): string {
  const steps = run.stepErrors.length ? `\nstep errors: ${run.stepErrors.join('; ')}` : '';
  return `${run.vmm} console (last 80 lines):\n${run.lines.slice(-80).join('\n')}${steps}`;
}

/** The boot followed the fixture's protocol: init ran the script, which exited 0, then power-off. */
export function expectCompleted(run: TwinRun): void {
  const ctx = context(run);
  expect(run.lines, ctx).toContain(linuxFixture.READY_MARKER);
  expect(run.output, ctx).not.toMatch(new RegExp(`${linuxFixture.MODULE_FAILED_MARKER}|${linuxFixture.ROOT_FAILED_MARKER}|Kernel panic|Call Trace`));
  expect(run.stepErrors, ctx).toEqual([]);
  expect(run.exitStatus, ctx).toBe(0);
  expect(run.poweredOff, ctx).toBe(true);
}

function describeOne(vmm: TwinRun['vmm'], skip: string, o: LinuxTwinsOptions): void {
  const label = vmm === 'kvmkit' ? 'kvmkit' : 'QEMU TCG (reference twin)';
  if (skip) console.warn(`\n*** ${o.file} on ${label} SKIPPED: ${skip} ***\n`);
  describe.skipIf(skip !== '')(`${o.title} on ${label} (one boot)`, () => {
    let dir = '';
    let run: TwinRun;
    const timeout = vmm === 'kvmkit' ? KVMKIT_TIMEOUT_MS : QEMU_TIMEOUT_MS;

    beforeAll(async () => {
      dir = mkdtempSync(join(tmpdir(), `kvmkit-linux-${vmm}-`));
      const check = await o.prepare(dir, vmm);
      run = vmm === 'kvmkit' ? await bootKvmkit(check, dir, timeout) : await bootQemu(check, dir, timeout);
      console.log(`${o.file} on ${label}: ${run.poweredOff ? 'powered off' : 'did NOT power off'} after ${(run.ms / 1000).toFixed(1)} s, `
        + `script status ${run.exitStatus ?? 'none'}, steps ${run.stepsRun.join(',') || 'none'}, command line ${run.cmdline.length} bytes\n`
        + run.lines.filter((l) => l.startsWith('@') || l.startsWith('KVMKIT-')).join('\n'));
    }, timeout + 120_000);

    afterAll(() => {
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    it('init runs the script, which succeeds, and the guest powers off', () => expectCompleted(run));
    for (const [name, fn] of Object.entries(o.checks)) it(name, () => fn(run, dir));
  });
}

/** Defines the kvmkit run and the QEMU TCG run of one check (see the module comment). */
export function describeLinuxTwins(o: LinuxTwinsOptions): void {
  warnNoKvm();
  describeOne('kvmkit', kvmkitSkipReason(), o);
  describeOne('qemu', qemuSkipReason(o.devices), o);
}
