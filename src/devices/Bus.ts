/**
 * An address space (port I/O or MMIO) mapping non-overlapping ranges to {@link BusDevice}s, the
 * role of crosvm's `devices/src/bus.rs` and Firecracker's `vmm/src/devices/bus.rs`.
 * @module
 */

import { ConfigError } from '../errors';
import type { BusDevice } from './BusDevice';
import { BusOverlapError } from './errors';

/** One mapped range `[base, base + length)`. */
export interface BusRange {
  /** First address of the range. */
  readonly base: number;
  /** Number of addresses in the range (at least 1). */
  readonly length: number;
  /** The device that answers accesses inside the range. */
  readonly device: BusDevice;
}

/** The highest address + 1 a range may reach: addresses stay exact JavaScript integers. */
const ADDRESS_LIMIT = 2 ** 53;

/**
 * Maps address ranges to devices. Used for port I/O (addresses below 0x10000) and for MMIO
 * (guest-physical addresses, at most 2^52 on x86_64, kept as `number`).
 *
 * Lookup is a binary search over the ranges sorted by base. An access is routed by its first
 * address only: an access that starts inside a range but runs past its end is given to that
 * device with its in-range offset, and the device decides (every device model here answers such
 * accesses without throwing), as crosvm's bus does.
 */
export class Bus {
  /** Ranges sorted by `base`, never overlapping. */
  readonly #ranges: BusRange[] = [];

  /** @param name What this bus is (`pio`, `mmio`), used in error messages. */
  constructor(readonly name = 'bus') {}

  /** The mapped ranges, sorted by base address. */
  get ranges(): readonly BusRange[] {
    return this.#ranges;
  }

  /**
   * Map `device` at `[base, base + length)`.
   * @throws {@link ConfigError} when `base`/`length` are not non-negative integers with
   *   `length >= 1` and `base + length <= 2^53`.
   * @throws {@link BusOverlapError} when the range overlaps a mapped one (naming both devices).
   */
  insert(device: BusDevice, base: number, length: number): void {
    if (!Number.isSafeInteger(base) || base < 0) {
      throw new ConfigError(`${this.name} base address of ${device.name}`, 'must be a non-negative integer', base);
    }
    if (!Number.isSafeInteger(length) || length < 1) {
      throw new ConfigError(`${this.name} range length of ${device.name}`, 'must be a positive integer', length);
    }
    if (length > ADDRESS_LIMIT - base) {
      throw new ConfigError(
        `${this.name} range of ${device.name}`,
        `must end at or below 2^53 (0x${ADDRESS_LIMIT.toString(16)})`,
        `0x${base.toString(16)}+0x${length.toString(16)}`,
      );
    }
    // The new range goes at index i; only its neighbours can overlap it.
    const i = this.#upperBound(base);
    const before = this.#ranges[i - 1];
    const after = this.#ranges[i];
    for (const other of [before, after]) {
      if (other && other.base < base + length && base < other.base + other.length) {
        throw new BusOverlapError(device.name, base, length, other.device.name, other.base, other.length);
      }
    }
    this.#ranges.splice(i, 0, { base, length, device });
  }

  /**
   * Unmap the range that starts exactly at `base` (PCI BAR reprogramming moves devices).
   * @returns the device that was mapped there, or `undefined` when no range starts at `base`.
   */
  remove(base: number): BusDevice | undefined {
    const i = this.#upperBound(base) - 1;
    const r = this.#ranges[i];
    if (!r || r.base !== base) return undefined;
    this.#ranges.splice(i, 1);
    return r.device;
  }

  /** The range containing `address`, or `undefined` when nothing is mapped there. */
  lookup(address: number): BusRange | undefined {
    const r = this.#ranges[this.#upperBound(address) - 1];
    return r && address < r.base + r.length ? r : undefined;
  }

  /**
   * Route a read of `data.length` bytes at `address` to the device mapped there.
   * @returns `false` when nothing is mapped at `address`; `data` is then left untouched and the
   *   caller answers as an empty bus would (all ones).
   */
  read(address: number, data: Uint8Array): boolean {
    const r = this.lookup(address);
    if (!r) return false;
    r.device.read(address - r.base, data);
    return true;
  }

  /**
   * Route a write of `data` at `address` to the device mapped there.
   * @returns `false` when nothing is mapped at `address` (the write goes nowhere).
   */
  write(address: number, data: Uint8Array): boolean {
    const r = this.lookup(address);
    if (!r) return false;
    r.device.write(address - r.base, data);
    return true;
  }

  /** Index of the first range whose base is greater than `address` (NaN gives 0: no match). */
  #upperBound(address: number): number {
    let lo = 0;
    let hi = this.#ranges.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.#ranges[mid]!.base <= address) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}
