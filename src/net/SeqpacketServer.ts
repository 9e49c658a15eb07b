/**
 * A listening `AF_UNIX` `SOCK_SEQPACKET` socket on the main event loop, through koffi (Node's
 * `net` module cannot make one): non-blocking `accept4` when `koffi.node.poll` says a client
 * waits, each client a {@link SeqpacketConnection}.
 *
 * The socket file is created with mode 0600 and never wider (bound inside a private 0700
 * directory, chmod'ed, then hard-linked to its name, which fails rather than replace anything that
 * appeared there meanwhile); a stale socket file (nobody listening) is replaced, a live one or
 * another kind of file refuses. The file is removed by {@link SeqpacketServer.close} and, failing
 * that, when the process exits.
 * @module
 */
import { SocketFile } from './SocketFile';
import { EventEmitter } from 'node:events';
import { chmodSync, linkSync, lstatSync, mkdtempSync, rmdirSync, unlinkSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { ConfigError, errnoName } from '../errors';
import { pollFd, SeqpacketConnection, SocketError } from './SeqpacketConnection';
import {
  AF_UNIX, EAGAIN, ECONNREFUSED, EINTR, EPROTOTYPE, MAX_UNIX_PATH, SOCK_CLOEXEC, SOCK_NONBLOCK,
  SOCK_SEQPACKET, sockaddrUn, unixLibc,
} from './unixLibc';

/** Options of {@link SeqpacketServer.listen}. */
export interface SeqpacketServerOptions {
  /** The option name errors about the path carry (default `socket`), e.g. `allowlist_socket`. */
  option?: string;
  /** listen(2) backlog (default 128, as crosvm's UnixSeqpacketListener). */
  backlog?: number;
}

/** Events of a {@link SeqpacketServer}. */
export interface SeqpacketServerEvents {
  /** A client connected. */
  connection: [conn: SeqpacketConnection];
  /** accept(2) failed for a reason other than "nobody waiting", or a connection failed. */
  error: [err: Error];
}

/**
 * A `SOCK_SEQPACKET` listener.
 *
 * ```ts
 * const server = SeqpacketServer.listen('/run/x.sock');
 * server.on('connection', (conn) => conn.on('message', (m) => conn.send(m)));  // echo
 * server.close();
 * ```
 */
export class SeqpacketServer extends EventEmitter<SeqpacketServerEvents> {
  #fd: number;
  readonly #poll: ReturnType<typeof pollFd>;
  readonly #connections = new Set<SeqpacketConnection>();
  #file: SocketFile;

  private constructor(
    /** The socket file's path (absolute). */
    readonly path: string,
    fd: number,
  ) {
    super();
    this.#fd = fd;
    this.#poll = pollFd(fd, { readable: true }, () => this.#acceptAll());
    this.#poll.unref();
    this.#file = new SocketFile(path, 'socket', (e) => this.#error(e));
  }

  /**
   * Listen on `path` (synchronously: the socket accepts clients when this returns).
   * @throws ConfigError (`<option> …`) when the path is too long, a live server answers there,
   *   another kind of file is there, or its directory is not writable
   */
  static listen(path: string, options: SeqpacketServerOptions = {}): SeqpacketServer {
    const option = options.option ?? 'socket';
    const abs = resolve(path);
    if (Buffer.byteLength(abs) > MAX_UNIX_PATH) throw new ConfigError(option, `must be a path of at most ${MAX_UNIX_PATH} bytes (a Unix socket address)`, abs);
    claimPath(abs, option);
    const fd = bindPrivately(abs, option, options.backlog ?? 128);
    return new SeqpacketServer(abs, fd);
  }

  /** Open client connections. */
  get connections(): number {
    return this.#connections.size;
  }

  /** True once closed. */
  get closed(): boolean {
    return this.#fd < 0;
  }

  /** Keep the Node.js process alive while listening (by default it does not). */
  ref(): this {
    this.#poll.ref();
    return this;
  }

  /** Stop listening, remove the socket file and close every connection. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.removeSocketFile();
    this.#poll.stop();
    this.#poll.close();
    unixLibc().close(this.#fd);
    this.#fd = -1;
    for (const c of [...this.#connections]) c.close();
  }

  /** @internal Remove the socket file (idempotent; the process exit path). */
  removeSocketFile(): void {
    this.#file.remove();
  }

  #acceptAll(): void {
    const c = unixLibc();
    while (!this.closed) {
      const fd = c.accept4(this.#fd, null, null, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        const e = c.errno();
        if (e === EINTR) continue;
        if (e !== EAGAIN) this.#error(new SocketError('accept4', e));
        return;
      }
      const conn = new SeqpacketConnection(fd);
      this.#connections.add(conn);
      conn.on('close', () => this.#connections.delete(conn));
      conn.on('error', (err) => this.#error(err));
      this.emit('connection', conn);
    }
  }

  /** Report a failure to `error` listeners; without one it is thrown (as Node's own emitters do). */
  #error(err: Error): void {
    if (this.listenerCount('error') > 0) this.emit('error', err);
    else throw err;
  }
}

/**
 * Make `path` free for a new socket: nothing there, or a stale socket (removed).
 * @throws ConfigError when a live server answers there, or the path is another kind of file
 */
function claimPath(path: string, option: string): void {
  try {
    if (!lstatSync(path).isSocket()) throw new ConfigError(option, 'exists and is not a socket (only stale sockets are replaced)', path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    if (e instanceof ConfigError) throw e;
    throw new ConfigError(option, `cannot be checked: ${(e as Error).message}`, path, { cause: e });
  }
  try {
    SeqpacketConnection.connect(path).close();
    throw new ConfigError(option, 'is in use: a running server answers there (stop it or choose another path)', path);
  } catch (e) {
    if (!(e instanceof SocketError)) throw e;
    // EPROTOTYPE: a live socket of another type; EAGAIN: a live listener with a full backlog
    if (e.errno === EPROTOTYPE || e.errno === EAGAIN) throw new ConfigError(option, `is in use: a running server answers there (${errnoName(e.errno)})`, path, { cause: e });
    if (e.errno !== ECONNREFUSED) throw new ConfigError(option, `exists and cannot be checked for a running server: ${e.message}`, path, { cause: e });
  }
  try {
    unlinkSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new ConfigError(option, `is a stale socket that cannot be removed: ${(e as Error).message}`, path, { cause: e });
  }
}

/**
 * Bind and listen on `s` in a fresh 0700 directory beside `path`, chmod it 0600, hard-link it to
 * `path` and remove the private name. Returns the listening descriptor.
 */
function bindPrivately(path: string, option: string, backlog: number): number {
  let dir: string;
  try {
    dir = mkdtempSync(join(dirname(path), `.${basename(path).slice(0, 8)}-`));
  } catch (e) {
    throw new ConfigError(option, `cannot be created in ${dirname(path)}: ${(e as Error).message}`, path, { cause: e });
  }
  const tmp = join(dir, 's');
  const c = unixLibc();
  let fd = -1;
  try {
    if (Buffer.byteLength(tmp) > MAX_UNIX_PATH) {
      throw new ConfigError(option, `must be in a directory whose path is at most ${MAX_UNIX_PATH - (Buffer.byteLength(tmp) - Buffer.byteLength(dirname(path)))} bytes (the socket is bound in a private directory there first)`, path);
    }
    fd = c.socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) throw new SocketError('socket', c.errno());
    const { addr, len } = sockaddrUn(tmp);
    if (c.bind(fd, addr, len) < 0) throw new SocketError('bind', c.errno());
    chmodSync(tmp, 0o600);
    if (c.listen(fd, backlog) < 0) throw new SocketError('listen', c.errno());
    try {
      linkSync(tmp, path);
    } catch (e) {
      const taken = (e as NodeJS.ErrnoException).code === 'EEXIST';
      throw new ConfigError(option, taken ? 'was taken by another process while the socket was created' : `cannot be created: ${(e as Error).message}`, path, { cause: e });
    }
    return fd;
  } catch (e) {
    if (fd >= 0) c.close(fd);
    if (e instanceof SocketError) throw new ConfigError(option, `cannot be created: ${e.message}`, path, { cause: e });
    throw e;
  } finally {
    try {
      unlinkSync(tmp);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    rmdirSync(dir);
  }
}
