/**
 * The file system behind the FUSE server: a host directory passed through to the guest, confined
 * to that directory.
 *
 * Confinement (the guest never reaches a host file outside `sharedDir`):
 * - every inode is an `O_PATH | O_NOFOLLOW` descriptor; every operation is a `*at()` call relative
 *   to a parent descriptor with one name, or a call on the inode's own descriptor (directly with
 *   `AT_EMPTY_PATH`, or through its /proc/self/fd magic link, which names that very inode and is
 *   never resolved by name again). No host path is ever built from guest names;
 * - a name with `/` is refused (EINVAL), `.` and `..` are refused where an entry would be created,
 *   removed or renamed (EINVAL), an empty name is ENOENT; `..` looked up in the root is the root;
 * - host symlinks are never followed: lookups use `O_NOFOLLOW`, stats `AT_SYMLINK_NOFOLLOW`, new
 *   files `O_CREAT | O_EXCL`; only regular files and directories are ever opened (anything else
 *   is EBADF, as virtiofsd), so the guest sees a symlink as a symlink and resolves it itself;
 * - a lookup of a name replaced on the host between LOOKUP and OPEN still opens the inode that was
 *   looked up (the descriptor, not the name, is reopened).
 *
 * Errors are thrown as {@link FuseError} with the errno the guest gets. Files the guest creates
 * are given the caller's uid/gid when the VMM runs as root (virtiofsd switches credentials for
 * the same effect), and exactly the mode asked for (the VMM's umask is undone; the guest kernel
 * applied the guest's umask already: DONT_MASK is not negotiated).
 * @module
 */
import { readFileSync } from 'node:fs';
import { ConfigError, errnoName } from '../errors';
import { ENTRY_OUT_SIZE } from './abi';
import { viewAddress } from '../disk/libcFile';
import { type Allowlist, componentKey } from './Allowlist';
import { direntplusSize, direntSize, statKey, statMode, writeDirent, writeEntryOut, type Timeout } from './encode';
import { fail, FuseError } from './FuseError';
import { type Handle, HandleTable } from './HandleTable';
import { Inode, InodeTable } from './InodeTable';
import { IoThreads } from './IoThreads';
import {
  AT, cString, E, EMPTY_PATH, fsLibc, O, RENAME, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, STATFS_SIZE, STATX_BASIC_STATS,
  STATX_SIZE, UTIME_NOW, UTIME_OMIT,
} from './libcFs';

/** Who asks (fuse_in_header uid, gid, pid). */
export interface FsContext {
  uid: number;
  gid: number;
  pid: number;
}

/** A looked-up inode and its attributes (a struct statx). */
export interface Entry {
  inode: Inode;
  stat: Uint8Array;
}

/** SETATTR arguments (fuse_setattr_in) after decoding. */
export interface SetattrArgs {
  valid: number;
  fh: number;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  atime: { sec: bigint; nsec: number };
  mtime: { sec: bigint; nsec: number };
}

/** Options of a {@link PassthroughFs}. */
export interface PassthroughFsOptions {
  /** The host directory to share. */
  sharedDir: string;
  /** Writeback caching is on: the guest may read files it opened write-only, and does O_APPEND itself. */
  writeback?: boolean;
  /** Visibility rules; undefined shows everything. */
  allowlist?: Allowlist;
  /** Reads and writes of at least this many bytes run on the thread pool. Default {@link ASYNC_IO_MIN_BYTES}. */
  asyncMinBytes?: number;
}

/**
 * Size from which READ/WRITE leave the calling thread for the I/O threads (IoThreads.ts), for a
 * server on the main thread (the host-kernel /dev/fuse tests); VirtioFs's own queue thread serves
 * them inline instead (`asyncMinBytes: Infinity`, FsQueueService.ts). Measured
 * with FuseServer.handle() on a page-cached file (this 2-CPU host, load average ~5 from other
 * work, so ±30 %): main-thread time per read, synchronous / on the I/O threads: 4 KiB 12–24 /
 * 45–68 µs, 64 KiB 16–32 / 40–42 µs, 128 KiB 26–29 / 36–38 µs, 256 KiB 46 / 45–48 µs, 1 MiB
 * 160–200 / 66–83 µs (the wake-up of the main loop is most of the hop's cost). Cached data moves
 * faster synchronously (1 MiB: 5.2–6.5 against 3.5–4.4 GB/s), but a read that has to wait for
 * the disk would hold the main thread for milliseconds. From 128 KiB (Linux's readahead window)
 * the hop costs the main thread no more than the copy.
 */
export const ASYNC_IO_MIN_BYTES = 128 * 1024;
/** Longest symlink target read (PATH_MAX, include/uapi/linux/limits.h). */
export const PATH_MAX = 4096;
/** Longest file name (NAME_MAX, include/uapi/linux/limits.h). */
export const NAME_MAX = 255;
/** iovecs per preadv/pwritev (IOV_MAX / UIO_MAXIOV, include/uapi/linux/uio.h). */
const IOV_MAX = 1024;
/** Largest read copied on the calling thread from the page cache (one FUSE max-size READ; ≈ 60–200 µs here). */
export const INLINE_READ_MAX = 1 << 20;
/** preadv2 flag: fail with EAGAIN instead of waiting for the disk (include/uapi/linux/fs.h). */
const RWF_NOWAIT = 0x00000008;
/** SEEK_SET (include/uapi/linux/fs.h). */
const SEEK_SET = 0;
/** ACCESS mask bits (include/linux/fs.h MAY_*, unistd.h R_OK/W_OK/X_OK). */
const R_OK = 4;
const W_OK = 2;
const X_OK = 1;

