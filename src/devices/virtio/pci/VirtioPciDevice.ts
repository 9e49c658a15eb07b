/**
 * The modern virtio-pci transport (virtio 1.2 §4.1, no legacy interface): one PCI function that
 * carries a {@link VirtioDevice}. Its config space holds the identity (vendor 0x1AF4, device
 * 0x1040 + type, revision 1), the five vendor-specific virtio capabilities and MSI-X; BAR 0 (64-bit
 * memory, {@link BAR0_SIZE}) holds the common configuration, ISR status, device configuration,
 * doorbells and the MSI-X table and PBA.
 *
 * The machine side (`vm/`) wires it: the BAR's address on the MMIO bus ({@link VirtioPciDeviceOptions.onBarChange}),
 * doorbells through KVM_IOEVENTFD calling {@link VirtioPciDevice.notifyQueue}, MSI-X through the table's sink and
 * INTx through the `intx` line. Every guest access, of any size and offset, is answered without
 * throwing; a device failure sets DEVICE_NEEDS_RESET (§2.1.2).
 * @module
 */
import type { BusDevice, IrqLine } from '../../BusDevice';
import { PciConfigSpace } from '../../pci/PciConfigSpace';
import type { PciDevice } from '../../pci/PciDevice';
import {
  PCI_BASE_ADDRESS_0, PCI_CAP_ID_MSIX, PCI_CAP_ID_VNDR, PCI_COMMAND, PCI_COMMAND_INTX_DISABLE, PCI_COMMAND_MASTER,
  PCI_COMMAND_MEMORY, PCI_INTERRUPT_LINE,
} from '../../pci/PciRegisters';
import type { GuestMemory } from '../../../memory/GuestMemory';
import {
  VIRTIO_ID_BLOCK, VIRTIO_ID_CONSOLE, VIRTIO_ID_FS, VIRTIO_ID_NET, VIRTIO_MSI_NO_VECTOR, VIRTIO_STATUS_DEVICE_NEEDS_RESET,
  VIRTIO_STATUS_DRIVER_OK,
} from '../constants';
import type { VirtioDevice, VirtioInterrupt } from '../VirtioDevice';
import { VirtQueue } from '../VirtQueue';
import { MsixTable } from './MsixTable';
import { VirtioPciCommonConfig } from './VirtioPciCommonConfig';
import {
  BAR0_COMMON_OFFSET, BAR0_DEVICE_OFFSET, BAR0_DEVICE_SIZE, BAR0_ISR_OFFSET, BAR0_MSIX_PBA_OFFSET, BAR0_MSIX_PBA_SIZE,
  BAR0_MSIX_TABLE_OFFSET, BAR0_MSIX_TABLE_SIZE, BAR0_NOTIFY_OFFSET, BAR0_NOTIFY_SIZE, BAR0_SIZE, COMMON_CFG_SIZE, MAX_QUEUES,
  NOTIFY_OFF_MULTIPLIER, VIRTIO_PCI_CAP_COMMON_CFG, VIRTIO_PCI_CAP_DEVICE_CFG, VIRTIO_PCI_CAP_ISR_CFG,
  VIRTIO_PCI_CAP_NOTIFY_CFG, VIRTIO_PCI_CAP_PCI_CFG, VIRTIO_PCI_CAP_SIZE, VIRTIO_PCI_CFG_CAP_DATA, VIRTIO_PCI_CFG_CAP_SIZE,
  VIRTIO_PCI_DEVICE_ID_BASE, VIRTIO_PCI_ISR_CONFIG, VIRTIO_PCI_ISR_QUEUE, VIRTIO_PCI_NOTIFY_CAP_SIZE,
  VIRTIO_PCI_REVISION, VIRTIO_PCI_VENDOR_ID,
} from './VirtioPciRegisters';

/** The BAR the transport's structures live in. */
export const VIRTIO_PCI_BAR = 0;
/** Highest address (exclusive) a BAR may be decoded at: x86_64's 52-bit physical address space. */
const MAX_BAR_END = 2 ** 52;

/** A change of where BAR 0 is decoded; `undefined` = not decoded (memory space disabled, or no usable address). */
export interface BarChange {
  /** BAR number (always {@link VIRTIO_PCI_BAR}). */
  readonly bar: number;
  /** Size in bytes. */
  readonly size: number;
  /** Previous guest-physical address, if it was decoded. */
  readonly from: number | undefined;
  /** New guest-physical address, if it is decoded. */
  readonly to: number | undefined;
}

