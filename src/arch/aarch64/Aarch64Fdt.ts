/**
 * The device tree an aarch64 guest boots with: the tree crosvm's aarch64/src/fdt.rs
 * `create_fdt` gives a guest, minus the devices kvmkit does not have (pl030 RTC, vcpu stall
 * detector, cpufreq, battery, pKVM nodes, `/config`).
 * @module
 */

import { randomBytes } from 'node:crypto';
import type { PciDeviceDescription } from '../ArchLayout';
import { ConfigError } from '../../errors';
import { FdtError } from './Fdt';
import { FdtWriter } from './FdtWriter';
import {
  AARCH64_CMDLINE_MAX_SIZE,
  AARCH64_FDT_MAX_SIZE,
  AARCH64_GIC_NR_SPIS,
  AARCH64_IRQ_BASE,
  AARCH64_SERIAL_IRQ,
  AARCH64_SERIAL_SPEED,
  type Aarch64MemoryMap,
  type AddressRange,
} from './MemoryMap';
import { mpidrAffinity } from './VcpuInit';

/** phandle of the GIC. crosvm aarch64/src/fdt.rs `PHANDLE_GIC`. */
export const PHANDLE_GIC = 1;
/** phandle of `cpu@N` is this plus the vCPU index. crosvm aarch64/src/fdt.rs `PHANDLE_CPU0`. */
export const PHANDLE_CPU0 = 0x100;

/** GIC interrupt specifier (linux include/dt-bindings/interrupt-controller/arm-gic.h and irq.h). */
export const GIC_FDT_IRQ_TYPE_SPI = 0;
export const GIC_FDT_IRQ_TYPE_PPI = 1;
export const IRQ_TYPE_EDGE_RISING = 0x1;
export const IRQ_TYPE_LEVEL_HIGH = 0x4;
export const IRQ_TYPE_LEVEL_LOW = 0x8;
/** The third cell's bits [15:8] are a PPI's CPU mask (bindings/interrupt-controller/arm,gic.yaml). */
const GIC_FDT_IRQ_PPI_CPU_SHIFT = 8;
/** Cells of a GIC interrupt specifier. crosvm `GIC_FDT_IRQ_NUM_CELLS`. */
const GIC_FDT_IRQ_NUM_CELLS = 3;

/**
 * Architected timer PPIs, in the order bindings/timer/arm,arch_timer.yaml wants them: secure
 * physical, non-secure physical, virtual, hypervisor. crosvm aarch64/src/fdt.rs `create_timer_node`.
 */
export const AARCH64_TIMER_PPIS = [13, 14, 11, 10] as const;

/** PCI bus binding to Open Firmware: the `phys.hi` cell `npt000ss bbbbbbbb dddddfff rrrrrrrr`. */
const OF_PCI_SPACE_MEM32 = 0b10 << 24;
const OF_PCI_SPACE_MEM64 = 0b11 << 24;
const OF_PCI_PREFETCHABLE = 1 << 30;
const OF_PCI_DEVICE_SHIFT = 11;
/** `interrupt-map-mask`: match the device number and INTx pin only. crosvm `create_pci_nodes`. */
const PCI_INTERRUPT_MAP_MASK = [0xf800, 0, 0, 0x7];

/** Size of `/chosen/rng-seed`. crosvm aarch64/src/fdt.rs `create_chosen_node` (256 random bytes). */
export const AARCH64_RNG_SEED_SIZE = 256;

/**
 * Name of the serial node: the generic name `serial` (devicetree spec v0.4 §2.2.2) where crosvm
 * says `U6_16550A`, with the unit address dtc's unit_address_vs_reg check wants.
 */
export function serialNodeName(map: Aarch64MemoryMap): string {
  return `serial@${map.serial.base.toString(16)}`;
}

/** What {@link buildAarch64Fdt} describes. */
export interface Aarch64FdtInput {
  map: Aarch64MemoryMap;
  cpus: number;
  /** The kernel command line (`/chosen/bootargs`), at most 2047 bytes. */
  cmdline: string;
  /** Where the initrd was loaded, `end` exclusive (`linux,initrd-start` / `linux,initrd-end`). */
  initrd?: { start: number; end: number };
  /** PCI devices on bus 0; those with an INTx pin get an `interrupt-map` entry. */
  pciDevices?: readonly PciDeviceDescription[];
  /** `/chosen/kaslr-seed`; random (node:crypto) when omitted. */
  kaslrSeed?: bigint;
  /** `/chosen/rng-seed` bytes; 256 random bytes when omitted, no property when `null`. */
  rngSeed?: Uint8Array | null;
  /** Add `/chosen/linux,pci-probe-only = <1>` as crosvm does (the guest then keeps BARs as the VMM set them). */
  pciProbeOnly?: boolean;
}

