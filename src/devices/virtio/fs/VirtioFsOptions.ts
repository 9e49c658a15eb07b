/**
 * The options of a virtio-fs device and their rules, shared by `new VirtioFs()` and the
 * crosvm-style `--shared-dir PATH:TAG:type=fs:cache=auto:timeout=5:writeback=false` parser. Errors
 * name crosvm's keys (`tag`, `cache`, `timeout`, `writeback`) so both spellings of a machine get
 * the same message.
 * @module
 */
import { ConfigError } from '../../../errors';
import { AllowlistError, parseAllowlistPath } from '../../../fuse/Allowlist';
import type { CachePolicy } from '../../../fuse/FuseServer';
import { DEFAULT_POLL_MAX_NS } from '../QueuePolling';

export type { CachePolicy };

/** Options of `new VirtioFs()`, as crosvm's `--shared-dir` (docs/book/src/devices/fs.md). */
export interface VirtioFsOptions {
  /** The host directory to share. */
  sharedDir: string;
  /** The name the guest mounts it by (`mount -t virtiofs TAG /mnt`): 1 to 36 bytes of UTF-8, no NUL. */
  tag: string;
  /**
   * How much the guest caches (crosvm's `cache=`): `never` opens files with FOPEN_DIRECT_IO, `auto`
   * (default) gives close-to-open consistency, `always` keeps the page cache across opens
   * (FOPEN_KEEP_CACHE) and caches directory listings (FOPEN_CACHE_DIR).
   */
  cache?: CachePolicy;
  /**
   * How long, in seconds, the guest may trust names and attributes it looked up (crosvm's
   * `timeout=`, used for both `entry_valid` and `attr_valid`). Default 5, except with
   * `cache: 'never'`, where it defaults to 0 so that the guest sees changes made on the host at
   * once (what virtiofsd's `cache=none` does; crosvm keeps 5).
   */
  timeout?: number;
  /** Let the guest cache writes and send them later (FUSE_WRITEBACK_CACHE; crosvm's `writeback=`). Default false. */
  writeback?: boolean;
  /**
   * A Unix socket path where a host process can change the path allowlist at run time (crosvm's
   * `--allowlist-socket-path`). Configuring it turns the allowlist on: the guest sees nothing until
   * paths are allowed.
   */
  allowlistSocket?: string;
  /**
   * Paths allowed from the start (relative to the share's root, starting with `/`). Giving it turns
   * the allowlist on, with or without `allowlistSocket`; see `VirtioFs.allowPaths()`.
   */
  allowedPaths?: readonly string[];
  /**
   * After serving its queue, the device keeps looking at it for this many nanoseconds with
   * notifications off (QEMU's `poll-max-ns` for I/O threads), so a request sent right after a
   * reply costs no doorbell and no wake-up; the device's queue thread spins meanwhile. Default
   * {@link DEFAULT_POLL_MAX_NS} (32,768, QEMU's); 0 turns polling off.
   */
  pollMaxNs?: number;
}

/** Options after validation, with defaults filled in. */
export interface ResolvedFsOptions {
  sharedDir: string;
  tag: string;
  cache: CachePolicy;
  timeout: number;
  writeback: boolean;
  allowlistSocket: string | undefined;
  /** Undefined when no allowlist is configured. */
  allowedPaths: readonly string[] | undefined;
  pollMaxNs: number;
}

/** Longest tag: the config space's `tag[36]` (virtio 1.2 §5.11.4). */
export const MAX_TAG_BYTES = 36;
/** Default entry/attribute timeout in seconds (crosvm's). */
export const DEFAULT_FS_TIMEOUT = 5;

/** Longest polling window accepted (1 ms): beyond it the queue thread would spin for nothing. */
export const MAX_POLL_NS = 1_000_000;

const CACHE_POLICIES: readonly CachePolicy[] = ['never', 'auto', 'always'];

/**
 * Check `options` and fill in the defaults.
 * @throws ConfigError naming the option, e.g. `tag must be 1 to 36 bytes of UTF-8 without NUL, got ""`
 */
export function resolveFsOptions(options: VirtioFsOptions): ResolvedFsOptions {
  if (typeof options !== 'object' || options === null) throw new ConfigError('shared_dir', 'options must be an object', options);
  const { sharedDir, tag } = options;
  if (typeof sharedDir !== 'string' || sharedDir === '') throw new ConfigError('shared_dir', 'is required: the host directory to share', sharedDir);
  if (typeof tag !== 'string' || tag.includes('\0') || Buffer.byteLength(tag, 'utf8') < 1 || Buffer.byteLength(tag, 'utf8') > MAX_TAG_BYTES) {
    throw new ConfigError('tag', `must be 1 to ${MAX_TAG_BYTES} bytes of UTF-8 without NUL`, tag);
  }
  const cache = options.cache ?? 'auto';
  if (!CACHE_POLICIES.includes(cache)) throw new ConfigError('cache', 'must be never, auto or always', cache);
  const timeout = options.timeout ?? (cache === 'never' ? 0 : DEFAULT_FS_TIMEOUT);
  if (typeof timeout !== 'number' || !Number.isFinite(timeout) || timeout < 0 || timeout >= 2 ** 53) {
    throw new ConfigError('timeout', 'must be a number of seconds >= 0', timeout);
  }
  const writeback = options.writeback ?? false;
  if (typeof writeback !== 'boolean') throw new ConfigError('writeback', 'must be true or false', writeback);
  const socket = options.allowlistSocket;
  if (socket !== undefined && (typeof socket !== 'string' || socket === '')) {
    throw new ConfigError('allowlist_socket', 'must be a socket path', socket);
  }
  let allowed = options.allowedPaths;
  if (allowed !== undefined) {
    if (!Array.isArray(allowed)) throw new ConfigError('allowed_paths', 'must be an array of paths starting with /', allowed);
    for (const p of allowed) {
      try {
        parseAllowlistPath(p);
      } catch (e) {
        if (e instanceof AllowlistError) throw new ConfigError('allowed_paths', e.message, p, { cause: e });
        throw e;
      }
    }
  } else if (socket !== undefined) {
    allowed = [];
  }
  const pollMaxNs = options.pollMaxNs ?? DEFAULT_POLL_MAX_NS;
  if (typeof pollMaxNs !== 'number' || !Number.isInteger(pollMaxNs) || pollMaxNs < 0 || pollMaxNs > MAX_POLL_NS) {
    throw new ConfigError('poll_max_ns', `must be an integer number of nanoseconds from 0 to ${MAX_POLL_NS}`, pollMaxNs);
  }
  return { sharedDir, tag, cache, timeout, writeback, allowlistSocket: socket, allowedPaths: allowed ? [...allowed] : undefined, pollMaxNs };
}
