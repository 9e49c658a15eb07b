/**
 * Where a control socket goes and how it is created: a directory gets `kvmkit-<pid>.sock` (as
 * crosvm names `crosvm-<pid>.sock`), a stale socket file is removed, a live one refuses, and the
 * socket is bound inside a private 0700 directory, set to 0600 and only then linked to its final
 * name, so it is never reachable with wider permissions.
 * @module
 */
import { chmod, link, lstat, mkdtemp, rmdir, unlink } from 'node:fs/promises';
import { statSync } from 'node:fs';
import { connect, type Server } from 'node:net';
import { basename, dirname, join, resolve } from 'node:path';
import { ConfigError } from '../errors';

/** Longest Unix socket path (`sizeof(sockaddr_un.sun_path)` is 108 in Linux's <sys/un.h>, with the NUL). */
export const MAX_SOCKET_PATH = 107;
/** How long the live-server check waits for a connection (ms). */
export const LIVE_CHECK_TIMEOUT_MS = 1000;

/** The socket path for option `path`: the path itself, or `kvmkit-<pid>.sock` inside it when it is an existing directory. */
export function resolveSocketPath(path: string, pid = process.pid): string {
  const abs = resolve(path);
  let isDir = false;
  try {
    isDir = statSync(abs).isDirectory();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new ConfigError('socket', `cannot be checked: ${(e as Error).message}`, path, { cause: e });
  }
  return isDir ? join(abs, `kvmkit-${pid}.sock`) : abs;
}

/** Whether a server accepts connections on the Unix socket at `path` (false when refused: a stale file). */
export function socketIsLive(path: string, timeoutMs = LIVE_CHECK_TIMEOUT_MS): Promise<boolean> {
  return new Promise((done, fail) => {
    const sock = connect(path);
    const timer = setTimeout(() => {
      sock.destroy();
      done(true); // a listener whose backlog is full still exists
    }, timeoutMs);
    sock.once('connect', () => {
      clearTimeout(timer);
      sock.destroy();
      done(true);
    });
    sock.once('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      if (e.code === 'ECONNREFUSED' || e.code === 'ENOENT') done(false);
      else fail(e);
    });
  });
}

/**
 * Make `path` free for a new socket: nothing there, or a stale socket (removed).
 * @throws ConfigError when a live server answers there, or the path is another kind of file
 */
export async function claimSocketPath(path: string): Promise<void> {
  let st;
  try {
    st = await lstat(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw new ConfigError('socket', `cannot be checked: ${(e as Error).message}`, path, { cause: e });
  }
  if (!st.isSocket()) throw new ConfigError('socket', 'exists and is not a socket (kvmkit replaces only stale sockets)', path);
  let live: boolean;
  try {
    live = await socketIsLive(path);
  } catch (e) {
    throw new ConfigError('socket', `exists and cannot be checked for a running server: ${(e as Error).message}`, path, { cause: e });
  }
  if (live) throw new ConfigError('socket', 'is in use: a running server answers there (stop that VM or choose another path)', path);
  await unlink(path).catch((e: NodeJS.ErrnoException) => {
    if (e.code !== 'ENOENT') throw new ConfigError('socket', `is a stale socket that cannot be removed: ${e.message}`, path, { cause: e });
  });
}

function listen(server: Server, path: string): Promise<void> {
  return new Promise((done, fail) => {
    const onError = (e: Error): void => fail(e);
    server.once('error', onError);
    server.listen(path, () => {
      server.off('error', onError);
      done();
    });
  });
}

/**
 * Bind `server` to `path` with mode 0600: listen on `s` in a fresh 0700 directory beside `path`,
 * chmod 0600, hard-link it to `path` (which fails if something appeared there meanwhile: never
 * replaced) and remove the private name.
 * @throws ConfigError when the path is too long or taken, or the directory is not writable
 */
export async function listenPrivately(server: Server, path: string): Promise<void> {
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH) {
    throw new ConfigError('socket', `must be a path of at most ${MAX_SOCKET_PATH} bytes (a Unix socket address)`, path);
  }
  let dir: string;
  try {
    dir = await mkdtemp(join(dirname(path), `.${basename(path).slice(0, 8)}-`));
  } catch (e) {
    throw new ConfigError('socket', `cannot be created in ${dirname(path)}: ${(e as Error).message}`, path, { cause: e });
  }
  const tmp = join(dir, 's');
  try {
    if (Buffer.byteLength(tmp) > MAX_SOCKET_PATH) {
      throw new ConfigError('socket', `must be a path whose directory name is at most ${MAX_SOCKET_PATH - (Buffer.byteLength(tmp) - Buffer.byteLength(dirname(path)))} bytes (kvmkit binds in a private directory there first)`, path);
    }
    await listen(server, tmp);
    await chmod(tmp, 0o600);
    try {
      await link(tmp, path);
    } catch (e) {
      const taken = (e as NodeJS.ErrnoException).code === 'EEXIST';
      throw new ConfigError('socket', taken ? 'was taken by another process while kvmkit created it' : `cannot be created: ${(e as Error).message}`, path, { cause: e });
    }
  } catch (e) {
    if (server.listening) server.close();
    throw e;
  } finally {
    await unlink(tmp).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== 'ENOENT') throw e;
    });
    await rmdir(dir);
  }
}
