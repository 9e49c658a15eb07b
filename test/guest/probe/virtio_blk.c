/*
 * virtio-blk driver tests (virtio 1.2 §5.2) over the modern virtio-pci transport, from the
 * driver's side, so that QEMU's virtio-blk-pci and kvmkit's VirtioBlock can be compared.
 *
 *   probe.test=blk       every virtio-blk device on bus 0, in slot order (disk=0, 1, ...):
 *                        transport, features, config space, interrupts (ISR / MSI-X), GET_ID,
 *                        hashes of the first MiB and last 64 KiB, write/read-back of several
 *                        layouts (or, on a read-only disk, one write that must fail), FLUSH,
 *                        DISCARD, WRITE_ZEROES, requests at and past the end, unsupported
 *                        requests and malformed descriptor chains
 *   probe.test=blkbench  throughput: probe.blk.bench=seqread,seqwrite,randread,randwrite,
 *                        probe.blk.qd=1,32, probe.blk.bs=1m,4k (default: 1m sequential, 4k
 *                        random), probe.blk.size=MiB per run (default 256), probe.blk.disk=N
 *
 * Options: probe.blk.indirect=0|1 and probe.blk.eventidx=0|1 (negotiate VIRTIO_F_INDIRECT_DESC /
 * VIRTIO_F_EVENT_IDX when offered; default 1), probe.blk.qsize=N (queue size, default
 * min(256, max)), probe.blk.wsector=N (first sector the write tests may change, default 2048:
 * they use about 4.2 MiB from there), probe.blk.timeout_ms=N (wait for a malformed request,
 * default 300), probe.blk.bad=0 (skip the malformed requests), probe.blk.tsc_khz=N (bench
 * time base when CPUID gives none). The README lists every PROBE line.
 */
#include "tests.h"
#include "cmdline.h"
#include "dmamem.h"
#include "virtio_pci.h"
#include "virtqueue.h"

/* §5.2.3 feature bits */
#define VIRTIO_BLK_F_SIZE_MAX		1
#define VIRTIO_BLK_F_SEG_MAX		2
#define VIRTIO_BLK_F_GEOMETRY		4
#define VIRTIO_BLK_F_RO			5
#define VIRTIO_BLK_F_BLK_SIZE		6
#define VIRTIO_BLK_F_FLUSH		9
#define VIRTIO_BLK_F_TOPOLOGY		10
#define VIRTIO_BLK_F_CONFIG_WCE		11
#define VIRTIO_BLK_F_MQ			12
#define VIRTIO_BLK_F_DISCARD		13
#define VIRTIO_BLK_F_WRITE_ZEROES	14

/* §5.2.4 struct virtio_blk_config offsets */
#define BLK_CFG_CAPACITY		0
#define BLK_CFG_SIZE_MAX		8
#define BLK_CFG_SEG_MAX			12
#define BLK_CFG_GEOMETRY		16	/* le16 cylinders, u8 heads, u8 sectors */
#define BLK_CFG_BLK_SIZE		20
#define BLK_CFG_TOPOLOGY		24	/* u8 physical_block_exp, u8 alignment_offset, le16 min_io_size, le32 opt_io_size */
#define BLK_CFG_WRITEBACK		32
#define BLK_CFG_NUM_QUEUES		34
#define BLK_CFG_MAX_DISCARD_SECTORS	36
#define BLK_CFG_MAX_DISCARD_SEG		40
#define BLK_CFG_DISCARD_ALIGNMENT	44
#define BLK_CFG_MAX_WZ_SECTORS		48
#define BLK_CFG_MAX_WZ_SEG		52
#define BLK_CFG_WZ_MAY_UNMAP		56

/* §5.2.6 request types and status */
#define VIRTIO_BLK_T_IN			0
#define VIRTIO_BLK_T_OUT		1
#define VIRTIO_BLK_T_FLUSH		4
#define VIRTIO_BLK_T_GET_ID		8
#define VIRTIO_BLK_T_GET_LIFETIME	10
#define VIRTIO_BLK_T_DISCARD		11
#define VIRTIO_BLK_T_WRITE_ZEROES	13
#define VIRTIO_BLK_T_SECURE_ERASE	14
#define VIRTIO_BLK_S_OK			0
#define VIRTIO_BLK_S_IOERR		1
#define VIRTIO_BLK_S_UNSUPP		2
#define VIRTIO_BLK_ID_BYTES		20
#define WZ_FLAG_UNMAP			1	/* struct virtio_blk_discard_write_zeroes flags */

/* waiting results besides a status byte */
#define R_NO_COMPLETION			(-1)
#define R_NEEDS_RESET			(-2)
#define R_QUEUE_FULL			(-3)
#define STATUS_POISON			0xa5	/* status byte before submission */

#define MAX_DISKS			4
#define MAX_QD				64
#define MAX_SEGS			256	/* data segments per request we build */
#define IND_MAX				(MAX_SEGS + 2)

struct blk_req {		/* header (device-readable) and status (device-writable) */
	u32 type;
	u32 reserved;
	u64 sector;
	u8 status;
	u8 pad[47];
} __attribute__((aligned(64)));

struct blk {
	struct virtio_dev d;
	struct virtq q;
	u32 index;
	u16 qsize;
	bool want_indirect, want_event_idx;
	/* from config space */
	u64 capacity;
	u32 size_max, seg_max, blk_size;
	u32 max_discard_sectors, max_discard_seg, discard_align;
	u32 max_wz_sectors, max_wz_seg;
	u8 wz_may_unmap;
	bool ro;
	/* requests */
	struct blk_req *reqs;	/* MAX_QD slots */
	u64 requests;
	u64 timeout_us;
};

static struct blk disks[MAX_DISKS];
static u8 *buf_src, *buf_dst, *buf_lin, *buf_chk;	/* 2 MiB each */
#define BUF_BYTES (2u << 20)

/* A buffer layout: n segments at src/dst + off[i], len[i] bytes. */
struct layout {
	const char *name;
	u32 sector_off;		/* from wsector */
	u16 n;
	u32 off[MAX_SEGS];
	u32 len[MAX_SEGS];
};

/* Scratch arrays in DMA memory rather than .bss or the 12 KiB stack. */
static struct scratch {
	struct vq_seg req[MAX_SEGS + 2];	/* blk_req */
	struct vq_seg lin[MAX_SEGS];		/* blk_rw_linear */
	struct vq_seg rw[MAX_SEGS];		/* test_rw */
	struct layout lay;
	struct vq_seg bench[MAX_QD][MAX_SEGS + 2];
	u16 bench_n[MAX_QD];
} *S;

static bool has(const struct blk *b, int bit) { return b->d.negotiated & BIT64(bit); }

/* ---- set-up ---- */

static bool blk_init(struct blk *b)
{
	u64 wanted = BIT64(VIRTIO_BLK_F_SIZE_MAX) | BIT64(VIRTIO_BLK_F_SEG_MAX) |
		     BIT64(VIRTIO_BLK_F_GEOMETRY) | BIT64(VIRTIO_BLK_F_RO) | BIT64(VIRTIO_BLK_F_BLK_SIZE) |
		     BIT64(VIRTIO_BLK_F_FLUSH) | BIT64(VIRTIO_BLK_F_TOPOLOGY) |
		     BIT64(VIRTIO_BLK_F_DISCARD) | BIT64(VIRTIO_BLK_F_WRITE_ZEROES);
	if (b->want_indirect)
		wanted |= BIT64(VIRTIO_F_INDIRECT_DESC);
	if (b->want_event_idx)
		wanted |= BIT64(VIRTIO_F_EVENT_IDX);
	if (!virtio_negotiate(&b->d, wanted))
		return false;
	/* §5.2.2: requestq1 is queue 0 (no VIRTIO_BLK_F_MQ) */
	u16 max = virtio_queue_max(&b->d, 0);
	if (!max) {
		virtio_fail(&b->d, "queue-missing");
		return false;
	}
	if (!b->q.desc) {
		u16 want = (u16)cmdline_u64("probe.blk.qsize", 256);
		u16 sz = 1;
		while ((u32)sz * 2 <= want && (u32)sz * 2 <= max)
			sz *= 2;
		b->qsize = sz;
		if (!vq_alloc(&b->q, sz, IND_MAX)) {
			virtio_fail(&b->d, "out-of-memory");
			return false;
		}
	}
	vq_reset(&b->q, 0, b->qsize, has(b, VIRTIO_F_EVENT_IDX), has(b, VIRTIO_F_INDIRECT_DESC));
	if (!virtio_queue_enable(&b->d, 0, &b->q)) {
		virtio_fail(&b->d, b->d.err);
		return false;
	}
	virtio_driver_ok(&b->d);
	vq_interrupts(&b->q, false);	/* we poll */
	return true;
}

