/*
 * virtio-console driver test (virtio 1.2 §5.3), probe.test=console: the first console device
 * (1af4:1043), driven as a single-port console without VIRTIO_CONSOLE_F_MULTIPORT (port 0:
 * receiveq 0, transmitq 1, §5.3.2), as Linux's hvc0 is. What the host sees on the console, in
 * order:
 *
 *   "hvc0 emerg\r\n"   one character at a time through emerg_wr (§5.3.5), if EMERG_WRITE is offered
 *   "hvc0 hello\r\n"   one transmit request
 *   65536 bytes        a printable pattern (lines of 63 letters and '\n'): 8 requests of 4 KiB,
 *                      then one request of 4 x 8 KiB buffers at odd addresses (a chain, or an
 *                      indirect table when negotiated); its FNV-1a 64 is in the virtio-console-tx line
 *   "hvc0 ready\r\n"   receive buffers are posted: the host may type now
 *   <echo>             with probe.console.echo=N: the first N bytes of host input, written back
 *   "hvc0 bye\r\n"
 *
 * Options: probe.console.echo=N (bytes of host input to wait for and echo, default 0, at most
 * 65536), probe.console.rxbuf=N (bytes per receive buffer, default 256, 1..4096),
 * probe.console.timeout_ms=N (wait for the input, default 10000), probe.console.indirect=0|1 and
 * probe.console.eventidx=0|1 (as for virtio-blk). Lines: README.md, "virtio-console".
 */
#include "tests.h"
#include "cmdline.h"
#include "dmamem.h"
#include "virtio_pci.h"
#include "virtqueue.h"

#define VIRTIO_ID_CONSOLE		3	/* §5: device id */
/* §5.3.3 feature bits */
#define VIRTIO_CONSOLE_F_SIZE		0
#define VIRTIO_CONSOLE_F_MULTIPORT	1
#define VIRTIO_CONSOLE_F_EMERG_WRITE	2
/* §5.3.4 struct virtio_console_config: le16 cols, le16 rows, le32 max_nr_ports, le32 emerg_wr */
#define CON_CFG_COLS			0
#define CON_CFG_ROWS			2
#define CON_CFG_MAX_NR_PORTS		4
#define CON_CFG_EMERG_WR		8
/* §5.3.2: port 0's queues without MULTIPORT */
#define CON_RXQ				0
#define CON_TXQ				1

#define CON_QSIZE			64
#define CON_RX_MAX			32	/* receive buffers posted at once */
#define CON_PATTERN_BYTES		65536
#define CON_IN_MAX			65536

static struct virtio_dev dev;
static struct virtq rxq, txq;
static u8 *rxbufs, *txbuf, *inbuf;
static u32 rxbuf_len, nrx;
static u64 tx_requests, tx_bytes;

static bool has(int bit) { return dev.negotiated & BIT64(bit); }
static bool offered(int bit) { return dev.offered & BIT64(bit); }

/* §5.3.5: a 32-bit write of one character to emerg_wr (device configuration, memory or I/O BAR). */
static void emerg_putc(char c)
{
	if (dev.devcfg.io)
		outl((u16)(dev.devcfg.addr + CON_CFG_EMERG_WR), (u8)c);
	else
		mmio_write32(dev.devcfg.addr + CON_CFG_EMERG_WR, (u8)c);
}

static bool con_init(void)
{
	u64 wanted = BIT64(VIRTIO_CONSOLE_F_SIZE) | BIT64(VIRTIO_CONSOLE_F_EMERG_WRITE);	/* never MULTIPORT */
	if (cmdline_u64("probe.console.indirect", 1))
		wanted |= BIT64(VIRTIO_F_INDIRECT_DESC);
	if (cmdline_u64("probe.console.eventidx", 1))
		wanted |= BIT64(VIRTIO_F_EVENT_IDX);
	if (!virtio_negotiate(&dev, wanted))
		return false;
	/* §5.3.5: emerg_wr works before the queues exist ("without initializing virtio queues") */
	if (has(VIRTIO_CONSOLE_F_EMERG_WRITE)) {
		const char *m = "hvc0 emerg\r\n";
		while (*m)
			emerg_putc(*m++);
	}
	if (!virtio_queue_setup(&dev, CON_RXQ, &rxq, CON_QSIZE, 8) || !virtio_queue_setup(&dev, CON_TXQ, &txq, CON_QSIZE, 8))
		return false;
	virtio_driver_ok(&dev);
	vq_interrupts(&rxq, false);	/* we poll */
	vq_interrupts(&txq, false);
	return true;
}

