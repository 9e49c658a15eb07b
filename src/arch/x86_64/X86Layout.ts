/**
 * The x86_64 direct-kernel-boot layout: from a bzImage, an initrd, a command line, a RAM size and
 * a vCPU count to the RAM regions, the bytes to copy into guest memory and each vCPU's initial
 * state. Pure data: nothing here touches KVM, files or global state.
 * @module
 */

import type { ArchLayout, BootPlan, GuestWrite, LayoutInput, RamRegion } from '../ArchLayout';
import { BootImageError, ConfigError } from '../../errors';
import { buildAcpiTables } from './acpi/AcpiTables';
import { bootFpu, bootRegs, bootSregs } from './BootCpuState';
import { buildBootParams } from './BootParams';
import { type BzImageHeader, parseBzImage } from './BzImage';
import { buildE820Map } from './E820Map';
import { gdtBytes } from './Gdt';
import {
  alignDown,
  alignUp,
  CMDLINE_START,
  EBDA_START,
  GDT_START,
  HIGH_RAM_START,
  IDT_START,
  KERNEL_START,
  MAX_CPUS,
  MiB,
  MIN_MEM_BYTES,
  MMIO_HOLE_START,
  PAGE_SIZE,
  ZERO_PAGE_START,
} from './Layout';
import { buildMpTable } from './MpTable';
import { bootMsrs } from './Msrs';
import { buildIdentityPageTables } from './PageTables';
import type { X86VcpuInit } from './types';

/** Where the kernel lands and how much memory it claims. */
export interface KernelPlacement {
  /** Load address of the protected-mode code (0x100000). */
  loadAddr: number;
  /** End of the loaded protected-mode code. */
  loadEnd: number;
  /** Where the kernel decompresses and runs (boot.rst "init_size"; arch/x86/boot/compressed/head_64.S). */
  runtimeStart: number;
  /** runtimeStart + init_size. */
  runtimeEnd: number;
  /** Highest address the kernel needs before it reads the memory map: max(loadEnd, runtimeEnd). */
  end: number;
}

/**
 * Where the kernel runs: a relocatable kernel moves to its load address rounded up to
 * kernel_alignment, but never below LOAD_PHYSICAL_ADDR (= pref_address); a fixed one runs at
 * pref_address (arch/x86/boot/compressed/head_64.S, startup_64).
 */
export function placeKernel(header: BzImageHeader): KernelPlacement {
  const loadEnd = KERNEL_START + header.protectedModeSize;
  const aligned = alignUp(KERNEL_START, Math.max(header.kernelAlignment, 1));
  const runtimeStart = header.relocatableKernel ? Math.max(aligned, header.prefAddress) : header.prefAddress;
  const runtimeEnd = runtimeStart + header.initSize;
  return { loadAddr: KERNEL_START, loadEnd, runtimeStart, runtimeEnd, end: Math.max(loadEnd, runtimeEnd) };
}

const mib = (bytes: number): string => `${(bytes / MiB).toFixed(bytes % MiB === 0 ? 0 : 1)} MiB`;
const hex = (n: number): string => `0x${n.toString(16)}`;

/**
 * The x86_64 {@link ArchLayout}. RAM is [0, min(mem, 3 GiB)) plus, for more than 3 GiB,
 * [4 GiB, 4 GiB + mem - 3 GiB); the MMIO hole [3 GiB, 4 GiB) holds PCI BARs, the IOAPIC and the
 * LAPIC. See Layout.ts for the low-memory map.
 */
export class X86Layout implements ArchLayout<X86VcpuInit> {
  readonly arch = 'x86_64' as const;

  /**
   * RAM regions for `memBytes` of guest RAM.
   * @throws {@link ConfigError} naming `mem` if it is below 16 MiB or not a multiple of 4 KiB.
   */
  ramRegions(memBytes: number): RamRegion[] {
    if (!Number.isSafeInteger(memBytes) || memBytes < MIN_MEM_BYTES) {
      throw new ConfigError('mem', `must be at least ${mib(MIN_MEM_BYTES)} for an x86_64 guest`, memBytes);
    }
    if (memBytes % PAGE_SIZE !== 0) throw new ConfigError('mem', 'must be a multiple of 4 KiB', memBytes);
    const regions: RamRegion[] = [{ guestAddress: 0, size: Math.min(memBytes, MMIO_HOLE_START) }];
    if (memBytes > MMIO_HOLE_START) regions.push({ guestAddress: HIGH_RAM_START, size: memBytes - MMIO_HOLE_START });
    return regions;
  }

