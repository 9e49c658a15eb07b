#include "dmamem.h"
#include "bootparams.h"

#define DMA_START	0x400000ull	/* above the image, .bss and the stacks (< 0x218000) */
#define DMA_LIMIT	0xc0000000ull	/* RAM below the 3..4 GiB MMIO hole */

static u64 cur, end;
static bool ready;

static u64 bp_u64(u32 off) { u64 v; memcpy(&v, boot_params + off, 8); return v; }
static u32 bp_u32(u32 off) { u32 v; memcpy(&v, boot_params + off, 4); return v; }

static void dma_init(void)
{
	ready = true;
	u32 n = boot_params[BP_E820_ENTRIES];
	if (n > BP_E820_MAX)
		n = BP_E820_MAX;
	for (u32 i = 0; i < n; i++) {
		u32 off = BP_E820_TABLE + 20 * i;
		u64 a = bp_u64(off), s = bp_u64(off + 8);
		if (bp_u32(off + 16) != E820_RAM || a > DMA_START || a + s <= DMA_START)
			continue;
		cur = DMA_START;
		end = a + s < DMA_LIMIT ? a + s : DMA_LIMIT;
	}
	/* Stay below the initrd if the loader put it in this range (kvmkit and QEMU put it at the
	 * top of low RAM). */
	u64 ird = bp_u32(BP_RAMDISK_IMAGE) | (u64)bp_u32(BP_EXT_RAMDISK_IMAGE) << 32;
	u64 irs = bp_u32(BP_RAMDISK_SIZE) | (u64)bp_u32(BP_EXT_RAMDISK_SIZE) << 32;
	if (irs && ird < end && ird + irs > cur) {
		if (ird > cur)
			end = ird & ~0xfffull;
		else
			cur = (ird + irs + 0xfff) & ~0xfffull;
	}
	if (cur >= end)
		cur = end = 0;
}

void *dma_alloc(u64 size, u64 align)
{
	if (!ready)
		dma_init();
	if (align < 16)
		align = 16;
	u64 a = (cur + align - 1) & ~(align - 1);
	if (!cur || a + size > end || a + size < a)
		return NULL;
	cur = a + size;
	return (void *)a;
}

u64 dma_free_bytes(void)
{
	if (!ready)
		dma_init();
	u64 a = (cur + 0xfff) & ~0xfffull;
	return a < end ? end - a : 0;
}

void dma_region(u64 *start, u64 *e)
{
	if (!ready)
		dma_init();
	*start = cur;
	*e = end;
}
