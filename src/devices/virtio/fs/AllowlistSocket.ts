/**
 * The virtio-fs dynamic path allowlist socket, in crosvm's wire protocol (crosvm
 * docs/book/src/devices/fs.md "Dynamic Path Allowlist"; devices/src/virtio/vhost_user_backend/fs.rs
 * `handle_client_session`; vm_control/src/lib.rs `FsAllowlistCommand`/`FsAllowlistResponse`):
 *
 * - a Unix `SOCK_SEQPACKET` socket (mode 0600), one JSON message per packet, each request answered
 *   by one packet, in order, on the same connection;
 * - requests are serde's external tagging of `enum FsAllowlistCommand { AddPaths { paths },
 *   RemovePaths { paths } }`: `{"AddPaths":{"paths":["/a","/b/c"]}}`,
 *   `{"RemovePaths":{"paths":["/a"]}}`, paths relative to the share's root and starting with `/`;
 * - answers are `enum FsAllowlistResponse { Ok, Err(String) }`: `"Ok"` or `{"Err":"<message>"}`.
 *   crosvm's messages are `Failed to add one or more paths` / `Failed to remove one or more
 *   paths`; kvmkit sends the same text followed by `: ` and the reason.
 *
 * Each command is atomic (crosvm applies it to a clone and swaps it in): one bad path and nothing
 * changes. Where kvmkit is stricter than crosvm, as issue 6 asks: a path that does not start with
 * `/` or has a `..` component is refused (crosvm normalises `..` lexically and makes relative paths
 * absolute), and malformed JSON, an unknown command or a wrong shape gets `{"Err":…}` and the
 * connection stays open (crosvm's `Tube::recv` fails and ends that client's session without an
 * answer). As serde does, fields other than `paths` inside a command are ignored. A zero-length
 * packet ends the connection, as in crosvm.
 * @module
 */
import { KvmkitError } from '../../../errors';
import { AllowlistError } from '../../../fuse/Allowlist';
import { SeqpacketConnection } from '../../../net/SeqpacketConnection';
import { SeqpacketServer } from '../../../net/SeqpacketServer';

/** A request (`FsAllowlistCommand`, serde's externally tagged JSON). */
export type FsAllowlistCommand = { AddPaths: { paths: string[] } } | { RemovePaths: { paths: string[] } };

/** An answer (`FsAllowlistResponse`). */
export type FsAllowlistResponse = 'Ok' | { Err: string };

/** What the socket changes: `VirtioFs` implements it. */
export interface AllowlistTarget {
  /** Allow paths (atomic). @throws AllowlistError for a bad path */
  allowPaths(paths: readonly string[]): void;
  /** Revoke paths (atomic). @throws AllowlistError for a bad path or one that is not allowed */
  revokePaths(paths: readonly string[]): void;
}

/** crosvm's error texts (devices/src/virtio/vhost_user_backend/fs.rs). */
export const ADD_FAILED = 'Failed to add one or more paths';
export const REMOVE_FAILED = 'Failed to remove one or more paths';

/** The result of parsing one request packet. */
export type ParsedAllowlistCommand = { ok: true; command: 'AddPaths' | 'RemovePaths'; paths: string[] } | { ok: false; error: string };

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Decode and check one request packet (never throws: a bad one is `{ ok: false, error }`). */
export function parseAllowlistCommand(packet: Uint8Array): ParsedAllowlistCommand {
  let value: unknown;
  try {
    value = JSON.parse(utf8.decode(packet));
  } catch (e) {
    return { ok: false, error: `malformed request: ${(e as Error).message}` };
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return { ok: false, error: 'malformed request: expected an object {"AddPaths":{"paths":[...]}} or {"RemovePaths":{"paths":[...]}}' };
  }
  const keys = Object.keys(value);
  if (keys.length !== 1) return { ok: false, error: `malformed request: expected exactly one command, got ${keys.length}` };
  const command = keys[0]!;
  if (command !== 'AddPaths' && command !== 'RemovePaths') {
    return { ok: false, error: `unknown command ${JSON.stringify(command)}: expected AddPaths or RemovePaths` };
  }
  const body = (value as Record<string, unknown>)[command];
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return { ok: false, error: `malformed ${command}: expected {"paths":[...]}` };
  const paths = (body as Record<string, unknown>).paths;
  if (!Array.isArray(paths)) return { ok: false, error: `malformed ${command}: "paths" must be an array of strings` };
  if (!paths.every((p): p is string => typeof p === 'string')) return { ok: false, error: `malformed ${command}: every path must be a string` };
  return { ok: true, command, paths };
}

