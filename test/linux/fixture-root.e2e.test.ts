/**
 * The Linux fixture's `root=` handling when the root cannot be used (the working cases are booted
 * by virtio-blk and virtiofs.e2e.test.ts): init says why on a KVMKIT-ROOT-FAILED line and carries
 * on in the initramfs, so a test sees the reason instead of a kernel panic. This is the fixture's
 * /init, the same on every VMM, so it boots under QEMU TCG only.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { linuxFixture } from './support/fixture';
import { bootQemu, qemuSkipReason } from './support/qemuBoot';
import { value } from './support/spec';
import { context } from './support/twins';

const skip = qemuSkipReason([]);
if (skip) console.warn(`\n*** test/linux/fixture-root.e2e.test.ts SKIPPED: ${skip} ***\n`);
const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

describe.skipIf(skip !== '')('fixture /init with a root it cannot mount (QEMU TCG)', () => {
  it('prints KVMKIT-ROOT-FAILED with the reason and runs the script from the initramfs', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kvmkit-fixture-root-'));
    dirs.push(dir);
    const run = await bootQemu({
      devices: [], cpus: 1, mem: 256,
      params: ['root=nosuchtag', 'rootfstype=virtiofs', 'rw'],
      script: 'val ROOTFS "$(awk \'$2 == "/" { r = $3 } END { print r }\' /proc/mounts)"',
    }, dir, 300_000);
    const ctx = context(run);
    expect(run.lines, ctx).toContain(`${linuxFixture.ROOT_FAILED_MARKER} cannot mount nosuchtag (type virtiofs, rw)`);
    expect(run.lines, ctx).toContain(linuxFixture.READY_MARKER);
    expect(run.lines.some((l) => l.startsWith(`${linuxFixture.ROOT_MARKER} `)), ctx).toBe(false);
    expect(value(run, 'ROOTFS'), ctx).toBe('rootfs'); // still the initramfs
    expect(run.exitStatus, ctx).toBe(0);
    expect(run.poweredOff, ctx).toBe(true);
  }, 360_000);
});
