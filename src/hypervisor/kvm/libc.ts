/**
 * The libc functions kvmkit calls through koffi. Loaded lazily so that importing kvmkit on a
 * machine without /dev/kvm (or in a pure unit test) costs nothing.
 * @module
 */
import koffi from 'koffi';

/** Bound libc functions. `ioctl` is variadic in C: one non-variadic prototype per argument kind (KOFFI-NOTES.md). */
export interface Libc {
  open(path: string, flags: number): number;
  close(fd: number): number;
  ioctlInt(fd: number, req: number, arg: number | bigint): number;
  ioctlPtr(fd: number, req: number, arg: Uint8Array | null): number;
  mmap(addr: number, len: number, prot: number, flags: number, fd: number, off: number): number | bigint;
  munmap(addr: number | bigint, len: number): number;
  madvise(addr: number | bigint, len: number, advice: number): number;
  eventfd(initval: number, flags: number): number;
  read(fd: number, buf: Uint8Array, len: number): number;
  write(fd: number, buf: Uint8Array, len: number): number;
  gettid(): number;
  getpid(): number;
  tgkill(tgid: number, tid: number, sig: number): number;
  pthread_sigmask(how: number, set: Uint8Array, old: Uint8Array | null): number;
  sigaction(sig: number, act: Uint8Array, old: Uint8Array | null): number;
  sigtimedwait(set: Uint8Array, info: Uint8Array | null, timeout: Uint8Array): number;
  dlsym(handle: number, name: string): number | bigint;
  errno(): number;
}

let cached: Libc | undefined;

/** The process's libc, bound once per thread. */
export function libc(): Libc {
  if (cached) return cached;
  const lib = koffi.load('libc.so.6');
  const ioctlInt = lib.func('ioctl', 'int', ['int', 'unsigned long', 'unsigned long']);
  const ioctlPtr = lib.func('ioctl', 'int', ['int', 'unsigned long', 'void *']);
  cached = {
    open: lib.func('int open(const char *path, int flags)'),
    close: lib.func('int close(int fd)'),
    ioctlInt: (fd, req, arg) => ioctlInt(fd, req, arg),
    ioctlPtr: (fd, req, arg) => ioctlPtr(fd, req, arg),
    mmap: lib.func('uintptr_t mmap(uintptr_t addr, size_t len, int prot, int flags, int fd, intptr_t off)'),
    munmap: lib.func('int munmap(uintptr_t addr, size_t len)'),
    madvise: lib.func('int madvise(uintptr_t addr, size_t len, int advice)'),
    eventfd: lib.func('int eventfd(unsigned int initval, int flags)'),
    read: lib.func('intptr_t read(int fd, void *buf, size_t len)'),
    write: lib.func('intptr_t write(int fd, void *buf, size_t len)'),
    gettid: lib.func('int gettid()'),
    getpid: lib.func('int getpid()'),
    tgkill: lib.func('int tgkill(int tgid, int tid, int sig)'),
    pthread_sigmask: lib.func('int pthread_sigmask(int how, void *set, void *old)'),
    sigaction: lib.func('int sigaction(int sig, void *act, void *old)'),
    sigtimedwait: lib.func('int sigtimedwait(void *set, void *info, void *timeout)'),
    dlsym: lib.func('uintptr_t dlsym(uintptr_t handle, const char *name)'),
    errno: () => koffi.errno(),
  };
  return cached;
}

/** A zero-copy view of native memory at `ptr` (guest RAM, kvm_run). Never unmap while views exist. */
export function nativeView(ptr: number | bigint, len: number): ArrayBuffer {
  return koffi.view(ptr as never, len) as ArrayBuffer;
}

// fcntl.h / sys/mman.h / sys/eventfd.h / signal.h constants (x86_64 Linux, glibc)
export const O_RDWR = 0o2;
export const O_CLOEXEC = 0o2000000;
export const PROT_READ = 1;
export const PROT_WRITE = 2;
export const MAP_SHARED = 0x01;
export const MAP_PRIVATE = 0x02;
export const MAP_ANONYMOUS = 0x20;
export const MAP_NORESERVE = 0x4000;
export const MAP_FAILED = 0xffffffffffffffffn;
export const MADV_DONTNEED = 4;
/** madvise advice: back the range with transparent huge pages when possible (asm-generic/mman-common.h). */
export const MADV_HUGEPAGE = 14;
export const MADV_MERGEABLE = 12;
export const EFD_CLOEXEC = 0o2000000;
export const EFD_NONBLOCK = 0o4000;
export const SIG_BLOCK = 0;
export const SIG_UNBLOCK = 1;
/** The real-time signal kvmkit uses to kick a vCPU out of KVM_RUN (SIGRTMIN+4; glibc keeps 32..33). */
export const KICK_SIGNAL = 38;
