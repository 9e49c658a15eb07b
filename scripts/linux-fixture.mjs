#!/usr/bin/env node
// The Linux guest fixture for kvmkit's tests and examples, made from Debian packages only:
//   vmlinuz            Debian's cloud kernel (linux-image-cloud-amd64 -> linux-image-<abi>-cloud-amd64)
//   initramfs.cpio.gz  busybox-static, the virtio (and virtiofs) modules with their dependencies,
//                      and an /init that loads them and runs what the kernel command line asks
//   manifest.json      package versions, module load order, sizes and sha256 of every output
//   stamp.json         what the outputs were made from; the work is skipped while it still matches
// The initramfs is written with kvmkit's own CpioWriter/Initramfs (the built library, ../dist).
//
// Usage: node scripts/linux-fixture.mjs [--out DIR] [--force]
//   or:  import { ensureLinuxFixture } from './linux-fixture.mjs'; await ensureLinuxFixture({ outDir, force })
//
// The guest protocol (kernel command line -> console):
//   kvmkit.run=<base64 of a shell script>   run with `sh -c` once the modules are loaded
//   kvmkit.runz=<base64 of a gzipped script> the same, for scripts too long for the command line
//   kvmkit.after=poweroff|reboot|shell      what follows the script (default poweroff -f)
//   root=/dev/vdX [rootfstype=T] [ro|rw]    mount that disk and switch_root to it (its /sbin/init,
//   root=TAG rootfstype=virtiofs [ro|rw]    e.g. scripts/rootfs.mjs's, then runs the protocol below)
//   console lines: KVMKIT-READY, KVMKIT-EXIT status=<code>, KVMKIT-MODULE-FAILED <path>,
//     KVMKIT-ROOT <source> <fstype> <options> (from a switched-to root), KVMKIT-ROOT-FAILED <why>
//   no kvmkit.run: an interactive shell on the console; leaving it powers off.

import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync, gzipSync } from 'node:zlib';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = join(HERE, '..');

/** Where the fixture goes unless `--out`/`outDir` says otherwise (git-ignored). */
export const DEFAULT_OUT_DIR = join(ROOT, 'test', 'fixtures', 'linux');
/** Debian metapackage that names the current cloud kernel. */
export const KERNEL_META_PACKAGE = 'linux-image-cloud-amd64';
export const BUSYBOX_PACKAGE = 'busybox-static';
/**
 * Modules the guest loads (their dependencies are added, in load order). Modules the kernel has
 * built in (modules.builtin) are skipped: in Debian 12's cloud kernel that is ext4 and its helpers.
 */
export const DEFAULT_MODULES = [
  'virtio_pci', 'virtio_blk', 'virtio_console', 'virtio_rng', 'virtio_balloon', 'virtiofs', 'ext4',
];
/** Bumped when the image layout or the /init protocol changes, so cached fixtures are rebuilt. */
export const FIXTURE_FORMAT = 2;

export const READY_MARKER = 'KVMKIT-READY';
export const EXIT_MARKER = 'KVMKIT-EXIT';
export const MODULE_FAILED_MARKER = 'KVMKIT-MODULE-FAILED';
/** Printed by a switched-to root's init: `KVMKIT-ROOT <source> <fstype> <mount options>` of `/`. */
export const ROOT_MARKER = 'KVMKIT-ROOT';
/** Printed by the initramfs when `root=` could not be mounted or has no /sbin/init. */
export const ROOT_FAILED_MARKER = 'KVMKIT-ROOT-FAILED';

/** Kernel command line for a machine with fast virtualization (hardware KVM) or QEMU TCG. */
export const BASE_CMDLINE = 'console=ttyS0 panic=-1';
/**
 * Extra command line for hosts where an unmodified kernel runs slowly (this project's paravirtual
 * PVM KVM, see DESIGN.md): fewer privileged instructions (no Spectre/Meltdown entry code, no page
 * table isolation), no lockup watchdogs or TSC watchdog, no crypto self-tests, fewer serial ports
 * probed and less console output (every byte is port I/O).
 */
