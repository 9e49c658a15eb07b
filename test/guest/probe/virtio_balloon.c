/*
 * virtio-balloon driver, probe.test=balloon (virtio 1.2 §5.5; Linux include/uapi/linux/virtio_balloon.h):
 * a guest that gives memory to the host and takes it back when the host asks, and answers stats
 * requests, so kvmkit's VirtioBalloon and QEMU's virtio-balloon-pci can be driven alike.
 *
 * It fills a pool of its RAM with a pattern (so every pool page is resident on the host), prints
 * `PROBE balloon-ready`, then polls: on a configuration change (ISR bit 1, §4.1.4.5) it reads
 * num_pages (§5.5.4, within one config_generation, §2.5.1) and inflates (gives pool pages as le32
 * PFNs on inflateq, without touching them again) or deflates (PFNs on deflateq, then reads every
 * returned page: a page the host discarded reads as zeros, one it kept still holds the pattern;
 * then the pattern is written again), and writes `actual` after each (§5.5.6.1). When the host
 * returns the stats buffer (statsq, §5.5.6.3) it refills it with current numbers and posts it again.
 *
 * Stats it sends: SWAP_IN/SWAP_OUT/MAJFLT/MINFLT = 0 (the probe has no swap and takes no page
 * faults: it identity-maps its memory), MEMTOT = e820 RAM (less the balloon when DEFLATE_ON_OOM
 * is not negotiated, as Linux does), MEMFREE = AVAIL = the DMA area it never allocated plus the
 * pool pages it has not given away, CACHES = 0.
 *
 * Options: probe.balloon.mib=N pool size (default 96, capped by free memory), probe.balloon.idle_ms=N
 * (stop after this long without a request, default 60000), probe.balloon.poll_us=N (ISR poll
 * period, default 1000), probe.balloon.stats=0|1, probe.balloon.oom=0|1 (negotiate STATS_VQ /
 * DEFLATE_ON_OOM, default 1), probe.balloon.eventidx=0|1 (default 1), probe.balloon.oom_pages=N (after
 * each inflate, give back N pages on its own as a guest short of memory may with DEFLATE_ON_OOM,
 * default 0). README.md, "virtio-balloon", lists the PROBE lines.
 */
#include "tests.h"
#include "bootparams.h"
#include "cmdline.h"
#include "dmamem.h"
#include "virtio_pci.h"
#include "virtqueue.h"

#define VIRTIO_ID_BALLOON		5	/* §5.5.1 */
/* §5.5.3 feature bits */
#define BL_F_MUST_TELL_HOST		0
#define BL_F_STATS_VQ			1
#define BL_F_DEFLATE_ON_OOM		2
/* §5.5.2 queues */
#define BL_INFLATEQ			0
#define BL_DEFLATEQ			1
#define BL_STATSQ			2
/* §5.5.4 struct virtio_balloon_config */
#define BL_CFG_NUM_PAGES		0
#define BL_CFG_ACTUAL			4
/* §5.5.6.3 tags */
#define BL_S_SWAP_IN			0
#define BL_S_SWAP_OUT			1
#define BL_S_MAJFLT			2
#define BL_S_MINFLT			3
#define BL_S_MEMFREE			4
#define BL_S_MEMTOT			5
#define BL_S_AVAIL			6
#define BL_S_CACHES			7
#define BL_NSTATS			8
/* §4.1.4.5 ISR bit 1 */
#define BL_ISR_CONFIG			0x2
#define BL_PAGE				4096ull
#define BL_PFNS_PER_BUF			256	/* as Linux's VIRTIO_BALLOON_ARRAY_PFNS_MAX */
#define BL_PATTERN			0x5a17b00f00000000ull

struct bl_stat {			/* struct virtio_balloon_stat, packed */
	u16 tag;
	u64 val;
} __attribute__((packed));

static struct virtio_dev bl_dev;
static struct virtq bl_q[3];
static u8 *bl_pool;
static u64 bl_pages;			/* pool size in pages */
static u64 bl_given;			/* pool pages [0, bl_given) are in the balloon */
static u32 *bl_pfns;
static struct bl_stat *bl_stats;
static int bl_token;
static u64 bl_memtot;
static bool bl_has_stats, bl_oom;
static u64 bl_requests, bl_inflates, bl_deflates;

static u64 bl_ms_since(u64 t0) { return (rdtsc() - t0) / (tsc_khz() ? tsc_khz() : 1); }

