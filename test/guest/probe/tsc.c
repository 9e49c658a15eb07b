/*
 * TSC-based delays. The frequency comes from CPUID (0x15 crystal ratio, 0x16 base MHz, or the
 * hypervisor timing leaf 0x40000010) when the CPU reports it; otherwise we assume 3 GHz. Delays
 * and time-outs only need to be roughly right (and bounded), so no port-I/O calibration is done.
 */
#include "probe.h"

static u64 khz;
static const char *source = "none";

void tsc_init(void)
{
	u32 a, b, c, d, max;
	cpuid(0, 0, &max, &b, &c, &d);
	if (max >= 0x15) {
		cpuid(0x15, 0, &a, &b, &c, &d);
		if (a && b && c) {
			khz = (u64)c * b / a / 1000;
			source = "cpuid15";
		}
	}
	if (!khz && max >= 0x16) {
		cpuid(0x16, 0, &a, &b, &c, &d);
		if (a & 0xffff) {
			khz = (u64)(a & 0xffff) * 1000;
			source = "cpuid16";
		}
	}
	if (!khz) {
		cpuid(1, 0, &a, &b, &c, &d);
		if (c & (1u << 31)) {	/* hypervisor present */
			u32 hmax;
			cpuid(0x40000000, 0, &hmax, &b, &c, &d);
			if (hmax >= 0x40000010 && hmax < 0x40000100) {
				cpuid(0x40000010, 0, &a, &b, &c, &d);
				if (a) {
					khz = a;
					source = "hypervisor";
				}
			}
		}
	}
	if (!khz) {
		khz = 3000000;
		source = "guess";
	}
}

u64 tsc_khz(void) { return khz; }
const char *tsc_source(void) { return source; }

u64 tsc_deadline_us(u64 us)
{
	return rdtsc() + us * (khz ? khz : 3000000) / 1000;
}

void udelay(u64 us)
{
	u64 end = tsc_deadline_us(us);
	while ((int64_t)(rdtsc() - end) < 0)
		cpu_relax();
}