export const SLOW_HOST_CMDLINE = [
  'mitigations=off', 'nowatchdog', 'nosoftlockup', 'tsc=reliable', 'no_timer_check', 'cryptomgr.notests',
  'init_on_alloc=0', 'page_alloc.shuffle=0', 'audit=0', 'apparmor=0', '8250.nr_uarts=1', 'quiet',
].join(' ');

/** `kvmkit.run=<base64>` for a shell script (the kernel command line is at most 2047 bytes on x86). */
export function runArg(script) {
  return `kvmkit.run=${Buffer.from(script, 'utf8').toString('base64')}`;
}

/**
 * `kvmkit.runz=<base64 of gzip>` for a shell script: about three times as much script fits in the
 * kernel command line (at most 2047 bytes on x86) as with {@link runArg}.
 */
export function runzArg(script) {
  return `kvmkit.runz=${gzipSync(Buffer.from(script, 'utf8'), { level: 9 }).toString('base64')}`;
}

const OUTPUTS = ['vmlinuz', 'initramfs.cpio.gz', 'manifest.json'];
const DEB_ENV = { ...process.env, DEBIAN_FRONTEND: 'noninteractive', LC_ALL: 'C' };

/** An error whose message is shown to the user as is. */
export class FixtureError extends Error {
  constructor(message, options) {
    super(message, options);
    this.name = 'FixtureError';
  }
}

function run(cmd, args, { what, cwd, maxBuffer = 512 * 1024 * 1024, encoding = 'utf8', hint = '' } = {}) {
  const res = spawnSync(cmd, args, { cwd, env: DEB_ENV, encoding, maxBuffer });
  if (res.error) {
    const missing = res.error.code === 'ENOENT' ? ` (${cmd} is not installed)` : '';
    throw new FixtureError(`${what ?? `${cmd} ${args.join(' ')}`} failed: ${res.error.message}${missing}${hint}`, { cause: res.error });
  }
  if (res.status !== 0) {
    const err = (Buffer.isBuffer(res.stderr) ? res.stderr.toString() : res.stderr ?? '').trim().split('\n').slice(-6).join('\n  ');
    throw new FixtureError(`${what ?? `${cmd} ${args.join(' ')}`} failed (exit ${res.status ?? res.signal}): ${err}${hint}`);
  }
  return res.stdout;
}

/** A path for progress lines: relative to the working directory when below it. */
function show(path) {
  const rel = relative(process.cwd(), path);
  return rel === '' ? '.' : rel.startsWith('..') ? path : rel;
}

function sha256(data) {
  return createHash('sha256').update(data).digest('hex');
}

function fileInfo(path) {
  const data = readFileSync(path);
  return { size: data.length, sha256: sha256(data) };
}

/** Names the kernel uses for a module: `virtio-rng.ko.xz` and `virtio_rng` are both `virtio_rng`. */
function moduleName(pathOrName) {
  return basename(pathOrName).replace(/\.ko(\.(xz|zst|gz))?$/, '').replace(/-/g, '_');
}

// ---- apt ----

function aptCacheDepends(pkg) {
  const res = spawnSync('apt-cache', ['depends', pkg], { env: DEB_ENV, encoding: 'utf8' });
  if (res.error) throw new FixtureError(`apt-cache is missing (${res.error.message}): this script needs a Debian system with apt`);
  if (res.status !== 0) return undefined;
  const m = /^\s*Depends:\s*(linux-image-\S+)/m.exec(res.stdout);
  return m ? m[1] : undefined;
}

function aptCandidateVersion(pkg) {
  const res = spawnSync('apt-cache', ['show', '--no-all-versions', pkg], { env: DEB_ENV, encoding: 'utf8' });
  if (res.status !== 0) return undefined;
  return /^Version:\s*(\S+)/m.exec(res.stdout)?.[1];
}

/** The concrete kernel package and the candidate versions, from apt's lists (no network). */
function resolvePackages() {
  const kernelPackage = aptCacheDepends(KERNEL_META_PACKAGE);
  if (!kernelPackage) return undefined;
  const kernelVersion = aptCandidateVersion(kernelPackage);
  const busyboxVersion = aptCandidateVersion(BUSYBOX_PACKAGE);
  if (!kernelVersion || !busyboxVersion) return undefined;
  return { kernelPackage, kernelVersion, busyboxVersion };
}