/* Wait until the transmit request with this token is used (1 s). */
static bool tx_wait(void *token, u32 *len)
{
	u64 deadline = tsc_deadline_us(1000000);
	while (tsc_before(deadline)) {
		void *t;
		u32 l;
		if (vq_pop(&txq, &t, &l) && t == token) {
			if (len)
				*len = l;
			return true;
		}
		cpu_relax();
	}
	return false;
}

/* One transmit request of n device-readable segments; waits for it. */
static bool tx_segs(const struct vq_seg *segs, u16 n, u32 *used_len)
{
	static int token;
	if (vq_add(&txq, segs, n, &token, true) < 0)
		return false;
	vq_kick(&txq, false);
	tx_requests++;
	for (u16 i = 0; i < n; i++)
		tx_bytes += segs[i].len;
	return tx_wait(&token, used_len);
}

static bool tx_text(const char *s, u32 *used_len)
{
	u32 n = (u32)strlen(s);
	memcpy(txbuf, s, n);
	struct vq_seg seg = { (u64)(uintptr_t)txbuf, n, false };
	return tx_segs(&seg, 1, used_len);
}

/* The pattern: lines of 63 lower-case letters and '\n' (printable, so it survives a text console). */
static void make_pattern(u8 *p, u32 n)
{
	u64 x = 0x9e3779b97f4a7c15ull;
	for (u32 i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		p[i] = (i & 63) == 63 ? '\n' : (u8)('a' + (x >> 33) % 26);
	}
}

static void tx_pattern(void)
{
	u8 *pat = txbuf + 4096;	/* linear copy, for the hash */
	make_pattern(pat, CON_PATTERN_BYTES);
	/* first half: 8 requests of 4 KiB in flight together */
	static int tokens[8];
	u32 ok = 0, used_max = 0, requests = 0, segs = 0;
	for (u32 i = 0; i < 8; i++) {
		struct vq_seg s = { (u64)(uintptr_t)(pat + i * 4096), 4096, false };
		if (vq_add(&txq, &s, 1, &tokens[i], true) >= 0) {
			requests++;
			segs++;
			tx_bytes += 4096;
		}
	}
	vq_kick(&txq, false);
	tx_requests += requests;
	u64 deadline = tsc_deadline_us(1000000);
	while (ok < requests && tsc_before(deadline)) {
		void *t;
		u32 l;
		if (vq_pop(&txq, &t, &l)) {
			ok++;
			if (l > used_max)
				used_max = l;
		} else {
			cpu_relax();
		}
	}
	/* second half: one request of 4 x 8 KiB buffers at odd addresses */
	u8 *far = txbuf + 4096 + CON_PATTERN_BYTES + 4096;
	struct vq_seg four[4];
	for (u32 i = 0; i < 4; i++) {
		u8 *at = far + 1 + i * (8192 + 4099);
		memcpy(at, pat + 32768 + i * 8192, 8192);
		four[i] = (struct vq_seg){ (u64)(uintptr_t)at, 8192, false };
	}
	u32 l = 0;
	bool chain = tx_segs(four, 4, &l);
	requests++;
	segs += 4;
	if (chain) {
		ok++;
		if (l > used_max)
			used_max = l;
	}
	probe("virtio-console-tx case=pattern bytes=%u requests=%u segs=%u completed=%u used_len_max=%u indirect=%u fnv1a64=%016llx",
	      CON_PATTERN_BYTES, requests, segs, ok, used_max, txq.indirect ? 1 : 0,
	      (unsigned long long)fnv1a64(pat, CON_PATTERN_BYTES, FNV1A64_INIT));
}

