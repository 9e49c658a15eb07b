/**
 * A writer for cpio archives in the SVR4 `newc` format, the format the Linux kernel unpacks as an
 * initramfs (see the kernel's `Documentation/driver-api/early-userspace/buffer-format.rst` and
 * `usr/gen_init_cpio.c`).
 *
 * Layout of one entry (buffer-format.rst): the 6-byte magic `070701`, then 13 fields of 8 ASCII hex
 * digits (ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor, rdevminor,
 * namesize, check), i.e. a 110-byte header; then the name with its terminating NUL (`namesize`
 * counts it), padded with NULs so that header + name is a multiple of 4 bytes; then the file data,
 * padded with NULs to a multiple of 4. The archive ends with an entry named `TRAILER!!!`.
 * @module
 */

import {
  closeSync, createWriteStream, fstatSync, openSync, readSync, renameSync, rmSync, statSync, writeFileSync,
} from 'node:fs';
import { open, rename, rm } from 'node:fs/promises';
import { dirname, basename, join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip, gzipSync } from 'node:zlib';
import { ConfigError, KvmkitError } from '../errors';

/** The magic number of a `newc` header (buffer-format.rst: `c_magic`, "070701"). */
export const CPIO_NEWC_MAGIC = '070701';
/** Size in bytes of a `newc` header: 6-byte magic + 13 fields of 8 hex digits. */
export const CPIO_NEWC_HEADER_SIZE = 110;
/** Name of the entry that ends a cpio archive. */
export const CPIO_TRAILER = 'TRAILER!!!';
/**
 * Longest entry name in bytes (UTF-8, without the NUL). The kernel's initramfs unpacker rejects
 * names whose `namesize` (with the NUL) exceeds PATH_MAX = 4096 (init/initramfs.c, do_header).
 */
export const CPIO_MAX_NAME_BYTES = 4095;

// File type bits of `st_mode` (Linux UAPI include/uapi/linux/stat.h).
const S_IFMT = 0o170000;
const S_IFLNK = 0o120000;
const S_IFREG = 0o100000;
const S_IFBLK = 0o060000;
const S_IFDIR = 0o040000;
const S_IFCHR = 0o020000;
const S_IFIFO = 0o010000;

const MAX_U32 = 0xffff_ffff;
const READ_CHUNK = 1 << 20;

/** Owner, permissions and time of one archive entry. Omitted fields take the writer's defaults. */
export interface CpioEntryOptions {
  /**
   * Permission bits, 0 to 0o7777 (setuid, setgid, sticky and rwx). The file type bits may be
   * included if they match the kind of entry being added (e.g. `0o100644` for a file).
   */
  mode?: number;
  /** Owner user id (default: the writer's `uid`, 0 unless set). */
  uid?: number;
  /** Owner group id (default: the writer's `gid`, 0 unless set). */
  gid?: number;
  /** Modification time, in seconds since the Unix epoch or as a Date (default: the writer's `mtime`). */
  mtime?: number | Date;
}

/** Defaults for every entry of a {@link CpioWriter}. */
export interface CpioWriterOptions {
  /**
   * Modification time of entries that do not set one: seconds since the epoch or a Date.
   * Default 0, so that the same inputs always give the same archive bytes.
   */
  mtime?: number | Date;
  /** Default owner user id (0, root). */
  uid?: number;
  /** Default owner group id (0, root). */
  gid?: number;
  /** Inode number of the first entry; the following entries count up from it. Default 1. */
  firstInode?: number;
}

/** How to encode the archive bytes. */
export interface CpioOutputOptions {
  /**
   * Compress with gzip (node:zlib), a format every initramfs-capable kernel unpacks
   * (`CONFIG_RD_GZIP`). `true` uses zlib's default level; `{ level }` picks one (0–9).
   */
  gzip?: boolean | { level?: number };
}

/** Kind of an archive entry. */
export type CpioEntryKind = 'directory' | 'file' | 'symlink' | 'char' | 'block' | 'fifo';

