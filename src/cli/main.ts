#!/usr/bin/env node
/**
 * The `kvmkit` command line, in crosvm's syntax. `kvmkit run [options] KERNEL` boots a guest with
 * its serial console on this terminal; `kvmkit stop|suspend|resume|status|balloon|balloon_stats|disk
 * resize ... SOCK` drive a running one through its control socket (`run -s SOCK`).
 * @module
 */
import { Command, Help, InvalidArgumentError } from 'commander';
import { KvmkitError } from '../errors';
import { writeDeviceTreeBlob } from '../arch/aarch64';
import {
  BLOCK_OPTION_HELP, SERIAL_OPTION_HELP, SHARED_DIR_OPTION_HELP, parseBlockOption, parseCpusOption, parseMemOption, parseSerialOption, parseSharedDirOption,
} from '../config';
import { runConfig, runGuest, type RunFlags } from './runCommand';
import { addControlCommands } from './controlCommands';
import { bareSerialBeforeKernel } from './bareSerial';

/** A commander argument parser from one of kvmkit's option parsers (its ConfigError becomes commander's usage error). */
function via<T>(parse: (text: string) => T): (text: string) => T {
  return (text) => {
    try {
      return parse(text);
    } catch (e) {
      if (e instanceof KvmkitError) throw new InvalidArgumentError(e.message);
      throw e;
    }
  };
}

/** The same, collecting every occurrence of a repeatable option. */
function collect<T>(parse: (text: string) => T): (text: string, previous: T[] | undefined) => T[] {
  const one = via(parse);
  return (text, previous) => [...(previous ?? []), one(text)];
}

/**
 * crosvm's help layout: an option's multi-line description (its valid keys and their defaults)
 * stays as written, every line indented to the description column.
 */
function formatItem(this: Help, term: string, termWidth: number, description: string, helper: Help): string {
  if (!description.includes('\n')) return Help.prototype.formatItem.call(this, term, termWidth, description, helper);
  return `  ${term.padEnd(termWidth)}  ${description.replace(/\n/g, `\n${' '.repeat(termWidth + 4)}`)}`;
}

const program = new Command('kvmkit')
  .description('A virtual machine monitor for Node.js on KVM, with crosvm\'s command line')
  .configureHelp({ formatItem })
  .showHelpAfterError('(add --help for the options)');

program
  .command('run')
  .summary('boot a guest kernel (crosvm run)')
  .description('Boot a guest kernel with its serial console on this terminal.')
  .addHelpText(
    'after',
    `
Config files: --cfg FILE reads a JSON object whose keys are the options above without "--"
(kernel, cpus, mem, block, initrd, params, socket, serial, shared-dir, no-balloon) plus "cfg" (files to
include, applied first). Files merge in order: later values of once-only options win, block
devices, params and shared directories add up. Options on the command line override every file,
wherever they stand. Example vm.json:
  {"kernel": "/path/to/bzImage", "cpus": {"num-cores": 2}, "mem": {"size": 512},
   "block": [{"path": "/path/to/root.img", "root": true}]}
and "kvmkit run --cfg vm.json --block home.img" gives two disks, root.img first.

Exit code: 0 after guest poweroff, Ctrl-C or "kvmkit stop", 32 after a guest reboot, 34 after a
crash, 130 after a second Ctrl-C while the guest was stopping, 1 for any other failure (with a
message).`,
  )
  .argument('[KERNEL]', 'bzImage of the kernel to run (or --kernel, or "kernel" in a --cfg file)')
  .option('--kernel <PATH>', 'bzImage of the kernel to run (same as KERNEL)')
  .option('-c, --cpus <N>', 'number of vCPUs: N or num-cores=N (default: 1)', via(parseCpusOption))
  .option('-m, --mem <N>', 'guest memory in MiB: N or size=N (default: 256)', via(parseMemOption))
  .option('-b, --block <PATH[,key=value[,...]]>', BLOCK_OPTION_HELP, collect(parseBlockOption))
  .option('-i, --initrd <PATH>', 'initial ramdisk to load')
  .option('-p, --params <PARAMS>', 'extra kernel command line arguments (repeatable), after\nkvmkit\'s own console=ttyS0 reboot=k panic=-1', collect(String))
  .option('-s, --socket <PATH>', 'path to put the control socket (mode 0600, removed on exit).\nIf PATH is a directory, the socket is PATH/kvmkit-<pid>.sock')
  .option('--serial [type=TYPE[,key=value]]', SERIAL_OPTION_HELP, via(parseSerialOption))
  .option('--shared-dir <PATH:TAG:type=fs[:key=value]>', SHARED_DIR_OPTION_HELP, collect(parseSharedDirOption))
  .option('--no-balloon', 'don\'t add the virtio-balloon device (there by default, as in crosvm;\n"kvmkit balloon" drives it)')
  .option('--cfg <CONFIG_FILE>', 'JSON configuration file (repeatable; see below)', collect(String))
  .action(async (kernel: string | undefined, opts: Partial<RunFlags>) => {
    const flags: RunFlags = { params: [], block: [], cfg: [], sharedDir: [], ...opts };
    process.exitCode = await runGuest(runConfig(kernel, flags));
  });

program
  .command('dump-fdt')
  .description("write the aarch64 flattened device tree kvmkit would give a guest (like crosvm's --dump-device-tree-blob)")
  .argument('<out>', 'file to write the DTB to')
  .option('-c, --cpus <N>', 'number of vCPUs: N or num-cores=N', via(parseCpusOption), 1)
  .option('-m, --mem <N>', 'guest memory in MiB: N or size=N', via(parseMemOption), 256)
  .option('-i, --initrd <PATH>', 'initrd / initramfs image (needs --kernel: its address follows the kernel)')
  .option('-p, --params <PARAMS>', 'kernel command line (repeatable)', collect(String), [] as string[])
  .option('-k, --kernel <PATH>', 'arm64 Image (only its header and size are read)')
  .action(async (out: string, opts: { cpus: number; mem: number; initrd?: string; kernel?: string; params: string[] }) => {
    const r = await writeDeviceTreeBlob({ mem: opts.mem, cpus: opts.cpus, cmdline: opts.params.join(' '), kernel: opts.kernel, initrd: opts.initrd }, out);
    process.stderr.write(`kvmkit: wrote ${r.size} bytes of device tree to ${out}\n`);
  });

addControlCommands(program);

program.parseAsync(bareSerialBeforeKernel(process.argv)).catch((e: unknown) => {
  const msg = e instanceof KvmkitError ? e.message : e instanceof Error ? e.stack ?? e.message : String(e);
  process.stderr.write(`kvmkit: ${msg}\n`);
  process.exit(1);
});
