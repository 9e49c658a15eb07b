/**
 * virtio-blk under Linux's virtio_blk driver, issue 3's Linux checks in one boot per VMM: four
 * disks at once, the last one the `root` option's busybox ext4 root that init switches to; an
 * ext4 image made on the host mounted, written and synced, then read back on the host with
 * debugfs (that disk opened with O_DIRECT); `id` in /sys/block/vda/serial; `block_size` in logical_block_size; a `ro` disk the guest
 * cannot change; blkdiscard punching holes in the host file. kvmkit runs it where Linux user space
 * can run (not on a PVM host unless KVMKIT_LINUX_TESTS=1); QEMU TCG runs the same script always.
 */
import { join } from 'node:path';
import { statSync } from 'node:fs';
import { expect } from 'vitest';
import { describeLinuxTwins, context } from './support/twins';
import { value, type TwinRun } from './support/spec';
import { allocatedBytes, debugfsCat, mkfsExt4, nonce, randomFile, sha256File } from './support/hostFiles';
// @ts-expect-error plain ESM script without types
import { buildRootImage } from '../../scripts/rootfs.mjs';

const MiB = 1024 * 1024;
const DISKS = ['vda', 'vdb', 'vdc', 'vdd'] as const;
const FILES = ['data.img', 'ro.img', 'discard.img', 'root.img'] as const;

/** What each boot's prepare made, for its checks. */
const made: Partial<Record<TwinRun['vmm'], { token: string; roSha: string; discardAllocated: number }>> = {};

describeLinuxTwins({
  file: 'test/linux/virtio-blk.e2e.test.ts',
  title: 'virtio-blk under Linux',
  devices: ['blk'],
  prepare(dir, vmm) {
    const token = nonce();
    mkfsExt4(join(dir, 'data.img'), 32);
    randomFile(join(dir, 'ro.img'), 8 * MiB);
    randomFile(join(dir, 'discard.img'), 32 * MiB);
    (buildRootImage as (o: { image: string; label: string }) => unknown)({ image: join(dir, 'root.img'), label: `ext4 root ${token}` });
    made[vmm] = { token, roSha: sha256File(join(dir, 'ro.img')), discardAllocated: allocatedBytes(join(dir, 'discard.img')) };
    return {
      devices: [
        { kind: 'blk', path: join(dir, 'data.img'), id: 'KVMKIT-DATA-1', blockSize: 4096, directIo: true },
        { kind: 'blk', path: join(dir, 'ro.img'), id: 'KVMKIT-RO', ro: true },
        { kind: 'blk', path: join(dir, 'discard.img'), id: 'KVMKIT-DISCARD' },
        { kind: 'blk', path: join(dir, 'root.img'), id: 'KVMKIT-ROOT', root: true },
      ],
      script: `
val ROOT "$(awk '$2 == "/" { r = $1 " " $3 " " $4 } END { print r }' /proc/mounts)"
val ROOTLABEL "$(cat /etc/kvmkit-root)"
for d in ${DISKS.join(' ')}; do val SIZE_$d "$(cat /sys/block/$d/size)"; done
val SERIAL "$(cat /sys/block/vda/serial)"
val SERIAL_B "$(cat /sys/block/vdb/serial)"
val LBS "$(cat /sys/block/vda/queue/logical_block_size)"
val LBS_B "$(cat /sys/block/vdb/queue/logical_block_size)"
mount -t ext4 /dev/vda /mnt || exit 11
echo "guest-${token}" > /mnt/f
sync
val WROTE "$(cat /mnt/f)"
umount /mnt || exit 12
val RO_FLAG "$(cat /sys/block/vdb/ro)"
dd if=/dev/zero of=/dev/vdb bs=4096 count=16 conv=fsync 2>/dev/null
val RO_DD $?
echo 3 > /proc/sys/vm/drop_caches
val RO_SUM "$(sha256sum /dev/vdb | cut -d' ' -f1)"
val DISCARD_MAX "$(cat /sys/block/vdc/queue/discard_max_bytes)"
blkdiscard /dev/vdc
val DISCARD $?
echo "root-${token}" > /root-written && sync
val ROOTW "$(cat /root-written)"
`,
    };
  },
  checks: {
    'the root option: init switched to the busybox ext4 root on the last disk, read-write': (run) => {
      const { token } = made[run.vmm]!;
      expect(value(run, 'ROOT'), context(run)).toMatch(/^\/dev\/vdd ext4 rw\b/);
      expect(run.lines, context(run)).toContainEqual(expect.stringMatching(/^KVMKIT-ROOT \/dev\/vdd ext4 rw/));
      expect(value(run, 'ROOTLABEL')).toBe(`ext4 root ${token}`);
      expect(value(run, 'ROOTW')).toBe(`root-${token}`);
    },
    'four disks at once, in order, each the size of its file': (run, dir) => {
      DISKS.forEach((d, i) => expect(Number(value(run, `SIZE_${d}`)) * 512, `${d} ${context(run)}`).toBe(statSync(join(dir, FILES[i])).size));
    },
    'a file the guest wrote and synced to the host-made ext4 image reads back on the host (debugfs)': (run, dir) => {
      const { token } = made[run.vmm]!;
      expect(value(run, 'WROTE'), context(run)).toBe(`guest-${token}`);
      expect(debugfsCat(join(dir, 'data.img'), '/f')).toBe(`guest-${token}\n`);
      expect(debugfsCat(join(dir, 'root.img'), '/root-written')).toBe(`root-${token}\n`);
    },
    'id is the serial in /sys/block/vdX/serial': (run) => {
      expect(value(run, 'SERIAL'), context(run)).toBe('KVMKIT-DATA-1');
      expect(value(run, 'SERIAL_B')).toBe('KVMKIT-RO');
    },
    'block_size 4096 is the logical block size (512 where not set)': (run) => {
      expect(value(run, 'LBS'), context(run)).toBe('4096');
      expect(value(run, 'LBS_B')).toBe('512');
    },
    'a ro disk is read-only in the guest, a write fails, and its bytes are unchanged': (run, dir) => {
      const { roSha } = made[run.vmm]!;
      expect(value(run, 'RO_FLAG'), context(run)).toBe('1');
      expect(value(run, 'RO_DD')).not.toBe('0');
      expect(value(run, 'RO_SUM')).toBe(roSha); // the guest reads the image's bytes
      expect(sha256File(join(dir, 'ro.img'))).toBe(roSha);
    },
    'blkdiscard punches holes: the host file has far fewer allocated blocks': (run, dir) => {
      const { discardAllocated } = made[run.vmm]!;
      expect(Number(value(run, 'DISCARD_MAX')), context(run)).toBeGreaterThan(0);
      expect(value(run, 'DISCARD')).toBe('0');
      const after = allocatedBytes(join(dir, 'discard.img'));
      console.log(`${run.vmm}: discard.img allocated ${discardAllocated / MiB} MiB before, ${after / MiB} MiB after blkdiscard`);
      expect(discardAllocated).toBeGreaterThanOrEqual(32 * MiB);
      expect(after).toBeLessThan(discardAllocated / 4);
    },
  },
});
