/**
 * Intel MultiProcessor Specification 1.4 tables, so the kernel finds every vCPU, the IOAPIC and
 * the ISA interrupt routing without ACPI (e.g. with `acpi=off`). Modelled on Firecracker's
 * `arch/src/x86_64/mptable.rs`; structure layouts from MP spec 1.4 chapter 4 and Linux
 * arch/x86/include/asm/mpspec_def.h.
 *
 * The MP Floating Pointer Structure goes at the start of the EBDA (0x9FC00, which Linux scans,
 * arch/x86/kernel/mpparse.c `smp_scan_config(639 * 0x400, 0x400)`), and the configuration table
 * right after it when it fits below 0xA0000 (up to 40 vCPUs), otherwise in the reserved BIOS area
 * at 0xF0000 (the floating pointer's PHYSICAL ADDRESS POINTER may point anywhere, MP spec §4.1).
 * @module
 */

import { ConfigError } from '../../errors';
import { checksumFor, writeAscii } from './acpi/AcpiTable';
import { BIOS_AREA_END, EBDA_END, IOAPIC_START, LAPIC_START, MAX_CPUS, MPTABLE_OVERFLOW_START, MPTABLE_START, SCI_IRQ } from './Layout';

/** MP Floating Pointer Structure size (MP spec §4.1, one 16-byte paragraph). */
export const MPF_SIZE = 16;
/** MP Configuration Table header size (MP spec §4.2, Table 4-2). */
export const MPC_HEADER_SIZE = 44;
/** Processor entry size (MP spec §4.3.1). */
export const MPC_CPU_SIZE = 20;
/** Bus, I/O APIC, I/O interrupt and local interrupt entries are 8 bytes (MP spec §4.3.2..4.3.5). */
export const MPC_SMALL_ENTRY_SIZE = 8;
/** Number of ISA IRQs routed through the IOAPIC (0..15, identity-mapped to INTIN0..15). */
export const ISA_IRQS = 16;

/** Entry types (MP spec Table 4-3; mpspec_def.h MP_PROCESSOR..MP_LINTSRC). */
export const MpEntryType = { PROCESSOR: 0, BUS: 1, IOAPIC: 2, INTSRC: 3, LINTSRC: 4 } as const;
/** Interrupt types (MP spec Table 4-10; mpspec_def.h mp_INT..mp_ExtINT). */
export const MpIrqType = { INT: 0, NMI: 1, SMI: 2, EXTINT: 3 } as const;
/** I/O interrupt flags (MP spec Table 4-9): PO in bits 1:0, EL in bits 3:2. */
export const MpIrqFlag = { CONFORMS: 0, ACTIVE_HIGH: 0b01, LEVEL: 0b11 << 2 } as const;
/** Processor entry CPU flags (MP spec Table 4-5): EN and BP. */
export const MpCpuFlag = { ENABLED: 1, BOOT_PROCESSOR: 2 } as const;

/** Local APIC version KVM's in-kernel LAPIC reports (integrated APIC; arch/x86/kvm/lapic.c APIC_VERSION 0x14). */
export const LAPIC_VERSION = 0x14;
/** IOAPIC version of KVM's in-kernel IOAPIC (arch/x86/kvm/ioapic.h IOAPIC_VERSION_ID 0x11). */
export const IOAPIC_VERSION = 0x11;
/** CPU signature in processor entries: family 6 (as Firecracker's CPU_STEPPING). */
const CPU_SIGNATURE = 0x600;
/** CPUID.1:EDX feature flags in processor entries: FPU (bit 0) and APIC (bit 9). */
const CPU_FEATURES = 0x201;

/** Size of the MP configuration table (header and base entries) for `cpus` processors. */
export function mpConfigTableSize(cpus: number): number {
  return MPC_HEADER_SIZE + cpus * MPC_CPU_SIZE + MPC_SMALL_ENTRY_SIZE * (1 /* bus */ + 1 /* ioapic */ + ISA_IRQS + 2 /* LINT0, LINT1 */);
}

/** The two MP structures and where they go. */
export interface MpTable {
  floatingPointer: { addr: number; data: Uint8Array };
  configTable: { addr: number; data: Uint8Array };
}

/** Parameters of the MP table. */
export interface MpTableInput {
  cpus: number;
  /** IOAPIC id (kvmkit uses `cpus`, like Firecracker/crosvm use an id after the local APICs). */
  ioapicId: number;
}

/**
 * Build the MP floating pointer and configuration table.
 * @throws {@link ConfigError} naming `cpus` unless 1 <= cpus <= 254.
 */
