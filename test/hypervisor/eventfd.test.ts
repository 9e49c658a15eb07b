/**
 * The eventfd paths on /dev/kvm, from the hypervisor side, with a tiny guest (unrealGuest.ts):
 * - KVM_IOEVENTFD: guest doorbell writes reach an eventfd with no MMIO exit;
 * - KVM_IRQFD + KVM_SET_GSI_ROUTING (MSI route): an eventfd write interrupts the guest;
 * - INTx for comparison: a level irqfd with a resample eventfd on IOAPIC GSI 16, the guest reading
 *   an "ISR" register (an MMIO exit served on the main thread) as a virtio INTx handler does.
 * The cases are ping-pong benchmarks (interrupt → guest handler → doorbell → main loop) and print
 * their round-trip times: issue 3 asks which interrupt path is faster here.
 */
import { existsSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { KvmError } from '../../src/errors';
import { EventFd } from '../../src/hypervisor/kvm/EventFd';
import { defaultIrqchipRoutes, encodeIrqRouting, GsiRoutingTable, IOAPIC_NUM_PINS, IRQ_ROUTING_ENTRY_SIZE, KVM_IRQCHIP } from '../../src/hypervisor/kvm/IrqRouting';
import { encodeIoeventfd, KVM_IOEVENTFD_FLAG_DATAMATCH, KVM_IOEVENTFD_FLAG_DEASSIGN, KVM_IOEVENTFD_FLAG_PIO } from '../../src/hypervisor/kvm/Ioeventfd';
import { encodeIrqfd, KVM_IRQFD_FLAG_DEASSIGN, KVM_IRQFD_FLAG_RESAMPLE } from '../../src/hypervisor/kvm/Irqfd';
import { ACCESS } from '../../src/vm/mailbox';
import { processResources } from '../helpers/env';
import {
  COUNTERS, DOORBELL, ENTRY, INTX_GSI, ISR, makeRig, MMIO_DOORBELL, MMIO_DOORBELL_VECTOR, MSI_VECTOR, type Rig,
} from './unrealGuest';

const hasKvm = existsSync('/dev/kvm');

let rig: Rig | undefined;
afterEach(async () => {
  await rig?.close();
  rig = undefined;
});

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const pct = (xs: number[], p: number): number => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))]!;

