/**
 * PCI bus 0: up to 32 devices × 8 functions, each a {@link PciDevice}. The root complex's config
 * routing, like crosvm's `devices/src/pci/pci_root.rs`; the config access mechanisms
 * (`PciConfigIo`, later ECAM) sit in front of it.
 * @module
 */

import { ConfigError } from '../../errors';
import {
  type PciAddress,
  type PciDevice,
  PCI_DEVICES_PER_BUS,
  PCI_FUNCTIONS_PER_DEVICE,
  PCIE_CONFIG_DWORDS,
  formatPciAddress,
} from './PciDevice';

/** What an absent function reads: all ones (the host bridge's master abort, PCI 3.0 §6.1). */
const ABSENT = 0xffffffff;

/** A device added to the root, with its address. */
export interface PciRootEntry {
  readonly address: PciAddress;
  readonly device: PciDevice;
}

/**
 * PCI bus 0. Accesses to other buses, to empty slots and to absent functions read 0xFFFFFFFF and
 * drop writes, which is how the guest learns there is no device there.
 */
export class PciRoot {
  /** Functions indexed by `device * 8 + function`. */
  readonly #functions: (PciDevice | undefined)[] = new Array(PCI_DEVICES_PER_BUS * PCI_FUNCTIONS_PER_DEVICE);

  /**
   * Add a function at `at` (default: function 0 of the lowest free device number).
   * @returns the address it was given.
   * @throws {@link ConfigError} when the address is out of range or already taken, or when no
   *   device number is free.
   */
  add(device: PciDevice, at?: { device: number; function?: number }): PciAddress {
    let address: PciAddress;
    if (at) {
      const fn = at.function ?? 0;
      if (!Number.isInteger(at.device) || at.device < 0 || at.device >= PCI_DEVICES_PER_BUS) {
        throw new ConfigError(`PCI device number of ${device.name}`, 'must be an integer from 0 to 31', at.device);
      }
      if (!Number.isInteger(fn) || fn < 0 || fn >= PCI_FUNCTIONS_PER_DEVICE) {
        throw new ConfigError(`PCI function number of ${device.name}`, 'must be an integer from 0 to 7', fn);
      }
      address = { bus: 0, device: at.device, function: fn };
      const taken = this.#functions[index(address)];
      if (taken) {
        throw new ConfigError(
          `PCI address ${formatPciAddress(address)} of ${device.name}`,
          `is already used by ${taken.name}; pick another device number`,
        );
      }
    } else {
      let free = -1;
      for (let d = 0; d < PCI_DEVICES_PER_BUS && free < 0; d++) {
        if (!this.#functions.slice(d * PCI_FUNCTIONS_PER_DEVICE, (d + 1) * PCI_FUNCTIONS_PER_DEVICE).some(Boolean)) {
          free = d;
        }
      }
      if (free < 0) {
        throw new ConfigError(`PCI device ${device.name}`, 'needs a free slot, but all 32 device numbers on bus 0 are used');
      }
      address = { bus: 0, device: free, function: 0 };
    }
    this.#functions[index(address)] = device;
    return address;
  }

  /** Remove the function at `address`; returns it, or `undefined` if none was there. */
  remove(address: PciAddress): PciDevice | undefined {
    if (!valid(address.bus, address.device, address.function)) return undefined;
    const i = index(address);
    const d = this.#functions[i];
    this.#functions[i] = undefined;
    return d;
  }

  /** The function at `address`, if any. */
  get(address: PciAddress): PciDevice | undefined {
    return valid(address.bus, address.device, address.function) ? this.#functions[index(address)] : undefined;
  }

  /** Every function on the bus, in address order. */
  entries(): PciRootEntry[] {
    const out: PciRootEntry[] = [];
    this.#functions.forEach((device, i) => {
      if (device) {
        out.push({
          address: { bus: 0, device: Math.floor(i / PCI_FUNCTIONS_PER_DEVICE), function: i % PCI_FUNCTIONS_PER_DEVICE },
          device,
        });
      }
    });
    return out;
  }

  /** Config dword `reg` (0..1023) of bus/device/function; 0xFFFFFFFF when nothing answers. */
  readConfig(bus: number, device: number, fn: number, reg: number): number {
    if (!valid(bus, device, fn) || !validReg(reg)) return ABSENT;
    const d = this.#functions[device * PCI_FUNCTIONS_PER_DEVICE + fn];
    return d ? d.readConfig(reg) >>> 0 : ABSENT;
  }

  /**
   * Write `data` at byte `offset` of config dword `reg`. Dropped when nothing answers, or when the
   * bytes would not fit inside the dword.
   */
  writeConfig(bus: number, device: number, fn: number, reg: number, offset: number, data: Uint8Array): void {
    if (!valid(bus, device, fn) || !validReg(reg)) return;
    if (!Number.isInteger(offset) || offset < 0 || data.length === 0 || offset + data.length > 4) return;
    this.#functions[device * PCI_FUNCTIONS_PER_DEVICE + fn]?.writeConfig(reg, offset, data);
  }
}

function index(a: PciAddress): number {
  return a.device * PCI_FUNCTIONS_PER_DEVICE + a.function;
}

/** Bus 0 only; device and function in range. */
function valid(bus: number, device: number, fn: number): boolean {
  return (
    bus === 0 &&
    Number.isInteger(device) && device >= 0 && device < PCI_DEVICES_PER_BUS &&
    Number.isInteger(fn) && fn >= 0 && fn < PCI_FUNCTIONS_PER_DEVICE
  );
}

function validReg(reg: number): boolean {
  return Number.isInteger(reg) && reg >= 0 && reg < PCIE_CONFIG_DWORDS;
}
