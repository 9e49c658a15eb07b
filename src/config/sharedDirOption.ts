/**
 * crosvm's `--shared-dir` syntax for virtio-fs: `PATH:TAG:type=fs:cache=auto:timeout=5:writeback=false`.
 *
 * Colon-separated: the host directory, the tag the guest mounts (`mount -t virtiofs TAG /mnt`),
 * then `key=value` items in any order. kvmkit shares directories with virtio-fs only, so `type=fs`
 * is required (crosvm's default is `p9`, virtio-9p, which kvmkit does not have: a crosvm command
 * line without `type=fs` is refused rather than silently given another file system). Nothing is
 * opened here; the device checks the directory.
 * @module
 */
import { ConfigError } from '../errors';
import { MAX_TAG_BYTES, type CachePolicy, type VirtioFsOptions } from '../devices/virtio/fs/VirtioFsOptions';

/** How the guest may cache file contents (crosvm `cache=`). */
export type SharedDirCache = CachePolicy;

/**
 * A parsed `--shared-dir`: the options of `new VirtioFs()` it sets. Only the keys given are set;
 * the device applies the defaults (cache `auto`, timeout 5 s or 0 with `cache=never`, writeback false).
 */
export type SharedDirOptions = Pick<VirtioFsOptions, 'sharedDir' | 'tag' | 'cache' | 'timeout' | 'writeback' | 'allowlistSocket'>;

/** The keys after PATH:TAG that kvmkit implements. */
export const SHARED_DIR_KEYS = ['type', 'cache', 'timeout', 'writeback', 'allowlist_socket', 'allowlist-socket'] as const;

/** crosvm `--shared-dir` keys kvmkit does not implement: named as such rather than as typos. */
const CROSVM_ONLY_KEYS = [
  'uidmap', 'gidmap', 'uid', 'gid', 'dax', 'posix_acl', 'max_dynamic_perm', 'max_dynamic_xattr', 'security_ctx',
  'privileged_quota_uids', 'ascii_casefold', 'negative_timeout', 'dax_file_timeout', 'dax_dir_timeout', 'rewrite_security_xattrs',
  'unmap_guest_memory_on_fork',
];

const CACHES: readonly CachePolicy[] = ['never', 'auto', 'always'];

/** crosvm's `--help` text for `--shared-dir`, limited to what kvmkit implements, with defaults. */
export const SHARED_DIR_OPTION_HELP = `colon-separated options for sharing a host directory
with virtio-fs (repeatable). The first field is the directory
to share, the second the tag the guest mounts it by
(mount -t virtiofs TAG /mnt); key=value fields follow in any
order. Valid keys:
    type=fs - required: kvmkit shares with virtio-fs only
        (crosvm's default, p9, is not supported).
    cache=(never, auto, always) - Whether the VM can cache
        the contents of the shared directory. (default: auto)
    timeout=SECONDS - How long the VM may consider file
        attributes and directory entries valid.
        (default: 5, or 0 with cache=never)
    writeback=BOOL - Enables writeback caching. (default: false)
    allowlist-socket=PATH - Serve crosvm's dynamic path allowlist
        (AddPaths/RemovePaths JSON over SOCK_SEQPACKET) on PATH;
        with it only allowed paths are visible (alias
        allowlist_socket). (default: no allowlist)`;

/**
 * Parse a `--shared-dir` value.
 * @example parseSharedDirOption('/srv/share:my_tag:type=fs:cache=always')
 * @throws ConfigError naming the field and its rule, e.g. `cache must be never, auto or always, got "sometimes"`
 */
export function parseSharedDirOption(text: string): SharedDirOptions {
  if (typeof text !== 'string') throw new ConfigError('shared-dir', 'must be a string PATH:TAG:type=fs[:key=value...]', text);
  const [sharedDir = '', tag, ...rest] = text.split(':');
  if (sharedDir === '') throw new ConfigError('shared-dir', 'needs the host directory first: PATH:TAG:type=fs', text);
  if (tag === undefined || tag === '') throw new ConfigError('tag', 'is required as the second field: PATH:TAG:type=fs', text);
  if (Buffer.byteLength(tag) > MAX_TAG_BYTES) throw new ConfigError('tag', `must be at most ${MAX_TAG_BYTES} bytes of UTF-8`, tag);
  const out: SharedDirOptions = { sharedDir, tag };
  const seen = new Set<string>();
  let type: string | undefined;
  for (const item of rest) {
    const eq = item.indexOf('=');
    if (eq <= 0) throw new ConfigError('shared-dir', `options after PATH:TAG must be key=value (${JSON.stringify(item)} is not)`, text);
    const key = item.slice(0, eq);
    const value = item.slice(eq + 1);
    if (!(SHARED_DIR_KEYS as readonly string[]).includes(key)) {
      if (CROSVM_ONLY_KEYS.includes(key)) throw new ConfigError(key, 'is a crosvm --shared-dir option that kvmkit does not support', text);
      throw new ConfigError(key, `is not a --shared-dir option (valid keys: ${SHARED_DIR_KEYS.join(', ')})`, text);
    }
    const canonical = key === 'allowlist-socket' ? 'allowlist_socket' : key;
    if (seen.has(canonical)) throw new ConfigError(key, 'is given twice', text);
    seen.add(canonical);
    switch (key) {
      case 'type':
        type = value;
        break;
      case 'cache':
        if (!(CACHES as readonly string[]).includes(value)) throw new ConfigError('cache', 'must be never, auto or always', value);
        out.cache = value as CachePolicy;
        break;
      case 'timeout':
        if (!/^(0|[1-9][0-9]*)$/.test(value) || !Number.isSafeInteger(Number(value))) throw new ConfigError('timeout', 'must be a whole number of seconds', value);
        out.timeout = Number(value);
        break;
      case 'writeback':
        if (value !== 'true' && value !== 'false') throw new ConfigError('writeback', 'must be true or false', value);
        out.writeback = value === 'true';
        break;
      case 'allowlist_socket':
      case 'allowlist-socket':
        if (value === '') throw new ConfigError('allowlist_socket', 'must be the path of a Unix socket to create', value);
        out.allowlistSocket = value;
        break;
    }
  }
  if (type === undefined) throw new ConfigError('type', 'is required: add :type=fs (kvmkit shares directories with virtio-fs; crosvm\'s default p9 is not supported)', text);
  if (type !== 'fs' && type !== 'FS') {
    if (/^(9p|p9)$/i.test(type)) throw new ConfigError('type', 'must be fs: kvmkit has no virtio-9p device', type);
    throw new ConfigError('type', 'must be fs', type);
  }
  return out;
}
