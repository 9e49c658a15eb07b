/**
 * The virtio-pci transport from the driver's side, without KVM: identity, capability chain,
 * BAR sizing and placement, the common configuration register model, feature negotiation and
 * FEATURES_OK refusal, reset, queue configuration, DRIVER_OK activation and validation, ISR/INTx,
 * MSI-X delivery, the PCI_CFG access window, and random accesses that must never throw.
 */
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_VERSION_1, VIRTIO_MSI_NO_VECTOR } from '../../../../src/devices/virtio/constants';
import { VirtioPciDevice, type BarChange } from '../../../../src/devices/virtio/pci/VirtioPciDevice';
import type { MsiMessage } from '../../../../src/devices/virtio/pci/MsixTable';
import {
  BAR0_DEVICE_OFFSET, BAR0_ISR_OFFSET, BAR0_MSIX_PBA_OFFSET, BAR0_MSIX_TABLE_OFFSET, BAR0_NOTIFY_OFFSET, BAR0_SIZE,
  COMMON_CONFIG_GENERATION, COMMON_CONFIG_MSIX_VECTOR, COMMON_DEVICE_FEATURE, COMMON_DEVICE_FEATURE_SELECT,
  COMMON_DRIVER_FEATURE, COMMON_DRIVER_FEATURE_SELECT, COMMON_NUM_QUEUES, COMMON_QUEUE_DESC, COMMON_QUEUE_DEVICE,
  COMMON_QUEUE_ENABLE, COMMON_QUEUE_MSIX_VECTOR, COMMON_QUEUE_NOTIFY_OFF, COMMON_QUEUE_SELECT, COMMON_QUEUE_SIZE,
} from '../../../../src/devices/virtio/pci/VirtioPciRegisters';
import { VirtioDevice, type VirtioActivation } from '../../../../src/devices/virtio/VirtioDevice';
import { VirtioRng } from '../../../../src/devices/virtio/rng/VirtioRng';
import { PciHostBridge } from '../../../../src/devices/pci/PciHostBridge';
import { FakeIrq } from '../../helpers';
import { allocRam, TestDriver, type RingLayout } from '../driver';
import { PciDriver } from './pciDriver';

const mem = allocRam(1 << 20);
afterAll(() => mem.free());

const S = { ACK: 1, DRIVER: 2, DRIVER_OK: 4, FEATURES_OK: 8, NEEDS_RESET: 64, FAILED: 128 } as const;
const FEATURE_X = 1n << 5n; // a device-specific feature the test device offers

/** A device that records what the transport did to it. */
class RecordingDevice extends VirtioDevice {
  readonly deviceKind = 'virtio-test';
  readonly deviceType = 2;
  readonly queueMaxSizes = [256, 64];
  activations: VirtioActivation[] = [];
  processed: number[] = [];
  resets = 0;
  writes: [number, number[]][] = [];
  failNext: Error | undefined;
  config = Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8, 9, 10);
  deviceFeatures(): bigint {
    return VIRTIO_F_VERSION_1 | VIRTIO_F_INDIRECT_DESC | VIRTIO_F_EVENT_IDX | FEATURE_X;
  }
  override configSpace(): Uint8Array {
    return this.config;
  }
  override writeConfig(offset: number, data: Uint8Array): void {
    this.writes.push([offset, [...data]]);
  }
  activate(a: VirtioActivation): void {
    this.activations.push(a);
  }
  processQueue(index: number): void {
    if (this.failNext) {
      const e = this.failNext;
      this.failNext = undefined;
      throw e;
    }
    this.processed.push(index);
  }
  reset(): void {
    this.resets++;
  }
}

interface Rig {
  dev: VirtioPciDevice;
  virtio: RecordingDevice;
  d: PciDriver;
  intx: FakeIrq;
  bars: BarChange[];
  errors: Error[];
  routes: [number, MsiMessage][];
  fired: number[];
}

function rig(virtio = new RecordingDevice()): Rig {
  const intx = new FakeIrq();
  const bars: BarChange[] = [];
  const errors: Error[] = [];
  const dev = new VirtioPciDevice(virtio, { mem, intx, intxIrq: 17, onBarChange: (c) => bars.push(c), onError: (e) => errors.push(e) });
  const routes: [number, MsiMessage][] = [];
  const fired: number[] = [];
  dev.msix.sink = { route: (v, m) => routes.push([v, m]), fire: (v) => fired.push(v) };
  return { dev, virtio, d: new PciDriver(dev), intx, bars, errors, routes, fired };
}

const L0: RingLayout = { size: 16, desc: 0x1000, avail: 0x2000, used: 0x3000 };
const L1: RingLayout = { size: 8, desc: 0x5000, avail: 0x6000, used: 0x7000 };
const ALL = VIRTIO_F_VERSION_1 | VIRTIO_F_INDIRECT_DESC | VIRTIO_F_EVENT_IDX | FEATURE_X;

