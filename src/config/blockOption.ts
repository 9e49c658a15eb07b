/**
 * crosvm's `--block` syntax: `disk.img,ro,sparse=false,o_direct=true,block_size=4096,id=MYSERIALNO`.
 *
 * Comma-separated `key=value` pairs in the serde_keyvalue style crosvm uses: the first item may
 * omit its key (it is the `path`); a key without `=` is a boolean set to true; booleans are
 * `true` or `false`; numbers are decimal or `0x` hexadecimal; a value may be double-quoted to hold
 * commas (`path="a,b.img"`, with `\"` and `\\` escapes). Keys follow crosvm's `DiskOption`:
 * `path`, `ro`, `root`, `sparse`, `direct` (alias `o_direct`), `block-size` (alias `block_size`),
 * `id`. The CLI reuses this parser for `--block`.
 * @module
 */
import { ConfigError } from '../errors';
import { checkBlockSize } from '../disk/RawDiskImage';
import { MAX_ID_LENGTH, resolveBlockOptions, type VirtioBlockOptions } from '../devices/virtio/block/VirtioBlockOptions';

/** Every key `--block` accepts, in crosvm's spelling, with aliases. */
export const BLOCK_OPTION_KEYS = ['path', 'ro', 'root', 'sparse', 'direct', 'o_direct', 'block-size', 'block_size', 'id'] as const;

/** crosvm `--block` keys kvmkit does not implement: named as such rather than as typos. */
const CROSVM_ONLY_KEYS = ['lock', 'multiple-workers', 'multiple_workers', 'async-executor', 'async_executor', 'packed-queue', 'packed_queue', 'bootindex', 'pci-address', 'pci_address', 'io_concurrency', 'io-concurrency'];

/** One `key=value` item; `value` is undefined for a bare key. */
export interface KeyValue {
  key: string;
  value: string | undefined;
}

/**
 * Split `text` into items the serde_keyvalue way. The first item may be a bare value for
 * `positional` (a first item without `=` that is not a known key becomes `positional=item`).
 * @param option the option's name in errors (`--block`)
 * @param knownKeys keys that may stand alone as booleans in first position
 * @throws ConfigError for an empty item or an unterminated quote
 */
export function splitKeyValues(text: string, option: string, positional: string, knownKeys: readonly string[]): KeyValue[] {
  const items: { key: string | undefined; value: string | undefined }[] = [];
  let i = 0;
  while (i <= text.length) {
    // key (or a bare value) up to '=', ',' or the end
    let key = '';
    while (i < text.length && text[i] !== '=' && text[i] !== ',') {
      if (text[i] === '"') break;
      key += text[i++];
    }
    let value: string | undefined;
    if (text[i] === '"' && key === '') {
      // a quoted bare value (only meaningful as the positional first item)
      const q = readQuoted(text, i, option);
      i = q.end;
      items.push({ key: undefined, value: q.value });
    } else if (text[i] === '=') {
      i++;
      if (text[i] === '"') {
        const q = readQuoted(text, i, option);
        value = q.value;
        i = q.end;
      } else {
        value = '';
        while (i < text.length && text[i] !== ',') {
          if (text[i] === '"') throw new ConfigError(option, 'has a quote in the middle of a value (quote the whole value)', text);
          value += text[i++];
        }
      }
      items.push({ key, value });
    } else if (text[i] === '"') {
      throw new ConfigError(option, 'has a quote in the middle of a key', text);
    } else {
      items.push({ key, value: undefined });
    }
    if (i < text.length && text[i] !== ',') throw new ConfigError(option, `expects "," after a quoted value at position ${i}`, text);
    if (i >= text.length) break;
    i++; // the comma
    if (i === text.length) throw new ConfigError(option, 'ends with a comma', text);
  }
  return items.map((it, n) => {
    if (it.key === undefined) {
      if (n !== 0) throw new ConfigError(option, `takes a value without a key only first (as ${positional})`, text);
      return { key: positional, value: it.value };
    }
    if (it.key === '' && it.value === undefined) throw new ConfigError(option, 'has an empty item', text);
    if (it.key === '') throw new ConfigError(option, 'has a value without a key', text);
    if (n === 0 && it.value === undefined && !knownKeys.includes(it.key)) return { key: positional, value: it.key };
    return { key: it.key, value: it.value };
  });
}

function readQuoted(text: string, start: number, option: string): { value: string; end: number } {
  let value = '';
  let i = start + 1;
  for (;;) {
    if (i >= text.length) throw new ConfigError(option, 'has an unterminated quote', text);
    const c = text[i++]!;
    if (c === '"') return { value, end: i };
    if (c === '\\') {
      const n = text[i++];
      if (n !== '"' && n !== '\\') throw new ConfigError(option, 'allows only \\" and \\\\ escapes in quotes', text);
      value += n;
    } else {
      value += c;
    }
  }
}

function parseBool(key: string, value: string | undefined): boolean {
  if (value === undefined || value === 'true') return true;
  if (value === 'false') return false;
  throw new ConfigError(key, 'must be true or false', value);
}

function parseNumber(key: string, value: string | undefined): number {
  const n = value === undefined ? NaN : /^[0-9]+$/.test(value) ? Number(value) : /^0x[0-9a-f]+$/i.test(value) ? Number.parseInt(value.slice(2), 16) : NaN;
  if (!Number.isSafeInteger(n)) throw new ConfigError(key, 'must be a number (decimal or 0x hexadecimal)', value ?? '');
  return n;
}