static bool offered(const struct blk *b, int bit) { return b->d.offered & BIT64(bit); }

static void blk_read_config(struct blk *b)
{
	const struct virtio_dev *d = &b->d;
	u16 cyl = 0, minio = 0, nq = 0;
	u8 heads = 0, secs = 0, pbe = 0, aoff = 0, wb = 0, gen;
	u32 optio = 0;
	/* §2.5.1: one consistent snapshot; §4.1.3.1: natural widths; §2.5.1: optional fields only
	 * when their feature is offered */
	do {
		gen = virtio_generation(d);
		b->capacity = vdevcfg_read64(d, BLK_CFG_CAPACITY);
		b->size_max = offered(b, VIRTIO_BLK_F_SIZE_MAX) ? vdevcfg_read32(d, BLK_CFG_SIZE_MAX) : 0;
		b->seg_max = offered(b, VIRTIO_BLK_F_SEG_MAX) ? vdevcfg_read32(d, BLK_CFG_SEG_MAX) : 0;
		if (offered(b, VIRTIO_BLK_F_GEOMETRY)) {
			cyl = vdevcfg_read16(d, BLK_CFG_GEOMETRY);
			heads = vdevcfg_read8(d, BLK_CFG_GEOMETRY + 2);
			secs = vdevcfg_read8(d, BLK_CFG_GEOMETRY + 3);
		}
		b->blk_size = offered(b, VIRTIO_BLK_F_BLK_SIZE) ? vdevcfg_read32(d, BLK_CFG_BLK_SIZE) : 0;
		if (offered(b, VIRTIO_BLK_F_TOPOLOGY)) {
			pbe = vdevcfg_read8(d, BLK_CFG_TOPOLOGY);
			aoff = vdevcfg_read8(d, BLK_CFG_TOPOLOGY + 1);
			minio = vdevcfg_read16(d, BLK_CFG_TOPOLOGY + 2);
			optio = vdevcfg_read32(d, BLK_CFG_TOPOLOGY + 4);
		}
		if (offered(b, VIRTIO_BLK_F_CONFIG_WCE))
			wb = vdevcfg_read8(d, BLK_CFG_WRITEBACK);
		if (offered(b, VIRTIO_BLK_F_MQ))
			nq = vdevcfg_read16(d, BLK_CFG_NUM_QUEUES);
		if (offered(b, VIRTIO_BLK_F_DISCARD)) {
			b->max_discard_sectors = vdevcfg_read32(d, BLK_CFG_MAX_DISCARD_SECTORS);
			b->max_discard_seg = vdevcfg_read32(d, BLK_CFG_MAX_DISCARD_SEG);
			b->discard_align = vdevcfg_read32(d, BLK_CFG_DISCARD_ALIGNMENT);
		}
		if (offered(b, VIRTIO_BLK_F_WRITE_ZEROES)) {
			b->max_wz_sectors = vdevcfg_read32(d, BLK_CFG_MAX_WZ_SECTORS);
			b->max_wz_seg = vdevcfg_read32(d, BLK_CFG_MAX_WZ_SEG);
			b->wz_may_unmap = vdevcfg_read8(d, BLK_CFG_WZ_MAY_UNMAP);
		}
	} while (gen != virtio_generation(d));
	b->ro = has(b, VIRTIO_BLK_F_RO);
	probe("virtio-blk-config disk=%u capacity=%llu bytes=%llu size_max=%u seg_max=%u blk_size=%u ro=%u flush=%u"
	      " geometry=%u/%u/%u topology=%u/%u/%u/%u config_wce=%u writeback=%u mq=%u num_queues=%u"
	      " discard=%u max_discard_sectors=%u max_discard_seg=%u discard_sector_alignment=%u"
	      " write_zeroes=%u max_write_zeroes_sectors=%u max_write_zeroes_seg=%u write_zeroes_may_unmap=%u"
	      " config_generation=%u",
	      b->index, (unsigned long long)b->capacity, (unsigned long long)b->capacity * 512, b->size_max,
	      b->seg_max, b->blk_size, b->ro, offered(b, VIRTIO_BLK_F_FLUSH), cyl, heads, secs, pbe, aoff, minio,
	      optio, offered(b, VIRTIO_BLK_F_CONFIG_WCE), wb, offered(b, VIRTIO_BLK_F_MQ), nq,
	      offered(b, VIRTIO_BLK_F_DISCARD), b->max_discard_sectors, b->max_discard_seg, b->discard_align,
	      offered(b, VIRTIO_BLK_F_WRITE_ZEROES), b->max_wz_sectors, b->max_wz_seg, b->wz_may_unmap, gen);
	/* what the driver uses: segments per request (Linux: 1 without SEG_MAX) */
	if (!has(b, VIRTIO_BLK_F_SEG_MAX) || !b->seg_max)
		b->seg_max = 1;
	if (!has(b, VIRTIO_BLK_F_SIZE_MAX))
		b->size_max = 0;
}

/* ---- requests ---- */

/* Wait for the request with this token. Returns the status byte, R_NO_COMPLETION or
 * R_NEEDS_RESET. */
static int blk_wait(struct blk *b, struct blk_req *r, u64 timeout_us, u32 *used_len, u64 *waited_us)
{
	u64 t0 = rdtsc();
	u64 deadline = tsc_deadline_us(timeout_us);
	u64 next_status = tsc_deadline_us(1000);
	for (;;) {
		void *tok;
		u32 len;
		while (vq_pop(&b->q, &tok, &len)) {
			if (tok == r) {
				if (used_len)
					*used_len = len;
				if (waited_us)
					*waited_us = (rdtsc() - t0) * 1000 / tsc_khz();
				barrier();
				return r->status;
			}
		}
		if (!tsc_before(next_status)) {
			/* §2.1.1: a device in NEEDS_RESET may never complete anything */
			if (virtio_status(&b->d) & VIRTIO_STATUS_NEEDS_RESET) {
				if (waited_us)
					*waited_us = (rdtsc() - t0) * 1000 / tsc_khz();
				return R_NEEDS_RESET;
			}
			next_status = tsc_deadline_us(1000);
		}
		if (!tsc_before(deadline)) {
			if (waited_us)
				*waited_us = timeout_us;
			return virtio_status(&b->d) & VIRTIO_STATUS_NEEDS_RESET ? R_NEEDS_RESET : R_NO_COMPLETION;
		}
		cpu_relax();
	}
}

/* One request: header, data segments (device-readable for OUT and the other "out" types,
 * device-writable for IN and GET_ID), status. Returns the status byte or R_*. */
static struct blk_req *blk_submit(struct blk *b, u32 type, u64 sector, const struct vq_seg *data, u16 n)
{
	struct vq_seg *segs = S->req;
	if (n > MAX_SEGS)
		return NULL;
	struct blk_req *r = &b->reqs[0];
	r->type = type;
	r->reserved = 0;
	r->sector = sector;
	r->status = STATUS_POISON;
	segs[0] = (struct vq_seg){ (u64)(uintptr_t)r, 16, false };
	for (u16 i = 0; i < n; i++)
		segs[1 + i] = data[i];
	segs[1 + n] = (struct vq_seg){ (u64)(uintptr_t)&r->status, 1, true };
	if (vq_add(&b->q, segs, n + 2, r, true) < 0)
		return NULL;
	b->requests++;
	vq_kick(&b->q, false);
	return r;
}

static int blk_req(struct blk *b, u32 type, u64 sector, const struct vq_seg *data, u16 n, u32 *used_len)
{
	struct blk_req *r = blk_submit(b, type, sector, data, n);
	return r ? blk_wait(b, r, 5000000, used_len, NULL) : R_QUEUE_FULL;
}

/* Split [addr, addr+len) into segments of at most size_max bytes (when negotiated). */
static u16 split(const struct blk *b, u64 addr, u32 len, bool write, struct vq_seg *out, u16 max)
{
	u16 n = 0;
	u32 lim = b->size_max ? b->size_max : len;
	while (len && n < max) {
		u32 l = len < lim ? len : lim;
		out[n++] = (struct vq_seg){ addr, l, write };
		addr += l;
		len -= l;
	}
	return n;
}

