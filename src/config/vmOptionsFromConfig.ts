/**
 * A parsed configuration turned into `new VirtualMachine(...)` options: the devices are
 * constructed here (block devices open their images), in the order the configuration lists them.
 * @module
 */
import { ConfigError } from '../errors';
import { VirtioBlock } from '../devices/virtio/block/VirtioBlock';
import { VirtioBalloon } from '../devices/virtio/balloon/VirtioBalloon';
import type { VmDevice } from '../devices/VmDevice';
import type { VirtualMachineOptions } from '../vm/options';
import type { KvmkitConfig } from './KvmkitConfig';
import { parseConfig, type ConfigObject, type LoadConfigOptions } from './configFile';

/**
 * Options for `new VirtualMachine()` from a merged configuration. Block devices are opened here;
 * if one fails, those opened before it are closed again. As in crosvm, a virtio-balloon device
 * follows them unless `noBalloon` (`--no-balloon`) is set.
 * The serial console is not a VM option: the caller connects `serial` events as `config.serial` says.
 * @throws ConfigError when the kernel is missing or an option is not supported yet; DiskError for an image that cannot be opened
 */
export async function toVmOptions(config: KvmkitConfig): Promise<VirtualMachineOptions> {
  if (config.kernel === undefined) {
    throw new ConfigError('kernel', 'is required: give KERNEL on the command line, --kernel, or "kernel" in a --cfg file');
  }
  if (config.sharedDirs.length > 0) {
    // TODO(virtio-fs): construct `new VirtioFs(options)` here once src/devices/virtio/fs/ exists.
    throw new ConfigError('shared-dir', 'is not supported yet: kvmkit has no virtio-fs device yet', config.sharedDirs[0]!.sharedDir);
  }
  const devices: VmDevice[] = [];
  try {
    for (const b of config.block) devices.push(new VirtioBlock(b));
  } catch (e) {
    await Promise.all(devices.map((d) => (d as VirtioBlock).close()));
    throw e;
  }
  if (config.noBalloon !== true) devices.push(new VirtioBalloon());
  const options: VirtualMachineOptions = {
    kernel: config.kernel,
    params: config.params,
    devices,
    ...(config.initrd !== undefined && { initrd: config.initrd }),
    ...(config.cpus !== undefined && { cpus: config.cpus }),
    ...(config.mem !== undefined && { mem: config.mem }),
  };
  if (config.socket !== undefined) {
    // TODO(control socket): `socket` joins VirtualMachineOptions with src/control/; until it does it is
    // set without the type's help (a VirtualMachine without control-socket support ignores it).
    // The VM serves it and names it kvmkit-<pid>.sock when it is a directory, as crosvm does.
    Object.assign(options, { socket: config.socket });
  }
  return options;
}

/**
 * Options for `new VirtualMachine()` from an object written like a crosvm config file
 * (`{"kernel": "bzImage", "block": [{"path": "root.img", "root": true}], "cfg": ["base.json"]}`):
 * the object is validated, its includes read and merged, and its devices constructed.
 * @throws ConfigFileError naming the key and the rule; see {@link toVmOptions}
 */
export async function vmOptionsFromConfig(config: ConfigObject, options: LoadConfigOptions & { source?: string } = {}): Promise<VirtualMachineOptions> {
  return toVmOptions(parseConfig(config, options));
}