/** A description of one entry, as {@link CpioWriter.entries} lists it. */
export interface CpioEntryInfo {
  /** The name as stored in the archive (relative, no leading `/`). */
  readonly name: string;
  readonly kind: CpioEntryKind;
  /** The full `st_mode`: file type bits and permission bits. */
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  /** Seconds since the epoch. */
  readonly mtime: number;
  readonly ino: number;
  /** Number of names this inode has in the archive (1 unless hard links were added). */
  readonly nlink: number;
  /** Target of a symlink. */
  readonly linkTarget?: string;
  /** Major and minor number of a device node. */
  readonly rdev?: { major: number; minor: number };
  /** Host file that supplies a regular file's data, if it was added from a path. */
  readonly sourcePath?: string;
}

type DataSource = { kind: 'buffer'; data: Buffer } | { kind: 'path'; path: string };

interface Inode {
  ino: number;
  kind: CpioEntryKind;
  mode: number;
  uid: number;
  gid: number;
  mtime: number;
  rdevMajor: number;
  rdevMinor: number;
  /** Data of a file, or the target of a symlink. */
  source: DataSource | undefined;
  /** Names of this inode, in archive order. */
  names: string[];
}

interface Entry {
  name: string;
  inode: Inode;
}

const TYPE_BITS: Record<CpioEntryKind, number> = {
  directory: S_IFDIR,
  file: S_IFREG,
  symlink: S_IFLNK,
  char: S_IFCHR,
  block: S_IFBLK,
  fifo: S_IFIFO,
};

/**
 * Normalizes an archive entry name: a leading `/` or `./` is dropped, repeated and trailing
 * slashes are collapsed and `.` components removed, so `/bin//sh` and `bin/sh` name the same entry.
 * @param name - the name to check.
 * @param option - what to call the name in an error message.
 * @returns the name as stored in a `newc` archive (`bin/sh`).
 * @throws ConfigError if the name is empty, contains a NUL byte or a `..` component, or is longer
 *   than {@link CPIO_MAX_NAME_BYTES} bytes.
 */
export function normalizeCpioName(name: string, option = 'name'): string {
  if (typeof name !== 'string') throw new ConfigError(option, 'must be a string', name);
  if (name.includes('\0')) throw new ConfigError(option, 'must not contain a NUL byte', name);
  const parts: string[] = [];
  for (const part of name.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      throw new ConfigError(option, 'must not contain a ".." component (entries cannot leave the archive root)', name);
    }
    parts.push(part);
  }
  if (parts.length === 0) {
    throw new ConfigError(option, 'must name a path below the archive root (it is empty or only "/" and ".")', name);
  }
  const out = parts.join('/');
  if (out === CPIO_TRAILER) throw new ConfigError(option, `must not be "${CPIO_TRAILER}", which ends the archive`, name);
  const bytes = Buffer.byteLength(out, 'utf8');
  if (bytes > CPIO_MAX_NAME_BYTES) {
    throw new ConfigError(option, `must be at most ${CPIO_MAX_NAME_BYTES} bytes long (PATH_MAX less the NUL), it is ${bytes}`, `${out.slice(0, 40)}…`);
  }
  return out;
}

function checkU32(option: string, value: number): number {
  if (!Number.isInteger(value) || value < 0 || value > MAX_U32) {
    throw new ConfigError(option, 'must be an integer from 0 to 4294967295 (8 hex digits in a newc header)', value);
  }
  return value;
}

function toEpochSeconds(option: string, value: number | Date): number {
  const seconds = value instanceof Date ? Math.floor(value.getTime() / 1000) : value;
  if (value instanceof Date && Number.isNaN(seconds)) throw new ConfigError(option, 'must be a valid Date', String(value));
  return checkU32(option, seconds);
}

function pad4(n: number): number {
  return (4 - (n % 4)) % 4;
}

const ZEROS = Buffer.alloc(4);

/**
 * Builds the bytes of a `newc` header and the padded name that follows it.
 * @internal
 */
