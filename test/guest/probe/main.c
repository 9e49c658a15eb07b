/*
 * The probe's main sequence. Every result is one line on COM1:  PROBE <key>[=<value>] [k=v ...]
 * (see README.md for the list). The order is fixed: hello, cmdline, e820, initrd, acpi, cpus,
 * rtc, pci, ready, then the action chosen by probe.cmd=.
 */
#include "probe.h"
#include "bootparams.h"
#include "cmdline.h"
#include "acpi.h"
#include "smp.h"
#include "pci.h"
#include "power.h"
#include "tests.h"

const u8 *boot_params;
u64 boot_params_addr;
u64 setup_base;
static u32 entry_kind;
static bool quiet;

static u64 bp64(u32 off) { u64 v; memcpy(&v, boot_params + off, 8); return v; }
static u32 bp32(u32 off) { u32 v; memcpy(&v, boot_params + off, 4); return v; }
static u16 bp16(u32 off) { u16 v; memcpy(&v, boot_params + off, 2); return v; }
static u8 bp8(u32 off) { return boot_params[off]; }

struct e820 {
	u64 addr, size;
	u32 type;
};

static u32 e820_count(void)
{
	u32 n = bp8(BP_E820_ENTRIES);
	return n > BP_E820_MAX ? BP_E820_MAX : n;
}

static struct e820 e820_get(u32 i)
{
	struct e820 e;
	u32 off = BP_E820_TABLE + 20 * i;
	e.addr = bp64(off);
	e.size = bp64(off + 8);
	e.type = bp32(off + 16);
	return e;
}

static u64 initrd_addr(void) { return bp32(BP_RAMDISK_IMAGE) | (u64)bp32(BP_EXT_RAMDISK_IMAGE) << 32; }
static u64 initrd_size(void) { return bp32(BP_RAMDISK_SIZE) | (u64)bp32(BP_EXT_RAMDISK_SIZE) << 32; }
static u64 cmdline_addr(void) { return bp32(BP_CMD_LINE_PTR) | (u64)bp32(BP_EXT_CMD_LINE_PTR) << 32; }

static void report_hello(void)
{
	const char *e = entry_kind == ENTRY_64 ? "64" : entry_kind == ENTRY_32 ? "32" : "real";
	serial_write("\r\n", 2);	/* start on a fresh line after firmware output */
	probe("hello entry=%s bootproto=0x%04x boot_params=0x%llx ring=%u", e, bp16(BP_VERSION),
	      (unsigned long long)boot_params_addr, cpu_user_mode() ? 3 : 0);
}

static void report_cmdline(void)
{
	static char line[CMDLINE_MAX * 4 + 32];
	int n = snprintf(line, sizeof(line), "PROBE cmdline=");
	n += fmt_quoted(line + n, sizeof(line) - n - 2, cmdline_text(), cmdline_len());
	if ((size_t)n > sizeof(line) - 3)
		n = sizeof(line) - 3;
	line[n++] = '\r';
	line[n++] = '\n';
	serial_write(line, (size_t)n);
}

static void report_e820(void)
{
	u64 ram = 0;
	u32 n = e820_count();
	for (u32 i = 0; i < n; i++) {
		struct e820 e = e820_get(i);
		if (!quiet)
			probe("e820 addr=0x%llx size=0x%llx type=%u", (unsigned long long)e.addr,
			      (unsigned long long)e.size, e.type);
		if (e.type == E820_RAM)
			ram += e.size;
	}
	probe("e820_count=%u ram_bytes=%llu", n, (unsigned long long)ram);
}

static void report_initrd(void)
{
	u64 a = initrd_addr(), s = initrd_size();
	if (!s) {
		probe("initrd=none");
		return;
	}
	if (a >= 0x100000000ull || s > 0x100000000ull - a) {
		probe("initrd addr=0x%llx size=%llu error=above-4g", (unsigned long long)a,
		      (unsigned long long)s);
		return;
	}
	u64 h = fnv1a64((const void *)(uintptr_t)a, s, FNV1A64_INIT);
	probe("initrd addr=0x%llx size=%llu fnv1a64=%016llx", (unsigned long long)a,
	      (unsigned long long)s, (unsigned long long)h);
}

static void format_ids(char *buf, size_t size, const struct cpu_list *l)
{
	size_t n = 0;
	buf[0] = 0;
	for (u32 i = 0; i < l->count && n + 12 < size; i++)
		n += (size_t)snprintf(buf + n, size - n, i ? ",%u" : "%u", l->apic_id[i]);
}

/* Range overlap helper for the trampoline page choice. */
static bool overlaps(u64 a, u64 alen, u64 b, u64 blen)
{
	return blen && a < b + blen && b < a + alen;
}

/* A free 4 KiB page below 1 MiB for the AP trampoline: RAM in e820, at or above 0x30000 (kvmkit
 * uses 0x500..0x1ffff, SeaBIOS/qboot load setup at 0x10000 and the command line at 0x20000) and
 * clear of boot_params, the command line, the initrd and the real-mode setup segment. */
