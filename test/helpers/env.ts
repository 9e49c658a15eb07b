import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';

/** Repository root. */
export const ROOT = resolve(__dirname, '..', '..');
export const FIXTURES = join(ROOT, 'test', 'fixtures');
export const PROBE_BIN = join(FIXTURES, 'probe.bin');

/** True when this machine has /dev/kvm; KVM tests run whenever it exists. */
export const HAS_KVM = existsSync('/dev/kvm');
/** True on a paravirtual nested KVM (DESIGN.md): Linux boots are slow there and run on demand. */
export const IS_PVM = existsSync('/sys/module/kvm_pvm');

let warned = false;
/** Say loudly why KVM tests skip. */
export function warnNoKvm(): void {
  if (!HAS_KVM && !warned) {
    warned = true;
    console.warn('\n*** SKIPPING every test that boots a guest on KVM: /dev/kvm does not exist on this machine ***\n');
  }
}

/** Build the probe (and the vCPU worker bundle) if a direct `vitest` run skipped `npm test`'s set-up. */
export function ensureProbe(): string {
  if (!existsSync(PROBE_BIN)) execFileSync('node', [join(ROOT, 'scripts', 'fixtures.mjs'), 'probe'], { stdio: 'inherit' });
  if (!existsSync(join(ROOT, 'dist', 'vcpu-worker.js'))) execFileSync('npx', ['tsup'], { cwd: ROOT, stdio: 'inherit' });
  return PROBE_BIN;
}

/** Open file descriptors and threads of this process (for leak checks). */
export function processResources(): { fds: number; threads: number } {
  return { fds: readdirSync('/proc/self/fd').length, threads: readdirSync('/proc/self/task').length };
}