export function encodeNewcHeader(fields: {
  ino: number; mode: number; uid: number; gid: number; nlink: number; mtime: number; filesize: number;
  devmajor?: number; devminor?: number; rdevmajor?: number; rdevminor?: number; name: string;
}): Buffer {
  const nameBytes = Buffer.from(fields.name, 'utf8');
  const namesize = nameBytes.length + 1;
  const values = [
    fields.ino, fields.mode, fields.uid, fields.gid, fields.nlink, fields.mtime, fields.filesize,
    fields.devmajor ?? 0, fields.devminor ?? 0, fields.rdevmajor ?? 0, fields.rdevminor ?? 0, namesize, 0,
  ];
  let header = CPIO_NEWC_MAGIC;
  for (const v of values) header += (v >>> 0).toString(16).toUpperCase().padStart(8, '0');
  const total = CPIO_NEWC_HEADER_SIZE + namesize;
  const out = Buffer.alloc(total + pad4(total));
  out.write(header, 0, 'ascii');
  nameBytes.copy(out, CPIO_NEWC_HEADER_SIZE);
  return out;
}

/**
 * Writes cpio archives in the `newc` format, the format of a Linux initramfs.
 *
 * Entries are written in the order they are added; a parent directory should be added before the
 * entries inside it (the {@link Initramfs} builder does this for you). Names are relative to the
 * archive root: `/bin/sh` and `bin/sh` are the same entry. By default every entry is owned by root
 * and has mtime 0, so the same inputs give the same bytes.
 *
 * @example
 * ```ts
 * const cpio = new CpioWriter();
 * cpio.addDirectory('bin').addFileFromPath('bin/busybox', '/bin/busybox', { mode: 0o755 });
 * cpio.addSymlink('bin/sh', 'busybox').addDirectory('dev').addDevice('dev/console', 'c', 5, 1);
 * await cpio.writeFile('initramfs.cpio.gz', { gzip: true });
 * ```
 */
export class CpioWriter {
  private readonly list: Entry[] = [];
  private readonly byName = new Map<string, Entry>();
  private nextIno: number;
  private readonly defaults: { mtime: number; uid: number; gid: number };

  /** @param options - defaults for every entry; see {@link CpioWriterOptions}. */
  constructor(options: CpioWriterOptions = {}) {
    this.defaults = {
      mtime: toEpochSeconds('mtime', options.mtime ?? 0),
      uid: checkU32('uid', options.uid ?? 0),
      gid: checkU32('gid', options.gid ?? 0),
    };
    this.nextIno = checkU32('firstInode', options.firstInode ?? 1);
  }

  /** Number of entries added so far (hard links count once per name, the trailer not at all). */
  get size(): number {
    return this.list.length;
  }

  /** Whether an entry of that name was added (the name is normalized first). */
  has(name: string): boolean {
    return this.byName.has(normalizeCpioName(name));
  }

  /** Adds a directory (default mode 0o755). Its parent should already be in the archive. */
  addDirectory(name: string, options: CpioEntryOptions = {}): this {
    this.addInode(name, 'directory', 0o755, options, undefined);
    return this;
  }

  /**
   * Adds a regular file with the given contents (default mode 0o644).
   * @param data - the bytes, or a string written as UTF-8. Buffers are copied, so the caller may reuse them.
   */
  addFile(name: string, data: Uint8Array | string, options: CpioEntryOptions = {}): this {
    let bytes: Buffer;
    if (typeof data === 'string') bytes = Buffer.from(data, 'utf8');
    else if (data instanceof Uint8Array) bytes = Buffer.from(data);
    else throw new ConfigError('data', 'must be a Buffer, Uint8Array or string', typeof data);
    checkU32('data length', bytes.length);
    this.addInode(name, 'file', 0o644, options, { kind: 'buffer', data: bytes });
    return this;
  }

