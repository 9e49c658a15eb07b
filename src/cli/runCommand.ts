/**
 * `kvmkit run`: merge the `--cfg` files and the command line (crosvm's rules), boot the guest, connect
 * its serial console, stop it on Ctrl-C, and turn how it ended into the exit code.
 * @module
 */
import { createWriteStream, type WriteStream } from 'node:fs';
import { VirtualMachine } from '../vm/VirtualMachine';
import type { ExitReason } from '../vm/VirtualMachine';
import { ConfigError } from '../errors';
import {
  DEFAULT_SERIAL, emptyConfig, loadConfigFiles, mergeConfig, toVmOptions, type KvmkitConfig, type SerialOptions, type SharedDirOptions,
} from '../config';
import type { VirtioBlockOptions } from '../devices/virtio/block/VirtioBlockOptions';

/** Exit codes of `kvmkit run`: 0 after poweroff or Ctrl-C, 32 after a guest reboot, 34 after a crash. */
export const EXIT_CODE: Readonly<Record<ExitReason, number>> = { poweroff: 0, stopped: 0, reboot: 32, crash: 34 };

/** Exit code after a second Ctrl-C while the guest was stopping (128 + SIGINT, as shells report it). */
export const EXIT_INTERRUPTED = 130;

/** What commander hands the `run` action (parsed per option; undefined when not given). */
export interface RunFlags {
  kernel?: string;
  cpus?: number;
  mem?: number;
  initrd?: string;
  params: string[];
  block: VirtioBlockOptions[];
  socket?: string;
  serial?: SerialOptions | true;
  cfg: string[];
  sharedDir: SharedDirOptions[];
  /** false with `--no-balloon` (commander's default for it is true: not given). */
  balloon?: boolean;
}

/**
 * The command line as one configuration layer: it is merged after every `--cfg` file, so it
 * overrides them wherever it stands.
 * @throws ConfigError when the kernel is given both as KERNEL and as --kernel
 */
export function commandLineConfig(kernelArg: string | undefined, flags: RunFlags): KvmkitConfig {
  if (kernelArg !== undefined && flags.kernel !== undefined && kernelArg !== flags.kernel) {
    throw new ConfigError('kernel', `is given twice: as KERNEL (${kernelArg}) and as --kernel`, flags.kernel);
  }
  return {
    ...emptyConfig(),
    kernel: kernelArg ?? flags.kernel,
    initrd: flags.initrd,
    cpus: flags.cpus,
    mem: flags.mem,
    socket: flags.socket,
    serial: flags.serial === true ? { ...DEFAULT_SERIAL } : flags.serial,
    noBalloon: flags.balloon === false ? true : undefined,
    params: flags.params,
    block: flags.block,
    sharedDirs: flags.sharedDir,
  };
}

/** `--cfg` files merged in order, then the command line over them. */
export function runConfig(kernelArg: string | undefined, flags: RunFlags): KvmkitConfig {
  return mergeConfig(loadConfigFiles(flags.cfg), commandLineConfig(kernelArg, flags));
}

/** Boot the configured guest and wait for it to end; resolves to the exit code. */
export async function runGuest(config: KvmkitConfig): Promise<number> {
  const serial = config.serial ?? DEFAULT_SERIAL;
  const vm = new VirtualMachine(await toVmOptions(config));
  let out: WriteStream | undefined;
  if (serial.type === 'stdout') vm.on('serial', (c) => process.stdout.write(c));
  else if (serial.type === 'file') {
    const file = createWriteStream(serial.path!, { flags: 'a' });
    file.on('error', (e) => process.stderr.write(`kvmkit: serial output file ${serial.path}: ${e.message}\n`));
    vm.on('serial', (c) => file.write(c));
    out = file;
  }
  vm.on('recovered', (r) => process.stderr.write(`kvmkit: vCPU ${r.vcpu} stepped over ${r.what} at ${r.rip}\n`));
  const onData = (d: Buffer): void => vm.serial.write(d);
  let signals = 0;
  const onSignal = (): void => {
    // The first Ctrl-C stops the guest cleanly; another while it is stopping gives up on it.
    if (++signals > 1) {
      process.stderr.write('\nkvmkit: interrupted again while stopping the guest: exiting at once\n');
      process.exit(EXIT_INTERRUPTED);
    }
    vm.stop().catch((e: unknown) => process.stderr.write(`kvmkit: stopping the guest failed: ${(e as Error).message}\n`));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    await vm.start();
    if (vm.controlSocket !== undefined) process.stderr.write(`kvmkit: control socket ${vm.controlSocket}\n`);
    if (serial.stdin) {
      if (process.stdin.isTTY) process.stdin.setRawMode(false);
      process.stdin.on('data', onData);
    }
    const info = await vm.exited;
    if (info.reason === 'crash') process.stderr.write(`\nkvmkit: guest crashed: ${JSON.stringify(info.crash, null, 2)}\n`);
    else process.stderr.write(`\nkvmkit: guest ended: ${info.reason}\n`);
    return EXIT_CODE[info.reason];
  } finally {
    process.stdin.off('data', onData);
    process.stdin.pause();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    out?.end();
  }
}
