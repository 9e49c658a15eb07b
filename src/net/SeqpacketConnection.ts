/**
 * One connected `AF_UNIX` `SOCK_SEQPACKET` socket: whole messages in and out, on the main event
 * loop. The descriptor is non-blocking and watched with `koffi.node.poll` (no thread, no blocking
 * call): a readable event drains every queued message, a send that would block is queued and
 * finished on a writable event.
 *
 * A zero-length message ends the connection, as in crosvm's `Tube::recv` (a `SOCK_SEQPACKET` peer
 * that closed reads as 0 bytes, and so does an empty message: they cannot be told apart).
 * @module
 */
import { EventEmitter } from 'node:events';
import koffi from 'koffi';
import { errnoName, KvmkitError } from '../errors';
import {
  EAGAIN, ECONNRESET, EINTR, EMSGSIZE, EPIPE, MSG_DONTWAIT, MSG_NOSIGNAL, MSG_PEEK, MSG_TRUNC,
  AF_UNIX, SOCK_CLOEXEC, SOCK_NONBLOCK, SOCK_SEQPACKET, sockaddrUn, unixLibc,
} from './unixLibc';

/** A socket call failed. `call` names it, `errno` is Linux's error number. */
export class SocketError extends KvmkitError {
  constructor(
    readonly call: string,
    readonly errno: number,
    message?: string,
  ) {
    super(message ?? `${call} failed: ${errnoName(errno)} (errno ${errno})`);
  }
}

/** Largest message accepted: a bigger one is an error and ends the connection. */
export const MAX_MESSAGE_BYTES = 1 << 20;

/** Events of a {@link SeqpacketConnection}. */
export interface SeqpacketConnectionEvents {
  /** One whole message from the peer. */
  message: [data: Uint8Array];
  /** The connection ended (peer closed, error, or {@link SeqpacketConnection.close}); emitted once. */
  close: [];
  /** A failure that does not only mean the peer went away (the connection closes after it; not emitted without a listener: waiting `nextMessage()` calls reject with it instead). */
  error: [err: Error];
}

/** What libuv reported for a polled descriptor. */
export interface PollEvents {
  readable: boolean;
  writable: boolean;
  disconnect: boolean;
}
type PollOptions = Partial<PollEvents>;
type PollHandle = ReturnType<typeof koffi.node.poll>;

/**
 * koffi calls a poll callback with `(status, events)` (koffi src/koffi/src/uv.cc `OnPoll`: status
 * is libuv's, < 0 on error), while its index.d.ts declares `(events)`: adapt the type here.
 */
export function pollCallback(cb: (status: number, ev: PollEvents) => void): (ev: PollEvents) => void {
  return cb as unknown as (ev: PollEvents) => void;
}

/** `koffi.node.poll(fd, opts, cb)` with the real callback signature (see {@link pollCallback}). */
export function pollFd(fd: number, opts: PollOptions, cb: (status: number, ev: PollEvents) => void): PollHandle {
  return koffi.node.poll(fd, opts, pollCallback(cb));
}

/** Peer went away: not worth an `error` event. */
const GONE = new Set([EPIPE, ECONNRESET]);

/**
 * A connected `SOCK_SEQPACKET` socket. Get one from {@link SeqpacketConnection.connect} or a
 * {@link SeqpacketServer}'s `connection` event.
 */
export class SeqpacketConnection extends EventEmitter<SeqpacketConnectionEvents> {
  #fd: number;
  readonly #poll: PollHandle;
  readonly #outbox: Uint8Array[] = [];
  #waitingWritable = false;
  /** Messages that arrived while nobody listened, for {@link SeqpacketConnection.nextMessage}. */
  readonly #inbox: Uint8Array[] = [];
  readonly #readers: { resolve: (m: Uint8Array) => void; reject: (e: Error) => void }[] = [];

  /** @internal Take ownership of the connected non-blocking socket `fd`. */
  constructor(fd: number) {
    super();
    this.#fd = fd;
    this.#poll = pollFd(fd, { readable: true, disconnect: true }, (status, ev) => this.#onPoll(status, ev));
    this.#poll.unref();
  }

