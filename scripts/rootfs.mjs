#!/usr/bin/env node
// Busybox root file systems for the Linux fixture's `root=` support (scripts/linux-fixture.mjs):
//   a directory tree, to boot from virtio-fs (`root=TAG rootfstype=virtiofs rw`), and
//   an ext4 image made from that tree with `mkfs.ext4 -d`, to boot from a disk (`root=/dev/vdX`).
// Busybox comes from the fixture's own initramfs (so from Debian's busybox-static, nothing new is
// downloaded); /sbin/init is the fixture's rootInitScript(): it prints KVMKIT-ROOT and then runs
// the same kvmkit.run protocol as the initramfs.
//
// Usage: node scripts/rootfs.mjs tree DIR [--label TEXT]
//        node scripts/rootfs.mjs ext4 IMAGE [--size MIB] [--label TEXT]
//   or:  import { buildRootTree, buildRootImage } from './rootfs.mjs'

import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { DEFAULT_OUT_DIR, FixtureError, rootInitScript } from './linux-fixture.mjs';

/** The fixture initramfs busybox is taken from unless told otherwise. */
export const DEFAULT_INITRAMFS = join(DEFAULT_OUT_DIR, 'initramfs.cpio.gz');
/** File in every root naming it; its text is the `label` option. */
export const ROOT_LABEL_FILE = '/etc/kvmkit-root';
/** Default size of the ext4 root image (busybox is ~2 MiB; the rest is room for tests to write). */
export const DEFAULT_IMAGE_MIB = 32;

const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const NEWC_MAGIC = '070701';
const NEWC_HEADER = 110; // "070701" + 13 eight-digit hex fields (cpio(5), "New ASCII Format")

/**
 * Entries of a cpio "newc" archive: name, mode and data (a symlink's data is its target).
 * @param {Buffer} archive
 * @returns {{ name: string, mode: number, data: Buffer }[]}
 */
export function readNewc(archive) {
  const entries = [];
  let off = 0;
  const align4 = (n) => (n + 3) & ~3;
  for (;;) {
    if (off + NEWC_HEADER > archive.length) throw new FixtureError(`cpio archive ends inside a header at byte ${off}`);
    const magic = archive.toString('latin1', off, off + 6);
    if (magic !== NEWC_MAGIC) throw new FixtureError(`cpio entry at byte ${off} has magic ${JSON.stringify(magic)}, expected ${NEWC_MAGIC} (newc)`);
    const field = (i) => parseInt(archive.toString('latin1', off + 6 + i * 8, off + 14 + i * 8), 16);
    const mode = field(1);
    const fileSize = field(6);
    const nameSize = field(11);
    const nameStart = off + NEWC_HEADER;
    const name = archive.toString('utf8', nameStart, nameStart + nameSize - 1);
    const dataStart = align4(nameStart + nameSize);
    if (dataStart + fileSize > archive.length) throw new FixtureError(`cpio entry ${name} runs past the end of the archive`);
    if (name === 'TRAILER!!!') return entries;
    entries.push({ name, mode, data: archive.subarray(dataStart, dataStart + fileSize) });
    off = align4(dataStart + fileSize);
  }
}

/**
 * Busybox and its applet names from the fixture initramfs.
 * @param {string} initramfs path of initramfs.cpio.gz
 * @returns {{ busybox: Buffer, applets: string[] }} applets as paths without the leading slash
 */
export function busyboxFromInitramfs(initramfs = DEFAULT_INITRAMFS) {
  if (!existsSync(initramfs)) {
    throw new FixtureError(`${initramfs} is missing: make the Linux fixture first (node scripts/fixtures.mjs linux)`);
  }
  const entries = readNewc(gunzipSync(readFileSync(initramfs)));
  const bb = entries.find((e) => e.name === 'bin/busybox' && (e.mode & S_IFMT) === S_IFREG);
  if (!bb) throw new FixtureError(`${initramfs} has no bin/busybox`);
  const applets = entries
    .filter((e) => (e.mode & S_IFMT) === S_IFLNK && e.data.toString('utf8') === '/bin/busybox')
    .map((e) => e.name);
  return { busybox: Buffer.from(bb.data), applets };
}

/**
 * Writes a busybox root tree into `dir` (created; should be empty): the usual directories,
 * busybox with every applet, /sbin/init (the fixture's root init), /etc/passwd and group, and
 * {@link ROOT_LABEL_FILE} holding `label`.
 * @param {{ dir: string, label?: string, initramfs?: string,
 *   extraFiles?: { path: string, data: Buffer | string, mode?: number }[] }} options
 *   extraFiles: more files, at absolute paths inside the root (e.g. a test's static helper)
 * @returns {{ dir: string, applets: number }}
 */
