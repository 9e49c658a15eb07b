/*
 * Protected-mode part, loaded at 0x100000 (code32_start). Three ways in, one way on:
 *   0x100000  entry32: 32-bit protected mode, flat segments, paging off, ESI = boot_params
 *             (also reached from the real-mode path in setup.S with EDI = REAL_MAGIC)
 *   0x100200  entry64: long mode, RSI = boot_params, the loader's GDT and page tables
 * Both load the probe's own GDT and identity page tables (0..4 GiB, 2 MiB pages, 3..4 GiB
 * uncacheable), zero .bss, switch to the BSP stack and call probe_main(bp, entry, setup_base).
 *
 * Also here: the AP trampoline (copied below 1 MiB by smp.c) and the exception stubs.
 */
#include "layout.h"

#define MSR_EFER	0xc0000080
#define EFER_LME	0x100
#define CR0_PE		0x1
#define CR0_PG		0x80000000
#define CR4_PAE		0x20

/* Ring 3 -> ring 0: ud2 followed by the bytes "PRB"; the #UD handler recognises it (see idt.c). */
.macro SYSCALL_UD2
	ud2
	.byte 0x50, 0x52, 0x42
.endm

/* PAE, our page tables, EFER.LME, paging (32-bit code, no stack needed). Clobbers eax, ecx, edx. */
.macro ENABLE_LONG_MODE
	movl	%cr4, %eax
	orl	$CR4_PAE, %eax
	movl	%eax, %cr4
	movl	$pml4, %eax
	movl	%eax, %cr3
	movl	$MSR_EFER, %ecx
	rdmsr
	orl	$EFER_LME, %eax
	wrmsr
	movl	%cr0, %eax
	orl	$(CR0_PE | CR0_PG), %eax
	movl	%eax, %cr0
.endm

	.section .head.text, "ax"
	.code32
	.globl entry32
entry32:
	cli
	cld
	lgdtl	%cs:gdt_desc
	movl	$SEL_DATA, %eax
	movl	%eax, %ds
	movl	%eax, %es
	movl	%eax, %ss
	movl	%eax, %fs
	movl	%eax, %gs
	ljmpl	$SEL_CODE32, $1f
1:
	movl	$ENTRY_REAL, %ebp
	cmpl	$REAL_MAGIC, %edi
	je	2f
	movl	$ENTRY_32, %ebp
	xorl	%ebx, %ebx
2:
	/* no usable stack here (the protocol does not promise one) */
	ENABLE_LONG_MODE
	ljmpl	$SEL_CODE64, $from32

	.code64
from32:
	movl	%esi, %esi		/* zero-extend boot_params, setup base, entry kind */
	movl	%ebx, %ebx
	movl	%ebp, %ebp
	jmp	common64

	.org 0x200
	.globl entry64
entry64:
	cli
	cld
	movl	$ENTRY_64, %ebp
	xorl	%ebx, %ebx
common64:
	/* the protocol promises no stack: take ours (slot 0's main stack, mapped by any >= 1 GiB
	 * identity map) before lretq needs one */
	movq	$(cpu_stacks + SLOT_STACK), %rsp
	lgdt	gdt_desc(%rip)
	movl	$SEL_DATA, %eax
	movl	%eax, %ds
	movl	%eax, %es
	movl	%eax, %ss
	movl	%eax, %fs
	movl	%eax, %gs
	pushq	$SEL_CODE64
	leaq	1f(%rip), %rax
	pushq	%rax
	lretq
1:
	movq	$pml4, %rax
	movq	%rax, %cr3
	/* zero .bss (stacks, IDT, copies of boot_params and the command line live there) */
	movq	$__bss_start, %rdi
	movq	$__bss_end, %rcx
	subq	%rdi, %rcx
	shrq	$3, %rcx		/* the linker script aligns both to 16 */
	xorl	%eax, %eax
	rep stosq
	movq	$(cpu_stacks + SLOT_STACK), %rsp	/* slot 0: the BSP */
	xorl	%eax, %eax
	pushq	%rax			/* fake return address: 16-byte aligned frame for C */
	movq	%rsi, %rdi		/* boot_params */
	movl	%ebp, %esi		/* entry kind */
	movq	%rbx, %rdx		/* setup base (real-mode path) */
	call	probe_main
	jmp	halt_forever

	.text
	.globl halt_forever
halt_forever:
	movw	%cs, %ax
	testb	$3, %al
	jz	1f
	xorl	%eax, %eax		/* ring 3: SYS_HALT */
	SYSCALL_UD2
1:	cli
	hlt
	jmp	1b

/*
 * AP trampoline. smp.c copies [trampoline_start, trampoline_end) to a free page P below 1 MiB and
 * sends SIPI with vector P >> 12: the AP starts in real mode at CS = P >> 4, IP = 0. It loads the
 * probe's GDT (its pseudo-descriptor is inside the copy, addressed through CS), enters protected
 * mode and jumps straight into ap_entry32 here at its linked address.
 */
	.code16
	.balign 16
	.globl trampoline_start, trampoline_end
trampoline_start:
	cli
	cld
	lgdtl	%cs:(tramp_gdt_desc - trampoline_start)
	movl	%cr0, %eax
	orl	$CR0_PE, %eax
	movl	%eax, %cr0
	ljmpl	$SEL_CODE32, $ap_entry32
	.balign 8
tramp_gdt_desc:
	.word	gdt_end - gdt - 1
	.long	gdt
trampoline_end:

	.code32