/* Post receive buffer i (device-writable, §5.3.6.1). */
static bool rx_post(u32 i)
{
	struct vq_seg s = { (u64)(uintptr_t)(rxbufs + (u64)i * rxbuf_len), rxbuf_len, true };
	return vq_add(&rxq, &s, 1, (void *)(uintptr_t)(i + 1), false) >= 0;
}

/* Read `want` bytes of host input into inbuf, re-posting each buffer once consumed. */
static void rx_echo(u32 want)
{
	u64 timeout_us = cmdline_u64("probe.console.timeout_ms", 10000) * 1000;
	u64 deadline = tsc_deadline_us(timeout_us);
	u32 got = 0, buffers = 0, max_len = 0, empty = 0, bad_token = 0;
	while (got < want && tsc_before(deadline)) {
		void *t;
		u32 l;
		if (!vq_pop(&rxq, &t, &l)) {
			cpu_relax();
			continue;
		}
		u32 i = (u32)(uintptr_t)t;
		if (i < 1 || i > nrx) {
			bad_token++;
			continue;
		}
		i--;
		buffers++;
		if (!l)
			empty++;
		if (l > rxbuf_len)	/* §5.3.6.1 / §2.7.8: never more than the buffer */
			l = rxbuf_len;
		if (l > max_len)
			max_len = l;
		u32 take = l < CON_IN_MAX - got ? l : CON_IN_MAX - got;
		memcpy(inbuf + got, rxbufs + (u64)i * rxbuf_len, take);
		got += take;
		rx_post(i);
		vq_kick(&rxq, false);
		deadline = tsc_deadline_us(timeout_us);
	}
	u32 shown = got < 64 ? got : 64;
	char line[400];
	int k = snprintf(line, sizeof(line),
			 "PROBE virtio-console-rx bytes=%u expected=%u result=%s buffers=%u max_len=%u empty=%u bad_token=%u fnv1a64=%016llx text=",
			 got, want, got >= want ? "ok" : "timeout", buffers, max_len, empty, bad_token,
			 (unsigned long long)fnv1a64(inbuf, got < want ? got : want, FNV1A64_INIT));
	k += fmt_quoted(line + k, sizeof(line) - k - 2, (const char *)inbuf, shown);
	line[k++] = '\r';
	line[k++] = '\n';
	serial_write(line, (size_t)k);
	/* echo what was asked for (what came), in requests of up to 4 KiB */
	u32 n = got < want ? got : want, done = 0, requests = 0;
	bool ok = true;
	while (done < n && ok) {
		u32 c = n - done < 4096 ? n - done : 4096;
		memcpy(txbuf, inbuf + done, c);
		struct vq_seg s = { (u64)(uintptr_t)txbuf, c, false };
		ok = tx_segs(&s, 1, NULL);
		done += c;
		requests++;
	}
	probe("virtio-console-echo bytes=%u requests=%u result=%s", done, requests, ok ? "completed" : "no-completion");
}