/** Negotiate, set up both queues and DRIVER_OK. */
function bringUp(r: Rig, features = ALL): void {
  expect(r.d.negotiate(features) & S.FEATURES_OK).toBe(S.FEATURES_OK);
  new TestDriver(mem, L0);
  new TestDriver(mem, L1);
  r.d.setupQueue(0, L0);
  r.d.setupQueue(1, L1);
  r.d.setStatus(S.ACK | S.DRIVER | S.FEATURES_OK | S.DRIVER_OK);
}

describe('PCI identity and capabilities', () => {
  it('the host bridge is 8086:1237 class 060000 at header type 0', () => {
    const hb = new PciHostBridge();
    expect(hb.readConfig(0)).toBe(0x1237_8086);
    expect(hb.readConfig(2) >>> 8).toBe(0x060000);
    expect((hb.readConfig(3) >>> 16) & 0x7f).toBe(0);
  });

  it('a virtio-rng function is 1af4:1044 rev 1, subsystem 1af4, class ff0000, INTA#, line = its GSI', () => {
    const { d } = rig(new VirtioRng() as unknown as RecordingDevice);
    expect(d.cfg32(0)).toBe(0x1044_1af4);
    expect(d.cfg8(8)).toBe(1);
    expect(d.cfg32(8) >>> 8).toBe(0xff0000);
    expect(d.cfg16(0x2c)).toBe(0x1af4);
    expect(d.cfg16(0x2e)).toBeGreaterThanOrEqual(0x40);
    expect(d.cfg8(0x3d)).toBe(1);
    expect(d.cfg8(0x3c)).toBe(17);
  });

  it('the capability chain has the five virtio structures in BAR 0 and MSI-X, walked like a driver', () => {
    const { d, dev } = rig();
    expect(d.cfg16(6) & 0x10).toBe(0x10); // Capabilities List
    const caps = d.capabilities();
    expect(caps.map((c) => c.id)).toEqual([0x09, 0x09, 0x09, 0x09, 0x09, 0x11]);
    const v = d.virtioCaps();
    expect(v.map((c) => c.cfgType)).toEqual([1, 2, 3, 4, 5]);
    for (const c of v) {
      expect(c.bar).toBe(0);
      expect(c.at % 4).toBe(0);
      expect(c.capLen).toBe(c.cfgType === 2 || c.cfgType === 5 ? 20 : 16);
      if (c.cfgType !== 5) expect(c.offset + c.length).toBeLessThanOrEqual(BAR0_SIZE);
    }
    expect(d.cap(1).length).toBeGreaterThanOrEqual(0x38); // sizeof(struct virtio_pci_common_cfg)
    const notify = d.cap(2);
    expect(notify.notifyMultiplier).toBe(4);
    expect(notify.length).toBeGreaterThanOrEqual(dev.queues.length * 4);
    expect(d.cap(3).length).toBeGreaterThanOrEqual(1);
    // MSI-X: table size N-1, table and PBA in BAR 0, disabled and function unmasked after reset
    const m = caps.find((c) => c.id === 0x11)!.at;
    expect(d.cfg16(m + 2)).toBe(dev.queues.length + 1 - 1);
    expect(d.cfg32(m + 4)).toBe(BAR0_MSIX_TABLE_OFFSET);
    expect(d.cfg32(m + 8)).toBe(BAR0_MSIX_PBA_OFFSET);
    // capability bytes are read-only to the guest (but the PCI_CFG window fields)
    d.wcfg(d.cap(1).at + 8, 0x1234, 4);
    expect(d.cap(1).offset).toBe(0);
  });

  it('BAR 0 is a 64-bit memory BAR of 32 KiB: sizing reads back the mask; BAR 2..5 are absent', () => {
    const { d } = rig();
    expect(d.cfg32(0x10) & 0xf).toBe(0x4);
    d.wcfg(0x10, 0xffffffff, 4);
    d.wcfg(0x14, 0xffffffff, 4);
    const lo = d.cfg32(0x10);
    const hi = d.cfg32(0x14);
    expect(lo).toBe((~(BAR0_SIZE - 1) & 0xfffffff0 | 0x4) >>> 0);
    expect(hi).toBe(0xffffffff);
    const size = Number(((~((BigInt(hi) << 32n) | BigInt(lo & ~0xf)) & 0xffff_ffff_ffff_ffffn) + 1n));
    expect(size).toBe(BAR0_SIZE);
    expect(BAR0_SIZE & (BAR0_SIZE - 1)).toBe(0);
    expect(BAR0_SIZE).toBeGreaterThanOrEqual(16 * 1024);
    for (const off of [0x18, 0x1c, 0x20, 0x24]) {
      d.wcfg(off, 0xffffffff, 4);
      expect(d.cfg32(off)).toBe(0);
    }
  });
});

