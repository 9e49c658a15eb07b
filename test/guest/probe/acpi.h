/* ACPI table discovery (RSDP -> XSDT/RSDT -> MADT, FADT, DSDT) and the Intel MP table. */
#ifndef PROBE_ACPI_H
#define PROBE_ACPI_H
#include "probe.h"

#define MAX_CPU_IDS 256

struct cpu_list {
	u32 count;
	u32 apic_id[MAX_CPU_IDS];
};

/* Generic Address Structure (ACPI 6.5 section 5.2.3.2) */
struct acpi_gas {
	u8 space_id;		/* 0 system memory, 1 system I/O */
	u8 bit_width;
	u8 bit_offset;
	u8 access_size;		/* 1 byte, 2 word, 3 dword, 4 qword, 0 undefined */
	u64 address;
} __attribute__((packed));

#define GAS_MEMORY 0
#define GAS_IO 1

/* Finds the RSDP (boot_params.acpi_rsdp_addr if nonzero, else EBDA and 0xe0000..0xfffff) and the
 * tables. Returns the RSDP address or 0. */
u64 acpi_init(u64 rsdp_hint);
u64 acpi_rsdp(void);
/* Address of the first table with this signature (checksum verified), or 0. */
u64 acpi_find_table(const char *sig);
u64 acpi_fadt(void);
u64 acpi_dsdt(void);
/* Enabled processors from the MADT (type 0 flags bit 0, type 9 x2APIC). -1 if no MADT. */
int acpi_madt_cpus(struct cpu_list *out);
/* SLP_TYPa of \_S5 from the DSDT; false if not found. */
bool acpi_s5_slp_typ(u8 *typ);
/* Write a GAS register (I/O or memory space). False if the space is unsupported. */
bool acpi_gas_write(const struct acpi_gas *g, u64 value);

/* Intel MultiProcessor Specification 1.4 floating pointer + config table. Returns the floating
 * pointer's address (0 if none) and fills out with enabled processors. */
u64 mptable_cpus(struct cpu_list *out);

#endif
