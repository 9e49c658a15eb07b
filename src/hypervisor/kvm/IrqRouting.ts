/**
 * KVM GSI routing (KVM_SET_GSI_ROUTING): which interrupt controller input, or which MSI message,
 * each global system interrupt number stands for. An irqfd is bound to a GSI, so MSI-X vectors
 * reach the guest by routing one GSI per vector to the vector's (address, data) message.
 *
 * KVM_SET_GSI_ROUTING replaces the whole table, including the default irqchip routes
 * KVM_CREATE_IRQCHIP installed (virt/kvm/irqchip.c; arch/x86/kvm/irq_comm.c `default_routing`),
 * so {@link GsiRoutingTable} always sends those along with the MSI routes.
 * @module
 */
import { ConfigError } from '../../errors';

/** KVM_IRQ_ROUTING_IRQCHIP (include/uapi/linux/kvm.h): the GSI drives an irqchip pin. */
export const KVM_IRQ_ROUTING_IRQCHIP = 1;
/** KVM_IRQ_ROUTING_MSI (include/uapi/linux/kvm.h): the GSI sends an MSI message. */
export const KVM_IRQ_ROUTING_MSI = 2;
/** KVM_IRQCHIP_* (arch/x86/include/uapi/asm/kvm.h): the in-kernel 8259 pair and IOAPIC. */
export const KVM_IRQCHIP = { PIC_MASTER: 0, PIC_SLAVE: 1, IOAPIC: 2 } as const;
/** Pins of KVM's IOAPIC (arch/x86/kvm/ioapic.h IOAPIC_NUM_PINS); GSIs 0..23 are its inputs. */
export const IOAPIC_NUM_PINS = 24;
/** Pins of the two 8259s together (GSIs 0..15 also drive them). */
export const PIC_NUM_PINS = 16;
/** KVM_MAX_IRQ_ROUTES (include/linux/kvm_host.h): the largest table KVM accepts (x86). */
export const KVM_MAX_IRQ_ROUTES = 4096;

/** sizeof(struct kvm_irq_routing) header: nr u32, flags u32 (include/uapi/linux/kvm.h). */
export const IRQ_ROUTING_HEADER_SIZE = 8;
/**
 * sizeof(struct kvm_irq_routing_entry): gsi u32 @0, type u32 @4, flags u32 @8, pad u32 @12, then a
 * 32-byte union @16 (irqchip: irqchip u32, pin u32; msi: address_lo u32, address_hi u32, data u32,
 * devid u32).
 */
export const IRQ_ROUTING_ENTRY_SIZE = 48;

/** A GSI wired to an interrupt controller pin. */
export interface IrqchipRoute {
  readonly kind: 'irqchip';
  readonly gsi: number;
  /** {@link KVM_IRQCHIP} value. */
  readonly irqchip: number;
  readonly pin: number;
}

/** A GSI that sends an MSI message (PCI Local Bus 3.0 §6.8: a dword write of `data` to `address`). */
export interface MsiRoute {
  readonly kind: 'msi';
  readonly gsi: number;
  /** Message address (x86: 0xFEEx_xxxx, destination APIC id in bits 19:12). */
  readonly address: bigint;
  /** Message data (x86: vector in bits 7:0, delivery mode in 10:8, trigger mode in 15). */
  readonly data: number;
}

/** One entry of the GSI routing table. */
export type IrqRoute = IrqchipRoute | MsiRoute;

/**
 * The routes KVM_CREATE_IRQCHIP installs on x86 (arch/x86/kvm/irq_comm.c `default_routing`):
 * GSI n → IOAPIC pin n for n < 24, and GSI n → 8259 pin n % 8 (master below 8, slave from 8) for
 * n < 16.
 */
export function defaultIrqchipRoutes(): IrqchipRoute[] {
  const routes: IrqchipRoute[] = [];
  for (let gsi = 0; gsi < IOAPIC_NUM_PINS; gsi++) {
    routes.push({ kind: 'irqchip', gsi, irqchip: KVM_IRQCHIP.IOAPIC, pin: gsi });
    if (gsi < PIC_NUM_PINS) {
      routes.push({ kind: 'irqchip', gsi, irqchip: gsi < 8 ? KVM_IRQCHIP.PIC_MASTER : KVM_IRQCHIP.PIC_SLAVE, pin: gsi % 8 });
    }
  }
  return routes;
}