const DOT = 0x2e;
const SLASH = 0x2f;
const DOT_Z = cString('.');

/** The share: inodes, open handles, and every operation of the FUSE server. */
export class PassthroughFs {
  /** The shared directory as given. */
  readonly sharedDir: string;
  /** Node ids the guest holds. */
  readonly inodes: InodeTable;
  /** Open files and directories. */
  readonly handles = new HandleTable();
  /** Visibility rules, when configured (fixed at construction; the rules themselves change). */
  readonly allowlist: Allowlist | undefined;
  private readonly writeback: boolean;
  private readonly asyncMinBytes: number;
  private readonly procFd: number;
  private readonly asRoot: boolean;
  private readonly umask: number;
  private readonly dirBuf = new Uint8Array(32 * 1024);
  private readonly running = new Set<Promise<unknown>>();
  private readonly io = new IoThreads();
  /** Large reads are first tried from the page cache on the calling thread (cleared when the kernel refuses RWF_NOWAIT). */
  private nowaitReads = true;
  /** Large reads served from the host page cache on the calling thread (no I/O thread hop). */
  inlineReads = 0;

  /**
   * Open `sharedDir` (synchronously).
   * @throws ConfigError when it is not a directory the VMM can open
   */
  constructor(options: PassthroughFsOptions) {
    const c = fsLibc();
    this.sharedDir = options.sharedDir;
    this.writeback = options.writeback ?? false;
    this.allowlist = options.allowlist;
    this.asyncMinBytes = options.asyncMinBytes ?? ASYNC_IO_MIN_BYTES;
    const rootFd = openSharedDir(options.sharedDir);
    this.procFd = c.openat(AT.FDCWD, cString('/proc/self/fd'), O.PATH | O.DIRECTORY | O.CLOEXEC, 0);
    if (this.procFd < 0) {
      const e = c.errno();
      c.close(rootFd);
      throw new ConfigError('shared_dir', `needs /proc/self/fd to serve files (${errnoName(e)})`, options.sharedDir);
    }
    let stat: Uint8Array;
    try {
      stat = statFd(rootFd);
    } catch (e) {
      c.close(rootFd);
      c.close(this.procFd);
      throw new ConfigError('shared_dir', 'must be a directory the VMM can stat', options.sharedDir, { cause: e });
    }
    this.inodes = new InodeTable(makeRoot(rootFd, stat));
    this.asRoot = c.geteuid() === 0;
    this.umask = processUmask();
  }

  /** The inode of `nodeid`. @throws FuseError EBADF when the guest holds no such node id */
  inode(nodeid: number): Inode {
    return this.inodes.get(nodeid) ?? fail(E.BADF, `node ${nodeid}`);
  }

  // ---- names and lookups ----

  /**
   * LOOKUP `name` (NUL-terminated) in directory `parent`. `..` in the root is the root.
   * @throws FuseError ENOENT for an unknown parent (as virtiofsd) or an invisible name
   */
  lookup(parent: number, name: Uint8Array): Entry {
    checkName(name, false);
    const dir = this.inodes.get(parent) ?? fail(E.NOENT, `lookup in node ${parent}`);
    if (this.allowlist && !this.visibleName(dir, name)) fail(E.NOENT, 'lookup (not in the allowlist)');
    return this.doLookup(dir, isDotDot(name) && dir === this.inodes.root ? DOT_Z : name);
  }

  /** FORGET `n` lookups of `nodeid`. Unknown node ids are ignored (FORGET has no reply). */
  forget(nodeid: number, n: number): void {
    this.inodes.forget(nodeid, n);
  }

  /** GETATTR. */
  getattr(nodeid: number): Uint8Array {
    return statFd(this.inode(nodeid).fd);
  }

