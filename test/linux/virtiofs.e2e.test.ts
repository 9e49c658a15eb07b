/**
 * virtio-fs under Linux's virtiofs driver (issue 6's Linux checks), one boot per VMM: the guest
 * boots from a virtio-fs root (`root=myfs rootfstype=virtiofs rw`: the initramfs loads virtiofs,
 * mounts the tag and switches root, the seed's gotcha), mounts a second tag shared with
 * `cache=never` and works in it: create, write, read, rename, unlink files and directories,
 * symlinks, hard links, chmod, truncate, xattrs, 1,000 small files. The host sees the guest's
 * changes while it runs and the guest sees the host's. A third share has a path allowlist that the
 * host widens and narrows while the guest runs (kvmkit: AddPaths/RemovePaths on its allowlist socket; QEMU's
 * virtiofsd has no allowlist, so its twin moves the entry in and out of the share, which is what
 * the guest must see either way). kvmkit: VirtioFs; QEMU: vhost-user-fs-pci with Debian's
 * virtiofsd (cache=none, xattr on).
 */
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import { describeLinuxTwins, context } from './support/twins';
import { value, type TwinRun } from './support/spec';
import { nonce } from './support/hostFiles';
import { buildGuestXattrTool, hostGetXattr, hostSetXattr } from './support/xattr';
// @ts-expect-error plain ESM script without types
import { buildRootTree } from '../../scripts/rootfs.mjs';

const MANY = 1000;
/** Per boot: the token, and what the host read from the share while the guest ran. */
const made: Partial<Record<TwinRun['vmm'], { token: string; seenDuringRun?: string }>> = {};

function share(dir: string, ...p: string[]): string {
  return join(dir, 'share', ...p);
}

function gated(dir: string, ...p: string[]): string {
  return join(dir, 'gated', ...p);
}

