/**
 * VirtualMachine options and their validation. Every rule is checked before anything starts, and
 * a broken rule is a {@link ConfigError} naming the option and the rule.
 * @module
 */
import type { ArchName } from '../arch/ArchLayout';
import { ConfigError } from '../errors';
import type { VmDevice } from '../devices/VmDevice';
import { rootDiskParams } from './rootDisk';

/** What a user passes to `new VirtualMachine(...)`. Defaults follow crosvm (1 vCPU, 256 MiB). */
export interface VirtualMachineOptions {
  /** Path of the kernel: a bzImage on x86_64. */
  kernel: string;
  /** Path of an initrd / initramfs image. */
  initrd?: string;
  /** Extra kernel command line, appended after kvmkit's own (`console=ttyS0 reboot=k panic=-1`). */
  params?: string | string[];
  /** Number of vCPUs, 1..254 (default 1). */
  cpus?: number;
  /** Guest RAM in MiB, >= 16 (default 256). */
  mem?: number;
  /**
   * Virtio devices, in order: they appear on PCI bus 0 at slots 1, 2, … (00:01.0, 00:02.0, …), and
   * block devices as /dev/vda, /dev/vdb, … in the order given. A block device with `root: true`
   * adds `root=/dev/vdX ro|rw` to the command line (at most one).
   */
  devices?: VmDevice[];
  /** Guest architecture (default: the host's). A layout the host cannot run fails at `start()`. */
  arch?: ArchName;
  /**
   * On a paravirtual (PVM) host, append `mitigations=off nowatchdog tsc=reliable` to the command line
   * (DESIGN.md). Default true; has no effect on hardware KVM.
   */
  pvmTuning?: boolean;
  /**
   * Path of a control socket to serve while the VM runs (like crosvm's `--socket`): JSON requests
   * `stop`, `suspend`, `resume`, `status`, `balloon`, `balloon_stats`, `disk_resize` (src/control).
   * An existing directory gets `kvmkit-<pid>.sock` inside it. Created with mode 0600 at `start()`
   * (which fails if a live server answers there; a stale socket file is replaced) and removed when
   * the VM ends.
   */
  socket?: string;
}

/** Options after validation, with defaults applied. */
export interface ResolvedOptions {
  kernel: string;
  initrd?: string;
  params: string[];
  cpus: number;
  mem: number;
  devices: VmDevice[];
  arch: ArchName;
  pvmTuning: boolean;
  socket?: string;
}

/** Most vCPUs: APIC ids are 8-bit in the MP table and MADT entries kvmkit builds (0xFF is broadcast). */
export const MAX_CPUS = 254;
/** Least guest RAM in MiB: the kernel, boot data and initrd need room below the MMIO hole. */
export const MIN_MEM_MIB = 16;
/** Most guest RAM in MiB (1 TiB). */
export const MAX_MEM_MIB = 1 << 20;

/** The host's architecture as a kvmkit ArchName, or undefined. */
export function hostArch(): ArchName | undefined {
  if (process.arch === 'x64') return 'x86_64';
  if (process.arch === 'arm64') return 'aarch64';
  return undefined;
}

/** Check every option; throws {@link ConfigError} on the first broken rule. */
export function resolveOptions(o: VirtualMachineOptions): ResolvedOptions {
  if (o === null || typeof o !== 'object') throw new ConfigError('options', 'must be an object', o);
  if (typeof o.kernel !== 'string' || o.kernel.length === 0) {
    throw new ConfigError('kernel', 'is required: the path of the guest kernel (a bzImage on x86_64)', o.kernel);
  }
  if (o.initrd !== undefined && (typeof o.initrd !== 'string' || o.initrd.length === 0)) {
    throw new ConfigError('initrd', 'must be the path of an initrd file', o.initrd);
  }
  const cpus = o.cpus ?? 1;
  if (!Number.isInteger(cpus) || cpus < 1 || cpus > MAX_CPUS) {
    throw new ConfigError('cpus', `must be an integer from 1 to ${MAX_CPUS}`, o.cpus);
  }
  const mem = o.mem ?? 256;
  if (!Number.isInteger(mem) || mem < MIN_MEM_MIB || mem > MAX_MEM_MIB) {
    throw new ConfigError('mem', `must be an integer number of MiB from ${MIN_MEM_MIB} to ${MAX_MEM_MIB}`, o.mem);
  }
  let params: string[];
  if (o.params === undefined) params = [];
  else if (typeof o.params === 'string') params = o.params.split(/\s+/).filter(Boolean);
  else if (Array.isArray(o.params) && o.params.every((p) => typeof p === 'string')) params = o.params.flatMap((p) => p.split(/\s+/).filter(Boolean));
  else throw new ConfigError('params', 'must be a string or an array of strings', o.params);
  const devices = o.devices ?? [];
  if (!Array.isArray(devices)) throw new ConfigError('devices', 'must be an array of kvmkit devices', o.devices);
  devices.forEach((d, i) => {
    if (d === null || typeof d !== 'object' || typeof (d as VmDevice).deviceKind !== 'string') {
      throw new ConfigError(`devices[${i}]`, 'must be a kvmkit device object (e.g. new VirtioBlock({...}))', d);
    }
  });
  // root=/dev/vdX ro|rw for the block device marked `root` (more than one is an error)
  params = [...rootDiskParams(devices), ...params];
  const arch = o.arch ?? hostArch();
  if (arch !== 'x86_64' && arch !== 'aarch64') {
    throw new ConfigError('arch', 'must be "x86_64" or "aarch64"', o.arch ?? process.arch);
  }
  if (o.pvmTuning !== undefined && typeof o.pvmTuning !== 'boolean') throw new ConfigError('pvmTuning', 'must be a boolean', o.pvmTuning);
  if (o.socket !== undefined && (typeof o.socket !== 'string' || o.socket.length === 0 || o.socket.includes('\0'))) {
    throw new ConfigError('socket', 'must be the path of a Unix socket (or of a directory to create kvmkit-<pid>.sock in)', o.socket);
  }
  return { kernel: o.kernel, initrd: o.initrd, params, cpus, mem, devices, arch, pvmTuning: o.pvmTuning ?? true, socket: o.socket };
}
