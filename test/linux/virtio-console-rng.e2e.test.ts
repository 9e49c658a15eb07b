/**
 * virtio-console and virtio-rng under Linux (issue 3's Linux checks), one boot per VMM: with
 * `console=hvc0` the kernel registers hvc0 as a console and its messages reach the host's hvc0
 * output (kvmkit: `vm.console` and 'console' events; QEMU: a virtconsole chardev); user space
 * writes to and reads from /dev/hvc0; /dev/hwrng returns varied bytes and rng_current names virtio.
 * The init's own markers stay on ttyS0: hvc0 registers when its module loads, after /dev/console
 * was opened.
 */
import { expect } from 'vitest';
import { describeLinuxTwins, context } from './support/twins';
import { value, type TwinRun } from './support/spec';
import { nonce } from './support/hostFiles';

const tokens: Partial<Record<TwinRun['vmm'], string>> = {};

describeLinuxTwins({
  file: 'test/linux/virtio-console-rng.e2e.test.ts',
  title: 'virtio-console and virtio-rng under Linux',
  devices: ['rng', 'console'],
  prepare(_dir, vmm) {
    const token = (tokens[vmm] = nonce());
    return {
      devices: [{ kind: 'rng' }, { kind: 'console' }],
      params: ['console=hvc0'],
      steps: { 'hvc-input': (ctl) => ctl.writeConsole(`ping-${token}\n`) },
      script: `
val CONSOLES "$(awk '{ print $1 }' /proc/consoles | tr '\\n' ' ')"
echo "<2>kvmkit-printk-${token}" > /dev/kmsg
echo "hvc-user-${token}" > /dev/hvc0
exec 3<>/dev/hvc0
step hvc-input
line=
read -t 30 -r line <&3
val HVC_IN "$line"
exec 3<&-
val RNG_CURRENT "$(cat /sys/class/misc/hw_random/rng_current)"
val RNG_BYTES "$(head -c 4096 /dev/hwrng | wc -c)"
val RNG_DISTINCT "$(head -c 4096 /dev/hwrng | od -An -tx1 -v | tr -s ' ' '\\n' | grep . | sort -u | wc -l)"
a=$(head -c 32 /dev/hwrng | od -An -tx1 -v)
b=$(head -c 32 /dev/hwrng | od -An -tx1 -v)
val RNG_REPEATS "$([ "$a" = "$b" ] && echo 1 || echo 0)"
`,
    };
  },
  checks: {
    'console=hvc0: the kernel lists hvc0 as a console beside ttyS0': (run) => {
      const consoles = (value(run, 'CONSOLES') ?? '').split(' ');
      expect(consoles, context(run)).toContain('hvc0');
      expect(consoles).toContain('ttyS0');
    },
    'kernel messages reach the host through hvc0': (run) => {
      expect(run.console, context(run)).toContain(`kvmkit-printk-${tokens[run.vmm]}`);
    },
    'user space writes to /dev/hvc0 and reads what the host typed': (run) => {
      const token = tokens[run.vmm];
      expect(run.console, `hvc0 output: ${JSON.stringify(run.console)}`).toContain(`hvc-user-${token}`);
      expect(value(run, 'HVC_IN'), context(run)).toBe(`ping-${token}`);
    },
    '/dev/hwrng is virtio_rng and returns varied bytes': (run) => {
      expect(value(run, 'RNG_CURRENT'), context(run)).toMatch(/^virtio_rng/);
      expect(value(run, 'RNG_BYTES')).toBe('4096');
      expect(Number(value(run, 'RNG_DISTINCT'))).toBeGreaterThan(200); // 4096 random bytes hit ~256 values
      expect(value(run, 'RNG_REPEATS')).toBe('0');
    },
  },
});
