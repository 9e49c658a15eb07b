/*
 * The real-mode part of the bzImage: boot sector, setup header and the real-mode entry.
 * Layout and field meanings: Linux Documentation/arch/x86/boot.rst, "THE REAL-MODE KERNEL HEADER".
 *
 * Real-mode entry (what QEMU -kernel uses, through SeaBIOS's linuxboot ROM or qboot): the loader
 * has loaded these setup sectors at segment S (QEMU: 0x1000), set DS=ES=SS=S and jumped to
 * S+0x20:0, i.e. to offset 0x200 here. Like Linux's setup we then
 *   - build boot_params (the zero page) at S:RM_BOOT_PARAMS: zeroed, setup header copied in,
 *     e820 table from BIOS int 0x15 AX=0xE820;
 *   - enable A20 (port 0x92) if it is off;
 *   - switch to 32-bit protected mode with flat segments (CS 0x10, DS 0x18) and jump to
 *     code32_start with ESI = boot_params, EDI = REAL_MAGIC, EBX = setup base address.
 */
#include "layout.h"

	.code16
	.section .setup, "ax"
	.globl _setup_start
_setup_start:
	/* Booted from a disk by a BIOS: not supported, just stop. */
	cli
1:	hlt
	jmp 1b
	.ascii "kvmkit probe: load me with a Linux boot loader (boot protocol 2.15)"

	.org 0x1f1
hdr:
setup_sects:		.byte _setup_sects
root_flags:		.word 0
syssize:		.long _syssize
ram_size:		.word 0
vid_mode:		.word 0xffff			/* NORMAL_VGA */
root_dev:		.word 0
boot_flag:		.word 0xaa55
	/* offset 0x200: the real-mode entry point, a 2-byte jump over the rest of the header */
			.byte 0xeb
			.byte start_of_setup - 1f
1:
header:			.ascii "HdrS"
version:		.word 0x020f
realmode_swtch:		.long 0
start_sys_seg:		.word 0x1000
kernel_version:		.word kernel_version_str - 0x200
type_of_loader:		.byte 0
loadflags:		.byte 0x01			/* LOADED_HIGH */
setup_move_size:	.word 0x8000
code32_start:		.long 0x100000
ramdisk_image:		.long 0
ramdisk_size:		.long 0
bootsect_kludge:	.long 0
heap_end_ptr:		.word 0
ext_loader_ver:		.byte 0
ext_loader_type:	.byte 0
cmd_line_ptr:		.long 0
initrd_addr_max:	.long 0x7fffffff		/* same as Linux: initrd below 2 GiB */
kernel_alignment:	.long 0x100000
relocatable_kernel:	.byte 0
min_alignment:		.byte 20
xloadflags:		.word 0x0001			/* XLF_KERNEL_64: 64-bit entry at +0x200 */
cmdline_size:		.long 4095
hardware_subarch:	.long 0
hardware_subarch_data:	.quad 0
payload_offset:		.long 0
payload_length:		.long 0
setup_data:		.quad 0
pref_address:		.quad 0x100000
init_size:		.long _init_size
handover_offset:	.long 0
kernel_info_offset:	.long _kernel_info_offset
hdr_end:

start_of_setup:
	cli
	cld
	/* The boot protocol guarantees DS = the setup segment. Make CS, ES, SS agree with it so that
	 * offsets below are relative to _setup_start, and use our own stack inside our 64 KiB. */
	movw	%ds, %ax
	movw	%ax, %es
	movw	%ax, %ss
	movw	$RM_STACK_TOP, %sp
	pushw	%ax
	pushw	$normalised
	lretw
normalised:
	/* boot_params: zero 4 KiB, then copy the setup header (0x1f1 up to 0x202 + byte at 0x201),
	 * which carries what the loader filled in: cmd_line_ptr, ramdisk_image, ramdisk_size... */
	movw	$RM_BOOT_PARAMS, %di
	movw	$2048, %cx
	xorw	%ax, %ax
	rep stosw
	movzbw	0x201, %cx
	addw	$(0x202 - 0x1f1), %cx
	movw	$0x1f1, %si
	movw	$(RM_BOOT_PARAMS + 0x1f1), %di
	rep movsb

	/* e820 via int 0x15, EAX=0xE820, straight into boot_params.e820_table (0x2d0, 20 bytes each,
	 * at most 128), count in boot_params.e820_entries (0x1e8). */
	xorl	%ebx, %ebx
	movw	$(RM_BOOT_PARAMS + 0x2d0), %di
e820_next:
	movl	$0xe820, %eax
	movl	$20, %ecx
	movl	$0x534d4150, %edx		/* "SMAP" */
	pushw	%di
	int	$0x15
	popw	%di
	cli
	jc	e820_done
	cmpl	$0x534d4150, %eax
	jne	e820_done
	cmpl	$20, %ecx			/* BIOS may return fewer bytes: ignore such entries */
	jb	1f
	movl	%es:8(%di), %eax		/* and empty ones (qboot ends its map with one) */
	orl	%es:12(%di), %eax
	jz	1f
	incb	(RM_BOOT_PARAMS + 0x1e8)
	addw	$20, %di
1:	cmpb	$128, (RM_BOOT_PARAMS + 0x1e8)
	jae	e820_done
	testl	%ebx, %ebx
	jnz	e820_next
e820_done:

	/* A20: port 0x92 bit 1 (never write bit 0: that resets the machine). On machines without
	 * this port (microvm) the read returns 0xff and nothing is written. */
	inb	$0x92, %al
	testb	$0x02, %al
	jnz	a20_done
	orb	$0x02, %al
	andb	$0xfe, %al
	outb	%al, $0x92
a20_done:

	/* Protected mode: the GDT's base is only known now (setup base + offset). */
	xorl	%ebx, %ebx
	movw	%ds, %bx
	shll	$4, %ebx			/* EBX = setup base (linear) */
	leal	rm_gdt(%ebx), %eax
	movl	%eax, (rm_gdt_desc + 2)
	lgdtl	rm_gdt_desc
	movl	code32_start, %eax
	movl	%eax, pm_jump
	leal	RM_BOOT_PARAMS(%ebx), %esi
	movl	$REAL_MAGIC, %edi
	xorl	%ebp, %ebp
	movl	%cr0, %eax
	orl	$1, %eax			/* PE */
	movl	%eax, %cr0
	ljmpl	*pm_jump			/* CS = 0x10, flat 32-bit: to code32_start */

	.balign 8
rm_gdt:
	.quad 0
	.quad 0
	.quad 0x00cf9a000000ffff		/* 0x10: code, flat 4 GiB, 32-bit */
	.quad 0x00cf92000000ffff		/* 0x18: data, flat 4 GiB */
rm_gdt_end:
rm_gdt_desc:
	.word rm_gdt_end - rm_gdt - 1
	.long 0
pm_jump:
	.long 0
	.word SEL_CODE32

kernel_version_str:
	.asciz "kvmkit-probe 1"
