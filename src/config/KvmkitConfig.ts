/**
 * A machine described the crosvm way, after parsing: what config files and the command line
 * produce, and how two of them combine (crosvm's merge rules).
 * @module
 */
import type { VirtioBlockOptions } from '../devices/virtio/block/VirtioBlockOptions';
import type { SerialOptions } from './serialOption';
import type { SharedDirOptions } from './sharedDirOption';

/**
 * One parsed configuration (a file, the command line, or several merged). Once-only options are
 * undefined when not given; repeatable ones are lists (empty when not given).
 */
export interface KvmkitConfig {
  /** Guest kernel (`kernel`, the KERNEL argument or `--kernel`). */
  kernel?: string;
  /** Initrd (`initrd`, `--initrd`/`-i`). */
  initrd?: string;
  /** vCPUs (`cpus`, `--cpus`/`-c`). */
  cpus?: number;
  /** Guest RAM in MiB (`mem`, `--mem`/`-m`). */
  mem?: number;
  /** Control socket path (`socket`, `--socket`/`-s`); a directory gets `kvmkit-<pid>.sock` in it. */
  socket?: string;
  /** The serial console (`serial`, `--serial`). */
  serial?: SerialOptions;
  /** Leave out the virtio-balloon device crosvm (and kvmkit) add by default (`no-balloon`, `--no-balloon`). */
  noBalloon?: boolean;
  /** Kernel command line pieces (`params`, `--params`/`-p`), repeatable. */
  params: string[];
  /** Block devices in order (`block`, `--block`/`-b`), repeatable. */
  block: VirtioBlockOptions[];
  /** virtio-fs shared directories (`shared-dir`, `--shared-dir`), repeatable. */
  sharedDirs: SharedDirOptions[];
}

/** The options that can be given once: a later value replaces an earlier one. */
export const ONCE_ONLY_OPTIONS = ['kernel', 'initrd', 'cpus', 'mem', 'socket', 'serial', 'noBalloon'] as const;

/** A configuration with nothing set. */
export function emptyConfig(): KvmkitConfig {
  return { params: [], block: [], sharedDirs: [] };
}

/**
 * crosvm's merge: `later`'s once-only options replace `earlier`'s, its repeatable options
 * (params, block devices, shared directories) are appended after `earlier`'s.
 */
export function mergeConfig(earlier: KvmkitConfig, later: KvmkitConfig): KvmkitConfig {
  const out: KvmkitConfig = {
    ...earlier,
    params: [...earlier.params, ...later.params],
    block: [...earlier.block, ...later.block],
    sharedDirs: [...earlier.sharedDirs, ...later.sharedDirs],
  };
  for (const key of ONCE_ONLY_OPTIONS) {
    if (later[key] !== undefined) (out as unknown as Record<string, unknown>)[key] = later[key];
  }
  return out;
}
