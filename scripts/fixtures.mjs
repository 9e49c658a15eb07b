#!/usr/bin/env node
// Test and example fixtures, made on a fresh machine: the host tools the tests call (from Debian),
// the probe guest (built with gcc), and the Debian Linux guest (kernel + initramfs).
// Usage: node scripts/fixtures.mjs [all|tools|probe|linux]   (default: all)
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const fixtures = join(root, 'test', 'fixtures');
const what = process.argv[2] ?? 'all';
const log = (m) => process.stderr.write(`fixtures: ${m}\n`);

// Debian packages the test suite uses, by the command that proves each is installed.
const TOOLS = {
  'qemu-system-x86_64': 'qemu-system-x86',
  cpio: 'cpio',
  dtc: 'device-tree-compiler',
  fdtget: 'device-tree-compiler',
  'mkfs.ext4': 'e2fsprogs',
  debugfs: 'e2fsprogs',
  xz: 'xz-utils',
  zstd: 'zstd',
  gcc: 'gcc',
  make: 'make',
};

function have(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

function ensureTools() {
  const missing = [...new Set(Object.entries(TOOLS).filter(([cmd]) => !have(cmd)).map(([, pkg]) => pkg))];
  if (missing.length === 0) return;
  if (process.getuid?.() !== 0) {
    throw new Error(`missing Debian packages ${missing.join(' ')}: install them with sudo apt-get install -y ${missing.join(' ')}`);
  }
  log(`installing ${missing.join(' ')} with apt-get`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  execFileSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
  execFileSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...missing], { stdio: 'inherit', env });
}

function buildProbe() {
  mkdirSync(fixtures, { recursive: true });
  log('building the probe guest');
  execFileSync('make', ['-s', '-C', join(root, 'test', 'guest', 'probe'), `OUT=${fixtures}`], { stdio: 'inherit' });
}

async function buildLinux() {
  const script = join(root, 'scripts', 'linux-fixture.mjs');
  const { ensureLinuxFixture } = await import(script);
  await ensureLinuxFixture({ outDir: join(fixtures, 'linux'), force: false });
}

try {
  if (what === 'all' || what === 'tools') ensureTools();
  if (what === 'all' || what === 'probe') buildProbe();
  if (what === 'all' || what === 'linux') await buildLinux();
} catch (e) {
  log(e instanceof Error ? e.message : String(e));
  process.exit(1);
}
