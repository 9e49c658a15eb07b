/**
 * Boots a check on kvmkit with kvmkit's own devices, with the same script and kernel command line
 * as the QEMU twin (kvmkit adds `root=` for a root disk itself). A virtio-fs allowlist is driven
 * through its control socket with crosvm's wire protocol, as a user's other process would.
 */
import { join } from 'node:path';
import { VirtualMachine, VirtioBalloon, VirtioBlock, VirtioConsole, VirtioFs, VirtioRng, type VmDevice } from '../../../src';
import { SeqpacketConnection } from '../../../src/net';
import { HAS_KVM, IS_PVM, ensureProbe } from '../../helpers/env';
import { checkParams, FIXTURE_MISSING, INITRD, KERNEL, linuxFixture } from './fixture';
import { consoleLines, StepRunner, type DeviceSpec, type HostControl, type LinuxCheck, type TwinRun } from './spec';

/** Why the kvmkit run skips here, or ''. On a PVM host it runs only with KVMKIT_LINUX_TESTS=1. */
export function kvmkitSkipReason(): string {
  if (!HAS_KVM) return '/dev/kvm does not exist';
  if (FIXTURE_MISSING) return FIXTURE_MISSING;
  if (IS_PVM && process.env.KVMKIT_LINUX_TESTS !== '1') {
    return 'this host is a paravirtual KVM (kvm_pvm): Debian\'s kernel boots, but guest user space segfaults at its first system call '
      + '(entry_SYSCALL_64, a PVM host limitation, see `issues stops`), so init never runs; run on demand with KVMKIT_LINUX_TESTS=1. '
      + 'The QEMU TCG twin in this file runs the same script';
  }
  return '';
}

/** One request on a virtio-fs allowlist socket (`{"AddPaths":{"paths":[…]}}`); throws unless the answer is "Ok". */
async function allowlistRequest(socket: string, command: 'AddPaths' | 'RemovePaths', paths: string[]): Promise<void> {
  const conn = SeqpacketConnection.connect(socket);
  try {
    conn.send(JSON.stringify({ [command]: { paths } }));
    const answer: unknown = JSON.parse(Buffer.from(await conn.nextMessage()).toString('utf8'));
    if (answer !== 'Ok') throw new Error(`allowlist socket answered ${JSON.stringify(answer)} to ${command}`);
  } finally {
    conn.close();
  }
}

function makeDevice(d: DeviceSpec, i: number, dir: string): VmDevice {
  switch (d.kind) {
    case 'blk':
      return new VirtioBlock({ path: d.path, ro: d.ro, root: d.root, id: d.id, blockSize: d.blockSize, sparse: d.sparse, directIo: d.directIo });
    case 'rng':
      return new VirtioRng();
    case 'console':
      return new VirtioConsole();
    case 'balloon':
      return new VirtioBalloon({ deflateOnOom: d.deflateOnOom });
    case 'fs':
      return new VirtioFs({
        sharedDir: d.sharedDir, tag: d.tag, cache: d.cache, allowedPaths: d.allowedPaths,
        allowlistSocket: d.allowedPaths ? join(dir, `allowlist${i}.sock`) : undefined,
      });
  }
}

/**
 * Boots `check` on kvmkit; `dir` holds the sockets. Resolves when the guest ends or `timeoutMs`
 * passes (then it is stopped).
 */
export async function bootKvmkit(check: LinuxCheck, dir: string, timeoutMs: number): Promise<TwinRun> {
  ensureProbe(); // builds the vCPU worker bundle on a direct vitest run
  const params = [...(IS_PVM ? linuxFixture.SLOW_HOST_CMDLINE.split(' ') : ['quiet']), ...checkParams(check)];
  const devices = check.devices.map((d, i) => makeDevice(d, i, dir));
  const vm = new VirtualMachine({ kernel: KERNEL, initrd: INITRD, cpus: check.cpus ?? 2, mem: check.mem ?? 512, devices, params });
  const shares = devices.filter((d): d is VirtioFs => d instanceof VirtioFs);
  const socket = (i: number): string => {
    const s = shares[i]?.allowlistSocket;
    if (!s) throw new Error(`virtio-fs device ${i} has no allowlist socket`);
    return s;
  };
  const ctl: HostControl = {
    resizeDisk: (index, bytes) => vm.resizeDisk(index, bytes),
    balloon: (bytes) => vm.balloon(bytes),
    allowPaths: (i, paths) => allowlistRequest(socket(i), 'AddPaths', paths),
    revokePaths: (i, paths) => allowlistRequest(socket(i), 'RemovePaths', paths),
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
    vmm: 'kvmkit', cmdline: vm.cmdline, lines, output: output + crash, console: vm.console.output, exitStatus: exit ? Number(exit[1]) : undefined,
    poweredOff: info.reason === 'poweroff', ms: performance.now() - t0, stepErrors: steps.errors, stepsRun: steps.ran,
  };
}
