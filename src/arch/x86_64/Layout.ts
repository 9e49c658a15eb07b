/**
 * The x86_64 guest-physical memory map kvmkit uses for direct kernel boot, as named constants.
 *
 * Low memory (below 1 MiB) follows the PC conventions Linux expects and Firecracker's
 * `arch/src/x86_64/layout.rs` (boot stack 0x8ff0, zero page 0x7000, command line 0x20000, page
 * tables at 0x9000.., MP table in the EBDA at 0x9fc00, RSDP at 0xe0000). RAM stops below 4 GiB at
 * 3 GiB so that [3 GiB, 4 GiB) is free for PCI BARs, the IOAPIC and the LAPIC.
 *
 * ```
 * 0x0000_0000  real-mode IVT/BDA (RAM, untouched)
 * 0x0000_0500  GDT (4 descriptors)            0x0000_0520  IDT (one null descriptor)
 * 0x0000_7000  boot_params ("zero page")       0x0000_8ff0  boot stack top (RSP/RBP)
 * 0x0000_9000  PML4   0x0000_a000  PDPT   0x0000_b000..0x0000_efff  4 page directories
 * 0x0002_0000  kernel command line (NUL-terminated, at most the header's cmdline_size)
 * 0x0009_fc00  EBDA: MP floating pointer + MP configuration table (e820 reserved)
 * 0x000a_0000  legacy VGA/ROM hole (not in the e820 map)
 * 0x000e_0000  ACPI: RSDP, then RSDT, XSDT, FACS, DSDT, FADT, MADT (e820 reserved)
 * 0x000f_0000  overflow home of the MP configuration table when it does not fit in the EBDA
 * 0x0010_0000  protected-mode kernel (bzImage payload), then RAM; initrd at the top of low RAM
 * 0xc000_0000  MMIO hole: PCI 32-bit window, IOAPIC 0xfec0_0000, LAPIC 0xfee0_0000
 * 0x1_0000_0000  RAM above 4 GiB (the part of `mem` beyond 3 GiB)
 * ```
 * @module
 */

/** 1 MiB. */
export const MiB = 0x10_0000;
/** 1 GiB. */
export const GiB = 0x4000_0000;

/** Page size used for alignment (4 KiB). */
export const PAGE_SIZE = 0x1000;

/** GDT base (Firecracker `BOOT_GDT_OFFSET`). */
export const GDT_START = 0x500;
/** IDT base (Firecracker `BOOT_IDT_OFFSET`); holds one zero 8-byte entry. */
export const IDT_START = 0x520;

/** boot_params ("zero page"), passed to the kernel in RSI (Documentation/arch/x86/boot.rst, 64-bit boot protocol). */
export const ZERO_PAGE_START = 0x7000;
/** Size of struct boot_params (arch/x86/include/uapi/asm/bootparam.h). */
export const ZERO_PAGE_SIZE = 0x1000;

/** Initial RSP and RBP of the boot vCPU (Firecracker `BOOT_STACK_POINTER`). The stack grows down into [0x8000, 0x8ff0). */
export const BOOT_STACK_POINTER = 0x8ff0;

/** Page-map level 4 table (Firecracker `PML4_START`); CR3 points here. */
export const PML4_START = 0x9000;
/** Page-directory-pointer table (Firecracker `PDPTE_START`). */
export const PDPT_START = 0xa000;
/** First of {@link PD_COUNT} page directories (Firecracker `PDE_START`; Firecracker maps 1 GiB, kvmkit 4 GiB). */
export const PD_START = 0xb000;
/** Page directories identity-mapping [0, 4 GiB) with 2 MiB pages: 0xb000..0xefff. */
export const PD_COUNT = 4;

/** Kernel command line (Firecracker `CMDLINE_START`). */
export const CMDLINE_START = 0x2_0000;

/** Extended BIOS data area start = end of conventional RAM (639 KiB; Linux scans 0x9fc00 for the MP floating pointer, arch/x86/kernel/mpparse.c). */
export const EBDA_START = 0x9_fc00;
/** MP floating pointer structure (Intel MP spec 1.4 §4.1: in the first KiB of the EBDA). */
export const MPTABLE_START = EBDA_START;
/** End of the EBDA reservation (start of the legacy VGA hole, 640 KiB). */
export const EBDA_END = 0xa_0000;

