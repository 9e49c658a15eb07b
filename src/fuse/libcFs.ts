/**
 * The libc calls of the FUSE file system, through koffi. Every call that names a file takes a
 * directory descriptor and one NUL-terminated name given as bytes (`Uint8Array`), never a JS
 * string: guest file names are arbitrary bytes, and passing them through unchanged keeps a name
 * from being re-encoded into a different one. Results follow libc (-1 and `errno()`). Calls that
 * may wait for the disk run on the I/O threads instead (IoThreads.ts).
 * @module
 */
import koffi from 'koffi';

/** Bound libc functions (see the prototypes in {@link bind}). */
export interface FsLibc {
  openat(dirfd: number, path: Uint8Array, flags: number, mode: number): number;
  close(fd: number): number;
  dup(fd: number): number;
  /** fcntl(2) with an int argument (F_DUPFD_CLOEXEC). */
  fcntl(fd: number, cmd: number, arg: number): number;
  statx(dirfd: number, path: Uint8Array, flags: number, mask: number, buf: Uint8Array): number;
  mkdirat(dirfd: number, path: Uint8Array, mode: number): number;
  mknodat(dirfd: number, path: Uint8Array, mode: number, dev: number): number;
  symlinkat(target: Uint8Array, dirfd: number, path: Uint8Array): number;
  readlinkat(dirfd: number, path: Uint8Array, buf: Uint8Array, size: number): number;
  unlinkat(dirfd: number, path: Uint8Array, flags: number): number;
  renameat2(olddirfd: number, oldpath: Uint8Array, newdirfd: number, newpath: Uint8Array, flags: number): number;
  linkat(olddirfd: number, oldpath: Uint8Array, newdirfd: number, newpath: Uint8Array, flags: number): number;
  fchownat(dirfd: number, path: Uint8Array, uid: number, gid: number, flags: number): number;
  fchmodat(dirfd: number, path: Uint8Array, mode: number, flags: number): number;
  fchmod(fd: number, mode: number): number;
  utimensat(dirfd: number, path: Uint8Array, times: Uint8Array, flags: number): number;
  futimens(fd: number, times: Uint8Array): number;
  ftruncate(fd: number, length: number): number;
  fsync(fd: number): number;
  fdatasync(fd: number): number;
  fallocate(fd: number, mode: number, offset: number, len: number): number;
  /** Offsets above 2^53 (directory cookies) go in and come out as BigInts. */
  lseek(fd: number, offset: number | bigint, whence: number): number | bigint;
  preadv(fd: number, iov: Uint8Array, iovcnt: number, offset: number): number;
  pwritev(fd: number, iov: Uint8Array, iovcnt: number, offset: number): number;
  preadv2(fd: number, iov: Uint8Array, iovcnt: number, offset: number, flags: number): number;
  getdents64(fd: number, buf: Uint8Array, size: number): number;
  fstatfs(fd: number, buf: Uint8Array): number;
  getxattr(path: Uint8Array, name: Uint8Array, value: Uint8Array | null, size: number): number;
  setxattr(path: Uint8Array, name: Uint8Array, value: Uint8Array, size: number, flags: number): number;
  listxattr(path: Uint8Array, list: Uint8Array | null, size: number): number;
  removexattr(path: Uint8Array, name: Uint8Array): number;
  geteuid(): number;
  /** errno of the last failed call on this thread. */
  errno(): number;
}

type KoffiFunction = (...args: unknown[]) => number;

let cached: FsLibc | undefined;

/** The file-system calls of the process's libc, bound once. */
export function fsLibc(): FsLibc {
  cached ??= bind();
  return cached;
}

function bind(): FsLibc {
  const lib = koffi.load('libc.so.6');
  const f = (proto: string): KoffiFunction => lib.func(proto) as KoffiFunction;
  // openat and the *xattr family take a variadic mode / are plain: declared with fixed arguments
  // (the x86_64 and aarch64 calling conventions pass them the same way).
  return {
    openat: f('int openat(int dirfd, const void *path, int flags, uint32_t mode)'),
    close: f('int close(int fd)'),
    dup: f('int dup(int fd)'),
    fcntl: f('int fcntl(int fd, int cmd, int arg)'),
    statx: f('int statx(int dirfd, const void *path, int flags, uint32_t mask, void *buf)'),
    mkdirat: f('int mkdirat(int dirfd, const void *path, uint32_t mode)'),
    mknodat: f('int mknodat(int dirfd, const void *path, uint32_t mode, uint64_t dev)'),
    symlinkat: f('int symlinkat(const void *target, int dirfd, const void *path)'),
    readlinkat: f('intptr_t readlinkat(int dirfd, const void *path, void *buf, size_t size)'),
    unlinkat: f('int unlinkat(int dirfd, const void *path, int flags)'),
    renameat2: f('int renameat2(int olddirfd, const void *oldpath, int newdirfd, const void *newpath, uint32_t flags)'),
    linkat: f('int linkat(int olddirfd, const void *oldpath, int newdirfd, const void *newpath, int flags)'),
    fchownat: f('int fchownat(int dirfd, const void *path, uint32_t uid, uint32_t gid, int flags)'),
    fchmodat: f('int fchmodat(int dirfd, const void *path, uint32_t mode, int flags)'),
    fchmod: f('int fchmod(int fd, uint32_t mode)'),
    utimensat: f('int utimensat(int dirfd, const void *path, const void *times, int flags)'),
    futimens: f('int futimens(int fd, const void *times)'),
    ftruncate: f('int ftruncate(int fd, int64_t length)'),
    fsync: f('int fsync(int fd)'),
    fdatasync: f('int fdatasync(int fd)'),
    fallocate: f('int fallocate(int fd, int mode, int64_t offset, int64_t len)'),
    lseek: f('int64_t lseek(int fd, int64_t offset, int whence)'),
    preadv: f('intptr_t preadv(int fd, const void *iov, int iovcnt, int64_t offset)'),
    pwritev: f('intptr_t pwritev(int fd, const void *iov, int iovcnt, int64_t offset)'),
    preadv2: f('intptr_t preadv2(int fd, const void *iov, int iovcnt, int64_t offset, int flags)'),
    getdents64: f('intptr_t getdents64(int fd, void *buf, size_t size)'),
    fstatfs: f('int fstatfs(int fd, void *buf)'),
    getxattr: f('intptr_t getxattr(const void *path, const void *name, void *value, size_t size)'),
    setxattr: f('int setxattr(const void *path, const void *name, const void *value, size_t size, int flags)'),
    listxattr: f('intptr_t listxattr(const void *path, void *list, size_t size)'),
    removexattr: f('int removexattr(const void *path, const void *name)'),
    geteuid: f('uint32_t geteuid()'),
    errno: () => koffi.errno(),
  };
}