static u64 bl_e820_ram(void)
{
	u64 total = 0;
	u32 n = boot_params[BP_E820_ENTRIES];
	if (n > BP_E820_MAX)
		n = BP_E820_MAX;
	for (u32 i = 0; i < n; i++) {
		const u8 *e = boot_params + BP_E820_TABLE + 20 * i;
		if (rd32((u64)(uintptr_t)e + 16) == E820_RAM)
			total += rd64((u64)(uintptr_t)e + 8);
	}
	return total;
}

/* The pattern word at address a of the pool. */
static inline u64 bl_word(u64 a) { return BL_PATTERN ^ a; }

static void bl_fill(u64 first, u64 count)
{
	for (u64 p = first; p < first + count; p++) {
		volatile u64 *w = (volatile u64 *)(bl_pool + p * BL_PAGE);
		for (u32 i = 0; i < BL_PAGE / 8; i++)
			w[i] = bl_word((u64)(uintptr_t)&w[i]);
	}
}

/* 0: every byte zero, 1: the pattern intact, 2: anything else. */
static int bl_page_state(u64 p)
{
	const volatile u64 *w = (const volatile u64 *)(bl_pool + p * BL_PAGE);
	bool zero = true, pattern = true;
	for (u32 i = 0; i < BL_PAGE / 8; i++) {
		u64 v = w[i];
		zero &= v == 0;
		pattern &= v == bl_word((u64)(uintptr_t)&w[i]);
	}
	return zero ? 0 : pattern ? 1 : 2;
}

static void bl_write_actual(u32 pages)
{
	/* §4.1.3.1: le32 field, one 32-bit access */
	if (bl_dev.devcfg.io)
		outl((u16)(bl_dev.devcfg.addr + BL_CFG_ACTUAL), pages);
	else
		mmio_write32(bl_dev.devcfg.addr + BL_CFG_ACTUAL, pages);
}

/* §2.5.1: num_pages and actual from one configuration generation. */
static u32 bl_num_pages(u32 *actual)
{
	for (;;) {
		u8 g = virtio_generation(&bl_dev);
		u32 n = vdevcfg_read32(&bl_dev, BL_CFG_NUM_PAGES);
		*actual = vdevcfg_read32(&bl_dev, BL_CFG_ACTUAL);
		if (virtio_generation(&bl_dev) == g)
			return n;
	}
}

/* Post one buffer on q and wait (2 s) for the device to use it. */
static bool bl_send(struct virtq *q, const void *buf, u32 len)
{
	struct vq_seg s = { (u64)(uintptr_t)buf, len, false };
	if (vq_add(q, &s, 1, &bl_token, false) < 0)
		return false;
	vq_kick(q, false);
	u64 deadline = tsc_deadline_us(2000000);
	while (tsc_before(deadline)) {
		void *t;
		u32 used;
		if (vq_pop(q, &t, &used) && t == &bl_token)
			return true;
		cpu_relax();
	}
	return false;
}

/* Pool pages [first, first+count) as PFNs on queue q, in buffers of up to 256. */
static u32 bl_pfn_bufs(struct virtq *q, u64 first, u64 count, const char **err)
{
	u32 bufs = 0;
	for (u64 done = 0; done < count;) {
		u32 n = count - done < BL_PFNS_PER_BUF ? (u32)(count - done) : BL_PFNS_PER_BUF;
		for (u32 i = 0; i < n; i++)
			bl_pfns[i] = (u32)(((u64)(uintptr_t)bl_pool + (first + done + i) * BL_PAGE) >> 12);
		if (!bl_send(q, bl_pfns, 4 * n)) {
			*err = virtio_status(&bl_dev) & VIRTIO_STATUS_NEEDS_RESET ? "needs-reset" : "no-completion";
			return bufs;
		}
		bufs++;
		done += n;
	}
	return bufs;
}

/* Give pool pages [bl_given, bl_given + n) to the host, without touching them. */
static bool bl_inflate(u64 n, u32 target, const char *why)
{
	u64 t0 = rdtsc();
	const char *err = NULL;
	u32 bufs = bl_pfn_bufs(&bl_q[BL_INFLATEQ], bl_given, n, &err);
	if (err) {
		probe("balloon-inflate result=%s buffers=%u", err, bufs);
		return false;
	}
	bl_given += n;
	bl_write_actual((u32)bl_given);					/* §5.5.6.1 */
	bl_inflates++;
	probe("balloon-inflate num_pages=%u actual=%llu pages=%llu pool_pages=%llu limited=%u buffers=%u why=%s ms=%llu", target,
	      (unsigned long long)bl_given, (unsigned long long)n, (unsigned long long)bl_pages, target > bl_pages ? 1 : 0, bufs,
	      why, (unsigned long long)bl_ms_since(t0));
	return true;
}

