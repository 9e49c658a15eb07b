/*
 * virtio-blk capacity changes seen from the driver, probe.test=blkresize: a small independent
 * driver for the first virtio-blk device on bus 0 (virtio_blk.c is the full driver; this one only
 * reads). It reports the capacity, proves the last block reads and the block past it fails, prints
 * `PROBE blkresize-ready`, then waits for a device configuration change notification (the VMM
 * resizes the disk: kvmkit's vm.resizeDisk, QEMU's QMP block_resize), re-reads the configuration
 * and repeats the I/O checks, probe.blkresize.rounds times (default 2: grow, then shrink).
 *
 * Spec points (virtio 1.2):
 *   §5.2.4    capacity (le64, 512-byte sectors) may change while the device runs; blk_size
 *   §2.5.1    config_generation: a set of fields is read between two equal values (retry else)
 *   §4.1.4.3  config_generation changes when the device configuration changes
 *   §4.1.4.5  ISR bit 1 (device configuration interrupt) is set before the notification is sent,
 *             with or without MSI-X; reading ISR clears it
 *   §4.1.5.1.2 with MSI-X the notification goes to config_msix_vector (probe.virtio.msix=2 maps
 *             it to entry 0 with the function masked, so it shows up as Pending Bit 0)
 *   §5.2.6.2  a request outside the disk is answered VIRTIO_BLK_S_IOERR
 *
 * Options: probe.blkresize.rounds=N (default 2), probe.blkresize.timeout_ms=N (wait per round,
 * default 30000), probe.blkresize.poll_us=N (ISR poll period, default 1000). README.md,
 * "virtio-blk resize", lists the PROBE lines.
 */
#include "tests.h"
#include "cmdline.h"
#include "dmamem.h"
#include "virtio_pci.h"
#include "virtqueue.h"

/* §5.2.3 feature bits */
#define RSZ_F_RO		5
#define RSZ_F_BLK_SIZE		6
/* §5.2.4 struct virtio_blk_config offsets */
#define RSZ_CFG_CAPACITY	0
#define RSZ_CFG_BLK_SIZE	20
/* §5.2.6 */
#define RSZ_T_IN		0
#define RSZ_S_POISON		0xa5
/* §4.1.4.5 ISR status bit 1 */
#define RSZ_ISR_CONFIG		0x2
/* largest blk_size we read whole */
#define RSZ_MAX_BLOCK		65536
#define RSZ_NO_COMPLETION	(-1)

struct rsz_req {
	u32 type;
	u32 reserved;
	u64 sector;
	u8 status;
} __attribute__((aligned(64)));

static struct virtio_dev rsz_dev;
static struct virtq rsz_q;
static struct rsz_req *rsz_hdr;
static u8 *rsz_buf;
static int rsz_token;

/* §3.1.1: negotiate (RO, BLK_SIZE; no indirect, no EVENT_IDX), one queue, DRIVER_OK; we poll. */
static bool rsz_init(void)
{
	if (!virtio_negotiate(&rsz_dev, BIT64(RSZ_F_RO) | BIT64(RSZ_F_BLK_SIZE)))
		return false;
	/* §5.2.2: requestq is queue 0; neither EVENT_IDX nor INDIRECT_DESC was asked for */
	if (!virtio_queue_setup(&rsz_dev, 0, &rsz_q, 16, 4))
		return false;
	virtio_driver_ok(&rsz_dev);
	vq_interrupts(&rsz_q, false);
	return true;
}

/* §2.5.1: capacity and blk_size from one configuration generation. Returns the retries. */
static u32 rsz_read_config(u64 *capacity, u32 *blk_size, u8 *generation)
{
	u32 retries = 0;
	for (;;) {
		u8 g = virtio_generation(&rsz_dev);
		*capacity = vdevcfg_read64(&rsz_dev, RSZ_CFG_CAPACITY);
		*blk_size = rsz_dev.offered & BIT64(RSZ_F_BLK_SIZE) ? vdevcfg_read32(&rsz_dev, RSZ_CFG_BLK_SIZE) : 512;
		u8 again = virtio_generation(&rsz_dev);
		if (again == g) {
			*generation = g;
			return retries;
		}
		retries++;
	}
}

/* One IN request of len bytes at sector into rsz_buf: the status byte, or RSZ_NO_COMPLETION. */
static int rsz_read(u64 sector, u32 len)
{
	rsz_hdr->type = RSZ_T_IN;
	rsz_hdr->reserved = 0;
	rsz_hdr->sector = sector;
	rsz_hdr->status = RSZ_S_POISON;
	struct vq_seg segs[3] = {
		{ (u64)(uintptr_t)rsz_hdr, 16, false },
		{ (u64)(uintptr_t)rsz_buf, len, true },
		{ (u64)(uintptr_t)&rsz_hdr->status, 1, true },
	};
	if (vq_add(&rsz_q, segs, 3, &rsz_token, false) < 0)
		return RSZ_NO_COMPLETION;
	vq_kick(&rsz_q, false);
	u64 deadline = tsc_deadline_us(2000000);
	while (tsc_before(deadline)) {
		void *t;
		u32 used;
		if (vq_pop(&rsz_q, &t, &used) && t == &rsz_token) {
			barrier();
			return rsz_hdr->status;
		}
		cpu_relax();
	}
	return RSZ_NO_COMPLETION;
}