/* A linear buffer in as few requests as seg_max and size_max allow (used_len summed). */
static int blk_rw_linear(struct blk *b, u32 type, u64 sector, void *buf, u32 len, u32 *used_len)
{
	u64 chunk = len;
	if (b->size_max) {
		u64 lim = (u64)b->size_max * (b->seg_max < MAX_SEGS ? b->seg_max : MAX_SEGS);
		lim &= ~511ull;
		if (lim && chunk > lim)
			chunk = lim;
	}
	u32 total = 0;
	u8 *p = buf;
	int st;
	do {
		u32 l = len < chunk ? len : (u32)chunk, ul = 0;
		u16 n = split(b, (u64)(uintptr_t)p, l, type == VIRTIO_BLK_T_IN, S->lin, MAX_SEGS);
		st = blk_req(b, type, sector, S->lin, n, &ul);
		total += ul;
		p += l;
		sector += l / 512;
		len -= l;
	} while (len && st == VIRTIO_BLK_S_OK);
	if (used_len)
		*used_len = total;
	return st;
}

static const char *result_str(int r, char *tmp, size_t n)
{
	if (r == R_NO_COMPLETION)
		return "none";
	if (r == R_NEEDS_RESET)
		return "needs-reset";
	if (r == R_QUEUE_FULL)
		return "queue-full";
	snprintf(tmp, n, "%d", r);
	return tmp;
}

/* ---- data helpers (fnv1a64, xorshift_fill: util.c) ---- */

