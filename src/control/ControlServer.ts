/**
 * The control socket server: newline-delimited JSON requests on a Unix stream socket, answered
 * one line each, in order, per connection (protocol.ts, README.md). Malformed input gets an error
 * response; nothing a client sends stops the VM except `stop`, or the server.
 * @module
 */
import { SocketFile } from '../net/SocketFile';
import { createServer, type Server, type Socket } from 'node:net';
import { KvmkitError } from '../errors';
import { hasBalloon, type ControlTarget } from './ControlTarget';
import { encodeResponse, MAX_REQUEST_LINE, parseRequest, type ControlRequest, type ControlResponse } from './protocol';
import { claimSocketPath, listenPrivately } from './socketPath';

/** Options of {@link ControlServer.listen}. */
export interface ControlServerOptions {
  /** A connection failed in a way that is not the client going away (default: ignored). */
  onError?: (err: Error) => void;
}

/** How long a connection may stay open after the server closed and its last answer was written (ms). */
const CLOSE_LINGER_MS = 1000;

/** Errors that only mean the client went away. */
const CLIENT_GONE = new Set(['ECONNRESET', 'EPIPE']);

/**
 * A control server for one VM.
 *
 * ```ts
 * const server = await ControlServer.listen('/run/vm.sock', vm);
 * // … `kvmkit stop /run/vm.sock`, or a ControlClient …
 * await server.close();
 * ```
 */
export class ControlServer {
  readonly #server: Server;
  readonly #target: ControlTarget;
  readonly #onError: (err: Error) => void;
  readonly #sockets = new Set<Socket>();
  /** Per connection: the answer written last (the next one waits for it). */
  readonly #pending = new WeakMap<Socket, Promise<void>>();
  #closing?: Promise<void>;
  readonly #file: SocketFile;
  /** Requests answered so far (errors included). */
  requests = 0;

  private constructor(readonly path: string, target: ControlTarget, server: Server, options: ControlServerOptions) {
    this.#target = target;
    this.#server = server;
    this.#onError = options.onError ?? (() => {});
    this.#file = new SocketFile(path, 'control socket', (e) => this.#onError(e));
  }

  /**
   * Serve `target` on the Unix socket `path` (mode 0600). A stale socket file there is replaced.
   * @throws ConfigError (`socket …`) when a live server answers at `path`, another kind of file is
   *   there, the path is too long or its directory is not writable
   */
  static async listen(path: string, target: ControlTarget, options: ControlServerOptions = {}): Promise<ControlServer> {
    await claimSocketPath(path);
    const server = createServer();
    const cs = new ControlServer(path, target, server, options);
    server.on('connection', (sock) => cs.#accept(sock));
    server.on('error', (e) => cs.#onError(e));
    await listenPrivately(server, path);
    return cs;
  }

  /** Open client connections. */
  get connections(): number {
    return this.#sockets.size;
  }

  /**
   * Stop accepting connections and remove the socket file (at once); connections end after their
   * pending answers are written. Resolves when every connection is closed.
   */
  close(): Promise<void> {
    if (this.#closing) return this.#closing;
    this.removeSocketFile();
    this.#closing = new Promise((done) => this.#server.close(() => done()));
    for (const s of this.#sockets) this.#drainAndEnd(s);
    return this.#closing;
  }

  /** @internal Remove the socket file (idempotent; process exit path). */
  removeSocketFile(): void {
    this.#file.remove();
  }

  #accept(sock: Socket): void {
    this.#sockets.add(sock);
    sock.setEncoding('utf8');
    let buffered = '';
    let discarding = false; // inside an over-long line: skip to its newline
    this.#pending.set(sock, Promise.resolve());
    sock.on('data', (chunk: string) => {
      buffered += chunk;
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        if (discarding) discarding = false;
        else this.#enqueue(sock, line);
      }
      if (!discarding && buffered.length > MAX_REQUEST_LINE) {
        discarding = true;
        this.#enqueueResponse(sock, { ok: false, error: `request line longer than ${MAX_REQUEST_LINE} characters` });
      }
      if (discarding) buffered = '';
    });
    sock.on('error', (e: NodeJS.ErrnoException) => {
      if (!CLIENT_GONE.has(e.code ?? '')) this.#onError(new KvmkitError(`control connection failed: ${e.message}`, { cause: e }));
    });
    sock.on('close', () => this.#sockets.delete(sock));
    if (this.#closing) this.#drainAndEnd(sock);
  }

  #enqueue(sock: Socket, raw: string): void {
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (line.trim() === '') return; // blank lines are not requests
    this.#chain(sock, () => this.#answer(line));
  }

  #enqueueResponse(sock: Socket, response: ControlResponse): void {
    this.#chain(sock, () => Promise.resolve(response));
  }

  /** Answers go out in request order: each waits for the previous one. */
  #chain(sock: Socket, answer: () => Promise<ControlResponse>): void {
    const prev = this.#pending.get(sock) ?? Promise.resolve();
    const next = prev
      .then(async () => {
        const response = await answer();
        let line: string;
        try {
          line = encodeResponse(response);
        } catch (e) {
          // e.g. a circular result: the client still gets its one line
          line = encodeResponse({ ok: false, error: `the result cannot be sent as JSON: ${(e as Error).message}` });
        }
        this.requests++;
        if (!sock.destroyed) sock.write(line);
      })
      .catch((e: unknown) => this.#onError(new KvmkitError('answering a control request failed', { cause: e })));
    this.#pending.set(sock, next);
  }

  #drainAndEnd(sock: Socket): void {
    void (this.#pending.get(sock) ?? Promise.resolve()).then(() => {
      sock.end();
      setTimeout(() => sock.destroy(), CLOSE_LINGER_MS).unref();
    });
  }

  /** Parse, run and answer one request line; never throws. */
  async #answer(line: string): Promise<ControlResponse> {
    const parsed = parseRequest(line);
    if (!parsed.ok) return parsed;
    try {
      return { ok: true, result: await this.#run(parsed.request) };
    } catch (e) {
      return { ok: false, error: e instanceof Error ? e.message : String(e) };
    }
  }

  async #run(r: ControlRequest): Promise<unknown> {
    const t = this.#target;
    switch (r.command) {
      case 'status':
        return t.status();
      case 'stop':
        return (await t.stop()) ?? null;
      case 'suspend':
        await t.pause();
        return { state: t.status().state };
      case 'resume':
        t.resume();
        return { state: t.status().state };
      case 'disk_resize':
        await t.resizeDisk(r.index, r.bytes);
        return { index: r.index, bytes: r.bytes };
      case 'balloon':
        if (!hasBalloon(t)) throw new KvmkitError('this VM has no balloon device');
        return (await t.balloon(r.bytes)) ?? { bytes: r.bytes };
      case 'balloon_stats':
        if (!hasBalloon(t)) throw new KvmkitError('this VM has no balloon device');
        return (await t.balloonStats()) ?? null;
    }
  }
}
