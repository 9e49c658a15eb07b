/*
 * CPU tables: the IDT (exceptions, stray interrupts, the ring-3 "system call"), one TSS per CPU
 * slot, and the switch to ring 3 (probe.ring=3).
 *
 * Any exception prints
 *   PROBE exception vector=N rip=0x... err=0x... cr2=0x... rsp=0x... rflags=0x... cpl=N cpu_apic=N
 * and halts that CPU, so a failure is visible instead of a silent triple fault.
 *
 * Why ring 3: where /dev/kvm is PVM (DESIGN.md), guest ring-0 code goes through KVM's instruction
 * emulator (~0.75 us per instruction, measured with tools/kvmrun) while ring-3 code runs natively.
 * Port I/O is allowed in ring 3 by the TSS I/O bitmap (PVM drops IOPL from iretq, KVM's emulator
 * honours the bitmap); the few privileged operations the probe needs (hlt, rdmsr, wrmsr, the
 * triple fault) are "system calls": ud2 followed by "PRB", caught by the #UD handler (PVM turns
 * int $0x80 from ring 3 into #UD, and emulates no protected-mode int n). PVM also treats ring 3
 * as interrupts-enabled, so ring-3 mode masks the PICs and the LAPIC LVTs and every vector has a
 * handler: 32..255 are acknowledged (LAPIC EOI) and ignored.
 */
#include "probe.h"

struct idt_entry {
	u16 off_lo;
	u16 sel;
	u8 ist;
	u8 type;
	u16 off_mid;
	u32 off_hi;
	u32 zero;
} __attribute__((packed));

struct desc_ptr {
	u16 pad[3];
	u16 limit;
	u64 base;
} __attribute__((packed, aligned(16)));

struct tss {
	u32 reserved0;
	u64 rsp0, rsp1, rsp2;
	u64 reserved1;
	u64 ist[7];
	u64 reserved2;
	u16 reserved3;
	u16 iopb;
} __attribute__((packed, aligned(16)));

struct frame {
	u64 r15, r14, r13, r12, r11, r10, r9, r8, rbp, rdi, rsi, rdx, rcx, rbx, rax;
	u64 vector, err, rip, cs, rflags, rsp, ss;
};

extern char isr_stubs[], cpu_stacks[];
static volatile u32 stray_irqs;
extern u64 gdt[];
static struct idt_entry idt[256] __attribute__((aligned(16)));
/* All TSSs share one I/O permission bitmap (all ports allowed) placed right after them: TSS i's
 * bitmap offset is the distance to it. PVM ignores IOPL set by iretq, but KVM's emulator honours
 * the bitmap. */
static struct {
	struct tss tss[MAX_CPUS];
	u8 iobitmap[8192 + 1];	/* zeros: every port allowed; then the 0xff terminator */
} tss_area __attribute__((aligned(128)));
#define tss tss_area.tss
struct desc_ptr idt_ptr_storage;
/* head.S loads the IDT on APs through this label (the 10-byte pseudo-descriptor) */
__asm__(".globl idt_desc\n.set idt_desc, idt_ptr_storage + 6\n");

static void set_gate(int v, void *handler, int dpl)
{
	u64 h = (u64)(uintptr_t)handler;
	idt[v].off_lo = (u16)h;
	idt[v].sel = SEL_CODE64;
	idt[v].ist = 0;
	idt[v].type = (u8)(0x8e | (dpl << 5));	/* present, 64-bit interrupt gate */
	idt[v].off_mid = (u16)(h >> 16);
	idt[v].off_hi = (u32)(h >> 32);
	idt[v].zero = 0;
}

void idt_init(void)
{
	/* Only what ring 0 needs: ring-0 code is emulated on PVM, so every instruction counts. */
	for (int v = 0; v < 32; v++)
		set_gate(v, isr_stubs + 16 * v, 0);
	idt_ptr_storage.limit = sizeof(idt) - 1;
	idt_ptr_storage.base = (u64)(uintptr_t)idt;
	__asm__ volatile("lidt %0" : : "m"(idt_ptr_storage.limit));
}

/* Ring 3 needs: a handler for every vector, TSS descriptors for every slot, the I/O bitmap.
 * Run by the BSP before it enters ring 3 and before the APs start. */