/** Options for {@link VirtioPciDevice}. */
export interface VirtioPciDeviceOptions {
  /** Guest memory the queues and buffers live in. */
  mem: GuestMemory;
  /** The INTA# line, driven (level) while MSI-X is off and the ISR status is non-zero. */
  intx?: IrqLine;
  /** What the Interrupt Line register shows: the GSI INTA# is wired to (firmware would write it). Default 0xFF (unknown). */
  intxIrq?: number;
  /** Called when BAR 0 starts, stops or moves being decoded (map it on the MMIO bus, move doorbells). */
  onBarChange?: (change: BarChange) => void;
  /** Called with the error when the device fails and is marked DEVICE_NEEDS_RESET. */
  onError?: (err: Error) => void;
  /** Name for diagnostics. Default: `virtio-pci-<deviceKind>`. */
  name?: string;
}

/** PCI class code by virtio device type (QEMU's choices: `hw/virtio/virtio-pci.c` and the per-device `*-pci.c`). */
export function virtioPciClassCode(deviceType: number): number {
  switch (deviceType) {
    case VIRTIO_ID_NET: return 0x020000; // network controller, Ethernet
    case VIRTIO_ID_BLOCK: return 0x018000; // mass storage, other
    case VIRTIO_ID_FS: return 0x018000; // mass storage, other
    case VIRTIO_ID_CONSOLE: return 0x078000; // simple communication controller, other
    default: return 0xff0000; // unassigned class (QEMU's PCI_CLASS_OTHERS for rng and balloon)
  }
}

/** Which byte ranges of config space a write touched. */
function touches(at: number, len: number, from: number, size: number): boolean {
  return at < from + size && from < at + len;
}

/**
 * A virtio device on PCI. Construct it with the {@link VirtioDevice} and the machine's memory and
 * lines; add it to a `PciRoot`; map {@link VirtioPciDevice.read}/{@link VirtioPciDevice.write} (BAR 0) on the MMIO bus where
 * {@link VirtioPciDeviceOptions.onBarChange} says.
 */
export class VirtioPciDevice implements PciDevice, BusDevice {
  readonly name: string;
  /** The virtio device carried. */
  readonly device: VirtioDevice;
  /** The PCI configuration space. */
  readonly config: PciConfigSpace;
  /** MSI-X state (one vector per queue plus one for configuration changes). */
  readonly msix: MsixTable;
  /** The device's queues, index = queue number. */
  readonly queues: readonly VirtQueue[];
  /** The common configuration registers. */
  readonly common: VirtioPciCommonConfig;
  /** Config-space offsets of the capabilities, for tests and diagnostics. */
  readonly capabilityOffsets: Readonly<Record<'common' | 'notify' | 'isr' | 'device' | 'pciCfg' | 'msix', number>>;
  /** Doorbells that arrived as MMIO writes to the notify area (no ioeventfd there, or it is missing). */
  mmioDoorbells = 0;
  /** Doorbells that rang before DRIVER_OK, served at activation (Linux may kick first, §3.1.1 note). */
  readonly #early = new Set<number>();
  readonly #mem: GuestMemory;
  readonly #intx: IrqLine | undefined;
  readonly #onBarChange: ((change: BarChange) => void) | undefined;
  readonly #onError: ((err: Error) => void) | undefined;
  #isr = 0;
  #intxLevel = false;
  #epoch = 0;
  #active = false;
  #barAddress: number | undefined;
  readonly #scratch = new Uint8Array(8);

