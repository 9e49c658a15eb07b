/**
 * A type-0 PCI configuration space (256 bytes, or 4 KiB for PCI Express) with per-bit write masks:
 * read-only identity registers, a writable command register, RW1C status bits, BARs whose masks
 * implement BAR sizing, and a linked capability list. Device models (virtio-pci, the host bridge)
 * hold one and answer {@link PciDevice} calls with it.
 *
 * Layout: PCI Local Bus spec 3.0 §6.1–§6.2 (header), §6.2.5.1 (BAR sizing), §6.7 (capability
 * list); PCIe Base spec §7.6.3 (extended capabilities). Masks follow QEMU's `pci_init_wmask` /
 * `pci_init_w1cmask` (`hw/pci/pci.c`).
 * @module
 */

import { ConfigError } from '../../errors';
import {
  PCI_BASE_ADDRESS_0,
  PCI_BASE_ADDRESS_MEM_PREFETCH,
  PCI_BASE_ADDRESS_MEM_TYPE_64,
  PCI_BASE_ADDRESS_SPACE_IO,
  PCI_CACHE_LINE_SIZE,
  PCI_CAPABILITY_LIST,
  PCI_CAP_LIST_NEXT,
  PCI_CFG_EXT_CAP_START,
  PCI_CFG_SPACE_EXP_SIZE,
  PCI_CFG_SPACE_SIZE,
  PCI_CLASS_PROG,
  PCI_COMMAND,
  PCI_COMMAND_INTX_DISABLE,
  PCI_COMMAND_IO,
  PCI_COMMAND_MASTER,
  PCI_COMMAND_MEMORY,
  PCI_COMMAND_SERR,
  PCI_DEVICE_ID,
  PCI_HEADER_TYPE,
  PCI_HEADER_TYPE_MULTI_FUNCTION,
  PCI_HEADER_TYPE_NORMAL,
  PCI_INTERRUPT_LINE,
  PCI_INTERRUPT_PIN,
  PCI_REVISION_ID,
  PCI_STATUS,
  PCI_STATUS_CAP_LIST,
  PCI_STATUS_DETECTED_PARITY,
  PCI_STATUS_INTERRUPT,
  PCI_STATUS_PARITY,
  PCI_STATUS_REC_MASTER_ABORT,
  PCI_STATUS_REC_TARGET_ABORT,
  PCI_STATUS_SIG_SYSTEM_ERROR,
  PCI_STATUS_SIG_TARGET_ABORT,
  PCI_STD_HEADER_SIZEOF,
  PCI_SUBSYSTEM_ID,
  PCI_SUBSYSTEM_VENDOR_ID,
  PCI_VENDOR_ID,
} from './PciRegisters';

/** What a BAR decodes: I/O ports, 32-bit memory, or 64-bit memory (uses two BAR slots). */
export type PciBarKind = 'io' | 'mem32' | 'mem64';

/** A BAR to add with {@link PciConfigSpace.addBar}. */
export interface PciBarOptions {
  /** I/O, 32-bit memory or 64-bit memory. */
  kind: PciBarKind;
  /** Size in bytes: a power of two; I/O 4..256, memory at least 16 (4096 recommended). */
  size: number;
  /** Memory BARs: prefetchable (bit 3). Default false. */
  prefetchable?: boolean;
}

/** A BAR of a {@link PciConfigSpace}. */
export interface PciBar extends Readonly<Required<PciBarOptions>> {
  /** BAR number 0..5 (a 64-bit BAR also occupies `index + 1`). */
  readonly index: number;
}

/** Identity of the function, written into the read-only part of the header. */
export interface PciConfigSpaceOptions {
  /** Vendor ID (PCI-SIG assigned; virtio: 0x1AF4). */
  vendorId: number;
  /** Device ID. */
  deviceId: number;
  /** 24-bit class code: base class << 16 | subclass << 8 | programming interface (host bridge: 0x060000). */
  classCode: number;
  /** Revision ID. Default 0. */
  revisionId?: number;
  /** Subsystem vendor ID. Default 0. */
  subsystemVendorId?: number;
  /** Subsystem ID. Default 0. */
  subsystemId?: number;
  /** Set the multi-function bit of the header type (function 0 of a multi-function device). */
  multiFunction?: boolean;
  /** Interrupt pin: 0 none, 1..4 INTA#..INTD#. Default 0. */
  interruptPin?: number;
  /** PCI Express 4 KiB config space (extended capabilities at 0x100). Default false: 256 bytes. */
  extended?: boolean;
}

