/**
 * VirtioPciWiring on /dev/kvm with the tiny guest of test/hypervisor/unrealGuest.ts: a
 * VirtioPciDevice's doorbells reach the device through KVM_IOEVENTFD at wherever its BAR was
 * moved, its MSI-X vectors interrupt the guest through GSI routes + irqfds (masking, pending bits
 * and re-routing included), and INTx works in both modes (KVM_IRQ_LINE, level irqfd + resample).
 */
import { existsSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { Bus } from '../../src/devices/Bus';
import { VIRTIO_F_VERSION_1 } from '../../src/devices/virtio/constants';
import { VirtioPciDevice } from '../../src/devices/virtio/pci/VirtioPciDevice';
import {
  BAR0_ISR_OFFSET, BAR0_MSIX_PBA_OFFSET, BAR0_MSIX_TABLE_OFFSET, BAR0_NOTIFY_OFFSET, COMMON_QUEUE_MSIX_VECTOR,
  COMMON_QUEUE_SELECT,
} from '../../src/devices/virtio/pci/VirtioPciRegisters';
import { VirtioDevice, type VirtioActivation } from '../../src/devices/virtio/VirtioDevice';
import { EventFd } from '../../src/hypervisor/kvm/EventFd';
import { libc } from '../../src/hypervisor/kvm/libc';
import { GsiRoutingTable } from '../../src/hypervisor/kvm/IrqRouting';
import { ACCESS, VcpuRunState } from '../../src/vm/mailbox';
import { type IntxMode, VirtioPciWiring } from '../../src/vm/VirtioPciWiring';
import { PciDriver } from '../devices/virtio/pci/pciDriver';
import { TestDriver } from '../devices/virtio/driver';
import {
  COUNTERS, DOORBELL, ENTRY, INTX_GSI, ISR, makeRig, MMIO_DOORBELL, MMIO_DOORBELL_VECTOR, MSI_VECTOR, type Rig,
} from '../hypervisor/unrealGuest';

const hasKvm = existsSync('/dev/kvm');

/** Two queues; records doorbells and keeps its activation. */
class TwoQueues extends VirtioDevice {
  readonly deviceKind = 'virtio-test';
  readonly deviceType = 4;
  readonly queueMaxSizes = [16, 16];
  processed: number[] = [];
  activation: VirtioActivation | undefined;
  deviceFeatures(): bigint {
    return VIRTIO_F_VERSION_1;
  }
  activate(a: VirtioActivation): void {
    this.activation = a;
  }
  processQueue(index: number): void {
    this.processed.push(index);
  }
  reset(): void {
    this.activation = undefined;
  }
}

interface Setup {
  rig: Rig;
  dev: VirtioPciDevice;
  virtio: TwoQueues;
  wiring: VirtioPciWiring;
  d: PciDriver;
  mmio: Bus;
  errors: Error[];
}

let current: Setup | undefined;
afterEach(async () => {
  if (!current) return;
  await current.rig.close();
  current.wiring.close();
  current = undefined;
});

/** The guest rig plus a device wired like the VM does it; MMIO exits go to the bus. */
function setup(entry: number, options: { ecx?: number; doorbell?: number; intxMode?: IntxMode } = {}): Setup {
  const rig = makeRig(entry, { ...options, start: false });
  const mmio = new Bus('mmio');
  const errors: Error[] = [];
  const routing = new GsiRoutingTable((routes) => rig.vm.setGsiRouting(routes));
  const wiring = new VirtioPciWiring({ vm: rig.vm, mmio, routing, onError: (e) => errors.push(e) }, INTX_GSI, options.intxMode);
  const virtio = new TwoQueues();
  const dev = new VirtioPciDevice(virtio, { mem: rig.mem, intx: wiring, onBarChange: (c) => wiring.barChanged(c), onError: (e) => errors.push(e) });
  wiring.attach(dev);
  rig.onAccess = (kind, addr, size, value) => {
    const data = new Uint8Array(size);
    if (kind === ACCESS.MMIO_WRITE) {
      for (let i = 0; i < size; i++) data[i] = Number((value >> BigInt(8 * i)) & 0xffn);
      mmio.write(addr, data);
      return undefined;
    }
    if (kind === ACCESS.MMIO_READ) {
      data.fill(0xff);
      mmio.read(addr, data);
      return data.reduceRight((v, b) => (v << 8n) | BigInt(b), 0n);
    }
    return undefined;
  };
  current = { rig, dev, virtio, wiring, d: new PciDriver(dev), mmio, errors };
  return current;
}

/** Negotiate and enable both queues (rings in the rig's RAM above its code) and DRIVER_OK. */
function bringUp(s: Setup): void {
  expect(s.d.negotiate(VIRTIO_F_VERSION_1) & 8).toBe(8);
  const layouts = [{ size: 16, desc: 0x2_0000, avail: 0x2_1000, used: 0x2_2000 }, { size: 16, desc: 0x2_4000, avail: 0x2_5000, used: 0x2_6000 }];
  layouts.forEach((l, q) => {
    new TestDriver(s.rig.mem, l);
    s.d.setupQueue(q, l);
  });
  s.d.setStatus(1 | 2 | 8 | 4);
  expect(s.virtio.activation).toBeDefined();
}

const until = async (cond: () => boolean, what: string, ms = 3000): Promise<void> => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setImmediate(r));
  }
};