  constructor(device: VirtioDevice, options: VirtioPciDeviceOptions) {
    this.device = device;
    this.name = options.name ?? `virtio-pci-${device.deviceKind}`;
    this.#mem = options.mem;
    this.#intx = options.intx;
    this.#onBarChange = options.onBarChange;
    this.#onError = options.onError;
    const sizes = device.queueMaxSizes;
    if (sizes.length > MAX_QUEUES) throw new RangeError(`${device.deviceKind} has ${sizes.length} queues; virtio-pci in kvmkit carries at most ${MAX_QUEUES}`);
    this.queues = sizes.map((max, index) => new VirtQueue(max, { index, mem: options.mem }));
    this.msix = new MsixTable(sizes.length + 1);
    this.common = new VirtioPciCommonConfig(this.queues, {
      deviceFeatures: () => device.deviceFeatures(),
      msixVectors: () => this.msix.size,
      reset: () => this.#reset(),
      driverOk: () => this.#driverOk(),
      driverError: (why) => this.#fail(new Error(`${this.name}: ${why}`)),
    });

    const id = VIRTIO_PCI_DEVICE_ID_BASE + device.deviceType;
    const config = (this.config = new PciConfigSpace({
      vendorId: VIRTIO_PCI_VENDOR_ID,
      deviceId: id,
      classCode: virtioPciClassCode(device.deviceType),
      revisionId: VIRTIO_PCI_REVISION,
      subsystemVendorId: VIRTIO_PCI_VENDOR_ID,
      subsystemId: id, // §4.1.2.1: 0x40 or higher for non-transitional devices
      interruptPin: 1, // INTA#
    }));
    config.addBar(VIRTIO_PCI_BAR, { kind: 'mem64', size: BAR0_SIZE });
    config.writeU8(PCI_INTERRUPT_LINE, options.intxIrq ?? 0xff);

    const vcap = (type: number, offset: number, length: number, extra?: Uint8Array): Uint8Array => {
      // struct virtio_pci_cap after cap_vndr/cap_next: cap_len, cfg_type, bar, id, padding[2], offset, length (§4.1.4)
      const body = new Uint8Array(VIRTIO_PCI_CAP_SIZE - 2 + (extra?.length ?? 0));
      const dv = new DataView(body.buffer);
      body[0] = body.length + 2;
      body[1] = type;
      body[2] = VIRTIO_PCI_BAR;
      dv.setUint32(6, offset, true);
      dv.setUint32(10, length, true);
      if (extra) body.set(extra, VIRTIO_PCI_CAP_SIZE - 2);
      return body;
    };
    const le32 = (v: number): Uint8Array => new Uint8Array(new Uint32Array([v]).buffer);
    const common = config.addCapability(PCI_CAP_ID_VNDR, vcap(VIRTIO_PCI_CAP_COMMON_CFG, BAR0_COMMON_OFFSET, COMMON_CFG_SIZE));
    const notifyLen = Math.max(1, sizes.length) * NOTIFY_OFF_MULTIPLIER;
    const notify = config.addCapability(PCI_CAP_ID_VNDR, vcap(VIRTIO_PCI_CAP_NOTIFY_CFG, BAR0_NOTIFY_OFFSET, notifyLen, le32(NOTIFY_OFF_MULTIPLIER)));
    const isr = config.addCapability(PCI_CAP_ID_VNDR, vcap(VIRTIO_PCI_CAP_ISR_CFG, BAR0_ISR_OFFSET, 1));
    const dev = config.addCapability(PCI_CAP_ID_VNDR, vcap(VIRTIO_PCI_CAP_DEVICE_CFG, BAR0_DEVICE_OFFSET, BAR0_DEVICE_SIZE));
    // VIRTIO_PCI_CAP_PCI_CFG (§4.1.4.9): bar, offset, length and pci_cfg_data are driver-writable.
    const cfgBody = vcap(VIRTIO_PCI_CAP_PCI_CFG, 0, 0, new Uint8Array(4));
    const cfgMask = new Uint8Array(cfgBody.length);
    cfgMask[2] = 0xff; // bar
    cfgMask.fill(0xff, 6, 18); // offset, length, pci_cfg_data
    const pciCfg = config.addCapability(PCI_CAP_ID_VNDR, cfgBody, { writeMask: cfgMask });
    // MSI-X (PCI 3.0 §6.8.2): Message Control, Table Offset/BIR, PBA Offset/BIR; Enable and Function Mask writable.
    const msixBody = new Uint8Array(10);
    const mdv = new DataView(msixBody.buffer);
    mdv.setUint16(0, this.msix.control, true);
    mdv.setUint32(2, BAR0_MSIX_TABLE_OFFSET | VIRTIO_PCI_BAR, true);
    mdv.setUint32(6, BAR0_MSIX_PBA_OFFSET | VIRTIO_PCI_BAR, true);
    const msixMask = new Uint8Array(10);
    msixMask[1] = 0xc0;
    const msix = config.addCapability(PCI_CAP_ID_MSIX, msixBody, { writeMask: msixMask });
    this.capabilityOffsets = { common, notify, isr, device: dev, pciCfg, msix };
  }

