/**
 * PCI configuration mechanism #1 (PCI Local Bus spec 3.0 §3.2.2.3.2): CONFIG_ADDRESS at I/O port
 * 0xCF8 and CONFIG_DATA at 0xCFC..0xCFF, plus the reset control register at 0xCF9 that Linux's
 * `reboot=pci` writes (Intel PIIX/ICH "RST_CNT"; crosvm `pci_root.rs` PCI_RESET_CPU_BIT).
 * @module
 */

import type { BusDevice } from '../BusDevice';
import type { PciRoot } from './PciRoot';

/** First port of the PCI configuration mechanism #1 (CONFIG_ADDRESS). */
export const PCI_CONFIG_IO_PORT = 0xcf8;
/** Ports 0xCF8..0xCFF. */
export const PCI_CONFIG_IO_LEN = 8;

/** Offset of CONFIG_ADDRESS (0xCF8), a dword register. */
const CONFIG_ADDRESS_OFFSET = 0;
/** Offset of the reset control register (0xCF9), a byte register. */
const RESET_CONTROL_OFFSET = 1;
/** Offset of CONFIG_DATA (0xCFC); bytes 0xCFC..0xCFF map to bytes 0..3 of the addressed dword. */
const CONFIG_DATA_OFFSET = 4;

// ---- CONFIG_ADDRESS fields (PCI 3.0 figure 3-2) ----
/** Bit 31: enable; when clear, CONFIG_DATA accesses are ordinary I/O cycles (nothing answers). */
const CONFIG_ENABLE = 0x80000000;
/** Bits 23:16: bus number. */
const BUS_SHIFT = 16;
/** Bits 15:11: device number. */
const DEVICE_SHIFT = 11;
/** Bits 10:8: function number. */
const FUNCTION_SHIFT = 8;
/** Bits 7:2: dword register number. */
const REGISTER_SHIFT = 2;
/**
 * Bits 27:24: register number bits 11:8 (AMD's "IO ECS" extension, Linux `PCI_CONF1_EXT_ADDRESS`,
 * used when the guest thinks it runs on an AMD family 10h+ CPU without MMCONFIG).
 */
const EXT_REGISTER_SHIFT = 24;
/** CONFIG_ADDRESS bits that are stored: enable, ext register, bus, device, function, register. Bits 1:0 read 0. */
const CONFIG_ADDRESS_MASK = 0x8ffffffc;

// ---- Reset control register (0xCF9) bits (Intel ICH9 datasheet §13.7.5 RST_CNT) ----
/** Bit 1: SYS_RST, hard (1) or soft (0) reset. Stored. */
const RST_SYS = 0x02;
/** Bit 2: RST_CPU, writing 1 starts the reset. */
const RST_CPU = 0x04;
/** Bit 3: FULL_RST. Stored. */
const RST_FULL = 0x08;

/** Options for {@link PciConfigIo}. */
export interface PciConfigIoOptions {
  /** Called when the guest writes RST_CPU to the reset control register at 0xCF9. */
  onReset?: () => void;
  /** Bus device name for diagnostics. Default `pci-config-io`. */
  name?: string;
}

/**
 * PCI config mechanism #1 over a {@link PciRoot}. Insert at {@link PCI_CONFIG_IO_PORT} with length
 * {@link PCI_CONFIG_IO_LEN}.
 *
 * - CONFIG_ADDRESS answers dword accesses at 0xCF8 only, as on Intel chipsets: Linux's
 *   `pci_check_type1` writes 0x80000000 and reads it back. Byte and word accesses to
 *   0xCF8..0xCFB are not CONFIG_ADDRESS: they read 0xFF and are dropped (so the guest's probe for
 *   configuration mechanism #2 fails, correctly), except bytes at 0xCF9 (reset control).
 * - CONFIG_DATA: a 1-, 2- or 4-byte access at 0xCFC + n reads or writes bytes n.. of the
 *   addressed dword. An access running past 0xCFF reads all ones and writes nothing (crosvm).
 *   With the enable bit clear, reads give all ones and writes are dropped.
 * - Absent functions read 0xFFFFFFFF at any size, which {@link PciRoot} provides.
 */
export class PciConfigIo implements BusDevice {
  readonly name: string;
  readonly #root: PciRoot;
  readonly #onReset: (() => void) | undefined;
  #address = 0;
  #resetControl = 0;

  /**
   * @param root The root bus the config accesses are routed to.
   * @param options Reset callback and name.
   */
  constructor(root: PciRoot, options: PciConfigIoOptions = {}) {
    this.name = options.name ?? 'pci-config-io';
    this.#root = root;
    this.#onReset = options.onReset;
  }

  /** The CONFIG_ADDRESS register as the guest last wrote it (masked). */
  get configAddress(): number {
    return this.#address;
  }

  /** Fill `data` with what the guest reads at `offset`. */
  read(offset: number, data: Uint8Array): void {
    data.fill(0xff);
    const n = data.length;
    if (offset === CONFIG_ADDRESS_OFFSET && n === 4) {
      putLe(data, this.#address, 0);
    } else if (offset === RESET_CONTROL_OFFSET && n === 1) {
      data[0] = this.#resetControl;
    } else if (offset >= CONFIG_DATA_OFFSET && offset + n <= CONFIG_DATA_OFFSET + 4 && n > 0) {
      const dword = this.#readData();
      putLe(data, dword, offset - CONFIG_DATA_OFFSET);
    }
  }

  /** The guest wrote `data` at `offset`. */
  write(offset: number, data: Uint8Array): void {
    const n = data.length;
    if (offset === CONFIG_ADDRESS_OFFSET && n === 4) {
      this.#address = (getLe(data) & CONFIG_ADDRESS_MASK) >>> 0;
    } else if (offset === RESET_CONTROL_OFFSET && n === 1) {
      const v = data[0]!;
      this.#resetControl = v & (RST_SYS | RST_FULL);
      if (v & RST_CPU) this.#onReset?.();
    } else if (offset >= CONFIG_DATA_OFFSET && offset + n <= CONFIG_DATA_OFFSET + 4 && n > 0) {
      if (!(this.#address & CONFIG_ENABLE)) return;
      const [bus, device, fn, reg] = this.#decode();
      this.#root.writeConfig(bus, device, fn, reg, offset - CONFIG_DATA_OFFSET, data);
    }
  }

  #readData(): number {
    if (!(this.#address & CONFIG_ENABLE)) return 0xffffffff;
    const [bus, device, fn, reg] = this.#decode();
    return this.#root.readConfig(bus, device, fn, reg);
  }

  /** [bus, device, function, dword register] from CONFIG_ADDRESS. */
  #decode(): [number, number, number, number] {
    const a = this.#address;
    return [
      (a >>> BUS_SHIFT) & 0xff,
      (a >>> DEVICE_SHIFT) & 0x1f,
      (a >>> FUNCTION_SHIFT) & 0x7,
      (((a >>> EXT_REGISTER_SHIFT) & 0xf) << 6) | ((a >>> REGISTER_SHIFT) & 0x3f),
    ];
  }
}

/** Copy bytes `from..` of little-endian `value` into `data` (as many as fit in the dword). */
function putLe(data: Uint8Array, value: number, from: number): void {
  for (let i = 0; i < data.length && from + i < 4; i++) data[i] = (value >>> ((from + i) * 8)) & 0xff;
}

function getLe(data: Uint8Array): number {
  return (data[0]! | (data[1]! << 8) | (data[2]! << 16) | (data[3]! << 24)) >>> 0;
}