/** Options for {@link PciConfigSpace.addCapability} and {@link PciConfigSpace.addExtendedCapability}. */
export interface PciCapabilityOptions {
  /** Per-bit write mask for the body (same length as the body); default: the body is read-only. */
  writeMask?: Uint8Array;
  /** Per-bit write-1-to-clear mask for the body (same length); default none. */
  w1cMask?: Uint8Array;
}

/** A capability in the list. */
export interface PciCapability {
  /** Capability ID (`PCI_CAP_ID_*`; extended: `PCI_EXT_CAP_ID_*`). */
  readonly id: number;
  /** Config-space offset of the capability header. */
  readonly offset: number;
  /** Total length in bytes including the header. */
  readonly length: number;
}

/** Command bits the guest may write (QEMU pci_init_wmask). */
const COMMAND_WRITABLE = PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_SERR | PCI_COMMAND_INTX_DISABLE;
/** Status bits that are write-1-to-clear (QEMU pci_init_w1cmask). */
const STATUS_W1C =
  PCI_STATUS_PARITY | PCI_STATUS_SIG_TARGET_ABORT | PCI_STATUS_REC_TARGET_ABORT | PCI_STATUS_REC_MASTER_ABORT |
  PCI_STATUS_SIG_SYSTEM_ERROR | PCI_STATUS_DETECTED_PARITY;
/** BAR slots in a type-0 header. */
const BAR_COUNT = 6;
const TWO_32 = 0x1_0000_0000;

/**
 * A type-0 config space. The guest side is {@link readConfig}/{@link writeConfig} (the
 * {@link PciDevice} calls, masks applied, never throwing); the device side reads and writes
 * freely with `readU8`..`writeU32` and adds BARs and capabilities while the machine is built.
 *
 * Guest-visible behaviour:
 * - Vendor/device ID, class code, revision, header type, subsystem IDs, capabilities pointer and
 *   interrupt pin are read-only; cache line size and interrupt line are read/write.
 * - Command: I/O, memory, bus master, SERR# and INTx-disable bits are writable; the rest read 0.
 * - Status: error bits are write-1-to-clear; Capabilities List (bit 4) is set once a capability
 *   is added; Interrupt Status (bit 3) follows {@link setInterruptStatus}.
 * - BARs: only the address bits above the BAR's size are writable and the type bits are
 *   read-only, so writing 0xFFFFFFFF and reading back yields the size mask (§6.2.5.1). Unused BARs
 *   and the expansion ROM BAR read 0.
 * - Bytes after the header are read-only unless a capability's write mask says otherwise.
 * - Dwords beyond the space (e.g. 0x100+ of a 256-byte space) read 0xFFFFFFFF; writes there drop.
 */
export class PciConfigSpace {
  /** Size in bytes: 256, or 4096 with `extended`. */
  readonly size: number;
  readonly #data: Uint8Array;
  readonly #wmask: Uint8Array;
  readonly #w1cmask: Uint8Array;
  readonly #bars: (PciBar | undefined)[] = new Array(BAR_COUNT);
  readonly #caps: PciCapability[] = [];
  readonly #extCaps: PciCapability[] = [];
  #nextCap = PCI_STD_HEADER_SIZEOF;
  #nextExtCap = PCI_CFG_EXT_CAP_START;

