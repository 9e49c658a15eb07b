/**
 * The libc file functions the disk layer calls through koffi. The prototypes are data
 * ({@link FILE_PROTOTYPES}) so that the I/O worker threads, which cannot import modules, bind the
 * very same declarations. koffi has no `ssize_t`/`off_t`: `intptr_t` and `int64_t` stand in.
 * Buffers are passed as `uintptr_t` addresses (the worker's case) or as `void *` views, which koffi
 * passes by address without a copy.
 * @module
 */
import koffi from 'koffi';

/** One C prototype per function, in koffi's declaration syntax. */
export const FILE_PROTOTYPES = {
  open: 'int open(const char *path, int flags)',
  close: 'int close(int fd)',
  lseek: 'int64_t lseek(int fd, int64_t offset, int whence)',
  pread: 'intptr_t pread(int fd, uintptr_t buf, size_t count, int64_t offset)',
  pwrite: 'intptr_t pwrite(int fd, uintptr_t buf, size_t count, int64_t offset)',
  preadv: 'intptr_t preadv(int fd, void *iov, int iovcnt, int64_t offset)',
  pwritev: 'intptr_t pwritev(int fd, void *iov, int iovcnt, int64_t offset)',
  preadv2: 'intptr_t preadv2(int fd, void *iov, int iovcnt, int64_t offset, int flags)',
  fallocate: 'int fallocate(int fd, int mode, int64_t offset, int64_t len)',
  ftruncate: 'int ftruncate(int fd, int64_t length)',
  fdatasync: 'int fdatasync(int fd)',
  statx: 'int statx(int dirfd, const char *path, int flags, unsigned int mask, void *buf)',
  mmap: 'uintptr_t mmap(uintptr_t addr, size_t len, int prot, int flags, int fd, int64_t off)',
  munmap: 'int munmap(uintptr_t addr, size_t len)',
} as const;

/** Bound file functions (see {@link FILE_PROTOTYPES}). Addresses may be Numbers (< 2^53) or BigInts. */
export interface LibcFile {
  open(path: string, flags: number): number;
  close(fd: number): number;
  lseek(fd: number, offset: number, whence: number): number;
  pread(fd: number, buf: number | bigint, count: number, offset: number): number;
  pwrite(fd: number, buf: number | bigint, count: number, offset: number): number;
  preadv(fd: number, iov: Uint8Array, iovcnt: number, offset: number): number;
  pwritev(fd: number, iov: Uint8Array, iovcnt: number, offset: number): number;
  preadv2(fd: number, iov: Uint8Array, iovcnt: number, offset: number, flags: number): number;
  fallocate(fd: number, mode: number, offset: number, len: number): number;
  ftruncate(fd: number, length: number): number;
  fdatasync(fd: number): number;
  statx(dirfd: number, path: string, flags: number, mask: number, buf: Uint8Array): number;
  mmap(addr: number, len: number, prot: number, flags: number, fd: number, off: number): number | bigint;
  munmap(addr: number | bigint, len: number): number;
  /** errno of the last failed call on this thread. */
  errno(): number;
}

let cached: LibcFile | undefined;

/** The file functions of the process's libc, bound once per thread. */
export function libcFile(): LibcFile {
  if (cached) return cached;
  const lib = koffi.load('libc.so.6');
  const bound: Record<string, unknown> = {};
  for (const [name, proto] of Object.entries(FILE_PROTOTYPES)) bound[name] = lib.func(proto);
  bound.errno = () => koffi.errno();
  cached = bound as unknown as LibcFile;
  return cached;
}

/**
 * Native address of the first byte of `view` (guest RAM, a SharedArrayBuffer, a Buffer). koffi
 * passes the same address when the view is given as a `void *` argument, so I/O through it lands in
 * the view's memory without a copy.
 */
export function viewAddress(view: Uint8Array): number {
  return Number(koffi.address(view));
}