describe('BAR placement', () => {
  it('placeBar programs the address and memory decoding; guest re-programming moves it; decode off unmaps it', () => {
    const { dev, d, bars } = rig();
    expect(dev.barAddress).toBeUndefined();
    dev.placeBar(0xc000_0000);
    expect(bars).toEqual([{ bar: 0, size: BAR0_SIZE, from: undefined, to: 0xc000_0000 }]);
    expect(d.cfg32(0x10)).toBe(0xc000_0004);
    expect(d.cfg32(0x14)).toBe(0);
    expect(d.cfg16(4) & 0x6).toBe(0x6); // memory space + bus master
    expect(dev.notifyAddress(1)).toBe(0xc000_0000 + BAR0_NOTIFY_OFFSET + 4);
    // Linux sizing: decode off, all ones, restore, decode on
    d.wcfg(4, d.cfg16(4) & ~2, 2);
    expect(bars.at(-1)).toMatchObject({ from: 0xc000_0000, to: undefined });
    expect(dev.notifyAddress(0)).toBeUndefined();
    d.wcfg(0x10, 0xffffffff, 4);
    d.wcfg(0x14, 0xffffffff, 4);
    d.wcfg(0x10, 0xd000_8000, 4);
    d.wcfg(0x14, 0x1, 4);
    expect(bars).toHaveLength(2);
    d.wcfg(4, d.cfg16(4) | 2, 2);
    expect(bars.at(-1)).toMatchObject({ from: undefined, to: 0x1_d000_8000 });
    // a move with decoding on: one change per dword written
    d.wcfg(0x14, 0, 4);
    expect(bars.at(-1)).toMatchObject({ from: 0x1_d000_8000, to: 0xd000_8000 });
    // an address at 0 or beyond 2^52 is not decoded
    d.wcfg(0x14, 0xffff_ffff, 4);
    expect(dev.barAddress).toBeUndefined();
    expect(() => dev.placeBar(0xc000_1000)).toThrow(RangeError);
  });
});

