#ifndef PROBE_SMP_H
#define PROBE_SMP_H
#include "acpi.h"

u32 lapic_id(void);
extern bool smp_ring3;		/* APs continue in ring 3 like the BSP */
/* Copy the trampoline to tramp_page (< 1 MiB, page aligned), INIT-SIPI-SIPI every APIC id in cpus
 * except ours, wait (bounded) for them. Returns the number of CPUs online including the BSP. */
u32 smp_start(const struct cpu_list *cpus, u64 tramp_page, u32 init_udelay);

#endif
