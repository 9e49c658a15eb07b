/*
 * virtio-rng driver test (virtio 1.2 §5.4), probe.test=rng: reads probe.rng.reads buffers
 * (default 4) of probe.rng.bytes bytes (default 4096, at most 65536) from the first entropy
 * device, then one request of two chained buffers at odd addresses, then one request with a
 * device-readable buffer (§5.4.6.1 forbids it: the device decides what happens). Options
 * probe.rng.indirect=0|1 and probe.rng.eventidx=0|1 as for virtio-blk.
 */
#include "tests.h"
#include "cmdline.h"
#include "dmamem.h"
#include "virtio_pci.h"
#include "virtqueue.h"

#define RNG_MAX_BYTES 65536

static u32 distinct(const u8 *p, u32 n)
{
	u8 seen[32];
	memset(seen, 0, sizeof(seen));
	u32 c = 0;
	for (u32 i = 0; i < n; i++) {
		if (!(seen[p[i] >> 3] & (1u << (p[i] & 7)))) {
			seen[p[i] >> 3] |= (u8)(1u << (p[i] & 7));
			c++;
		}
	}
	return c;
}

static struct virtio_dev dev;
static struct virtq q;
static int token;

static bool rng_init(void)
{
	u64 wanted = 0;
	if (cmdline_u64("probe.rng.indirect", 1))
		wanted |= BIT64(VIRTIO_F_INDIRECT_DESC);
	if (cmdline_u64("probe.rng.eventidx", 1))
		wanted |= BIT64(VIRTIO_F_EVENT_IDX);
	if (!virtio_negotiate(&dev, wanted))
		return false;
	if (!virtio_queue_setup(&dev, 0, &q, 64, 8))	/* §5.4.2: requestq is queue 0 */
		return false;
	virtio_driver_ok(&dev);
	vq_interrupts(&q, false);
	return true;
}

/* Submit segs, wait up to 1 s. Returns false on no completion (then *why says what). */
static bool rng_req(const struct vq_seg *segs, u16 n, u32 *len, const char **why)
{
	if (vq_add(&q, segs, n, &token, true) < 0) {
		*why = "queue-full";
		return false;
	}
	vq_kick(&q, false);
	u64 deadline = tsc_deadline_us(1000000);
	while (tsc_before(deadline)) {
		void *t;
		if (vq_pop(&q, &t, len) && t == &token)
			return true;
		cpu_relax();
	}
	*why = virtio_status(&dev) & VIRTIO_STATUS_NEEDS_RESET ? "needs-reset" : "no-completion";
	return false;
}

static void rng_test(void)
{
	u32 n = virtio_pci_find(VIRTIO_ID_RNG, &dev, 1);
	probe("virtio-rng-count=%u cfg=%s ecam=0x%llx", n, virtio_pci_ecam() ? "ecam" : "cf8",
	      (unsigned long long)virtio_pci_ecam());
	if (!n)
		return;
	if (!virtio_pci_setup(&dev)) {
		probe("virtio-rng error=%s", dev.err);
		return;
	}
	virtio_pci_report(&dev, "virtio-rng-pci", "index=0");
	bool ok = rng_init();
	probe("virtio-rng init=%s offered=0x%llx negotiated=0x%llx queue_size=%u status=0x%x", ok ? "ok" : dev.err,
	      (unsigned long long)dev.offered, (unsigned long long)dev.negotiated, q.size, virtio_status(&dev));
	if (!ok)
		return;
	u32 reads = (u32)cmdline_u64("probe.rng.reads", 4), bytes = (u32)cmdline_u64("probe.rng.bytes", 4096);
	if (bytes > RNG_MAX_BYTES)
		bytes = RNG_MAX_BYTES;
	if (!bytes)
		bytes = 1;
	u8 *buf = dma_alloc(RNG_MAX_BYTES, 4096), *prev = dma_alloc(RNG_MAX_BYTES, 4096);
	if (!buf || !prev) {
		probe("virtio-rng error=out-of-memory");
		return;
	}
	u32 good = 0, total = 0, prev_len = 0, repeats = 0, constant = 0;
	for (u32 i = 0; i < reads; i++) {
		memset(buf, 0, bytes);
		struct vq_seg s = { (u64)(uintptr_t)buf, bytes, true };	/* §5.4.6.1: device-writable only */
		u32 len = 0;
		const char *why = "";
		if (!rng_req(&s, 1, &len, &why)) {
			probe("virtio-rng-read read=%u requested=%u result=%s", i, bytes, why);
			break;
		}
		/* §5.4.6.1: the driver MUST examine the length written */
		u32 l = len <= bytes ? len : bytes;
		u32 dc = distinct(buf, l);
		bool same = prev_len && l >= 16 && prev_len >= 16 && !memcmp(buf, prev, 16);
		repeats += same;
		constant += l > 1 && dc == 1;
		good += len > 0 && len <= bytes;
		total += l;
		probe("virtio-rng-read read=%u requested=%u len=%u distinct=%u same_as_previous=%u fnv1a64=%016llx", i, bytes, len, dc,
		      same ? 1 : 0, (unsigned long long)fnv1a64(buf, l, FNV1A64_INIT));
		memcpy(prev, buf, l);
		prev_len = l;
	}
	/* two chained writable buffers at odd addresses, 100 + 200 bytes */
	memset(buf, 0, 4096);
	struct vq_seg two[2] = { { (u64)(uintptr_t)buf + 1, 100, true }, { (u64)(uintptr_t)buf + 2049, 200, true } };
	u32 len = 0;
	const char *why = "";
	bool done = rng_req(two, 2, &len, &why);
	u32 l1 = done ? (len < 100 ? len : 100) : 0, l2 = done && len > 100 ? (len - 100 < 200 ? len - 100 : 200) : 0;
	probe("virtio-rng-chain segs=2 requested=300 indirect=%u result=%s len=%u distinct_first=%u distinct_second=%u",
	      q.indirect ? 1 : 0, done ? "completed" : why, len, distinct(buf + 1, l1), distinct(buf + 2049, l2));
	if (!done)
		rng_init();
	/* a device-readable buffer: not allowed for the driver; the device decides */
	struct vq_seg ro = { (u64)(uintptr_t)buf, 64, false };
	len = 0;
	done = rng_req(&ro, 1, &len, &why);
	u8 st = virtio_status(&dev);
	probe("virtio-rng-bad case=device-readable-buffer result=%s len=%u device_status=0x%x", done ? "completed" : why, len, st);
	if (!done || (st & VIRTIO_STATUS_NEEDS_RESET))
		rng_init();
	/* and after that, one more read works */
	struct vq_seg s = { (u64)(uintptr_t)buf, 64, true };
	done = rng_req(&s, 1, &len, &why);
	probe("virtio-rng-done reads=%u ok_reads=%u bytes=%u repeats=%u constant=%u final_read=%s final_len=%u kicks=%llu kicks_suppressed=%llu",
	      reads, good, total, repeats, constant, done ? "completed" : why, len, (unsigned long long)q.kicks,
	      (unsigned long long)q.kicks_suppressed);
	virtio_reset(&dev);
}
PROBE_TEST("rng", rng_test);
