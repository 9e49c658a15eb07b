/**
 * A test-side virtio-pci "driver": config-space and BAR accessors over a {@link VirtioPciDevice},
 * a capability walk as Linux's virtio_pci_modern does it, and the §3.1.1 initialisation steps.
 */
import type { VirtioPciDevice } from '../../../../src/devices/virtio/pci/VirtioPciDevice';
import {
  COMMON_DEVICE_FEATURE, COMMON_DEVICE_FEATURE_SELECT, COMMON_DEVICE_STATUS, COMMON_DRIVER_FEATURE,
  COMMON_DRIVER_FEATURE_SELECT, COMMON_QUEUE_DESC, COMMON_QUEUE_DEVICE, COMMON_QUEUE_DRIVER, COMMON_QUEUE_ENABLE,
  COMMON_QUEUE_SELECT, COMMON_QUEUE_SIZE,
} from '../../../../src/devices/virtio/pci/VirtioPciRegisters';
import type { RingLayout } from '../driver';

/** Little-endian bytes of `value` (`size` bytes). */
export function le(value: number | bigint, size: number): Uint8Array {
  const out = new Uint8Array(size);
  let v = BigInt(value);
  for (let i = 0; i < size; i++) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return out;
}

/** The number in little-endian `data`. */
export function fromLe(data: Uint8Array): number {
  let v = 0;
  for (let i = data.length - 1; i >= 0; i--) v = v * 256 + data[i]!;
  return v;
}

/** One virtio vendor capability as a driver decodes it (§4.1.4). */
export interface VirtioCap {
  at: number;
  cfgType: number;
  bar: number;
  offset: number;
  length: number;
  capLen: number;
  notifyMultiplier?: number;
}

/** Guest-side accessors over a device. */
export class PciDriver {
  constructor(readonly dev: VirtioPciDevice) {}

  cfg8(off: number): number {
    return (this.dev.readConfig(off >> 2) >>> ((off & 3) * 8)) & 0xff;
  }
  cfg16(off: number): number {
    return (this.dev.readConfig(off >> 2) >>> ((off & 3) * 8)) & 0xffff;
  }
  cfg32(off: number): number {
    return this.dev.readConfig(off >> 2) >>> 0;
  }
  wcfg(off: number, value: number, size: 1 | 2 | 4): void {
    this.dev.writeConfig(off >> 2, off & 3, le(value >>> 0, size));
  }

  /** BAR 0 read of `size` bytes at `offset`. */
  bar(offset: number, size: number): number {
    const d = new Uint8Array(size);
    this.dev.read(offset, d);
    return fromLe(d);
  }
  wbar(offset: number, value: number | bigint, size: number): void {
    this.dev.write(offset, le(value, size));
  }

  /** Walk the capability list like pci_find_capability (with a loop guard). */
  capabilities(): { id: number; at: number }[] {
    const out: { id: number; at: number }[] = [];
    let p = this.cfg8(0x34);
    for (let guard = 0; p >= 0x40 && guard < 48; guard++) {
      out.push({ id: this.cfg8(p), at: p });
      p = this.cfg8(p + 1);
    }
    return out;
  }

  /** The virtio vendor capabilities (ID 0x09), decoded. */
  virtioCaps(): VirtioCap[] {
    return this.capabilities().filter((c) => c.id === 0x09).map(({ at }) => ({
      at,
      capLen: this.cfg8(at + 2),
      cfgType: this.cfg8(at + 3),
      bar: this.cfg8(at + 4),
      offset: this.cfg32(at + 8),
      length: this.cfg32(at + 12),
      ...(this.cfg8(at + 3) === 2 ? { notifyMultiplier: this.cfg32(at + 16) } : {}),
    }));
  }

  /** The capability of `cfgType` (the first, as Linux picks it). */
  cap(cfgType: number): VirtioCap {
    const c = this.virtioCaps().find((x) => x.cfgType === cfgType);
    if (!c) throw new Error(`no virtio capability of type ${cfgType}`);
    return c;
  }

  // ---- common configuration ----
  common(offset: number, size: number): number {
    return this.bar(this.cap(1).offset + offset, size);
  }
  wcommon(offset: number, value: number | bigint, size: number): void {
    this.wbar(this.cap(1).offset + offset, value, size);
  }
  status(): number {
    return this.common(COMMON_DEVICE_STATUS, 1);
  }
  setStatus(v: number): void {
    this.wcommon(COMMON_DEVICE_STATUS, v, 1);
  }
  deviceFeatures(): bigint {
    this.wcommon(COMMON_DEVICE_FEATURE_SELECT, 0, 4);
    const lo = this.common(COMMON_DEVICE_FEATURE, 4);
    this.wcommon(COMMON_DEVICE_FEATURE_SELECT, 1, 4);
    const hi = this.common(COMMON_DEVICE_FEATURE, 4);
    return (BigInt(hi) << 32n) | BigInt(lo);
  }
  writeDriverFeatures(f: bigint): void {
    this.wcommon(COMMON_DRIVER_FEATURE_SELECT, 0, 4);
    this.wcommon(COMMON_DRIVER_FEATURE, Number(f & 0xffff_ffffn), 4);
    this.wcommon(COMMON_DRIVER_FEATURE_SELECT, 1, 4);
    this.wcommon(COMMON_DRIVER_FEATURE, Number((f >> 32n) & 0xffff_ffffn), 4);
  }

  /** §3.1.1 steps 1–6: reset, ACKNOWLEDGE, DRIVER, features, FEATURES_OK; returns the status read back. */
  negotiate(features: bigint): number {
    this.setStatus(0);
    this.setStatus(1);
    this.setStatus(1 | 2);
    this.writeDriverFeatures(features);
    this.setStatus(1 | 2 | 8);
    return this.status();
  }

  /** §4.1.5.1.3: program queue `q` with `layout` and enable it (64-bit addresses as two dwords, as Linux does). */
  setupQueue(q: number, layout: RingLayout): void {
    this.wcommon(COMMON_QUEUE_SELECT, q, 2);
    this.wcommon(COMMON_QUEUE_SIZE, layout.size, 2);
    for (const [off, addr] of [[COMMON_QUEUE_DESC, layout.desc], [COMMON_QUEUE_DRIVER, layout.avail], [COMMON_QUEUE_DEVICE, layout.used]] as const) {
      this.wcommon(off, addr % 2 ** 32, 4);
      this.wcommon(off + 4, Math.floor(addr / 2 ** 32), 4);
    }
    this.wcommon(COMMON_QUEUE_ENABLE, 1, 2);
  }

  /** Ring queue `q`'s doorbell through the notify capability (a 16-bit write of the queue index, as Linux's vp_notify). */
  kick(q: number): void {
    const n = this.cap(2);
    this.wbar(n.offset + q * n.notifyMultiplier!, q, 2);
  }
}
