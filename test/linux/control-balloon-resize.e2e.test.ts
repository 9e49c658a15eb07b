/**
 * Run-time control under Linux (issue 4's Linux checks), one boot per VMM: the host grows the
 * disk while the guest runs (kvmkit `vm.resizeDisk`, QEMU QMP `block_resize`) and Linux logs
 * `virtio_blk virtioN: [vda] new size` and shows it in /sys/block/vda/size; the host inflates the
 * balloon (kvmkit `vm.balloon`, QMP `balloon`) and the guest's free memory drops by that much, then
 * deflating gives it back. Both balloons offer DEFLATE_ON_OOM (kvmkit's default), with which Linux
 * keeps MemTotal and takes the pages from MemFree.
 */
import { statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import { describeLinuxTwins, context } from './support/twins';
import { value } from './support/spec';

const MiB = 1024 * 1024;
const DISK = 64 * MiB;
const GROWN = 96 * MiB;
const BALLOON = 128 * MiB;
const BALLOON_KIB = BALLOON / 1024;

/** `MemTotal MemFree` in KiB from one `@MEMn total free` line. */
function mem(run: Parameters<typeof value>[0], key: string): { total: number; free: number } {
  const [total, free] = (value(run, key) ?? '').split(' ').map(Number);
  return { total: total ?? Number.NaN, free: free ?? Number.NaN };
}

describeLinuxTwins({
  file: 'test/linux/control-balloon-resize.e2e.test.ts',
  title: 'disk resize and balloon under Linux',
  devices: ['blk', 'balloon'],
  prepare(dir) {
    const disk = join(dir, 'disk.img');
    writeFileSync(disk, '');
    truncateSync(disk, DISK);
    return {
      mem: 512,
      devices: [{ kind: 'blk', path: disk, id: 'RESIZE' }, { kind: 'balloon' }],
      steps: {
        resize: (ctl) => ctl.resizeDisk(0, GROWN),
        inflate: (ctl) => ctl.balloon(BALLOON),
        deflate: (ctl) => ctl.balloon(0),
      },
      script: `
s0=$(cat /sys/block/vda/size)
val SIZE0 "$s0"
step resize
n=0
while [ "$(cat /sys/block/vda/size)" = "$s0" ] && [ $n -lt 300 ]; do sleep 0.1; n=$((n + 1)); done
val SIZE1 "$(cat /sys/block/vda/size)"
val NEWSIZE "$(dmesg | grep 'new size' | tail -1 | sed 's/^\\[[^]]*\\] *//')"
mem() { awk '/^MemTotal:/ { t = $2 } /^MemFree:/ { f = $2 } END { print t, f }' /proc/meminfo; }
settle() { # until free memory is at most (or, with -ge, at least) $2 KiB, 60 s at most
  n=0
  while [ $n -lt 300 ]; do set -- "$1" "$2" $(mem); [ "$4" "$1" "$2" ] && return 0; sleep 0.2; n=$((n + 1)); done
  return 1
}
set -- $(mem)
f0=$2
val MEM0 "$(mem)"
step inflate
settle -le $((f0 - ${BALLOON_KIB} * 9 / 10)) || val INFLATE_TIMEOUT 1
val MEM1 "$(mem)"
step deflate
settle -ge $((f0 - ${BALLOON_KIB} / 10)) || val DEFLATE_TIMEOUT 1
val MEM2 "$(mem)"
`,
    };
  },
  checks: {
    'resize: /sys/block/vda/size shows the new size and the host file has it': (run, dir) => {
      expect(Number(value(run, 'SIZE0')) * 512, context(run)).toBe(DISK);
      expect(Number(value(run, 'SIZE1')) * 512, context(run)).toBe(GROWN);
      expect(statSync(join(dir, 'disk.img')).size).toBe(GROWN);
    },
    'resize: the guest logs "virtio_blk virtioN: [vda] new size"': (run) => {
      expect(value(run, 'NEWSIZE'), context(run)).toMatch(new RegExp(`^virtio_blk virtio\\d+: \\[vda\\] new size: ${GROWN / 512} 512-byte logical blocks`));
    },
    'balloon: inflating takes its size from MemFree (MemTotal kept with DEFLATE_ON_OOM)': (run) => {
      const m0 = mem(run, 'MEM0');
      const m1 = mem(run, 'MEM1');
      console.log(`${run.vmm}: MemTotal/MemFree KiB before ${m0.total}/${m0.free}, inflated ${m1.total}/${m1.free}, deflated ${JSON.stringify(mem(run, 'MEM2'))}`);
      expect(value(run, 'INFLATE_TIMEOUT'), context(run)).toBeUndefined();
      expect(m0.free - m1.free).toBeGreaterThanOrEqual(BALLOON_KIB * 0.9);
      expect(m0.free - m1.free).toBeLessThan(BALLOON_KIB * 1.25);
      expect(m1.total).toBe(m0.total);
    },
    'balloon: deflating gives the memory back': (run) => {
      const m0 = mem(run, 'MEM0');
      const m2 = mem(run, 'MEM2');
      expect(value(run, 'DEFLATE_TIMEOUT'), context(run)).toBeUndefined();
      expect(m2.free).toBeGreaterThanOrEqual(m0.free - BALLOON_KIB * 0.1);
      expect(m2.total).toBe(m0.total);
    },
  },
});