static bool all_zero(const u8 *p, u32 n)
{
	for (u32 i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

/* ---- the tests ---- */

static void test_id(struct blk *b)
{
	u8 *id = buf_dst;
	memset(id, 0, 64);
	struct vq_seg s = { (u64)(uintptr_t)id, VIRTIO_BLK_ID_BYTES, true };
	u32 len = 0;
	char t[8];
	int st = blk_req(b, VIRTIO_BLK_T_GET_ID, 0, &s, 1, &len);
	/* §5.2.6: NUL-padded ASCII, up to 20 bytes, no terminator when 20 long */
	size_t n = strnlen((const char *)id, VIRTIO_BLK_ID_BYTES);
	char line[160];
	int k = snprintf(line, sizeof(line), "PROBE virtio-blk-id disk=%u status=%s used_len=%u serial_len=%u serial=",
			 b->index, result_str(st, t, sizeof(t)), len, (unsigned)n);
	k += fmt_quoted(line + k, sizeof(line) - k - 2, (const char *)id, n);
	line[k++] = '\r';
	line[k++] = '\n';
	serial_write(line, (size_t)k);
}

static void test_hashes(struct blk *b)
{
	char t[8];
	u64 head = b->capacity < 2048 ? b->capacity : 2048;
	u32 len = 0;
	int st = blk_rw_linear(b, VIRTIO_BLK_T_IN, 0, buf_dst, (u32)head * 512, &len);
	probe("virtio-blk-read disk=%u case=head sector=0 bytes=%llu status=%s used_len=%u fnv1a64=%016llx", b->index,
	      (unsigned long long)head * 512, result_str(st, t, sizeof(t)), len,
	      (unsigned long long)fnv1a64(buf_dst, head * 512, FNV1A64_INIT));
	u64 tail = b->capacity < 128 ? b->capacity : 128;
	st = blk_rw_linear(b, VIRTIO_BLK_T_IN, b->capacity - tail, buf_dst, (u32)tail * 512, &len);
	probe("virtio-blk-read disk=%u case=tail sector=%llu bytes=%llu status=%s used_len=%u fnv1a64=%016llx", b->index,
	      (unsigned long long)(b->capacity - tail), (unsigned long long)tail * 512, result_str(st, t, sizeof(t)),
	      len, (unsigned long long)fnv1a64(buf_dst, tail * 512, FNV1A64_INIT));
}

static u32 layout_bytes(const struct layout *l)
{
	u32 t = 0;
	for (u16 i = 0; i < l->n; i++)
		t += l->len[i];
	return t;
}

static u16 layout_segs(const struct blk *b, const struct layout *l, u8 *base, bool write, struct vq_seg *s)
{
	u16 n = 0;
	for (u16 i = 0; i < l->n && n < MAX_SEGS; i++)
		n += split(b, (u64)(uintptr_t)(base + l->off[i]), l->len[i], write, s + n, MAX_SEGS - n);
	return n;
}

static void gather(const struct layout *l, const u8 *base, u8 *out)
{
	u32 p = 0;
	for (u16 i = 0; i < l->n; i++) {
		memcpy(out + p, base + l->off[i], l->len[i]);
		p += l->len[i];
	}
}

#define lay (S->lay)

static void make_layout(const struct blk *b, int which)
{
	memset(&lay, 0, sizeof(lay));
	u32 maxseg = b->seg_max;
	u32 cap = b->q.indirect ? IND_MAX - 2 : (u32)b->qsize - 2;
	if (maxseg > cap)
		maxseg = cap;
	if (maxseg > MAX_SEGS)
		maxseg = MAX_SEGS;
	switch (which) {
	case 0:	/* one sector, page aligned */
		lay = (struct layout){ .name = "single", .sector_off = 0, .n = 1, .off = { 0 }, .len = { 512 } };
		break;
	case 1:	/* one page */
		lay = (struct layout){ .name = "4k", .sector_off = 8, .n = 1, .off = { 4096 }, .len = { 4096 } };
		break;
	case 2:	/* 64 KiB as 16 scattered pages (a chain of 16 data descriptors) */
		lay.name = "chain64k";
		lay.sector_off = 16;
		lay.n = 16;
		while (lay.n > maxseg)
			lay.n /= 2;
		for (u16 i = 0; i < lay.n; i++) {
			lay.len[i] = 65536 / lay.n;
			/* descending addresses, a 4 KiB gap between segments */
			lay.off[i] = 16384 + (u32)(lay.n - 1 - i) * (lay.len[i] + 4096);
		}
		break;
	case 3:	/* odd addresses and lengths; the last crosses a page boundary */
		lay.name = "unaligned";
		lay.sector_off = 144;
		if (maxseg >= 3) {
			lay.n = 3;
			lay.off[0] = 200001; lay.len[0] = 100;
			lay.off[1] = 210003; lay.len[1] = 1000;
			lay.off[2] = 3 * 65536 + 4096 * 4 - 500 + 1; lay.len[2] = 948;
		} else {
			lay.n = 1;
			lay.off[0] = 200001; lay.len[0] = 2048;
		}
		break;
	case 4:	/* as many 512-byte segments as seg_max and the queue allow, 8 bytes apart */
		lay.name = "maxseg";
		lay.sector_off = 160;
		lay.n = (u16)maxseg;
		for (u16 i = 0; i < lay.n; i++) {
			lay.off[i] = 262144 + 3 + (u32)i * 520;
			lay.len[i] = 512;
		}
		break;
	default:	/* 1 MiB in one descriptor (split only by size_max) */
		lay = (struct layout){ .name = "1m", .sector_off = 512, .n = 1, .off = { 1u << 20 }, .len = { 1u << 20 } };
		break;
	}
}

static void test_rw(struct blk *b, u64 wsector)
{
	struct vq_seg *s = S->rw;
	char t1[8], t2[8], t3[8];
	for (int c = 0; c < 6; c++) {
		make_layout(b, c);
		u32 bytes = layout_bytes(&lay);
		u64 sector = wsector + lay.sector_off;
		/* the data, linear, and spread over the layout in buf_src */
		xorshift_fill(buf_lin, bytes, (u32)(c + 16 * b->index));
		u32 p = 0;
		for (u16 i = 0; i < lay.n; i++) {
			memcpy(buf_src + lay.off[i], buf_lin + p, lay.len[i]);
			p += lay.len[i];
		}
		u16 n = layout_segs(b, &lay, buf_src, false, s);
		u32 wlen = 0, rlen = 0, r2len = 0;
		int ws = blk_req(b, VIRTIO_BLK_T_OUT, sector, s, n, &wlen);
		/* read back with the same layout into a poisoned buffer ... */
		for (u16 i = 0; i < lay.n; i++)
			memset(buf_dst + lay.off[i], 0xee, lay.len[i]);
		n = layout_segs(b, &lay, buf_dst, true, s);
		int rs = blk_req(b, VIRTIO_BLK_T_IN, sector, s, n, &rlen);
		u8 *chk = buf_chk;
		gather(&lay, buf_dst, chk);
		bool m1 = !memcmp(chk, buf_lin, bytes);
		/* ... and as one linear buffer */
		memset(chk, 0xdd, bytes);
		int rs2 = blk_rw_linear(b, VIRTIO_BLK_T_IN, sector, chk, bytes, &r2len);
		bool m2 = !memcmp(chk, buf_lin, bytes);
		probe("virtio-blk-rw disk=%u case=%s sector=%llu bytes=%u segs=%u indirect=%u wstatus=%s rstatus=%s rstatus_linear=%s"
		      " wused_len=%u rused_len=%u match=%u match_linear=%u fnv1a64=%016llx",
		      b->index, lay.name, (unsigned long long)sector, bytes, n, b->q.indirect ? 1 : 0,
		      result_str(ws, t1, sizeof(t1)), result_str(rs, t2, sizeof(t2)), result_str(rs2, t3, sizeof(t3)),
		      wlen, rlen, m1 ? 1 : 0, m2 ? 1 : 0, (unsigned long long)fnv1a64(buf_lin, bytes, FNV1A64_INIT));
	}
}

/* Read-only disk: one write must fail with IOERR and change nothing (§5.2.6.2). */
static void test_ro(struct blk *b, u64 wsector)
{
	char t1[8], t2[8], t3[8];
	u32 wlen = 0;
	int rs1 = blk_rw_linear(b, VIRTIO_BLK_T_IN, wsector, buf_dst, 4096, NULL);
	xorshift_fill(buf_src, 4096, 99);
	int ws = blk_rw_linear(b, VIRTIO_BLK_T_OUT, wsector, buf_src, 4096, &wlen);
	int rs2 = blk_rw_linear(b, VIRTIO_BLK_T_IN, wsector, buf_lin, 4096, NULL);
	probe("virtio-blk-ro disk=%u sector=%llu wstatus=%s wused_len=%u rstatus=%s/%s unchanged=%u", b->index,
	      (unsigned long long)wsector, result_str(ws, t1, sizeof(t1)), wlen, result_str(rs1, t2, sizeof(t2)),
	      result_str(rs2, t3, sizeof(t3)), !memcmp(buf_dst, buf_lin, 4096) ? 1 : 0);
}

static void test_flush(struct blk *b)
{
	char t[8];
	u32 len = 0;
	/* §5.2.6.1: sector 0, no data */
	int st = blk_req(b, VIRTIO_BLK_T_FLUSH, 0, NULL, 0, &len);
	probe("virtio-blk-flush disk=%u negotiated=%u status=%s used_len=%u", b->index, has(b, VIRTIO_BLK_F_FLUSH), result_str(st, t, sizeof(t)), len);
}

struct dwz {			/* struct virtio_blk_discard_write_zeroes */
	u64 sector;
	u32 num_sectors;
	u32 flags;
};

static int dwz_req(struct blk *b, u32 type, const struct dwz *segs, u16 n)
{
	struct dwz *d = (struct dwz *)(buf_src + BUF_BYTES - 4096);
	memcpy(d, segs, sizeof(*d) * n);
	struct vq_seg s = { (u64)(uintptr_t)d, (u32)sizeof(*d) * n, false };
	return blk_req(b, type, 0, &s, 1, NULL);
}

static void test_discard_wz(struct blk *b, u64 wsector)
{
	char t1[8], t2[8], t3[8];
	/* DISCARD 1 MiB (§5.2.6: data after it is undefined) */
	u64 ds = wsector + 4096;
	struct dwz seg = { ds, 2048, 0 };
	if (b->max_discard_sectors && seg.num_sectors > b->max_discard_sectors)
		seg.num_sectors = b->max_discard_sectors;
	int st = dwz_req(b, VIRTIO_BLK_T_DISCARD, &seg, 1);
	probe("virtio-blk-discard disk=%u negotiated=%u sector=%llu sectors=%u status=%s", b->index,
	      has(b, VIRTIO_BLK_F_DISCARD), (unsigned long long)seg.sector, seg.num_sectors, result_str(st, t1, sizeof(t1)));

	/* WRITE_ZEROES over a written pattern, without and with unmap; reads must return zeroes */
	for (u32 unmap = 0; unmap < 2; unmap++) {
		u64 zs = wsector + 6144 + unmap * 128;
		xorshift_fill(buf_src, 65536, 7 + unmap);
		int ws = b->ro ? -100 : blk_rw_linear(b, VIRTIO_BLK_T_OUT, zs, buf_src, 65536, NULL);
		struct dwz z = { zs, 128, unmap ? WZ_FLAG_UNMAP : 0 };
		int zst = dwz_req(b, VIRTIO_BLK_T_WRITE_ZEROES, &z, 1);
		memset(buf_dst, 0xcc, 65536);
		int rs = blk_rw_linear(b, VIRTIO_BLK_T_IN, zs, buf_dst, 65536, NULL);
		probe("virtio-blk-write-zeroes disk=%u negotiated=%u unmap=%u sector=%llu sectors=128 wstatus=%s status=%s rstatus=%s zeros=%u",
		      b->index, has(b, VIRTIO_BLK_F_WRITE_ZEROES), unmap, (unsigned long long)zs,
		      ws == -100 ? "skipped" : result_str(ws, t1, sizeof(t1)), result_str(zst, t2, sizeof(t2)),
		      result_str(rs, t3, sizeof(t3)), all_zero(buf_dst, 65536) ? 1 : 0);
	}
}

/* Requests whose status the spec (or QEMU, for the driver errors) decides. */
/* A single request of test_requests / test_align: type, sector, one data buffer of bytes. */
struct req_case {
	const char *name;
	u32 type;
	u64 sector;
	u32 bytes;
};

static void test_requests(struct blk *b, u64 wsector)
{
	char t[8];
	u64 cap = b->capacity;
	struct req_case cases[] = {
		{ "read-last-sector", VIRTIO_BLK_T_IN, cap - 1, 512 },
		{ "read-past-end", VIRTIO_BLK_T_IN, cap - 1, 1024 },
		{ "read-at-capacity", VIRTIO_BLK_T_IN, cap, 512 },
		{ "read-sector-2^63", VIRTIO_BLK_T_IN, 1ull << 63, 512 },
		{ "read-sector-max", VIRTIO_BLK_T_IN, ~0ull, 512 },
		{ "write-past-end", VIRTIO_BLK_T_OUT, cap - 1, 1024 },
		{ "write-at-capacity", VIRTIO_BLK_T_OUT, cap, 512 },
		{ "read-len-not-512", VIRTIO_BLK_T_IN, wsector, 1000 },
		{ "write-len-not-512", VIRTIO_BLK_T_OUT, wsector + 2600, 1000 },
		{ "read-len-0", VIRTIO_BLK_T_IN, wsector, 0 },
		{ "unknown-type-126", 126, 0, 512 },
		{ "get-lifetime", VIRTIO_BLK_T_GET_LIFETIME, 0, 8 },
		{ "secure-erase", VIRTIO_BLK_T_SECURE_ERASE, 0, 16 },
		{ "get-id-short-buffer", VIRTIO_BLK_T_GET_ID, 0, 8 },
		{ "flush-with-sector", VIRTIO_BLK_T_FLUSH, 8, 0 },
	};
	for (u32 i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		bool out = cases[i].type == VIRTIO_BLK_T_OUT || cases[i].type == VIRTIO_BLK_T_SECURE_ERASE;
		u8 *buf = out ? buf_src : buf_dst;
		if (out)
			xorshift_fill(buf, 4096, 1000 + i);
		else
			memset(buf, 0xee, 4096);
		struct vq_seg s = { (u64)(uintptr_t)buf, cases[i].bytes, !out };
		if (cases[i].type == VIRTIO_BLK_T_SECURE_ERASE)
			memset(buf, 0, 16);
		u32 len = 0;
		int st = blk_req(b, cases[i].type, cases[i].sector, &s, cases[i].bytes ? 1 : 0, &len);
		probe("virtio-blk-req disk=%u case=%s sector=%llu bytes=%u status=%s used_len=%u", b->index, cases[i].name,
		      (unsigned long long)cases[i].sector, cases[i].bytes, result_str(st, t, sizeof(t)), len);
	}
	/* §5.2.6.2: UNSUPP for unknown flags, and for unmap on DISCARD */
	struct dwz d1 = { wsector + 4096, 8, WZ_FLAG_UNMAP };
	int st = dwz_req(b, VIRTIO_BLK_T_DISCARD, &d1, 1);
	probe("virtio-blk-req disk=%u case=discard-unmap-flag status=%s", b->index, result_str(st, t, sizeof(t)));
	struct dwz d2 = { wsector + 4096, 8, 2 };
	st = dwz_req(b, VIRTIO_BLK_T_DISCARD, &d2, 1);
	probe("virtio-blk-req disk=%u case=discard-unknown-flag status=%s", b->index, result_str(st, t, sizeof(t)));
	struct dwz d3 = { wsector + 6144, 8, 2 };
	st = dwz_req(b, VIRTIO_BLK_T_WRITE_ZEROES, &d3, 1);
	probe("virtio-blk-req disk=%u case=write-zeroes-unknown-flag status=%s", b->index, result_str(st, t, sizeof(t)));
	/* more segments than max_discard_seg (a driver error; the device decides) */
	struct dwz d4[2] = { { wsector + 4096, 8, 0 }, { wsector + 4104, 8, 0 } };
	st = dwz_req(b, VIRTIO_BLK_T_DISCARD, d4, 2);
	probe("virtio-blk-req disk=%u case=discard-2-segments max_discard_seg=%u status=%s", b->index, b->max_discard_seg,
	      result_str(st, t, sizeof(t)));
	struct dwz d5 = { cap - 4, 8, 0 };
	st = dwz_req(b, VIRTIO_BLK_T_DISCARD, &d5, 1);
	probe("virtio-blk-req disk=%u case=discard-past-end status=%s", b->index, result_str(st, t, sizeof(t)));
	st = dwz_req(b, VIRTIO_BLK_T_WRITE_ZEROES, &d5, 1);
	probe("virtio-blk-req disk=%u case=write-zeroes-past-end status=%s", b->index, result_str(st, t, sizeof(t)));
}

/* Interrupt paths without taking interrupts: ISR + PCI status (MSI-X off), Pending Bits (MSI-X
 * on, masked), NO_VECTOR. */
static void test_irq(struct blk *b, u64 wsector)
{
	struct virtio_dev *d = &b->d;
	const char *mode = !d->msix_cap || !d->msix_mode ? "intx" : d->msix_mode == 1 ? "msix-no-vector" : "msix-masked";
	char vec[48] = "";
	if (d->msix_cap && d->msix_mode)
		snprintf(vec, sizeof(vec), " config_vector=0x%x queue_vector=0x%x", virtio_config_vector(d),
			 virtio_queue_vector(d, 0));
	/* notifications off: SHOULD NOT notify (§2.7.7.2). One request first: QEMU always notifies
	 * the first used buffer after a reset, whatever used_event says. */
	vq_interrupts(&b->q, false);
	blk_rw_linear(b, VIRTIO_BLK_T_IN, wsector, buf_dst, 512, NULL);
	udelay(5000);	/* its notification may trail the used ring update */
	(void)virtio_isr(d);
	blk_rw_linear(b, VIRTIO_BLK_T_IN, wsector, buf_dst, 512, NULL);
	udelay(5000);
	bool int_off = virtio_intx_status(d);
	u64 pba_off = virtio_msix_pba(d);
	u8 isr_off = virtio_isr(d);
	/* notifications on: MUST notify (§2.7.7.2); ISR bit 0 and PCI status bit 3 when MSI-X is
	 * off (§4.1.4.5.1), a pending bit for a masked vector */
	vq_interrupts(&b->q, true);
	/* Wait for the notification before popping the used entry, as an interrupt-driven driver
	 * does: popping first moves used_event on (§2.7.10), after which a device that has not yet
	 * checked used_event may rightly skip the interrupt. */
	struct vq_seg seg = { (u64)(uintptr_t)buf_dst, 512, true };
	struct blk_req *req = blk_submit(b, VIRTIO_BLK_T_IN, wsector, &seg, 1);
	u64 dl = tsc_deadline_us(20000);
	bool int_on = false;
	u64 pba_on = 0;
	while (tsc_before(dl)) {
		int_on = virtio_intx_status(d);
		pba_on = virtio_msix_pba(d);
		if ((!d->msix_mode && int_on) || (d->msix_mode == 2 && pba_on))
			break;
		udelay(100);
	}
	if (req)
		blk_wait(b, req, 5000000, NULL, NULL);
	u8 isr_on = virtio_isr(d);	/* read clears (§4.1.4.5) */
	bool int_after = virtio_intx_status(d);
	u8 isr_after = virtio_isr(d);
	vq_interrupts(&b->q, false);
	/* §4.1.5.1.2.1: every event unmapped after reset */
	virtio_reset(d);
	u16 rcv = virtio_config_vector(d), rqv = virtio_queue_vector(d, 0);
	bool ok = blk_init(b);
	probe("virtio-blk-irq disk=%u mode=%s event_idx=%u%s off_isr=0x%x off_pci_int=%u off_pba=0x%llx on_isr=0x%x on_pci_int=%u on_pba=0x%llx"
	      " isr_after_read=0x%x pci_int_after_read=%u reset_config_vector=0x%x reset_queue_vector=0x%x reinit=%u",
	      b->index, mode, b->q.event_idx ? 1 : 0, vec, isr_off, int_off, (unsigned long long)pba_off, isr_on, int_on,
	      (unsigned long long)pba_on, isr_after, int_after, rcv, rqv, ok ? 1 : 0);
}

/* ---- malformed descriptor chains ---- */

static const char *bad_result(int r)
{
	if (r >= 0)
		return "completed";
	return r == R_NEEDS_RESET ? "needs-reset" : r == R_NO_COMPLETION ? "no-completion" : "queue-full";
}

/* status_at: where this chain's status byte is (the last device-writable byte) */
static void bad_case(struct blk *b, const char *name, const struct vq_raw *descs, u16 n, struct blk_req *r,
		     const volatile u8 *status_at)
{
	if (!b->d.msix_mode)
		(void)virtio_isr(&b->d);
	u64 timeout_ms = cmdline_u64("probe.blk.timeout_ms", 300);
	u32 len = 0;
	u64 us = 0;
	int res;
	if (vq_add_raw(&b->q, descs, n, r) < 0) {
		res = R_QUEUE_FULL;
	} else {
		b->requests++;
		vq_kick(&b->q, false);
		res = blk_wait(b, r, timeout_ms * 1000, &len, &us);
	}
	u8 status = virtio_status(&b->d);
	u8 isr = b->d.msix_mode ? 0 : virtio_isr(&b->d);
	u8 sbyte = status_at ? *status_at : 0;
	/* a device in NEEDS_RESET, or a request it never completed, needs a reset; also reset when
	 * the raw chains (never returned to the free list) have used up the queue */
	bool recover = res < 0 || (status & VIRTIO_STATUS_NEEDS_RESET) || b->q.num_free < 16;
	bool ok = true;
	if (recover)
		ok = blk_init(b);
	/* afterwards the device must work: read one sector */
	char t2[8];
	int after = blk_rw_linear(b, VIRTIO_BLK_T_IN, 0, buf_dst, 512, NULL);
	probe("virtio-blk-bad disk=%u case=%s result=%s status_byte=0x%x used_len=%u device_status=0x%x isr=0x%x ms=%llu reset=%u reinit=%u after=%s",
	      b->index, name, bad_result(res), sbyte, len, status, isr, (unsigned long long)(us / 1000),
	      recover ? 1 : 0, ok ? 1 : 0, result_str(after, t2, sizeof(t2)));
}

static void test_bad(struct blk *b, u64 wsector)
{
	struct blk_req *r = &b->reqs[1];
	u64 hdr = (u64)(uintptr_t)r, st = (u64)(uintptr_t)&r->status;
	u64 data = (u64)(uintptr_t)buf_dst, src = (u64)(uintptr_t)buf_src;
	const u64 oob = 0xfffff0000000ull;	/* far outside RAM */
	const u16 R = 0, W = VIRTQ_DESC_F_WRITE, N = VIRTQ_DESC_F_NEXT;
	xorshift_fill(buf_src, 4096, 4242);
#define HDR(t, s) do { r->type = (t); r->reserved = 0; r->sector = (s); r->status = STATUS_POISON; } while (0)
#define CASE_AT(name, at, ...) do { struct vq_raw d_[] = { __VA_ARGS__ }; bad_case(b, name, d_, sizeof(d_) / sizeof(d_[0]), r, at); } while (0)
#define CASE(name, ...) CASE_AT(name, &r->status, __VA_ARGS__)

	/* §2.7.4 / §5.2.6: a request needs a writable status byte at the end */
	HDR(VIRTIO_BLK_T_IN, wsector);
	CASE("header-only", { hdr, 16, R, 0 });
	HDR(VIRTIO_BLK_T_FLUSH, 0);
	CASE("flush-no-status", { hdr, 16, R, 0 });
	HDR(VIRTIO_BLK_T_OUT, wsector + 2600);
	CASE("status-read-only", { hdr, 16, R | N, VQ_NEXT_REL(1) }, { src, 512, R | N, VQ_NEXT_REL(2) }, { st, 1, R, 0 });
	/* §2.7.4.2: writable descriptors must follow the readable ones */
	HDR(VIRTIO_BLK_T_IN, wsector);
	CASE("readable-after-writable", { hdr, 16, R | N, VQ_NEXT_REL(1) }, { data, 512, W | N, VQ_NEXT_REL(2) },
	     { src, 16, R | N, VQ_NEXT_REL(3) }, { st, 1, W, 0 });
	HDR(VIRTIO_BLK_T_IN, wsector);
	CASE("header-split-4+12", { hdr, 4, R | N, VQ_NEXT_REL(1) }, { hdr + 4, 12, R | N, VQ_NEXT_REL(2) },
	     { data, 512, W | N, VQ_NEXT_REL(3) }, { st, 1, W, 0 });
	HDR(VIRTIO_BLK_T_IN, wsector);
	CASE("header-short-8", { hdr, 8, R | N, VQ_NEXT_REL(1) }, { data, 512, W | N, VQ_NEXT_REL(2) }, { st, 1, W, 0 });
	HDR(VIRTIO_BLK_T_IN, wsector);
	CASE_AT("status-in-data", buf_dst + 512, { hdr, 16, R | N, VQ_NEXT_REL(1) }, { data, 513, W, 0 });
	/* buffers outside guest RAM */
	HDR(VIRTIO_BLK_T_IN, wsector);
	CASE("read-to-oob-address", { hdr, 16, R | N, VQ_NEXT_REL(1) }, { oob, 4096, W | N, VQ_NEXT_REL(2) }, { st, 1, W, 0 });
	HDR(VIRTIO_BLK_T_OUT, wsector + 2600);
	CASE("write-from-oob-address", { hdr, 16, R | N, VQ_NEXT_REL(1) }, { oob, 4096, R | N, VQ_NEXT_REL(2) }, { st, 1, W, 0 });
	CASE("header-at-oob-address", { oob, 16, R | N, VQ_NEXT_REL(1) }, { data, 512, W | N, VQ_NEXT_REL(2) }, { st, 1, W, 0 });
	HDR(VIRTIO_BLK_T_IN, wsector);
	CASE("status-at-oob-address", { hdr, 16, R | N, VQ_NEXT_REL(1) }, { data, 512, W | N, VQ_NEXT_REL(2) }, { oob, 1, W, 0 });
	/* broken chains */
	HDR(VIRTIO_BLK_T_IN, wsector);
	CASE("loop", { hdr, 16, R | N, VQ_NEXT_REL(1) }, { data, 512, W | N, VQ_NEXT_REL(0) });
	HDR(VIRTIO_BLK_T_IN, wsector);
	CASE("next-out-of-range", { hdr, 16, R | N, VQ_NEXT_ABS(b->qsize + 5) });
	HDR(VIRTIO_BLK_T_IN, wsector);
	CASE("zero-length-data", { hdr, 16, R | N, VQ_NEXT_REL(1) }, { data, 0, W | N, VQ_NEXT_REL(2) }, { st, 1, W, 0 });
	if (b->q.indirect) {
		/* §2.7.5.3 indirect tables: the device MUST handle direct descriptors followed by one
		 * indirect descriptor; the driver MUST NOT nest tables or set INDIRECT with NEXT */
		struct virtq_desc *tab = (struct virtq_desc *)(buf_src + BUF_BYTES - 8192);
		u64 ta = (u64)(uintptr_t)tab;
		tab[0] = (struct virtq_desc){ data, 512, W | N, 1 };
		tab[1] = (struct virtq_desc){ st, 1, W, 0 };
		HDR(VIRTIO_BLK_T_IN, wsector);
		CASE("direct-then-indirect", { hdr, 16, R | N, VQ_NEXT_REL(1) }, { ta, 32, VIRTQ_DESC_F_INDIRECT, 0 });
		HDR(VIRTIO_BLK_T_IN, wsector);
		CASE("indirect-len-not-16n", { ta, 24, VIRTQ_DESC_F_INDIRECT, 0 });
		HDR(VIRTIO_BLK_T_IN, wsector);
		CASE("indirect-len-0", { ta, 0, VIRTQ_DESC_F_INDIRECT, 0 });
		tab[2] = (struct virtq_desc){ hdr, 16, N, 1 };
		tab[3] = (struct virtq_desc){ ta, 32, VIRTQ_DESC_F_INDIRECT, 0 };
		HDR(VIRTIO_BLK_T_IN, wsector);
		CASE("indirect-nested", { ta + 32, 32, VIRTQ_DESC_F_INDIRECT, 0 });
		tab[4] = (struct virtq_desc){ hdr, 16, N, 1 };
		tab[5] = (struct virtq_desc){ data, 512, W | N, 7 };
		HDR(VIRTIO_BLK_T_IN, wsector);
		CASE("indirect-next-out-of-table", { ta + 64, 32, VIRTQ_DESC_F_INDIRECT, 0 });
		CASE("indirect-at-oob-address", { oob, 48, VIRTQ_DESC_F_INDIRECT, 0 });
		tab[6] = (struct virtq_desc){ hdr, 16, N, 1 };
		tab[7] = (struct virtq_desc){ data, 512, W | N, 2 };
		tab[8] = (struct virtq_desc){ st, 1, W, 0 };
		HDR(VIRTIO_BLK_T_IN, wsector);
		CASE("indirect-with-next-flag", { ta + 96, 48, VIRTQ_DESC_F_INDIRECT | N, VQ_NEXT_REL(1) }, { st, 1, W, 0 });
	}
#undef CASE
#undef CASE_AT
#undef HDR
}

/*
 * A disk whose blk_size is larger than 512 (§5.2.4): sector numbers and lengths stay in 512-byte
 * units (§5.2.5), and the spec leaves open what a device answers to requests that are not
 * multiples of blk_size. Requests at wsector + 3072 (rounded up to a block), one line each:
 * "virtio-blk-align disk=N blk_size= case= sector= bytes= status= used_len= [match=]".
 */
static void test_align(struct blk *b, u64 wsector)
{
	char t[8], t2[8];
	u32 bs = b->blk_size, spb = bs / 512;
	u64 a = (wsector + 3072 + spb - 1) / spb * spb;
	u32 len;
	int st;
#define ALIGN_LINE(name, sec, bytes, extra, ...) \
	probe("virtio-blk-align disk=%u blk_size=%u case=%s sector=%llu bytes=%u status=%s used_len=%u" extra, \
	      b->index, bs, name, (unsigned long long)(sec), (unsigned)(bytes), result_str(st, t, sizeof(t)), len, ##__VA_ARGS__)
	/* one block of a known pattern, read back */
	xorshift_fill(buf_lin, bs, 5000);
	len = 0;
	st = blk_rw_linear(b, VIRTIO_BLK_T_OUT, a, buf_lin, bs, &len);
	ALIGN_LINE("write-block", a, bs, "");
	memset(buf_dst, 0xee, bs);
	len = 0;
	st = blk_rw_linear(b, VIRTIO_BLK_T_IN, a, buf_dst, bs, &len);
	ALIGN_LINE("read-block", a, bs, " match=%u", !memcmp(buf_dst, buf_lin, bs) ? 1 : 0);
	/* requests that are whole 512-byte sectors but not whole blocks */
	struct req_case cases[] = {
		{ "read-512", VIRTIO_BLK_T_IN, a, 512 },
		{ "write-512", VIRTIO_BLK_T_OUT, a, 512 },
		{ "read-block-at-sector+1", VIRTIO_BLK_T_IN, a + 1, bs },
		{ "write-block-at-sector+1", VIRTIO_BLK_T_OUT, a + 1, bs },
		{ "read-block+512", VIRTIO_BLK_T_IN, a, bs + 512 },
		{ "write-block+512", VIRTIO_BLK_T_OUT, a, bs + 512 },
	};
	for (u32 i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		bool out = cases[i].type == VIRTIO_BLK_T_OUT;
		u8 *buf = out ? buf_src : buf_dst;
		if (out)
			xorshift_fill(buf, cases[i].bytes, 5100 + i);
		struct vq_seg s = { (u64)(uintptr_t)buf, cases[i].bytes, !out };
		len = 0;
		st = blk_req(b, cases[i].type, cases[i].sector, &s, 1, &len);
		ALIGN_LINE(cases[i].name, cases[i].sector, cases[i].bytes, "");
	}
	/* DISCARD / WRITE_ZEROES ranges that are not whole blocks, and whole ones (§5.2.4:
	 * discard_sector_alignment is a hint for DISCARD, nothing is said for WRITE_ZEROES) */
	struct {
		const char *name;
		u32 type;
		struct dwz seg;
	} ranges[] = {
		{ "discard-at-sector+1", VIRTIO_BLK_T_DISCARD, { a + 1 + 8 * spb, spb, 0 } },
		{ "discard-512", VIRTIO_BLK_T_DISCARD, { a + 8 * spb, 1, 0 } },
		{ "discard-block", VIRTIO_BLK_T_DISCARD, { a + 8 * spb, spb, 0 } },
		{ "write-zeroes-at-sector+1", VIRTIO_BLK_T_WRITE_ZEROES, { a + 1 + 16 * spb, spb, 0 } },
		{ "write-zeroes-512", VIRTIO_BLK_T_WRITE_ZEROES, { a + 16 * spb, 1, 0 } },
		{ "write-zeroes-block", VIRTIO_BLK_T_WRITE_ZEROES, { a + 16 * spb, spb, 0 } },
	};
	for (u32 i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++) {
		len = 0;
		st = dwz_req(b, ranges[i].type, &ranges[i].seg, 1);
		ALIGN_LINE(ranges[i].name, ranges[i].seg.sector, ranges[i].seg.num_sectors * 512, " negotiated=%u",
			   has(b, ranges[i].type == VIRTIO_BLK_T_DISCARD ? VIRTIO_BLK_F_DISCARD : VIRTIO_BLK_F_WRITE_ZEROES));
	}
	/* two blocks from three buffers at odd addresses (100 bytes, 1000 bytes, the rest across a
	 * page boundary), read back as one buffer */
	u32 two = 2 * bs;
	xorshift_fill(buf_lin + bs, two, 5200);
	u32 offs[3] = { 300001, 310003, 4 * 65536 + 4096 * 2 - 700 + 1 };
	u32 lens[3] = { 100, 1000, two - 1100 };
	struct vq_seg segs[3];
	u32 p = 0;
	for (u32 i = 0; i < 3; i++) {
		memcpy(buf_src + offs[i], buf_lin + bs + p, lens[i]);
		segs[i] = (struct vq_seg){ (u64)(uintptr_t)(buf_src + offs[i]), lens[i], false };
		p += lens[i];
	}
	len = 0;
	st = blk_req(b, VIRTIO_BLK_T_OUT, a + 24 * spb, segs, 3, &len);
	memset(buf_chk, 0xdd, two);
	int rs = blk_rw_linear(b, VIRTIO_BLK_T_IN, a + 24 * spb, buf_chk, two, NULL);
	ALIGN_LINE("unaligned-buffers", a + 24 * spb, two, " rstatus=%s match=%u fnv1a64=%016llx", result_str(rs, t2, sizeof(t2)),
		   !memcmp(buf_chk, buf_lin + bs, two) ? 1 : 0, (unsigned long long)fnv1a64(buf_lin + bs, two, FNV1A64_INIT));
	/* the refused writes changed nothing */
	memset(buf_dst, 0xee, bs);
	len = 0;
	st = blk_rw_linear(b, VIRTIO_BLK_T_IN, a, buf_dst, bs, &len);
	ALIGN_LINE("read-block-again", a, bs, " match=%u fnv1a64=%016llx", !memcmp(buf_dst, buf_lin, bs) ? 1 : 0,
		   (unsigned long long)fnv1a64(buf_lin, bs, FNV1A64_INIT));
#undef ALIGN_LINE
}

/* ---- one disk ---- */

static void blk_disk(struct blk *b)
{
	char tmp[8];
	if (!virtio_pci_setup(&b->d)) {
		probe("virtio-blk error=%s disk=%u", b->d.err, b->index);
		return;
	}
	char label[16];
	snprintf(label, sizeof(label), "disk=%u", b->index);
	virtio_pci_report(&b->d, "virtio-blk-pci", label);
	b->want_indirect = cmdline_u64("probe.blk.indirect", 1) != 0;
	b->want_event_idx = cmdline_u64("probe.blk.eventidx", 1) != 0;
	if (!b->reqs)
		b->reqs = dma_alloc(sizeof(struct blk_req) * MAX_QD, 4096);
	bool ok = b->reqs && blk_init(b);
	u16 qmax = virtio_queue_max(&b->d, 0);
	probe("virtio-blk disk=%u init=%s offered=0x%llx negotiated=0x%llx version_1=%u indirect=%u event_idx=%u queue_size=%u"
	      " queue_max=%u num_queues=%u status=0x%x msix_mode=%u",
	      b->index, ok ? "ok" : b->d.err ? b->d.err : "failed", (unsigned long long)b->d.offered,
	      (unsigned long long)b->d.negotiated, has(b, VIRTIO_F_VERSION_1), has(b, VIRTIO_F_INDIRECT_DESC),
	      has(b, VIRTIO_F_EVENT_IDX), b->qsize, qmax, b->d.num_queues, virtio_status(&b->d), b->d.msix_mode);
	if (!ok)
		return;
	blk_read_config(b);
	u64 wsector = cmdline_u64("probe.blk.wsector", 2048);
	bool room = b->capacity >= wsector + 6400;
	test_irq(b, 0);
	test_id(b);
	test_hashes(b);
	if (!room)
		probe("virtio-blk error=disk-too-small disk=%u capacity=%llu need=%llu", b->index,
		      (unsigned long long)b->capacity, (unsigned long long)(wsector + 6400));
	else if (b->ro)
		test_ro(b, wsector);
	else
		test_rw(b, wsector);
	test_flush(b);
	if (room) {
		test_discard_wz(b, wsector);
		test_requests(b, wsector);
		if (b->blk_size > 512 && b->blk_size <= 65536 && !(b->blk_size & (b->blk_size - 1)))
			test_align(b, wsector);
		if (cmdline_u64("probe.blk.bad", 1))
			test_bad(b, wsector);
	}
	/* still working after all that? */
	int st = blk_rw_linear(b, VIRTIO_BLK_T_IN, 0, buf_dst, 4096, NULL);
	probe("virtio-blk-done disk=%u requests=%llu kicks=%llu kicks_suppressed=%llu final_read=%s device_status=0x%x",
	      b->index, (unsigned long long)b->requests, (unsigned long long)b->q.kicks,
	      (unsigned long long)b->q.kicks_suppressed, result_str(st, tmp, sizeof(tmp)), virtio_status(&b->d));
	/* §3.3 device cleanup: leave it reset */
	virtio_reset(&b->d);
}

static bool alloc_scratch(void)
{
	if (!S)
		S = dma_alloc(sizeof(*S), 4096);
	return S != NULL;
}

static bool alloc_bufs(void)
{
	if (!buf_src) {
		buf_src = dma_alloc(BUF_BYTES, 4096);
		buf_dst = dma_alloc(BUF_BYTES, 4096);
		buf_lin = dma_alloc(BUF_BYTES, 4096);
		buf_chk = dma_alloc(BUF_BYTES, 4096);
	}
	return alloc_scratch() && buf_src && buf_dst && buf_lin && buf_chk;
}

static u32 find_disks(void)
{
	struct virtio_dev found[MAX_DISKS];
	u32 n = virtio_pci_find(VIRTIO_ID_BLOCK, found, MAX_DISKS);
	for (u32 i = 0; i < n; i++) {
		memset(&disks[i], 0, sizeof(disks[i]));
		disks[i].d = found[i];
		disks[i].index = i;
	}
	return n;
}

static void blk_test(void)
{
	u32 n = find_disks();
	probe("virtio-blk-count=%u cfg=%s ecam=0x%llx", n, virtio_pci_ecam() ? "ecam" : "cf8",
	      (unsigned long long)virtio_pci_ecam());
	if (!alloc_bufs()) {
		probe("virtio-blk error=out-of-memory");
		return;
	}
	for (u32 i = 0; i < n; i++)
		blk_disk(&disks[i]);
}
PROBE_TEST("blk", blk_test);

/* ---- throughput ---- */

static u32 parse_size(const char *s)
{
	u64 v = 0;
	size_t l = strlen(s);
	char tmp[24];
	if (!l || l >= sizeof(tmp))
		return 0;
	memcpy(tmp, s, l + 1);
	u64 mul = 1;
	if (tmp[l - 1] == 'k' || tmp[l - 1] == 'K')
		mul = 1024;
	else if (tmp[l - 1] == 'm' || tmp[l - 1] == 'M')
		mul = 1024 * 1024;
	if (mul != 1)
		tmp[l - 1] = 0;
	if (!parse_u64(tmp, &v))
		return 0;
	return (u32)(v * mul);
}

/* Calls fn(item) for each comma-separated item of the option (or of def). */
static void each_item(const char *key, const char *def, void (*fn)(const char *, void *), void *arg)
{
	static char v[4][128];
	static int depth;
	char *buf = v[depth++ & 3];
	if (!cmdline_get(key, buf, 128))
		memcpy(buf, def, strlen(def) + 1);
	comma_list_each(buf, fn, arg);
	depth--;
}

struct bench {
	struct blk *b;
	const char *mode;
	u32 qd;
	u8 *mem;
	u64 mem_bytes;
	u64 khz;
};

static void bench_run(struct bench *bc, u32 bs)
{
	struct blk *b = bc->b;
	bool write = !strcmp(bc->mode, "seqwrite") || !strcmp(bc->mode, "randwrite");
	bool rnd = !strncmp(bc->mode, "rand", 4);
	u32 qd = bc->qd;
	if (!bs || bs % 512 || (u64)bs * qd > bc->mem_bytes || qd > MAX_QD || b->capacity * 512 < bs) {
		probe("virtio-blk-bench error=bad-parameters mode=%s bs=%u qd=%u", bc->mode, bs, qd);
		return;
	}
	u64 total = cmdline_u64("probe.blk.size", 256) << 20;
	u64 nreq = total / bs;
	u64 units = b->capacity * 512 / bs;	/* bs-sized slots on the disk */
	struct vq_seg (*segs)[MAX_SEGS + 2] = S->bench;
	u16 *nsegs = S->bench_n;
	/* fixed per-slot chains: header, data (split by size_max), status */
	for (u32 i = 0; i < qd; i++) {
		struct blk_req *r = &b->reqs[i];
		r->type = write ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN;
		r->reserved = 0;
		segs[i][0] = (struct vq_seg){ (u64)(uintptr_t)r, 16, false };
		u16 n = split(b, (u64)(uintptr_t)(bc->mem + (u64)i * bs), bs, !write, &segs[i][1], MAX_SEGS);
		segs[i][1 + n] = (struct vq_seg){ (u64)(uintptr_t)&r->status, 1, true };
		nsegs[i] = n + 2;
	}
	u64 seq = 0, x = 0x2545f4914f6cdd1dull;
	u64 submitted = 0, completed = 0, errors = 0, inflight_max = 0;
	u64 kicks0 = b->q.kicks, supp0 = b->q.kicks_suppressed;
#define NEXT_SECTOR() (rnd ? (x ^= x << 13, x ^= x >> 7, x ^= x << 17, (x % units) * (bs / 512)) \
			   : ((seq++ % units) * (bs / 512)))
	u64 t0 = rdtsc();
	for (u32 i = 0; i < qd && submitted < nreq; i++) {
		b->reqs[i].sector = NEXT_SECTOR();
		b->reqs[i].status = STATUS_POISON;
		if (vq_add(&b->q, segs[i], nsegs[i], &b->reqs[i], true) < 0)
			break;
		submitted++;
	}
	inflight_max = submitted;
	vq_kick(&b->q, false);
	u64 idle_deadline = tsc_deadline_us(10000000);
	while (completed < submitted) {
		void *tok;
		bool added = false;
		while (vq_pop(&b->q, &tok, NULL)) {
			struct blk_req *r = tok;
			completed++;
			if (!r || r->status != VIRTIO_BLK_S_OK)
				errors++;
			if (r && submitted < nreq) {
				u32 i = (u32)(r - b->reqs);
				r->sector = NEXT_SECTOR();
				r->status = STATUS_POISON;
				if (vq_add(&b->q, segs[i], nsegs[i], r, true) >= 0) {
					submitted++;
					added = true;
				}
			}
		}
		if (submitted - completed > inflight_max)
			inflight_max = submitted - completed;
		if (added) {
			vq_kick(&b->q, false);
			idle_deadline = tsc_deadline_us(10000000);
		} else if (!tsc_before(idle_deadline)) {
			break;
		}
	}
	u64 cyc = rdtsc() - t0;
#undef NEXT_SECTOR
	u64 us = cyc * 1000 / bc->khz;
	if (!us)
		us = 1;
	u64 bytes = completed * bs;
	u64 mbs10 = bytes * 10 / us;	/* 10^6 bytes per second, x10 */
	probe("virtio-blk-bench disk=%u mode=%s bs=%u qd=%u inflight_max=%llu requests=%llu bytes=%llu errors=%llu timed_out=%u us=%llu mb_s=%llu.%llu"
	      " iops=%llu kicks=%llu kicks_suppressed=%llu indirect=%u event_idx=%u tsc_khz=%llu",
	      b->index, bc->mode, bs, qd, (unsigned long long)inflight_max, (unsigned long long)completed,
	      (unsigned long long)bytes,
	      (unsigned long long)errors, completed < nreq ? 1 : 0, (unsigned long long)us,
	      (unsigned long long)(mbs10 / 10), (unsigned long long)(mbs10 % 10),
	      (unsigned long long)(completed * 1000000 / us), (unsigned long long)(b->q.kicks - kicks0),
	      (unsigned long long)(b->q.kicks_suppressed - supp0), b->q.indirect ? 1 : 0, b->q.event_idx ? 1 : 0,
	      (unsigned long long)bc->khz);
	if (completed < submitted) {	/* stuck requests: start over */
		blk_init(b);
	}
}

static void bench_bs(const char *item, void *arg)
{
	bench_run(arg, parse_size(item));
}

static void bench_qd(const char *item, void *arg)
{
	struct bench *bc = arg;
	u64 qd;
	if (!parse_u64(item, &qd) || !qd || qd > MAX_QD) {
		probe("virtio-blk-bench error=bad-qd qd=%s", item);
		return;
	}
	bc->qd = (u32)qd;
	each_item("probe.blk.bs", strncmp(bc->mode, "rand", 4) ? "1m" : "4k", bench_bs, bc);
}

static void bench_mode(const char *item, void *arg)
{
	struct bench *bc = arg;
	if (strcmp(item, "seqread") && strcmp(item, "seqwrite") && strcmp(item, "randread") && strcmp(item, "randwrite")) {
		probe("virtio-blk-bench error=bad-mode mode=%s", item);
		return;
	}
	if (bc->b->ro && (!strcmp(item, "seqwrite") || !strcmp(item, "randwrite"))) {
		probe("virtio-blk-bench error=read-only mode=%s", item);
		return;
	}
	bc->mode = item;
	each_item("probe.blk.qd", "1", bench_qd, bc);
}

static void blkbench_test(void)
{
	u32 n = find_disks();
	u64 idx = cmdline_u64("probe.blk.disk", 0);
	if (idx >= n) {
		probe("virtio-blk-bench error=no-disk disk=%llu count=%u", (unsigned long long)idx, n);
		return;
	}
	struct blk *b = &disks[idx];
	if (!alloc_scratch()) {
		probe("virtio-blk-bench error=out-of-memory");
		return;
	}
	if (!virtio_pci_setup(&b->d)) {
		probe("virtio-blk-bench error=%s", b->d.err);
		return;
	}
	b->want_indirect = cmdline_u64("probe.blk.indirect", 1) != 0;
	b->want_event_idx = cmdline_u64("probe.blk.eventidx", 1) != 0;
	b->reqs = dma_alloc(sizeof(struct blk_req) * MAX_QD, 4096);
	if (!b->reqs || !blk_init(b)) {
		probe("virtio-blk-bench error=%s", b->d.err ? b->d.err : "out-of-memory");
		return;
	}
	u8 gen;
	do {
		gen = virtio_generation(&b->d);
		b->capacity = vdevcfg_read64(&b->d, BLK_CFG_CAPACITY);
		b->size_max = has(b, VIRTIO_BLK_F_SIZE_MAX) ? vdevcfg_read32(&b->d, BLK_CFG_SIZE_MAX) : 0;
		b->seg_max = has(b, VIRTIO_BLK_F_SEG_MAX) ? vdevcfg_read32(&b->d, BLK_CFG_SEG_MAX) : 1;
	} while (gen != virtio_generation(&b->d));
	b->ro = has(b, VIRTIO_BLK_F_RO);
	/* buffers: as much as qd x bs needs, at most 64 MiB or what is free */
	u64 want = 64ull << 20, avail = dma_free_bytes();
	if (want > avail)
		want = avail & ~0xfffffull;
	struct bench bc = { .b = b, .mem = dma_alloc(want, 1 << 20), .mem_bytes = want };
	bc.khz = cmdline_u64("probe.blk.tsc_khz", tsc_khz());
	if (!bc.mem) {
		probe("virtio-blk-bench error=out-of-memory");
		return;
	}
	/* something other than zeroes for writes, 8 bytes at a time */
	for (u64 i = 0; i < want / 8; i++)
		((u64 *)bc.mem)[i] = i * 0x9e3779b97f4a7c15ull;
	each_item("probe.blk.bench", "seqread", bench_mode, &bc);
	virtio_reset(&b->d);
}
PROBE_TEST("blkbench", blkbench_test);