/**
 * Parse a `--block` value into {@link VirtioBlockOptions} for `new VirtioBlock()`, checking every
 * value (no file is opened). Only the keys given appear in the result, besides `path`.
 * @example parseBlockOption('disk.img,ro,sparse=false,o_direct=true,block_size=4096,id=MYSERIALNO')
 * @throws ConfigError naming the key and what is wrong, e.g. `block_size must be a power of two >= 512, got 1000`
 */
export function parseBlockOption(text: string): VirtioBlockOptions {
  if (typeof text !== 'string') throw new ConfigError('--block', 'must be a string', text);
  if (text === '') throw new ConfigError('path', 'is required: the disk image file (first item of --block)', text);
  const out: Partial<VirtioBlockOptions> = {};
  const seen = new Map<string, string>(); // field -> key as written
  for (const { key, value } of splitKeyValues(text, '--block', 'path', BLOCK_OPTION_KEYS)) {
    const field = claimField(key, seen, text);
    switch (field) {
      case 'path':
        if (value === undefined || value === '') throw new ConfigError('path', 'is required: the disk image file', value ?? '');
        out.path = value;
        break;
      case 'blockSize':
        out.blockSize = checkBlockSize(key, parseNumber(key, value));
        break;
      case 'id':
        if (value === undefined) throw new ConfigError('id', `needs a value: id=SERIAL (at most ${MAX_ID_LENGTH} printable ASCII characters)`, text);
        out.id = value;
        break;
      default:
        out[field] = parseBool(key, value);
    }
  }
  if (out.path === undefined) throw new ConfigError('path', 'is required: the disk image file (first item of --block)', text);
  const options = out as VirtioBlockOptions;
  resolveBlockOptions(options); // the remaining rules (id characters and length), with the same messages
  return options;
}

/**
 * A `block` entry of a JSON config file in object form, as crosvm's config files write it:
 * `{"path": "root.img", "root": true, "block-size": 4096}`. Same keys and rules as
 * {@link parseBlockOption}, with JSON types: booleans are `true`/`false`, `block-size` a number.
 * @throws ConfigError naming the key and what is wrong, e.g. `ro must be true or false, got "yes"`
 */
export function parseBlockObject(entry: Readonly<Record<string, unknown>>): VirtioBlockOptions {
  if (entry === null || typeof entry !== 'object' || Array.isArray(entry)) {
    throw new ConfigError('block', 'entries must be objects ({"path": "disk.img", ...}) or --block strings', entry);
  }
  const out: Partial<VirtioBlockOptions> = {};
  const seen = new Map<string, string>();
  for (const [key, value] of Object.entries(entry)) {
    const field = claimField(key, seen, entry);
    switch (field) {
      case 'path':
        if (typeof value !== 'string' || value === '') throw new ConfigError('path', 'is required: the disk image file', value);
        out.path = value;
        break;
      case 'blockSize':
        out.blockSize = checkBlockSize(key, value);
        break;
      case 'id':
        if (typeof value !== 'string') throw new ConfigError('id', `must be a string of at most ${MAX_ID_LENGTH} printable ASCII characters`, value);
        out.id = value;
        break;
      default:
        if (typeof value !== 'boolean') throw new ConfigError(key, 'must be true or false', value);
        out[field] = value;
    }
  }
  if (out.path === undefined) throw new ConfigError('path', 'is required: the disk image file', entry);
  const options = out as VirtioBlockOptions;
  resolveBlockOptions(options);
  return options;
}

/** The option field `key` sets; throws for an unknown key or a field given twice (under either spelling). */
function claimField(key: string, seen: Map<string, string>, whole: unknown): keyof VirtioBlockOptions {
  const field = fieldOf(key);
  if (!field) {
    if (CROSVM_ONLY_KEYS.includes(key)) throw new ConfigError(key, 'is a crosvm --block option that kvmkit does not support', whole);
    throw new ConfigError(key, `is not a --block option (valid keys: ${BLOCK_OPTION_KEYS.join(', ')})`, whole);
  }
  const before = seen.get(field);
  if (before !== undefined) throw new ConfigError(key, before === key ? 'is given twice' : `is given twice (also as ${before})`, whole);
  seen.set(field, key);
  return field;
}

function fieldOf(key: string): keyof VirtioBlockOptions | undefined {
  switch (key) {
    case 'path': return 'path';
    case 'ro': return 'ro';
    case 'root': return 'root';
    case 'sparse': return 'sparse';
    case 'direct':
    case 'o_direct': return 'directIo';
    case 'block-size':
    case 'block_size': return 'blockSize';
    case 'id': return 'id';
    default: return undefined;
  }
}

/** crosvm's `--help` text for `--block`: every key with its default, in crosvm's wording. */
export const BLOCK_OPTION_HELP = `parameters for setting up a block device (repeatable;
"kvmkit disk resize" counts them from 0 in order).
Valid keys:
    path=PATH - Path to the disk image. Can be specified
        without the key as the first argument.
    ro=BOOL - Whether the block should be read-only.
        (default: false)
    root=BOOL - Whether the block device should be mounted
        as the root filesystem. This will add the required
        parameters to the kernel command-line. Can only be
        specified once. (default: false)
    sparse=BOOL - Indicates whether the disk should support
        the discard operation. (default: true)
    block-size=BYTES - Set the reported block size of the
        disk (alias block_size). (default: 512)
    id=STRING - Set the block device identifier to an ASCII
        string, up to 20 characters. (default: no ID)
    direct=BOOL - Use O_DIRECT mode to bypass page cache
        (alias o_direct). (default: false)`;