export function buildRootTree({ dir, label = 'kvmkit busybox root', initramfs = DEFAULT_INITRAMFS, extraFiles = [] }) {
  const { busybox, applets } = busyboxFromInitramfs(initramfs);
  const at = (p) => join(dir, p.replace(/^\/+/, ''));
  for (const d of ['bin', 'sbin', 'usr/bin', 'usr/sbin', 'etc', 'dev', 'proc', 'sys', 'run', 'mnt', 'var', 'root', 'tmp']) {
    mkdirSync(at(d), { recursive: true });
  }
  chmodSync(at('tmp'), 0o1777);
  chmodSync(at('root'), 0o700);
  writeFileSync(at('bin/busybox'), busybox, { mode: 0o755 });
  let linked = 0;
  for (const a of applets) {
    if (a === 'sbin/init') continue; // ours below
    mkdirSync(dirname(at(a)), { recursive: true });
    if (!existsSync(at(a))) {
      symlinkSync('/bin/busybox', at(a));
      linked++;
    }
  }
  writeFileSync(at('sbin/init'), rootInitScript(), { mode: 0o755 });
  writeFileSync(at('etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
  writeFileSync(at('etc/group'), 'root:x:0:\n');
  writeFileSync(at(ROOT_LABEL_FILE), `${label}\n`);
  for (const f of extraFiles) {
    if (!f.path.startsWith('/')) throw new FixtureError(`extra root file path must be absolute inside the root, got ${f.path}`);
    mkdirSync(dirname(at(f.path)), { recursive: true });
    writeFileSync(at(f.path), f.data, { mode: f.mode ?? 0o644 });
    chmodSync(at(f.path), f.mode ?? 0o644); // writeFileSync's mode only applies to new files
  }
  return { dir, applets: linked };
}

/**
 * An ext4 image holding a busybox root ({@link buildRootTree}), made with `mkfs.ext4 -d`.
 * @param {{ image: string, sizeMiB?: number, label?: string, initramfs?: string,
 *   extraFiles?: { path: string, data: Buffer | string, mode?: number }[] }} options
 * @returns {{ image: string, bytes: number }}
 */
export function buildRootImage({ image, sizeMiB = DEFAULT_IMAGE_MIB, ...tree }) {
  if (!Number.isInteger(sizeMiB) || sizeMiB < 8) throw new FixtureError(`root image size must be an integer number of MiB >= 8, got ${sizeMiB}`);
  const work = mkdtempSync(join(tmpdir(), 'kvmkit-rootfs-'));
  try {
    buildRootTree({ dir: work, ...tree });
    const res = spawnSync('mkfs.ext4', ['-q', '-F', '-L', 'kvmkit-root', '-d', work, image, `${sizeMiB}M`], { encoding: 'utf8' });
    if (res.error) throw new FixtureError(`mkfs.ext4 failed: ${res.error.message} (install e2fsprogs)`);
    if (res.status !== 0) throw new FixtureError(`mkfs.ext4 -d ${work} ${image} failed (exit ${res.status}): ${res.stderr.trim()}`);
    return { image, bytes: sizeMiB * 1024 * 1024 };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

function usage() {
  return `usage: node scripts/rootfs.mjs tree DIR [--label TEXT]
       node scripts/rootfs.mjs ext4 IMAGE [--size MIB] [--label TEXT]
  A busybox root for the Linux fixture: boot it with root=TAG rootfstype=virtiofs rw (tree, shared
  with virtio-fs) or root=/dev/vdX rw (ext4 image). Busybox comes from ${DEFAULT_INITRAMFS}.`;
}

function main(argv) {
  const [kind, target, ...rest] = argv;
  if (kind === '--help' || kind === '-h') {
    process.stdout.write(`${usage()}\n`);
    return;
  }
  if ((kind !== 'tree' && kind !== 'ext4') || !target) throw new FixtureError(usage());
  const opts = {};
  for (let i = 0; i < rest.length; i += 2) {
    const [k, v] = [rest[i], rest[i + 1]];
    if (v === undefined) throw new FixtureError(`${k} needs a value\n${usage()}`);
    if (k === '--label') opts.label = v;
    else if (k === '--size' && kind === 'ext4') opts.sizeMiB = Number(v);
    else throw new FixtureError(`unknown argument ${k}\n${usage()}`);
  }
  const res = kind === 'tree' ? buildRootTree({ dir: resolve(target), ...opts }) : buildRootImage({ image: resolve(target), ...opts });
  process.stdout.write(`${JSON.stringify(res)}\n`);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    main(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`rootfs: ${err instanceof FixtureError ? err.message : (err?.stack ?? err)}\n`);
    process.exit(1);
  }
}