describe('common configuration', () => {
  it('reads the register model: features by page, num_queues, queue_size/notify_off per queue, NO_VECTOR after reset', () => {
    const { d } = rig();
    expect(d.deviceFeatures()).toBe(ALL);
    d.wcommon(COMMON_DEVICE_FEATURE_SELECT, 7, 4);
    expect(d.common(COMMON_DEVICE_FEATURE_SELECT, 4)).toBe(7);
    expect(d.common(COMMON_DEVICE_FEATURE, 4)).toBe(0);
    d.wcommon(COMMON_DEVICE_FEATURE, 0xffff_ffff, 4); // read-only
    d.wcommon(COMMON_DEVICE_FEATURE_SELECT, 0, 4);
    expect(d.common(COMMON_DEVICE_FEATURE, 4)).toBe(Number(ALL & 0xffff_ffffn));
    expect(d.common(COMMON_NUM_QUEUES, 2)).toBe(2);
    expect(d.common(COMMON_CONFIG_MSIX_VECTOR, 2)).toBe(VIRTIO_MSI_NO_VECTOR);
    for (const [q, max] of [[0, 256], [1, 64]]) {
      d.wcommon(COMMON_QUEUE_SELECT, q, 2);
      expect(d.common(COMMON_QUEUE_SELECT, 2)).toBe(q);
      expect(d.common(COMMON_QUEUE_SIZE, 2)).toBe(max);
      expect(d.common(COMMON_QUEUE_NOTIFY_OFF, 2)).toBe(q);
      expect(d.common(COMMON_QUEUE_MSIX_VECTOR, 2)).toBe(VIRTIO_MSI_NO_VECTOR);
      expect(d.common(COMMON_QUEUE_ENABLE, 2)).toBe(0);
    }
    // a queue that does not exist reads size 0 and ignores writes
    d.wcommon(COMMON_QUEUE_SELECT, 5, 2);
    expect(d.common(COMMON_QUEUE_SIZE, 2)).toBe(0);
    d.wcommon(COMMON_QUEUE_ENABLE, 1, 2);
    expect(d.common(COMMON_QUEUE_ENABLE, 2)).toBe(0);
    // wrong-width accesses read 0 and write nothing
    expect(d.common(COMMON_NUM_QUEUES, 4)).toBe(0);
    d.wcommon(COMMON_QUEUE_SELECT, 1, 4);
    expect(d.common(COMMON_QUEUE_SELECT, 2)).toBe(5);
  });

  it('queue_size takes powers of two up to the maximum only; addresses take dword pairs or a qword and read back', () => {
    const { d, dev } = rig();
    d.wcommon(COMMON_QUEUE_SELECT, 1, 2);
    for (const bad of [0, 3, 100, 128, 0xffff]) {
      d.wcommon(COMMON_QUEUE_SIZE, bad, 2);
      expect(d.common(COMMON_QUEUE_SIZE, 2), `size ${bad}`).toBe(64);
    }
    d.wcommon(COMMON_QUEUE_SIZE, 16, 2);
    expect(d.common(COMMON_QUEUE_SIZE, 2)).toBe(16);
    d.wcommon(COMMON_QUEUE_DESC, 0x1234_5000, 4);
    d.wcommon(COMMON_QUEUE_DESC + 4, 0x2, 4);
    expect(d.common(COMMON_QUEUE_DESC, 8)).toBe(0x2_1234_5000);
    expect(d.common(COMMON_QUEUE_DESC + 4, 4)).toBe(2);
    expect(dev.queues[1]!.descTable).toBe(0x2_1234_5000);
    d.wcommon(COMMON_QUEUE_DEVICE, 0xdead_beef_0000_1000n, 8);
    expect(d.common(COMMON_QUEUE_DEVICE + 4, 4)).toBe(0xdead_beef);
    expect(dev.queues[1]!.usedRing).toBeGreaterThan(2 ** 53); // kept inexact; validate() refuses it
    // MSI-X vectors: up to table size - 1 (3 vectors: config + 2 queues), else NO_VECTOR (§4.1.5.1.2)
    d.wcommon(COMMON_QUEUE_MSIX_VECTOR, 2, 2);
    expect(d.common(COMMON_QUEUE_MSIX_VECTOR, 2)).toBe(2);
    d.wcommon(COMMON_QUEUE_MSIX_VECTOR, 3, 2);
    expect(d.common(COMMON_QUEUE_MSIX_VECTOR, 2)).toBe(VIRTIO_MSI_NO_VECTOR);
    d.wcommon(COMMON_CONFIG_MSIX_VECTOR, 0, 2);
    expect(d.common(COMMON_CONFIG_MSIX_VECTOR, 2)).toBe(0);
    // once enabled, the queue layout is frozen
    d.wcommon(COMMON_QUEUE_ENABLE, 1, 2);
    d.wcommon(COMMON_QUEUE_SIZE, 32, 2);
    d.wcommon(COMMON_QUEUE_DESC, 0x8000, 4);
    expect(d.common(COMMON_QUEUE_SIZE, 2)).toBe(16);
    expect(d.common(COMMON_QUEUE_DESC, 4)).toBe(0x1234_5000);
    d.wcommon(COMMON_QUEUE_ENABLE, 0, 2); // §4.1.4.3.2: the driver must not write 0; ignored
    expect(d.common(COMMON_QUEUE_ENABLE, 2)).toBe(1);
  });

  it('feature negotiation: FEATURES_OK sticks for an offered subset with VERSION_1, driver_feature reads back', () => {
    const { d } = rig();
    expect(d.negotiate(VIRTIO_F_VERSION_1 | FEATURE_X) & S.FEATURES_OK).toBe(S.FEATURES_OK);
    d.wcommon(COMMON_DRIVER_FEATURE_SELECT, 0, 4);
    expect(d.common(COMMON_DRIVER_FEATURE, 4)).toBe(Number(FEATURE_X));
    d.wcommon(COMMON_DRIVER_FEATURE_SELECT, 1, 4);
    expect(d.common(COMMON_DRIVER_FEATURE, 4)).toBe(1);
    // after FEATURES_OK the features are fixed
    d.wcommon(COMMON_DRIVER_FEATURE, 0, 4);
    expect(d.common(COMMON_DRIVER_FEATURE, 4)).toBe(1);
  });

  it.each([
    ['an unoffered feature bit in dword 0', VIRTIO_F_VERSION_1 | (1n << 7n)],
    ['an unoffered feature bit in dword 1 (RING_PACKED)', VIRTIO_F_VERSION_1 | (1n << 34n)],
    ['no VIRTIO_F_VERSION_1', FEATURE_X],
  ])('FEATURES_OK is refused (reads back clear) for %s', (_name, features) => {
    const { d, virtio } = rig();
    const status = d.negotiate(features);
    expect(status & S.FEATURES_OK).toBe(0);
    expect(status & (S.ACK | S.DRIVER)).toBe(S.ACK | S.DRIVER);
    // DRIVER_OK without FEATURES_OK activates nothing and needs a reset
    d.setStatus(status | S.DRIVER_OK);
    expect(virtio.activations).toHaveLength(0);
    expect(d.status() & S.NEEDS_RESET).toBe(S.NEEDS_RESET);
  });

  it('FEATURES_OK is refused for bits in feature dwords beyond 63', () => {
    const { d } = rig();
    d.setStatus(0);
    d.setStatus(S.ACK | S.DRIVER);
    d.writeDriverFeatures(VIRTIO_F_VERSION_1);
    d.wcommon(COMMON_DRIVER_FEATURE_SELECT, 2, 4);
    d.wcommon(COMMON_DRIVER_FEATURE, 1, 4);
    d.setStatus(S.ACK | S.DRIVER | S.FEATURES_OK);
    expect(d.status() & S.FEATURES_OK).toBe(0);
  });

  it('reset (status 0) resets the device and every queue, bumps config_generation, reads back 0', () => {
    const r = rig();
    const { d, dev, virtio } = r;
    bringUp(r);
    d.wcommon(COMMON_QUEUE_SELECT, 0, 2);
    d.wcommon(COMMON_QUEUE_MSIX_VECTOR, 1, 2);
    d.wcommon(COMMON_CONFIG_MSIX_VECTOR, 0, 2);
    const gen = d.common(COMMON_CONFIG_GENERATION, 1);
    const resets = virtio.resets;
    d.setStatus(0);
    expect(d.status()).toBe(0);
    expect(virtio.resets).toBe(resets + 1);
    expect(dev.active).toBe(false);
    expect(d.common(COMMON_CONFIG_GENERATION, 1)).not.toBe(gen);
    expect(d.common(COMMON_CONFIG_MSIX_VECTOR, 2)).toBe(VIRTIO_MSI_NO_VECTOR);
    for (const q of [0, 1]) {
      d.wcommon(COMMON_QUEUE_SELECT, q, 2);
      expect(d.common(COMMON_QUEUE_ENABLE, 2)).toBe(0);
      expect(d.common(COMMON_QUEUE_SIZE, 2)).toBe(virtio.queueMaxSizes[q]);
      expect(d.common(COMMON_QUEUE_DESC, 8)).toBe(0);
      expect(d.common(COMMON_QUEUE_MSIX_VECTOR, 2)).toBe(VIRTIO_MSI_NO_VECTOR);
    }
    expect(dev.queues.every((q) => !q.ready && q.descTable === 0)).toBe(true);
    // an interrupt from the old activation is dropped
    virtio.activations[0]!.interrupt.signalUsedQueue(0);
    expect(dev.isrStatus).toBe(0);
  });

  it('the driver cannot set or clear DEVICE_NEEDS_RESET', () => {
    const { d } = rig();
    d.setStatus(S.ACK | S.NEEDS_RESET);
    expect(d.status()).toBe(S.ACK);
  });
});

