/**
 * A typed client of the control socket (protocol.ts): one connection, requests answered in order.
 *
 * ```ts
 * const c = await ControlClient.connect('/run/vm.sock');
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

/** The connection failed or closed before an answer came. */
export class ControlConnectionError extends KvmkitError {}

interface Waiter {
  resolve: (r: ControlResponse) => void;
  reject: (e: Error) => void;
}

/** A connection to a kvmkit control socket. */
export class ControlClient {
  readonly #sock: Socket;
  readonly #waiting: Waiter[] = [];
  #buffered = '';
  #closed?: Error;

  private constructor(sock: Socket) {
    this.#sock = sock;
    sock.setEncoding('utf8');
    sock.on('data', (chunk: string) => this.#onData(chunk));
    sock.on('error', (e) => this.#fail(new ControlConnectionError(`control connection failed: ${e.message}`, { cause: e })));
    sock.on('close', () => this.#fail(new ControlConnectionError('the control socket closed before answering')));
  }

  /**
   * Connect to the socket at `path`.
   * @throws ControlConnectionError when nothing listens there (within `timeoutMs`, default 5000)
   */
  static connect(path: string, options: { timeoutMs?: number } = {}): Promise<ControlClient> {
    return new Promise((resolve, reject) => {
      const sock = connect(path);
      const timer = setTimeout(() => {
        sock.destroy();
        reject(new ControlConnectionError(`no answer from control socket ${path} within ${options.timeoutMs ?? 5000} ms`));
      }, options.timeoutMs ?? 5000);
      sock.once('connect', () => {
        clearTimeout(timer);
        sock.removeAllListeners('error');
        resolve(new ControlClient(sock));
      });
      sock.once('error', (e) => {
        clearTimeout(timer);
        reject(new ControlConnectionError(`cannot connect to control socket ${path}: ${e.message}`, { cause: e }));
      });
    });
  }

  /**
   * Send one raw line (a newline is added) and return the server's response as it came. For
   * requests the types do not allow (tests of the server's validation).
   */
  sendLine(line: string): Promise<ControlResponse> {
    if (this.#closed) return Promise.reject(this.#closed);
    return new Promise((resolve, reject) => {
      this.#waiting.push({ resolve, reject });
      this.#sock.write(`${line}\n`);
    });
  }

  /** Send a request and return its response (`ok: false` included). */
  send(request: ControlRequest): Promise<ControlResponse> {
    return this.sendLine(JSON.stringify(request));
  }

  /**
   * Send a request and return its result.
   * @throws ControlRequestError with the server's message when it answers `ok: false`
   */
  async request(request: ControlRequest): Promise<unknown> {
    const r = await this.send(request);
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
    this.#sock.end();
    this.#sock.destroy();
  }

  #onData(chunk: string): void {
    this.#buffered += chunk;
    let nl: number;
    while ((nl = this.#buffered.indexOf('\n')) >= 0) {
      const line = this.#buffered.slice(0, nl);
      this.#buffered = this.#buffered.slice(nl + 1);
      const w = this.#waiting.shift();
      if (!w) {
        this.#fail(new ControlConnectionError(`the control server sent a line nobody asked for: ${line.slice(0, 200)}`));
        return;
      }
      try {
        w.resolve(JSON.parse(line) as ControlResponse);
      } catch (e) {
        w.reject(new ControlConnectionError(`the control server sent a line that is not JSON: ${line.slice(0, 200)}`, { cause: e }));
      }
    }
  }

  #fail(e: Error): void {
    this.#closed ??= e;
    for (const w of this.#waiting.splice(0)) w.reject(e);
  }
}
