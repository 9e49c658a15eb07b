/*
 * Memory for virtqueues and request buffers ("DMA" memory: guest-physical = virtual, since the
 * probe identity-maps 0..4 GiB). A bump allocator over the RAM that follows the probe: from
 * 4 MiB up to the end of that e820 RAM entry, below any initrd in it and below 3 GiB. Nothing is
 * freed; drivers allocate once and reuse. Memory is not zeroed (zeroing megabytes in ring 0 on a
 * paravirtual KVM is slow); callers zero what must be zero.
 */
#ifndef PROBE_DMAMEM_H
#define PROBE_DMAMEM_H
#include "probe.h"

/* size bytes aligned to align (a power of two), or NULL when the region is exhausted. */
void *dma_alloc(u64 size, u64 align);
/* Bytes still free (after alignment to 4 KiB). */
u64 dma_free_bytes(void);
/* The region the allocator hands out: [start, end). */
void dma_region(u64 *start, u64 *end);

#endif