/** `s` as a NUL-terminated byte string for the calls above. */
export function cString(s: string | Uint8Array): Uint8Array {
  const bytes = typeof s === 'string' ? new TextEncoder().encode(s) : s;
  const out = new Uint8Array(bytes.length + 1);
  out.set(bytes);
  return out;
}

/** The empty path, for `AT_EMPTY_PATH` calls on a descriptor itself. */
export const EMPTY_PATH = new Uint8Array(1);

// ---- Linux numbers (include/uapi/asm-generic/fcntl.h, linux/fcntl.h, linux/stat.h, errno-base.h, errno.h) ----

const ARM64 = process.arch === 'arm64';

/** open(2) flags. x86_64 and aarch64 differ in O_DIRECTORY, O_NOFOLLOW, O_DIRECT and O_LARGEFILE (arch/arm64/include/uapi/asm/fcntl.h). */
export const O = {
  RDONLY: 0o0,
  WRONLY: 0o1,
  RDWR: 0o2,
  ACCMODE: 0o3,
  CREAT: 0o100,
  EXCL: 0o200,
  NOCTTY: 0o400,
  TRUNC: 0o1000,
  APPEND: 0o2000,
  NONBLOCK: 0o4000,
  DIRECT: ARM64 ? 0o200000 : 0o40000,
  LARGEFILE: ARM64 ? 0o400000 : 0o100000,
  DIRECTORY: ARM64 ? 0o40000 : 0o200000,
  NOFOLLOW: ARM64 ? 0o100000 : 0o400000,
  CLOEXEC: 0o2000000,
  PATH: 0o10000000,
  /** __O_TMPFILE: with O_DIRECTORY, an unnamed file in that directory (asm-generic/fcntl.h). */
  TMPFILE_BIT: 0o20000000,
} as const;

/** F_DUPFD_CLOEXEC (linux/fcntl.h: F_LINUX_SPECIFIC_BASE + 6): a duplicate that closes on exec. */
export const F_DUPFD_CLOEXEC = 1030;

/** A close-on-exec duplicate of `fd`, or -1 (errno set). */
export function dupCloexec(fd: number): number {
  return fsLibc().fcntl(fd, F_DUPFD_CLOEXEC, 0);
}

/** *at(2) flags (linux/fcntl.h). */
export const AT = {
  FDCWD: -100,
  SYMLINK_NOFOLLOW: 0x100,
  REMOVEDIR: 0x200,
  SYMLINK_FOLLOW: 0x400,
  EMPTY_PATH: 0x1000,
} as const;

/** st_mode file types (linux/stat.h). */
export const S_IFMT = 0o170000;
export const S_IFDIR = 0o040000;
export const S_IFREG = 0o100000;
export const S_IFLNK = 0o120000;

/** utimensat(2) special tv_nsec values (linux/stat.h). */
export const UTIME_NOW = (1 << 30) - 1;
export const UTIME_OMIT = (1 << 30) - 2;

/** statx(2): STATX_BASIC_STATS (linux/stat.h). */
export const STATX_BASIC_STATS = 0x7ff;
/** sizeof(struct statx). */
export const STATX_SIZE = 256;
/** Offsets in struct statx (linux/stat.h). */
export const STATX = {
  mask: 0, blksize: 4, nlink: 16, uid: 20, gid: 24, mode: 28, ino: 32, size: 40, blocks: 48,
  atime: 64, ctime: 96, mtime: 112, rdevMajor: 128, rdevMinor: 132, devMajor: 136, devMinor: 140,
} as const;

/** sizeof(struct statfs) on 64-bit Linux, and its fields (asm-generic/statfs.h, 64-bit longs). */
export const STATFS_SIZE = 120;
export const STATFS = { bsize: 8, blocks: 16, bfree: 24, bavail: 32, files: 40, ffree: 48, namelen: 64, frsize: 72 } as const;

/** errno values (asm-generic/errno-base.h, errno.h). */
export const E = {
  PERM: 1, NOENT: 2, IO: 5, BADF: 9, NOMEM: 12, ACCES: 13, EXIST: 17, NOTDIR: 20, ISDIR: 21, INVAL: 22,
  FBIG: 27, RANGE: 34, NAMETOOLONG: 36, NOSYS: 38, LOOP: 40, NODATA: 61, PROTO: 71, OVERFLOW: 75, OPNOTSUPP: 95,
} as const;

/** renameat2(2) flags (linux/fs.h). */
export const RENAME = { NOREPLACE: 1, EXCHANGE: 2, WHITEOUT: 4 } as const;