function aptUpdate(log, reason) {
  if (process.getuid?.() !== 0) {
    throw new FixtureError(`apt knows no ${KERNEL_META_PACKAGE}: run \`sudo apt-get update\` (Debian's package lists are needed), then retry`);
  }
  log(`apt-get update (${reason})`);
  run('apt-get', ['update', '-qq'], { what: 'apt-get update', hint: ' (is Debian\'s archive reachable?)' });
}

// ---- modules ----

/** The NUL-separated `key=value` strings of an ELF64 module's .modinfo section. */
function readModinfo(elf, where) {
  if (elf.length < 64 || elf.readUInt32BE(0) !== 0x7f454c46 || elf[4] !== 2 || elf[5] !== 1) {
    throw new FixtureError(`${where} is not a little-endian ELF64 kernel module`);
  }
  const shoff = Number(elf.readBigUInt64LE(0x28));
  const shentsize = elf.readUInt16LE(0x3a);
  const shnum = elf.readUInt16LE(0x3c);
  const shstrndx = elf.readUInt16LE(0x3e);
  const section = (i) => {
    const o = shoff + i * shentsize;
    return { name: elf.readUInt32LE(o), offset: Number(elf.readBigUInt64LE(o + 0x18)), size: Number(elf.readBigUInt64LE(o + 0x20)) };
  };
  const strtab = section(shstrndx);
  for (let i = 0; i < shnum; i++) {
    const s = section(i);
    const nameStart = strtab.offset + s.name;
    const name = elf.subarray(nameStart, elf.indexOf(0, nameStart)).toString('latin1');
    if (name !== '.modinfo') continue;
    const info = new Map();
    for (const kv of elf.subarray(s.offset, s.offset + s.size).toString('latin1').split('\0')) {
      const eq = kv.indexOf('=');
      if (eq > 0) {
        const key = kv.slice(0, eq);
        info.set(key, [...(info.get(key) ?? []), kv.slice(eq + 1)]);
      }
    }
    return info;
  }
  throw new FixtureError(`${where} has no .modinfo section`);
}

function decompressModule(path) {
  if (path.endsWith('.ko')) return readFileSync(path);
  if (path.endsWith('.ko.xz')) return run('xz', ['-dc', path], { what: `xz -dc ${basename(path)}`, encoding: 'buffer', hint: ' (install xz-utils)' });
  if (path.endsWith('.ko.zst')) return run('zstd', ['-dcq', path], { what: `zstd -dc ${basename(path)}`, encoding: 'buffer', hint: ' (install zstd)' });
  if (path.endsWith('.ko.gz')) return gunzipSync(readFileSync(path));
  throw new FixtureError(`unknown module compression: ${path}`);
}

function walkFiles(dir, out = []) {
  for (const ent of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, ent.name);
    if (ent.isDirectory()) walkFiles(p, out);
    else if (ent.isFile()) out.push(p);
  }
  return out;
}

/**
 * The wanted modules and their dependencies in load order (dependencies first), decompressed.
 * Dependencies come from modules.dep when the package ships one, else from each module's
 * `depends=` modinfo (Debian's linux-image packages leave modules.dep to depmod at install time).
 */
function resolveModules(modDir, wanted) {
  const files = new Map(); // name -> path relative to modDir
  for (const p of walkFiles(join(modDir, 'kernel'))) {
    if (/\.ko(\.(xz|zst|gz))?$/.test(p)) files.set(moduleName(p), relative(modDir, p));
  }
  const builtinPath = join(modDir, 'modules.builtin');
  const builtin = new Set(existsSync(builtinPath) ? readFileSync(builtinPath, 'utf8').split('\n').filter(Boolean).map(moduleName) : []);
  let depFile;
  const depPath = join(modDir, 'modules.dep');
  if (existsSync(depPath)) {
    depFile = new Map();
    for (const line of readFileSync(depPath, 'utf8').split('\n')) {
      const m = /^([^:]+):\s*(.*)$/.exec(line);
      if (m) depFile.set(moduleName(m[1]), m[2].split(/\s+/).filter(Boolean).map(moduleName));
    }
  }
  const order = [];
  const skippedBuiltin = [];
  const state = new Map(); // name -> 'visiting' | 'done'
  const visit = (name, chain) => {
    if (state.get(name) === 'done') return;
    if (state.get(name) === 'visiting') throw new FixtureError(`module dependency cycle: ${[...chain, name].join(' -> ')}`);
    const rel = files.get(name);
    if (!rel) {
      if (builtin.has(name)) {
        if (!skippedBuiltin.includes(name)) skippedBuiltin.push(name);
        state.set(name, 'done');
        return;
      }
      throw new FixtureError(`module ${name} (needed by ${chain.join(' -> ') || 'the fixture'}) is neither a module file nor built into the kernel`);
    }
    state.set(name, 'visiting');
    const data = decompressModule(join(modDir, rel));
    const info = readModinfo(data, rel);
    const deps = depFile?.get(name) ?? (info.get('depends')?.[0] ?? '').split(',').filter(Boolean).map(moduleName);
    for (const dep of deps) visit(dep, [...chain, name]);
    state.set(name, 'done');
    order.push({ name, path: rel.replace(/\.(xz|zst|gz)$/, ''), data, softdep: info.get('softdep') ?? [] });
  };
  for (const name of wanted.map(moduleName)) visit(name, []);
  return { order, skippedBuiltin };
}

