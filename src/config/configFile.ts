/**
 * JSON config files, as crosvm documents them ("Options and Configuration Files"): the keys are
 * the command line's option names, `cfg` includes other files (applied first, so the including
 * file wins), and files given with several `--cfg` merge in order: a later file replaces once-only
 * options and extends repeatable ones. The object is validated with a zod schema; every error
 * names the file, the key and the rule (`vm.json: mem must be an integer number of MiB from 16 to
 * 1048576, got "x"`). As in crosvm, relative paths (includes, kernel, disks) are relative to the
 * current directory, not to the file.
 * @module
 */
import { readFileSync, realpathSync } from 'node:fs';
import { resolve } from 'node:path';
import { z } from 'zod';
import { ConfigError } from '../errors';
import { parseBlockObject, parseBlockOption } from './blockOption';
import { ConfigFileError } from './ConfigFileError';
import { emptyConfig, mergeConfig, type KvmkitConfig } from './KvmkitConfig';
import { checkCpus, checkMem } from './machineOptions';
import { parseSerialObject, parseSerialOption, type SerialOptions } from './serialOption';
import { parseSharedDirOption } from './sharedDirOption';

/** A `block` entry in object form (crosvm's `DiskOption` keys). */
export interface BlockConfigEntry {
  path: string;
  ro?: boolean;
  root?: boolean;
  sparse?: boolean;
  direct?: boolean;
  o_direct?: boolean;
  'block-size'?: number;
  block_size?: number;
  id?: string;
}

/** A `serial` entry in object form (crosvm's `SerialParameters` keys kvmkit implements). */
export interface SerialConfigEntry {
  type?: 'stdout' | 'file' | 'sink';
  path?: string;
  stdin?: boolean;
  console?: boolean;
  hardware?: 'serial';
  num?: 1;
}

/**
 * What a config file holds (and what the API accepts as the same object). Each value may also be
 * written as the command line writes it: `"block": ["home.img,ro"]`, `"cpus": 4`.
 */
export interface ConfigObject {
  kernel?: string;
  initrd?: string;
  /** vCPUs: `4` or crosvm's `{"num-cores": 4}`. */
  cpus?: number | { 'num-cores': number };
  /** MiB: `512` or crosvm's `{"size": 512}`. */
  mem?: number | { size: number };
  params?: string | string[];
  block?: (string | BlockConfigEntry)[];
  socket?: string;
  /** crosvm writes a list of serial ports; kvmkit has one, so at most one entry. */
  serial?: string | SerialConfigEntry | (string | SerialConfigEntry)[];
  /** `PATH:TAG:type=fs[:cache=auto][:timeout=5][:writeback=false]`, repeatable. */
  'shared-dir'?: string | string[];
  /** Leave out the virtio-balloon device that is there by default, as in crosvm. */
  'no-balloon'?: boolean;
  /** Files to include first; their options are overridden by this object's. */
  cfg?: string | string[];
}

/** Every key a config file may hold. */
export const CONFIG_KEYS = ['kernel', 'initrd', 'cpus', 'mem', 'params', 'block', 'socket', 'serial', 'shared-dir', 'no-balloon', 'cfg'] as const;

/** crosvm `run` options kvmkit does not implement: named as such in errors rather than as typos. */
const CROSVM_ONLY_KEYS = [
  'acpi-table', 'android-fstab', 'balloon-bias-mib', 'balloon-control', 'balloon-page-reporting', 'balloon-ws-reporting', 'battery',
  'bios', 'boost-uclamp', 'cid', 'core-scheduling', 'cpu-affinity', 'cpu-capacity', 'cpu-cluster', 'delay-rt', 'disable-sandbox',
  'disk', 'rwdisk', 'root', 'rwroot', 'dmi', 'dump-device-tree-blob', 'fdt-position', 'file-backed-mapping', 'force-calibrated-tsc-leaf',
  'fw-cfg', 'gdb', 'gpu', 'gpu-display', 'host-cpu-topology', 'host-ip', 'hugepages', 'hypervisor', 'init-mem', 'input', 'irqchip',
  'itmt', 'keyboard', 'mac', 'mmio-address-range', 'mouse', 'multi-touch', 'name', 'net', 'netmask', 'no-i8042',
  'no-rng', 'no-rtc', 'no-smt', 'no-usb', 'oem-strings', 'pci-hotplug-slots', 'pcie-root-port', 'pflash', 'plugin', 'pmem',
  'pmem-device', 'protected-vm', 'pstore', 'pvclock', 'restore', 'rng', 'rt-cpus', 'rw-pmem-device', 'scsi-block', 'single-touch',
  'smbios', 'sound', 'split-irqchip', 'suspended', 'swap', 'switches', 'tap-fd', 'tap-name', 'trackpad', 'unmap-guest-memory-on-fork',
  'usb', 'userspace-msr', 'vcpu-cgroup-path', 'vfio', 'vhost-net', 'vhost-user', 'vhost-vsock-device', 'virt-cpufreq', 'virtio-snd',
  'vsock', 'wayland-sock', 'x-display',
];

