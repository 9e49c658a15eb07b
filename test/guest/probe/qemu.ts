/**
 * Run the probe under QEMU (`-kernel probe.bin`) and collect its PROBE lines. Used to
 * cross-validate kvmkit: the same image must report the same results on both.
 * The command lines are the ones documented in README.md ("Running under QEMU").
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseProbeLines, probeLines, type ProbeRecord } from './parse';

export const QEMU_BINARY = process.env.KVMKIT_QEMU ?? 'qemu-system-x86_64';

const here = dirname(fileURLToPath(import.meta.url));
/** Default image location: `make -C test/guest/probe` writes test/fixtures/probe.bin. */
export const DEFAULT_PROBE_IMAGE = resolve(here, '../../fixtures/probe.bin');

export interface QemuProbeOptions {
  machine: 'pc' | 'microvm';
  /** Extra machine properties, e.g. 'acpi=off' gives `-M microvm,acpi=off`. */
  machineOptions?: string;
  accel: 'tcg' | 'kvm';
  cpus: number;
  memMiB: number;
  initrd?: string;
  /** Kernel command line (probe options such as `probe.cmd=echo`). */
  append: string;
  /** Kill QEMU (SIGKILL) after this long; the result then has `timedOut: true`. */
  timeoutMs: number;
  /** Bytes typed on the serial console, written once `stdinAfter` matches the output. */
  stdin?: string;
  /** When to write `stdin` (default: the `PROBE echo_ready` line). */
  stdinAfter?: RegExp;
  /** The probe image (default test/fixtures/probe.bin). */
  kernel?: string;
  /** Extra QEMU arguments (e.g. devices). */
  extraArgs?: string[];
}

export interface QemuProbeResult {
  /** The PROBE lines, from `PROBE` on, without CR. */
  lines: string[];
  /** The parsed PROBE records, in order (see parse.ts). */
  probe: ProbeRecord[];
  /** QEMU's exit code; null if it was killed (time-out). */
  exitCode: number | null;
  /** Everything QEMU wrote to stdout and stderr. */
  output: string;
  timedOut: boolean;
  durationMs: number;
  /** The argv used, for error messages. */
  argv: string[];
}

/** True if the QEMU binary can be run. */
export function qemuAvailable(): boolean {
  const r = spawnSync(QEMU_BINARY, ['--version'], { stdio: 'ignore' });
  return r.status === 0;
}

/** The QEMU arguments for these options (README.md lists the same command lines). */
export function qemuProbeArgs(opts: QemuProbeOptions): string[] {
  const kernel = opts.kernel ?? DEFAULT_PROBE_IMAGE;
  const args = ['-M', opts.machineOptions ? `${opts.machine},${opts.machineOptions}` : opts.machine];
  if (opts.accel === 'kvm') {
    // QEMU 7.2 on this host's KVM aborts without -arch-capabilities ("failed to set MSR 0x10a").
    args.push('-accel', 'kvm', '-cpu', 'host,-arch-capabilities');
  } else {
    args.push('-accel', 'tcg');
  }
  args.push('-m', String(opts.memMiB), '-smp', String(opts.cpus), '-kernel', kernel);
  if (opts.initrd) args.push('-initrd', opts.initrd);
  args.push('-append', opts.append);
  args.push('-nographic', '-serial', 'stdio', '-monitor', 'none', '-no-reboot');
  if (opts.extraArgs) args.push(...opts.extraArgs);
  return args;
}

export function runProbeUnderQemu(opts: QemuProbeOptions): Promise<QemuProbeResult> {
  const kernel = opts.kernel ?? DEFAULT_PROBE_IMAGE;
  if (!existsSync(kernel)) {
    return Promise.reject(
      new Error(`probe image ${kernel} not found: build it with \`make -C ${here} OUT=${dirname(kernel)}\``),
    );
  }
  const argv = qemuProbeArgs({ ...opts, kernel });
  const started = Date.now();
  return new Promise((resolvePromise, reject) => {
    const child = spawn(QEMU_BINARY, argv, { stdio: ['pipe', 'pipe', 'pipe'] });
    let output = '';
    let stdout = '';
    let timedOut = false;
    let stdinSent = opts.stdin === undefined;
    const stdinAfter = opts.stdinAfter ?? /PROBE echo_ready/;
    const onData = (chunk: Buffer) => {
      output += chunk.toString('latin1');
      if (!stdinSent && stdinAfter.test(output)) {
        stdinSent = true;
        child.stdin.write(opts.stdin!);
      }
    };
    // PROBE lines come from the guest's serial port (stdout) only: a QEMU message on stderr must
    // not land in the middle of one.
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString('latin1');
      onData(chunk);
    });
    child.stderr.on('data', onData);
    child.stdin.on('error', () => {}); // QEMU may exit before reading
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, opts.timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ${QEMU_BINARY}: ${err.message}`));
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolvePromise({
        lines: probeLines(stdout),
        probe: parseProbeLines(stdout),
        exitCode: timedOut ? null : code,
        output,
        timedOut,
        durationMs: Date.now() - started,
        argv: [QEMU_BINARY, ...argv],
      });
    });
  });
}

/** Build the probe with make into `outDir` and return the image path. */
export function buildProbe(outDir: string): string {
  const r = spawnSync('make', ['-s', '-C', here, `OUT=${outDir}`], { encoding: 'utf8' });
  if (r.status !== 0) {
    throw new Error(`building the probe failed (make -C ${here} OUT=${outDir}):\n${r.stdout}${r.stderr}`);
  }
  return join(outDir, 'probe.bin');
}
