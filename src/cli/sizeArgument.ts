/**
 * Byte counts on the command line (`kvmkit balloon SIZE`, `kvmkit disk resize INDEX SIZE`).
 * crosvm takes plain bytes; kvmkit also accepts binary suffixes (`64M` = 64 MiB), as `truncate -s` does.
 * @module
 */
import { ConfigError } from '../errors';

const SUFFIX: Record<string, number> = { '': 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 };

/**
 * Parse `4096`, `64M`, `2G` (K/M/G/T are powers of 1024, optionally written KiB/MiB/GiB/TiB).
 * @throws ConfigError naming `what` (`SIZE must be a number of bytes, optionally with K, M, G or T, got "lots"`)
 */
export function parseByteSize(what: string, text: string): number {
  const m = /^(0|[1-9][0-9]*)(?:([KMGT])(?:iB)?)?$/i.exec(text.trim());
  const n = m ? Number(m[1]) * SUFFIX[(m[2] ?? '').toUpperCase()]! : NaN;
  if (!Number.isSafeInteger(n)) throw new ConfigError(what, 'must be a number of bytes, optionally with K, M, G or T (powers of 1024)', text);
  return n;
}

/**
 * Parse a 0-based index (`kvmkit disk resize INDEX`).
 * @throws ConfigError naming `what`
 */
export function parseIndex(what: string, text: string): number {
  if (!/^(0|[1-9][0-9]*)$/.test(text) || !Number.isSafeInteger(Number(text))) throw new ConfigError(what, 'must be a 0-based index (0, 1, ...)', text);
  return Number(text);
}