// ---- the image ----

/**
 * The kvmkit.run protocol, the part of an init that follows the mounts: the ready marker, the
 * script from `kvmkit.run`, the exit marker, then power-off (or what `kvmkit.after` says). Shared
 * by the initramfs's /init and a switched-to root's /sbin/init (scripts/rootfs.mjs).
 */
export function runnerScript() {
  return `off() {
  # Power-off needs ACPI (FADT and \\_S5); without it the kernel only halts and the VM hangs,
  # so reboot instead (with reboot=k the VMM sees the i8042 reset).
  [ -d /sys/firmware/acpi ] && poweroff -f
  echo "kvmkit: no ACPI, so no power-off: rebooting instead"
  reboot -f
}

finish() {
  sync
  case "$after" in
    reboot) reboot -f ;;
    shell) setsid cttyhack sh; off ;;
    *) off ;;
  esac
  # Only reached if the machine could not power off or reboot: never let init exit.
  while :; do sleep 3600; done
}

set -f
run=
unzip=
after=poweroff
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    kvmkit.run=*) run="\${arg#kvmkit.run=}" ;;
    kvmkit.runz=*) run="\${arg#kvmkit.runz=}"; unzip=1 ;;
    kvmkit.after=*) after="\${arg#kvmkit.after=}" ;;
  esac
done
set +f

# Markers start on a line of their own even after firmware or script output without a newline.
printf '\\n${READY_MARKER}\\n'
if [ -n "$run" ]; then
  # With runz a bad base64 also fails gunzip, the pipeline's status.
  if script=$(if [ -n "$unzip" ]; then echo "$run" | base64 -d | gunzip; else echo "$run" | base64 -d; fi); then
    cd /
    sh -c "$script"
    status=$?
  else
    echo "kvmkit: kvmkit.run(z) is not valid base64 (or gzip)"
    status=125
  fi
  printf '\\n${EXIT_MARKER} status=%d\\n' "$status"
  finish
fi
echo "kvmkit: no kvmkit.run on the kernel command line; starting a shell (exit it to power off)"
setsid cttyhack sh
after=poweroff
finish
`;
}

/**
 * The initramfs's switch to `root=` (the kernel leaves root= to an initramfs when it has one):
 * a block device (waited for, since its driver was just loaded) or, with `rootfstype=virtiofs`, a
 * virtio-fs tag (Debian's virtiofs is a module, so only the initramfs can mount it: the seed's
 * gotcha). `ro`/`rw` as the kernel would (ro unless rw). The new root's /sbin/init takes over;
 * on any failure the initramfs prints ${ROOT_FAILED_MARKER} and carries on itself.
 */