function regOf(...ranges: AddressRange[]): number[] {
  return ranges.flatMap((r) => [r.base, r.size]);
}

/** Two cells (hi, lo) of a 64-bit value. */
function cells64(v: number): [number, number] {
  return [Math.floor(v / 2 ** 32), v >>> 0];
}

/** Third cell of a PPI: CPU mask of up to 8 CPUs, as crosvm computes it, plus the trigger type. */
function ppiFlags(cpus: number, type: number): number {
  const mask = cpus >= 8 ? 0xff : (1 << cpus) - 1;
  return (mask << GIC_FDT_IRQ_PPI_CPU_SHIFT) | type;
}

/** Check the PCI devices and return their `interrupt-map` entries. Throws {@link ConfigError}. */
function pciInterruptMap(devices: readonly PciDeviceDescription[]): number[] {
  const seen = new Set<string>();
  const map: number[] = [];
  devices.forEach((d, i) => {
    const where = `pciDevices[${i}]`;
    if (!Number.isInteger(d.device) || d.device < 0 || d.device > 31) throw new ConfigError(`${where}.device`, 'must be a device number from 0 to 31', d.device);
    if (d.intPin === undefined) return; // MSI-only or no interrupt: nothing to map
    if (!Number.isInteger(d.intPin) || d.intPin < 1 || d.intPin > 4) throw new ConfigError(`${where}.intPin`, 'must be 1 to 4 (INTA# to INTD#)', d.intPin);
    if (d.irq === undefined) throw new ConfigError(`${where}.irq`, 'is required when intPin is set: it is the SPI the pin is wired to');
    if (!Number.isInteger(d.irq) || d.irq < AARCH64_IRQ_BASE || d.irq >= AARCH64_GIC_NR_SPIS) {
      throw new ConfigError(`${where}.irq`, `must be an SPI from ${AARCH64_IRQ_BASE} to ${AARCH64_GIC_NR_SPIS - 1} (SPIs below ${AARCH64_IRQ_BASE} are crosvm's platform devices; the vGIC has ${AARCH64_GIC_NR_SPIS})`, d.irq);
    }
    const key = `${d.device}:${d.intPin}`;
    if (seen.has(key)) throw new ConfigError(where, `repeats device ${d.device} pin ${d.intPin}; each (device, pin) maps to one SPI`);
    seen.add(key);
    // child unit address (3 cells), child interrupt (1), parent phandle, parent unit address
    // (2 cells: the GIC's #address-cells), parent interrupt specifier (3). crosvm `create_pci_nodes`.
    map.push(d.device << OF_PCI_DEVICE_SHIFT, 0, 0, d.intPin, PHANDLE_GIC, 0, 0, GIC_FDT_IRQ_TYPE_SPI, d.irq, IRQ_TYPE_LEVEL_HIGH);
  });
  return map;
}

/** `ranges` of the PCI host: the 32-bit window, then the 64-bit prefetchable one, identity-mapped. */
function pciRanges(map: Aarch64MemoryMap): number[] {
  const entry = (flags: number, r: AddressRange): number[] => [flags, ...cells64(r.base), ...cells64(r.base), ...cells64(r.size)];
  return [...entry(OF_PCI_SPACE_MEM32, map.pciMmio32), ...entry(OF_PCI_SPACE_MEM64 | OF_PCI_PREFETCHABLE, map.pciMmio64)];
}

/**
 * Build the guest's device tree blob. Throws {@link ConfigError} for a command line that is too
 * long or a bad PCI device description, {@link FdtError} if the blob outgrows 2 MiB.
 */