static void user_tables_init(void)
{
	for (int v = 32; v < 256; v++)
		set_gate(v, isr_stubs + 16 * v, 0);
	memset(tss_area.iobitmap, 0, sizeof(tss_area.iobitmap) - 1);
	tss_area.iobitmap[sizeof(tss_area.iobitmap) - 1] = 0xff;
	for (int i = 0; i < MAX_CPUS; i++) {
		u64 b = (u64)(uintptr_t)&tss[i];
		u64 iopb = (u64)(uintptr_t)tss_area.iobitmap - b;
		u64 limit = iopb + sizeof(tss_area.iobitmap) - 1;
		tss[i].iopb = (u16)iopb;
		tss[i].rsp0 = (u64)(uintptr_t)(cpu_stacks + (u64)i * SLOT_STACK + KSTACK);
		/* 16-byte descriptor, type 9: available 64-bit TSS */
		gdt[6 + 2 * i] = (limit & 0xffff) | ((b & 0xffffff) << 16) | (0x89ull << 40) |
				 ((limit >> 16) & 0xf) << 48 | ((b >> 24) & 0xff) << 56;
		gdt[7 + 2 * i] = b >> 32;
	}
}

/* Ring 3 may run with interrupts enabled (PVM): keep the legacy PICs and this CPU's LAPIC quiet. */
static void mask_interrupt_sources(u32 slot)
{
	if (slot == 0) {
		outb(0x21, 0xff);
		outb(0xa1, 0xff);
	}
	u64 apic = 0xfee00000;
	mmio_write32(apic + 0x320, 0x10000);	/* LVT timer: masked */
	mmio_write32(apic + 0x350, 0x10000);	/* LINT0 */
	mmio_write32(apic + 0x360, 0x10000);	/* LINT1 */
}

void cpu_enter_user(u32 slot, void (*fn)(u64), u64 arg)
{
	if (slot == 0)
		user_tables_init();
	mask_interrupt_sources(slot);
	u16 sel = (u16)(SEL_TSS0 + 16 * slot);
	__asm__ volatile("ltr %0" : : "r"(sel));
	u64 stack_top = (u64)(uintptr_t)(cpu_stacks + (u64)(slot + 1) * SLOT_STACK) - 8;
	__asm__ volatile(
		"pushq %[ss]\n\t"
		"pushq %[rsp]\n\t"
		"pushq $0x3002\n\t"		/* IOPL 3, IF 0 */
		"pushq %[cs]\n\t"
		"pushq %[rip]\n\t"
		"iretq"
		:
		: [ss] "i"(SEL_UDATA), [rsp] "r"(stack_top), [cs] "i"(SEL_UCODE64),
		  [rip] "r"((u64)(uintptr_t)fn), "D"(arg)
		: "memory");
	__builtin_unreachable();
}

static void exception_report(struct frame *f) __attribute__((noreturn));
static void exception_report(struct frame *f)
{
	char buf[256];
	int n = snprintf(buf, sizeof(buf),
			 "PROBE exception vector=%llu rip=0x%llx err=0x%llx cr2=0x%llx rsp=0x%llx rflags=0x%llx cpl=%llu cpu_apic=%u\r\n",
			 (unsigned long long)f->vector, (unsigned long long)f->rip,
			 (unsigned long long)f->err, (unsigned long long)read_cr2(),
			 (unsigned long long)f->rsp, (unsigned long long)f->rflags, (unsigned long long)(f->cs & 3),
			 mmio_read32(0xfee00020) >> 24);
	/* If this CPU faulted while printing, the lock is ours already: print anyway after a while. */
	bool locked = serial_trylock_bounded();
	serial_write_unlocked(buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1);
	if (locked)
		serial_unlock();
	halt_forever();
}

u32 cpu_stray_irqs(void) { return stray_irqs; }

static void syscall(struct frame *f)
{
	switch (f->rax) {
	case SYS_HALT:
		halt_forever();
	case SYS_RDMSR: {
		u32 lo, hi;
		__asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"((u32)f->rdi));
		f->rax = ((u64)hi << 32) | lo;
		break;
	}
	case SYS_WRMSR:
		__asm__ volatile("wrmsr" : : "c"((u32)f->rdi), "a"((u32)f->rsi), "d"((u32)(f->rsi >> 32)));
		break;
	case SYS_TRIPLE_FAULT: {
		static const struct desc_ptr empty;
		__asm__ volatile("lidt %0\n\tint3" : : "m"(empty.limit));
		halt_forever();
	}
	default:
		f->rax = (u64)-1;
	}
}

void trap_dispatch(struct frame *f)
{
	if (f->vector >= 32) {
		/* an interrupt nobody asked for (ring 3 on PVM runs with interrupts on) */
		__atomic_add_fetch(&stray_irqs, 1, __ATOMIC_RELAXED);
		mmio_write32(0xfee000b0, 0);	/* LAPIC EOI */
		return;
	}
	if (f->vector == 6 && (f->cs & 3) && !memcmp((const void *)f->rip, "\x0f\x0bPRB", 5)) {
		f->rip += 5;
		syscall(f);
		return;
	}
	exception_report(f);
}
