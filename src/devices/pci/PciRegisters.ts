/**
 * Type-0 configuration header layout and bits: PCI Local Bus spec 3.0 §6.1–§6.2, §6.7, with the
 * names Linux uses in `include/uapi/linux/pci_regs.h`; extended capabilities: PCI Express Base
 * spec §7.6.3.
 * @module
 */

// ---- Header offsets (pci_regs.h) ----
/** Vendor ID, 16 bits, read-only. */
export const PCI_VENDOR_ID = 0x00;
/** Device ID, 16 bits, read-only. */
export const PCI_DEVICE_ID = 0x02;
/** Command register, 16 bits. */
export const PCI_COMMAND = 0x04;
/** Status register, 16 bits (RW1C error bits). */
export const PCI_STATUS = 0x06;
/** Revision ID, 8 bits. */
export const PCI_REVISION_ID = 0x08;
/** Programming interface, subclass and base class: bytes 0x09, 0x0A, 0x0B. */
export const PCI_CLASS_PROG = 0x09;
/** Cache line size, 8 bits, read/write. */
export const PCI_CACHE_LINE_SIZE = 0x0c;
/** Latency timer, 8 bits. */
export const PCI_LATENCY_TIMER = 0x0d;
/** Header type, 8 bits; bit 7 = multi-function device. */
export const PCI_HEADER_TYPE = 0x0e;
/** BIST, 8 bits. */
export const PCI_BIST = 0x0f;
/** Base address register 0; BARs 0..5 are consecutive dwords. */
export const PCI_BASE_ADDRESS_0 = 0x10;
/** Subsystem vendor ID, 16 bits. */
export const PCI_SUBSYSTEM_VENDOR_ID = 0x2c;
/** Subsystem ID, 16 bits. */
export const PCI_SUBSYSTEM_ID = 0x2e;
/** Expansion ROM base address (not implemented here: reads 0). */
export const PCI_ROM_ADDRESS = 0x30;
/** Capabilities pointer, 8 bits (offset of the first capability). */
export const PCI_CAPABILITY_LIST = 0x34;
/** Interrupt line, 8 bits, read/write (firmware/OS scratch: the IRQ the pin is routed to). */
export const PCI_INTERRUPT_LINE = 0x3c;
/** Interrupt pin, 8 bits: 0 none, 1..4 INTA#..INTD#. */
export const PCI_INTERRUPT_PIN = 0x3d;
/** Size of the type-0 header; capabilities live after it. */
export const PCI_STD_HEADER_SIZEOF = 0x40;
/** Size of the conventional config space. */
export const PCI_CFG_SPACE_SIZE = 256;
/** Size of the PCI Express extended config space. */
export const PCI_CFG_SPACE_EXP_SIZE = 4096;

// ---- Command bits (pci_regs.h) ----
/** Enable response in I/O space. */
export const PCI_COMMAND_IO = 0x1;
/** Enable response in memory space. */
export const PCI_COMMAND_MEMORY = 0x2;
/** Enable bus mastering (DMA). */
export const PCI_COMMAND_MASTER = 0x4;
/** Enable SERR#. */
export const PCI_COMMAND_SERR = 0x100;
/** INTx emulation disable. */
export const PCI_COMMAND_INTX_DISABLE = 0x400;

// ---- Status bits (pci_regs.h) ----
/** Interrupt status: the function is asserting INTx. */
export const PCI_STATUS_INTERRUPT = 0x08;
/** Capability list present (pointer at 0x34 is valid). */
export const PCI_STATUS_CAP_LIST = 0x10;
/** Master data parity error (RW1C). */
export const PCI_STATUS_PARITY = 0x100;
/** Signalled target abort (RW1C). */
export const PCI_STATUS_SIG_TARGET_ABORT = 0x800;
/** Received target abort (RW1C). */
export const PCI_STATUS_REC_TARGET_ABORT = 0x1000;
/** Received master abort (RW1C). */
export const PCI_STATUS_REC_MASTER_ABORT = 0x2000;
/** Signalled system error (RW1C). */
export const PCI_STATUS_SIG_SYSTEM_ERROR = 0x4000;
/** Detected parity error (RW1C). */
export const PCI_STATUS_DETECTED_PARITY = 0x8000;

// ---- BAR bits (pci_regs.h) ----
/** BAR bit 0: I/O space (1) or memory space (0). */
export const PCI_BASE_ADDRESS_SPACE_IO = 0x01;
/** Memory BAR bits 2:1 = 10b: 64-bit BAR, the next BAR holds the upper dword. */
export const PCI_BASE_ADDRESS_MEM_TYPE_64 = 0x04;
/** Memory BAR bit 3: prefetchable. */
export const PCI_BASE_ADDRESS_MEM_PREFETCH = 0x08;
/** Address bits of a memory BAR's low dword. */
export const PCI_BASE_ADDRESS_MEM_MASK = 0xfffffff0;
/** Address bits of an I/O BAR. */
export const PCI_BASE_ADDRESS_IO_MASK = 0xfffffffc;

// ---- Header type (pci_regs.h) ----
/** Header type 0: a normal function (not a bridge). */
export const PCI_HEADER_TYPE_NORMAL = 0x00;
/** Header type bit 7: the device has more than one function. */
export const PCI_HEADER_TYPE_MULTI_FUNCTION = 0x80;

// ---- Capability IDs (pci_regs.h; PCI Code and ID Assignment spec) ----
/** Power management. */
export const PCI_CAP_ID_PM = 0x01;
/** Message signalled interrupts. */
export const PCI_CAP_ID_MSI = 0x05;
/** Vendor-specific (virtio's capabilities). */
export const PCI_CAP_ID_VNDR = 0x09;
/** PCI Express. */
export const PCI_CAP_ID_EXP = 0x10;
/** MSI-X. */
export const PCI_CAP_ID_MSIX = 0x11;
/** Capability header: ID byte at +0, next pointer at +1 (PCI_CAP_LIST_ID, PCI_CAP_LIST_NEXT). */
export const PCI_CAP_LIST_NEXT = 1;
/** First extended capability, at the start of the extended space (PCIe §7.6.3). */
export const PCI_CFG_EXT_CAP_START = 0x100;
