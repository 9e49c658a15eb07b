/**
 * Cross-check: the same probe image and initrd on kvmkit and on QEMU (microvm, KVM) must report
 * the same facts wherever the boot protocol fixes them (command line, RAM, initrd bytes, CPUs).
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { VirtualMachine } from '../../src';
import { parseProbeLines, type ProbeRecord } from '../guest/probe/parse';
import { qemuAvailable, runProbeUnderQemu } from '../guest/probe/qemu';
import { ensureProbe, HAS_KVM, warnNoKvm } from '../helpers/env';

warnNoKvm();
const hasQemu = qemuAvailable();
if (!hasQemu) console.warn('\n*** SKIPPING probe-vs-QEMU cross-check: qemu-system-x86_64 is not installed (apt-get install qemu-system-x86) ***\n');

const facts = (records: ProbeRecord[]) => {
  const get = (key: string) => records.find((r) => r.key === key);
  return {
    // The command line the user gave (kvmkit prepends its console/reboot defaults).
    userCmdline: get('cmdline')?.cmdline.split(' ').filter((w) => w.startsWith('probe.') || w.startsWith('xcheck')).join(' '),
    ramMiB: Math.round(Number(get('e820_count')?.ram_bytes) / 2 ** 20),
    initrd: { size: get('initrd')?.size, fnv1a64: get('initrd')?.fnv1a64 },
    cpusOnline: get('cpus_online')?.cpus_online,
    madtCpus: get('acpi')?.madt_cpus,
    ready: records.some((r) => r.key === 'ready'),
    poweroff: records.some((r) => r.key === 'poweroff'),
  };
};

describe.skipIf(!HAS_KVM || !hasQemu)('probe on kvmkit agrees with the probe on QEMU', () => {
  let probe = '';
  beforeAll(() => {
    probe = ensureProbe();
  });

  it.each([1, 2])('%i vCPU(s): same command line, RAM, initrd checksum and CPUs', async (cpus) => {
    const initrd = join(mkdtempSync(join(tmpdir(), 'kvmkit-xq-')), 'initrd');
    writeFileSync(initrd, randomBytes(256 * 1024 + 7));
    const append = `probe.cmd=poweroff xcheck=${cpus}`;
    const vm = new VirtualMachine({ kernel: probe, cpus, mem: 256, initrd, params: append });
    await vm.start();
    const info = await vm.exited;
    expect(info.reason).toBe('poweroff');
    const ours = facts(parseProbeLines(vm.serial.output));
    const q = await runProbeUnderQemu({ machine: 'microvm', accel: 'kvm', cpus, memMiB: 256, initrd, append, timeoutMs: 60_000 });
    expect(q.exitCode, q.output.slice(-500)).toBe(0);
    const theirs = facts(q.probe);
    expect(ours).toEqual(theirs);
    expect(ours.userCmdline).toBe(append);
    expect(ours.cpusOnline).toBe(String(cpus));
  });
});