  /** SETATTR: mode, owner, size, times (in that order, as virtiofsd), then the new attributes. */
  setattr(nodeid: number, a: SetattrArgs): Uint8Array {
    const c = fsLibc();
    const inode = this.inode(nodeid);
    this.requireWritable(inode);
    const h = a.valid & SETATTR_FH ? this.handles.get(a.fh, nodeid, false) : undefined;
    if (a.valid & SETATTR_MODE) {
      const r = h ? c.fchmod(h.fd, a.mode & 0o7777) : c.fchmodat(this.procFd, inode.procName, a.mode & 0o7777, 0);
      check(r, 'chmod');
    }
    if (a.valid & (SETATTR_UID | SETATTR_GID)) {
      const uid = a.valid & SETATTR_UID ? a.uid : 0xffffffff;
      const gid = a.valid & SETATTR_GID ? a.gid : 0xffffffff;
      check(c.fchownat(inode.fd, EMPTY_PATH, uid, gid, AT.EMPTY_PATH | AT.SYMLINK_NOFOLLOW), 'chown');
    }
    if (a.valid & SETATTR_SIZE) {
      if (!Number.isSafeInteger(a.size)) fail(E.FBIG, 'truncate');
      if (h) check(c.ftruncate(h.fd, a.size), 'truncate');
      else {
        const fd = this.openInode(inode, O.WRONLY);
        const r = c.ftruncate(fd, a.size);
        const e = c.errno();
        c.close(fd);
        if (r < 0) fail(e, 'truncate');
      }
    }
    if (a.valid & (SETATTR_ATIME | SETATTR_MTIME)) {
      const times = new DataView(new ArrayBuffer(32));
      const put = (at: number, set: boolean, now: boolean, t: { sec: bigint; nsec: number }): void => {
        times.setBigInt64(at, set && !now ? t.sec : 0n, true);
        times.setBigInt64(at + 8, BigInt(!set ? UTIME_OMIT : now ? UTIME_NOW : t.nsec), true);
      };
      put(0, (a.valid & SETATTR_ATIME) !== 0, (a.valid & SETATTR_ATIME_NOW) !== 0, a.atime);
      put(16, (a.valid & SETATTR_MTIME) !== 0, (a.valid & SETATTR_MTIME_NOW) !== 0, a.mtime);
      const tv = new Uint8Array(times.buffer);
      let r: number;
      if (h) r = c.futimens(h.fd, tv);
      else if (inode.type === S_IFLNK) r = c.utimensat(inode.fd, EMPTY_PATH, tv, AT.EMPTY_PATH | AT.SYMLINK_NOFOLLOW);
      else r = c.utimensat(this.procFd, inode.procName, tv, 0);
      check(r, 'utimensat');
    }
    return statFd(inode.fd);
  }

  /** READLINK: the link's bytes, unresolved. */
  readlink(nodeid: number): Uint8Array {
    const inode = this.inode(nodeid);
    this.requireVisible(inode, 'readlink');
    const buf = new Uint8Array(PATH_MAX + 1);
    const n = fsLibc().readlinkat(inode.fd, EMPTY_PATH, buf, buf.length);
    check(n, 'readlink');
    if (n > PATH_MAX) fail(E.NAMETOOLONG, 'readlink');
    return buf.subarray(0, n);
  }

  /** SYMLINK `name` → `target` (both NUL-terminated) in `parent`. */
  symlink(ctx: FsContext, parent: number, name: Uint8Array, target: Uint8Array): Entry {
    const dir = this.createIn(parent, name);
    check(fsLibc().symlinkat(target, dir.fd, name), 'symlink');
    return this.adopt(ctx, dir, name, -1);
  }

  /** MKNOD (any file type the host allows, with `rdev` as fuse.h encodes it). */
  mknod(ctx: FsContext, parent: number, name: Uint8Array, mode: number, rdev: number): Entry {
    const dir = this.createIn(parent, name);
    check(fsLibc().mknodat(dir.fd, name, mode, rdev), 'mknod');
    return this.adopt(ctx, dir, name, mode & 0o7777);
  }

  /** MKDIR. */
  mkdir(ctx: FsContext, parent: number, name: Uint8Array, mode: number): Entry {
    const dir = this.createIn(parent, name);
    check(fsLibc().mkdirat(dir.fd, name, mode & 0o7777), 'mkdir');
    return this.adopt(ctx, dir, name, mode & 0o7777);
  }

  /** UNLINK (`rmdir` false) or RMDIR. */
  remove(parent: number, name: Uint8Array, rmdir: boolean): void {
    const dir = this.createIn(parent, name);
    check(fsLibc().unlinkat(dir.fd, name, rmdir ? AT.REMOVEDIR : 0), rmdir ? 'rmdir' : 'unlink');
  }

  /** RENAME / RENAME2 (flags: RENAME_NOREPLACE, RENAME_EXCHANGE, RENAME_WHITEOUT as renameat2). */
  rename(parent: number, name: Uint8Array, newParent: number, newName: Uint8Array, flags: number): void {
    const from = this.createIn(parent, name);
    const to = this.createIn(newParent, newName);
    // Keep allowlist paths right: the inodes the guest holds for the two names move with them.
    const moved = this.allowlist ? this.known(from, name) : undefined;
    const swapped = this.allowlist && flags & RENAME.EXCHANGE ? this.known(to, newName) : undefined;
    check(fsLibc().renameat2(from.fd, name, to.fd, newName, flags), 'rename');
    if (moved) setPlace(moved, to, newName);
    if (swapped) setPlace(swapped, from, name);
  }

  /** LINK `nodeid` as `newName` in `newParent` (a file hidden by the allowlist cannot be linked back into view). */
  link(nodeid: number, newParent: number, newName: Uint8Array): Entry {
    const dir = this.createIn(newParent, newName);
    const inode = this.inode(nodeid);
    this.requireVisible(inode, 'link');
    check(fsLibc().linkat(this.procFd, inode.procName, dir.fd, newName, AT.SYMLINK_FOLLOW), 'link');
    const stat = statFd(inode.fd);
    inode.nlookup++;
    return { inode, stat };
  }

  // ---- files ----

  /** OPEN: a handle on a regular file (or directory) for `flags` (the guest's O_* flags). */
  open(nodeid: number, flags: number): number {
    const inode = this.inode(nodeid);
    this.requireVisible(inode, 'open');
    if ((flags & O.ACCMODE) !== O.RDONLY || flags & O.TRUNC) this.requireWritable(inode);
    const fd = this.openInode(inode, this.hostOpenFlags(flags));
    return this.handles.add(nodeid, fd, false);
  }