function rootSwitchScript() {
  return `set -f
root=
rootfstype=
rootmode=ro
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    root=*) root="\${arg#root=}" ;;
    rootfstype=*) rootfstype="\${arg#rootfstype=}" ;;
    ro) rootmode=ro ;;
    rw) rootmode=rw ;;
  esac
done
set +f
if [ -n "$root" ]; then
  if [ "$rootfstype" != virtiofs ]; then
    n=0
    while [ ! -b "$root" ] && [ $n -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
  fi
  mkdir -p /newroot
  if ! mount \${rootfstype:+-t "$rootfstype"} -o "$rootmode" "$root" /newroot; then
    echo "${ROOT_FAILED_MARKER} cannot mount $root (type \${rootfstype:-auto}, $rootmode)"
  elif [ ! -x /newroot/sbin/init ]; then
    echo "${ROOT_FAILED_MARKER} $root has no executable /sbin/init"
    umount /newroot
  elif [ ! -d /newroot/dev ] || [ ! -d /newroot/proc ] || [ ! -d /newroot/sys ]; then
    echo "${ROOT_FAILED_MARKER} $root lacks /dev, /proc or /sys"
    umount /newroot
  else
    umount /tmp /run
    mount --move /dev /newroot/dev
    mount --move /proc /newroot/proc
    mount --move /sys /newroot/sys
    exec switch_root /newroot /sbin/init
  fi
fi
`;
}

/** The mounts every init starts with; each is skipped when already there (moved by switch_root). */
function mountsScript() {
  return `export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root TERM=linux
[ -e /proc/self ] || mount -t proc proc /proc
[ -d /sys/kernel ] || mount -t sysfs sysfs /sys
[ -e /dev/null ] || mount -t devtmpfs devtmpfs /dev
mounted() { grep -q "^[^ ]* $1 " /proc/mounts; }
mkdir -p /dev/pts /dev/shm
mounted /dev/pts || mount -t devpts devpts /dev/pts
mounted /tmp || mount -t tmpfs tmpfs /tmp
mounted /run || mount -t tmpfs tmpfs /run
hostname kvmkit
`;
}

/**
 * /sbin/init of a root file system made for the fixture (scripts/rootfs.mjs): the initramfs has
 * loaded the modules and switched to it. It names the root it runs on, then follows the same
 * kvmkit.run protocol as the initramfs.
 */
export function rootInitScript() {
  return `#!/bin/sh
# kvmkit root init, generated by scripts/linux-fixture.mjs (rootInitScript): the initramfs loaded
# the modules and switched to this root; the kernel command line protocol is the initramfs's.
${mountsScript()}
printf '\\n${ROOT_MARKER} %s\\n' "$(awk '$2 == "/" { r = $1 " " $3 " " $4 } END { print r }' /proc/mounts)"
${runnerScript()}`;
}

/** The /init script: mounts, module loading, the switch to root= if asked, then the kvmkit.run protocol. */
export function initScript({ kernelRelease, modulePaths }) {
  const modules = modulePaths.map((p) => `  ${p} \\`).join('\n');
  return `#!/bin/sh
# kvmkit guest init, generated by scripts/linux-fixture.mjs for Linux ${kernelRelease}.
# Kernel command line:
#   kvmkit.run=<base64 script>           run it with sh -c, then print ${EXIT_MARKER} status=<code>
#   kvmkit.runz=<base64 gzipped script>  the same, compressed
#   kvmkit.after=poweroff|reboot|shell   then power off (default), reboot, or open a shell
#   root=/dev/vdX | root=TAG rootfstype=virtiofs, ro|rw: switch_root to it (its /sbin/init)
# Without kvmkit.run: an interactive shell on the console; leaving it powers off.
${mountsScript()}
# Modules in dependency order (decompressed; built-in ones are not listed).
for m in \\
${modules}
; do
  insmod "/lib/modules/${kernelRelease}/$m" || echo "${MODULE_FAILED_MARKER} $m"
done

${rootSwitchScript()}
${runnerScript()}`;
}

function busyboxApplets(busybox) {
  const out = run(busybox, ['--list-full'], { what: 'busybox --list-full' });
  return out.split('\n').map((l) => l.trim()).filter((l) => l.includes('/') && l !== 'bin/busybox');
}

async function loadLibrary() {
  const dist = join(ROOT, 'dist', 'index.js');
  if (!existsSync(dist)) throw new FixtureError(`${show(dist)} is missing: run \`npm run build\` first (the initramfs is written with kvmkit's CpioWriter)`);
  const lib = await import('../dist/index.js');
  if (typeof lib.Initramfs !== 'function' || typeof lib.CpioWriter !== 'function') {
    throw new FixtureError('dist/index.js does not export Initramfs and CpioWriter: rebuild with `npm run build`');
  }
  return lib;
}

