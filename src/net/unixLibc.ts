/**
 * The libc socket calls behind {@link SeqpacketServer} and {@link SeqpacketConnection}, through
 * koffi: Node's `net` module only speaks `SOCK_STREAM` on Unix sockets. Every socket is opened
 * non-blocking and close-on-exec; results follow libc (-1 and `errno()`).
 * @module
 */
import koffi from 'koffi';

/** Bound libc functions. */
export interface UnixLibc {
  socket(domain: number, type: number, protocol: number): number;
  bind(fd: number, addr: Uint8Array, len: number): number;
  listen(fd: number, backlog: number): number;
  accept4(fd: number, addr: null, len: null, flags: number): number;
  connect(fd: number, addr: Uint8Array, len: number): number;
  recv(fd: number, buf: Uint8Array | null, len: number, flags: number): number;
  send(fd: number, buf: Uint8Array, len: number, flags: number): number;
  close(fd: number): number;
  /** errno of the last failed call on this thread. */
  errno(): number;
}

let cached: UnixLibc | undefined;

/** libc's socket calls, bound once per thread. */
export function unixLibc(): UnixLibc {
  if (cached) return cached;
  const lib = koffi.load('libc.so.6');
  cached = {
    socket: lib.func('int socket(int domain, int type, int protocol)'),
    bind: lib.func('int bind(int fd, const void *addr, uint32_t len)'),
    listen: lib.func('int listen(int fd, int backlog)'),
    accept4: lib.func('int accept4(int fd, void *addr, void *len, int flags)'),
    connect: lib.func('int connect(int fd, const void *addr, uint32_t len)'),
    recv: lib.func('intptr_t recv(int fd, void *buf, size_t len, int flags)'),
    send: lib.func('intptr_t send(int fd, const void *buf, size_t len, int flags)'),
    close: lib.func('int close(int fd)'),
    errno: () => koffi.errno(),
  };
  return cached;
}

// <sys/socket.h>, <bits/socket_type.h>, <asm-generic/errno*.h> (x86_64 Linux)
export const AF_UNIX = 1;
export const SOCK_SEQPACKET = 5;
export const SOCK_NONBLOCK = 0o4000;
export const SOCK_CLOEXEC = 0o2000000;
export const MSG_PEEK = 0x2;
export const MSG_TRUNC = 0x20;
export const MSG_DONTWAIT = 0x40;
export const MSG_NOSIGNAL = 0x4000;
export const EINTR = 4;
export const EAGAIN = 11;
export const EPIPE = 32;
export const EMSGSIZE = 90;
export const EPROTOTYPE = 91;
export const ECONNRESET = 104;
export const ECONNREFUSED = 111;

/** `sizeof(struct sockaddr_un)` (<sys/un.h>): sa_family_t sun_family; char sun_path[108]. */
const SOCKADDR_UN_SIZE = 110;
/** Longest socket path: sun_path[108] with its NUL. */
export const MAX_UNIX_PATH = 107;

/**
 * A `struct sockaddr_un` for `path` and the length to pass with it (family + path + NUL).
 * @throws RangeError when the path does not fit (check {@link MAX_UNIX_PATH} first for a better message)
 */
export function sockaddrUn(path: string): { addr: Uint8Array; len: number } {
  const bytes = Buffer.from(path, 'utf8');
  if (bytes.length > MAX_UNIX_PATH || bytes.length === 0 || bytes.includes(0)) throw new RangeError(`not a Unix socket path: ${JSON.stringify(path)}`);
  const addr = new Uint8Array(SOCKADDR_UN_SIZE);
  new DataView(addr.buffer).setUint16(0, AF_UNIX, true);
  addr.set(bytes, 2);
  return { addr, len: 2 + bytes.length + 1 };
}