/** ACPI/BIOS area start; the RSDP lives here (ACPI 6.5 §5.2.5.1: on a 16-byte boundary in 0xE0000..0xFFFFF). */
export const BIOS_AREA_START = 0xe_0000;
/** RSDP address (Firecracker `RSDP_ADDR`). */
export const RSDP_START = BIOS_AREA_START;
/** Where the MP configuration table goes when it is too big for the EBDA (more than 40 vCPUs). Linux and the MP spec let the table live anywhere the floating pointer says. */
export const MPTABLE_OVERFLOW_START = 0xf_0000;
/** End of the ACPI/BIOS area = start of high memory (1 MiB). */
export const BIOS_AREA_END = 0x10_0000;

/** Where the protected-mode part of the bzImage is loaded (boot.rst: code32_start default, "HIMEM"). */
export const KERNEL_START = 0x10_0000;
/** Offset of the 64-bit entry point from the start of the protected-mode code (boot.rst, "64-bit BOOT PROTOCOL": startup_64 = load address + 0x200). */
export const KERNEL_64BIT_ENTRY_OFFSET = 0x200;

/** RAM below 4 GiB ends here (3 GiB, like Firecracker's 1 GiB MMIO32 gap below 4 GiB). */
export const MMIO_HOLE_START = 0xc000_0000;
/** First address above 4 GiB; RAM beyond {@link MMIO_HOLE_START} continues here. */
export const HIGH_RAM_START = 0x1_0000_0000;

/** Start of the 32-bit PCI MMIO window the DSDT's PCI0 `_CRS` advertises. */
export const PCI_MMIO32_START = MMIO_HOLE_START;
/** End (exclusive) of the 32-bit PCI MMIO window: the IOAPIC page starts here. */
export const PCI_MMIO32_END = 0xfec0_0000;

/** IOAPIC MMIO base (Linux asm/apicdef.h `IO_APIC_DEFAULT_PHYS_BASE`). */
export const IOAPIC_START = 0xfec0_0000;
/** Local APIC MMIO base (Linux asm/apicdef.h `APIC_DEFAULT_PHYS_BASE`). */
export const LAPIC_START = 0xfee0_0000;

/** ACPI PM1a event block I/O port (status u16 + enable u16); the FADT points the guest here. */
export const PM1A_EVT_BLK_PORT = 0x600;
/** Length in bytes of the PM1a event block (ACPI 6.5 §4.8.3.1: PM1_EVT_LEN >= 4). */
export const PM1A_EVT_BLK_LEN = 4;
/** ACPI PM1a control block I/O port (u16: SCI_EN bit 0, SLP_TYP bits 10..12, SLP_EN bit 13). */
export const PM1A_CNT_BLK_PORT = 0x604;
/** Length in bytes of the PM1a control block (ACPI 6.5 §4.8.3.2: PM1_CNT_LEN >= 2). */
export const PM1A_CNT_BLK_LEN = 2;
/** SLP_TYP value the DSDT's `_S5_` package gives for soft-off; a PM1a_CNT write with SLP_EN and this SLP_TYP means power off. */
export const S5_SLP_TYP = 5;
/** SCI interrupt (ISA IRQ 9 / GSI 9, level-triggered active-high), as on PC chipsets and QEMU. */
export const SCI_IRQ = 9;

/** Reset register: the i8042 command port (FADT RESET_REG, DESIGN.md "i8042 reset"). */
export const RESET_PORT = 0x64;
/** Value written to {@link RESET_PORT} to reset (i8042 "pulse output line 0"). */
export const RESET_VALUE = 0xfe;

/** Smallest guest RAM the layout accepts (below this nothing useful boots). */
export const MIN_MEM_BYTES = 16 * MiB;

/** Most vCPUs: xAPIC ids are 8 bits, 0xff is broadcast and the IOAPIC takes one id (Firecracker `MAX_SUPPORTED_CPUS`). */
export const MAX_CPUS = 254;

/** Round `value` up to a multiple of `align` (a power of two or any positive integer). */
export function alignUp(value: number, align: number): number {
  return Math.ceil(value / align) * align;
}

/** Round `value` down to a multiple of `align`. */
export function alignDown(value: number, align: number): number {
  return Math.floor(value / align) * align;
}
