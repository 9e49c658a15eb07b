/**
 * The client of the control socket (protocol.ts: newline-delimited JSON over a Unix stream
 * socket): one connection, requests answered in order. Programs keep a connection open; the
 * `kvmkit stop|status|…` commands open one per request with a time limit. Errors are worded for a
 * person at a shell (`no kvmkit VM listens on SOCK (ENOENT)`, `no answer to status from SOCK within
 * 10000 ms`).
 *
 * ```ts
 * const c = await ControlClient.connect('/run/vm.sock', { requestTimeoutMs: 10_000 });
 * console.log((await c.status()).state);
 * await c.diskResize(0, 2 * 1024 ** 3);
 * await c.stop();
 * c.close();
 * ```
 * @module
 */
import { connect, type Socket } from 'node:net';
import { KvmkitError } from '../errors';
import type { VmStatus } from '../vm/status';
import type { ControlRequest, ControlResponse } from './protocol';

/** The server answered `{"ok":false,"error":…}`; `message` is its error text. */
export class ControlRequestError extends KvmkitError {}

/**
 * The connection could not be made, failed, closed before an answer came, or carried an answer
 * that is not a protocol response line.
 */
export class ControlConnectionError extends KvmkitError {}

/**
 * No connection or no answer within the time limit. The connection is closed: answers are matched
 * to requests by their order, so a late answer could not be told from the next one's.
 */
export class ControlTimeoutError extends ControlConnectionError {
  constructor(
    message: string,
    /** The limit that passed, in milliseconds. */
    readonly timeoutMs: number,
  ) {
    super(message);
  }
}

/** Options of {@link ControlClient.connect}. */
export interface ControlClientOptions {
  /** Milliseconds to wait for the connection (default 5000). */
  timeoutMs?: number;
  /**
   * Milliseconds to wait for each answer unless a request gives its own (default: no limit; a
   * `stop` is answered only once the VM has ended).
   */
  requestTimeoutMs?: number;
}

/** Options of one request. */
export interface ControlRequestOptions {
  /** Milliseconds to wait for this answer (default: the connection's `requestTimeoutMs`). */
  timeoutMs?: number;
}

/** Longest answer line accepted (a status or balloon_stats answer is far smaller). */
const MAX_ANSWER_LINE = 1 << 20;

/** connect(2) errors that mean nothing serves the path: no file, nobody listening, not a socket. */
const NO_SERVER = new Set(['ENOENT', 'ECONNREFUSED', 'ENOTSOCK']);

interface Waiter {
  /** What was asked, for messages: the command, or `the request` for a raw line. */
  what: string;
  resolve: (r: ControlResponse) => void;
  reject: (e: Error) => void;
  timer?: NodeJS.Timeout;
}

/** A connection to a kvmkit control socket. */
export class ControlClient {
  readonly #sock: Socket;
  readonly #path: string;
  readonly #requestTimeoutMs: number | undefined;
  readonly #waiting: Waiter[] = [];
  #buffered = '';
  #closed?: Error;