export function buildMpTable(input: MpTableInput): MpTable {
  const { cpus, ioapicId } = input;
  if (!Number.isInteger(cpus) || cpus < 1 || cpus > MAX_CPUS) {
    throw new ConfigError('cpus', `must be an integer from 1 to ${MAX_CPUS} (xAPIC ids are 8-bit, one goes to the IOAPIC)`, cpus);
  }
  const size = mpConfigTableSize(cpus);
  const inEbda = MPTABLE_START + MPF_SIZE + size <= EBDA_END;
  const tableAddr = inEbda ? MPTABLE_START + MPF_SIZE : MPTABLE_OVERFLOW_START;
  if (tableAddr + size > BIOS_AREA_END) throw new RangeError(`MP table of ${size} bytes does not fit at 0x${tableAddr.toString(16)}`);

  const table = new Uint8Array(size);
  const view = new DataView(table.buffer);
  let at = MPC_HEADER_SIZE;
  let entries = 0;
  const small = (type: number, fill: (o: number) => void): void => {
    table[at] = type;
    fill(at);
    at += MPC_SMALL_ENTRY_SIZE;
    entries++;
  };

  for (let id = 0; id < cpus; id++) {
    table[at] = MpEntryType.PROCESSOR;
    table[at + 1] = id; // local APIC id
    table[at + 2] = LAPIC_VERSION;
    table[at + 3] = MpCpuFlag.ENABLED | (id === 0 ? MpCpuFlag.BOOT_PROCESSOR : 0);
    view.setUint32(at + 4, CPU_SIGNATURE, true);
    view.setUint32(at + 8, CPU_FEATURES, true);
    at += MPC_CPU_SIZE;
    entries++;
  }
  const isaBus = 0;
  small(MpEntryType.BUS, (o) => {
    table[o + 1] = isaBus;
    writeAscii(table, o + 2, 'ISA', 6);
  });
  small(MpEntryType.IOAPIC, (o) => {
    table[o + 1] = ioapicId;
    table[o + 2] = IOAPIC_VERSION;
    table[o + 3] = 1; // flags: EN
    view.setUint32(o + 4, IOAPIC_START, true);
  });
  for (let irq = 0; irq < ISA_IRQS; irq++) {
    small(MpEntryType.INTSRC, (o) => {
      table[o + 1] = MpIrqType.INT;
      view.setUint16(o + 2, irq === SCI_IRQ ? MpIrqFlag.ACTIVE_HIGH | MpIrqFlag.LEVEL : MpIrqFlag.CONFORMS, true);
      table[o + 4] = isaBus;
      table[o + 5] = irq; // source bus IRQ
      table[o + 6] = ioapicId;
      table[o + 7] = irq; // destination INTIN#
    });
  }
  // Virtual wire mode: the 8259's output reaches LINT0 of the BSP as ExtINT, NMIs reach LINT1 of every CPU.
  small(MpEntryType.LINTSRC, (o) => {
    table[o + 1] = MpIrqType.EXTINT;
    table[o + 4] = isaBus;
    table[o + 6] = 0; // destination local APIC id: the BSP
    table[o + 7] = 0; // LINTIN0
  });
  small(MpEntryType.LINTSRC, (o) => {
    table[o + 1] = MpIrqType.NMI;
    table[o + 4] = isaBus;
    table[o + 6] = 0xff; // all local APICs
    table[o + 7] = 1; // LINTIN1
  });

  // Header (MP spec Table 4-2).
  writeAscii(table, 0, 'PCMP', 4);
  view.setUint16(4, size, true); // base table length
  table[6] = 4; // spec revision 1.4
  writeAscii(table, 8, 'KVMKIT', 8); // OEM ID
  writeAscii(table, 16, 'KVMKIT', 12); // product ID
  view.setUint16(34, entries, true); // entry count
  view.setUint32(36, LAPIC_START, true); // address of local APIC
  table[7] = checksumFor(table);

  // Floating pointer (MP spec Table 4-1): feature byte 1 = 0 (a configuration table is present),
  // feature byte 2 bit 7 (IMCRP) = 0 (virtual wire mode, no IMCR).
  const mpf = new Uint8Array(MPF_SIZE);
  writeAscii(mpf, 0, '_MP_', 4);
  new DataView(mpf.buffer).setUint32(4, tableAddr, true);
  mpf[8] = 1; // length in 16-byte paragraphs
  mpf[9] = 4; // spec revision 1.4
  mpf[10] = checksumFor(mpf);

  return { floatingPointer: { addr: MPTABLE_START, data: mpf }, configTable: { addr: tableAddr, data: table } };
}
