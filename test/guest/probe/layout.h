/* Constants shared by the assembly and C parts of the probe. */
#ifndef PROBE_LAYOUT_H
#define PROBE_LAYOUT_H

/* Selectors of the probe's own GDT (head.S). 0x10/0x18 match Linux's __BOOT_CS/__BOOT_DS. */
#define SEL_CODE64	0x08
#define SEL_CODE32	0x10
#define SEL_DATA	0x18

/* How the probe was entered (passed to probe_main). */
#define ENTRY_64	64
#define ENTRY_32	32
#define ENTRY_REAL	16

/* The real-mode path jumps to code32_start with EDI = this ("REAL") and EBX = setup base address.
 * A boot loader using the 32-bit entry must pass EDI = 0, so this cannot be confused. */
#define REAL_MAGIC	0x4c414552

/* Real-mode path: offsets from the start of the setup segment (the loader gives us 64 KiB there). */
#define RM_BOOT_PARAMS	0x1000		/* boot_params built here (4 KiB) */
#define RM_STACK_TOP	0x3000		/* real-mode stack: 0x2000..0x3000 */

#define MAX_CPUS	64		/* APs beyond this are not started */
#define AP_STACK_SIZE	8192
#define BSP_STACK_SIZE	16384

#endif