/** The vCPU runs (a fresh worker thread loads koffi first) and has had time to program its LAPIC and IOAPIC. */
async function guestReady(rig: Rig): Promise<void> {
  await until(() => rig.thread.state === VcpuRunState.RUNNING, 'the vCPU thread', 10_000);
  await new Promise((r) => setTimeout(r, 20));
}

describe.skipIf(!hasKvm)('VirtioPciWiring on /dev/kvm', () => {
  it('doorbells follow a BAR the guest moved: ioeventfd at the new notify address, the old range unmapped', async () => {
    const N = 500;
    const A = 0xc000_0000;
    const B = 0xc001_0000;
    const s = setup(ENTRY.doorbells, { ecx: N, doorbell: B + BAR0_NOTIFY_OFFSET + 4 });
    bringUp(s);
    s.dev.placeBar(A);
    expect(s.mmio.lookup(A)?.device).toBe(s.dev);
    s.d.wcfg(0x10, B | 0x4, 4); // the guest re-programs BAR 0 (decoding stays on)
    expect(s.dev.barAddress).toBe(B);
    expect(s.mmio.lookup(A)).toBeUndefined();
    expect(s.mmio.lookup(B)?.device).toBe(s.dev);
    let done = false;
    const onAccess = s.rig.onAccess;
    s.rig.onAccess = (kind, addr, size, value) => {
      if (kind === ACCESS.PIO_WRITE) done = true;
      return onAccess(kind, addr, size, value);
    };
    s.rig.run();
    await until(() => done && s.wiring.stats.doorbellWrites === N, `${N} doorbells`);
    expect(s.wiring.stats.doorbellWrites).toBe(N);
    expect(s.virtio.processed.length).toBe(s.wiring.stats.doorbells);
    expect(new Set(s.virtio.processed)).toEqual(new Set([1]));
    // the loop's last write lands on queue 2's slot, where no ioeventfd listens: an MMIO exit, ignored
    expect(s.rig.mmioExits.write).toBe(1);
    expect(s.dev.mmioDoorbells).toBe(1);
    expect(s.errors).toEqual([]);
  });

  it('MSI-X: vectors the driver programs interrupt the guest through irqfds; masked → pending → fired on unmask; re-routed on rewrite', async () => {
    const s = setup(ENTRY.main);
    const { d, dev, rig, wiring } = s;
    const doorbell = new EventFd();
    try {
      rig.vm.registerIoeventfd(doorbell.fd, { address: DOORBELL, length: 0 });
      dev.placeBar(0xc000_8000);
      rig.run();
      await guestReady(rig);
      // the driver's side: entry 1 → vector 0x40 on APIC 0, unmasked; MSI-X on; queue 0 → vector 1
      const e1 = BAR0_MSIX_TABLE_OFFSET + 16;
      d.wbar(e1, 0xfee0_0000, 4);
      d.wbar(e1 + 4, 0, 4);
      d.wbar(e1 + 8, MSI_VECTOR, 4);
      d.wbar(e1 + 12, 0, 4);
      const m = d.capabilities().find((c) => c.id === 0x11)!.at;
      d.wcfg(m + 2, 0x8000, 2);
      bringUp(s);
      d.wcommon(COMMON_QUEUE_SELECT, 0, 2);
      d.wcommon(COMMON_QUEUE_MSIX_VECTOR, 1, 2);
      const irq = s.virtio.activation!.interrupt;
      const handled = (): number => rig.mem.readU32(COUNTERS);
      let rung = 0;
      doorbell.watch((n) => (rung += Number(n)));
      const times: number[] = [];
      for (let i = 1; i <= 100; i++) {
        const t0 = performance.now();
        irq.signalUsedQueue(0);
        await until(() => rung >= i, `MSI ${i}`);
        times.push((performance.now() - t0) * 1000);
        expect(handled()).toBe(i);
      }
      expect(wiring.stats.msiFired).toBe(100);
      times.sort((a, b) => a - b);
      console.log(`MSI-X: 100 notifications, 0 extra deliveries, notify → handler's doorbell median ${times[50]!.toFixed(0)} µs`);
      expect(rig.mmioExits.read + rig.mmioExits.write).toBe(0); // MSI + ioeventfd doorbell: no exits
      // what a device's own thread does (VirtioInterrupt.usedQueueIrqfd): signal the vector's irqfd directly
      const irqfd = irq.usedQueueIrqfd!(0)!;
      expect(irqfd).toBeGreaterThan(2);
      libc().write(irqfd, Uint8Array.of(1, 0, 0, 0, 0, 0, 0, 0), 8);
      await until(() => handled() === 101, 'the MSI sent through the irqfd directly');
      expect(wiring.stats.msiFired).toBe(100); // not through the wiring
      // mask vector 1: the notification becomes a pending bit, and no irqfd is offered
      d.wbar(e1 + 12, 1, 4);
      expect(irq.usedQueueIrqfd!(0)).toBeUndefined();
      irq.signalUsedQueue(0);
      await new Promise((r) => setTimeout(r, 20));
      expect(handled()).toBe(101);
      expect(d.bar(BAR0_MSIX_PBA_OFFSET, 8)).toBe(2);
      d.wbar(e1 + 12, 0, 4);
      await until(() => handled() === 102, 'the pending MSI');
      expect(d.bar(BAR0_MSIX_PBA_OFFSET, 8)).toBe(0);
      // rewrite the entry's data: vector 0x42, whose handler rings a doorbell that exits
      let exitBell = 0;
      const onAccess = rig.onAccess;
      rig.onAccess = (kind, addr, size, value) => {
        if (kind === ACCESS.MMIO_WRITE && addr === MMIO_DOORBELL) exitBell++;
        return onAccess(kind, addr, size, value);
      };
      d.wbar(e1 + 12, 1, 4);
      d.wbar(e1 + 8, MMIO_DOORBELL_VECTOR, 4);
      d.wbar(e1 + 12, 0, 4);
      irq.signalUsedQueue(0);
      await until(() => exitBell === 1, 'the re-routed vector');
      expect(rig.mem.readU32(COUNTERS + 8)).toBe(1);
      expect(s.errors).toEqual([]);
    } finally {
      doorbell.close();
    }
  });

  it.each(['irq-line', 'resample-irqfd'] as const)('INTx (%s): every notification interrupts the guest until its ISR is read', async (intxMode) => {
    const s = setup(ENTRY.main, { intxMode });
    const { dev, rig, wiring } = s;
    const doorbell = new EventFd(); // the handler's doorbell: no exit, as in the MSI-X case
    rig.vm.registerIoeventfd(doorbell.fd, { address: DOORBELL, length: 0 });
    let rung = 0;
    doorbell.watch((n) => (rung += Number(n)));
    dev.placeBar(0xc000_8000);
    const bar = dev.barAddress!;
    // The guest's INTx handler reads "ISR" at 0xc0000000: let that be this device's ISR register.
    const onAccess = rig.onAccess;
    rig.onAccess = (kind, addr, size, value) => onAccess(kind, kind === ACCESS.MMIO_READ && addr === ISR ? bar + BAR0_ISR_OFFSET : addr, size, value);
    rig.run();
    await guestReady(rig);
    bringUp(s); // MSI-X stays off: INTx
    const irq = s.virtio.activation!.interrupt;
    const handled = (): number => rig.mem.readU32(COUNTERS + 4);
    const N = 100;
    const times: number[] = [];
    for (let i = 1; i <= N; i++) {
      const t0 = performance.now();
      irq.signalUsedQueue(1);
      // the handler rang its doorbell (after its EOI) for this notification
      await until(() => rung >= i && dev.isrStatus === 0, `INTx ${i}: handled ${handled()} isr ${dev.isrStatus} asserted ${wiring.stats.intxAsserted} reads ${rig.mmioExits.read}`);
      times.push((performance.now() - t0) * 1000);
    }
    await new Promise((r) => setTimeout(r, 20));
    // Every notification was taken and its ISR read. On this PVM host nearly every level interrupt
    // is delivered a second time after the guest's EOI, with either mode, although the line is low
    // by then (the handler then reads ISR 0, as on a shared line; Linux's virtio INTx handler
    // returns IRQ_NONE). Bounded here, and printed; MSI-X has none (the test above is exact).
    const spurious = handled() - N;
    expect(spurious).toBeGreaterThanOrEqual(0);
    expect(spurious).toBeLessThanOrEqual(N);
    expect(rig.mmioExits.read).toBe(handled()); // one ISR read per delivery
    times.sort((a, b) => a - b);
    doorbell.close();
    console.log(`INTx ${intxMode}: ${N} notifications, ${spurious} extra deliveries, ${wiring.stats.intxAsserted} assertions, notify → handler's doorbell median ${times[N >> 1]!.toFixed(0)} µs`);
    expect(s.errors).toEqual([]);
  });
});
