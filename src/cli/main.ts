#!/usr/bin/env node
/**
 * The `kvmkit` command line (crosvm-style). `kvmkit run [options] KERNEL` boots a guest with its
 * serial console on this terminal.
 * @module
 */
import { Command, InvalidArgumentError } from 'commander';
import { VirtualMachine } from '../vm/VirtualMachine';
import { KvmkitError } from '../errors';
import { writeDeviceTreeBlob } from '../arch/aarch64';

function int(name: string) {
  return (v: string): number => {
    if (!/^\d+$/.test(v)) throw new InvalidArgumentError(`${name} must be a positive integer, got ${JSON.stringify(v)}`);
    return Number(v);
  };
}

/** The machine-shape options `run` and `dump-fdt` share. */
function machineOptions(cmd: Command, initrdHelp: string): Command {
  return cmd
    .option('-c, --cpus <n>', 'number of vCPUs', int('--cpus'), 1)
    .option('-m, --mem <mib>', 'guest RAM in MiB', int('--mem'), 256)
    .option('-i, --initrd <path>', initrdHelp)
    .option('-p, --params <params>', 'kernel command line (repeatable)', (v: string, prev: string[]) => [...prev, v], [] as string[]);
}

/** Exit codes of `kvmkit run`. */
const EXIT_CODE = { poweroff: 0, stopped: 0, reboot: 32, crash: 34 } as const;

const program = new Command('kvmkit').description('A virtual machine monitor for Node.js on KVM').showHelpAfterError();

machineOptions(
  program
    .command('run')
    .description('boot a guest kernel; its serial console is this terminal. Exit code: 0 after poweroff or Ctrl-C, 32 after a guest reboot, 34 after a crash')
    .argument('<kernel>', 'kernel image (bzImage)'),
  'initrd / initramfs image',
)
  .option('--serial', 'connect the guest console to stdin/stdout (default when stdout is a terminal or piped)', true)
  .action(async (kernel: string, opts: { cpus: number; mem: number; initrd?: string; params: string[] }) => {
    const vm = new VirtualMachine({ kernel, initrd: opts.initrd, cpus: opts.cpus, mem: opts.mem, params: opts.params });
    vm.on('serial', (c) => process.stdout.write(c));
    vm.on('recovered', (r) => process.stderr.write(`kvmkit: vCPU ${r.vcpu} stepped over ${r.what} at ${r.rip}\n`));
    const onData = (d: Buffer): void => vm.serial.write(d);
    const onSigint = (): void => void vm.stop();
    process.on('SIGINT', onSigint);
    process.on('SIGTERM', onSigint);
    await vm.start();
    if (process.stdin.isTTY) process.stdin.setRawMode(false);
    process.stdin.on('data', onData);
    const info = await vm.exited;
    process.stdin.off('data', onData);
    process.stdin.pause();
    process.off('SIGINT', onSigint);
    process.off('SIGTERM', onSigint);
    if (info.reason === 'crash') process.stderr.write(`\nkvmkit: guest crashed: ${JSON.stringify(info.crash, null, 2)}\n`);
    else process.stderr.write(`\nkvmkit: guest ended: ${info.reason}\n`);
    process.exitCode = EXIT_CODE[info.reason];
  });

machineOptions(
  program
    .command('dump-fdt')
    .description("write the aarch64 flattened device tree kvmkit would give a guest (like crosvm's --dump-device-tree-blob)")
    .argument('<out>', 'file to write the DTB to'),
  'initrd / initramfs image (needs --kernel: its address follows the kernel)',
)
  .option('-k, --kernel <path>', 'arm64 Image (only its header and size are read)')
  .action(async (out: string, opts: { cpus: number; mem: number; initrd?: string; kernel?: string; params: string[] }) => {
    const r = await writeDeviceTreeBlob({ mem: opts.mem, cpus: opts.cpus, cmdline: opts.params.join(' '), kernel: opts.kernel, initrd: opts.initrd }, out);
    process.stderr.write(`kvmkit: wrote ${r.size} bytes of device tree to ${out}\n`);
  });

program.parseAsync(process.argv).catch((e: unknown) => {
  const msg = e instanceof KvmkitError ? e.message : e instanceof Error ? e.stack ?? e.message : String(e);
  process.stderr.write(`kvmkit: ${msg}\n`);
  process.exit(1);
});
