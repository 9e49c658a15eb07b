/**
 * virtio-pci under Linux's own drivers (virtio_pci modern, virtio_rng), one boot: the kernel
 * enumerates 1af4:1044 behind the ACPI host bridge, takes MSI-X vectors, and /dev/hwrng returns
 * bytes through the device. Same rule as test/linux: on a paravirtual (PVM) host this runs on
 * demand only (KVMKIT_LINUX_TESTS=1), since an unmodified kernel needs tens of minutes there.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VirtualMachine, type ExitInfo } from '../../src';
import { VirtioRng } from '../../src/devices/virtio/rng/VirtioRng';
import { ensureProbe, FIXTURES, HAS_KVM, IS_PVM, warnNoKvm } from '../helpers/env';
// @ts-expect-error plain ESM script without types
import { runArg, SLOW_HOST_CMDLINE, READY_MARKER, EXIT_MARKER } from '../../scripts/linux-fixture.mjs';

warnNoKvm();
const kernel = join(FIXTURES, 'linux', 'vmlinuz');
const initrd = join(FIXTURES, 'linux', 'initramfs.cpio.gz');
const onDemand = process.env.KVMKIT_LINUX_TESTS === '1';
let skip = '';
if (!HAS_KVM) skip = '/dev/kvm does not exist';
else if (!existsSync(kernel) || !existsSync(initrd)) skip = `the Linux fixture is missing (${kernel}); run node scripts/fixtures.mjs linux`;
else if (IS_PVM && !onDemand) {
  skip = 'this host is a paravirtual KVM (kvm_pvm): Debian\'s kernel boots (kernel code runs in KVM\'s emulator, ~20 min), but guest user space segfaults at its first system call (entry_SYSCALL_64, a PVM host limitation), so init never runs; run on demand with KVMKIT_LINUX_TESTS=1';
}
if (skip) console.warn(`\n*** test/vm/virtio-linux.e2e.test.ts SKIPPED: ${skip} ***\n`);

const timeoutMs = Number(process.env.KVMKIT_LINUX_TIMEOUT_MIN ?? (IS_PVM ? 90 : 5)) * 60_000;

// What the guest runs once its init has loaded the virtio modules.
const SCRIPT = [
  'for d in /sys/bus/pci/devices/*; do echo "PCIDEV $(basename $d) $(cat $d/vendor):$(cat $d/device) class=$(cat $d/class) driver=$(basename $(readlink $d/driver) 2>/dev/null)"; done',
  'echo "RNG_CURRENT=$(cat /sys/class/misc/hw_random/rng_current)"',
  'echo "RNG_BYTES=$(head -c 4096 /dev/hwrng | wc -c)"',
  'grep -i virtio /proc/interrupts | sed "s/^/IRQ /"',
].join('; ');

describe.skipIf(skip !== '')('virtio-pci under Linux (one boot)', () => {
  let vm: VirtualMachine;
  let info: ExitInfo;
  let out = '';

  beforeAll(async () => {
    ensureProbe(); // builds the vCPU worker bundle on a direct vitest run
    vm = new VirtualMachine({
      kernel, initrd, cpus: 1, mem: 512, devices: [new VirtioRng()],
      params: [...(IS_PVM ? SLOW_HOST_CMDLINE.split(' ') : []), runArg(SCRIPT)],
    });
    const t0 = Date.now();
    await vm.start();
    const timer = setTimeout(() => void vm.stop(), timeoutMs);
    info = await vm.exited;
    clearTimeout(timer);
    out = vm.serial.output;
    console.log(`Linux with virtio-rng: ${info.reason} after ${((Date.now() - t0) / 1000).toFixed(1)} s; device stats ${JSON.stringify(vm.deviceStats())}\n` +
      out.split('\n').filter((l) => /PCIDEV|RNG_|IRQ |virtio|KVMKIT/.test(l)).join('\n'));
  }, timeoutMs + 60_000);

  afterAll(async () => {
    if (vm && vm.state !== 'exited') await vm.stop();
  });

  it('reaches init and runs the script', () => {
    expect(out).toContain(READY_MARKER);
    expect(out).toContain(`${EXIT_MARKER} status=0`);
  });

  it('the host bridge and the virtio-rng function are on bus 0, bound to virtio-pci', () => {
    expect(out).toMatch(/PCIDEV 0000:00:00\.0 0x8086:0x1237 class=0x060000/);
    expect(out).toMatch(/PCIDEV 0000:00:01\.0 0x1af4:0x1044 class=0xff0000 driver=virtio-pci/);
  });

  it('/dev/hwrng is virtio_rng and returns bytes', () => {
    expect(out).toMatch(/RNG_CURRENT=virtio_rng/);
    expect(out).toMatch(/RNG_BYTES=4096/);
  });

  it('Linux uses MSI-X: interrupts arrived through irqfds, doorbells through the ioeventfd', () => {
    expect(out).toMatch(/IRQ .*PCI-MSI.*virtio0/);
    const [s] = vm.deviceStats();
    expect(s!.msiFired).toBeGreaterThan(0);
    expect(s!.doorbellWrites).toBeGreaterThan(0);
    expect(s!.mmioDoorbells).toBe(0);
  });
});