describeLinuxTwins({
  file: 'test/linux/virtiofs.e2e.test.ts',
  title: 'virtio-fs under Linux',
  devices: ['fs'],
  prepare(dir, vmm) {
    const token = nonce();
    const state: { token: string; seenDuringRun?: string } = { token };
    made[vmm] = state;
    const xattrTool = buildGuestXattrTool(dir);
    mkdirSync(join(dir, 'root'));
    (buildRootTree as (o: { dir: string; label: string; extraFiles: { path: string; data: Buffer; mode: number }[] }) => unknown)({
      dir: join(dir, 'root'), label: `virtiofs root ${token}`, extraFiles: [{ path: '/bin/kvmkit-xattr', data: xattrTool, mode: 0o755 }],
    });
    mkdirSync(share(dir));
    writeFileSync(share(dir, 'host.txt'), 'host-v1\n');
    writeFileSync(share(dir, 'hostgone.txt'), 'soon gone\n');
    hostSetXattr(share(dir, 'host.txt'), 'user.fromhost', `h-${token}`);
    mkdirSync(gated(dir, 'pub'), { recursive: true });
    writeFileSync(gated(dir, 'pub', 'readme.txt'), 'public\n');
    writeFileSync(gated(dir, 'secret.txt'), `secret-${token}\n`);
    return {
      devices: [
        { kind: 'fs', sharedDir: join(dir, 'root'), tag: 'myfs' },
        { kind: 'fs', sharedDir: share(dir), tag: 'share', cache: 'never' },
        { kind: 'fs', sharedDir: gated(dir), tag: 'gated', cache: 'never', allowedPaths: ['/pub'] },
      ],
      params: ['root=myfs', 'rootfstype=virtiofs', 'rw'],
      steps: {
        'allow-secret': (ctl) => ctl.allowPaths(2, ['/secret.txt']),
        'revoke-secret': (ctl) => ctl.revokePaths(2, ['/secret.txt']),
        'host-change': () => {
          state.seenDuringRun = readFileSync(share(dir, 'renamed.txt'), 'utf8');
          writeFileSync(share(dir, 'host.txt'), `host-v2-${token}\n`);
          writeFileSync(share(dir, 'hostnew.txt'), `new-${token}\n`);
          rmSync(share(dir, 'hostgone.txt'));
          mkdirSync(share(dir, 'hostdir'));
          writeFileSync(share(dir, 'hostdir', 'inside.txt'), 'inside\n');
        },
      },
      script: `
val ROOT "$(awk '$2 == "/" { r = $1 " " $3 " " $4 } END { print r }' /proc/mounts)"
val ROOTLABEL "$(cat /etc/kvmkit-root)"
mount -t virtiofs share /mnt || exit 11
val SHARE "$(awk '$2 == "/mnt" { print $1, $3 }' /proc/mounts)"
cd /mnt || exit 12
gone() { [ -e "$1" ] || [ -L "$1" ] && echo exists || echo gone; }
echo "guest-${token}" > created.txt
val READ "$(cat created.txt)"
mv created.txt renamed.txt
val RENAMED "$(gone created.txt) $(cat renamed.txt)"
mkdir -p dir1/sub && echo inner > dir1/sub/inner.txt && mv dir1 dir2
val DIRS "$(gone dir1) $(cat dir2/sub/inner.txt)"
mkdir emptydir && rmdir emptydir
echo bye > gone.txt && rm gone.txt
val REMOVED "$(gone emptydir) $(gone gone.txt)"
ln -s renamed.txt link
val SYMLINK "$(readlink link) $(cat link)"
ln renamed.txt hard
val HARDLINK "$(stat -c '%i %h' renamed.txt) $(stat -c '%i %h' hard)"
echo data > mode.txt && chmod 640 mode.txt
val MODE "$(stat -c %a mode.txt)"
echo 0123456789 > trunc.txt && truncate -s 4 trunc.txt && truncate -s 100000 grown.txt
val TRUNC "$(cat trunc.txt) $(stat -c %s grown.txt)"
kvmkit-xattr set renamed.txt user.kvmkit "g-${token}"
kvmkit-xattr set mode.txt user.removed yes && kvmkit-xattr remove mode.txt user.removed
val XATTR "$(kvmkit-xattr get renamed.txt user.kvmkit)"
val XATTR_LIST "$(kvmkit-xattr list renamed.txt)"
val XATTR_HOST "$(kvmkit-xattr get host.txt user.fromhost)"
mkdir many
i=0
while [ $i -lt ${MANY} ]; do echo "small $i" > many/f$i; i=$((i + 1)); done
val MANY "$(ls many | wc -l) $(cat many/f${MANY - 1})"
val HOST_V1 "$(cat host.txt)"
step host-change
val HOST_V2 "$(cat host.txt)"
val HOST_NEW "$(cat hostnew.txt) $(gone hostgone.txt) $(ls hostdir)"
cd / && umount /mnt
val UMOUNT $?
mkdir -p /gated && mount -t virtiofs gated /gated || exit 13
list() { echo $(ls /gated); }
secret() { cat /gated/secret.txt 2>/dev/null || echo none; }
val GATED0 "$(list) $(cat /gated/pub/readme.txt) $(secret)"
step allow-secret
val GATED1 "$(list) $(secret)"
step revoke-secret
val GATED2 "$(list) $(secret)"
umount /gated
`,
    };
  },
  checks: {
    'boots from a virtio-fs root (root=myfs rootfstype=virtiofs rw)': (run) => {
      expect(value(run, 'ROOT'), context(run)).toMatch(/^myfs virtiofs rw\b/);
      expect(run.lines).toContainEqual(expect.stringMatching(/^KVMKIT-ROOT myfs virtiofs rw/));
      expect(value(run, 'ROOTLABEL')).toBe(`virtiofs root ${made[run.vmm]!.token}`);
    },
    'mounts a second tag and creates, writes, reads, renames and unlinks files and directories': (run, dir) => {
      const { token } = made[run.vmm]!;
      expect(value(run, 'SHARE'), context(run)).toBe('share virtiofs');
      expect(value(run, 'READ')).toBe(`guest-${token}`);
      expect(value(run, 'RENAMED')).toBe(`gone guest-${token}`);
      expect(value(run, 'DIRS')).toBe('gone inner');
      expect(value(run, 'REMOVED')).toBe('gone gone');
      expect(value(run, 'UMOUNT')).toBe('0');
      expect(readFileSync(share(dir, 'renamed.txt'), 'utf8')).toBe(`guest-${token}\n`);
      expect(readFileSync(share(dir, 'dir2', 'sub', 'inner.txt'), 'utf8')).toBe('inner\n');
      for (const p of ['created.txt', 'dir1', 'emptydir', 'gone.txt']) expect(existsSync(share(dir, p)), p).toBe(false);
    },
    'symlinks and hard links': (run, dir) => {
      const { token } = made[run.vmm]!;
      expect(value(run, 'SYMLINK'), context(run)).toBe(`renamed.txt guest-${token}`);
      const [ino1, n1, ino2, n2] = (value(run, 'HARDLINK') ?? '').split(' ');
      expect(ino1).toBe(ino2);
      expect([n1, n2]).toEqual(['2', '2']);
      expect(lstatSync(share(dir, 'link')).isSymbolicLink()).toBe(true);
      expect(readlinkSync(share(dir, 'link'))).toBe('renamed.txt');
      expect(statSync(share(dir, 'hard')).ino).toBe(statSync(share(dir, 'renamed.txt')).ino);
      expect(statSync(share(dir, 'hard')).nlink).toBe(2);
    },
    'chmod and truncate (shrink and grow)': (run, dir) => {
      expect(value(run, 'MODE'), context(run)).toBe('640');
      expect(value(run, 'TRUNC')).toBe('0123 100000');
      expect(statSync(share(dir, 'mode.txt')).mode & 0o777).toBe(0o640);
      expect(readFileSync(share(dir, 'trunc.txt'), 'utf8')).toBe('0123');
      expect(statSync(share(dir, 'grown.txt')).size).toBe(100000);
    },
    'xattrs: set, get, list and remove in the guest; the host sees them and the guest sees the host\'s': (run, dir) => {
      const { token } = made[run.vmm]!;
      expect(value(run, 'XATTR'), context(run)).toBe(`g-${token}`);
      expect((value(run, 'XATTR_LIST') ?? '').split(' ')).toContain('user.kvmkit');
      expect(value(run, 'XATTR_HOST')).toBe(`h-${token}`);
      expect(hostGetXattr(share(dir, 'renamed.txt'), 'user.kvmkit')).toBe(`g-${token}`);
      expect(hostGetXattr(share(dir, 'mode.txt'), 'user.removed')).toBeUndefined();
    },
    [`${MANY} small files`]: (run, dir) => {
      expect(value(run, 'MANY'), context(run)).toBe(`${MANY} small ${MANY - 1}`);
      const names = readdirSync(share(dir, 'many'));
      expect(names).toHaveLength(MANY);
      expect(readFileSync(share(dir, 'many', 'f500'), 'utf8')).toBe('small 500\n');
    },
    'allowlist: only allowed paths are visible; allowing and revoking while the guest runs take effect at once': (run, dir) => {
      const { token } = made[run.vmm]!;
      expect(value(run, 'GATED0'), context(run)).toBe('pub public none');
      expect(value(run, 'GATED1')).toBe(`pub secret.txt secret-${token}`);
      expect(value(run, 'GATED2')).toBe('pub none');
      expect(readFileSync(gated(dir, 'secret.txt'), 'utf8')).toBe(`secret-${token}\n`); // hidden, never deleted
    },
    'cache=never: the host sees the guest\'s writes while it runs, and the guest the host\'s': (run) => {
      const { token, seenDuringRun } = made[run.vmm]!;
      expect(seenDuringRun, context(run)).toBe(`guest-${token}\n`);
      expect(value(run, 'HOST_V1')).toBe('host-v1');
      expect(value(run, 'HOST_V2')).toBe(`host-v2-${token}`);
      expect(value(run, 'HOST_NEW')).toBe(`new-${token} gone inside.txt`);
    },
  },
});
