#include "tests.h"
#include "cmdline.h"

extern const struct probe_test __start_probe_tests[], __stop_probe_tests[];

static void run_test(const char *name, void *arg)
{
	for (const struct probe_test *t = __start_probe_tests; t < __stop_probe_tests; t++) {
		if (!strcmp(t->name, name)) {
			t->run();
			return;
		}
	}
	probe("error=unknown-test test=%s", name);
}

void run_tests(void)
{
	char list[512];
	if (cmdline_get("probe.test", list, sizeof(list)))
		comma_list_each(list, run_test, NULL);
}

/* cpu-bench: FNV-1a over 4 MiB of the probe's own memory, in TSC cycles. Shows whether guest
 * code runs natively (ring 0 on PVM does not: compare probe.ring=0 and probe.ring=3). */
static void cpu_bench(void)
{
	const u8 *p = (const u8 *)0x100000;
	u64 n = 4u << 20;
	u64 t0 = rdtsc();
	u64 h = fnv1a64(p, n, FNV1A64_INIT);
	u64 t1 = rdtsc();
	probe("cpu-bench bytes=%llu tsc_cycles=%llu cycles_per_byte=%llu tsc_khz=%llu tsc_source=%s hash=%016llx",
	      (unsigned long long)n, (unsigned long long)(t1 - t0),
	      (unsigned long long)((t1 - t0) / n), (unsigned long long)tsc_khz(), tsc_source(),
	      (unsigned long long)h);
}
PROBE_TEST("cpu-bench", cpu_bench);

/* fault: read an unmapped address, so the exception handler's report can be checked
 * ("PROBE exception vector=14 ... cr2=0x123456789000"); the CPU then halts. */
static void fault(void)
{
	probe("fault addr=0x123456789000");
	(void)*(volatile u64 *)0x123456789000ull;
}
PROBE_TEST("fault", fault);
