/**
 * The common configuration structure of virtio-pci (virtio 1.2 §4.1.4.3): feature negotiation
 * (§2.2, §3.1.1), the device status field (§2.1), and the per-queue registers selected by
 * queue_select, kept in the device's {@link VirtQueue} objects. Status transitions that need the
 * rest of the transport (reset, DRIVER_OK) are handed to {@link CommonConfigHooks}.
 * @module
 */
import {
  VIRTIO_F_VERSION_1, VIRTIO_MSI_NO_VECTOR, VIRTIO_STATUS_DEVICE_NEEDS_RESET, VIRTIO_STATUS_DRIVER_OK,
  VIRTIO_STATUS_FEATURES_OK,
} from '../constants';
import type { VirtQueue } from '../VirtQueue';
import {
  COMMON_CONFIG_GENERATION, COMMON_CONFIG_MSIX_VECTOR, COMMON_DEVICE_FEATURE, COMMON_DEVICE_FEATURE_SELECT,
  COMMON_DEVICE_STATUS, COMMON_DRIVER_FEATURE, COMMON_DRIVER_FEATURE_SELECT, COMMON_NUM_QUEUES, COMMON_QUEUE_DESC,
  COMMON_QUEUE_DEVICE, COMMON_QUEUE_DRIVER, COMMON_QUEUE_ENABLE, COMMON_QUEUE_MSIX_VECTOR, COMMON_QUEUE_NOTIFY_OFF,
  COMMON_QUEUE_SELECT, COMMON_QUEUE_SIZE,
} from './VirtioPciRegisters';

const TWO_32 = 0x1_0000_0000;

/** What the common configuration asks of the transport around it. */
export interface CommonConfigHooks {
  /** Feature bits the device offers (virtio 1.2 §2.2). */
  deviceFeatures(): bigint;
  /** Number of MSI-X vectors: larger vector numbers (but NO_VECTOR) are refused (§4.1.5.1.2). */
  msixVectors(): number;
  /** The driver wrote 0 to device_status: reset the device (§2.4, §4.1.4.3.1). */
  reset(): void;
  /** The driver set DRIVER_OK after FEATURES_OK was accepted: validate the queues and activate. */
  driverOk(): void;
  /** The driver set DRIVER_OK without an accepted FEATURES_OK: a driver error. */
  driverError(why: string): void;
}

/** The 64-bit queue addresses as the driver wrote them (two dwords each, read back unchanged). */
interface QueueAddresses {
  desc: [number, number];
  driver: [number, number];
  device: [number, number];
}

/**
 * The registers of struct virtio_pci_common_cfg. Accesses must have the register's natural width
 * (§4.1.3.1); 64-bit queue addresses also take two 32-bit accesses. Anything else reads 0 and
 * writes nothing. Guest accesses never throw.
 */
export class VirtioPciCommonConfig {
  /** device_feature_select. */
  deviceFeatureSelect = 0;
  /** driver_feature_select. */
  driverFeatureSelect = 0;
  /** config_msix_vector. */
  configMsixVector = VIRTIO_MSI_NO_VECTOR;
  /** queue_select. */
  queueSelect = 0;
  #driverFeatures = 0n;
  /** The driver set a bit in a feature dword the device does not have (select ≥ 2). */
  #unknownFeatureBits = false;
  #status = 0;
  #generation = 0;
  readonly #queues: readonly VirtQueue[];
  readonly #addresses: QueueAddresses[];
  readonly #hooks: CommonConfigHooks;

  constructor(queues: readonly VirtQueue[], hooks: CommonConfigHooks) {
    this.#queues = queues;
    this.#hooks = hooks;
    this.#addresses = queues.map(() => ({ desc: [0, 0], driver: [0, 0], device: [0, 0] }));
  }

  /** device_status. */
  get status(): number {
    return this.#status;
  }

  /** config_generation (§2.5.1). */
  get generation(): number {
    return this.#generation;
  }

  /** The features the driver wrote (bits 0..63). */
  get driverFeatures(): bigint {
    return this.#driverFeatures;
  }

  /** What the device offers: its features, always with VIRTIO_F_VERSION_1 (this is a modern-only transport). */
  offeredFeatures(): bigint {
    return this.#hooks.deviceFeatures() | VIRTIO_F_VERSION_1;
  }

  /** The device changed its configuration: bump config_generation (§2.5.1). */
  bumpGeneration(): void {
    this.#generation = (this.#generation + 1) & 0xff;
  }

  /** Set DEVICE_NEEDS_RESET (§2.1.2). */
  setNeedsReset(): void {
    this.#status |= VIRTIO_STATUS_DEVICE_NEEDS_RESET;
  }

