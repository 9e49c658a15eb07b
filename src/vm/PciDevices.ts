/**
 * The VM's PCI bus 0: the host bridge at 00:00.0 (when there is any device) and the user's virtio
 * devices at 00:01.0, 00:02.0, … in the order given, each with its BAR placed by the VMM in the 32-bit MMIO window
 * (no firmware runs, so nothing else would) and wired to KVM by a {@link VirtioPciWiring}.
 * @module
 */
import type { PciDeviceDescription } from '../arch/ArchLayout';
import { PCI_MMIO32_END, PCI_MMIO32_START } from '../arch/x86_64/Layout';
import type { Bus } from '../devices/Bus';
import { PciHostBridge } from '../devices/pci/PciHostBridge';
import { PciRoot } from '../devices/pci/PciRoot';
import { VirtioPciDevice } from '../devices/virtio/pci/VirtioPciDevice';
import { BAR0_SIZE } from '../devices/virtio/pci/VirtioPciRegisters';
import { VirtioDevice } from '../devices/virtio/VirtioDevice';
import type { VmDevice } from '../devices/VmDevice';
import { ConfigError, KvmkitError } from '../errors';
import type { Vm } from '../hypervisor/Hypervisor';
import { GsiRoutingTable } from '../hypervisor/kvm/IrqRouting';
import type { GuestMemory } from '../memory/GuestMemory';
import { VirtioPciWiring } from './VirtioPciWiring';

/** IOAPIC inputs for PCI INTx: 16..23 (GSIs 0..15 are the ISA IRQs). */
const PCI_INTX_GSI_BASE = 16;
const PCI_INTX_GSI_COUNT = 8;

/** Where each virtio device goes: its slot (device number) and the GSI its INTA# is wired to. */
export interface PciSlot {
  readonly device: VirtioDevice;
  /** Device number on bus 0 (1, 2, …). */
  readonly slot: number;
  /** IOAPIC input of INTA#. */
  readonly intxGsi: number;
}

/** The PCI layout of a VM, decided before the boot tables are built (ACPI `_PRT` needs it). */
export interface PciPlan {
  readonly slots: readonly PciSlot[];
  /** For the layout's firmware tables. */
  readonly descriptions: PciDeviceDescription[];
}

/** Devices attached to a VM that has not ended: one VM at a time per device object. */
const inUse = new WeakSet<VirtioDevice>();

/**
 * Give each virtio device in `devices` a slot (1, 2, … in order) and an INTx GSI.
 * @throws {@link ConfigError} for a device kvmkit cannot attach, a device given twice or already
 *   in a running VM, or more than 31 devices.
 */
export function planPci(devices: readonly VmDevice[]): PciPlan {
  const slots: PciSlot[] = [];
  const seen = new Set<VmDevice>();
  devices.forEach((d, i) => {
    if (!(d instanceof VirtioDevice)) {
      throw new ConfigError(`devices[${i}]`, `is a ${d.deviceKind}, which kvmkit cannot attach: only virtio devices (VirtioBlock, VirtioRng, ...) go on PCI`);
    }
    if (seen.has(d) || inUse.has(d)) {
      throw new ConfigError(`devices[${i}]`, `(${d.deviceKind}) is already attached to ${seen.has(d) ? 'this' : 'a running'} VM; create one device object per VM`);
    }
    seen.add(d);
    const slot = slots.length + 1;
    if (slot > 31) throw new ConfigError('devices', 'must hold at most 31 PCI devices (bus 0 has 32 slots and the host bridge takes one)', devices.length);
    slots.push({ device: d, slot, intxGsi: PCI_INTX_GSI_BASE + ((slot - 1) % PCI_INTX_GSI_COUNT) });
  });
  return { slots, descriptions: slots.map((s) => ({ device: s.slot, intPin: 1, irq: s.intxGsi })) };
}

