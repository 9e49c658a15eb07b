/*
 * IDT with the 32 CPU exception vectors. Any exception prints
 *   PROBE exception vector=N rip=0x... err=0x... cr2=0x... [cpu apic=N]
 * and halts that CPU, so a failure is visible instead of a silent triple fault.
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

struct idt_ptr {
	u16 pad[3];
	u16 limit;
	u64 base;
} __attribute__((packed, aligned(16)));

struct frame {
	u64 r15, r14, r13, r12, r11, r10, r9, r8, rbp, rdi, rsi, rdx, rcx, rbx, rax;
	u64 vector, err, rip, cs, rflags, rsp, ss;
};

extern char isr_stubs[];
static struct idt_entry idt[32] __attribute__((aligned(16)));
struct idt_ptr idt_ptr_storage;
/* head.S loads the IDT on APs through this label (the 10-byte pseudo-descriptor) */
__asm__(".globl idt_desc\n.set idt_desc, idt_ptr_storage + 6\n");

void idt_init(void)
{
	for (int v = 0; v < 32; v++) {
		u64 h = (u64)(uintptr_t)(isr_stubs + 16 * v);
		idt[v].off_lo = (u16)h;
		idt[v].sel = SEL_CODE64;
		idt[v].ist = 0;
		idt[v].type = 0x8e;	/* present, DPL 0, 64-bit interrupt gate */
		idt[v].off_mid = (u16)(h >> 16);
		idt[v].off_hi = (u32)(h >> 32);
		idt[v].zero = 0;
	}
	idt_ptr_storage.limit = sizeof(idt) - 1;
	idt_ptr_storage.base = (u64)(uintptr_t)idt;
	__asm__ volatile("lidt %0" : : "m"(idt_ptr_storage.limit));
}

void exception_handler(struct frame *f)
{
	char buf[256];
	int n = snprintf(buf, sizeof(buf),
			 "PROBE exception vector=%llu rip=0x%llx err=0x%llx cr2=0x%llx rsp=0x%llx cpu_apic=%u\r\n",
			 (unsigned long long)f->vector, (unsigned long long)f->rip,
			 (unsigned long long)f->err, (unsigned long long)read_cr2(),
			 (unsigned long long)f->rsp, mmio_read32(0xfee00020) >> 24);
	/* If this CPU faulted while printing, the lock is ours already: print anyway after a while. */
	bool locked = serial_trylock_bounded();
	serial_write_unlocked(buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1);
	if (locked)
		serial_unlock();
	halt_forever();
}
