/**
 * The `root` option of block devices: which disk is the guest's root file system, and the
 * `root=/dev/vdX ro|rw` kernel parameter that names it (crosvm `--block ...,root`).
 * @module
 */
import type { VmDevice } from '../devices/VmDevice';
import { ConfigError } from '../errors';

/** What the VM needs to know of a block device to name it. */
interface BlockLike extends VmDevice {
  readonly deviceKind: 'virtio-blk';
  readonly root: boolean;
  readonly readOnly: boolean;
}

function isBlock(d: VmDevice): d is BlockLike {
  return d.deviceKind === 'virtio-blk';
}

/**
 * Linux's name for the `index`-th virtio disk (0-based, in probe order): vda … vdz, vdaa … vdzz,
 * vdaaa … (drivers/block/virtio_blk.c, virtblk_name_format).
 */
export function virtioDiskName(index: number): string {
  if (!Number.isInteger(index) || index < 0) throw new RangeError(`disk index must be an integer >= 0, got ${index}`);
  let name = '';
  let n = index;
  do {
    name = String.fromCharCode(97 + (n % 26)) + name;
    n = Math.floor(n / 26) - 1;
  } while (n >= 0);
  return `vd${name}`;
}

/**
 * The kernel parameters for the root disk among `devices`: `['root=/dev/vdX', 'ro'|'rw']`, or
 * none. Block devices are named in the order given (the guest probes PCI slots in order).
 * @throws ConfigError when more than one block device has `root`
 */
export function rootDiskParams(devices: readonly VmDevice[]): string[] {
  const disks = devices.filter(isBlock);
  const roots = disks.map((d, i) => ({ d, i })).filter(({ d }) => d.root);
  if (roots.length > 1) {
    throw new ConfigError('root', `may be set on one block device only, got ${roots.length} (disks ${roots.map(({ i }) => virtioDiskName(i)).join(', ')})`, roots.length);
  }
  const [root] = roots;
  if (!root) return [];
  return [`root=/dev/${virtioDiskName(root.i)}`, root.d.readOnly ? 'ro' : 'rw'];
}