/** Counters of one PCI device (see `VirtualMachine.deviceStats()`). */
export interface PciDeviceStats {
  /** `virtio-rng`, `virtio-block`, … */
  readonly kind: string;
  /** PCI address, `00:01.0`. */
  readonly address: string;
  /** Doorbell eventfd wake-ups (KVM_IOEVENTFD: no exit). */
  readonly doorbells: number;
  /** Guest doorbell writes those wake-ups covered. */
  readonly doorbellWrites: number;
  /** Doorbells that came as MMIO exits instead (no ioeventfd at the address). */
  readonly mmioDoorbells: number;
  /** MSI-X messages sent through irqfds. */
  readonly msiFired: number;
  /** INTx assertions. */
  readonly intxAsserted: number;
}

/** What {@link PciDevices} needs from the VM. */
export interface PciDevicesContext {
  vm: Vm;
  mem: GuestMemory;
  mmio: Bus;
  /** Device failures and wiring problems, as non-fatal errors. */
  onError: (err: Error) => void;
}

/** PCI bus 0 of a running VM, with its virtio devices wired to KVM. */
export class PciDevices {
  /** The bus (config mechanism #1 routes here). */
  readonly root = new PciRoot();
  /** The host bridge, at 00:00.0 when the VM has PCI devices. */
  readonly hostBridge = new PciHostBridge();
  /** The virtio functions, in slot order. */
  readonly functions: VirtioPciDevice[] = [];
  /** Their KVM wiring, same order. */
  readonly wirings: VirtioPciWiring[] = [];
  /** The VM's GSI routing table (MSI-X routes are added as guests program vectors). */
  readonly routing: GsiRoutingTable;
  #closing: Promise<void> | undefined;

  constructor(plan: PciPlan, ctx: PciDevicesContext) {
    this.routing = new GsiRoutingTable((routes) => ctx.vm.setGsiRouting(routes));
    // The host bridge comes with the first device: a VM without PCI devices keeps an empty bus 0.
    if (plan.slots.length > 0) this.root.add(this.hostBridge, { device: 0 });
    let next = PCI_MMIO32_START;
    try {
      for (const s of plan.slots) {
        const wiring = new VirtioPciWiring({ vm: ctx.vm, mmio: ctx.mmio, routing: this.routing, onError: ctx.onError }, s.intxGsi);
        this.wirings.push(wiring);
        const dev = new VirtioPciDevice(s.device, {
          mem: ctx.mem,
          intx: wiring,
          intxIrq: s.intxGsi,
          onBarChange: (c) => wiring.barChanged(c),
          onError: (e) => ctx.onError(new KvmkitError(`${s.device.deviceKind} at 00:${s.slot.toString(16).padStart(2, '0')}.0 needs a reset: ${e.message}`, { cause: e })),
        });
        this.functions.push(dev);
        this.root.add(dev, { device: s.slot });
        inUse.add(s.device);
        wiring.attach(dev);
        // The VMM places BARs itself (no firmware): naturally aligned, upwards from the window's start.
        next = Math.ceil(next / BAR0_SIZE) * BAR0_SIZE;
        if (next + BAR0_SIZE > PCI_MMIO32_END) throw new ConfigError('devices', 'do not fit in the 32-bit PCI MMIO window', plan.slots.length);
        dev.placeBar(next);
        next += BAR0_SIZE;
      }
    } catch (e) {
      void this.close();
      throw e;
    }
  }

  /** Counters per virtio function, in slot order. */
  stats(): PciDeviceStats[] {
    return this.functions.map((f, i) => {
      const w = this.wirings[i]!.stats;
      return {
        kind: f.device.deviceKind,
        address: `00:${(i + 1).toString(16).padStart(2, '0')}.0`,
        doorbells: w.doorbells,
        doorbellWrites: w.doorbellWrites,
        mmioDoorbells: f.mmioDoorbells,
        msiFired: w.msiFired,
        intxAsserted: w.intxAsserted,
      };
    });
  }

  /**
   * Close every wiring (eventfds, irqfds, ioeventfds, GSIs) now, and the devices' host resources;
   * resolves when the devices are closed. Call after the vCPUs stopped and before the VM fd
   * closes. Idempotent.
   */
  close(): Promise<void> {
    if (this.#closing) return this.#closing;
    for (const w of this.wirings) w.close();
    // The VM is done with them: they may join another VM once closed.
    for (const f of this.functions) inUse.delete(f.device);
    this.#closing = Promise.all(this.functions.map((f) => f.close())).then(() => undefined);
    return this.#closing;
  }
}