/** How to read config files. */
export interface LoadConfigOptions {
  /** Directory relative `--cfg` and `cfg` paths are read from (default: the current directory, as crosvm). */
  cwd?: string;
}

/**
 * Read config files in order and merge them (a later file replaces once-only options and extends
 * repeatable ones); each file's `cfg` includes are applied before the file itself.
 * @throws ConfigFileError naming the file, the key and the rule
 */
export function loadConfigFiles(paths: readonly string[], options: LoadConfigOptions = {}): KvmkitConfig {
  const cwd = options.cwd ?? process.cwd();
  return paths.reduce((merged, p) => mergeConfig(merged, loadFile(p, p, [], cwd)), emptyConfig());
}

/**
 * Validate an object written like a config file (its `cfg` includes are read from disk).
 * @param source how errors name the object (default `config`)
 * @throws ConfigFileError naming the source, the key and the rule
 */
export function parseConfig(object: unknown, options: LoadConfigOptions & { source?: string } = {}): KvmkitConfig {
  return fromObject(object, options.source ?? 'config', [], options.cwd ?? process.cwd());
}

/** One file with its includes; `chain` holds the real paths of the files including it. */
function loadFile(path: string, display: string, chain: readonly string[], cwd: string): KvmkitConfig {
  const full = resolve(cwd, path);
  let text: string;
  let real: string;
  try {
    real = realpathSync(full);
    text = readFileSync(real, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const rule = code === 'ENOENT' ? `does not exist (${full})` : `cannot be read: ${(e as Error).message}`;
    throw new ConfigFileError(display, '', rule, undefined, { cause: e });
  }
  if (chain.includes(real)) {
    throw new ConfigFileError(display, 'cfg', `includes form a cycle (${[...chain, real].join(' -> ')}): a file cannot include itself`);
  }
  let object: unknown;
  try {
    object = JSON.parse(text);
  } catch (e) {
    throw new ConfigFileError(display, '', `is not valid JSON: ${(e as Error).message}`, undefined, { cause: e });
  }
  return fromObject(object, display, [...chain, real], cwd);
}

function fromObject(object: unknown, display: string, chain: readonly string[], cwd: string): KvmkitConfig {
  if (object === null || typeof object !== 'object' || Array.isArray(object)) {
    throw new ConfigFileError(display, '', 'must hold a JSON object of options ({"kernel": "bzImage", ...})', object);
  }
  const parsed = fileSchema.safeParse(object);
  if (!parsed.success) throw issueToError(parsed.error.issues[0]!, object, display);
  const { cfg, ...own } = parsed.data;
  let merged = emptyConfig();
  for (const include of cfg ?? []) {
    merged = mergeConfig(merged, loadFile(include, `${include} (included from ${display})`, chain, cwd));
  }
  const layer: KvmkitConfig = {
    kernel: own.kernel,
    initrd: own.initrd,
    cpus: own.cpus,
    mem: own.mem,
    socket: own.socket,
    serial: own.serial,
    noBalloon: own['no-balloon'],
    params: own.params ?? [],
    block: own.block ?? [],
    sharedDirs: own['shared-dir'] ?? [],
  };
  return mergeConfig(merged, layer);
}

// ---- the schema -------------------------------------------------------------------------------

/**
 * A value checked by one of the option parsers the command line uses (so both report the same
 * rule); their ConfigError becomes an issue at `key`, or at `key.<sub-key>` when it names one.
 */
function checkedBy<T>(key: string, check: (v: unknown) => T) {
  return z.unknown().transform((v, ctx): T => {
    try {
      return check(v);
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      const sub = e.option === key || e.option.startsWith('--') || e.option === '' ? [] : [e.option];
      ctx.issues.push({ code: 'custom', message: e.rule, path: sub, input: v, params: { value: e.value, hasValue: e.value !== undefined } });
      return z.NEVER;
    }
  });
}

/** A list of entries, each checked by `check`; a single entry may stand alone (crosvm writes lists). */
function listOf<T>(key: string, check: (v: unknown) => T, rule: string) {
  return z
    .union([z.array(z.unknown()), z.string(), z.record(z.string(), z.unknown())], { error: rule })
    .transform((v) => (Array.isArray(v) ? v : [v]))
    .pipe(z.array(checkedBy(key, check)));
}

const cfgPath = z.string({ error: 'must be a config file path' }).min(1, { error: 'must be a config file path' });
const path = (rule: string) => z.string({ error: rule }).min(1, { error: rule });

const asRecord = (v: unknown, what: string): Record<string, unknown> => {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new ConfigError('', what, v);
  return v as Record<string, unknown>;
};

/** `4` or `{"num-cores": 4}` (crosvm's CpuOptions). */
function cpusValue(v: unknown): number {
  if (typeof v !== 'object' || v === null) return checkCpus('cpus', v);
  const o = asRecord(v, 'must be a number of vCPUs or {"num-cores": N}');
  for (const k of Object.keys(o)) {
    if (k !== 'num-cores') throw new ConfigError(k, k === 'clusters' || k === 'core-types' || k === 'boot-cpu' || k === 'freq-domains' ? 'is a crosvm cpus option that kvmkit does not support' : 'is not a cpus option (valid keys: num-cores)', o[k]);
  }
  if (!('num-cores' in o)) throw new ConfigError('num-cores', 'is required in the object form of cpus', o);
  return checkCpus('num-cores', o['num-cores']);
}

/** `512` or `{"size": 512}` (crosvm's MemOptions, MiB). */
function memValue(v: unknown): number {
  if (typeof v !== 'object' || v === null) return checkMem('mem', v);
  const o = asRecord(v, 'must be a number of MiB or {"size": N}');
  for (const k of Object.keys(o)) if (k !== 'size') throw new ConfigError(k, 'is not a mem option (valid keys: size)', o[k]);
  if (!('size' in o)) throw new ConfigError('size', 'is required in the object form of mem', o);
  return checkMem('size', o.size);
}

const blockEntry = (v: unknown) => (typeof v === 'string' ? parseBlockOption(v) : parseBlockObject(asRecord(v, 'entries must be objects ({"path": "disk.img", ...}) or --block strings')));
const serialEntry = (v: unknown): SerialOptions => (typeof v === 'string' ? parseSerialOption(v) : parseSerialObject(asRecord(v, 'must be an object ({"type": "stdout"}) or a --serial string')));
const sharedDirEntry = (v: unknown) => parseSharedDirOption(v as string);

const fileSchema = z.strictObject({
  kernel: path('must be the path of the guest kernel (a bzImage on x86_64)').optional(),
  initrd: path('must be the path of an initrd file').optional(),
  cpus: checkedBy('cpus', cpusValue).optional(),
  mem: checkedBy('mem', memValue).optional(),
  params: z
    .union([z.string(), z.array(z.string())], { error: 'must be a string or an array of strings (kernel command line pieces)' })
    .transform((v) => (typeof v === 'string' ? [v] : v))
    .optional(),
  block: listOf('block', blockEntry, 'must be an array of block devices (objects like {"path": "disk.img", "ro": true} or --block strings)').optional(),
  socket: path('must be the path of the control socket (or of a directory for it)').optional(),
  serial: listOf('serial', serialEntry, 'must be a list of one serial port ({"type": "stdout"} or a --serial string)')
    .refine((l) => l.length <= 1, { error: 'lists more than one serial port: kvmkit has one (COM1)' })
    .transform((l) => l[0])
    .optional(),
  'shared-dir': z
    .union([z.string(), z.array(z.string())], { error: 'must be a string PATH:TAG:type=fs[:key=value...] or an array of them' })
    .transform((v): unknown[] => (typeof v === 'string' ? [v] : v))
    .pipe(z.array(checkedBy('shared-dir', sharedDirEntry)))
    .optional(),
  'no-balloon': z.boolean({ error: 'must be true or false' }).optional(),
  cfg: z
    .union([cfgPath, z.array(cfgPath)], { error: 'must be a config file path or an array of them' })
    .transform((v) => (typeof v === 'string' ? [v] : v))
    .optional(),
});

/** `["block", 1, "ro"]` → `block[1].ro`. */
function keyPath(path: readonly PropertyKey[]): string {
  return path.reduce<string>((s, k) => (typeof k === 'number' ? `${s}[${k}]` : s === '' ? String(k) : `${s}.${String(k)}`), '');
}

function valueAt(object: unknown, path: readonly PropertyKey[]): unknown {
  let v = object;
  for (const k of path) v = v !== null && typeof v === 'object' ? (v as Record<PropertyKey, unknown>)[k] : undefined;
  return v;
}

function issueToError(issue: z.core.$ZodIssue, object: unknown, display: string): ConfigFileError {
  if (issue.code === 'unrecognized_keys') {
    const key = issue.keys[0]!;
    const where = keyPath([...issue.path, key]);
    if (issue.path.length === 0 && CROSVM_ONLY_KEYS.includes(key)) return new ConfigFileError(display, where, 'is a crosvm option that kvmkit does not support');
    const hint = CONFIG_KEYS.find((k) => k.replace(/[-_]/g, '') === key.replace(/[-_]/g, '').toLowerCase());
    return new ConfigFileError(display, where, `is not a kvmkit config option${hint ? ` (did you mean ${hint}?)` : ''} (valid keys: ${CONFIG_KEYS.join(', ')})`);
  }
  const params = (issue as { params?: { value?: unknown; hasValue?: boolean } }).params;
  if (issue.code === 'custom' && params) {
    return new ConfigFileError(display, keyPath(issue.path), issue.message, params.hasValue ? params.value : undefined);
  }
  return new ConfigFileError(display, keyPath(issue.path), issue.message, valueAt(object, issue.path));
}
