/**
 * A builder for Linux initramfs images on top of {@link CpioWriter}: a path tree where parent
 * directories are created implicitly, host directory trees can be copied in, and `/init` is set
 * from a script.
 * @module
 */

import { lstatSync, readdirSync, readlinkSync, statSync, type Stats } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { ConfigError } from '../errors';
import {
  CpioWriter, normalizeCpioName,
  type CpioEntryOptions, type CpioOutputOptions, type CpioWriterOptions,
} from './CpioWriter';

/** Options of an {@link Initramfs}: entry defaults, plus whether to add `/dev/console`. */
export interface InitramfsOptions extends CpioWriterOptions {
  /**
   * Add `/dev` and the character device `/dev/console` (5, 1), as the kernel's built-in initramfs
   * does. The kernel opens `/dev/console` for init's stdin/stdout/stderr before devtmpfs is
   * mounted; without it init starts with no console. Default true.
   */
  devConsole?: boolean;
}

/** Options of {@link Initramfs.addTree}. */
export interface AddTreeOptions {
  /**
   * Called for every host file and directory below the source (not the source itself) with its
   * path relative to the source (`lib/x.so`); return false to leave it (and, for a directory,
   * everything in it) out.
   */
  filter?: (relativePath: string, stats: Stats) => boolean;
  /** Store host files that are hard links of each other once, as hard links. Default false (copies). */
  hardLinks?: boolean;
  /** Keep the host files' uid/gid. Default false: everything is owned by the image's default owner (root). */
  preserveOwnership?: boolean;
  /** Keep the host files' mtimes. Default false: the image's default mtime (0), for reproducible images. */
  preserveMtime?: boolean;
}

/** Options of {@link Initramfs.setInit}. */
export interface InitScriptOptions {
  /** Interpreter put on a `#!` line when the script has none. Default `/bin/sh`. */
  interpreter?: string;
  /** Where to put the script. Default `/init`, where the kernel looks for it (`rdinit=` changes that). */
  path?: string;
}

type Node =
  | { kind: 'directory'; options: CpioEntryOptions; implicit: boolean }
  | { kind: 'file'; options: CpioEntryOptions; data: Uint8Array | string }
  | { kind: 'hostfile'; options: CpioEntryOptions; hostPath: string }
  | { kind: 'symlink'; options: CpioEntryOptions; target: string }
  | { kind: 'device'; options: CpioEntryOptions; type: 'c' | 'b'; major: number; minor: number }
  | { kind: 'fifo'; options: CpioEntryOptions }
  | { kind: 'hardlink'; existing: string };

/**
 * Builds a Linux initramfs (a `newc` cpio archive, optionally gzip-compressed).
 *
 * Paths are absolute inside the image (`/bin/sh`; a missing leading `/` is implied). Adding a path
 * creates its missing parent directories (mode 0o755); adding a path again replaces the earlier
 * entry, except that a directory only takes the new options (its contents stay) and a directory
 * cannot be replaced by a non-directory or the reverse.
 *
 * @example
 * ```ts
 * const img = new Initramfs();
 * img.addFileFromPath('/bin/busybox', 'busybox', { mode: 0o755 });
 * img.addSymlink('/bin/sh', 'busybox');
 * img.setInit('mount -t proc proc /proc\necho hello\npoweroff -f\n');
 * await img.writeFile('initramfs.cpio.gz', { gzip: true });
 * ```
 */
export class Initramfs {
  private readonly nodes = new Map<string, Node>();
  private readonly writerOptions: CpioWriterOptions;

  /** @param options - entry defaults and `/dev/console`; see {@link InitramfsOptions}. */
  constructor(options: InitramfsOptions = {}) {
    const { devConsole = true, ...writerOptions } = options;
    this.writerOptions = writerOptions;
    // Validate the defaults now rather than when the image is written.
    new CpioWriter(writerOptions);
    if (devConsole) this.addDevice('/dev/console', 'c', 5, 1, { mode: 0o600 });
  }

  /**
   * Creates a directory and any missing parents, like `mkdir -p`. The options apply to the last
   * component only; on an existing directory they replace its options.
   */
  mkdir(path: string, options: CpioEntryOptions = {}): this {
    const name = this.prepare(path);
    const old = this.nodes.get(name);
    if (old && old.kind !== 'directory') throw new ConfigError('path', `already exists as a ${describe(old)}, not a directory`, `/${name}`);
    this.nodes.set(name, { kind: 'directory', options: { ...options }, implicit: false });
    return this;
  }

  /** Adds a regular file with these contents (a string is written as UTF-8); default mode 0o644. */
  addFile(path: string, data: Uint8Array | string, options: CpioEntryOptions = {}): this {
    if (typeof data !== 'string' && !(data instanceof Uint8Array)) throw new ConfigError('data', 'must be a Buffer, Uint8Array or string', typeof data);
    return this.put(path, { kind: 'file', options: { ...options }, data });
  }