/* Take the top n pages back from the balloon, then touch them: count what the host left in them. */
static bool bl_deflate(u64 n, u32 target, const char *why)
{
	u64 t0 = rdtsc();
	const char *err = NULL;
	u64 first = bl_given - n;
	u32 bufs = bl_pfn_bufs(&bl_q[BL_DEFLATEQ], first, n, &err);
	if (err) {
		probe("balloon-deflate result=%s buffers=%u", err, bufs);
		return false;
	}
	bl_given = first;
	bl_write_actual((u32)bl_given);					/* §5.5.6.1 */
	u64 zeroed = 0, kept = 0, other = 0;
	for (u64 p = first; p < first + n; p++) {
		int s = bl_page_state(p);
		zeroed += s == 0;
		kept += s == 1;
		other += s == 2;
	}
	bl_fill(first, n);
	bl_deflates++;
	probe("balloon-deflate num_pages=%u actual=%llu pages=%llu zeroed=%llu kept_pattern=%llu other=%llu touched=%llu buffers=%u why=%s ms=%llu",
	      target, (unsigned long long)bl_given, (unsigned long long)n, (unsigned long long)zeroed, (unsigned long long)kept,
	      (unsigned long long)other, (unsigned long long)n, bufs, why, (unsigned long long)bl_ms_since(t0));
	return true;
}

/* Move the balloon to num_pages (as far as the pool allows). */
static bool bl_adjust(void)
{
	u32 actual;
	u32 target = bl_num_pages(&actual);
	u64 want = target < bl_pages ? target : bl_pages;
	probe("balloon-config num_pages=%u actual=%u given=%llu", target, actual, (unsigned long long)bl_given);
	if (want > bl_given) {
		if (!bl_inflate(want - bl_given, target, "host"))
			return false;
		u64 oom = cmdline_u64("probe.balloon.oom_pages", 0);
		if (oom) {
			if (!bl_oom) {
				probe("balloon-oom-deflate result=not-negotiated");
			} else {
				if (oom > bl_given)
					oom = bl_given;
				return bl_deflate(oom, target, "oom");
			}
		}
		return true;
	}
	if (want < bl_given)
		return bl_deflate(bl_given - want, target, "host");
	return true;
}

static void bl_fill_stats(void)
{
	u64 free = dma_free_bytes() + (bl_pages - bl_given) * BL_PAGE;
	u64 tot = bl_memtot - (bl_oom ? 0 : bl_given * BL_PAGE);
	const struct bl_stat s[BL_NSTATS] = {
		{ BL_S_SWAP_IN, 0 }, { BL_S_SWAP_OUT, 0 }, { BL_S_MAJFLT, 0 }, { BL_S_MINFLT, 0 },
		{ BL_S_MEMFREE, free }, { BL_S_MEMTOT, tot }, { BL_S_AVAIL, free }, { BL_S_CACHES, 0 },
	};
	memcpy(bl_stats, s, sizeof(s));
	probe("balloon-stats request=%llu swap_in=0 swap_out=0 majflt=0 minflt=0 memfree=%llu memtot=%llu avail=%llu caches=0 actual=%llu",
	      (unsigned long long)bl_requests, (unsigned long long)free, (unsigned long long)tot, (unsigned long long)free,
	      (unsigned long long)bl_given);
}

static void bl_post_stats(void)
{
	struct vq_seg s = { (u64)(uintptr_t)bl_stats, sizeof(struct bl_stat) * BL_NSTATS, false };
	vq_add(&bl_q[BL_STATSQ], &s, 1, &bl_stats, false);
	vq_kick(&bl_q[BL_STATSQ], false);
}

static bool bl_init(void)
{
	u64 wanted = 0;
	if (cmdline_u64("probe.balloon.stats", 1))
		wanted |= BIT64(BL_F_STATS_VQ);
	if (cmdline_u64("probe.balloon.oom", 1))
		wanted |= BIT64(BL_F_DEFLATE_ON_OOM);
	if (cmdline_u64("probe.balloon.eventidx", 1))
		wanted |= BIT64(VIRTIO_F_EVENT_IDX);
	if (!virtio_negotiate(&bl_dev, wanted))
		return false;
	bl_has_stats = bl_dev.negotiated & BIT64(BL_F_STATS_VQ);
	bl_oom = bl_dev.negotiated & BIT64(BL_F_DEFLATE_ON_OOM);
	u16 nq = bl_has_stats ? 3 : 2;
	for (u16 i = 0; i < nq; i++) {
		if (!virtio_queue_setup(&bl_dev, i, &bl_q[i], 16, 1))	/* INDIRECT_DESC is never asked for */
			return false;
	}
	virtio_driver_ok(&bl_dev);
	for (u16 i = 0; i < nq; i++)
		vq_interrupts(&bl_q[i], false);	/* we poll */
	return true;
}

