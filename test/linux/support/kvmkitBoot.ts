/**
 * Boots a check on kvmkit with kvmkit's own devices, with the same script and kernel command line
 * as the QEMU twin (kvmkit adds `root=` for a root disk itself).
 *
 * Parts still being built elsewhere (VirtioFs, vm.resizeDisk) are looked up at run time by name,
 * so this file compiles before they exist and the checks that need them skip with the missing API
 * named (see {@link missingKvmkitApis}).
 */
import * as kvmkit from '../../../src';
import { VirtualMachine, VirtioBlock, VirtioConsole, VirtioRng, type VmDevice } from '../../../src';
import { VirtioBalloon } from '../../../src/devices/virtio/balloon';
import { HAS_KVM, IS_PVM, ensureProbe } from '../../helpers/env';
import { checkParams, FIXTURE_MISSING, INITRD, KERNEL, linuxFixture } from './fixture';
import { consoleLines, StepRunner, type DeviceSpec, type HostControl, type LinuxCheck, type TwinRun } from './spec';

/** Device classes and VirtualMachine methods a kvmkit check may need that are not in main yet. */
export type KvmkitApi = 'VirtioFs' | 'resizeDisk' | 'balloon';

type DeviceClass = new (options: Record<string, unknown>) => VmDevice;
/** The run-time calls of issue 4, as DESIGN.md shows them. */
interface RunTimeControl {
  resizeDisk?: (index: number, bytes: bigint) => Promise<unknown>;
  balloon?: (bytes: number) => Promise<unknown>;
}

const exported = kvmkit as Record<string, unknown>;

function deviceClass(name: 'VirtioFs'): DeviceClass | undefined {
  const c = exported[name];
  return typeof c === 'function' ? (c as DeviceClass) : undefined;
}

/** The APIs among `needed` that kvmkit does not have yet, as readable names. */
export function missingKvmkitApis(needed: readonly KvmkitApi[]): string[] {
  const proto = VirtualMachine.prototype as unknown as Record<string, unknown>;
  return needed.filter((api) => (api === 'VirtioFs' ? !deviceClass(api) : typeof proto[api] !== 'function'))
    .map((api) => (api === 'VirtioFs' ? `${api} (export of src/index.ts)` : `VirtualMachine.${api}()`));
}

/** Why the kvmkit run skips here, or ''. On a PVM host it runs only with KVMKIT_LINUX_TESTS=1. */
export function kvmkitSkipReason(needed: readonly KvmkitApi[]): string {
  if (!HAS_KVM) return '/dev/kvm does not exist';
  if (FIXTURE_MISSING) return FIXTURE_MISSING;
  const missing = missingKvmkitApis(needed);
  if (missing.length) return `kvmkit has no ${missing.join(', ')} yet`;
  if (IS_PVM && process.env.KVMKIT_LINUX_TESTS !== '1') {
    return 'this host is a paravirtual KVM (kvm_pvm): Debian\'s kernel boots, but guest user space segfaults at its first system call '
      + '(entry_SYSCALL_64, a PVM host limitation, see `issues stops`), so init never runs; run on demand with KVMKIT_LINUX_TESTS=1. '
      + 'The QEMU TCG twin in this file runs the same script';
  }
  return '';
}

function makeDevice(d: DeviceSpec): VmDevice {
  switch (d.kind) {
    case 'blk':
      return new VirtioBlock({ path: d.path, ro: d.ro, root: d.root, id: d.id, blockSize: d.blockSize, sparse: d.sparse });
    case 'rng':
      return new VirtioRng();
    case 'console':
      return new VirtioConsole();
    case 'balloon':
      return new VirtioBalloon({ deflateOnOom: d.deflateOnOom });
    case 'fs': {
      const C = deviceClass('VirtioFs');
      if (!C) throw new Error('kvmkit has no VirtioFs yet');
      return new C({ sharedDir: d.sharedDir, tag: d.tag, cache: d.cache ?? 'auto' });
    }
  }
}

/** Boots `check` on kvmkit; resolves when the guest ends or `timeoutMs` passes (then it is stopped). */
export async function bootKvmkit(check: LinuxCheck, timeoutMs: number): Promise<TwinRun> {
  ensureProbe(); // builds the vCPU worker bundle on a direct vitest run
  const params = [...(IS_PVM ? linuxFixture.SLOW_HOST_CMDLINE.split(' ') : ['quiet']), ...checkParams(check)];
  const vm = new VirtualMachine({ kernel: KERNEL, initrd: INITRD, cpus: check.cpus ?? 2, mem: check.mem ?? 512, devices: check.devices.map(makeDevice), params });
  const control = vm as unknown as RunTimeControl;
  const ctl: HostControl = {
    async resizeDisk(index, bytes) {
      if (!control.resizeDisk) throw new Error('kvmkit has no VirtualMachine.resizeDisk() yet');
      await control.resizeDisk.call(vm, index, BigInt(bytes));
    },
    async balloon(bytes) {
      if (!control.balloon) throw new Error('kvmkit has no VirtualMachine.balloon() yet');
      await control.balloon.call(vm, bytes);
    },
    async writeConsole(text) {
      vm.console.write(text);
    },
    consoleOutput: () => vm.console.output,
  };
  const steps = new StepRunner(check.steps, ctl, (text) => vm.serial.write(text));
  vm.on('serial', () => steps.onOutput(vm.serial.output));
  const t0 = performance.now();
  await vm.start(); // a command line longer than the kernel takes is a ConfigError here
  const timer = setTimeout(() => void vm.stop(), timeoutMs);
  const info = await vm.exited;
  clearTimeout(timer);
  await steps.idle();
  const output = vm.serial.output;
  const lines = consoleLines(output);
  const exit = lines.map((l) => /^KVMKIT-EXIT status=(\d+)$/.exec(l)).find(Boolean);
  const crash = info.crash ? `\n[host] crash: ${JSON.stringify(info.crash)}\n` : '';
  return {
    vmm: 'kvmkit', lines, output: output + crash, console: vm.console.output, exitStatus: exit ? Number(exit[1]) : undefined,
    poweredOff: info.reason === 'poweroff', ms: performance.now() - t0, stepErrors: steps.errors, stepsRun: steps.ran,
  };
}
