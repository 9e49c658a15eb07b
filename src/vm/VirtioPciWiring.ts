/**
 * The KVM side of one virtio-pci function (DESIGN.md, threading model): its BAR on the VM's MMIO
 * bus, one KVM_IOEVENTFD doorbell per queue watched on the main loop, MSI-X vectors as GSIs
 * routed to their messages with an irqfd each, and INTA# on its IOAPIC input ({@link IntxMode}).
 * Everything it opens is closed by {@link VirtioPciWiring.close}.
 * @module
 */
import type { Bus } from '../devices/Bus';
import type { IrqLine } from '../devices/BusDevice';
import type { MsiMessage, MsixVectorSink } from '../devices/virtio/pci/MsixTable';
import { type BarChange, VIRTIO_PCI_BAR, type VirtioPciDevice } from '../devices/virtio/pci/VirtioPciDevice';
import { BAR0_SIZE } from '../devices/virtio/pci/VirtioPciRegisters';
import { KvmkitError } from '../errors';
import type { Vm } from '../hypervisor/Hypervisor';
import { EventFd } from '../hypervisor/kvm/EventFd';
import type { GsiRoutingTable } from '../hypervisor/kvm/IrqRouting';

/** x86 MSI messages go to the LAPIC window 0xFEEx_xxxx (Intel SDM vol. 3 §11.11.1); anything else is not routed. */
function isX86MsiAddress(address: bigint): boolean {
  return (address >> 20n) === 0xfeen;
}

/**
 * How INTA# reaches KVM's IOAPIC:
 * - `irq-line`: KVM_IRQ_LINE from the main thread on every level change (raised on a
 *   notification, lowered by the ISR read), so the IOAPIC sees the true level at the guest's EOI;
 * - `resample-irqfd`: a level irqfd (KVM_IRQFD_FLAG_RESAMPLE): raising is an eventfd write; KVM
 *   lowers the line at the EOI and signals the resample eventfd, where the line is raised again
 *   if the ISR was not read.
 */
export type IntxMode = 'irq-line' | 'resample-irqfd';

/**
 * The INTx mode kvmkit uses: `irq-line`. INTx only serves guests that leave MSI-X off, and its
 * cost is the ISR-read exit either way (~45 µs more than MSI-X per interrupt here, see
 * test/hypervisor/eventfd.test.ts), so the simplest exact level model wins: the IOAPIC sees the
 * device's level at every EOI. `resample-irqfd` depends on when KVM resamples: on this PVM host it
 * signals at delivery, before the guest reads the ISR, so it re-asserts every interrupt once
 * (test/vm/virtio-wiring.test.ts counts 2 assertions per notification).
 */
export const DEFAULT_INTX_MODE: IntxMode = 'irq-line';

/** Counters, for tests and benchmarks. */
export interface WiringStats {
  /** Doorbells taken from ioeventfds (a counter read may cover several guest writes). */
  doorbells: number;
  /** Guest writes those reads covered (the eventfd counters' sum). */
  doorbellWrites: number;
  /** MSI-X messages sent through irqfds. */
  msiFired: number;
  /** INTx assertions through the level irqfd (including re-assertions on resample). */
  intxAsserted: number;
}

/** What a wiring needs from the VM. */
export interface WiringContext {
  vm: Vm;
  mmio: Bus;
  routing: GsiRoutingTable;
  /** Non-fatal problems (a BAR moved over another device, a failed ioctl). */
  onError: (err: Error) => void;
}

/** One MSI-X vector's GSI and irqfd. */
interface Vector {
  gsi: number;
  fd: EventFd;
  /** The GSI is routed to an x86 MSI message (signalling the irqfd interrupts the guest). */
  routed: boolean;
}

/**
 * Connects a {@link VirtioPciDevice} to KVM. Create it before the guest runs, then
 * {@link VirtioPciWiring.attach} it; {@link VirtioPciWiring.barChanged} must receive the device's `onBarChange` events.
 */
