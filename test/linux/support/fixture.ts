/**
 * The Linux fixture's files and the kernel command line both VMMs give a check: the root disk's
 * `root=` (for QEMU; kvmkit adds it itself), the check's own parameters and the script.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { virtioDiskName } from '../../../src/vm/rootDisk';
import { FIXTURES } from '../../helpers/env';
import { SCRIPT_PRELUDE, type DeviceSpec, type LinuxCheck } from './spec';
// @ts-expect-error plain ESM script without types
import * as fixtureScript from '../../../scripts/linux-fixture.mjs';

interface FixtureScript {
  runzArg(script: string): string;
  SLOW_HOST_CMDLINE: string;
  READY_MARKER: string;
  EXIT_MARKER: string;
  MODULE_FAILED_MARKER: string;
  ROOT_MARKER: string;
  ROOT_FAILED_MARKER: string;
}
/** scripts/linux-fixture.mjs, typed. */
export const linuxFixture = fixtureScript as FixtureScript;

export const KERNEL = join(FIXTURES, 'linux', 'vmlinuz');
export const INITRD = join(FIXTURES, 'linux', 'initramfs.cpio.gz');
/** Why no Linux guest can boot at all, or ''. */
export const FIXTURE_MISSING = existsSync(KERNEL) && existsSync(INITRD)
  ? ''
  : `the Linux fixture is missing (${KERNEL}); make it with \`npm run build && node scripts/fixtures.mjs linux\``;

/** x86's COMMAND_LINE_SIZE is 2048 including the NUL. */
export const MAX_CMDLINE = 2047;

/** `['root=/dev/vdX', 'ro'|'rw']` for the block device with `root`, as kvmkit's rootDiskParams makes it. */
export function rootParams(devices: readonly DeviceSpec[]): string[] {
  const disks = devices.filter((d): d is Extract<DeviceSpec, { kind: 'blk' }> => d.kind === 'blk');
  const i = disks.findIndex((d) => d.root);
  if (i < 0) return [];
  if (disks.filter((d) => d.root).length > 1) throw new Error('more than one root disk');
  return [`root=/dev/${virtioDiskName(i)}`, disks[i]!.ro ? 'ro' : 'rw'];
}

/** The check's parameters and its script (prelude included, gzipped) as kernel parameters. */
export function checkParams(check: LinuxCheck): string[] {
  return [...(check.params ?? []), linuxFixture.runzArg(`${SCRIPT_PRELUDE}${check.script}`)];
}

/** Throws when a command line does not fit in the kernel's buffer. */
export function assertCmdlineFits(cmdline: string): void {
  if (cmdline.length > MAX_CMDLINE) {
    throw new Error(`kernel command line is ${cmdline.length} bytes, more than x86's ${MAX_CMDLINE}: shorten the check's script`);
  }
}