  /**
   * Lay out a guest.
   * @throws {@link BootImageError} for a malformed kernel or an initrd the kernel cannot address.
   * @throws {@link ConfigError} naming `mem`, `cpus` or `cmdline` when the machine cannot hold what was asked.
   */
  build(input: LayoutInput): BootPlan<X86VcpuInit> {
    const kernelPath = input.kernelPath ?? 'kernel';
    const { cpus, memBytes } = input;
    if (!Number.isInteger(cpus) || cpus < 1 || cpus > MAX_CPUS) {
      throw new ConfigError('cpus', `must be an integer from 1 to ${MAX_CPUS} on x86_64`, cpus);
    }
    const ramRegions = this.ramRegions(memBytes);
    const lowRamEnd = ramRegions[0]!.size;
    const header = parseBzImage(input.kernel, kernelPath);

    const kernel = placeKernel(header);
    if (kernel.end > lowRamEnd) {
      throw new ConfigError(
        'mem',
        `is too small for ${kernelPath}: the kernel needs RAM up to ${mib(kernel.end)} ` +
          `(runs at ${hex(kernel.runtimeStart)} and needs init_size ${mib(header.initSize)}); RAM below the MMIO hole ends at ${mib(lowRamEnd)}`,
        memBytes,
      );
    }

    const cmdline = this.encodeCmdline(input.cmdline, header);
    const initrdAddr = input.initrd && input.initrd.length > 0 ? this.placeInitrd(input.initrd.length, header, kernel, lowRamEnd, memBytes) : undefined;

    const ioapicId = cpus;
    const acpi = buildAcpiTables({ cpus, ioapicId, pciDevices: input.pciDevices ?? [] });
    const mp = buildMpTable({ cpus, ioapicId });
    const pageTables = buildIdentityPageTables();
    const bootParams = buildBootParams({
      setupHeader: header.setupHeader,
      cmdlineAddr: CMDLINE_START,
      initrd: initrdAddr === undefined ? undefined : { addr: initrdAddr, size: input.initrd!.length },
      acpiRsdpAddr: acpi.rsdpAddr,
      e820: buildE820Map(memBytes),
    });

    const writes: GuestWrite[] = [
      { guestAddress: GDT_START, data: gdtBytes(), what: 'gdt' },
      { guestAddress: IDT_START, data: new Uint8Array(8), what: 'idt' },
      { guestAddress: ZERO_PAGE_START, data: bootParams, what: 'boot_params' },
      { guestAddress: pageTables.pml4.addr, data: pageTables.pml4.data, what: 'page_tables:pml4' },
      { guestAddress: pageTables.pdpt.addr, data: pageTables.pdpt.data, what: 'page_tables:pdpt' },
      { guestAddress: pageTables.pd.addr, data: pageTables.pd.data, what: 'page_tables:pd' },
      { guestAddress: CMDLINE_START, data: cmdline, what: 'cmdline' },
      { guestAddress: mp.floatingPointer.addr, data: mp.floatingPointer.data, what: 'mptable:floating_pointer' },
      { guestAddress: mp.configTable.addr, data: mp.configTable.data, what: 'mptable:config' },
      ...acpi.tables.map((t) => ({ guestAddress: t.addr, data: t.data, what: `acpi:${t.signature}` })),
      { guestAddress: KERNEL_START, data: input.kernel.subarray(header.protectedModeOffset), what: 'kernel' },
    ];
    if (initrdAddr !== undefined) writes.push({ guestAddress: initrdAddr, data: input.initrd!, what: 'initrd' });

    const vcpus: X86VcpuInit[] = Array.from({ length: cpus }, (_, i) => ({
      apicId: i,
      ...(i === 0 ? { regs: bootRegs(), sregs: bootSregs() } : {}),
      fpu: bootFpu(),
      msrs: bootMsrs(),
    }));
    return { ramRegions, writes, vcpus };
  }

  /** The command line as NUL-terminated bytes, checked against the kernel's cmdline_size. */
  private encodeCmdline(cmdline: string, header: BzImageHeader): Uint8Array {
    const text = new TextEncoder().encode(cmdline);
    const max = Math.min(header.cmdlineSize, EBDA_START - CMDLINE_START - 1);
    if (text.length > max) {
      throw new ConfigError('cmdline', `must be at most ${max} bytes for this kernel (its setup header's cmdline_size)`, `${text.length} bytes`);
    }
    const bytes = new Uint8Array(text.length + 1);
    bytes.set(text);
    return bytes;
  }

  /** Highest page-aligned address for the initrd below min(initrd_addr_max + 1, end of low RAM) and above the kernel. */
  private placeInitrd(size: number, header: BzImageHeader, kernel: KernelPlacement, lowRamEnd: number, memBytes: number): number {
    const addrLimit = header.initrdAddrMax + 1;
    const top = Math.min(addrLimit, lowRamEnd);
    const floor = alignUp(kernel.end, PAGE_SIZE);
    const addr = alignDown(top - size, PAGE_SIZE);
    if (addr >= floor) return addr;
    const room = `the initrd (${mib(size)}) does not fit between the end of the kernel at ${mib(floor)} and ${mib(top)}`;
    if (addrLimit < lowRamEnd || floor + size > MMIO_HOLE_START) {
      // More RAM would not help: the limit is the kernel's initrd_addr_max or the 3 GiB MMIO hole.
      const why = addrLimit < lowRamEnd ? `the kernel accepts an initrd only below initrd_addr_max ${hex(header.initrdAddrMax)}` : 'RAM below 4 GiB ends at 3 GiB';
      throw new BootImageError('initrd', `${room}: ${why}; use a smaller initrd`);
    }
    throw new ConfigError('mem', `is too small: ${room}, the end of RAM; raise it to at least ${mib(alignUp(floor + size, MiB))}`, memBytes);
  }
}