  /** CREATE `name` in `parent` and open it: O_CREAT | O_EXCL on the host, then, unless the guest asked for O_EXCL, an existing file is opened instead. */
  create(ctx: FsContext, parent: number, name: Uint8Array, flags: number, mode: number): { entry: Entry; fh: number } {
    const c = fsLibc();
    const dir = this.createIn(parent, name);
    const hostFlags = this.hostOpenFlags(flags) | O.CREAT | O.EXCL | O.NOFOLLOW;
    const fd = c.openat(dir.fd, name, hostFlags, mode & 0o7777);
    if (fd < 0) {
      const e = c.errno();
      if (e !== E.EXIST || flags & O.EXCL) fail(e, 'create');
      const entry = this.doLookup(dir, name);
      try {
        return { entry, fh: this.handles.add(entry.inode.nodeid, this.openInode(entry.inode, this.hostOpenFlags(flags)), false) };
      } catch (err) {
        this.inodes.forget(entry.inode.nodeid, 1);
        throw err;
      }
    }
    try {
      this.setOwnerAndMode(ctx, dir, fd, mode & 0o7777, true);
      // The inode is the file just created: reopen our descriptor's own file as O_PATH.
      const pathFd = c.openat(this.procFd, cString(String(fd)), O.PATH | O.CLOEXEC, 0);
      check(pathFd, 'create');
      const stat = statFd(pathFd);
      const inode = this.inodes.ref(pathFd, statKey(stat), statMode(stat) & S_IFMT);
      if (this.allowlist) setPlace(inode, dir, name);
      return { entry: { inode, stat }, fh: this.handles.add(inode.nodeid, fd, false) };
    } catch (err) {
      c.close(fd);
      throw err;
    }
  }

  /**
   * READ up to the views' total length at `offset` into `views` (guest memory, no copy).
   * @returns bytes read, or a promise of them for large reads not in the page cache (run on the thread pool)
   */
  read(nodeid: number, fh: number, offset: number, views: readonly Uint8Array[]): number | Promise<number> {
    return this.transfer(this.handles.get(fh, nodeid, false), offset, views, false);
  }

  /** WRITE the views' bytes (guest memory, no copy) at `offset`. @returns bytes written, or a promise of them */
  write(nodeid: number, fh: number, offset: number, views: readonly Uint8Array[]): number | Promise<number> {
    return this.transfer(this.handles.get(fh, nodeid, false), offset, views, true);
  }

  /** FLUSH: `close(dup(fd))`, so the host file system sees a close (as virtiofsd). */
  flush(nodeid: number, fh: number): void {
    const c = fsLibc();
    const h = this.handles.get(fh, nodeid, false);
    const fd = c.dup(h.fd);
    check(fd, 'flush');
    check(c.close(fd), 'flush');
  }

  /** RELEASE / RELEASEDIR. */
  release(nodeid: number, fh: number, dir: boolean): void {
    this.handles.release(fh, nodeid, dir);
  }

  /** FSYNC / FSYNCDIR on the thread pool. */
  fsync(nodeid: number, fh: number, dir: boolean, dataOnly: boolean): Promise<void> {
    const h = this.handles.get(fh, nodeid, dir);
    return this.pinned(h, () => this.io.fsync(h.fd, dataOnly), 'fsync').then(() => undefined);
  }

