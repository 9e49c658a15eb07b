/*
 * Power off through ACPI S5 and reboot through the FADT reset register or the i8042.
 *
 * S5: SLP_TYP from the \_S5 package in the DSDT. Fixed-hardware ACPI writes
 * (SLP_TYP << 10) | SLP_EN(1 << 13) to PM1a_CNT (ACPI 6.5 section 4.8.3.2.1); hardware-reduced
 * ACPI (QEMU microvm) writes (SLP_TYP << 2) | SLP_EN(1 << 5) to SLEEP_CONTROL_REG (section 4.8.3.7).
 * FADT offsets (section 5.2.9): 64 PM1a_CNT_BLK, 68 PM1b_CNT_BLK, 112 Flags, 116 RESET_REG,
 * 128 RESET_VALUE, 172 X_PM1a_CNT_BLK, 184 X_PM1b_CNT_BLK, 244 SLEEP_CONTROL_REG.
 */
#include "acpi.h"
#include "power.h"

#define FADT_RESET_REG_SUP (1u << 10)

static void settle(void)
{
	udelay(100000);	/* the VMM stops us long before this ends */
}

void do_poweroff(void)
{
	probe("poweroff");
	u64 f = acpi_fadt();
	u8 typ = 0;
	if (f && acpi_s5_slp_typ(&typ)) {
		u32 flen = rd32(f + 4);
		u32 pm1a = flen >= 68 ? rd32(f + 64) : 0;
		u32 pm1b = flen >= 72 ? rd32(f + 68) : 0;
		if (!pm1a && flen >= 184) {
			struct acpi_gas g;
			memcpy(&g, (const void *)(f + 172), sizeof(g));
			if (g.space_id == GAS_IO && g.address && g.address <= 0xffff)
				pm1a = (u32)g.address;
		}
		if (pm1a && pm1a <= 0xffff) {
			u16 v = (u16)((typ << 10) | (1u << 13));
			if (pm1b && pm1b <= 0xffff)
				outw((u16)pm1b, v);
			outw((u16)pm1a, v);
			settle();
		} else if (flen >= 256) {
			struct acpi_gas g;
			memcpy(&g, (const void *)(f + 244), sizeof(g));
			if (g.address && acpi_gas_write(&g, (u64)((typ << 2) | (1u << 5))))
				settle();
		}
	}
	probe("error=poweroff-failed fadt=%s s5=%s", f ? "yes" : "no",
	      f && acpi_s5_slp_typ(&typ) ? "yes" : "no");
	halt_forever();
}

static void triple_fault(void) __attribute__((noreturn));
static void triple_fault(void)
{
	if (cpu_user_mode())
		syscall2(SYS_TRIPLE_FAULT, 0, 0);
	static const struct { u16 pad[3]; u16 limit; u64 base; } __attribute__((packed, aligned(16))) empty;
	__asm__ volatile("lidt %0\n\tint3" : : "m"(empty.limit));
	halt_forever();
}

void do_reboot(void)
{
	u64 f = acpi_fadt();
	struct acpi_gas g = { 0 };
	bool acpi = false;
	if (f && rd32(f + 4) >= 129 && (rd32(f + 112) & FADT_RESET_REG_SUP)) {
		memcpy(&g, (const void *)(f + 116), sizeof(g));
		acpi = g.address && (g.space_id == GAS_IO || g.space_id == GAS_MEMORY);
	}
	probe("reboot method=%s", acpi ? (g.space_id == GAS_IO ? "acpi-io" : "acpi-mmio") : "i8042");
	/* I/O space as specified; memory space (QEMU microvm's GED) as well, since such a machine
	 * usually has no i8042. */
	if (acpi && acpi_gas_write(&g, rd8(f + 128))) {
		settle();
		probe("reboot_fallback=i8042");
	}
	outb(0x64, 0xfe);	/* i8042: pulse the reset line */
	settle();
	probe("reboot_fallback=triple-fault");
	triple_fault();
}