  // ------------------------------------------------------------------ PCI config space (PciDevice)

  readConfig(reg: number): number {
    const data = this.capabilityOffsets.pciCfg + VIRTIO_PCI_CFG_CAP_DATA;
    if (reg === data >> 2) this.#pciCfgAccess(false);
    return this.config.readConfig(reg);
  }

  writeConfig(reg: number, offset: number, data: Uint8Array): void {
    this.config.writeConfig(reg, offset, data);
    const at = reg * 4 + offset;
    const len = data.length;
    const c = this.capabilityOffsets;
    if (touches(at, len, c.msix + 2, 2)) {
      this.msix.setControl(this.config.readU16(c.msix + 2));
      this.#updateIntx();
      this.#routingChanged();
    }
    if (touches(at, len, PCI_COMMAND, 2)) this.#updateIntx();
    if (touches(at, len, PCI_COMMAND, 2) || touches(at, len, PCI_BASE_ADDRESS_0, 8)) this.#updateBar();
    if (touches(at, len, c.pciCfg + VIRTIO_PCI_CFG_CAP_DATA, 4)) this.#pciCfgAccess(true);
  }

  // ------------------------------------------------------------------ BAR 0 (BusDevice)

  /** A guest read in BAR 0 at `offset`. */
  read(offset: number, data: Uint8Array): void {
    data.fill(0);
    try {
      if (offset >= BAR0_COMMON_OFFSET && offset < BAR0_COMMON_OFFSET + COMMON_CFG_SIZE) {
        this.common.read(offset - BAR0_COMMON_OFFSET, data);
      } else if (offset === BAR0_ISR_OFFSET) {
        // §4.1.4.5: reading the ISR status clears it (and so lowers INTx).
        data[0] = this.#isr;
        this.#isr = 0;
        this.#updateIntx();
      } else if (offset >= BAR0_DEVICE_OFFSET && offset < BAR0_DEVICE_OFFSET + BAR0_DEVICE_SIZE) {
        const cfg = this.device.configSpace();
        const rel = offset - BAR0_DEVICE_OFFSET;
        if (rel < cfg.length) data.set(cfg.subarray(rel, Math.min(cfg.length, rel + data.length)));
      } else if (offset >= BAR0_MSIX_TABLE_OFFSET && offset < BAR0_MSIX_TABLE_OFFSET + BAR0_MSIX_TABLE_SIZE) {
        this.msix.readTable(offset - BAR0_MSIX_TABLE_OFFSET, data);
      } else if (offset >= BAR0_MSIX_PBA_OFFSET && offset < BAR0_MSIX_PBA_OFFSET + BAR0_MSIX_PBA_SIZE) {
        this.msix.readPba(offset - BAR0_MSIX_PBA_OFFSET, data);
      }
    } catch (e) {
      data.fill(0);
      this.#fail(asError(e));
    }
  }

  /** A guest write in BAR 0 at `offset`. */
  write(offset: number, data: Uint8Array): void {
    try {
      if (offset >= BAR0_COMMON_OFFSET && offset < BAR0_COMMON_OFFSET + COMMON_CFG_SIZE) {
        this.common.write(offset - BAR0_COMMON_OFFSET, data);
        this.#routingChanged(); // queue_msix_vector / config_msix_vector may have changed
      } else if (offset >= BAR0_DEVICE_OFFSET && offset < BAR0_DEVICE_OFFSET + BAR0_DEVICE_SIZE) {
        this.device.writeConfig(offset - BAR0_DEVICE_OFFSET, data.slice());
      } else if (offset >= BAR0_NOTIFY_OFFSET && offset < BAR0_NOTIFY_OFFSET + BAR0_NOTIFY_SIZE) {
        // A doorbell that came as an MMIO exit (no ioeventfd there): the address names the queue (§4.1.4.4).
        this.mmioDoorbells++;
        this.notifyQueue(Math.floor((offset - BAR0_NOTIFY_OFFSET) / NOTIFY_OFF_MULTIPLIER));
      } else if (offset >= BAR0_MSIX_TABLE_OFFSET && offset < BAR0_MSIX_TABLE_OFFSET + BAR0_MSIX_TABLE_SIZE) {
        this.msix.writeTable(offset - BAR0_MSIX_TABLE_OFFSET, data);
        this.#routingChanged();
      }
    } catch (e) {
      this.#fail(asError(e));
    }
  }