describe('DRIVER_OK, doorbells and interrupts', () => {
  it('activates with the enabled, validated queues and the negotiated features; doorbells reach processQueue', () => {
    const r = rig();
    const { d, virtio, dev } = r;
    d.negotiate(VIRTIO_F_VERSION_1 | VIRTIO_F_EVENT_IDX);
    new TestDriver(mem, L0);
    d.setupQueue(0, L0); // queue 1 stays disabled
    d.kick(0); // before DRIVER_OK: kept
    expect(virtio.processed).toEqual([]);
    d.setStatus(S.ACK | S.DRIVER | S.FEATURES_OK | S.DRIVER_OK);
    expect(virtio.activations).toHaveLength(1);
    const a = virtio.activations[0]!;
    expect(a.features).toBe(VIRTIO_F_VERSION_1 | VIRTIO_F_EVENT_IDX);
    expect(a.queues[0]).toBe(dev.queues[0]);
    expect(a.queues[1]).toBeUndefined();
    expect(a.queues[0]!.eventIdx).toBe(true);
    expect(a.queues[0]!.size).toBe(16);
    expect(a.mem).toBe(mem);
    expect(virtio.processed).toEqual([0]); // the early doorbell
    d.kick(0);
    d.kick(1); // not enabled: dropped
    dev.notifyQueue(7); // no such queue
    expect(virtio.processed).toEqual([0, 0]);
    expect(d.status()).toBe(S.ACK | S.DRIVER | S.FEATURES_OK | S.DRIVER_OK);
  });

  it('an invalid queue at DRIVER_OK sets DEVICE_NEEDS_RESET and sends a config interrupt (INTx: ISR bit 1)', () => {
    const r = rig();
    const { d, virtio, intx, errors } = r;
    d.negotiate(ALL);
    d.setupQueue(0, { size: 16, desc: 0x10_0000 - 0x80, avail: 0x2000, used: 0x3000 }); // table runs past RAM
    d.setStatus(S.ACK | S.DRIVER | S.FEATURES_OK | S.DRIVER_OK);
    expect(virtio.activations).toHaveLength(0);
    expect(d.status() & S.NEEDS_RESET).toBe(S.NEEDS_RESET);
    expect(errors[0]!.message).toMatch(/descriptor table .* not inside guest RAM/);
    expect(intx.level).toBe(true);
    expect(d.cfg16(6) & 0x8).toBe(0x8); // PCI status: Interrupt Status
    expect(d.bar(BAR0_ISR_OFFSET, 1)).toBe(2);
    expect(intx.level).toBe(false);
    expect(d.bar(BAR0_ISR_OFFSET, 1)).toBe(0); // read-to-clear
    expect(d.cfg16(6) & 0x8).toBe(0);
    // after a reset the device works again
    new TestDriver(mem, L0);
    d.negotiate(ALL);
    d.setupQueue(0, L0);
    d.setStatus(S.ACK | S.DRIVER | S.FEATURES_OK | S.DRIVER_OK);
    expect(virtio.activations).toHaveLength(1);
  });

  it('a device that throws out of processQueue is marked DEVICE_NEEDS_RESET, reported once, and not called again', () => {
    const r = rig();
    const { d, virtio, errors } = r;
    bringUp(r);
    virtio.failNext = new Error('disk on fire');
    d.kick(0);
    expect(d.status() & S.NEEDS_RESET).toBe(S.NEEDS_RESET);
    expect(errors.map((e) => e.message)).toEqual(['disk on fire']);
    d.kick(0);
    expect(virtio.processed).toEqual([]);
    virtio.activations[0]!.interrupt.needsReset!(new Error('again'));
    expect(errors).toHaveLength(1);
  });

  it('INTx: a used-buffer notification sets ISR bit 0 and the line until the ISR read; INTx Disable gates the pin only', () => {
    const r = rig();
    const { d, virtio, intx } = r;
    bringUp(r);
    const irq = virtio.activations[0]!.interrupt;
    irq.signalUsedQueue(1);
    expect(intx.level).toBe(true);
    irq.signalUsedQueue(0);
    expect(intx.levels).toEqual([true]);
    expect(d.bar(BAR0_ISR_OFFSET, 4)).toBe(1); // any width; upper bytes 0
    expect(intx.levels).toEqual([true, false]);
    d.wcfg(4, d.cfg16(4) | 0x400, 2); // INTx Disable
    irq.signalConfigChange();
    expect(intx.level).toBe(false);
    expect(d.cfg16(6) & 0x8).toBe(0x8);
    d.wcfg(4, d.cfg16(4) & ~0x400, 2);
    expect(intx.level).toBe(true);
    expect(d.bar(BAR0_ISR_OFFSET, 1)).toBe(2);
    expect(intx.level).toBe(false);
  });

  it('MSI-X: vectors route when enabled and unmasked, queue/config notifications fire their vectors, NO_VECTOR fires nothing, no INTx', () => {
    const r = rig();
    const { d, dev, virtio, intx, routes, fired } = r;
    const m = d.capabilities().find((c) => c.id === 0x11)!.at;
    // program entries 0 (config) and 1 (queue 0) while MSI-X is off
    for (const v of [0, 1]) {
      const e = BAR0_MSIX_TABLE_OFFSET + 16 * v;
      d.wbar(e, 0xfee0_0000, 4);
      d.wbar(e + 4, 0, 4);
      d.wbar(e + 8, 0x40 + v, 4);
      d.wbar(e + 12, 0, 4); // unmask
    }
    expect(routes).toEqual([]);
    d.wcfg(m + 2, 0x8000, 2); // enable
    expect(d.cfg16(m + 2)).toBe(0x8002);
    expect(routes).toEqual([[0, { address: 0xfee0_0000n, data: 0x40 }], [1, { address: 0xfee0_0000n, data: 0x41 }]]);
    bringUp(r);
    d.wcommon(COMMON_CONFIG_MSIX_VECTOR, 0, 2);
    d.wcommon(COMMON_QUEUE_SELECT, 0, 2);
    d.wcommon(COMMON_QUEUE_MSIX_VECTOR, 1, 2);
    const irq = virtio.activations[0]!.interrupt;
    irq.signalUsedQueue(0);
    irq.signalConfigChange();
    irq.signalUsedQueue(1); // queue 1 has NO_VECTOR
    expect(fired).toEqual([1, 0]);
    expect(intx.levels).toEqual([]);
    expect(d.cfg16(6) & 0x8).toBe(0);
    expect(dev.isrStatus).toBe(3); // ISR bits are set whatever the interrupt mode
    // a rewritten entry is re-routed
    d.wbar(BAR0_MSIX_TABLE_OFFSET + 16 + 8, 0x51, 4);
    expect(routes.at(-1)).toEqual([1, { address: 0xfee0_0000n, data: 0x51 }]);
    // MSI-X off again: INTx takes over (ISR still set)
    d.wcfg(m + 2, 0, 2);
    expect(intx.level).toBe(true);
  });

  it('MSI-X masking: a masked vector sets its pending bit and fires on unmask; the function mask holds all', () => {
    const r = rig();
    const { d, virtio, fired } = r;
    const m = d.capabilities().find((c) => c.id === 0x11)!.at;
    bringUp(r);
    d.wcommon(COMMON_QUEUE_SELECT, 1, 2);
    d.wcommon(COMMON_QUEUE_MSIX_VECTOR, 2, 2);
    const e = BAR0_MSIX_TABLE_OFFSET + 16 * 2;
    d.wbar(e, 0xfee0_0000n | (0x42n << 64n), 12); // address and data in one 12-byte write (odd, but taken)
    expect(d.bar(e + 8, 4)).toBe(0x42);
    expect(d.bar(e, 8)).toBe(0xfee0_0000);
    expect(d.bar(e + 12, 4)).toBe(1); // masked after reset
    d.wcfg(m + 2, 0x8000, 2);
    const irq = virtio.activations[0]!.interrupt;
    irq.signalUsedQueue(1);
    expect(fired).toEqual([]);
    expect(d.bar(BAR0_MSIX_PBA_OFFSET, 8)).toBe(1 << 2);
    d.wbar(BAR0_MSIX_PBA_OFFSET, 0, 8); // the PBA is read-only
    expect(d.bar(BAR0_MSIX_PBA_OFFSET, 8)).toBe(1 << 2);
    d.wbar(e + 12, 0xffff_fffe, 4); // unmask (reserved bits stay 0)
    expect(d.bar(e + 12, 4)).toBe(0);
    expect(fired).toEqual([2]);
    expect(d.bar(BAR0_MSIX_PBA_OFFSET, 8)).toBe(0);
    // function mask
    d.wcfg(m + 2, 0xc000, 2);
    irq.signalUsedQueue(1);
    irq.signalUsedQueue(1);
    expect(fired).toEqual([2]);
    expect(d.bar(BAR0_MSIX_PBA_OFFSET, 1)).toBe(4);
    d.wcfg(m + 2, 0x8000, 2);
    expect(fired).toEqual([2, 2]); // one pending bit, one message
  });

  it('offers a queue the irqfd of its vector only while MSI-X delivers it directly, and tells the device when that changes', () => {
    const r = rig();
    const { d, virtio } = r;
    let routingChanges = 0;
    virtio.interruptRoutingChanged = () => void routingChanges++;
    r.dev.msix.sink = { route: () => undefined, fire: () => undefined, irqfd: (v) => 100 + v };
    const m = d.capabilities().find((c) => c.id === 0x11)!.at;
    bringUp(r);
    const irq = virtio.activations[0]!.interrupt;
    expect(irq.usedQueueIrqfd!(1)).toBeUndefined(); // MSI-X off: INTx through the transport
    const changesAtStart = routingChanges;
    d.wcommon(COMMON_QUEUE_SELECT, 1, 2);
    d.wcommon(COMMON_QUEUE_MSIX_VECTOR, 2, 2);
    const e = BAR0_MSIX_TABLE_OFFSET + 16 * 2;
    d.wbar(e, 0xfee0_0000n | (0x42n << 64n), 12);
    d.wcfg(m + 2, 0x8000, 2); // enable
    expect(irq.usedQueueIrqfd!(1)).toBeUndefined(); // the vector is still masked: a pending bit, not a message
    d.wbar(e + 12, 0, 4); // unmask
    expect(irq.usedQueueIrqfd!(1)).toBe(102);
    expect(irq.usedQueueIrqfd!(0)).toBeUndefined(); // queue 0 has NO_VECTOR
    d.wcfg(m + 2, 0xc000, 2); // function mask
    expect(irq.usedQueueIrqfd!(1)).toBeUndefined();
    expect(routingChanges - changesAtStart).toBeGreaterThanOrEqual(5);
    d.wcfg(m + 2, 0x8000, 2);
    expect(irq.usedQueueIrqfd!(1)).toBe(102);
    d.setStatus(0); // reset: the old activation's interface offers nothing
    expect(irq.usedQueueIrqfd!(1)).toBeUndefined();
  });

  it('device config: reads come from configSpace() at any width, writes go to writeConfig', () => {
    const r = rig();
    const { d, virtio } = r;
    expect(d.bar(BAR0_DEVICE_OFFSET, 4)).toBe(0x0403_0201);
    expect(d.bar(BAR0_DEVICE_OFFSET + 8, 4)).toBe(0x0a09); // past the end reads 0
    expect(d.bar(BAR0_DEVICE_OFFSET + 0x800, 8)).toBe(0);
    d.wbar(BAR0_DEVICE_OFFSET + 2, 0xabcd, 2);
    expect(virtio.writes).toEqual([[2, [0xcd, 0xab]]]);
    // config change: generation moves
    bringUp(r);
    const gen = d.common(COMMON_CONFIG_GENERATION, 1);
    virtio.activations[0]!.interrupt.signalConfigChange();
    expect(d.common(COMMON_CONFIG_GENERATION, 1)).toBe((gen + 1) & 0xff);
  });

  it('VIRTIO_PCI_CAP_PCI_CFG: pci_cfg_data reads and writes BAR 0 at (offset, length)', () => {
    const { d } = rig();
    const c = d.cap(5);
    d.wcfg(c.at + 4, 0, 1); // bar 0
    d.wcfg(c.at + 8, COMMON_NUM_QUEUES, 4);
    d.wcfg(c.at + 12, 2, 4);
    expect(d.cfg16(c.at + 16)).toBe(2); // num_queues through the window
    d.wcfg(c.at + 8, COMMON_QUEUE_SELECT, 4);
    d.wcfg(c.at + 16, 1, 4); // write 16 bits of it: queue_select = 1
    expect(d.common(COMMON_QUEUE_SELECT, 2)).toBe(1);
    d.wcfg(c.at + 8, 0x14, 4);
    d.wcfg(c.at + 12, 1, 4);
    d.wcfg(c.at + 16, 1, 1); // device_status = ACKNOWLEDGE
    expect(d.status()).toBe(1);
    // a bad window (unaligned, bar 1, length 3) does nothing
    d.wcfg(c.at + 8, 0x15, 4);
    d.wcfg(c.at + 12, 2, 4);
    d.wcfg(c.at + 16, 0xffff, 4);
    expect(d.status()).toBe(1);
  });
});

