/* Offsets into struct boot_params (the "zero page"), Linux arch/x86/include/uapi/asm/bootparam.h
 * and Documentation/arch/x86/zero-page.rst. */
#ifndef PROBE_BOOTPARAMS_H
#define PROBE_BOOTPARAMS_H

#define BP_ACPI_RSDP_ADDR	0x070	/* u64 */
#define BP_EXT_RAMDISK_IMAGE	0x0c0	/* u32: high 32 bits of ramdisk_image */
#define BP_EXT_RAMDISK_SIZE	0x0c4	/* u32 */
#define BP_EXT_CMD_LINE_PTR	0x0c8	/* u32 */
#define BP_E820_ENTRIES		0x1e8	/* u8 */
#define BP_HDR			0x1f1	/* struct setup_header */
#define BP_SETUP_SECTS		0x1f1	/* u8 */
#define BP_BOOT_FLAG		0x1fe	/* u16, 0xaa55 */
#define BP_HEADER_MAGIC		0x202	/* "HdrS" */
#define BP_VERSION		0x206	/* u16 */
#define BP_TYPE_OF_LOADER	0x210	/* u8 */
#define BP_LOADFLAGS		0x211	/* u8 */
#define BP_CODE32_START		0x214	/* u32 */
#define BP_RAMDISK_IMAGE	0x218	/* u32 */
#define BP_RAMDISK_SIZE		0x21c	/* u32 */
#define BP_CMD_LINE_PTR		0x228	/* u32 */
#define BP_INITRD_ADDR_MAX	0x22c	/* u32 */
#define BP_CMDLINE_SIZE		0x238	/* u32 */
#define BP_E820_TABLE		0x2d0	/* 128 x { u64 addr; u64 size; u32 type; } */
#define BP_E820_MAX		128

#define E820_RAM		1

#endif