  /**
   * Adds a regular file read from the host when the image is written. The mode defaults to the
   * host file's permission bits.
   */
  addFileFromPath(path: string, hostPath: string, options: CpioEntryOptions = {}): this {
    let st: Stats;
    try {
      st = statSync(hostPath);
    } catch (cause) {
      throw new ConfigError('hostPath', 'must be a readable regular file', hostPath, { cause });
    }
    if (!st.isFile()) throw new ConfigError('hostPath', 'must be a regular file', hostPath);
    const opts = { ...options };
    if (opts.mode === undefined) opts.mode = st.mode & 0o7777;
    return this.put(path, { kind: 'hostfile', options: opts, hostPath });
  }

  /** Adds a symbolic link to `target` (not checked; relative targets are relative to the link's directory). */
  addSymlink(path: string, target: string, options: CpioEntryOptions = {}): this {
    if (typeof target !== 'string' || target.length === 0 || target.includes('\0')) {
      throw new ConfigError('target', 'must be a non-empty string without NUL bytes', target);
    }
    return this.put(path, { kind: 'symlink', options: { ...options }, target });
  }

  /** Adds a character (`'c'`) or block (`'b'`) device node; default mode 0o600. */
  addDevice(path: string, type: 'c' | 'b', major: number, minor: number, options: CpioEntryOptions = {}): this {
    if (type !== 'c' && type !== 'b') throw new ConfigError('type', 'must be "c" (character device) or "b" (block device)', type);
    for (const [option, v] of [['major', major], ['minor', minor]] as const) {
      if (!Number.isInteger(v) || v < 0 || v > 0xffff_ffff) throw new ConfigError(option, 'must be an integer from 0 to 4294967295', v);
    }
    return this.put(path, { kind: 'device', options: { ...options }, type, major, minor });
  }

  /** Adds a named pipe. */
  addFifo(path: string, options: CpioEntryOptions = {}): this {
    return this.put(path, { kind: 'fifo', options: { ...options } });
  }

  /** Adds `path` as a hard link to the regular file `existing`, which must already be in the image. */
  addHardLink(path: string, existing: string): this {
    const target = normalizeCpioName(existing, 'existing');
    const node = this.nodes.get(target);
    if (!node || (node.kind !== 'file' && node.kind !== 'hostfile' && node.kind !== 'hardlink')) {
      throw new ConfigError('existing', 'must be a regular file already in the image', existing);
    }
    return this.put(path, { kind: 'hardlink', existing: node.kind === 'hardlink' ? node.existing : target });
  }

  /**
   * Copies a host directory tree into the image below `dest` (default `/`). Regular files are read
   * when the image is written; symlinks are copied as links (not followed); device nodes and FIFOs
   * are copied; sockets are skipped. Entries are added in sorted order so images are reproducible.
   * @param hostDir - the host directory whose contents are copied.
   * @param dest - the image directory that receives them; created if missing.
   */
  addTree(hostDir: string, dest = '/', options: AddTreeOptions = {}): this {
    let rootStat: Stats;
    try {
      rootStat = lstatSync(hostDir);
    } catch (cause) {
      throw new ConfigError('hostDir', 'must be an existing directory', hostDir, { cause });
    }
    if (!rootStat.isDirectory()) throw new ConfigError('hostDir', 'must be a directory', hostDir);
    const base = isRoot(dest) ? '' : normalizeCpioName(dest, 'dest');
    if (base) this.mkdir(base, this.treeOptions(rootStat, options));
    const seen = new Map<string, string>();
    const walk = (hostPath: string, rel: string): void => {
      const names = readdirSync(hostPath).sort();
      for (const n of names) {
        const childHost = join(hostPath, n);
        const childRel = rel ? `${rel}/${n}` : n;
        const st = lstatSync(childHost);
        if (options.filter && !options.filter(childRel, st)) continue;
        const target = base ? `${base}/${childRel}` : childRel;
        const opts = this.treeOptions(st, options);
        if (st.isDirectory()) {
          this.mkdir(target, opts);
          walk(childHost, childRel);
        } else if (st.isFile()) {
          const key = `${st.dev}:${st.ino}`;
          const first = options.hardLinks && st.nlink > 1 ? seen.get(key) : undefined;
          if (first !== undefined && this.nodes.has(first)) {
            this.addHardLink(target, first);
          } else {
            this.put(target, { kind: 'hostfile', options: opts, hostPath: childHost });
            if (options.hardLinks && st.nlink > 1) seen.set(key, normalizeCpioName(target));
          }
        } else if (st.isSymbolicLink()) {
          this.addSymlink(target, readlinkSync(childHost), opts);
        } else if (st.isCharacterDevice() || st.isBlockDevice()) {
          const { major, minor } = splitDev(st.rdev);
          this.addDevice(target, st.isCharacterDevice() ? 'c' : 'b', major, minor, opts);
        } else if (st.isFIFO()) {
          this.addFifo(target, opts);
        }
      }
    };
    walk(hostDir, '');
    return this;
  }