describe('robustness', () => {
  it('random BAR and config accesses of any size and offset never throw (10,000 runs)', () => {
    const { dev } = rig();
    dev.placeBar(0xc000_0000);
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            bar: fc.boolean(),
            write: fc.boolean(),
            offset: fc.oneof(fc.integer({ min: 0, max: BAR0_SIZE + 16 }), fc.integer({ min: 0, max: 0x40 }), fc.integer({ min: -4, max: 2 ** 40 })),
            size: fc.constantFrom(0, 1, 2, 3, 4, 8, 16),
            value: fc.bigInt({ min: 0n, max: (1n << 128n) - 1n }),
          }),
          { maxLength: 20 },
        ),
        (ops) => {
          for (const op of ops) {
            const data = new Uint8Array(op.size);
            for (let i = 0; i < op.size; i++) data[i] = Number((op.value >> BigInt(8 * i)) & 0xffn);
            if (op.bar) {
              if (op.write) dev.write(op.offset, data);
              else dev.read(op.offset, data);
            } else {
              const reg = Math.floor(op.offset / 4) % 80;
              if (op.write) dev.writeConfig(reg, op.offset & 3, data.subarray(0, Math.min(op.size, 4 - (op.offset & 3))));
              else dev.readConfig(reg);
            }
          }
        },
      ),
      { numRuns: 10_000 },
    );
  });
});