export class VirtioPciWiring implements MsixVectorSink, IrqLine {
  readonly stats: WiringStats = { doorbells: 0, doorbellWrites: 0, msiFired: 0, intxAsserted: 0 };
  readonly #ctx: WiringContext;
  readonly #intxGsi: number;
  #dev: VirtioPciDevice | undefined;
  readonly #doorbells: EventFd[] = [];
  /** Notify addresses the doorbells are registered at, index = queue. */
  #doorbellAt: (number | undefined)[] = [];
  readonly #vectors = new Map<number, Vector>();
  #intxFd: EventFd | undefined;
  #resampleFd: EventFd | undefined;
  #intxLevel = false;
  #closed = false;

  readonly #intxMode: IntxMode;

  /**
   * @param intxGsi The IOAPIC input INTA# is wired to (16..23).
   * @param intxMode How INTA# reaches KVM (default {@link DEFAULT_INTX_MODE}).
   */
  constructor(ctx: WiringContext, intxGsi: number, intxMode: IntxMode = DEFAULT_INTX_MODE) {
    this.#ctx = ctx;
    this.#intxGsi = intxGsi;
    this.#intxMode = intxMode;
  }

  /**
   * Take over `dev`: its MSI-X sink, one doorbell eventfd per queue (registered wherever the BAR
   * is decoded) and, in `resample-irqfd` mode, the INTx irqfd (falling back to KVM_IRQ_LINE when
   * KVM refuses it).
   */
  attach(dev: VirtioPciDevice): void {
    this.#dev = dev;
    dev.msix.sink = this;
    for (let q = 0; q < dev.queues.length; q++) this.#doorbells.push(new EventFd());
    // A device with a thread of its own waits on its doorbells there; else the main loop does.
    if (!dev.device.takeDoorbells(this.#doorbells.map((fd) => fd.fd))) {
      this.#doorbells.forEach((fd, q) =>
        fd.watch((n) => {
          this.stats.doorbells++;
          this.stats.doorbellWrites += Number(n);
          this.#dev?.notifyQueue(q);
        }),
      );
    }
    this.#doorbellAt = new Array(dev.queues.length);
    if (this.#intxMode === 'resample-irqfd') this.#openIntxIrqfd(dev);
    if (dev.barAddress !== undefined) this.barChanged({ bar: VIRTIO_PCI_BAR, size: BAR0_SIZE, from: undefined, to: dev.barAddress });
  }

  #openIntxIrqfd(dev: VirtioPciDevice): void {
    try {
      const intx = new EventFd();
      const resample = new EventFd();
      this.#intxFd = intx;
      this.#resampleFd = resample;
      this.#ctx.vm.registerIrqfd(intx.fd, this.#intxGsi, resample.fd);
      // KVM lowered the line at the guest's EOI: raise it again while the device still wants it (ISR not read).
      resample.watch(() => {
        if (this.#intxLevel) this.#assert();
      });
    } catch (e) {
      this.#intxFd?.close();
      this.#resampleFd?.close();
      this.#intxFd = this.#resampleFd = undefined;
      this.#ctx.onError(new KvmkitError(`${dev.name}: no level irqfd for INTx (${(e as Error).message}); using KVM_IRQ_LINE`, { cause: e }));
    }
  }

  /** Follow the device's BAR: move its MMIO range and re-register the doorbells. */
  barChanged(change: BarChange): void {
    const dev = this.#dev;
    if (!dev || this.#closed) return;
    const { mmio } = this.#ctx;
    if (change.from !== undefined && mmio.lookup(change.from)?.device === dev) mmio.remove(change.from);
    this.#unregisterDoorbells();
    if (change.to === undefined) return;
    try {
      mmio.insert(dev, change.to, change.size);
    } catch (e) {
      // The guest put the BAR over another device: leave it undecoded, as a conflicting BAR would be.
      this.#ctx.onError(new KvmkitError(`${dev.name}: BAR ${change.bar} at 0x${change.to.toString(16)} cannot be mapped: ${(e as Error).message}`, { cause: e }));
      return;
    }
    for (let q = 0; q < this.#doorbells.length; q++) {
      const at = dev.notifyAddress(q);
      if (at === undefined) continue;
      try {
        // length 0: any write size matches (Linux writes 16 bits, others may write 32); no datamatch.
        this.#ctx.vm.registerIoeventfd(this.#doorbells[q]!.fd, { address: at, length: 0 });
        this.#doorbellAt[q] = at;
      } catch (e) {
        // The doorbell still works as an MMIO exit (VirtioPciDevice.write), just slower.
        this.#ctx.onError(new KvmkitError(`${dev.name}: KVM_IOEVENTFD for queue ${q} failed; doorbells will exit to the VMM`, { cause: e }));
      }
    }
  }

  // ---- MsixVectorSink ----

  route(vector: number, message: MsiMessage): void {
    if (this.#closed) return;
    let v = this.#vectors.get(vector);
    try {
      if (!v) {
        const gsi = this.#ctx.routing.allocate();
        const fd = new EventFd();
        v = { gsi, fd, routed: false };
        this.#vectors.set(vector, v);
        this.#ctx.vm.registerIrqfd(fd.fd, gsi);
      }
      v.routed = false;
      if (isX86MsiAddress(message.address)) {
        this.#ctx.routing.setMsi(v.gsi, message.address, message.data);
        v.routed = true;
      } else {
        this.#ctx.routing.clearMsi(v.gsi);
      }
    } catch (e) {
      this.#ctx.onError(new KvmkitError(`${this.#dev?.name}: routing MSI-X vector ${vector} failed`, { cause: e }));
    }
  }

  fire(vector: number): void {
    const v = this.#vectors.get(vector);
    if (!v) return;
    this.stats.msiFired++;
    v.fd.signal();
  }

  irqfd(vector: number): number | undefined {
    const v = this.#vectors.get(vector);
    return v?.routed && !this.#closed ? v.fd.fd : undefined;
  }

  // ---- IrqLine (INTA#) ----

  set(level: boolean): void {
    if (this.#closed) return;
    const was = this.#intxLevel;
    this.#intxLevel = level;
    if (this.#intxFd) {
      // The irqfd asserts; KVM deasserts at EOI and signals the resample eventfd.
      if (level && !was) this.#assert();
    } else if (level !== was) {
      this.#ctx.vm.setIrqLine(this.#intxGsi, level);
      if (level) this.stats.intxAsserted++;
    }
  }

  #assert(): void {
    this.stats.intxAsserted++;
    this.#intxFd!.signal();
  }

  #unregisterDoorbells(): void {
    this.#doorbellAt.forEach((at, q) => {
      if (at === undefined) return;
      try {
        this.#ctx.vm.unregisterIoeventfd(this.#doorbells[q]!.fd, { address: at, length: 0 });
      } catch {
        // the VM may already be gone; nothing is left registered then
      }
      this.#doorbellAt[q] = undefined;
    });
  }

  /** Unregister and close every eventfd and give the GSIs back. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#unregisterDoorbells();
    this.#closed = true;
    for (const fd of this.#doorbells) fd.close();
    this.#doorbells.length = 0;
    const vm = this.#ctx.vm;
    for (const v of this.#vectors.values()) {
      try {
        vm.unregisterIrqfd(v.fd.fd, v.gsi);
      } catch {
        // closing the VM fd drops it anyway
      }
      v.fd.close();
      try {
        this.#ctx.routing.release(v.gsi);
      } catch {
        // as above
      }
    }
    this.#vectors.clear();
    if (this.#intxFd) {
      try {
        vm.unregisterIrqfd(this.#intxFd.fd, this.#intxGsi);
      } catch {
        // as above
      }
    }
    this.#intxFd?.close();
    this.#resampleFd?.close();
    this.#dev = undefined;
  }
}
