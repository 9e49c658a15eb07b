/**
 * `VirtualMachine.status()`: a plain-data snapshot of a machine (state, size, uptime, devices),
 * what the control socket's `status` command answers.
 * @module
 */
import type { VmDevice } from '../devices/VmDevice';
import { VirtioBlock } from '../devices/virtio/block/VirtioBlock';

/** One device of a VM, in the order given (= PCI slot order). */
export interface VmDeviceStatus {
  /** `virtio-blk`, `virtio-rng`, … */
  kind: string;
  /** PCI address on bus 0, `00:01.0`. */
  pci: string;
  /** For block devices: the disk's place among the block devices (the `index` of `resizeDisk`). */
  disk?: number;
  /** For block devices: the image file. */
  path?: string;
  /** For block devices: size in bytes. */
  bytes?: number;
  /** For block devices: size in 512-byte sectors (virtio-blk `capacity`). */
  capacity?: number;
  /** For block devices: logical block size. */
  blockSize?: number;
  /** For block devices: read-only. */
  readOnly?: boolean;
}

/** What `VirtualMachine.status()` returns. */
export interface VmStatus {
  state: string;
  cpus: number;
  /** Guest RAM in MiB. */
  mem: number;
  /** Milliseconds since the guest started running (0 before, frozen after it ended). */
  uptimeMs: number;
  devices: VmDeviceStatus[];
}

/** The PCI address of the device at `slot` on bus 0. */
export function pciAddress(slot: number): string {
  return `00:${slot.toString(16).padStart(2, '0')}.0`;
}

/** Describe `devices` (slots 1, 2, … in order, as the VM places them). */
export function deviceStatus(devices: readonly VmDevice[]): VmDeviceStatus[] {
  let disks = 0;
  return devices.map((d, i) => {
    const s: VmDeviceStatus = { kind: d.deviceKind, pci: pciAddress(i + 1) };
    if (d instanceof VirtioBlock) {
      Object.assign(s, { disk: disks++, path: d.path, bytes: d.disk.size, capacity: d.capacity, blockSize: d.blockSize, readOnly: d.readOnly });
    }
    return s;
  });
}