/* Report the configuration, read the last block (hash) and the block past the end. */
static u64 rsz_check(u32 round)
{
	u64 cap;
	u32 bs;
	u8 gen;
	u32 retries = rsz_read_config(&cap, &bs, &gen);
	probe("blkresize-config round=%u capacity=%llu bytes=%llu blk_size=%u generation=%u retries=%u", round,
	      (unsigned long long)cap, (unsigned long long)cap * 512, bs, gen, retries);
	if (bs < 512 || bs > RSZ_MAX_BLOCK || (bs & (bs - 1)))
		bs = 512;
	u64 per = bs / 512;
	if (cap < per) {
		probe("blkresize-io round=%u result=too-small", round);
		return cap;
	}
	u64 last = cap - per;
	memset(rsz_buf, 0, bs);
	int st_last = rsz_read(last, bs);
	u64 h = fnv1a64(rsz_buf, bs, FNV1A64_INIT);
	int st_past = rsz_read(cap, bs);
	probe("blkresize-io round=%u last_sector=%llu len=%u last_status=%d fnv1a64=%016llx past_sector=%llu past_status=%d",
	      round, (unsigned long long)last, bs, st_last, (unsigned long long)h, (unsigned long long)cap, st_past);
	return cap;
}

/*
 * Wait for a configuration change: ISR bit 1 (set in every interrupt mode, §4.1.4.5). Where the
 * notification leaves a mark that reading does not clear, that mark is polled and ISR is read
 * only once it shows (so the report says how the change was signalled): PCI Status bit 3 (INTx
 * pending) with MSI-X off, the config vector's Pending Bit with MSI-X on and the function masked
 * (unless it is still set from an earlier round: nothing clears it while masked). Otherwise
 * (MSI-X with NO_VECTOR) ISR itself is polled.
 */
static bool rsz_wait(u32 round, u64 timeout_us, u64 poll_us)
{
	u64 t0 = rdtsc();
	u64 deadline = tsc_deadline_us(timeout_us);
	bool msix = rsz_dev.msix_cap && rsz_dev.msix_mode;
	u16 vec = msix ? virtio_config_vector(&rsz_dev) : VIRTIO_MSI_NO_VECTOR;
	bool pba_stale = vec < 64 && ((virtio_msix_pba(&rsz_dev) >> vec) & 1);
	bool isr_only = msix && (vec >= 64 || pba_stale);
	for (;;) {
		bool intx = !msix && virtio_intx_status(&rsz_dev);
		u64 pba = vec < 64 ? (virtio_msix_pba(&rsz_dev) >> vec) & 1 : 0;
		bool timeout = !tsc_before(deadline);
		if (isr_only || intx || (pba && !pba_stale) || timeout) {
			u8 isr = virtio_isr(&rsz_dev);
			if (isr & RSZ_ISR_CONFIG) {
				probe("blkresize-change round=%u result=changed isr=0x%x intx=%u config_vector=0x%x pba=%llu pba_stale=%u waited_ms=%llu",
				      round, isr, intx ? 1 : 0, vec, (unsigned long long)pba, pba_stale ? 1 : 0,
				      (unsigned long long)((rdtsc() - t0) / tsc_khz()));
				return true;
			}
			if (timeout) {
				probe("blkresize-change round=%u result=timeout isr=0x%x intx=%u pba=%llu status=0x%x", round, isr,
				      intx ? 1 : 0, (unsigned long long)pba, virtio_status(&rsz_dev));
				return false;
			}
		}
		udelay(poll_us);
	}
}

static void blkresize_test(void)
{
	u32 n = virtio_pci_find(VIRTIO_ID_BLOCK, &rsz_dev, 1);
	if (!n) {
		probe("blkresize error=no-device");
		return;
	}
	if (!virtio_pci_setup(&rsz_dev)) {
		probe("blkresize error=%s", rsz_dev.err);
		return;
	}
	rsz_hdr = dma_alloc(sizeof(*rsz_hdr), 64);
	rsz_buf = dma_alloc(RSZ_MAX_BLOCK, 4096);
	if (!rsz_hdr || !rsz_buf) {
		probe("blkresize error=out-of-memory");
		return;
	}
	bool ok = rsz_init();
	probe("blkresize init=%s dev=00:%02x.%x negotiated=0x%llx msix=%u status=0x%x", ok ? "ok" : rsz_dev.err, rsz_dev.dev,
	      rsz_dev.fn, (unsigned long long)rsz_dev.negotiated, rsz_dev.msix_cap && rsz_dev.msix_mode ? rsz_dev.msix_mode : 0,
	      virtio_status(&rsz_dev));
	if (!ok)
		return;
	u32 rounds = (u32)cmdline_u64("probe.blkresize.rounds", 2);
	u64 timeout_us = cmdline_u64("probe.blkresize.timeout_ms", 30000) * 1000;
	u64 poll_us = cmdline_u64("probe.blkresize.poll_us", 1000);
	u32 done = 0;
	for (u32 round = 0;; round++) {
		u64 cap = rsz_check(round);
		if (round == rounds)
			break;
		(void)virtio_isr(&rsz_dev);	/* forget anything before this point */
		probe("blkresize-ready round=%u capacity=%llu", round, (unsigned long long)cap);
		if (!rsz_wait(round + 1, timeout_us, poll_us))
			break;
		done++;
	}
	probe("blkresize-done changes=%u rounds=%u", done, rounds);
	virtio_reset(&rsz_dev);
}
PROBE_TEST("blkresize", blkresize_test);
