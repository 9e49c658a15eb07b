// Pieces every benchmark here uses: medians, running a helper command, the host TSC rate, the
// k=v fields of a PROBE line, command-line flags and the JSON result file.
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';

/** The median of a list of numbers. */
export const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/** Run `cmd` to completion (SIGKILL after `timeoutMs`); resolves with its exit and its stdout and stderr. */
export function run(cmd, args, timeoutMs) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d.toString('latin1')));
    child.stderr.on('data', (d) => (err += d.toString('latin1')));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ${cmd}: ${e.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, out, err });
    });
  });
}

/** The host TSC frequency in kHz (the guest's TSC runs at the host's rate on KVM). */
export function hostTscKhz() {
  const m = /^cpu MHz\s*:\s*([\d.]+)/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
  if (!m) throw new Error('cannot read the TSC frequency from /proc/cpuinfo: pass --tsc-khz N');
  return Math.round(Number(m[1]) * 1000);
}

/** The `k=v` fields of the rest of a PROBE line, into `rec`. */
export function keyValues(text, rec = {}) {
  for (const tok of text.trim().split(/\s+/)) {
    const eq = tok.indexOf('=');
    if (eq > 0) rec[tok.slice(0, eq)] = tok.slice(eq + 1);
  }
  return rec;
}

/** The value after `--name` on this process's command line, or undefined. */
export function flag(name) {
  const argv = process.argv.slice(2);
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
}

/** Write a bench's `result` as JSON to `out` (creating its folder) and say where. */
export function saveResult(out, result, log) {
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify(result, null, 1)}\n`);
  log(`\nEvery run's figures: ${out}`);
}