/**
 * Makes the Linux fixture in `outDir` unless it is there already and was made from the same
 * package versions, recipe and module list.
 * @param {{ outDir?: string, force?: boolean, modules?: string[], log?: (line: string) => void }} [options]
 * @returns {Promise<{ outDir: string, vmlinuz: string, initramfs: string, manifest: string,
 *   kernelRelease: string, built: boolean }>}
 */
export async function ensureLinuxFixture({ outDir = DEFAULT_OUT_DIR, force = false, modules = DEFAULT_MODULES, log } = {}) {
  const say = log ?? ((line) => process.stderr.write(`linux-fixture: ${line}\n`));
  outDir = resolve(outDir);
  const paths = {
    outDir,
    vmlinuz: join(outDir, 'vmlinuz'),
    initramfs: join(outDir, 'initramfs.cpio.gz'),
    manifest: join(outDir, 'manifest.json'),
  };
  const stampPath = join(outDir, 'stamp.json');
  const recipe = sha256(readFileSync(fileURLToPath(import.meta.url)));
  const stampFor = (p) => JSON.stringify({ format: FIXTURE_FORMAT, recipe, modules, ...p }, null, 2);
  const readStamp = () => (existsSync(stampPath) ? readFileSync(stampPath, 'utf8') : undefined);
  const outputsExist = OUTPUTS.every((f) => existsSync(join(outDir, f)));
  const cached = () => {
    const manifest = JSON.parse(readFileSync(paths.manifest, 'utf8'));
    return { ...paths, kernelRelease: manifest.kernel.release, built: false };
  };

  let pkgs = resolvePackages();
  if (!force && outputsExist) {
    const stamp = readStamp();
    if (pkgs && stamp === stampFor(pkgs)) {
      say(`up to date in ${show(outDir)} (${pkgs.kernelPackage} ${pkgs.kernelVersion})`);
      return cached();
    }
    if (!pkgs && stamp) {
      const old = JSON.parse(stamp);
      if (old.format === FIXTURE_FORMAT && old.recipe === recipe && JSON.stringify(old.modules) === JSON.stringify(modules)) {
        say(`apt's package lists are empty; keeping the fixture made from ${old.kernelPackage} ${old.kernelVersion}`);
        return cached();
      }
    }
  }
  let updated = false;
  const update = (reason) => {
    aptUpdate(say, reason);
    updated = true;
    pkgs = resolvePackages();
    if (!pkgs) throw new FixtureError(`apt-cache cannot resolve ${KERNEL_META_PACKAGE} and ${BUSYBOX_PACKAGE} even after apt-get update: is this Debian (bookworm or later) on amd64?`);
  };
  if (!pkgs) update('apt knows no cloud kernel yet');

  const { Initramfs } = await loadLibrary();
  const work = mkdtempSync(join(tmpdir(), 'kvmkit-linux-fixture-'));
  try {
    // 1. Download and unpack the two packages.
    const debs = join(work, 'debs');
    mkdirSync(debs, { recursive: true });
    say(`downloading ${pkgs.kernelPackage} ${pkgs.kernelVersion} and ${BUSYBOX_PACKAGE} ${pkgs.busyboxVersion}`);
    const sandbox = process.getuid?.() === 0 ? ['-o', 'APT::Sandbox::User=root'] : [];
    const download = () => run('apt-get', ['download', '-q', ...sandbox, `${pkgs.kernelPackage}=${pkgs.kernelVersion}`, `${BUSYBOX_PACKAGE}=${pkgs.busyboxVersion}`], {
      what: 'apt-get download', cwd: debs, hint: ' (is Debian\'s archive reachable? try `apt-get update`)',
    });
    try {
      download();
    } catch (err) {
      // Stale package lists name versions the archive no longer has (a kernel ABI bump): update once.
      if (updated || process.getuid?.() !== 0) throw err;
      say(`${err.message.split('\n')[0]}; retrying after apt-get update`);
      update('the package lists may be stale');
      if (!force && outputsExist && readStamp() === stampFor(pkgs)) {
        say(`up to date in ${show(outDir)} (${pkgs.kernelPackage} ${pkgs.kernelVersion})`);
        return cached();
      }
      rmSync(debs, { recursive: true, force: true });
      mkdirSync(debs);
      say(`downloading ${pkgs.kernelPackage} ${pkgs.kernelVersion} and ${BUSYBOX_PACKAGE} ${pkgs.busyboxVersion}`);
      download();
    }
    const tree = join(work, 'root');
    mkdirSync(tree);
    const versions = {};
    for (const deb of readdirSync(debs).filter((f) => f.endsWith('.deb'))) {
      const [pkg, ver] = run('dpkg-deb', ['-f', join(debs, deb), 'Package', 'Version'], { what: `dpkg-deb -f ${deb}` })
        .trim().split('\n').map((l) => l.replace(/^\w+:\s*/, ''));
      versions[pkg] = ver;
      say(`unpacking ${deb}`);
      run('dpkg-deb', ['-x', join(debs, deb), tree], { what: `dpkg-deb -x ${deb}` });
    }
    if (versions[pkgs.kernelPackage] !== pkgs.kernelVersion || versions[BUSYBOX_PACKAGE] !== pkgs.busyboxVersion) {
      throw new FixtureError(`apt-get download fetched ${JSON.stringify(versions)}, expected ${pkgs.kernelPackage} ${pkgs.kernelVersion} and ${BUSYBOX_PACKAGE} ${pkgs.busyboxVersion}`);
    }

    // 2. The kernel.
    const releases = readdirSync(join(tree, 'lib', 'modules'));
    if (releases.length !== 1) throw new FixtureError(`expected one kernel in ${pkgs.kernelPackage}, found ${releases.join(', ') || 'none'}`);
    const kernelRelease = releases[0];
    const modDir = join(tree, 'lib', 'modules', kernelRelease);
    const vmlinuzSrc = join(tree, 'boot', `vmlinuz-${kernelRelease}`);
    if (!existsSync(vmlinuzSrc)) throw new FixtureError(`${pkgs.kernelPackage} has no boot/vmlinuz-${kernelRelease}`);

    // 3. Modules, in load order.
    const { order, skippedBuiltin } = resolveModules(modDir, modules);
    say(`modules (load order): ${order.map((m) => m.name).join(' ')}; built in: ${skippedBuiltin.join(' ') || 'none'}`);
    for (const m of order) if (m.softdep.length) say(`note: ${m.name} has soft dependencies (${m.softdep.join('; ')}), not added`);

    // 4. The initramfs.
    const busybox = join(tree, 'bin', 'busybox');
    const applets = busyboxApplets(busybox);
    const img = new Initramfs(); // root-owned, mtime 0: the same packages give the same bytes
    for (const d of ['/bin', '/sbin', '/usr/bin', '/usr/sbin', '/etc', '/proc', '/sys', '/run', '/mnt', '/var', '/newroot']) img.mkdir(d);
    img.mkdir('/root', { mode: 0o700 });
    img.mkdir('/tmp', { mode: 0o1777 });
    img.addFileFromPath('/bin/busybox', busybox, { mode: 0o755 });
    for (const a of applets) img.addSymlink(`/${a}`, '/bin/busybox');
    img.addFile('/etc/passwd', 'root:x:0:0:root:/root:/bin/sh\n');
    img.addFile('/etc/group', 'root:x:0:\n');
    const kmod = `/lib/modules/${kernelRelease}`;
    for (const m of order) img.addFile(`${kmod}/${m.path}`, m.data, { mode: 0o644 });
    // A modules.dep for what is in the image, so busybox modprobe (and the kernel's request_module) work too.
    // depmod's format: a module's dependencies, the one to load first last.
    const depLines = order.map((m) => {
      const closure = new Set();
      const collect = (mod) => {
        for (const d of (readModinfo(mod.data, mod.path).get('depends')?.[0] ?? '').split(',').filter(Boolean)) {
          const dm = order.find((o) => o.name === moduleName(d));
          if (dm && !closure.has(dm)) {
            closure.add(dm);
            collect(dm);
          }
        }
      };
      collect(m);
      const deps = order.filter((o) => closure.has(o)).reverse().map((o) => o.path);
      return `${m.path}: ${deps.join(' ')}`.trimEnd();
    });
    img.addFile(`${kmod}/modules.dep`, `${depLines.join('\n')}\n`);
    if (existsSync(join(modDir, 'modules.builtin'))) img.addFileFromPath(`${kmod}/modules.builtin`, join(modDir, 'modules.builtin'), { mode: 0o644 });
    img.setInit(initScript({ kernelRelease, modulePaths: order.map((m) => m.path) }));

    mkdirSync(outDir, { recursive: true });
    rmSync(stampPath, { force: true });
    say(`writing ${show(paths.initramfs)} (${applets.length} busybox applets, ${order.length} modules)`);
    await img.writeFile(paths.initramfs, { gzip: { level: 9 } });
    const tmpKernel = `${paths.vmlinuz}.tmp`;
    copyFileSync(vmlinuzSrc, tmpKernel);
    renameSync(tmpKernel, paths.vmlinuz);

    // 5. Manifest and stamp.
    const manifest = {
      format: FIXTURE_FORMAT,
      kernel: { metaPackage: KERNEL_META_PACKAGE, package: pkgs.kernelPackage, version: pkgs.kernelVersion, release: kernelRelease },
      busybox: { package: BUSYBOX_PACKAGE, version: pkgs.busyboxVersion, applets: applets.length },
      modules: {
        requested: modules,
        builtin: skippedBuiltin,
        loadOrder: order.map((m) => ({ name: m.name, path: `${kmod}/${m.path}`, size: m.data.length, sha256: sha256(m.data) })),
      },
      files: {
        vmlinuz: fileInfo(paths.vmlinuz),
        'initramfs.cpio.gz': fileInfo(paths.initramfs),
      },
      cmdline: { base: BASE_CMDLINE, slowHost: SLOW_HOST_CMDLINE },
      protocol: {
        run: 'kvmkit.run=<base64 of a shell script>',
        runz: 'kvmkit.runz=<base64 of a gzipped shell script>',
        after: 'kvmkit.after=poweroff|reboot|shell',
        ready: READY_MARKER,
        exit: `${EXIT_MARKER} status=<code>`,
        moduleFailed: `${MODULE_FAILED_MARKER} <path>`,
        root: 'root=/dev/vdX | root=TAG rootfstype=virtiofs, ro|rw: switch_root to its /sbin/init',
        rootMounted: `${ROOT_MARKER} <source> <fstype> <options>`,
        rootFailed: `${ROOT_FAILED_MARKER} <why>`,
      },
    };
    writeFileSync(paths.manifest, `${JSON.stringify(manifest, null, 2)}\n`);
    writeFileSync(stampPath, stampFor(pkgs));
    say(`done: vmlinuz ${manifest.files.vmlinuz.size} bytes, initramfs.cpio.gz ${manifest.files['initramfs.cpio.gz'].size} bytes`);
    return { ...paths, kernelRelease, built: true };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

function usage() {
  return `usage: node scripts/linux-fixture.mjs [--out DIR] [--force]
  Makes vmlinuz, initramfs.cpio.gz and manifest.json (default in test/fixtures/linux/) from Debian's
  ${KERNEL_META_PACKAGE} and ${BUSYBOX_PACKAGE}; does nothing when they are up to date.
  --out DIR   where to put them
  --force     rebuild even when up to date
Needs: apt-get/apt-cache/dpkg-deb (Debian), xz for compressed modules, and a built kvmkit (npm run build).`;
}

async function main(argv) {
  const opts = { force: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--force') opts.force = true;
    else if (a === '--out') {
      if (!argv[i + 1]) throw new FixtureError(`--out needs a directory\n${usage()}`);
      opts.outDir = argv[++i];
    } else if (a.startsWith('--out=')) opts.outDir = a.slice(6);
    else if (a === '--help' || a === '-h') {
      process.stdout.write(`${usage()}\n`);
      return;
    } else throw new FixtureError(`unknown argument ${a}\n${usage()}`);
  }
  const res = await ensureLinuxFixture(opts);
  process.stdout.write(`${JSON.stringify(res, null, 2)}\n`);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).catch((err) => {
    process.stderr.write(`linux-fixture: ${err instanceof FixtureError ? err.message : (err?.stack ?? err)}\n`);
    process.exit(1);
  });
}