  /** FALLOCATE on the thread pool. */
  fallocate(nodeid: number, fh: number, mode: number, offset: number, length: number): Promise<void> {
    const h = this.handles.get(fh, nodeid, false);
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length)) fail(E.FBIG, 'fallocate');
    return this.pinned(h, () => this.io.fallocate(h.fd, mode, offset, length), 'fallocate').then(() => undefined);
  }

  /** LSEEK (SEEK_DATA / SEEK_HOLE and the rest): the new offset. */
  lseek(nodeid: number, fh: number, offset: number, whence: number): number {
    const h = this.handles.get(fh, nodeid, false);
    if (!Number.isSafeInteger(offset)) fail(E.INVAL, 'lseek');
    const r = Number(fsLibc().lseek(h.fd, offset, whence));
    return check(r, 'lseek');
  }

  // ---- directories ----

  /** OPENDIR. */
  opendir(nodeid: number): number {
    const inode = this.inode(nodeid);
    if (inode.type !== S_IFDIR) fail(E.NOTDIR, 'opendir');
    this.requireVisible(inode, 'opendir');
    const fd = this.openInode(inode, O.RDONLY | O.DIRECTORY);
    return this.handles.add(nodeid, fd, true);
  }

  /**
   * READDIR / READDIRPLUS from `offset` (a d_off cookie of a previous entry, 0 at the start): as
   * many whole entries as fit in `size` bytes, each carrying the offset of the next. With `plus`
   * every entry but `.` and `..` is looked up (the guest then holds its node id); an entry that
   * vanished meanwhile goes out with node id 0 (the kernel then treats it as a plain dirent).
   */
  readdir(nodeid: number, fh: number, offset: bigint, size: number, plus: boolean, timeouts?: { entry: Timeout; attr: Timeout }): Uint8Array {
    const c = fsLibc();
    const dir = this.inode(nodeid);
    const h = this.handles.get(fh, nodeid, true);
    // d_off cookies are opaque 63-bit values (ext4 hashes): seek back to the one the guest names.
    if (c.lseek(h.fd, BigInt.asIntN(64, offset), SEEK_SET) < 0) fail(c.errno(), 'readdir');
    const filter = this.allowlist ? this.listingFilterFor(dir) : undefined;
    const out = new Uint8Array(size);
    const ov = new DataView(out.buffer);
    let used = 0;
    const buf = this.dirBuf;
    const bv = new DataView(buf.buffer);
    for (;;) {
      const n = c.getdents64(h.fd, buf, buf.length);
      if (n < 0) {
        if (used > 0) break; // what was gathered goes out; the error comes back on the next call
        fail(c.errno(), 'getdents64');
      }
      if (n === 0) break;
      let full = false;
      for (let p = 0; p < n; ) {
        // struct linux_dirent64 {u64 d_ino; s64 d_off; u16 d_reclen; u8 d_type; char d_name[]} (linux/dirent.h)
        const ino = bv.getBigUint64(p, true);
        const next = bv.getBigUint64(p + 8, true);
        const reclen = bv.getUint16(p + 16, true);
        const type = buf[p + 18]!;
        const nameEnd = buf.indexOf(0, p + 19);
        const name = buf.subarray(p + 19, nameEnd < 0 || nameEnd > p + reclen ? p + reclen : nameEnd);
        p += reclen;
        const dots = isDotOrDotDot(name);
        if (filter && !dots && !allowedByFilter(filter, name)) continue;
        const need = plus ? direntplusSize(name.length) : direntSize(name.length);
        if (used + need > size) {
          full = true;
          break;
        }
        let entIno = ino;
        let entType = type;
        if (dots && name.length === 2 && dir === this.inodes.root) {
          entIno = statIno(statFd(dir.fd)); // hide the root's parent
          entType = 4; // DT_DIR
        }
        if (plus) {
          if (!dots && timeouts) {
            const z = new Uint8Array(name.length + 1);
            z.set(name);
            try {
              const e = this.doLookup(dir, z);
              writeEntryOut(ov, used, e.inode.nodeid, e.stat, timeouts.entry, timeouts.attr);
            } catch (err) {
              if (!(err instanceof FuseError)) throw err; // vanished: node id 0, zero attributes
            }
          }
          writeDirent(out, used + ENTRY_OUT_SIZE, entIno, next, entType, name);
        } else {
          writeDirent(out, used, entIno, next, entType, name);
        }
        used += need;
      }
      if (full) break;
    }
    return out.subarray(0, used);
  }

  // ---- everything else ----

  /** STATFS: a struct statfs of the file system holding `nodeid`. */
  statfs(nodeid: number): Uint8Array {
    const buf = new Uint8Array(STATFS_SIZE);
    check(fsLibc().fstatfs(this.inode(nodeid).fd, buf), 'statfs');
    return buf;
  }

  /** ACCESS: check `mask` (R_OK | W_OK | X_OK, or 0 for existence) against the mode bits for the caller, as crosvm. */
  access(ctx: FsContext, nodeid: number, mask: number): void {
    const stat = statFd(this.inode(nodeid).fd);
    const v = new DataView(stat.buffer);
    const mode = statMode(stat);
    if ((mask & (R_OK | W_OK | X_OK)) === 0) return;
    if (ctx.uid === 0) {
      // root may read and write anything; execute needs one x bit (or a directory)
      if (mask & X_OK && (mode & S_IFMT) !== S_IFDIR && (mode & 0o111) === 0) fail(E.ACCES, 'access');
      return;
    }
    const bits = v.getUint32(20, true) === ctx.uid ? (mode >> 6) & 7 : v.getUint32(24, true) === ctx.gid ? (mode >> 3) & 7 : mode & 7;
    if (mask & ~bits & 7) fail(E.ACCES, 'access');
  }

  /** GETXATTR into a buffer of `size` bytes (0: only the value's length). */
  getxattr(nodeid: number, name: Uint8Array, size: number): Uint8Array | number {
    const inode = this.inode(nodeid);
    const c = fsLibc();
    if (size === 0) return check(c.getxattr(inode.procPath, name, null, 0), 'getxattr');
    const buf = new Uint8Array(size);
    return buf.subarray(0, check(c.getxattr(inode.procPath, name, buf, size), 'getxattr'));
  }

  /** LISTXATTR into a buffer of `size` bytes (0: only the list's length). */
  listxattr(nodeid: number, size: number): Uint8Array | number {
    const inode = this.inode(nodeid);
    const c = fsLibc();
    if (size === 0) return check(c.listxattr(inode.procPath, null, 0), 'listxattr');
    const buf = new Uint8Array(size);
    return buf.subarray(0, check(c.listxattr(inode.procPath, buf, size), 'listxattr'));
  }

  /** SETXATTR (flags: XATTR_CREATE / XATTR_REPLACE). */
  setxattr(nodeid: number, name: Uint8Array, value: Uint8Array, flags: number): void {
    const inode = this.inode(nodeid);
    this.requireWritable(inode);
    check(fsLibc().setxattr(inode.procPath, name, value, value.length, flags), 'setxattr');
  }

  /** REMOVEXATTR. */
  removexattr(nodeid: number, name: Uint8Array): void {
    const inode = this.inode(nodeid);
    this.requireWritable(inode);
    check(fsLibc().removexattr(inode.procPath, name), 'removexattr');
  }

  /** DESTROY (or a new INIT): forget every node id but the root and close every handle. */
  destroy(): void {
    this.handles.reset();
    this.inodes.reset();
  }

  /** Start the I/O threads ahead of the first large READ/WRITE (a FUSE session began). */
  warmIo(): void {
    this.io.warm();
  }

  /** Asynchronous I/O still running. */
  get inFlight(): number {
    return this.running.size;
  }

  /** Wait for the asynchronous I/O running now. */
  async drain(): Promise<void> {
    while (this.running.size > 0) await Promise.allSettled([...this.running]);
  }

  /**
   * Block until no system call of the I/O threads is running (at most `timeoutMs`), and drop the
   * ones not started: after it, nothing this file system started writes guest RAM (a device reset).
   * @returns false when a call was still running at the deadline
   */
  quiesce(timeoutMs: number): boolean {
    this.io.cancelQueued();
    return this.io.quiesce(timeoutMs);
  }

  /** Why the I/O threads stopped working, if they did (reads and writes then answer EIO). */
  get ioError(): Error | undefined {
    return this.io.error;
  }

  /** Close everything, the root and /proc/self/fd descriptors too, once running I/O is over. */
  async close(): Promise<void> {
    this.destroy();
    await this.io.close();
    await this.drain();
    this.inodes.clear();
    fsLibc().close(this.procFd);
  }

  // ---- internals ----

  /**
   * Look `name` up in `dir` and count the lookup. A statx of the name (never following it) comes
   * first: a missing name fails there, and a host file the guest already holds is answered from it
   * with no descriptor opened (one system call instead of three). Otherwise the name is opened
   * with `O_PATH | O_NOFOLLOW` and the new inode's attributes come from that descriptor.
   */
  private doLookup(dir: Inode, name: Uint8Array): Entry {
    const c = fsLibc();
    const first = new Uint8Array(STATX_SIZE);
    check(c.statx(dir.fd, name, AT.SYMLINK_NOFOLLOW, STATX_BASIC_STATS, first), 'lookup');
    const known = this.inodes.find(statKey(first));
    if (known) {
      known.nlookup++;
      this.placed(known, dir, name);
      return { inode: known, stat: first };
    }
    const fd = c.openat(dir.fd, name, O.PATH | O.NOFOLLOW | O.CLOEXEC, 0);
    check(fd, 'lookup');
    let stat: Uint8Array;
    try {
      stat = statFd(fd);
    } catch (e) {
      c.close(fd);
      throw e;
    }
    const inode = this.inodes.ref(fd, statKey(stat), statMode(stat) & S_IFMT);
    this.placed(inode, dir, name);
    return { inode, stat };
  }

  /** Remember where an inode was looked up (for allowlist paths; `.` and `..` say nothing new). */
  private placed(inode: Inode, dir: Inode, name: Uint8Array): void {
    if (this.allowlist && !isDotOrDotDot(name.subarray(0, name.length - 1))) setPlace(inode, dir, name);
  }

  /** The inode of an entry just created in `dir`, given the caller's owner and the exact `mode` (-1: leave it). */
  private adopt(ctx: FsContext, dir: Inode, name: Uint8Array, mode: number): Entry {
    const entry = this.doLookup(dir, name);
    try {
      this.setOwnerAndMode(ctx, dir, entry.inode.fd, mode, false);
    } catch (e) {
      this.inodes.forget(entry.inode.nodeid, 1);
      throw e;
    }
    return { inode: entry.inode, stat: statFd(entry.inode.fd) };
  }

  /**
   * Give a new file the caller's uid (and gid, unless the directory is set-group-ID) when the VMM is
   * root, then set `mode` again when the VMM's umask or the chown dropped bits. `open` says whether
   * `fd` is an open file (else an O_PATH descriptor).
   */
  private setOwnerAndMode(ctx: FsContext, dir: Inode, fd: number, mode: number, open: boolean): void {
    const c = fsLibc();
    let chowned = false;
    if (this.asRoot && (ctx.uid !== 0 || ctx.gid !== 0)) {
      const sgidDir = (statMode(statFd(dir.fd)) & 0o2000) !== 0;
      check(c.fchownat(fd, EMPTY_PATH, ctx.uid, sgidDir ? 0xffffffff : ctx.gid, AT.EMPTY_PATH | AT.SYMLINK_NOFOLLOW), 'chown');
      chowned = true;
    }
    if (mode < 0) return;
    if ((mode & this.umask) !== 0 || (chowned && mode & 0o6000)) {
      if (open) check(c.fchmod(fd, mode), 'chmod');
      else check(c.fchmodat(this.procFd, cString(String(fd)), mode, 0), 'chmod');
    }
  }

  /** The directory a name is created in / removed from: name rules, node id, allowlist. */
  private createIn(parent: number, name: Uint8Array): Inode {
    checkName(name, true);
    const dir = this.inode(parent);
    if (this.allowlist) {
      const path = dir.components();
      if (!path || !this.allowlist.isWritable([...path, componentKey(name.subarray(0, name.length - 1))])) {
        fail(E.ACCES, 'change (not in the allowlist)');
      }
    }
    return dir;
  }

  /** The inode the guest holds for `name` in `dir`, if any (for rename bookkeeping). */
  private known(dir: Inode, name: Uint8Array): Inode | undefined {
    const buf = new Uint8Array(STATX_SIZE);
    if (fsLibc().statx(dir.fd, name, AT.SYMLINK_NOFOLLOW, STATX_BASIC_STATS, buf) < 0) return undefined;
    return this.inodes.find(statKey(buf));
  }

  /** Open the inode's own file through its /proc/self/fd magic link: regular files and directories only. */
  private openInode(inode: Inode, flags: number): number {
    if (inode.type !== S_IFREG && inode.type !== S_IFDIR) fail(E.BADF, 'open (not a regular file or directory)');
    const fd = fsLibc().openat(this.procFd, inode.procName, (flags & ~(O.CREAT | O.EXCL | O.NOCTTY | O.NOFOLLOW)) | O.CLOEXEC, 0);
    return check(fd, 'open');
  }

  /**
   * The host open(2) flags for the guest's: no O_DIRECT (as virtiofsd's default), no O_PATH or
   * O_TMPFILE (an OPEN opens the inode itself, nothing else); with writeback, read access and no
   * O_APPEND.
   */
  private hostOpenFlags(flags: number): number {
    let f = flags & ~(O.DIRECT | O.CLOEXEC | O.PATH | O.TMPFILE_BIT);
    if (this.writeback) {
      if ((f & O.ACCMODE) === O.WRONLY) f = (f & ~O.ACCMODE) | O.RDWR;
      f &= ~O.APPEND;
    }
    return f;
  }

  private visibleName(dir: Inode, name: Uint8Array): boolean {
    const path = dir.components();
    if (!path) return false;
    const bytes = name.subarray(0, name.length - 1);
    if (bytes.length === 1 && bytes[0] === DOT) return this.allowlist!.isVisible(path);
    if (isDotDot(name)) return this.allowlist!.isVisible(path.slice(0, -1));
    return this.allowlist!.isVisible([...path, componentKey(bytes)]);
  }

  private listingFilterFor(dir: Inode): ReturnType<Allowlist['listingFilter']> {
    const path = dir.components();
    return path ? this.allowlist!.listingFilter(path) : { kind: 'none' };
  }

  /** With an allowlist: EACCES unless the inode's path is visible (the root always is). */
  private requireVisible(inode: Inode, what: string): void {
    if (!this.allowlist || inode === this.inodes.root) return;
    const path = inode.components();
    if (!path || !this.allowlist.isVisible(path)) fail(E.ACCES, `${what} (not in the allowlist)`);
  }

  /** With an allowlist: EACCES unless the inode's path is allowed or below an allowed path. */
  private requireWritable(inode: Inode): void {
    if (!this.allowlist) return;
    const path = inode === this.inodes.root ? [] : inode.components();
    if (!path || !this.allowlist.isWritable(path)) fail(E.ACCES, 'change (not in the allowlist)');
  }

  /**
   * pread/pwrite between `h` and guest views: synchronously when small, on the thread pool when
   * large, except a large read the page cache holds in full (up to {@link INLINE_READ_MAX}), which
   * is copied here without waiting for the disk ({@link nowaitRead}).
   */
  private transfer(h: Handle, offset: number, views: readonly Uint8Array[], write: boolean): number | Promise<number> {
    if (!Number.isSafeInteger(offset) || offset < 0) fail(E.INVAL, write ? 'write' : 'read');
    let total = 0;
    for (const v of views) total += v.length;
    if (total === 0) return 0;
    const c = fsLibc();
    if (total >= this.asyncMinBytes && views.length <= IOV_MAX) {
      const iov = iovec(views);
      if (!write && this.nowaitRead(h.fd, iov, views.length, offset, total)) return total;
      const io = (): Promise<number> => (write ? this.io.pwritev(h.fd, iov, views.length, offset, views) : this.io.preadv(h.fd, iov, views.length, offset, views));
      return this.pinned(h, io, write ? 'write' : 'read');
    }
    let done = 0;
    for (let i = 0; i < views.length; i += IOV_MAX) {
      const part = views.slice(i, i + IOV_MAX);
      let want = 0;
      for (const v of part) want += v.length;
      const n = (write ? c.pwritev : c.preadv)(h.fd, iovec(part), part.length, offset + done);
      if (n < 0) {
        if (done > 0) break;
        fail(c.errno(), write ? 'write' : 'read');
      }
      done += n;
      if (n < want) break; // end of file, or a full disk
    }
    return done;
  }

  /**
   * A large read the host page cache holds in full, copied here with `preadv2(RWF_NOWAIT)` (which
   * fails with EAGAIN rather than wait for the disk): it saves the two thread wake-ups of the I/O
   * thread path, which cost more than copying 1 MiB of cached data (bench/fs.mjs seqread).
   * @returns false when the I/O threads must do the read (not all cached, end of file, an error)
   */
  private nowaitRead(fd: number, iov: Uint8Array, iovcnt: number, offset: number, total: number): boolean {
    if (!this.nowaitReads || total > INLINE_READ_MAX) return false;
    const c = fsLibc();
    const r = c.preadv2(fd, iov, iovcnt, offset, RWF_NOWAIT);
    if (r === total) {
      this.inlineReads++;
      return true;
    }
    if (r < 0) {
      const e = c.errno();
      // No RWF_NOWAIT here (EINVAL: an unknown flag before Linux 4.14): stop trying.
      if (e === E.OPNOTSUPP || e === E.NOSYS || (e === E.INVAL && this.inlineReads === 0)) this.nowaitReads = false;
    }
    return false; // the I/O thread redoes the whole read (and reports any error)
  }

  /** Run `io` with `h` pinned (its descriptor stays open). A negative result is that errno. */
  private pinned(h: Handle, io: () => Promise<number>, what: string): Promise<number> {
    this.handles.pin(h);
    const p = io().then((r) => {
      if (r < 0) fail(-r, what);
      return r;
    });
    const tracked = p.finally(() => {
      this.handles.unpin(h);
      this.running.delete(tracked);
    });
    this.running.add(tracked);
    return tracked;
  }
}

