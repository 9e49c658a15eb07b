/*
 * ACPI: only what the probe needs, read straight from guest memory (identity mapped up to 4 GiB).
 * Layouts: ACPI 6.5 sections 5.2.5 (RSDP), 5.2.6 (SDT header), 5.2.7/5.2.8 (RSDT/XSDT),
 * 5.2.9 (FADT), 5.2.12 (MADT), 20 (AML grammar).
 */
#include "acpi.h"

#define SDT_HDR_LEN 36
#define MAX_TABLE_LEN (16u << 20)
#define MAPPED_LIMIT 0x100000000ull

static u64 rsdp_addr, root_addr;
static bool root_is_xsdt;
static u64 fadt_addr, dsdt_addr;

static bool checksum_ok(u64 addr, u32 len)
{
	u8 sum = 0;
	for (u32 i = 0; i < len; i++)
		sum += rd8(addr + i);
	return sum == 0;
}

static bool mapped(u64 addr, u64 len)
{
	return addr && addr < MAPPED_LIMIT && len <= MAPPED_LIMIT - addr;
}

static bool rsdp_valid(u64 a)
{
	if (!mapped(a, 36) || memcmp((const void *)a, "RSD PTR ", 8))
		return false;
	if (!checksum_ok(a, 20))
		return false;
	if (rd8(a + 15) >= 2) {
		u32 len = rd32(a + 20);
		if (len < 36 || len > 4096 || !checksum_ok(a, len))
			return false;
	}
	return true;
}

static u64 scan_rsdp(u64 start, u64 end)
{
	for (u64 a = start; a + 20 <= end; a += 16)
		if (rd8(a) == 'R' && rsdp_valid(a))
			return a;
	return 0;
}

static bool table_ok(u64 a)
{
	if (!mapped(a, SDT_HDR_LEN))
		return false;
	u32 len = rd32(a + 4);
	return len >= SDT_HDR_LEN && len <= MAX_TABLE_LEN && mapped(a, len) && checksum_ok(a, len);
}

u64 acpi_init(u64 hint)
{
	rsdp_addr = root_addr = fadt_addr = dsdt_addr = 0;
	if (hint && rsdp_valid(hint))
		rsdp_addr = hint;
	if (!rsdp_addr) {
		u64 ebda = (u64)rd16(0x40e) << 4;
		if (ebda >= 0x80000 && ebda < 0xa0000)
			rsdp_addr = scan_rsdp(ebda, ebda + 1024);
	}
	if (!rsdp_addr)
		rsdp_addr = scan_rsdp(0xe0000, 0x100000);
	if (!rsdp_addr)
		return 0;
	if (rd8(rsdp_addr + 15) >= 2 && rd64(rsdp_addr + 24) && table_ok(rd64(rsdp_addr + 24))) {
		root_addr = rd64(rsdp_addr + 24);
		root_is_xsdt = true;
	} else if (table_ok(rd32(rsdp_addr + 16))) {
		root_addr = rd32(rsdp_addr + 16);
		root_is_xsdt = false;
	}
	fadt_addr = acpi_find_table("FACP");
	if (fadt_addr) {
		u32 flen = rd32(fadt_addr + 4);
		u64 d = 0;
		if (flen >= 148)
			d = rd64(fadt_addr + 140);	/* X_DSDT */
		if (!d || !table_ok(d))
			d = rd32(fadt_addr + 40);	/* DSDT */
		if (d && table_ok(d) && !memcmp((const void *)d, "DSDT", 4))
			dsdt_addr = d;
	}
	return rsdp_addr;
}

u64 acpi_rsdp(void) { return rsdp_addr; }
u64 acpi_fadt(void) { return fadt_addr; }
u64 acpi_dsdt(void) { return dsdt_addr; }

u64 acpi_find_table(const char *sig)
{
	if (!root_addr)
		return 0;
	u32 len = rd32(root_addr + 4);
	u32 esz = root_is_xsdt ? 8 : 4;
	for (u32 off = SDT_HDR_LEN; off + esz <= len; off += esz) {
		u64 t = root_is_xsdt ? rd64(root_addr + off) : rd32(root_addr + off);
		if (!mapped(t, SDT_HDR_LEN) || memcmp((const void *)t, sig, 4))
			continue;
		if (table_ok(t))
			return t;
	}
	return 0;
}