export function buildAarch64Fdt(input: Aarch64FdtInput): Uint8Array {
  const { map, cpus } = input;
  const cmdlineBytes = new TextEncoder().encode(input.cmdline).length;
  if (cmdlineBytes + 1 > AARCH64_CMDLINE_MAX_SIZE) {
    throw new ConfigError('cmdline', `must be at most ${AARCH64_CMDLINE_MAX_SIZE - 1} bytes on aarch64 (COMMAND_LINE_SIZE), got ${cmdlineBytes}`);
  }
  const interruptMap = pciInterruptMap(input.pciDevices ?? []);
  const serialName = serialNodeName(map);
  const w = new FdtWriter({ bootCpuidPhys: mpidrAffinity(0) });

  w.beginNode('')
    .propertyU32('interrupt-parent', PHANDLE_GIC)
    .propertyString('compatible', 'linux,dummy-virt')
    .propertyU32('#address-cells', 2)
    .propertyU32('#size-cells', 2);

  w.beginNode('chosen');
  if (input.pciProbeOnly) w.propertyU32('linux,pci-probe-only', 1);
  w.propertyString('bootargs', input.cmdline).propertyString('stdout-path', `/${serialName}`);
  w.propertyU64('kaslr-seed', input.kaslrSeed ?? randomBytes(8).readBigUInt64BE());
  const rngSeed = input.rngSeed === undefined ? randomBytes(AARCH64_RNG_SEED_SIZE) : input.rngSeed;
  if (rngSeed !== null) w.property('rng-seed', rngSeed);
  if (input.initrd !== undefined) {
    w.propertyU64('linux,initrd-start', input.initrd.start).propertyU64('linux,initrd-end', input.initrd.end);
  }
  w.endNode();

  w.beginNode(`memory@${map.ram.base.toString(16)}`)
    .propertyString('device_type', 'memory')
    .propertyU64List('reg', regOf(map.ram))
    .endNode();

  w.beginNode('cpus').propertyU32('#address-cells', 1).propertyU32('#size-cells', 0);
  for (let id = 0; id < cpus; id++) {
    const reg = mpidrAffinity(id);
    w.beginNode(`cpu@${reg.toString(16)}`)
      .propertyString('device_type', 'cpu')
      .propertyString('compatible', 'arm,armv8')
      .propertyString('enable-method', 'psci')
      .propertyU32('reg', reg)
      .propertyU32('phandle', PHANDLE_CPU0 + id)
      .endNode();
  }
  w.endNode();

  w.beginNode(`intc@${map.gicDistributor.base.toString(16)}`)
    .propertyString('compatible', 'arm,gic-v3')
    .propertyU32('#interrupt-cells', GIC_FDT_IRQ_NUM_CELLS)
    .propertyEmpty('interrupt-controller')
    .propertyU64List('reg', regOf(map.gicDistributor, map.gicRedistributors))
    .propertyU32('phandle', PHANDLE_GIC)
    .propertyU32('#address-cells', 2)
    .propertyU32('#size-cells', 2)
    .endNode();

  w.beginNode('timer')
    .propertyString('compatible', 'arm,armv8-timer')
    .propertyCells('interrupts', AARCH64_TIMER_PPIS.flatMap((ppi) => [GIC_FDT_IRQ_TYPE_PPI, ppi, ppiFlags(cpus, IRQ_TYPE_LEVEL_LOW)]))
    .propertyEmpty('always-on')
    .endNode();

  w.beginNode(serialName)
    .propertyString('compatible', 'ns16550a')
    .propertyU64List('reg', regOf(map.serial))
    .propertyU32('clock-frequency', AARCH64_SERIAL_SPEED)
    .propertyCells('interrupts', [GIC_FDT_IRQ_TYPE_SPI, AARCH64_SERIAL_IRQ, IRQ_TYPE_EDGE_RISING])
    .endNode();

  w.beginNode('psci')
    .propertyStringList('compatible', ['arm,psci-1.0', 'arm,psci-0.2'])
    .propertyString('method', 'hvc')
    .endNode();

  w.beginNode(`pci@${map.pciEcam.base.toString(16)}`)
    .propertyString('compatible', 'pci-host-ecam-generic')
    .propertyString('device_type', 'pci')
    .propertyCells('ranges', pciRanges(map))
    .propertyCells('bus-range', [0, 0])
    .propertyU32('#address-cells', 3)
    .propertyU32('#size-cells', 2)
    .propertyU64List('reg', regOf(map.pciEcam))
    .propertyU32('#interrupt-cells', 1)
    .propertyCells('interrupt-map', interruptMap)
    .propertyCells('interrupt-map-mask', PCI_INTERRUPT_MAP_MASK)
    .propertyEmpty('dma-coherent')
    .endNode();

  w.endNode();
  const blob = w.finish();
  if (blob.length > AARCH64_FDT_MAX_SIZE) {
    throw new FdtError(`the device tree is ${blob.length} bytes, more than the 2 MiB booting.rst allows`);
  }
  return blob;
}