  /**
   * Connect to the `SOCK_SEQPACKET` socket at `path` (a Unix socket connect completes at once).
   * @throws SocketError: ECONNREFUSED (nothing listens: a stale file), ENOENT, EPROTOTYPE (a socket
   *   of another type), EAGAIN (the listener's backlog is full)
   */
  static connect(path: string): SeqpacketConnection {
    const c = unixLibc();
    const fd = c.socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) throw new SocketError('socket', c.errno());
    const { addr, len } = sockaddrUn(path);
    if (c.connect(fd, addr, len) < 0) {
      const e = c.errno();
      c.close(fd);
      throw new SocketError('connect', e, `cannot connect to ${path}: ${errnoName(e)} (errno ${e})`);
    }
    return new SeqpacketConnection(fd);
  }

  /** The descriptor, or -1 once closed. */
  get fd(): number {
    return this.#fd;
  }

  /** True once the connection ended. */
  get closed(): boolean {
    return this.#fd < 0;
  }

  /** Keep the Node.js process alive while this connection is open (by default it does not). */
  ref(): this {
    this.#poll.ref();
    return this;
  }

  /**
   * Send one message (queued if the socket is full; sent in order). On a closed connection this
   * does nothing.
   * @throws SocketError EMSGSIZE for a message larger than the socket's buffer
   */
  send(data: Uint8Array | string): void {
    if (this.closed) return;
    const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    if (this.#outbox.length > 0) {
      this.#outbox.push(bytes);
      return;
    }
    if (this.#trySend(bytes)) return;
    this.#outbox.push(bytes);
    this.#watchWritable(true);
  }

  /**
   * The next message: one already received that no `message` listener took, or the next to come.
   * For request/answer clients: `conn.send(req); await conn.nextMessage()`.
   * @throws SocketError (rejects) when the connection ends first
   */
  nextMessage(): Promise<Uint8Array> {
    const m = this.#inbox.shift();
    if (m) return Promise.resolve(m);
    if (this.closed) return Promise.reject(new SocketError('recv', EPIPE, 'the connection is closed'));
    return new Promise((resolve, reject) => this.#readers.push({ resolve, reject }));
  }

  /** Close the socket (messages still queued for sending are dropped). Idempotent. */
  close(): void {
    this.#end(new SocketError('recv', EPIPE, 'the connection closed before a message came'));
  }

  /** Close, rejecting waiting {@link nextMessage} calls with `reason`. */
  #end(reason: Error): void {
    if (this.closed) return;
    this.#poll.stop();
    this.#poll.close();
    unixLibc().close(this.#fd);
    this.#fd = -1;
    this.#outbox.length = 0;
    for (const r of this.#readers.splice(0)) r.reject(reason);
    this.emit('close');
  }

  /** A real failure: an `error` event when someone listens (always, for a server's connections), then close. */
  #error(err: Error): void {
    if (this.listenerCount('error') > 0) this.emit('error', err);
    this.#end(err);
  }

  /** A poll error (`status` < 0) is looked at by the recv it leads to. */
  #onPoll(status: number, ev: PollEvents): void {
    if (ev.writable) this.#flush();
    if ((status < 0 || ev.readable || ev.disconnect) && !this.closed) this.#drain();
  }

  /** Read every message waiting on the socket. */
  #drain(): void {
    const c = unixLibc();
    while (!this.closed) {
      // MSG_PEEK | MSG_TRUNC: the size of the next message without taking it (as crosvm's next_packet_size)
      const size = c.recv(this.#fd, null, 0, MSG_PEEK | MSG_TRUNC | MSG_DONTWAIT);
      if (size < 0) {
        const e = c.errno();
        if (e === EINTR) continue;
        if (e !== EAGAIN) this.#fail('recv', e);
        return;
      }
      if (size === 0) {
        this.close(); // peer closed (or an empty message, which crosvm reads as a disconnect too)
        return;
      }
      const buf = new Uint8Array(Math.min(size, MAX_MESSAGE_BYTES));
      const n = c.recv(this.#fd, buf, buf.length, MSG_DONTWAIT);
      if (n < 0) {
        const e = c.errno();
        if (e === EINTR || e === EAGAIN) continue;
        this.#fail('recv', e);
        return;
      }
      if (size > MAX_MESSAGE_BYTES) {
        this.#error(new SocketError('recv', EMSGSIZE, `a message of ${size} bytes is over the ${MAX_MESSAGE_BYTES}-byte limit`));
        return;
      }
      this.#deliver(buf.subarray(0, n));
    }
  }

  #deliver(msg: Uint8Array): void {
    const reader = this.#readers.shift();
    if (reader) reader.resolve(msg);
    else if (this.listenerCount('message') > 0) this.emit('message', msg);
    else this.#inbox.push(msg);
  }

  /** Send now; false if the socket is full. */
  #trySend(bytes: Uint8Array): boolean {
    const c = unixLibc();
    for (;;) {
      const n = c.send(this.#fd, bytes, bytes.length, MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n >= 0) return true;
      const e = c.errno();
      if (e === EINTR) continue;
      if (e === EAGAIN) return false;
      if (GONE.has(e)) {
        this.close();
        return true;
      }
      throw new SocketError('send', e);
    }
  }

  #flush(): void {
    while (this.#outbox.length > 0 && !this.closed) {
      let sent: boolean;
      try {
        sent = this.#trySend(this.#outbox[0]!);
      } catch (e) {
        this.#error(e as Error);
        return;
      }
      if (!sent) return;
      this.#outbox.shift();
    }
    this.#watchWritable(false);
  }

  #watchWritable(on: boolean): void {
    if (this.closed || this.#waitingWritable === on) return;
    this.#waitingWritable = on;
    this.#poll.start({ readable: true, disconnect: true, writable: on }, pollCallback((status, ev) => this.#onPoll(status, ev)));
  }

  #fail(call: string, errno: number): void {
    if (GONE.has(errno)) this.close();
    else this.#error(new SocketError(call, errno));
  }
}
