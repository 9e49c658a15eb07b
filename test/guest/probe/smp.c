/*
 * Application processor start-up: INIT-SIPI-SIPI through the local APIC (Intel SDM vol. 3A,
 * 8.4.4.1 "Typical BSP Initialization Sequence"; 10.6.1 ICR). The trampoline (head.S) takes each
 * AP from real mode at the SIPI page to long mode on the probe's GDT, page tables and IDT, with
 * its own stack; ap_main prints one line, counts itself and halts.
 */
#include "smp.h"

#define MSR_APIC_BASE		0x1b
#define APIC_BASE_X2APIC	(1u << 10)
#define APIC_ID			0x020
#define APIC_SVR		0x0f0
#define APIC_ICR_LO		0x300
#define APIC_ICR_HI		0x310
#define ICR_INIT		0x00000500
#define ICR_STARTUP		0x00000600
#define ICR_LEVEL_ASSERT	0x00004000
#define ICR_LEVEL_TRIGGER	0x00008000
#define ICR_BUSY		0x00001000
#define MSR_X2APIC_ID		0x802
#define MSR_X2APIC_SVR		0x80f
#define MSR_X2APIC_ICR		0x830

extern char trampoline_start[], trampoline_end[];
static volatile u32 cpus_up;

struct apic {
	bool x2;
	u64 base;
};

static struct apic apic_probe(void)
{
	u64 v = rdmsr(MSR_APIC_BASE);
	struct apic a = { (v & APIC_BASE_X2APIC) != 0, v & 0xffffff000ull };
	if (!a.base || a.base >= 0x100000000ull)
		a.base = 0xfee00000;
	return a;
}

u32 lapic_id(void)
{
	struct apic a = apic_probe();
	if (a.x2)
		return (u32)rdmsr(MSR_X2APIC_ID);
	return mmio_read32(a.base + APIC_ID) >> 24;
}

static bool icr_send(const struct apic *a, u32 dest, u32 lo)
{
	if (a->x2) {
		wrmsr(MSR_X2APIC_ICR, ((u64)dest << 32) | lo);
		return true;
	}
	mmio_write32(a->base + APIC_ICR_HI, dest << 24);
	mmio_write32(a->base + APIC_ICR_LO, lo);
	for (u32 i = 0; i < 100000; i++) {	/* delivery status: bounded wait */
		if (!(mmio_read32(a->base + APIC_ICR_LO) & ICR_BUSY))
			return true;
		cpu_relax();
	}
	return false;
}

bool smp_ring3;

static void ap_body(u64 slot) __attribute__((noreturn));
static void ap_body(u64 slot)
{
	(void)slot;
	probe("cpu apic=%u up", lapic_id());
	__atomic_add_fetch(&cpus_up, 1, __ATOMIC_SEQ_CST);
	halt_forever();
}

/* head.S: each AP arrives here in long mode, ring 0, on its slot's stack */
void ap_main(u32 slot)
{
	if (smp_ring3)
		cpu_enter_user(slot, ap_body, slot);
	ap_body(slot);
}

u32 smp_start(const struct cpu_list *cpus, u64 tramp_page, u32 init_udelay)
{
	struct apic a = apic_probe();
	u32 self = a.x2 ? (u32)rdmsr(MSR_X2APIC_ID) : mmio_read32(a.base + APIC_ID) >> 24;
	u32 targets[MAX_CPU_IDS], n = 0;
	cpus_up = 1;

	for (u32 i = 0; i < cpus->count; i++) {
		u32 id = cpus->apic_id[i];
		if (id == self)
			continue;
		if (!a.x2 && id > 0xfe) {
			probe("error=apic-id-unreachable apic=%u", id);
			continue;
		}
		if (n + 1 >= MAX_CPUS) {
			probe("error=too-many-cpus apic=%u max=%u", id, MAX_CPUS);
			continue;
		}
		targets[n++] = id;
	}
	if (!n)
		return 1;

	memcpy((void *)(uintptr_t)tramp_page, trampoline_start,
	       (size_t)(trampoline_end - trampoline_start));
	__asm__ volatile("mfence" ::: "memory");

	/* Software-enable our APIC (spurious vector 0xff) so IPIs are certainly delivered. */
	if (a.x2)
		wrmsr(MSR_X2APIC_SVR, rdmsr(MSR_X2APIC_SVR) | 0x1ff);
	else
		mmio_write32(a.base + APIC_SVR, mmio_read32(a.base + APIC_SVR) | 0x1ff);

	u32 vector = (u32)(tramp_page >> 12);
	for (u32 i = 0; i < n; i++) {
		icr_send(&a, targets[i], ICR_INIT | ICR_LEVEL_ASSERT | ICR_LEVEL_TRIGGER);
		icr_send(&a, targets[i], ICR_INIT | ICR_LEVEL_TRIGGER);	/* de-assert */
	}
	udelay(init_udelay);
	for (int round = 0; round < 2; round++) {
		for (u32 i = 0; i < n; i++)
			icr_send(&a, targets[i], ICR_STARTUP | vector);
		udelay(200);
		if (cpus_up == n + 1)
			break;
	}
	u64 end = tsc_deadline_us(2000000);
	while (__atomic_load_n(&cpus_up, __ATOMIC_ACQUIRE) < n + 1 && (int64_t)(rdtsc() - end) < 0)
		cpu_relax();
	return __atomic_load_n(&cpus_up, __ATOMIC_ACQUIRE);
}