ap_entry32:
	movl	$SEL_DATA, %eax
	movl	%eax, %ds
	movl	%eax, %es
	movl	%eax, %ss
	movl	%eax, %fs
	movl	%eax, %gs
	ENABLE_LONG_MODE
	ljmpl	$SEL_CODE64, $ap_entry64

	.code64
ap_entry64:
	lgdt	gdt_desc(%rip)
	lidt	idt_desc(%rip)
	movl	$1, %eax
	lock xaddl %eax, ap_slot_next(%rip)	/* CPU slot: 1, 2, ... in arrival order */
	cmpl	$MAX_CPUS, %eax
	jae	halt_forever			/* more APs than slots */
	movl	%eax, %edi
	incl	%eax
	imull	$SLOT_STACK, %eax, %eax
	leaq	cpu_stacks(%rip), %rsp
	addq	%rax, %rsp
	xorl	%eax, %eax
	pushq	%rax
	call	ap_main
	jmp	halt_forever

/*
 * Trap stubs for all 256 vectors: vector v's stub is at isr_stubs + 16 * v. Vectors with a
 * CPU-pushed error code push nothing extra; the others push 0 so the frame is uniform.
 */
	.balign 16
	.globl isr_stubs
isr_stubs:
	.set vec, 0
	.rept 256
	.balign 16
	.if (vec == 8) || ((vec >= 10) && (vec <= 14)) || (vec == 17) || (vec == 21) || (vec == 29) || (vec == 30)
	.else
	pushq	$0
	.endif
	pushq	$(vec - 128)			/* sign-extended imm8 keeps the stub short */
	jmp	isr_common
	.set vec, vec + 1
	.endr

isr_common:
	pushq	%rax
	pushq	%rbx
	pushq	%rcx
	pushq	%rdx
	pushq	%rsi
	pushq	%rdi
	pushq	%rbp
	pushq	%r8
	pushq	%r9
	pushq	%r10
	pushq	%r11
	pushq	%r12
	pushq	%r13
	pushq	%r14
	pushq	%r15
	addq	$128, 15*8(%rsp)		/* vector back to 0..255 */
	movq	%rsp, %rdi
	movq	%rsp, %rbx
	andq	$-16, %rsp
	call	trap_dispatch		/* exceptions do not return; syscalls may */
	movq	%rbx, %rsp
	popq	%r15
	popq	%r14
	popq	%r13
	popq	%r12
	popq	%r11
	popq	%r10
	popq	%r9
	popq	%r8
	popq	%rbp
	popq	%rdi
	popq	%rsi
	popq	%rdx
	popq	%rcx
	popq	%rbx
	popq	%rax
	addq	$16, %rsp
	iretq

	.data
	.balign 16
	.globl gdt, gdt_desc
gdt:
	.quad 0
	.quad 0x00af9a000000ffff		/* 0x08: code, 64-bit */
	.quad 0x00cf9a000000ffff		/* 0x10: code, flat 4 GiB, 32-bit */
	.quad 0x00cf92000000ffff		/* 0x18: data, flat 4 GiB */
	.quad 0x00affa000000ffff		/* 0x20: user code, 64-bit, DPL 3 */
	.quad 0x00cff2000000ffff		/* 0x28: user data, DPL 3 */
	.fill 2 * MAX_CPUS, 8, 0		/* 0x30: TSS descriptors, filled by cpu_tables_init() */
gdt_end:
	.balign 16
	.word 0, 0, 0
gdt_desc:					/* 10 bytes: lgdt reads 6 of them in 32-bit mode */
	.word gdt_end - gdt - 1
	.quad gdt

	.globl ap_slot_next
	.balign 4
ap_slot_next:
	.long 1

/*
 * Identity page tables, built at assembly time: PML4[0] -> PDPT, PDPT[0..3] -> 4 page directories
 * of 2 MiB pages covering 0..4 GiB, user-accessible (probe.ring=3 runs the probe in ring 3). 0..3 GiB write-back; 3..4 GiB (PCI BARs, IOAPIC 0xfec00000,
 * LAPIC 0xfee00000) PCD|PWT, i.e. uncacheable whatever the MTRRs/PAT say.
 */
	.section .data.pagetables, "aw"
	.balign 4096
	.globl pml4
pml4:
	.quad pdpt + 0x07			/* present, writable, user (probe.ring=3) */
	.fill 511, 8, 0
pdpt:
	.quad pd + 0x0000 + 0x07
	.quad pd + 0x1000 + 0x07
	.quad pd + 0x2000 + 0x07
	.quad pd + 0x3000 + 0x07
	.fill 508, 8, 0
pd:
	.set i, 0
	.rept 1536
	.quad (i << 21) | 0x87			/* present, writable, user, 2 MiB page */
	.set i, i + 1
	.endr
	.rept 512
	.quad (i << 21) | 0x9f			/* ... + PWT | PCD */
	.set i, i + 1
	.endr

/* Stacks are not zeroed at start-up (zeroing 600 KiB is 0.5 s where ring-0 code is emulated). */
	.section .stacks, "aw", @nobits
	.balign 4096
	.globl cpu_stacks
cpu_stacks:
	.skip SLOT_STACK * MAX_CPUS

/* kernel_info (boot protocol 2.15, boot.rst "THE KERNEL_INFO"): header "LToP", size, size_total,
 * setup_type_max; no variable-length data. */
	.section .rodata
	.balign 4
	.globl kernel_info
kernel_info:
	.ascii	"LToP"
	.long	kernel_info_var_len_data - kernel_info
	.long	kernel_info_end - kernel_info
	.long	0x00000000
kernel_info_var_len_data:
kernel_info_end:
