/**
 * A parsed configuration turned into `new VirtualMachine(...)` options: the devices are
 * constructed here (block devices open their images), in the order the configuration lists them.
 * @module
 */
import { ConfigError } from '../errors';
import { VirtioBlock } from '../devices/virtio/block/VirtioBlock';
import { VirtioBalloon } from '../devices/virtio/balloon/VirtioBalloon';
import { VirtioFs } from '../devices/virtio/fs/VirtioFs';
import type { VirtioDevice } from '../devices/virtio/VirtioDevice';
import type { VirtualMachineOptions } from '../vm/options';
import type { KvmkitConfig } from './KvmkitConfig';
import { parseConfig, type ConfigObject, type LoadConfigOptions } from './configFile';

/**
 * Options for `new VirtualMachine()` from a merged configuration. Block devices open their images
 * and virtio-fs devices their directories here; if one fails, those opened before it are closed
 * again. Devices come in this order: block devices (so disk indexes and /dev/vdX follow `block`),
 * shared directories, then, as in crosvm, a virtio-balloon unless `noBalloon` (`--no-balloon`).
 * The serial console is not a VM option: the caller connects `serial` events as `config.serial` says.
 * @throws ConfigError when the kernel is missing or a shared directory cannot be opened; DiskError for an image that cannot be opened
 */
export async function toVmOptions(config: KvmkitConfig): Promise<VirtualMachineOptions> {
  if (config.kernel === undefined) {
    throw new ConfigError('kernel', 'is required: give KERNEL on the command line, --kernel, or "kernel" in a --cfg file');
  }
  const devices: VirtioDevice[] = [];
  try {
    for (const b of config.block) devices.push(new VirtioBlock(b));
    for (const s of config.sharedDirs) devices.push(new VirtioFs(s));
  } catch (e) {
    await Promise.all(devices.map((d) => d.close()));
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
    // the VM serves it, naming it kvmkit-<pid>.sock inside a directory as crosvm does
    ...(config.socket !== undefined && { socket: config.socket }),
  };
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
