/*
 * Intel MultiProcessor Specification 1.4: the MP floating pointer ("_MP_", 16 bytes, on a 16-byte
 * boundary in the first KiB of the EBDA, the last KiB of base memory, or 0xf0000..0xfffff) points
 * to the configuration table ("PCMP") whose processor entries (type 0, 20 bytes) list the CPUs.
 */
#include "acpi.h"

static bool sum_ok(u64 a, u32 len)
{
	u8 s = 0;
	for (u32 i = 0; i < len; i++)
		s += rd8(a + i);
	return s == 0;
}

static u64 scan(u64 start, u64 end)
{
	for (u64 a = start; a + 16 <= end; a += 16)
		if (rd32(a) == 0x5f504d5f /* "_MP_" */ && rd8(a + 8) == 1 && sum_ok(a, 16))
			return a;
	return 0;
}

u64 mptable_cpus(struct cpu_list *out)
{
	out->count = 0;
	u64 fp = 0;
	u64 ebda = (u64)rd16(0x40e) << 4;
	if (ebda >= 0x80000 && ebda < 0xa0000)
		fp = scan(ebda, ebda + 1024);
	if (!fp) {
		u64 basemem = (u64)rd16(0x413) * 1024;
		if (basemem < 0x80000 || basemem > 0xa0000)
			basemem = 0xa0000;
		fp = scan(basemem - 1024, basemem);
	}
	if (!fp)
		fp = scan(0x9fc00, 0xa0000);
	if (!fp)
		fp = scan(0xf0000, 0x100000);
	if (!fp)
		return 0;
	u64 ct = rd32(fp + 4);
	if (!ct || ct >= 0x100000000ull || rd32(ct) != 0x504d4350 /* "PCMP" */)
		return fp;
	u16 len = rd16(ct + 4);
	if (len < 44 || !sum_ok(ct, len))
		return fp;
	/* Walk by the table length, not the entry count: like Linux (smp_read_mpc), because qboot
	 * leaves the entry count at 0. */
	u64 p = ct + 44, end = ct + len;
	while (p < end) {
		u8 type = rd8(p);
		if (type == 0) {
			u8 id = rd8(p + 1), flags = rd8(p + 3);
			if ((flags & 1) && out->count < MAX_CPU_IDS)
				out->apic_id[out->count++] = id;
			p += 20;
		} else if (type <= 4) {
			p += 8;
		} else {
			/* extended entries (type >= 128) carry their length in byte 1 */
			u8 l = rd8(p + 1);
			if (!l)
				break;
			p += l;
		}
	}
	return fp;
}
