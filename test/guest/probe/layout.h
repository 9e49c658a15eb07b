/* Constants shared by the assembly and C parts of the probe. */
#ifndef PROBE_LAYOUT_H
#define PROBE_LAYOUT_H

/* Selectors of the probe's own GDT (head.S). 0x10/0x18 match Linux's __BOOT_CS/__BOOT_DS. */
#define SEL_CODE64	0x08
#define SEL_CODE32	0x10
#define SEL_DATA	0x18
#define SEL_UCODE64	0x23		/* ring 3 (probe.ring=3), RPL 3 */
#define SEL_UDATA	0x2b
#define SEL_TSS0	0x30		/* one 16-byte TSS descriptor per CPU slot from here */
#define GDT_ENTRIES	(6 + 2 * MAX_CPUS)

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

#define MAX_CPUS	64		/* CPU slots: 0 is the BSP; APs beyond this are not started */
/* Per-slot stacks: [base, base+KSTACK) ring-0 stack for traps from ring 3 (TSS.RSP0),
 * [base+KSTACK, base+SLOT_STACK) the main stack (ring 0 until probe.ring=3 switches to ring 3). */
#define SLOT_STACK	16384
#define KSTACK		4096

#define SYS_HALT	0		/* ring 3 -> 0 calls (ud2 "PRB"): rax = number, rdi, rsi = arguments */
#define SYS_RDMSR	1
#define SYS_WRMSR	2
#define SYS_TRIPLE_FAULT 3

#endif