// fuse_setattr_in.valid bits used here (include/uapi/linux/fuse.h FATTR_*)
const SETATTR_MODE = 1 << 0;
const SETATTR_UID = 1 << 1;
const SETATTR_GID = 1 << 2;
const SETATTR_SIZE = 1 << 3;
const SETATTR_ATIME = 1 << 4;
const SETATTR_MTIME = 1 << 5;
const SETATTR_FH = 1 << 6;
const SETATTR_ATIME_NOW = 1 << 7;
const SETATTR_MTIME_NOW = 1 << 8;

/** A libc result: the value, or a FuseError with errno. */
function check(r: number, what: string): number {
  if (r < 0) fail(fsLibc().errno(), what);
  return r;
}

/** statx of the descriptor itself, without following it if it is a symlink. */
function statFd(fd: number): Uint8Array {
  const buf = new Uint8Array(STATX_SIZE);
  check(fsLibc().statx(fd, EMPTY_PATH, AT.EMPTY_PATH | AT.SYMLINK_NOFOLLOW, STATX_BASIC_STATS, buf), 'statx');
  return buf;
}

function statIno(stat: Uint8Array): bigint {
  return new DataView(stat.buffer, stat.byteOffset).getBigUint64(32, true);
}

/** The share's root: node id FUSE_ROOT_ID (1), never forgotten. */
function makeRoot(fd: number, stat: Uint8Array): Inode {
  const root = new Inode(1, fd, statKey(stat), S_IFDIR);
  root.nlookup = 1;
  return root;
}

