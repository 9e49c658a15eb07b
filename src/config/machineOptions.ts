/**
 * crosvm's `--cpus` and `--mem` syntax: `--cpus 4` or `--cpus num-cores=4`, `--mem 512` or
 * `--mem size=512` (MiB), and the same values in config files (`"cpus": {"num-cores": 4}` or
 * `"cpus": 4`). The rules are the VM's own (`cpus must be an integer from 1 to 254`).
 * @module
 */
import { ConfigError } from '../errors';
import { MAX_CPUS, MAX_MEM_MIB, MIN_MEM_MIB } from '../vm/options';
import { splitKeyValues } from './blockOption';

/** The rule `cpus` follows, as the VM states it. */
export const CPUS_RULE = `must be an integer from 1 to ${MAX_CPUS}`;
/** The rule `mem` follows, as the VM states it. */
export const MEM_RULE = `must be an integer number of MiB from ${MIN_MEM_MIB} to ${MAX_MEM_MIB}`;

/** `value` as a vCPU count, or a ConfigError naming `option`. */
export function checkCpus(option: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > MAX_CPUS) throw new ConfigError(option, CPUS_RULE, value);
  return value;
}

/** `value` as guest RAM in MiB, or a ConfigError naming `option`. */
export function checkMem(option: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < MIN_MEM_MIB || value > MAX_MEM_MIB) throw new ConfigError(option, MEM_RULE, value);
  return value;
}

/**
 * Parse `--cpus`: `4` or `num-cores=4`.
 * @throws ConfigError (`cpus must be an integer from 1 to 254, got "x"`)
 */
export function parseCpusOption(text: string): number {
  return checkCpus('cpus', singleNumber(text, '--cpus', 'num-cores', CPUS_RULE, 'cpus'));
}

/**
 * Parse `--mem`: `512` or `size=512` (MiB).
 * @throws ConfigError (`mem must be an integer number of MiB from 16 to 1048576, got "lots"`)
 */
export function parseMemOption(text: string): number {
  return checkMem('mem', singleNumber(text, '--mem', 'size', MEM_RULE, 'mem'));
}

/** The one `key=N` (or bare N) item of `text` as a number; any other key is an error. */
function singleNumber(text: string, option: string, key: string, rule: string, name: string): number {
  const items = splitKeyValues(text, option, key, []);
  for (const it of items) {
    if (it.key !== key) throw new ConfigError(it.key, `is not a ${option} option (valid keys: ${key})`, text);
  }
  if (items.length !== 1) throw new ConfigError(key, 'is given twice', text);
  const v = items[0]!.value ?? '';
  if (!/^(0|[1-9][0-9]*)$/.test(v)) throw new ConfigError(name, rule, v);
  return Number(v);
}