  /** Back to the state after a reset (§2.4): status 0, no features, selectors 0, no config vector. */
  reset(): void {
    this.deviceFeatureSelect = 0;
    this.driverFeatureSelect = 0;
    this.configMsixVector = VIRTIO_MSI_NO_VECTOR;
    this.queueSelect = 0;
    this.#driverFeatures = 0n;
    this.#unknownFeatureBits = false;
    this.#status = 0;
    for (const a of this.#addresses) {
      a.desc = [0, 0];
      a.driver = [0, 0];
      a.device = [0, 0];
    }
  }

  /** A guest read of `data.length` bytes at `offset` into the structure. */
  read(offset: number, data: Uint8Array): void {
    data.fill(0);
    const v = this.#readValue(offset, data.length);
    if (v === undefined) return;
    let x = v;
    for (let i = 0; i < data.length; i++) {
      data[i] = Number(x & 0xffn);
      x >>= 8n;
    }
  }

  /** A guest write of `data` at `offset` into the structure. */
  write(offset: number, data: Uint8Array): void {
    let v = 0n;
    for (let i = data.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(data[i]!);
    this.#writeValue(offset, data.length, v);
  }

  #queue(): VirtQueue | undefined {
    return this.#queues[this.queueSelect];
  }

  #readValue(offset: number, size: number): bigint | undefined {
    const q = this.#queue();
    const a = this.#addresses[this.queueSelect];
    if (size === 4) {
      switch (offset) {
        case COMMON_DEVICE_FEATURE_SELECT: return BigInt(this.deviceFeatureSelect);
        case COMMON_DEVICE_FEATURE:
          return this.deviceFeatureSelect < 2 ? (this.offeredFeatures() >> BigInt(32 * this.deviceFeatureSelect)) & 0xffff_ffffn : 0n;
        case COMMON_DRIVER_FEATURE_SELECT: return BigInt(this.driverFeatureSelect);
        case COMMON_DRIVER_FEATURE:
          return this.driverFeatureSelect < 2 ? (this.#driverFeatures >> BigInt(32 * this.driverFeatureSelect)) & 0xffff_ffffn : 0n;
      }
      const half = a ? addressHalf(a, offset) : undefined;
      return half ? BigInt(half[0][half[1]]) : undefined;
    }
    if (size === 8) {
      const pair = a ? addressPair(a, offset) : undefined;
      return pair ? (BigInt(pair[1]) << 32n) | BigInt(pair[0]) : undefined;
    }
    if (size === 2) {
      switch (offset) {
        case COMMON_CONFIG_MSIX_VECTOR: return BigInt(this.configMsixVector);
        case COMMON_NUM_QUEUES: return BigInt(this.#queues.length);
        case COMMON_QUEUE_SELECT: return BigInt(this.queueSelect);
        case COMMON_QUEUE_SIZE: return BigInt(q ? q.size : 0);
        case COMMON_QUEUE_MSIX_VECTOR: return BigInt(q ? q.msixVector : VIRTIO_MSI_NO_VECTOR);
        case COMMON_QUEUE_ENABLE: return q?.ready ? 1n : 0n;
        case COMMON_QUEUE_NOTIFY_OFF: return BigInt(q ? this.queueSelect : 0);
      }
      return undefined;
    }
    if (size === 1) {
      if (offset === COMMON_DEVICE_STATUS) return BigInt(this.#status);
      if (offset === COMMON_CONFIG_GENERATION) return BigInt(this.#generation);
    }
    return undefined;
  }

  #writeValue(offset: number, size: number, v: bigint): void {
    const q = this.#queue();
    const a = this.#addresses[this.queueSelect];
    const n = Number(v & 0xffff_ffffn);
    if (size === 4) {
      switch (offset) {
        case COMMON_DEVICE_FEATURE_SELECT: this.deviceFeatureSelect = n; return;
        case COMMON_DRIVER_FEATURE_SELECT: this.driverFeatureSelect = n; return;
        case COMMON_DRIVER_FEATURE: this.#writeDriverFeatures(n); return;
      }
      const half = a ? addressHalf(a, offset) : undefined;
      if (half && q && !q.ready) {
        half[0][half[1]] = n;
        this.#applyAddresses(q, a!);
      }
      return;
    }
    if (size === 8) {
      const pair = a ? addressPair(a, offset) : undefined;
      if (pair && q && !q.ready) {
        pair[0] = n;
        pair[1] = Number((v >> 32n) & 0xffff_ffffn);
        this.#applyAddresses(q, a!);
      }
      return;
    }
    if (size === 2) {
      const w = n & 0xffff;
      switch (offset) {
        case COMMON_CONFIG_MSIX_VECTOR: this.configMsixVector = this.#vector(w); return;
        case COMMON_QUEUE_SELECT: this.queueSelect = w; return;
        case COMMON_QUEUE_SIZE:
          // §4.1.4.3.2 / §2.7: a power of two no larger than the device's maximum; else ignored.
          if (q && !q.ready && w !== 0 && (w & (w - 1)) === 0 && w <= q.maxSize) q.size = w;
          return;
        case COMMON_QUEUE_MSIX_VECTOR:
          if (q) q.msixVector = this.#vector(w);
          return;
        case COMMON_QUEUE_ENABLE:
          // §4.1.4.3.2: the driver MUST NOT write 0 (that is queue reset, not offered).
          if (q && w === 1) q.ready = true;
          return;
      }
      return;
    }
    if (size === 1 && offset === COMMON_DEVICE_STATUS) this.#writeStatus(n & 0xff);
  }

  /** §4.1.5.1.2: a vector the table does not have reads back as NO_VECTOR. */
  #vector(v: number): number {
    return v === VIRTIO_MSI_NO_VECTOR || v < this.#hooks.msixVectors() ? v : VIRTIO_MSI_NO_VECTOR;
  }

  #writeDriverFeatures(value: number): void {
    if (this.#status & VIRTIO_STATUS_FEATURES_OK) return; // negotiation is over (§3.1.1 step 5)
    const sel = this.driverFeatureSelect;
    if (sel >= 2) {
      if (value !== 0) this.#unknownFeatureBits = true;
      return;
    }
    const shift = BigInt(32 * sel);
    this.#driverFeatures = (this.#driverFeatures & ~(0xffff_ffffn << shift)) | (BigInt(value >>> 0) << shift);
  }

  /** Why the driver's features cannot be accepted, or undefined when they can (§2.2.1, §3.1.1 step 5). */
  featureProblem(): string | undefined {
    const extra = this.#driverFeatures & ~this.offeredFeatures();
    if (extra !== 0n || this.#unknownFeatureBits) {
      return `the driver accepted features the device does not offer (0x${extra.toString(16)})`;
    }
    if ((this.#driverFeatures & VIRTIO_F_VERSION_1) === 0n) return 'the driver did not accept VIRTIO_F_VERSION_1 (a modern-only device needs it)';
    return undefined;
  }

  #writeStatus(value: number): void {
    if (value === 0) {
      this.reset();
      this.#hooks.reset();
      return;
    }
    const old = this.#status;
    let v = value;
    // FEATURES_OK is only kept if the device accepts the features (§2.2.2: it re-reads it).
    if (v & VIRTIO_STATUS_FEATURES_OK && !(old & VIRTIO_STATUS_FEATURES_OK) && this.featureProblem() !== undefined) {
      v &= ~VIRTIO_STATUS_FEATURES_OK;
    }
    // DEVICE_NEEDS_RESET belongs to the device: the driver can neither set nor clear it.
    v = (v & ~VIRTIO_STATUS_DEVICE_NEEDS_RESET) | (old & VIRTIO_STATUS_DEVICE_NEEDS_RESET);
    this.#status = v;
    if (v & VIRTIO_STATUS_DRIVER_OK && !(old & VIRTIO_STATUS_DRIVER_OK)) {
      if (v & VIRTIO_STATUS_FEATURES_OK) this.#hooks.driverOk();
      else this.#hooks.driverError('the driver set DRIVER_OK without an accepted FEATURES_OK (§3.1.1)');
    }
  }

  #applyAddresses(q: VirtQueue, a: QueueAddresses): void {
    q.descTable = a.desc[1] * TWO_32 + a.desc[0];
    q.availRing = a.driver[1] * TWO_32 + a.driver[0];
    q.usedRing = a.device[1] * TWO_32 + a.device[0];
  }
}

/** The dword of a queue address register a 32-bit access at `offset` hits: [pair, 0 = low | 1 = high]. */
function addressHalf(a: QueueAddresses, offset: number): [[number, number], 0 | 1] | undefined {
  const pair = addressPair(a, offset & ~7);
  if (!pair || (offset & 3) !== 0) return undefined;
  return [pair, (offset & 4) === 0 ? 0 : 1];
}

/** The queue address register starting at `offset`. */
function addressPair(a: QueueAddresses, offset: number): [number, number] | undefined {
  if (offset === COMMON_QUEUE_DESC) return a.desc;
  if (offset === COMMON_QUEUE_DRIVER) return a.driver;
  if (offset === COMMON_QUEUE_DEVICE) return a.device;
  return undefined;
}