static u64 pick_trampoline_page(void)
{
	u64 cl = cmdline_addr();
	for (u64 p = 0x30000; p < 0x9f000; p += 0x1000) {
		bool ram = false;
		for (u32 i = 0; i < e820_count(); i++) {
			struct e820 e = e820_get(i);
			if (e.type == E820_RAM && e.addr <= p && p + 0x1000 <= e.addr + e.size)
				ram = true;
		}
		if (!ram)
			continue;
		if (overlaps(p, 0x1000, boot_params_addr, 0x1000) ||
		    overlaps(p, 0x1000, cl, cmdline_len() + 1) ||
		    overlaps(p, 0x1000, initrd_addr(), initrd_size()) ||
		    (setup_base && overlaps(p, 0x1000, setup_base, 0x10000)))
			continue;
		return p;
	}
	return 0;
}

static void report_cpus(void)
{
	static struct cpu_list cpus;
	const char *src = "none";
	u64 rsdp = acpi_init(bp64(BP_ACPI_RSDP_ADDR));
	if (rsdp) {
		int n = acpi_madt_cpus(&cpus);
		probe("acpi rsdp=0x%llx madt_cpus=%d fadt=%s", (unsigned long long)rsdp, n < 0 ? 0 : n,
		      acpi_fadt() ? "yes" : "no");
		if (n > 0)
			src = "acpi";
	} else {
		probe("acpi=none");
	}
	if (!cpus.count) {
		u64 mp = mptable_cpus(&cpus);
		if (mp && cpus.count)
			src = "mptable";
	}
	u32 self = lapic_id();
	if (!cpus.count) {
		cpus.apic_id[0] = self;
		cpus.count = 1;
	}
	char ids[256];
	format_ids(ids, sizeof(ids), &cpus);
	probe("cpus_source=%s cpus=%u apic_ids=%s bsp_apic=%u", src, cpus.count, ids, self);

	u32 online = 1;
	if (cpus.count > 1) {
		u64 tp = pick_trampoline_page();
		if (!tp) {
			probe("error=no-trampoline-page");
		} else {
			char v[24];
			u64 init_udelay = 1000;
			if (cmdline_get("probe.init_udelay", v, sizeof(v)))
				parse_u64(v, &init_udelay);
			online = smp_start(&cpus, tp, (u32)init_udelay);
		}
	}
	probe("cpus_online=%u", online);
}

static void report_pci(void)
{
	u32 n = pci_scan_bus0();
	if (!quiet) {
		for (u32 i = 0; i < n; i++) {
			const struct pci_dev *d = pci_get(i);
			probe("pci dev=%02x:%02x.%u id=%04x:%04x class=%06x", d->bus, d->dev, d->fn,
			      d->vendor, d->device, d->class_code);
		}
	}
	probe("pci_count=%u", n);
}

static void echo_loop(void) __attribute__((noreturn));
static void echo_loop(void)
{
	static char line[512];
	static char out[sizeof(line) * 4 + 32];
	size_t len = 0;
	int prev = -1;
	probe("echo_ready");
	for (;;) {
		int c = serial_getc();
		if (c < 0) {
			cpu_relax();
			continue;
		}
		if (c == '\n' || c == '\r') {
			bool crlf = c == '\n' && prev == '\r';
			prev = c;
			if (crlf)
				continue;
			int n = snprintf(out, sizeof(out), "PROBE echo=");
			n += fmt_quoted(out + n, sizeof(out) - n - 2, line, len);
			out[n++] = '\r';
			out[n++] = '\n';
			serial_write(out, (size_t)n);
			if (len == 4 && !memcmp(line, "quit", 4))
				do_poweroff();
			len = 0;
			continue;
		}
		prev = c;
		if (len < sizeof(line))
			line[len++] = (char)c;
	}
}

static void probe_body(u64 unused) __attribute__((noreturn));

void probe_main(u64 bp_addr, u32 entry, u64 setup)
{
	idt_init();
	boot_params_addr = bp_addr;
	setup_base = setup;
	entry_kind = entry;
	/* read in place: the loader's copy stays intact (the trampoline page avoids it) */
	boot_params = (const u8 *)(uintptr_t)bp_addr;
	cmdline_init(cmdline_addr(), bp32(BP_CMDLINE_SIZE));
	char ring[8] = "0";
	cmdline_get("probe.ring", ring, sizeof(ring));
	if (!strcmp(ring, "3")) {
		smp_ring3 = true;
		cpu_enter_user(0, probe_body, 0);
	}
	probe_body(0);
}

static void probe_body(u64 unused)
{
	(void)unused;
	serial_init();
	tsc_init();
	quiet = cmdline_flag("probe.quiet");

	report_hello();
	report_cmdline();
	report_e820();
	report_initrd();
	report_cpus();
	rtc_report();
	report_pci();
	run_tests();
	probe("ready");

	char cmd[32] = "poweroff";
	cmdline_get("probe.cmd", cmd, sizeof(cmd));
	if (!strcmp(cmd, "poweroff")) {
		do_poweroff();
	} else if (!strcmp(cmd, "reboot")) {
		do_reboot();
	} else if (!strcmp(cmd, "spin")) {
		probe("spinning");
		__asm__ volatile("cli");
		for (;;)
			cpu_relax();
	} else if (!strcmp(cmd, "halt")) {
		probe("halted");
		halt_forever();
	} else if (!strcmp(cmd, "echo")) {
		echo_loop();
	} else {
		probe("error=unknown-cmd cmd=%s", cmd);
		do_poweroff();
	}
}