describe('struct encoders (include/uapi/linux/kvm.h layouts)', () => {
  it('kvm_ioeventfd: datamatch @0, addr @8, len @16, fd @20, flags @24, 64 bytes', () => {
    const b = encodeIoeventfd(7, { address: 0xc000_1000, length: 2, datamatch: 3n, pio: true }, true);
    const dv = new DataView(b.buffer);
    expect(b.length).toBe(64);
    expect(dv.getBigUint64(0, true)).toBe(3n);
    expect(dv.getBigUint64(8, true)).toBe(0xc000_1000n);
    expect(dv.getUint32(16, true)).toBe(2);
    expect(dv.getInt32(20, true)).toBe(7);
    expect(dv.getUint32(24, true)).toBe(KVM_IOEVENTFD_FLAG_DATAMATCH | KVM_IOEVENTFD_FLAG_PIO | KVM_IOEVENTFD_FLAG_DEASSIGN);
    expect(new DataView(encodeIoeventfd(1, { address: 8 }).buffer).getUint32(24, true)).toBe(0);
  });

  it('kvm_irqfd: fd @0, gsi @4, flags @8, resamplefd @12, 32 bytes', () => {
    const dv = new DataView(encodeIrqfd(5, 30, { resampleFd: 9 }).buffer);
    expect([dv.getUint32(0, true), dv.getUint32(4, true), dv.getUint32(8, true), dv.getUint32(12, true)]).toEqual([5, 30, KVM_IRQFD_FLAG_RESAMPLE, 9]);
    expect(new DataView(encodeIrqfd(5, 30, { deassign: true }).buffer).getUint32(8, true)).toBe(KVM_IRQFD_FLAG_DEASSIGN);
  });

  it('kvm_irq_routing: KVM default routes (IOAPIC 0..23, PIC 0..15) and 48-byte MSI entries', () => {
    const routes = defaultIrqchipRoutes();
    expect(routes).toHaveLength(24 + 16);
    expect(routes.filter((r) => r.irqchip === KVM_IRQCHIP.IOAPIC).map((r) => r.pin)).toEqual([...Array(24).keys()]);
    expect(routes.find((r) => r.gsi === 9 && r.irqchip !== KVM_IRQCHIP.IOAPIC)).toEqual({ kind: 'irqchip', gsi: 9, irqchip: KVM_IRQCHIP.PIC_SLAVE, pin: 1 });
    const buf = encodeIrqRouting([{ kind: 'msi', gsi: 24, address: 0x1_fee0_1000n, data: 0x4041 }]);
    const dv = new DataView(buf.buffer);
    expect(buf.length).toBe(8 + IRQ_ROUTING_ENTRY_SIZE);
    expect([dv.getUint32(0, true), dv.getUint32(8, true), dv.getUint32(12, true)]).toEqual([1, 24, 2]);
    expect([dv.getUint32(24, true), dv.getUint32(28, true), dv.getUint32(32, true)]).toEqual([0xfee0_1000, 1, 0x4041]);
  });

  it('GsiRoutingTable hands out GSIs above the IOAPIC and applies whole tables only on change', () => {
    const applied: number[] = [];
    const t = new GsiRoutingTable((r) => applied.push(r.length));
    const a = t.allocate();
    const b = t.allocate();
    expect([a, b]).toEqual([IOAPIC_NUM_PINS, IOAPIC_NUM_PINS + 1]);
    t.setMsi(a, 0xfee0_0000n, 0x30);
    t.setMsi(a, 0xfee0_0000n, 0x30); // unchanged: not applied again
    t.setMsi(b, 0xfee0_0000n, 0x31);
    expect(applied).toEqual([41, 42]);
    t.release(a);
    expect(t.allocate()).toBe(a);
    expect(t.routes.filter((r) => r.kind === 'msi').map((r) => r.gsi)).toEqual([b]);
  });
});