  /**
   * Adds a regular file whose contents are read from a host file when the archive is written, so
   * large files are streamed rather than held in memory. The mode defaults to the host file's
   * permission bits; owner and mtime default to the writer's defaults, not the host file's.
   * @throws ConfigError if the host path is not a regular file (symlinks are followed) or is 4 GiB or larger.
   */
  addFileFromPath(name: string, hostPath: string, options: CpioEntryOptions = {}): this {
    let st;
    try {
      st = statSync(hostPath);
    } catch (cause) {
      throw new ConfigError('hostPath', 'must be a readable regular file', hostPath, { cause });
    }
    if (!st.isFile()) throw new ConfigError('hostPath', 'must be a regular file', hostPath);
    if (st.size > MAX_U32) throw new ConfigError('hostPath', 'must be smaller than 4 GiB (the newc size field has 8 hex digits)', hostPath);
    this.addInode(name, 'file', st.mode & 0o7777, options, { kind: 'path', path: hostPath });
    return this;
  }

  /**
   * Adds a symbolic link (mode 0o777 unless set). The target is stored as the entry's data and
   * is not checked: it may be absolute, relative, or dangling.
   */
  addSymlink(name: string, target: string, options: CpioEntryOptions = {}): this {
    if (typeof target !== 'string' || target.length === 0) throw new ConfigError('target', 'must be a non-empty string', target);
    if (target.includes('\0')) throw new ConfigError('target', 'must not contain a NUL byte', target);
    const data = Buffer.from(target, 'utf8');
    if (data.length > CPIO_MAX_NAME_BYTES) throw new ConfigError('target', `must be at most ${CPIO_MAX_NAME_BYTES} bytes long`, `${target.slice(0, 40)}…`);
    this.addInode(name, 'symlink', 0o777, options, { kind: 'buffer', data });
    return this;
  }

  /**
   * Adds a device node (default mode 0o600).
   * @param type - `'c'` for a character device, `'b'` for a block device.
   * @param major - device major number (e.g. 5 for /dev/console).
   * @param minor - device minor number (e.g. 1 for /dev/console).
   */
  addDevice(name: string, type: 'c' | 'b', major: number, minor: number, options: CpioEntryOptions = {}): this {
    if (type !== 'c' && type !== 'b') throw new ConfigError('type', 'must be "c" (character device) or "b" (block device)', type);
    checkU32('major', major);
    checkU32('minor', minor);
    const inode = this.addInode(name, type === 'c' ? 'char' : 'block', 0o600, options, undefined);
    inode.rdevMajor = major;
    inode.rdevMinor = minor;
    return this;
  }

  /** Adds a named pipe (FIFO), default mode 0o644. */
  addFifo(name: string, options: CpioEntryOptions = {}): this {
    this.addInode(name, 'fifo', 0o644, options, undefined);
    return this;
  }

  /**
   * Adds another name for a regular file already in the archive (a hard link). Both names share
   * one inode number and `nlink`; as GNU cpio does, the data is stored once, with the last name,
   * and the other names have size 0. Both GNU cpio and the kernel restore the link.
   * @param existing - name of a regular file added earlier.
   */
  addHardLink(name: string, existing: string): this {
    const target = this.byName.get(normalizeCpioName(existing, 'existing'));
    if (!target) throw new ConfigError('existing', 'must name an entry added earlier', existing);
    if (target.inode.kind !== 'file') throw new ConfigError('existing', 'must be a regular file (directories and other kinds cannot be hard-linked)', existing);
    const norm = this.claimName(name);
    const entry: Entry = { name: norm, inode: target.inode };
    target.inode.names.push(norm);
    this.list.push(entry);
    this.byName.set(norm, entry);
    return this;
  }

  /** Describes every entry added so far, in archive order. */
  entries(): CpioEntryInfo[] {
    return this.list.map(({ name, inode }) => {
      const info: {
        -readonly [K in keyof CpioEntryInfo]: CpioEntryInfo[K];
      } = {
        name, kind: inode.kind, mode: inode.mode, uid: inode.uid, gid: inode.gid, mtime: inode.mtime,
        ino: inode.ino, nlink: this.nlinkOf(inode),
      };
      if (inode.kind === 'symlink' && inode.source?.kind === 'buffer') info.linkTarget = inode.source.data.toString('utf8');
      if (inode.kind === 'char' || inode.kind === 'block') info.rdev = { major: inode.rdevMajor, minor: inode.rdevMinor };
      if (inode.source?.kind === 'path') info.sourcePath = inode.source.path;
      return info;
    });
  }