static void console_test(void)
{
	u32 n = virtio_pci_find(VIRTIO_ID_CONSOLE, &dev, 1);
	probe("virtio-console-count=%u cfg=%s ecam=0x%llx", n, virtio_pci_ecam() ? "ecam" : "cf8",
	      (unsigned long long)virtio_pci_ecam());
	if (!n)
		return;
	if (!virtio_pci_setup(&dev)) {
		probe("virtio-console error=%s", dev.err);
		return;
	}
	virtio_pci_report(&dev, "virtio-console-pci", "index=0");
	rxbuf_len = (u32)cmdline_u64("probe.console.rxbuf", 256);
	if (rxbuf_len < 1 || rxbuf_len > 4096)
		rxbuf_len = 256;
	u32 echo = (u32)cmdline_u64("probe.console.echo", 0);
	if (echo > CON_IN_MAX)
		echo = CON_IN_MAX;
	if (!rxbufs) {
		rxbufs = dma_alloc((u64)CON_RX_MAX * 4096, 4096);
		txbuf = dma_alloc(4096 + CON_PATTERN_BYTES + 4096 + 4 * (8192 + 4099) + 4096, 4096);
		inbuf = dma_alloc(CON_IN_MAX, 4096);
	}
	if (!rxbufs || !txbuf || !inbuf) {
		probe("virtio-console error=out-of-memory");
		return;
	}
	bool ok = con_init();
	probe("virtio-console init=%s offered=0x%llx negotiated=0x%llx multiport_offered=%u emerg_write=%u size=%u num_queues=%u"
	      " rx_queue_size=%u tx_queue_size=%u indirect=%u event_idx=%u status=0x%x",
	      ok ? "ok" : dev.err ? dev.err : "failed", (unsigned long long)dev.offered, (unsigned long long)dev.negotiated,
	      offered(VIRTIO_CONSOLE_F_MULTIPORT), has(VIRTIO_CONSOLE_F_EMERG_WRITE), has(VIRTIO_CONSOLE_F_SIZE),
	      dev.num_queues, rxq.size, txq.size, has(VIRTIO_F_INDIRECT_DESC), has(VIRTIO_F_EVENT_IDX), virtio_status(&dev));
	if (!ok)
		return;
	/* §5.3.4: cols/rows valid with SIZE; max_nr_ports with MULTIPORT; emerg_wr is write-only */
	u16 cols = 0, rows = 0;
	u32 ports = 0;
	u8 gen;
	do {
		gen = virtio_generation(&dev);
		if (offered(VIRTIO_CONSOLE_F_SIZE)) {
			cols = vdevcfg_read16(&dev, CON_CFG_COLS);
			rows = vdevcfg_read16(&dev, CON_CFG_ROWS);
		}
		if (offered(VIRTIO_CONSOLE_F_MULTIPORT))
			ports = vdevcfg_read32(&dev, CON_CFG_MAX_NR_PORTS);
	} while (gen != virtio_generation(&dev));
	probe("virtio-console-config cols=%u rows=%u max_nr_ports=%u device_cfg_len=%u", cols, rows, ports, dev.devcfg.len);

	/* receive buffers first, so host input typed any time after "hvc0 ready" has somewhere to go */
	nrx = rxq.size < CON_RX_MAX ? rxq.size : CON_RX_MAX;
	u32 posted = 0;
	for (u32 i = 0; i < nrx; i++)
		posted += rx_post(i);
	vq_kick(&rxq, false);

	u32 len = 0;
	bool sent = tx_text("hvc0 hello\r\n", &len);
	probe("virtio-console-tx case=hello bytes=12 result=%s used_len=%u", sent ? "completed" : "no-completion", len);
	tx_pattern();
	sent = tx_text("hvc0 ready\r\n", &len);
	probe("virtio-console-ready rx_buffers=%u rxbuf=%u echo=%u result=%s", posted, rxbuf_len, echo,
	      sent ? "completed" : "no-completion");
	if (echo)
		rx_echo(echo);
	sent = tx_text("hvc0 bye\r\n", &len);
	probe("virtio-console-done tx_requests=%llu tx_bytes=%llu bye=%s rx_kicks=%llu tx_kicks=%llu tx_kicks_suppressed=%llu device_status=0x%x",
	      (unsigned long long)tx_requests, (unsigned long long)tx_bytes, sent ? "completed" : "no-completion",
	      (unsigned long long)rxq.kicks, (unsigned long long)txq.kicks, (unsigned long long)txq.kicks_suppressed,
	      virtio_status(&dev));
	virtio_reset(&dev);	/* §3.3: leave it reset */
}
PROBE_TEST("console", console_test);