  /** Tell an active device that interrupt delivery may have changed (VirtioInterrupt.usedQueueIrqfd). */
  #routingChanged(): void {
    if (this.#active) this.device.interruptRoutingChanged();
  }

  // ------------------------------------------------------------------ machine side

  /** Where BAR 0 is decoded now (memory space enabled and a usable address), else undefined. */
  get barAddress(): number | undefined {
    return this.#barAddress;
  }

  /** The ISR status (§4.1.4.5) without reading (so without clearing) it. */
  get isrStatus(): number {
    return this.#isr;
  }

  /** The driver set DRIVER_OK and the device was activated (until the next reset). */
  get active(): boolean {
    return this.#active;
  }

  /**
   * Program BAR 0 with `address` and enable memory decoding and bus mastering, as firmware
   * would, so guests without firmware find the device ready. `address` must be aligned to
   * {@link BAR0_SIZE}.
   */
  placeBar(address: number): void {
    if (!Number.isSafeInteger(address) || address <= 0 || address % BAR0_SIZE !== 0 || address + BAR0_SIZE > MAX_BAR_END) {
      throw new RangeError(`${this.name}: BAR 0 address 0x${address.toString(16)} is not a ${BAR0_SIZE}-aligned address below 2^52`);
    }
    const at = PCI_BASE_ADDRESS_0 + VIRTIO_PCI_BAR * 4;
    const type = this.config.readU32(at) & 0xf;
    this.config.writeU32(at, ((address % 0x1_0000_0000) | type) >>> 0);
    this.config.writeU32(at + 4, Math.floor(address / 0x1_0000_0000));
    this.config.writeU16(PCI_COMMAND, this.config.command | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    this.#updateBar();
  }

  /** Guest-physical address of queue `index`'s doorbell, while BAR 0 is decoded. */
  notifyAddress(index: number): number | undefined {
    if (this.#barAddress === undefined || index < 0 || index >= this.queues.length) return undefined;
    return this.#barAddress + BAR0_NOTIFY_OFFSET + index * NOTIFY_OFF_MULTIPLIER;
  }

  /**
   * The driver rang queue `index`'s doorbell (from a KVM_IOEVENTFD eventfd, or an MMIO write).
   * Served by the device once DRIVER_OK is set; doorbells before that are kept for activation.
   */
  notifyQueue(index: number): void {
    const q = this.queues[index];
    if (!q) return;
    const status = this.common.status;
    if (!(status & VIRTIO_STATUS_DRIVER_OK) || !this.#active) {
      if (!(status & VIRTIO_STATUS_DEVICE_NEEDS_RESET)) this.#early.add(index);
      return;
    }
    if (status & VIRTIO_STATUS_DEVICE_NEEDS_RESET || !q.ready) return;
    try {
      this.device.processQueue(index);
    } catch (e) {
      this.#fail(asError(e));
    }
  }

  /** The VM is ending: release the device's host resources. */
  async close(): Promise<void> {
    this.#epoch++;
    this.#active = false;
    await this.device.close();
  }

  // ------------------------------------------------------------------ internals

  /** The interrupt interface given to the device at activation; stale after a reset. */
  #interrupt(epoch: number): VirtioInterrupt {
    return {
      signalUsedQueue: (index) => {
        if (epoch !== this.#epoch) return;
        this.#raise(VIRTIO_PCI_ISR_QUEUE, this.queues[index]?.msixVector ?? VIRTIO_MSI_NO_VECTOR);
      },
      signalConfigChange: () => {
        if (epoch !== this.#epoch) return;
        this.common.bumpGeneration();
        this.#raise(VIRTIO_PCI_ISR_CONFIG, this.common.configMsixVector);
      },
      needsReset: (cause) => {
        if (epoch === this.#epoch) this.#fail(cause);
      },
      usedQueueIrqfd: (index) => {
        if (epoch !== this.#epoch) return undefined;
        const q = this.queues[index];
        return q ? this.msix.directIrqfd(q.msixVector) : undefined;
      },
    };
  }

  /** Set ISR bits and deliver: the MSI-X vector when MSI-X is on (NO_VECTOR: nothing), else INTx. */
  #raise(isrBit: number, vector: number): void {
    this.#isr |= isrBit;
    if (this.msix.enabled) this.msix.trigger(vector);
    else this.#updateIntx();
  }

  /** INTx follows the ISR while MSI-X is off; the Command register's INTx Disable gates the pin, not the status bit. */
  #updateIntx(): void {
    const pending = this.#isr !== 0 && !this.msix.enabled;
    this.config.setInterruptStatus(pending);
    const level = pending && (this.config.command & PCI_COMMAND_INTX_DISABLE) === 0;
    if (level === this.#intxLevel) return;
    this.#intxLevel = level;
    this.#intx?.set(level);
  }

  #updateBar(): void {
    let to: number | undefined;
    if (this.config.command & PCI_COMMAND_MEMORY) {
      const a = this.config.barAddress(VIRTIO_PCI_BAR);
      if (a !== undefined && a > 0 && a + BAR0_SIZE <= MAX_BAR_END) to = a;
    }
    const from = this.#barAddress;
    if (from === to) return;
    this.#barAddress = to;
    this.#onBarChange?.({ bar: VIRTIO_PCI_BAR, size: BAR0_SIZE, from, to });
  }

  /** §4.1.4.9: a driver access to pci_cfg_data reads or writes BAR `bar` at `offset`, `length` bytes. */
  #pciCfgAccess(write: boolean): void {
    const cap = this.capabilityOffsets.pciCfg;
    const bar = this.config.readU8(cap + 4);
    const offset = this.config.readU32(cap + 8);
    const length = this.config.readU32(cap + 12);
    const dataAt = cap + VIRTIO_PCI_CFG_CAP_DATA;
    if (bar !== VIRTIO_PCI_BAR || (length !== 1 && length !== 2 && length !== 4) || offset % length !== 0 || offset + length > BAR0_SIZE) return;
    const buf = this.#scratch.subarray(0, length);
    if (write) {
      for (let i = 0; i < length; i++) buf[i] = this.config.readU8(dataAt + i);
      this.write(offset, buf.slice());
    } else {
      this.read(offset, buf);
      for (let i = 0; i < length; i++) this.config.writeU8(dataAt + i, buf[i]!);
    }
  }

  #driverOk(): void {
    const features = this.common.driverFeatures;
    const epoch = ++this.#epoch;
    try {
      for (const q of this.queues) {
        q.mem = this.#mem;
        q.setFeatures(features);
        if (q.ready) q.validate();
      }
      this.device.activate({
        mem: this.#mem,
        queues: this.queues.map((q) => (q.ready ? q : undefined)),
        interrupt: this.#interrupt(epoch),
        features,
      });
    } catch (e) {
      this.#fail(asError(e));
      return;
    }
    this.#active = true;
    const early = [...this.#early];
    this.#early.clear();
    for (const index of early) this.notifyQueue(index);
  }

  #reset(): void {
    this.#epoch++;
    this.#active = false;
    this.#early.clear();
    try {
      this.device.reset();
    } catch (e) {
      this.#onError?.(asError(e));
    }
    for (const q of this.queues) q.reset();
    this.common.bumpGeneration();
    this.#isr = 0;
    this.#updateIntx();
  }

  /** The device cannot go on: DEVICE_NEEDS_RESET, and after DRIVER_OK a configuration change notification (§2.1.2). */
  #fail(err: Error): void {
    const already = (this.common.status & VIRTIO_STATUS_DEVICE_NEEDS_RESET) !== 0;
    this.common.setNeedsReset();
    this.#active = false;
    this.#epoch++;
    if (!already) this.#onError?.(err);
    if (this.common.status & VIRTIO_STATUS_DRIVER_OK) {
      this.common.bumpGeneration();
      this.#raise(VIRTIO_PCI_ISR_CONFIG, this.common.configMsixVector);
    }
  }
}

function asError(e: unknown): Error {
  return e instanceof Error ? e : new Error(String(e));
}