  /**
   * Sets the init program to a script, executable (mode 0o755). A script without a `#!` line gets
   * `#!/bin/sh` (or the given interpreter), so a shell must be in the image (e.g. busybox).
   */
  setInit(script: string, options: InitScriptOptions = {}): this {
    if (typeof script !== 'string' || script.trim() === '') throw new ConfigError('script', 'must be a non-empty string', script);
    const interpreter = options.interpreter ?? '/bin/sh';
    const text = script.startsWith('#!') ? script : `#!${interpreter}\n${script}`;
    return this.addFile(options.path ?? '/init', text, { mode: 0o755 });
  }

  /** Whether the image has this path. */
  has(path: string): boolean {
    return isRoot(path) || this.nodes.has(normalizeCpioName(path, 'path'));
  }

  /** Every path in the image (`/bin/sh`), parents before children. */
  paths(): string[] {
    return [...this.nodes.keys()].map((p) => `/${p}`);
  }

  /** Builds a {@link CpioWriter} holding the image, for callers that want to add to it directly. */
  toCpio(): CpioWriter {
    const w = new CpioWriter(this.writerOptions);
    for (const [name, node] of this.nodes) {
      switch (node.kind) {
        case 'directory': w.addDirectory(name, node.options); break;
        case 'file': w.addFile(name, node.data, node.options); break;
        case 'hostfile': w.addFileFromPath(name, node.hostPath, node.options); break;
        case 'symlink': w.addSymlink(name, node.target, node.options); break;
        case 'device': w.addDevice(name, node.type, node.major, node.minor, node.options); break;
        case 'fifo': w.addFifo(name, node.options); break;
        case 'hardlink': {
          const target = this.nodes.get(node.existing);
          if (!target || (target.kind !== 'file' && target.kind !== 'hostfile')) {
            throw new ConfigError('hard link', `/${name} points to /${node.existing}, which is no longer a regular file`);
          }
          w.addHardLink(name, node.existing);
          break;
        }
      }
    }
    return w;
  }

  /** The image as one Buffer; see {@link CpioWriter.toBuffer}. */
  toBuffer(options: CpioOutputOptions = {}): Buffer {
    return this.toCpio().toBuffer(options);
  }

  /** The image as a byte stream; see {@link CpioWriter.toStream}. */
  toStream(options: CpioOutputOptions = {}): Readable {
    return this.toCpio().toStream(options);
  }

  /** Streams the image to a file (written beside it, then renamed); see {@link CpioWriter.writeFile}. */
  writeFile(path: string, options: CpioOutputOptions = {}): Promise<{ path: string; bytes: number }> {
    return this.toCpio().writeFile(path, options);
  }

  private treeOptions(st: Stats, options: AddTreeOptions): CpioEntryOptions {
    const o: CpioEntryOptions = { mode: st.mode & 0o7777 };
    if (options.preserveOwnership) {
      o.uid = st.uid;
      o.gid = st.gid;
    }
    if (options.preserveMtime) o.mtime = Math.floor(st.mtimeMs / 1000);
    return o;
  }

  /** Normalizes a path and creates its missing parents; throws if a parent is not a directory. */
  private prepare(path: string): string {
    const name = normalizeCpioName(path, 'path');
    const parts = name.split('/');
    for (let i = 1; i < parts.length; i++) {
      const parent = parts.slice(0, i).join('/');
      const node = this.nodes.get(parent);
      if (!node) this.nodes.set(parent, { kind: 'directory', options: {}, implicit: true });
      else if (node.kind !== 'directory') {
        throw new ConfigError('path', `has a parent /${parent} that is a ${describe(node)}, not a directory`, `/${name}`);
      }
    }
    return name;
  }

  private put(path: string, node: Exclude<Node, { kind: 'directory' }>): this {
    const name = this.prepare(path);
    const old = this.nodes.get(name);
    if (old?.kind === 'directory') throw new ConfigError('path', `already exists as a directory and cannot become a ${describe(node)}`, `/${name}`);
    this.nodes.set(name, node);
    return this;
  }
}

function isRoot(path: string): boolean {
  return typeof path === 'string' && path.split('/').every((p) => p === '' || p === '.') && path.length > 0;
}

function describe(node: Node): string {
  switch (node.kind) {
    case 'hostfile': case 'file': case 'hardlink': return 'regular file';
    case 'device': return node.type === 'c' ? 'character device' : 'block device';
    default: return node.kind;
  }
}

/** Splits a Linux `dev_t` into major and minor (glibc's gnu_dev_major/gnu_dev_minor encoding). */
function splitDev(rdev: number): { major: number; minor: number } {
  const d = BigInt(rdev);
  const major = Number(((d >> 8n) & 0xfffn) | ((d >> 32n) & ~0xfffn));
  const minor = Number((d & 0xffn) | ((d >> 12n) & ~0xffn));
  return { major, minor };
}