  private constructor(sock: Socket, path: string, requestTimeoutMs: number | undefined) {
    this.#sock = sock;
    this.#path = path;
    this.#requestTimeoutMs = requestTimeoutMs;
    sock.setEncoding('utf8');
    sock.on('data', (chunk: string) => this.#onData(chunk));
    sock.on('error', (e) => this.#fail(new ControlConnectionError(`the control connection to ${path} failed: ${e.message}`, { cause: e })));
    sock.on('close', () => this.#fail());
  }

  /**
   * Connect to the socket at `path`.
   * @throws ControlConnectionError `no kvmkit VM listens on PATH (ENOENT)` when there is no socket
   *   or nobody listens on it, ControlTimeoutError when the connection is not made within `timeoutMs`
   */
  static connect(path: string, options: ControlClientOptions = {}): Promise<ControlClient> {
    const timeoutMs = options.timeoutMs ?? 5000;
    return new Promise((resolve, reject) => {
      const sock = connect(path);
      const timer = setTimeout(() => {
        sock.destroy();
        reject(new ControlTimeoutError(`cannot connect to control socket ${path} within ${timeoutMs} ms`, timeoutMs));
      }, timeoutMs);
      sock.once('connect', () => {
        clearTimeout(timer);
        sock.removeAllListeners('error');
        resolve(new ControlClient(sock, path, options.requestTimeoutMs));
      });
      sock.once('error', (e: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        const message = NO_SERVER.has(e.code ?? '') ? `no kvmkit VM listens on ${path} (${e.code})` : `cannot connect to control socket ${path}: ${e.message}`;
        reject(new ControlConnectionError(message, { cause: e }));
      });
    });
  }

  /**
   * Send one raw line (a newline is added) and return the server's response as it came. For
   * requests the types do not allow (tests of the server's validation).
   * @throws ControlConnectionError when the connection fails or the answer is not a response line,
   *   ControlTimeoutError when no answer comes within the time limit
   */
  sendLine(line: string, options: ControlRequestOptions = {}): Promise<ControlResponse> {
    return this.#exchange(line, 'the request', options.timeoutMs ?? this.#requestTimeoutMs);
  }

  /** Send a request and return its response (`ok: false` included); throws as {@link sendLine}. */
  send(request: ControlRequest, options: ControlRequestOptions = {}): Promise<ControlResponse> {
    return this.#exchange(JSON.stringify(request), request.command, options.timeoutMs ?? this.#requestTimeoutMs);
  }

  /**
   * Send a request and return its result.
   * @throws ControlRequestError with the server's message when it answers `ok: false`; otherwise
   *   as {@link sendLine}
   */
  async request(request: ControlRequest, options: ControlRequestOptions = {}): Promise<unknown> {
    const r = await this.send(request, options);
    if (!r.ok) throw new ControlRequestError(r.error);
    return r.result;
  }

  /** The VM's state, size, uptime and devices. */
  async status(): Promise<VmStatus> {
    return (await this.request({ command: 'status' })) as VmStatus;
  }

  /** Stop the VM; resolves with its exit info once it ended. */
  stop(): Promise<unknown> {
    return this.request({ command: 'stop' });
  }

  /** Pause every vCPU. */
  async suspend(): Promise<void> {
    await this.request({ command: 'suspend' });
  }

  /** Continue a suspended VM. */
  async resume(): Promise<void> {
    await this.request({ command: 'resume' });
  }

  /** Resize block device `index` (0-based, in the order given) to `bytes`. */
  async diskResize(index: number, bytes: number): Promise<void> {
    await this.request({ command: 'disk_resize', index, bytes });
  }

  /** Set the balloon's target size in bytes. */
  balloon(bytes: number): Promise<unknown> {
    return this.request({ command: 'balloon', bytes });
  }

  /** The guest's memory statistics and the balloon's size. */
  balloonStats(): Promise<unknown> {
    return this.request({ command: 'balloon_stats' });
  }

  /** Close the connection (requests still waiting are rejected). */
  close(): void {
    this.#fail(new ControlConnectionError(`the connection to ${this.#path} was closed by this client`));
    this.#sock.destroy();
  }

  #exchange(line: string, what: string, timeoutMs: number | undefined): Promise<ControlResponse> {
    if (this.#closed) return Promise.reject(this.#closed);
    return new Promise((resolve, reject) => {
      const w: Waiter = { what, resolve, reject };
      if (timeoutMs !== undefined) {
        w.timer = setTimeout(() => {
          const e = new ControlTimeoutError(`no answer to ${what} from ${this.#path} within ${timeoutMs} ms`, timeoutMs);
          this.#waiting.splice(this.#waiting.indexOf(w), 1);
          reject(e);
          this.#fail(new ControlConnectionError(`the connection to ${this.#path} was closed: ${e.message}`, { cause: e }));
          this.#sock.destroy();
        }, timeoutMs);
      }
      this.#waiting.push(w);
      this.#sock.write(`${line}\n`);
    });
  }

  #onData(chunk: string): void {
    this.#buffered += chunk;
    let nl: number;
    while ((nl = this.#buffered.indexOf('\n')) >= 0) {
      const line = this.#buffered.slice(0, nl);
      this.#buffered = this.#buffered.slice(nl + 1);
      const w = this.#waiting.shift();
      if (!w) {
        this.#fail(new ControlConnectionError(`${this.#path} sent a line nobody asked for: ${line.slice(0, 200)}`));
        this.#sock.destroy();
        return;
      }
      clearTimeout(w.timer);
      let answer: unknown;
      try {
        answer = JSON.parse(line);
      } catch (e) {
        w.reject(new ControlConnectionError(`malformed answer from ${this.#path}: ${(e as Error).message}`, { cause: e }));
        continue;
      }
      if (isResponse(answer)) w.resolve(answer);
      else w.reject(new ControlConnectionError(`malformed answer from ${this.#path}: expected {"ok": true|false, ...}, got ${JSON.stringify(answer).slice(0, 200)}`));
    }
    if (this.#buffered.length > MAX_ANSWER_LINE) {
      this.#fail(new ControlConnectionError(`the answer from ${this.#path} is longer than ${MAX_ANSWER_LINE} bytes without a newline`));
      this.#sock.destroy();
    }
  }

  /**
   * Reject every waiting request and refuse later ones. Without `e` (the connection closed), each
   * waiter is told which request went unanswered.
   */
  #fail(e?: Error): void {
    const closed = new ControlConnectionError(`the connection to ${this.#path} is closed`);
    this.#closed ??= e ?? closed;
    for (const w of this.#waiting.splice(0)) {
      clearTimeout(w.timer);
      w.reject(e ?? new ControlConnectionError(`the VM on ${this.#path} closed the connection without answering ${w.what}`));
    }
  }
}

/** `{"ok":true,"result":…}` or `{"ok":false,"error":"…"}`. */
function isResponse(v: unknown): v is ControlResponse {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return false;
  const r = v as { ok?: unknown; error?: unknown };
  return r.ok === true || (r.ok === false && typeof r.error === 'string');
}
