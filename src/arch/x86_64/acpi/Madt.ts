/**
 * The Multiple APIC Description Table (signature `APIC`), revision 5.
 *
 * Layout: ACPI 6.5 §5.2.12, Table 5.19 (header), and the Interrupt Controller Structures of
 * §5.2.12.2 (Processor Local APIC), §5.2.12.3 (I/O APIC), §5.2.12.5 (Interrupt Source Override)
 * and §5.2.12.7 (Local APIC NMI).
 *
 * ISA IRQs are identity-mapped to IOAPIC pins: there is no IRQ0 -> GSI2 override, because KVM's
 * default GSI routing (virt/kvm/irqchip.c / arch/x86/kvm/irq_comm.c `default_routing`) sends GSI 0,
 * which the in-kernel PIT raises, to IOAPIC pin 0; crosvm and Firecracker do the same. The only
 * override is the SCI's, to make IRQ 9 level-triggered active-high.
 * @module
 */

import { IOAPIC_START, LAPIC_START, SCI_IRQ } from '../Layout';
import { newAcpiTable, sealAcpiTable } from './AcpiTable';

/** MADT revision (ACPI 6.3+). */
export const MADT_REVISION = 5;
/** Offset of the interrupt controller structures (after header, Local Interrupt Controller Address and Flags). */
export const MADT_ENTRIES_OFFSET = 44;

/** MADT flags (Table 5.20): bit 0 PCAT_COMPAT, a dual 8259 is present (KVM's in-kernel PIC). */
export const MADT_PCAT_COMPAT = 1 << 0;

/** Interrupt Controller Structure types (Table 5.21). */
export const MadtEntryType = {
  LOCAL_APIC: 0,
  IO_APIC: 1,
  INTERRUPT_SOURCE_OVERRIDE: 2,
  LOCAL_APIC_NMI: 4,
} as const;

/** MPS INTI flags (Table 5.26): polarity in bits 1:0, trigger mode in bits 3:2. */
export const MpsIntiFlags = {
  CONFORMS: 0,
  ACTIVE_HIGH: 0b01,
  ACTIVE_LOW: 0b11,
  EDGE: 0b01 << 2,
  LEVEL: 0b11 << 2,
} as const;

/** Processor Local APIC flags (Table 5.23): bit 0 Enabled. */
export const LAPIC_ENABLED = 1;

/** Sizes of the structures kvmkit emits. */
const LOCAL_APIC_SIZE = 8;
const IO_APIC_SIZE = 12;
const ISO_SIZE = 10;
const LAPIC_NMI_SIZE = 6;

/** Parameters of the MADT. */
export interface MadtInput {
  /** Number of vCPUs; processor UIDs and APIC ids are 0..cpus-1. */
  cpus: number;
  /** IOAPIC id (kvmkit uses `cpus`, the first id after the local APICs). */
  ioapicId: number;
}

/** Build the MADT. */
export function buildMadt(input: MadtInput): Uint8Array {
  const length = MADT_ENTRIES_OFFSET + input.cpus * LOCAL_APIC_SIZE + IO_APIC_SIZE + ISO_SIZE + LAPIC_NMI_SIZE;
  const { bytes, view } = newAcpiTable({ signature: 'APIC', revision: MADT_REVISION, oemTableId: 'KVMKMADT' }, length);
  view.setUint32(36, LAPIC_START, true); // Local Interrupt Controller Address
  view.setUint32(40, MADT_PCAT_COMPAT, true); // Flags
  let at = MADT_ENTRIES_OFFSET;

  for (let cpu = 0; cpu < input.cpus; cpu++) {
    bytes[at] = MadtEntryType.LOCAL_APIC;
    bytes[at + 1] = LOCAL_APIC_SIZE;
    bytes[at + 2] = cpu; // ACPI Processor UID
    bytes[at + 3] = cpu; // APIC ID
    view.setUint32(at + 4, LAPIC_ENABLED, true);
    at += LOCAL_APIC_SIZE;
  }

  bytes[at] = MadtEntryType.IO_APIC;
  bytes[at + 1] = IO_APIC_SIZE;
  bytes[at + 2] = input.ioapicId;
  bytes[at + 3] = 0; // reserved
  view.setUint32(at + 4, IOAPIC_START, true);
  view.setUint32(at + 8, 0, true); // Global System Interrupt Base
  at += IO_APIC_SIZE;

  bytes[at] = MadtEntryType.INTERRUPT_SOURCE_OVERRIDE;
  bytes[at + 1] = ISO_SIZE;
  bytes[at + 2] = 0; // Bus: ISA
  bytes[at + 3] = SCI_IRQ; // Source: ISA IRQ
  view.setUint32(at + 4, SCI_IRQ, true); // Global System Interrupt
  view.setUint16(at + 8, MpsIntiFlags.ACTIVE_HIGH | MpsIntiFlags.LEVEL, true);
  at += ISO_SIZE;

  bytes[at] = MadtEntryType.LOCAL_APIC_NMI;
  bytes[at + 1] = LAPIC_NMI_SIZE;
  bytes[at + 2] = 0xff; // ACPI Processor UID: all processors
  view.setUint16(at + 3, MpsIntiFlags.CONFORMS, true);
  bytes[at + 5] = 1; // Local APIC LINT# 1
  at += LAPIC_NMI_SIZE;

  return sealAcpiTable(bytes);
}