/**
 * Check a NUL-terminated guest name. Empty: ENOENT (virtiofsd); with `/`: EINVAL; longer than
 * NAME_MAX: ENAMETOOLONG; `.` or `..` where an entry is created or removed: EINVAL.
 */
function checkName(name: Uint8Array, creating: boolean): void {
  const n = name.length - 1;
  if (n <= 0) fail(E.NOENT, 'empty name');
  for (let i = 0; i < n; i++) if (name[i] === SLASH) fail(E.INVAL, 'name with /');
  if (creating && isDotOrDotDot(name.subarray(0, n))) fail(E.INVAL, 'name . or ..');
  if (n > NAME_MAX) fail(E.NAMETOOLONG, 'name');
}

function isDotOrDotDot(b: Uint8Array): boolean {
  return (b.length === 1 && b[0] === DOT) || (b.length === 2 && b[0] === DOT && b[1] === DOT);
}

function isDotDot(z: Uint8Array): boolean {
  return z.length === 3 && z[0] === DOT && z[1] === DOT;
}

function setPlace(inode: Inode, dir: Inode, name: Uint8Array): void {
  if (inode.nodeid === 1) return;
  inode.parent = dir;
  inode.name = componentKey(name.subarray(0, name.length - 1));
}

function allowedByFilter(filter: ReturnType<Allowlist['listingFilter']>, name: Uint8Array): boolean {
  if (filter.kind === 'all') return true;
  if (filter.kind === 'none') return false;
  return filter.names.has(componentKey(name));
}

/** struct iovec[] for `views`: (address, length) pairs the kernel reads and writes in place. */
function iovec(views: readonly Uint8Array[]): Uint8Array {
  const iov = new BigUint64Array(views.length * 2);
  for (let i = 0; i < views.length; i++) {
    iov[2 * i] = BigInt(viewAddress(views[i]!));
    iov[2 * i + 1] = BigInt(views[i]!.length);
  }
  return new Uint8Array(iov.buffer);
}

/**
 * An `O_PATH` descriptor of the share's root directory.
 * @throws ConfigError when `sharedDir` is not a directory the VMM can open
 */
export function openSharedDir(sharedDir: string): number {
  const c = fsLibc();
  const fd = c.openat(AT.FDCWD, cString(sharedDir), O.PATH | O.DIRECTORY | O.CLOEXEC, 0);
  if (fd < 0) throw new ConfigError('shared_dir', `must be an existing directory the VMM can open (${errnoName(c.errno())})`, sharedDir);
  return fd;
}

/** The process's umask, from /proc/self/status (reading it with umask(2) would change it). */
function processUmask(): number {
  const m = /^Umask:\s*([0-7]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? parseInt(m[1]!, 8) : 0o022;
}