static void balloon_test(void)
{
	u32 n = virtio_pci_find(VIRTIO_ID_BALLOON, &bl_dev, 1);
	probe("balloon-count=%u cfg=%s", n, virtio_pci_ecam() ? "ecam" : "cf8");
	if (!n)
		return;
	if (!virtio_pci_setup(&bl_dev)) {
		probe("balloon error=%s", bl_dev.err);
		return;
	}
	virtio_pci_report(&bl_dev, "balloon-pci", "index=0");
	if (bl_dev.devcfg.len < 8) {
		probe("balloon error=config-too-small device_cfg_len=%u", bl_dev.devcfg.len);
		return;
	}
	bl_pfns = dma_alloc(4 * BL_PFNS_PER_BUF, 4096);
	bl_stats = dma_alloc(sizeof(struct bl_stat) * BL_NSTATS, 64);
	bool ok = bl_pfns && bl_stats && bl_init();
	probe("balloon init=%s offered=0x%llx negotiated=0x%llx stats_vq=%u deflate_on_oom=%u must_tell_host_offered=%u num_queues=%u status=0x%x",
	      ok ? "ok" : bl_dev.err ? bl_dev.err : "out-of-memory", (unsigned long long)bl_dev.offered,
	      (unsigned long long)bl_dev.negotiated, bl_has_stats ? 1 : 0, bl_oom ? 1 : 0,
	      bl_dev.offered & BIT64(BL_F_MUST_TELL_HOST) ? 1 : 0, bl_dev.num_queues, virtio_status(&bl_dev));
	if (!ok)
		return;
	/* the pool: probe.balloon.mib, leaving 2 MiB of the DMA area free */
	u64 want = cmdline_u64("probe.balloon.mib", 96) << 20, room = dma_free_bytes();
	room = room > (2u << 20) ? room - (2u << 20) : 0;
	bl_pages = (want < room ? want : room) / BL_PAGE;
	bl_pool = bl_pages ? dma_alloc(bl_pages * BL_PAGE, 2u << 20) : NULL;
	if (!bl_pool) {
		probe("balloon error=out-of-memory pool_mib=%llu", (unsigned long long)(want >> 20));
		return;
	}
	u64 t0 = rdtsc();
	bl_fill(0, bl_pages);
	bl_memtot = bl_e820_ram();
	if (bl_has_stats) {
		bl_fill_stats();			/* §5.5.6.3: the first buffer goes in at start-up */
		bl_post_stats();
	}
	u32 actual;
	u32 np = bl_num_pages(&actual);
	probe("balloon-ready pool=0x%llx pool_pages=%llu fill_ms=%llu memtot=%llu num_pages=%u actual=%u msix_mode=%u",
	      (unsigned long long)(uintptr_t)bl_pool, (unsigned long long)bl_pages, (unsigned long long)bl_ms_since(t0),
	      (unsigned long long)bl_memtot, np, actual, bl_dev.msix_mode);
	u64 idle_us = cmdline_u64("probe.balloon.idle_ms", 60000) * 1000, poll_us = cmdline_u64("probe.balloon.poll_us", 1000);
	bool go = np == 0 || bl_adjust();	/* a target set before the driver started */
	const char *reason = go ? "idle" : "error";
	u64 deadline = tsc_deadline_us(idle_us);
	while (go) {
		void *t;
		u32 used;
		if (bl_has_stats && vq_pop(&bl_q[BL_STATSQ], &t, &used)) {
			/* §5.5.6.3: the device used the buffer: it wants fresh stats */
			bl_requests++;
			bl_fill_stats();
			bl_post_stats();
			deadline = tsc_deadline_us(idle_us);
		}
		if (virtio_isr(&bl_dev) & BL_ISR_CONFIG) {
			/* §2.1.2: DEVICE_NEEDS_RESET also comes with a configuration change */
			if (virtio_status(&bl_dev) & VIRTIO_STATUS_NEEDS_RESET) {
				reason = "needs-reset";
				break;
			}
			if (!bl_adjust()) {
				reason = "error";
				break;
			}
			deadline = tsc_deadline_us(idle_us);
		}
		if (!tsc_before(deadline))
			break;
		udelay(poll_us);
	}
	probe("balloon-done reason=%s inflates=%llu deflates=%llu stats_requests=%llu actual=%llu", reason,
	      (unsigned long long)bl_inflates, (unsigned long long)bl_deflates, (unsigned long long)bl_requests,
	      (unsigned long long)bl_given);
	virtio_reset(&bl_dev);
}
PROBE_TEST("balloon", balloon_test);