int acpi_madt_cpus(struct cpu_list *out)
{
	u64 m = acpi_find_table("APIC");
	if (!m)
		return -1;
	u32 len = rd32(m + 4);
	out->count = 0;
	for (u32 off = 44; off + 2 <= len;) {
		u8 type = rd8(m + off), elen = rd8(m + off + 1);
		if (elen < 2 || off + elen > len)
			break;
		u32 id = 0;
		bool en = false;
		if (type == 0 && elen >= 8) {		/* Processor Local APIC */
			id = rd8(m + off + 3);
			en = rd32(m + off + 4) & 1;
		} else if (type == 9 && elen >= 16) {	/* Processor Local x2APIC */
			id = rd32(m + off + 4);
			en = rd32(m + off + 8) & 1;
		}
		if (en && out->count < MAX_CPU_IDS) {
			bool dup = false;
			for (u32 i = 0; i < out->count; i++)
				dup |= out->apic_id[i] == id;
			if (!dup)
				out->apic_id[out->count++] = id;
		}
		off += elen;
	}
	return (int)out->count;
}

/* Decode an AML data object holding a small integer (ACPI 6.5 section 20.2.3). */
static bool aml_small_int(u64 p, u64 end, u8 *v)
{
	if (p >= end)
		return false;
	u8 op = rd8(p);
	switch (op) {
	case 0x00: *v = 0; return true;				/* ZeroOp */
	case 0x01: *v = 1; return true;				/* OneOp */
	case 0x0a:						/* BytePrefix */
	case 0x0b:						/* WordPrefix */
	case 0x0c:						/* DWordPrefix */
		if (p + 1 >= end)
			return false;
		*v = rd8(p + 1);
		return true;
	default:
		if (op < 0x40) {				/* bare byte (seen in some firmware) */
			*v = op;
			return true;
		}
		return false;
	}
}

bool acpi_s5_slp_typ(u8 *typ)
{
	/* the DSDT, then the first SSDT */
	for (int t = 0; t < 2; t++) {
		u64 tb = t == 0 ? dsdt_addr : acpi_find_table("SSDT");
		if (!tb)
			continue;
		u64 end = tb + rd32(tb + 4);
		for (u64 p = tb + SDT_HDR_LEN; p + 8 < end; p++) {
			if (rd8(p) != '_' || memcmp((const void *)p, "_S5_", 4))
				continue;
			u64 q = p + 4;
			if (rd8(q) != 0x12)				/* PackageOp */
				continue;
			q++;
			q += 1 + (rd8(q) >> 6);				/* PkgLength */
			q++;						/* NumElements */
			if (aml_small_int(q, end, typ)) {
				*typ &= 7;
				return true;
			}
		}
	}
	return false;
}

bool acpi_gas_write(const struct acpi_gas *g, u64 value)
{
	unsigned width = g->bit_width;
	if (g->access_size >= 1 && g->access_size <= 4)
		width = 8u << (g->access_size - 1);
	if (width != 8 && width != 16 && width != 32 && width != 64)
		width = 8;
	value <<= g->bit_offset;
	if (g->space_id == GAS_IO) {
		if (!g->address || g->address > 0xffff)
			return false;
		u16 port = (u16)g->address;
		if (width == 8)
			outb(port, (u8)value);
		else if (width == 16)
			outw(port, (u16)value);
		else
			outl(port, (u32)value);
		return true;
	}
	if (g->space_id == GAS_MEMORY) {
		if (!mapped(g->address, width / 8))
			return false;
		if (width == 8)
			mmio_write8(g->address, (u8)value);
		else if (width == 16)
			mmio_write16(g->address, (u16)value);
		else if (width == 32)
			mmio_write32(g->address, (u32)value);
		else
			mmio_write64(g->address, value);
		return true;
	}
	return false;
}