  /**
   * Returns the whole archive (with its trailer) as one Buffer. Files added from paths are read
   * synchronously here.
   */
  toBuffer(options: CpioOutputOptions = {}): Buffer {
    const level = gzipLevel(options);
    const chunks: Buffer[] = [];
    for (const chunk of this.chunksSync()) chunks.push(chunk);
    const raw = Buffer.concat(chunks);
    return level === undefined ? raw : gzipSync(raw, { level });
  }

  /** Returns the archive as a readable byte stream; host files are read as the stream is consumed. */
  toStream(options: CpioOutputOptions = {}): Readable {
    const level = gzipLevel(options);
    const raw = Readable.from(this.chunks(), { objectMode: false });
    if (level === undefined) return raw;
    const gz = createGzip({ level });
    raw.on('error', (err) => gz.destroy(err));
    return raw.pipe(gz);
  }

  /**
   * Streams the archive to a file. The bytes go to a temporary file beside it which is then
   * renamed, so a reader never sees a half-written archive.
   * @returns the number of bytes written.
   */
  async writeFile(path: string, options: CpioOutputOptions = {}): Promise<{ path: string; bytes: number }> {
    const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${Date.now()}.tmp`);
    const out = createWriteStream(tmp);
    try {
      await pipeline(this.toStream(options), out);
      await rename(tmp, path);
    } catch (err) {
      await rm(tmp, { force: true });
      if (err instanceof KvmkitError) throw err;
      throw new KvmkitError(`writing the cpio archive to ${path} failed: ${(err as Error).message}`, { cause: err });
    }
    return { path, bytes: out.bytesWritten };
  }

  /** Like {@link CpioWriter.writeFile} but synchronous. */
  writeFileSync(path: string, options: CpioOutputOptions = {}): { path: string; bytes: number } {
    const data = this.toBuffer(options);
    const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${Date.now()}.tmp`);
    try {
      writeFileSync(tmp, data);
      renameSync(tmp, path);
    } catch (err) {
      rmSync(tmp, { force: true });
      throw new KvmkitError(`writing the cpio archive to ${path} failed: ${(err as Error).message}`, { cause: err });
    }
    return { path, bytes: data.length };
  }

  private claimName(name: string): string {
    const norm = normalizeCpioName(name);
    if (this.byName.has(norm)) throw new ConfigError('name', 'must be unique in the archive (it was added before)', name);
    return norm;
  }

  private addInode(name: string, kind: CpioEntryKind, defaultPerm: number, options: CpioEntryOptions, source: DataSource | undefined): Inode {
    const norm = this.claimName(name);
    let perm = defaultPerm;
    if (options.mode !== undefined) {
      const m = options.mode;
      if (!Number.isInteger(m) || m < 0 || m > 0o177777) throw new ConfigError('mode', 'must be an integer from 0 to 0o7777 (permission bits)', m);
      const type = m & S_IFMT;
      if (type !== 0 && type !== TYPE_BITS[kind]) {
        throw new ConfigError('mode', `has file type bits 0o${type.toString(8)} that do not match a ${kind} (0o${TYPE_BITS[kind].toString(8)}); pass permission bits only`, `0o${m.toString(8)}`);
      }
      perm = m & 0o7777;
    }
    const inode: Inode = {
      ino: this.nextIno,
      kind,
      mode: TYPE_BITS[kind] | perm,
      uid: options.uid === undefined ? this.defaults.uid : checkU32('uid', options.uid),
      gid: options.gid === undefined ? this.defaults.gid : checkU32('gid', options.gid),
      mtime: options.mtime === undefined ? this.defaults.mtime : toEpochSeconds('mtime', options.mtime),
      rdevMajor: 0,
      rdevMinor: 0,
      source,
      names: [norm],
    };
    if (this.nextIno >= MAX_U32) throw new ConfigError('entries', 'ran out of 32-bit inode numbers');
    this.nextIno++;
    const entry: Entry = { name: norm, inode };
    this.list.push(entry);
    this.byName.set(norm, entry);
    return inode;
  }

  private nlinkOf(inode: Inode): number {
    return inode.kind === 'directory' ? 2 : inode.names.length;
  }

  /** Whether this entry is the one that carries its inode's data (the last of its names). */
  private carriesData(entry: Entry): boolean {
    const names = entry.inode.names;
    return names[names.length - 1] === entry.name;
  }

  private header(entry: Entry, filesize: number): Buffer {
    const { inode } = entry;
    return encodeNewcHeader({
      ino: inode.ino, mode: inode.mode, uid: inode.uid, gid: inode.gid, nlink: this.nlinkOf(inode),
      mtime: inode.mtime, filesize, rdevmajor: inode.rdevMajor, rdevminor: inode.rdevMinor, name: entry.name,
    });
  }

  private trailer(): Buffer {
    return encodeNewcHeader({ ino: 0, mode: 0, uid: 0, gid: 0, nlink: 1, mtime: 0, filesize: 0, name: CPIO_TRAILER });
  }

  private *chunksSync(): Generator<Buffer> {
    for (const entry of this.list) {
      const src = entry.inode.source;
      if (!src || !this.carriesData(entry)) {
        yield this.header(entry, 0);
        continue;
      }
      const data = src.kind === 'buffer' ? src.data : readHostFileSync(src.path);
      checkU32('file size', data.length);
      yield this.header(entry, data.length);
      yield data;
      const p = pad4(data.length);
      if (p) yield ZEROS.subarray(0, p);
    }
    yield this.trailer();
  }

  private async *chunks(): AsyncGenerator<Buffer> {
    for (const entry of this.list) {
      const src = entry.inode.source;
      if (!src || !this.carriesData(entry)) {
        yield this.header(entry, 0);
        continue;
      }
      let size: number;
      if (src.kind === 'buffer') {
        size = src.data.length;
        yield this.header(entry, size);
        yield src.data;
      } else {
        let fh;
        try {
          fh = await open(src.path, 'r');
        } catch (cause) {
          throw new KvmkitError(`cannot read ${src.path} for archive entry ${entry.name}: ${(cause as Error).message}`, { cause });
        }
        try {
          size = (await fh.stat()).size;
          checkU32('file size', size);
          yield this.header(entry, size);
          let done = 0;
          while (done < size) {
            const buf = Buffer.allocUnsafe(Math.min(READ_CHUNK, size - done));
            const { bytesRead } = await fh.read(buf, 0, buf.length, done);
            if (bytesRead === 0) throw new KvmkitError(`${src.path} shrank while it was being archived as ${entry.name} (expected ${size} bytes, got ${done})`);
            done += bytesRead;
            yield buf.subarray(0, bytesRead);
          }
        } finally {
          await fh.close();
        }
      }
      const p = pad4(size);
      if (p) yield ZEROS.subarray(0, p);
    }
    yield this.trailer();
  }
}

function gzipLevel(options: CpioOutputOptions): number | undefined {
  const g = options.gzip;
  if (g === undefined || g === false) return undefined;
  if (g === true) return -1;
  const level = g.level ?? -1;
  if (!Number.isInteger(level) || level < -1 || level > 9) throw new ConfigError('gzip.level', 'must be an integer from 0 to 9 (or -1 for the default)', level);
  return level;
}

function readHostFileSync(path: string): Buffer {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (cause) {
    throw new KvmkitError(`cannot read ${path} for the cpio archive: ${(cause as Error).message}`, { cause });
  }
  try {
    const size = fstatSync(fd).size;
    checkU32('file size', size);
    const buf = Buffer.allocUnsafe(size);
    let done = 0;
    while (done < size) {
      const n = readSync(fd, buf, done, size - done, done);
      if (n === 0) throw new KvmkitError(`${path} shrank while it was being archived (expected ${size} bytes, got ${done})`);
      done += n;
    }
    return buf;
  } finally {
    closeSync(fd);
  }
}