  constructor(options: PciConfigSpaceOptions) {
    checkUint('PCI vendorId', options.vendorId, 0xffff);
    checkUint('PCI deviceId', options.deviceId, 0xffff);
    checkUint('PCI classCode', options.classCode, 0xffffff);
    checkUint('PCI revisionId', options.revisionId ?? 0, 0xff);
    checkUint('PCI subsystemVendorId', options.subsystemVendorId ?? 0, 0xffff);
    checkUint('PCI subsystemId', options.subsystemId ?? 0, 0xffff);
    checkUint('PCI interruptPin', options.interruptPin ?? 0, 4);
    this.size = options.extended ? PCI_CFG_SPACE_EXP_SIZE : PCI_CFG_SPACE_SIZE;
    this.#data = new Uint8Array(this.size);
    this.#wmask = new Uint8Array(this.size);
    this.#w1cmask = new Uint8Array(this.size);

    this.writeU16(PCI_VENDOR_ID, options.vendorId);
    this.writeU16(PCI_DEVICE_ID, options.deviceId);
    this.writeU8(PCI_REVISION_ID, options.revisionId ?? 0);
    this.writeU8(PCI_CLASS_PROG, options.classCode & 0xff);
    this.writeU16(PCI_CLASS_PROG + 1, options.classCode >>> 8);
    this.writeU8(PCI_HEADER_TYPE, PCI_HEADER_TYPE_NORMAL | (options.multiFunction ? PCI_HEADER_TYPE_MULTI_FUNCTION : 0));
    this.writeU16(PCI_SUBSYSTEM_VENDOR_ID, options.subsystemVendorId ?? 0);
    this.writeU16(PCI_SUBSYSTEM_ID, options.subsystemId ?? 0);
    this.writeU8(PCI_INTERRUPT_PIN, options.interruptPin ?? 0);

    setLe(this.#wmask, PCI_COMMAND, COMMAND_WRITABLE, 2);
    setLe(this.#w1cmask, PCI_STATUS, STATUS_W1C, 2);
    this.#wmask[PCI_CACHE_LINE_SIZE] = 0xff;
    this.#wmask[PCI_INTERRUPT_LINE] = 0xff;
  }

  // ---------------------------------------------------------------- guest side (PciDevice)

  /** The dword at config register `reg` as the guest reads it; 0xFFFFFFFF beyond the space. */
  readConfig(reg: number): number {
    if (!Number.isInteger(reg) || reg < 0 || reg * 4 >= this.size) return 0xffffffff;
    return getLe(this.#data, reg * 4, 4);
  }

  /**
   * A guest write of `data` at byte `offset` of dword `reg`, through the write masks. Bytes that
   * would fall outside the dword or the space are dropped.
   */
  writeConfig(reg: number, offset: number, data: Uint8Array): void {
    if (!Number.isInteger(reg) || reg < 0 || reg * 4 >= this.size) return;
    if (!Number.isInteger(offset) || offset < 0) return;
    for (let i = 0; i < data.length && offset + i < 4; i++) {
      const at = reg * 4 + offset + i;
      const v = data[i]!;
      const wmask = this.#wmask[at]!;
      let b = (this.#data[at]! & ~wmask) | (v & wmask);
      b &= ~(v & this.#w1cmask[at]!);
      this.#data[at] = b;
    }
  }

  // ---------------------------------------------------------------- device side

  /** Byte at `offset` (no masks). */
  readU8(offset: number): number {
    this.#check(offset, 1);
    return this.#data[offset]!;
  }

  /** Little-endian 16-bit value at `offset` (no masks). */
  readU16(offset: number): number {
    this.#check(offset, 2);
    return getLe(this.#data, offset, 2);
  }

  /** Little-endian 32-bit value at `offset` (no masks). */
  readU32(offset: number): number {
    this.#check(offset, 4);
    return getLe(this.#data, offset, 4);
  }

  /** Set the byte at `offset` (device side: ignores the write masks). */
  writeU8(offset: number, value: number): void {
    this.#check(offset, 1);
    setLe(this.#data, offset, value, 1);
  }

  /** Set the 16-bit value at `offset` (device side). */
  writeU16(offset: number, value: number): void {
    this.#check(offset, 2);
    setLe(this.#data, offset, value, 2);
  }

  /** Set the 32-bit value at `offset` (device side). */
  writeU32(offset: number, value: number): void {
    this.#check(offset, 4);
    setLe(this.#data, offset, value, 4);
  }

  /** Make the bits set in `mask` (bytes from `offset`) writable by the guest; clear bits become read-only. */
  setWriteMask(offset: number, mask: Uint8Array): void {
    this.#check(offset, mask.length);
    this.#wmask.set(mask, offset);
  }

  /** The command register (PCI_COMMAND_* bits: I/O and memory decoding, bus mastering...). */
  get command(): number {
    return getLe(this.#data, PCI_COMMAND, 2);
  }

  /** The interrupt line register (the IRQ the guest's firmware/OS wrote there). */
  get interruptLine(): number {
    return this.#data[PCI_INTERRUPT_LINE]!;
  }

  /** Set or clear the Interrupt Status bit (the function is asserting INTx). */
  setInterruptStatus(asserted: boolean): void {
    const s = this.readU16(PCI_STATUS);
    this.writeU16(PCI_STATUS, asserted ? s | PCI_STATUS_INTERRUPT : s & ~PCI_STATUS_INTERRUPT);
  }

  /**
   * Declare BAR `index`. A 64-bit memory BAR uses slots `index` and `index + 1`. The BAR starts at
   * address 0 with its type bits set; the guest programs it.
   * @throws {@link ConfigError} on a bad index, an occupied slot or a size that is not a power of
   *   two in range.
   */
  addBar(index: number, options: PciBarOptions): PciBar {
    const { kind, size } = options;
    const prefetchable = options.prefetchable ?? false;
    const slots = kind === 'mem64' ? 2 : 1;
    if (!Number.isInteger(index) || index < 0 || index + slots > BAR_COUNT) {
      throw new ConfigError('PCI BAR index', `must be 0..${BAR_COUNT - slots} for a ${kind} BAR`, index);
    }
    for (let i = index; i < index + slots; i++) {
      if (this.#barSlotUsed(i)) throw new ConfigError(`PCI BAR ${index}`, `overlaps BAR slot ${i}, which is in use`);
    }
    const isPow2 = Number.isSafeInteger(size) && size > 0 && Number.isInteger(Math.log2(size));
    const [min, max] = kind === 'io' ? [4, 256] : kind === 'mem32' ? [16, 2 ** 31] : [16, 2 ** 52];
    if (!isPow2 || size < min || size > max) {
      throw new ConfigError(`PCI BAR ${index} size`, `must be a power of two from ${min} to ${max} for a ${kind} BAR`, size);
    }
    if (kind === 'io' && prefetchable) throw new ConfigError(`PCI BAR ${index}`, 'cannot be both I/O and prefetchable');

    const at = PCI_BASE_ADDRESS_0 + index * 4;
    const typeBits =
      kind === 'io'
        ? PCI_BASE_ADDRESS_SPACE_IO
        : (kind === 'mem64' ? PCI_BASE_ADDRESS_MEM_TYPE_64 : 0) | (prefetchable ? PCI_BASE_ADDRESS_MEM_PREFETCH : 0);
    const addrBits = kind === 'io' ? 0xfffffffc : 0xfffffff0;
    // Writable: the address bits at or above the size (so sizing reads back ~(size - 1)).
    const lowMask = size >= TWO_32 ? 0 : ((TWO_32 - size) & addrBits) >>> 0;
    setLe(this.#data, at, typeBits, 4);
    setLe(this.#wmask, at, lowMask, 4);
    if (kind === 'mem64') {
      const highMask = size <= TWO_32 ? 0xffffffff : (TWO_32 - size / TWO_32) >>> 0;
      setLe(this.#data, at + 4, 0, 4);
      setLe(this.#wmask, at + 4, highMask, 4);
    }
    const bar: PciBar = { index, kind, size, prefetchable };
    this.#bars[index] = bar;
    return bar;
  }

  /** The BARs declared with {@link addBar}, by index. */
  get bars(): readonly PciBar[] {
    return this.#bars.filter((b): b is PciBar => b !== undefined);
  }

  /**
   * The address the guest programmed into BAR `index` (a 64-bit BAR combines both dwords; values
   * above 2^53 lose precision, and no valid MMIO address is that high), or `undefined` when no BAR
   * starts at `index`.
   */
  barAddress(index: number): number | undefined {
    const bar = this.#bars[index];
    if (!bar) return undefined;
    const at = PCI_BASE_ADDRESS_0 + index * 4;
    const low = getLe(this.#data, at, 4);
    if (bar.kind === 'io') return (low & 0xfffffffc) >>> 0;
    const lowAddr = (low & 0xfffffff0) >>> 0;
    return bar.kind === 'mem64' ? getLe(this.#data, at + 4, 4) * TWO_32 + lowAddr : lowAddr;
  }

  /**
   * Append a capability to the list: `[id, next, ...body]`, placed at the next dword-aligned
   * offset from 0x40 and linked from the previous one (or from the capabilities pointer).
   * @returns the config-space offset of the capability (its ID byte).
   * @throws {@link ConfigError} when it does not fit below 0x100 or a mask has the wrong length.
   */
  addCapability(id: number, body: Uint8Array, options: PciCapabilityOptions = {}): number {
    checkUint('PCI capability id', id, 0xff);
    const length = 2 + body.length;
    const offset = align4(this.#nextCap);
    if (offset + length > PCI_CFG_SPACE_SIZE) {
      throw new ConfigError(
        `PCI capability 0x${id.toString(16)}`,
        `must fit in the 256-byte config space (${length} bytes at 0x${offset.toString(16)} do not)`,
      );
    }
    this.#setBody(offset + 2, body, options);
    this.#data[offset] = id;
    this.#data[offset + PCI_CAP_LIST_NEXT] = 0;
    const prev = this.#caps[this.#caps.length - 1];
    if (prev) this.#data[prev.offset + PCI_CAP_LIST_NEXT] = offset;
    else this.#data[PCI_CAPABILITY_LIST] = offset;
    this.writeU16(PCI_STATUS, this.readU16(PCI_STATUS) | PCI_STATUS_CAP_LIST);
    this.#caps.push({ id, offset, length });
    this.#nextCap = offset + length;
    return offset;
  }

  /**
   * Append a PCI Express extended capability (`extended` spaces only): a dword header
   * `id | version << 16 | next << 20` then `body`, from 0x100 on, dword-aligned and linked.
   * @returns the config-space offset of its header.
   * @throws {@link ConfigError} when the space is not extended, or it does not fit.
   */
  addExtendedCapability(id: number, version: number, body: Uint8Array, options: PciCapabilityOptions = {}): number {
    checkUint('PCI extended capability id', id, 0xffff);
    checkUint('PCI extended capability version', version, 0xf);
    if (this.size < PCI_CFG_SPACE_EXP_SIZE) {
      throw new ConfigError(`PCI extended capability 0x${id.toString(16)}`, 'needs a config space created with extended: true');
    }
    const length = 4 + body.length;
    const offset = align4(this.#nextExtCap);
    if (offset + length > this.size) {
      throw new ConfigError(`PCI extended capability 0x${id.toString(16)}`, 'must fit in the 4 KiB config space');
    }
    this.#setBody(offset + 4, body, options);
    setLe(this.#data, offset, id | (version << 16), 4);
    const prev = this.#extCaps[this.#extCaps.length - 1];
    if (prev) {
      const header = getLe(this.#data, prev.offset, 4);
      setLe(this.#data, prev.offset, (header & 0x000fffff) | (offset << 20), 4);
    }
    this.#extCaps.push({ id, offset, length });
    this.#nextExtCap = offset + length;
    return offset;
  }

  /** The capabilities in list order. */
  get capabilities(): readonly PciCapability[] {
    return this.#caps;
  }

  /** The extended capabilities in list order. */
  get extendedCapabilities(): readonly PciCapability[] {
    return this.#extCaps;
  }

  #setBody(at: number, body: Uint8Array, options: PciCapabilityOptions): void {
    for (const [name, mask] of [['writeMask', options.writeMask], ['w1cMask', options.w1cMask]] as const) {
      if (mask && mask.length !== body.length) {
        throw new ConfigError(`PCI capability ${name}`, `must have the body's length (${body.length})`, mask.length);
      }
    }
    this.#data.set(body, at);
    if (options.writeMask) this.#wmask.set(options.writeMask, at);
    if (options.w1cMask) this.#w1cmask.set(options.w1cMask, at);
  }

  #barSlotUsed(i: number): boolean {
    if (this.#bars[i]) return true;
    const prev = this.#bars[i - 1];
    return prev !== undefined && prev.kind === 'mem64';
  }

  #check(offset: number, length: number): void {
    if (!Number.isInteger(offset) || offset < 0 || offset + length > this.size) {
      throw new ConfigError('PCI config space offset', `must leave ${length} byte(s) inside the ${this.size}-byte space`, offset);
    }
  }
}

function checkUint(option: string, v: number, max: number): void {
  if (!Number.isInteger(v) || v < 0 || v > max) {
    throw new ConfigError(option, `must be an integer from 0 to 0x${max.toString(16)}`, v);
  }
}

function align4(v: number): number {
  return (v + 3) & ~3;
}

function setLe(d: Uint8Array, at: number, value: number, bytes: number): void {
  for (let i = 0; i < bytes; i++) d[at + i] = (value >>> (i * 8)) & 0xff;
}

function getLe(d: Uint8Array, at: number, bytes: number): number {
  let v = 0;
  for (let i = bytes - 1; i >= 0; i--) v = v * 256 + d[at + i]!;
  return v;
}