describe('virtio-rng through the transport (in process)', () => {
  it('a driver sets up the requestq through BAR 0, kicks, and gets random bytes with an MSI-X message', () => {
    const r = rig(new VirtioRng() as unknown as RecordingDevice);
    const { d, fired } = r;
    const m = d.capabilities().find((c) => c.id === 0x11)!.at;
    d.wbar(BAR0_MSIX_TABLE_OFFSET + 16, 0xfee0_0000, 4);
    d.wbar(BAR0_MSIX_TABLE_OFFSET + 16 + 8, 0x45, 4);
    d.wbar(BAR0_MSIX_TABLE_OFFSET + 16 + 12, 0, 4);
    d.wcfg(m + 2, 0x8000, 2);
    expect(d.negotiate(VIRTIO_F_VERSION_1 | VIRTIO_F_EVENT_IDX) & S.FEATURES_OK).toBe(S.FEATURES_OK);
    const drv = new TestDriver(mem, L0);
    d.setupQueue(0, L0);
    d.wcommon(COMMON_QUEUE_SELECT, 0, 2);
    d.wcommon(COMMON_QUEUE_MSIX_VECTOR, 1, 2);
    d.setStatus(S.ACK | S.DRIVER | S.FEATURES_OK | S.DRIVER_OK);
    mem.write(0x8000, new Uint8Array(256));
    drv.addChain([{ addr: 0x8000, len: 256, write: true }]);
    d.kick(0);
    expect(drv.takeUsed()).toEqual([{ id: 0, len: 256 }]);
    expect(mem.read(0x8000, 256).some((b) => b !== 0)).toBe(true);
    expect(fired).toEqual([1]);
    // and through the MMIO-exit fallback: a doorbell write at the notify address
    drv.addChain([{ addr: 0x8100, len: 16, write: true }]);
    d.wbar(BAR0_NOTIFY_OFFSET, 0, 2);
    expect(drv.takeUsed()).toEqual([{ id: 1, len: 16 }]);
  });
});