/** Run one request packet against `target` and return the answer (never throws for a bad request). */
export function answerAllowlistCommand(packet: Uint8Array, target: AllowlistTarget): FsAllowlistResponse {
  const parsed = parseAllowlistCommand(packet);
  if (!parsed.ok) return { Err: parsed.error };
  const add = parsed.command === 'AddPaths';
  try {
    if (add) target.allowPaths(parsed.paths);
    else target.revokePaths(parsed.paths);
  } catch (e) {
    if (e instanceof AllowlistError) return { Err: `${add ? ADD_FAILED : REMOVE_FAILED}: ${e.message}` };
    throw e;
  }
  return 'Ok';
}

/** Options of {@link AllowlistSocket.listen}. */
export interface AllowlistSocketOptions {
  /**
   * A socket failure that is not a client going away (accept(2) failing, a connection error).
   * Default: kept in {@link AllowlistSocket.errors}.
   */
  onError?: (err: Error) => void;
}

/** How many socket failures {@link AllowlistSocket.errors} keeps. */
const KEEP_ERRORS = 16;

/**
 * The allowlist socket of one virtio-fs device. `VirtioFs` starts it when created with
 * `allowlistSocket` and closes it in `close()` (when the VM ends).
 */
export class AllowlistSocket {
  /** Requests answered (errors included). */
  requests = 0;
  /** Socket failures seen when no `onError` was given (the last 16). */
  readonly errors: Error[] = [];
  readonly #server: SeqpacketServer;

  private constructor(server: SeqpacketServer, target: AllowlistTarget, options: AllowlistSocketOptions) {
    this.#server = server;
    const onError = options.onError ?? ((e: Error): void => {
      if (this.errors.push(e) > KEEP_ERRORS) this.errors.shift();
    });
    server.on('error', onError);
    server.on('connection', (conn) => {
      conn.on('message', (packet) => {
        let answer: FsAllowlistResponse;
        try {
          answer = answerAllowlistCommand(packet, target);
        } catch (e) {
          answer = { Err: `internal error: ${(e as Error).message}` };
          onError(new KvmkitError('an allowlist command failed unexpectedly', { cause: e }));
        }
        this.requests++;
        conn.send(JSON.stringify(answer));
      });
    });
  }

  /**
   * Serve `target`'s allowlist on `path` (synchronously: clients can connect when this returns).
   * @throws ConfigError (`allowlist_socket …`) when a live server answers at `path`, another kind of
   *   file is there, the path is too long or its directory is not writable
   */
  static listen(path: string, target: AllowlistTarget, options: AllowlistSocketOptions = {}): AllowlistSocket {
    return new AllowlistSocket(SeqpacketServer.listen(path, { option: 'allowlist_socket' }), target, options);
  }

  /** The socket file (absolute path). */
  get path(): string {
    return this.#server.path;
  }

  /** Connected clients. */
  get connections(): number {
    return this.#server.connections;
  }

  /** Stop serving: the socket file is removed at once and clients are disconnected. Idempotent. */
  close(): void {
    this.#server.close();
  }
}

/** The allowlist socket answered `{"Err":…}`; `message` is its text. */
export class AllowlistCommandError extends KvmkitError {}

/**
 * A client of an allowlist socket (kvmkit's or crosvm's), for tools and tests.
 *
 * ```ts
 * const c = AllowlistClient.connect('/run/fs-allowlist.sock');
 * await c.addPaths(['/projects/a']);
 * await c.removePaths(['/projects/a']);
 * c.close();
 * ```
 */
export class AllowlistClient {
  readonly #conn: SeqpacketConnection;

  private constructor(conn: SeqpacketConnection) {
    this.#conn = conn;
  }

  /** Connect (synchronously). @throws SocketError when nothing listens at `path` */
  static connect(path: string): AllowlistClient {
    return new AllowlistClient(SeqpacketConnection.connect(path));
  }

  /** Send one raw packet and return the answer packet as text (for protocol tests). */
  async sendRaw(packet: Uint8Array | string): Promise<string> {
    this.#conn.send(packet);
    return Buffer.from(await this.#conn.nextMessage()).toString('utf8');
  }

  /** Send a command and return the decoded answer (`"Ok"` or `{ Err }`). */
  async send(command: FsAllowlistCommand): Promise<FsAllowlistResponse> {
    return JSON.parse(await this.sendRaw(JSON.stringify(command))) as FsAllowlistResponse;
  }

  /** AddPaths. @throws AllowlistCommandError with the server's message on `{"Err":…}` */
  async addPaths(paths: readonly string[]): Promise<void> {
    check(await this.send({ AddPaths: { paths: [...paths] } }));
  }

  /** RemovePaths. @throws AllowlistCommandError with the server's message on `{"Err":…}` */
  async removePaths(paths: readonly string[]): Promise<void> {
    check(await this.send({ RemovePaths: { paths: [...paths] } }));
  }

  /** Close the connection. */
  close(): void {
    this.#conn.close();
  }
}

function check(r: FsAllowlistResponse): void {
  if (r !== 'Ok') throw new AllowlistCommandError(typeof r === 'object' && r !== null && typeof r.Err === 'string' ? r.Err : `unexpected answer ${JSON.stringify(r)}`);
}