/** Encode a struct kvm_irq_routing with its entries, for KVM_SET_GSI_ROUTING. */
export function encodeIrqRouting(routes: readonly IrqRoute[]): Uint8Array {
  const buf = new Uint8Array(IRQ_ROUTING_HEADER_SIZE + routes.length * IRQ_ROUTING_ENTRY_SIZE);
  const dv = new DataView(buf.buffer);
  dv.setUint32(0, routes.length, true); // nr
  dv.setUint32(4, 0, true); // flags: must be 0
  routes.forEach((r, i) => {
    const o = IRQ_ROUTING_HEADER_SIZE + i * IRQ_ROUTING_ENTRY_SIZE;
    dv.setUint32(o, r.gsi, true);
    if (r.kind === 'irqchip') {
      dv.setUint32(o + 4, KVM_IRQ_ROUTING_IRQCHIP, true);
      dv.setUint32(o + 16, r.irqchip, true);
      dv.setUint32(o + 20, r.pin, true);
    } else {
      dv.setUint32(o + 4, KVM_IRQ_ROUTING_MSI, true);
      dv.setUint32(o + 16, Number(r.address & 0xffff_ffffn), true); // address_lo
      dv.setUint32(o + 20, Number((r.address >> 32n) & 0xffff_ffffn), true); // address_hi
      dv.setUint32(o + 24, r.data >>> 0, true);
    }
  });
  return buf;
}

/**
 * A VM's GSI routing table: the default irqchip routes plus MSI routes on GSIs handed out from
 * {@link IOAPIC_NUM_PINS} up. Every change is applied at once through `apply`
 * (`KvmVm.setGsiRouting`), since KVM only takes whole tables.
 */
export class GsiRoutingTable {
  readonly #apply: (routes: readonly IrqRoute[]) => void;
  readonly #base: readonly IrqchipRoute[] = defaultIrqchipRoutes();
  readonly #msi = new Map<number, MsiRoute>();
  readonly #allocated = new Set<number>();
  readonly #first: number;

  /**
   * @param apply Installs a full table (KVM_SET_GSI_ROUTING).
   * @param firstGsi Lowest GSI {@link GsiRoutingTable.allocate} hands out (default 24, above the IOAPIC pins).
   */
  constructor(apply: (routes: readonly IrqRoute[]) => void, firstGsi = IOAPIC_NUM_PINS) {
    this.#apply = apply;
    this.#first = firstGsi;
  }

  /**
   * Reserve a free GSI for an MSI vector (it routes nowhere until {@link GsiRoutingTable.setMsi}).
   * @throws {@link ConfigError} when all GSIs below {@link KVM_MAX_IRQ_ROUTES} are taken.
   */
  allocate(): number {
    for (let gsi = this.#first; gsi < KVM_MAX_IRQ_ROUTES; gsi++) {
      if (!this.#allocated.has(gsi)) {
        this.#allocated.add(gsi);
        return gsi;
      }
    }
    throw new ConfigError('MSI vectors', `must fit in KVM's ${KVM_MAX_IRQ_ROUTES} GSIs; use fewer devices or queues`);
  }

  /** Give back a GSI from {@link GsiRoutingTable.allocate}, removing its route. */
  release(gsi: number): void {
    this.#allocated.delete(gsi);
    if (this.#msi.delete(gsi)) this.#commit();
  }

  /** Route `gsi` to the MSI message (`address`, `data`) and apply the table (no-op if unchanged). */
  setMsi(gsi: number, address: bigint, data: number): void {
    const old = this.#msi.get(gsi);
    if (old && old.address === address && old.data === data >>> 0) return;
    this.#msi.set(gsi, { kind: 'msi', gsi, address, data: data >>> 0 });
    this.#commit();
  }

  /** Remove `gsi`'s MSI route (it stays allocated) and apply the table. */
  clearMsi(gsi: number): void {
    if (this.#msi.delete(gsi)) this.#commit();
  }

  /** The full table as last applied: default routes, then MSI routes by GSI. */
  get routes(): IrqRoute[] {
    return [...this.#base, ...[...this.#msi.values()].sort((a, b) => a.gsi - b.gsi)];
  }

  #commit(): void {
    this.#apply(this.routes);
  }
}