describe.skipIf(!hasKvm)('eventfds on /dev/kvm', () => {
  it('EventFd counts signals, reads non-blocking, and its watch fires on the main loop', async () => {
    const before = processResources().fds;
    const e = new EventFd();
    expect(e.take()).toBe(0n);
    e.signal();
    e.signal(4n);
    expect(e.take()).toBe(5n);
    const seen = new Promise<bigint>((resolve) => e.watch(resolve));
    e.signal(3n);
    expect(await seen).toBe(3n);
    e.close();
    e.close();
    expect(e.closed).toBe(true);
    expect(processResources().fds).toBe(before);
  });

  it('KVM_IOEVENTFD: 1000 guest doorbell writes arrive with zero MMIO exits; other writes still exit', async () => {
    const N = 1000;
    rig = makeRig(ENTRY.doorbells, { ecx: N });
    const doorbell = new EventFd();
    try {
      rig.vm.registerIoeventfd(doorbell.fd, { address: DOORBELL, length: 0 });
      let done!: () => void;
      const finished = new Promise<void>((r) => (done = r));
      rig.onAccess = (kind) => {
        if (kind === ACCESS.PIO_WRITE) done();
      };
      await finished;
      expect(doorbell.take()).toBe(BigInt(N));
      expect(rig.mmioExits).toEqual({ read: 0, write: 1 }); // the 4-byte write at 0xd0004 only
      rig.vm.unregisterIoeventfd(doorbell.fd, { address: DOORBELL, length: 0 });
      expect(() => rig!.vm.unregisterIoeventfd(doorbell.fd, { address: DOORBELL, length: 0 })).toThrow(KvmError);
    } finally {
      doorbell.close();
    }
  });

  it('KVM_IRQFD: an MSI route and a level INTx (resample) both interrupt the guest; ping-pong timings', async () => {
    const ROUNDS = Number(process.env.KVMKIT_IRQ_ROUNDS ?? 300);
    rig = makeRig(ENTRY.main);
    const r = rig;
    const doorbell = new EventFd();
    const msiFd = new EventFd();
    const intxFd = new EventFd();
    const resampleFd = new EventFd();
    const mmioMsiFd = new EventFd();
    const table = new GsiRoutingTable((routes) => r.vm.setGsiRouting(routes));
    const gsi = table.allocate();
    const gsi2 = table.allocate();
    try {
      r.vm.registerIoeventfd(doorbell.fd, { address: DOORBELL, length: 0 });
      // MSI message (Intel SDM vol. 3 §11.11): address 0xFEE00000 | dest APIC id << 12, data = vector (fixed, edge).
      table.setMsi(gsi, 0xfee0_0000n, MSI_VECTOR);
      r.vm.registerIrqfd(msiFd.fd, gsi);
      table.setMsi(gsi2, 0xfee0_0000n, MMIO_DOORBELL_VECTOR);
      r.vm.registerIrqfd(mmioMsiFd.fd, gsi2);
      // INTx: a level-triggered irqfd on IOAPIC GSI 16; KVM lowers the line when the guest EOIs and
      // signals the resample eventfd, where a device would raise it again if its ISR is still set.
      r.vm.registerIrqfd(intxFd.fd, INTX_GSI, resampleFd.fd);
      let resamples = 0;
      resampleFd.watch((n) => (resamples += Number(n)));
      let waiter: (() => void) | undefined;
      r.onAccess = (kind, addr) => {
        if (kind === ACCESS.MMIO_READ && addr === ISR) return 1n;
        if (kind === ACCESS.MMIO_WRITE && addr === MMIO_DOORBELL) waiter?.();
        return undefined;
      };
      // Let the guest program its LAPIC and IOAPIC and reach hlt.
      await new Promise((res) => setTimeout(res, 50));

      doorbell.watch(() => waiter?.());
      const pingPong = async (fire: () => void): Promise<number[]> => {
        const times: number[] = [];
        for (let i = 0; i < ROUNDS; i++) {
          const t0 = performance.now();
          await new Promise<void>((res, rej) => {
            const timer = setTimeout(() => rej(new Error(`no doorbell after ${i} rounds`)), 2000);
            waiter = () => {
              clearTimeout(timer);
              res();
            };
            fire();
          });
          times.push((performance.now() - t0) * 1000);
        }
        return times;
      };
      const msi = await pingPong(() => msiFd.signal());
      expect(r.mem.readU32(COUNTERS)).toBe(ROUNDS);
      expect(r.mmioExits).toEqual({ read: 0, write: 0 }); // MSI + doorbell: no exit at all
      const intx = await pingPong(() => intxFd.signal());
      expect(r.mem.readU32(COUNTERS + 4)).toBe(ROUNDS);
      expect(r.mmioExits.read).toBe(ROUNDS); // one ISR read per INTx interrupt
      await new Promise((res) => setTimeout(res, 20));
      expect(resamples).toBeGreaterThan(0);
      const exitsBefore = r.mmioExits.write;
      const mmioBell = await pingPong(() => mmioMsiFd.signal());
      expect(r.mem.readU32(COUNTERS + 8)).toBe(ROUNDS);
      expect(r.mmioExits.write - exitsBefore).toBe(ROUNDS);
      const f = (xs: number[]): string => `${median(xs).toFixed(0)}/${pct(xs, 0.9).toFixed(0)}`;
      console.log(
        `interrupt round trip (signal → guest handler → doorbell → main loop), ${ROUNDS} rounds, µs median/p90: ` +
        `MSI + ioeventfd doorbell ${f(msi)}, INTx (resample irqfd) + ISR read + ioeventfd doorbell ${f(intx)}, ` +
        `MSI + doorbell as an MMIO exit ${f(mmioBell)}`,
      );
      doorbell.unwatch();
      r.vm.unregisterIrqfd(msiFd.fd, gsi);
      r.vm.unregisterIrqfd(intxFd.fd, INTX_GSI);
    } finally {
      for (const e of [doorbell, msiFd, intxFd, resampleFd, mmioMsiFd]) e.close();
    }
  });
});
