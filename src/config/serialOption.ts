/**
 * crosvm's `--serial` syntax, for kvmkit's one serial port (COM1, the guest's `console=ttyS0`):
 * `--serial type=stdout,stdin=true` on the command line, `"serial": [{"type": "stdout", "stdin": true}]`
 * in a config file. Output goes to this process's stdout, a file, or nowhere (`sink`); `stdin`
 * types this process's standard input into the guest console.
 * @module
 */
import { ConfigError } from '../errors';
import { splitKeyValues } from './blockOption';

/** Where the guest console's output goes. */
export type SerialType = 'stdout' | 'file' | 'sink';

/** A parsed `--serial`. */
export interface SerialOptions {
  /** Where output goes (default `stdout`). */
  type: SerialType;
  /** The output file, for `type=file` (appended to, as crosvm does). */
  path?: string;
  /** Type standard input into the guest console (default true: crosvm gives stdin to the first serial port). */
  stdin: boolean;
}

/** The serial kvmkit uses when no `--serial` is given: console on stdout, stdin typed into it. */
export const DEFAULT_SERIAL: Readonly<SerialOptions> = { type: 'stdout', stdin: true };

/** The keys kvmkit implements. */
export const SERIAL_OPTION_KEYS = ['type', 'path', 'stdin', 'console', 'hardware', 'num'] as const;

/** crosvm `--serial` keys kvmkit does not implement. */
const CROSVM_ONLY_KEYS = ['input', 'input-unix-stream', 'earlycon', 'out_timestamp', 'out-timestamp', 'debugcon_port', 'debugcon-port', 'pci-address', 'max-queue-sizes'];
const CROSVM_ONLY_TYPES = ['syslog', 'unix', 'unix-stream', 'namedpipe'];

/** crosvm's `--help` text for `--serial`, limited to what kvmkit implements, with defaults. */
export const SERIAL_OPTION_HELP = `the guest's serial console (COM1, console=ttyS0).
A bare --serial means type=stdout.
Valid keys:
    type=(stdout, file, sink) - Where the guest's console output
        goes; sink drops it. (default: stdout)
    path=PATH - The file for type=file (appended to).
    stdin=BOOL - Type standard input into the guest console.
        (default: true)
    hardware=serial, num=1, console=true - accepted for crosvm
        compatibility: kvmkit has this one console port.`;

/**
 * Parse a `--serial` value; an empty string is a bare `--serial` (stdout).
 * @throws ConfigError naming the key and its rule, e.g. `type must be stdout, file or sink, got "tty"`
 */
export function parseSerialOption(text: string): SerialOptions {
  if (typeof text !== 'string') throw new ConfigError('serial', 'must be a string of key=value items', text);
  if (text === '') return { ...DEFAULT_SERIAL };
  const items = splitKeyValues(text, '--serial', 'type', ['stdin', 'console']);
  const entries: [string, string | boolean | undefined][] = items.map(({ key, value }) => [key, value]);
  return serialFromEntries(entries, text, true);
}

/**
 * A `serial` entry of a JSON config file in object form, as crosvm's config files write it:
 * `{"type": "stdout", "stdin": true}` (booleans as JSON booleans, `num` as a number).
 * @throws ConfigError naming the key and its rule
 */
export function parseSerialObject(entry: Readonly<Record<string, unknown>>): SerialOptions {
  if (entry === null || typeof entry !== 'object' || Array.isArray(entry)) throw new ConfigError('serial', 'entries must be objects or --serial strings', entry);
  return serialFromEntries(Object.entries(entry), entry, false);
}

function serialFromEntries(entries: [string, unknown][], whole: unknown, fromText: boolean): SerialOptions {
  const out: SerialOptions = { ...DEFAULT_SERIAL };
  const seen = new Set<string>();
  const bool = (key: string, v: unknown): boolean => {
    if (typeof v === 'boolean') return v;
    if (fromText && (v === undefined || v === 'true')) return true;
    if (fromText && v === 'false') return false;
    throw new ConfigError(key, 'must be true or false', v ?? '');
  };
  for (const [key, value] of entries) {
    if (!(SERIAL_OPTION_KEYS as readonly string[]).includes(key)) {
      if (CROSVM_ONLY_KEYS.includes(key)) throw new ConfigError(key, 'is a crosvm --serial option that kvmkit does not support', whole);
      throw new ConfigError(key, `is not a --serial option (valid keys: ${SERIAL_OPTION_KEYS.join(', ')})`, whole);
    }
    if (seen.has(key)) throw new ConfigError(key, 'is given twice', whole);
    seen.add(key);
    switch (key) {
      case 'type':
        if (value === 'stdout' || value === 'file' || value === 'sink') out.type = value;
        else if (typeof value === 'string' && CROSVM_ONLY_TYPES.includes(value)) throw new ConfigError('type', 'is a crosvm serial type that kvmkit does not support (use stdout, file or sink)', value);
        else throw new ConfigError('type', 'must be stdout, file or sink', value ?? '');
        break;
      case 'path':
        if (typeof value !== 'string' || value === '') throw new ConfigError('path', 'must be the path of the output file', value ?? '');
        out.path = value;
        break;
      case 'stdin':
        out.stdin = bool(key, value);
        break;
      case 'console':
        if (!bool(key, value)) throw new ConfigError('console', 'must be true: kvmkit\'s one serial port is the guest console', value);
        break;
      case 'hardware':
        if (value !== 'serial') throw new ConfigError('hardware', 'must be serial (kvmkit emulates one 8250 UART)', value ?? '');
        break;
      case 'num':
        if (value !== 1 && !(fromText && value === '1')) throw new ConfigError('num', 'must be 1 (kvmkit has one serial port, COM1)', value ?? '');
        break;
    }
  }
  if (out.type === 'file' && out.path === undefined) throw new ConfigError('path', 'is required with type=file', whole);
  if (out.type !== 'file' && out.path !== undefined) throw new ConfigError('path', 'is only for type=file', whole);
  return out;
}
