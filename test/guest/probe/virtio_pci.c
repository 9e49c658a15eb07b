/* The modern virtio-pci transport (virtio 1.2 §4.1) and device initialisation (§3.1): see
 * virtio_pci.h. */
#include "virtio_pci.h"
#include "virtqueue.h"
#include "pci.h"
#include "acpi.h"
#include "cmdline.h"

#define PCI_CAP_ID_VNDR		0x09	/* PCI 3.0 Appendix H */
#define PCI_CAP_ID_MSIX		0x11
#define MSIX_CTRL_ENABLE	0x8000	/* PCI 3.0 §6.8.2.3 Message Control */
#define MSIX_CTRL_MASKALL	0x4000
#define PCI_STATUS_INTERRUPT	0x08	/* PCI 3.0 §6.2.3 Status register bit 3 */
#define PCI_COMMAND_INTX_DISABLE 0x400

#define BAR_WINDOW_END		0xfec00000ull	/* IOAPIC */

/* ---- configuration space: ECAM (PCI Express 4.0 §7.2.2) or mechanism #1 ---- */

static u64 ecam_base;		/* bus 0 of segment 0; 0: use ports 0xcf8/0xcfc */
static u64 ecam_size;
static bool ecam_probed;

/*
 * QEMU microvm (pcie=on) has no MCFG: its DSDT gives the ECAM base as PCI0._CBA (ACPI 6.5
 * §6.5.6), "Method (_CBA) { Return (0xE0000000) }" or a Name. Find the "_CBA" NameSeg and the
 * integer after it (AML: MethodOp PkgLength NameString MethodFlags ReturnOp(0xA4) Integer).
 */
static void ecam_from_dsdt(void)
{
	u64 t = acpi_dsdt();
	if (!t)
		return;
	u32 len = rd32(t + 4);
	for (u64 p = t + 36; p + 16 <= t + len; p++) {
		if (memcmp((const void *)p, "_CBA", 4))
			continue;
		u64 q = p + 4;
		if (rd8(q) != 0x0a && rd8(q) != 0x0b && rd8(q) != 0x0c && rd8(q) != 0x0e)
			q++;			/* MethodFlags */
		if (rd8(q) == 0xa4)
			q++;			/* ReturnOp */
		u8 prefix = rd8(q);
		u64 v = prefix == 0x0c ? rd32(q + 1) : prefix == 0x0e ? rd64(q + 1) : 0;
		if (v && v < (1ull << 32)) {
			ecam_base = v;
			ecam_size = 256ull << 20;	/* buses 0..255 at most; only bus 0 is used */
		}
		return;
	}
}

static void ecam_probe(void)
{
	if (ecam_probed)
		return;
	ecam_probed = true;
	char m[8] = "auto";
	cmdline_get("probe.virtio.cfg", m, sizeof(m));
	if (!strcmp(m, "cf8"))
		return;
	/* ACPI MCFG (PCI Firmware 3.2 §4.1.2): 36-byte header, 8 reserved, then 16-byte entries
	 * { u64 base; u16 segment; u8 start_bus; u8 end_bus; u32 reserved; } */
	u64 t = acpi_find_table("MCFG");
	if (!t) {
		ecam_from_dsdt();
		return;
	}
	u32 len = rd32(t + 4);
	for (u64 e = t + 44; e + 16 <= t + len; e += 16) {
		if (rd16(e + 8) != 0 || rd8(e + 10) != 0)
			continue;
		u64 base = rd64(e);
		if (base >= (1ull << 32))	/* not mapped by the probe's page tables */
			continue;
		ecam_base = base;
		ecam_size = ((u64)rd8(e + 11) + 1) << 20;
		return;
	}
}

u64 virtio_pci_ecam(void)
{
	ecam_probe();
	return ecam_base;
}

static inline u64 ecam_addr(const struct virtio_dev *d, u16 off) { return d->ecam + (off & 0xfff); }

u8 vcfg_read8(const struct virtio_dev *d, u16 off)
{
	return d->ecam ? mmio_read8(ecam_addr(d, off)) : pci_read8(0, d->dev, d->fn, off);
}
u16 vcfg_read16(const struct virtio_dev *d, u16 off)
{
	return d->ecam ? mmio_read16(ecam_addr(d, off)) : pci_read16(0, d->dev, d->fn, off);
}
u32 vcfg_read32(const struct virtio_dev *d, u16 off)
{
	return d->ecam ? mmio_read32(ecam_addr(d, off)) : pci_read32(0, d->dev, d->fn, off);
}
void vcfg_write16(const struct virtio_dev *d, u16 off, u16 v)
{
	if (d->ecam)
		mmio_write16(ecam_addr(d, off), v);
	else
		pci_write16(0, d->dev, d->fn, off, v);
}
void vcfg_write32(const struct virtio_dev *d, u16 off, u32 v)
{
	if (d->ecam)
		mmio_write32(ecam_addr(d, off), v);
	else
		pci_write32(0, d->dev, d->fn, off, v);
}

/* ---- discovery (§4.1.2) ---- */

static bool virtio_id_matches(u16 device, u16 type)
{
	/* §4.1.2.2: 0x1040 + id, or the transitional id for the listed types */
	static const u16 transitional[] = { 0, 0x1000, 0x1001, 0, 0x1005 };	/* by virtio id */
	if (device == VIRTIO_PCI_MODERN_BASE + type)
		return true;
	return type < sizeof(transitional) / sizeof(transitional[0]) && transitional[type] &&
	       device == transitional[type];
}

u32 virtio_pci_find(u16 type, struct virtio_dev *out, u32 max)
{
	ecam_probe();
	u32 n = 0;
	struct virtio_dev probe_dev;
	for (u8 dev = 0; dev < 32 && n < max; dev++) {
		for (u8 fn = 0; fn < 8 && n < max; fn++) {
			memset(&probe_dev, 0, sizeof(probe_dev));
			probe_dev.dev = dev;
			probe_dev.fn = fn;
			probe_dev.ecam = ecam_base ? ecam_base + ((u64)dev << 15 | (u64)fn << 12) : 0;
			u32 id = vcfg_read32(&probe_dev, PCI_VENDOR_ID);
			if ((u16)id == 0xffff || (u16)id == 0) {
				if (fn == 0)
					break;
				continue;
			}
			if (fn == 0 && !(vcfg_read8(&probe_dev, PCI_HEADER_TYPE) & 0x80))
				fn = 8;	/* single-function device: this is the last function */
			if ((u16)id != VIRTIO_PCI_VENDOR || !virtio_id_matches((u16)(id >> 16), type))
				continue;
			struct virtio_dev *d = &out[n++];
			*d = probe_dev;
			d->vendor = (u16)id;
			d->device = (u16)(id >> 16);
			d->revision = (u8)vcfg_read32(d, PCI_CLASS_REVISION);
			u32 ss = vcfg_read32(d, PCI_SUBSYSTEM_VENDOR_ID);
			d->subsys_vendor = (u16)ss;
			d->subsys_id = (u16)(ss >> 16);
			d->type = type;
			char v[8] = "0";
			cmdline_get("probe.virtio.msix", v, sizeof(v));
			d->msix_mode = (u8)(v[0] - '0') <= 2 ? (u8)(v[0] - '0') : 0;
		}
	}
	return n;
}

/* ---- BARs ---- */

struct range {
	u64 start, end;
};
static struct range busy[96];
static u32 nbusy;
static bool busy_scanned;
static u64 bar_next;

static void busy_add(u64 start, u64 size)
{
	if (nbusy < sizeof(busy) / sizeof(busy[0]) && size)
		busy[nbusy++] = (struct range){ start, start + size };
}

/* The memory BARs every function on bus 0 already decodes, and the ECAM window. */
static void busy_scan(void)
{
	if (busy_scanned)
		return;
	busy_scanned = true;
	busy_add(ecam_base, ecam_size);
	struct virtio_dev f;
	for (u8 dev = 0; dev < 32; dev++) {
		for (u8 fn = 0; fn < 8; fn++) {
			memset(&f, 0, sizeof(f));
			f.dev = dev;
			f.fn = fn;
			f.ecam = ecam_base ? ecam_base + ((u64)dev << 15 | (u64)fn << 12) : 0;
			u32 id = vcfg_read32(&f, PCI_VENDOR_ID);
			if ((u16)id == 0xffff || (u16)id == 0) {
				if (fn == 0)
					break;
				continue;
			}
			u8 ht = vcfg_read8(&f, PCI_HEADER_TYPE);
			u32 nbars = (ht & 0x7f) == 0 ? 6 : (ht & 0x7f) == 1 ? 2 : 0;
			u16 cmd = vcfg_read16(&f, PCI_COMMAND);
			for (u32 i = 0; i < nbars; i++) {
				u16 off = PCI_BAR0 + 4 * i;
				u32 lo = vcfg_read32(&f, off);
				if (lo & 1)
					continue;
				bool is64 = ((lo >> 1) & 3) == 2 && i + 1 < nbars;
				u32 hi = is64 ? vcfg_read32(&f, off + 4) : 0;
				if (is64)
					i++;
				if (!(lo & ~0xfu) || hi)
					continue;	/* unassigned, or above 4 GiB */
				/* size it (low half only: a BAR below 4 GiB is smaller than 4 GiB) with
				 * decoding off, as firmware does */
				vcfg_write16(&f, PCI_COMMAND, cmd & ~(PCI_COMMAND_MEMORY | PCI_COMMAND_IO));
				vcfg_write32(&f, off, 0xffffffffu);
				u32 mask = vcfg_read32(&f, off) & ~0xfu;
				vcfg_write32(&f, off, lo);
				vcfg_write16(&f, PCI_COMMAND, cmd);
				busy_add(lo & ~0xfull, mask ? (u64)(u32)(~mask + 1) : 0x1000);
			}
			if (fn == 0 && !(ht & 0x80))
				break;
		}
	}
}

static u64 bar_alloc(u64 size)
{
	if (!bar_next) {
		u64 base = 0xd0000000ull;
		char v[24];
		if (cmdline_get("probe.virtio.barbase", v, sizeof(v)))
			parse_u64(v, &base);
		bar_next = base;
	}
	busy_scan();
	u64 a = (bar_next + size - 1) & ~(size - 1);
	for (int guard = 0; guard < 200 && a + size <= BAR_WINDOW_END; guard++) {
		bool clash = false;
		for (u32 i = 0; i < nbusy; i++) {
			if (a < busy[i].end && busy[i].start < a + size) {
				a = (busy[i].end + size - 1) & ~(size - 1);
				clash = true;
				break;
			}
		}
		if (!clash) {
			bar_next = a + size;
			busy_add(a, size);
			return a;
		}
	}
	return 0;
}

/* Read all BARs; size and assign the memory BARs that are unassigned or unreachable. */
static bool setup_bars(struct virtio_dev *d)
{
	u16 cmd = vcfg_read16(d, PCI_COMMAND);
	bool any_mem = false, any_io = false;
	bool reassign = cmdline_flag("probe.virtio.reassign");
	for (int i = 0; i < 6; i++) {
		u16 off = PCI_BAR0 + 4 * i;
		u32 lo = vcfg_read32(d, off);
		if (lo & 1) {
			d->bar_kind[i] = VBAR_IO;
			d->bar[i] = lo & ~3u;
			any_io |= d->bar[i] != 0;
			continue;
		}
		bool is64 = ((lo >> 1) & 3) == 2 && i < 5;
		u64 hi = is64 ? vcfg_read32(d, off + 4) : 0;
		/* size it with decoding off (PCI 3.0 §6.2.5.1) */
		vcfg_write16(d, PCI_COMMAND, cmd & ~(PCI_COMMAND_MEMORY | PCI_COMMAND_IO));
		vcfg_write32(d, off, 0xffffffffu);
		u64 mask = vcfg_read32(d, off) & ~0xfull;
		if (is64) {
			vcfg_write32(d, off + 4, 0xffffffffu);
			mask |= (u64)vcfg_read32(d, off + 4) << 32;
			vcfg_write32(d, off + 4, (u32)hi);
		} else if (mask) {
			mask |= 0xffffffff00000000ull;
		}
		vcfg_write32(d, off, lo);
		vcfg_write16(d, PCI_COMMAND, cmd);
		u64 addr = (lo & ~0xfull) | hi << 32;
		u64 size = mask ? ~mask + 1 : 0;	/* 0: BAR not implemented */
		d->bar_kind[i] = size ? (is64 ? VBAR_MEM64 : VBAR_MEM32) : VBAR_NONE;
		d->bar_size[i] = size;
		if (size && (reassign || !addr || addr + size > (1ull << 32))) {
			u64 a = bar_alloc(size < 0x1000 ? 0x1000 : size);
			if (!a) {
				d->err = "no-bar-space";
				return false;
			}
			vcfg_write16(d, PCI_COMMAND, cmd & ~(PCI_COMMAND_MEMORY | PCI_COMMAND_IO));
			vcfg_write32(d, off, (u32)a | (lo & 0xf));
			if (is64)
				vcfg_write32(d, off + 4, 0);
			vcfg_write16(d, PCI_COMMAND, cmd);
			addr = a;
			d->bar_by_probe |= 1u << i;
		}
		d->bar[i] = size ? addr : 0;
		any_mem |= size != 0;
		if (is64) {
			i++;
			d->bar_kind[i] = VBAR_HIGH;
		}
	}
	/* decode what we use, and bus mastering: QEMU drops DMA without it */
	cmd |= PCI_COMMAND_MASTER;
	if (any_mem)
		cmd |= PCI_COMMAND_MEMORY;
	if (any_io)
		cmd |= PCI_COMMAND_IO;
	vcfg_write16(d, PCI_COMMAND, cmd);
	return true;
}

/* ---- capabilities (§4.1.4) ---- */

static bool region_from_cap(struct virtio_dev *d, u8 p, struct vregion *r)
{
	u8 bar = vcfg_read8(d, p + 4);
	if (bar > 5)	/* §4.1.4.1: ignore reserved bar values */
		return false;
	u32 off = vcfg_read32(d, p + 8), len = vcfg_read32(d, p + 12);
	if (d->bar_kind[bar] == VBAR_NONE || d->bar_kind[bar] == VBAR_HIGH || !d->bar[bar])
		return false;
	if (d->bar_kind[bar] != VBAR_IO && (u64)off + len > d->bar_size[bar])
		return false;
	r->addr = d->bar[bar] + off;
	r->len = len;
	r->io = d->bar_kind[bar] == VBAR_IO;
	r->bar = bar;
	return true;
}

bool virtio_pci_setup(struct virtio_dev *d)
{
	if (!setup_bars(d))
		return false;
	if (!(vcfg_read16(d, PCI_STATUS) & PCI_STATUS_CAP_LIST)) {
		d->err = "no-capabilities";
		return false;
	}
	u8 p = vcfg_read8(d, PCI_CAPABILITY_LIST) & 0xfc;
	for (int guard = 0; p >= 0x40 && guard < 48; guard++) {
		u8 id = vcfg_read8(d, p), next = vcfg_read8(d, p + 1) & 0xfc;
		if (id == PCI_CAP_ID_VNDR && vcfg_read8(d, p + 2) >= 16) {
			/* §4.1.4.1: use the first instance of each type we support; ignore reserved
			 * cfg_type values; accept cap_len larger than the structure */
			u8 type = vcfg_read8(d, p + 3);
			struct vregion r;
			if (type == VIRTIO_PCI_CAP_COMMON_CFG && !d->common.addr && region_from_cap(d, p, &r) &&
			    r.len >= VPCI_COMMON_MIN_LEN)
				d->common = r;
			else if (type == VIRTIO_PCI_CAP_NOTIFY_CFG && !d->notify.addr && vcfg_read8(d, p + 2) >= 20 &&
				 region_from_cap(d, p, &r) && r.len >= 2) {
				d->notify = r;
				d->notify_mult = vcfg_read32(d, p + 16);	/* struct virtio_pci_notify_cap */
			} else if (type == VIRTIO_PCI_CAP_ISR_CFG && !d->isr.addr && region_from_cap(d, p, &r) && r.len >= 1)
				d->isr = r;
			else if (type == VIRTIO_PCI_CAP_DEVICE_CFG && !d->devcfg.addr && region_from_cap(d, p, &r))
				d->devcfg = r;
		} else if (id == PCI_CAP_ID_MSIX && !d->msix_cap) {
			d->msix_cap = p;
			d->msix_entries = (vcfg_read16(d, p + 2) & 0x7ff) + 1;
			u32 t = vcfg_read32(d, p + 4), b = vcfg_read32(d, p + 8);
			if (d->bar[t & 7] && d->bar_kind[t & 7] != VBAR_IO)
				d->msix_table = d->bar[t & 7] + (t & ~7u);
			if (d->bar[b & 7] && d->bar_kind[b & 7] != VBAR_IO)
				d->msix_pba = d->bar[b & 7] + (b & ~7u);
		}
		p = next;
	}
	/* §4.1.5.1.1: no virtio capabilities means a legacy device, which we do not drive */
	if (!d->common.addr) {
		d->err = "no-common-cfg";
		return false;
	}
	if (!d->notify.addr || !d->isr.addr) {
		d->err = !d->notify.addr ? "no-notify-cfg" : "no-isr-cfg";
		return false;
	}
	/* MSI-X (PCI 3.0 §6.8.2): modes 1 and 2 enable it with the whole function masked, so no
	 * message is ever sent; mode 2 programs entries so that Pending Bits show notifications */
	if (d->msix_cap && d->msix_mode) {
		if (d->msix_mode == 2 && d->msix_table) {
			for (u32 i = 0; i < d->msix_entries && i < 64; i++) {
				u64 e = d->msix_table + 16 * i;
				mmio_write32(e + 0, 0xfee00000u);	/* LAPIC of CPU 0 */
				mmio_write32(e + 4, 0);
				mmio_write32(e + 8, 0xe0 + (i & 15));	/* some vector; never delivered */
				mmio_write32(e + 12, 1);		/* entry masked too */
			}
		}
		u16 ctrl = vcfg_read16(d, d->msix_cap + 2);
		vcfg_write16(d, d->msix_cap + 2, ctrl | MSIX_CTRL_ENABLE | MSIX_CTRL_MASKALL);
	} else if (d->msix_cap) {
		u16 ctrl = vcfg_read16(d, d->msix_cap + 2);
		if (ctrl & MSIX_CTRL_ENABLE)
			vcfg_write16(d, d->msix_cap + 2, ctrl & ~MSIX_CTRL_ENABLE);
	}
	return true;
}

void virtio_pci_report(const struct virtio_dev *d, const char *name, const char *label)
{
	char bars[160];
	int n = 0;
	bars[0] = 0;
	for (int i = 0; i < 6; i++) {
		if (d->bar_kind[i] == VBAR_NONE || d->bar_kind[i] == VBAR_HIGH)
			continue;
		n += snprintf(bars + n, sizeof(bars) - n, "%sbar%d=0x%llx/0x%llx%s%s", n ? " " : "", i,
			      (unsigned long long)d->bar[i], (unsigned long long)d->bar_size[i],
			      d->bar_kind[i] == VBAR_MEM64 ? "/64" : d->bar_kind[i] == VBAR_IO ? "/io" : "",
			      d->bar_by_probe & (1u << i) ? "/probe" : "");
	}
	probe("%s %s dev=00:%02x.%u id=%04x:%04x rev=%u subsys=%04x:%04x cfg=%s %s common=0x%llx notify=0x%llx notify_mult=%u isr=0x%llx device_cfg=0x%llx device_cfg_len=%u msix=%u",
	      name, label, d->dev, d->fn, d->vendor, d->device, d->revision, d->subsys_vendor,
	      d->subsys_id, d->ecam ? "ecam" : "cf8", bars, (unsigned long long)d->common.addr,
	      (unsigned long long)d->notify.addr, d->notify_mult, (unsigned long long)d->isr.addr,
	      (unsigned long long)d->devcfg.addr, d->devcfg.len, d->msix_cap ? d->msix_entries : 0);
}

/* ---- register access in a region (memory or I/O BAR) ---- */

static u8 r_read8(const struct vregion *r, u32 off) { return r->io ? inb((u16)(r->addr + off)) : mmio_read8(r->addr + off); }
static u16 r_read16(const struct vregion *r, u32 off) { return r->io ? inw((u16)(r->addr + off)) : mmio_read16(r->addr + off); }
static u32 r_read32(const struct vregion *r, u32 off) { return r->io ? inl((u16)(r->addr + off)) : mmio_read32(r->addr + off); }
static void r_write8(const struct vregion *r, u32 off, u8 v)
{
	if (r->io)
		outb((u16)(r->addr + off), v);
	else
		mmio_write8(r->addr + off, v);
}
static void r_write16(const struct vregion *r, u32 off, u16 v)
{
	if (r->io)
		outw((u16)(r->addr + off), v);
	else
		mmio_write16(r->addr + off, v);
}
static void r_write32(const struct vregion *r, u32 off, u32 v)
{
	if (r->io)
		outl((u16)(r->addr + off), v);
	else
		mmio_write32(r->addr + off, v);
}

u8 vcommon_read8(const struct virtio_dev *d, u32 off) { return r_read8(&d->common, off); }
u16 vcommon_read16(const struct virtio_dev *d, u32 off) { return r_read16(&d->common, off); }
u32 vcommon_read32(const struct virtio_dev *d, u32 off) { return r_read32(&d->common, off); }
void vcommon_write8(const struct virtio_dev *d, u32 off, u8 v) { r_write8(&d->common, off, v); }
void vcommon_write16(const struct virtio_dev *d, u32 off, u16 v) { r_write16(&d->common, off, v); }
void vcommon_write32(const struct virtio_dev *d, u32 off, u32 v) { r_write32(&d->common, off, v); }
/* 64-bit fields as two 32-bit writes, low half first (as Linux's vp_iowrite64_twopart) */
static void vcommon_write64(const struct virtio_dev *d, u32 off, u64 v)
{
	vcommon_write32(d, off, (u32)v);
	vcommon_write32(d, off + 4, (u32)(v >> 32));
}

/* ---- status, reset, features (§2.1, §3.1) ---- */

u8 virtio_status(const struct virtio_dev *d) { return vcommon_read8(d, VPCI_DEVICE_STATUS); }

static void status_set(struct virtio_dev *d, u8 bits)
{
	/* §2.1.1: never clear a bit */
	vcommon_write8(d, VPCI_DEVICE_STATUS, virtio_status(d) | bits);
}

bool virtio_reset(struct virtio_dev *d)
{
	vcommon_write8(d, VPCI_DEVICE_STATUS, 0);
	/* §4.1.4.3.2: wait for device_status to read 0 before reinitialising */
	u64 deadline = tsc_deadline_us(1000000);
	while (virtio_status(d) != 0) {
		if (!tsc_before(deadline)) {
			d->err = "reset-timeout";
			return false;
		}
		cpu_relax();
	}
	return true;
}

void virtio_fail(struct virtio_dev *d, const char *why)
{
	d->err = why;
	status_set(d, VIRTIO_STATUS_FAILED);
}

bool virtio_negotiate(struct virtio_dev *d, u64 wanted)
{
	d->err = NULL;
	if (!virtio_reset(d))					/* §3.1.1 step 1 */
		return false;
	status_set(d, VIRTIO_STATUS_ACKNOWLEDGE);		/* step 2 */
	status_set(d, VIRTIO_STATUS_DRIVER);			/* step 3 */
	u64 f = 0;						/* step 4 */
	for (u32 sel = 0; sel < 2; sel++) {
		vcommon_write32(d, VPCI_DEVICE_FEATURE_SELECT, sel);
		f |= (u64)vcommon_read32(d, VPCI_DEVICE_FEATURE) << (32 * sel);
	}
	d->offered = f;
	if (!(f & BIT64(VIRTIO_F_VERSION_1))) {
		/* a legacy-only device; this driver is modern only */
		virtio_fail(d, "no-version-1");
		return false;
	}
	/* Accept ACCESS_PLATFORM/ORDER_PLATFORM when offered: we pass physical addresses (no
	 * IOMMU) and use real barriers, so both hold; a device may refuse FEATURES_OK otherwise. */
	u64 accept = f & (wanted | BIT64(VIRTIO_F_VERSION_1) | BIT64(VIRTIO_F_ACCESS_PLATFORM) |
			  BIT64(VIRTIO_F_ORDER_PLATFORM));
	for (u32 sel = 0; sel < 2; sel++) {
		vcommon_write32(d, VPCI_DRIVER_FEATURE_SELECT, sel);
		vcommon_write32(d, VPCI_DRIVER_FEATURE, (u32)(accept >> (32 * sel)));
	}
	d->negotiated = accept;
	status_set(d, VIRTIO_STATUS_FEATURES_OK);		/* step 5 */
	if (!(virtio_status(d) & VIRTIO_STATUS_FEATURES_OK)) {	/* step 6 */
		virtio_fail(d, "features-not-ok");
		return false;
	}
	d->num_queues = vcommon_read16(d, VPCI_NUM_QUEUES);
	return true;
}

u16 virtio_queue_max(struct virtio_dev *d, u16 q)
{
	vcommon_write16(d, VPCI_QUEUE_SELECT, q);
	return vcommon_read16(d, VPCI_QUEUE_SIZE);
}

bool virtio_queue_enable(struct virtio_dev *d, u16 q, struct virtq *vq)
{
	vcommon_write16(d, VPCI_QUEUE_SELECT, q);			/* §4.1.5.1.3 step 1 */
	u16 max = vcommon_read16(d, VPCI_QUEUE_SIZE);		/* step 2 */
	if (!max || vq->size > max || (vq->size & (vq->size - 1))) {
		d->err = !max ? "queue-missing" : "queue-size";
		return false;
	}
	vcommon_write16(d, VPCI_QUEUE_SIZE, vq->size);		/* step 3 (a power of 2) */
	vcommon_write64(d, VPCI_QUEUE_DESC, vq_desc_addr(vq));	/* step 4: zeroed by vq_reset */
	vcommon_write64(d, VPCI_QUEUE_DRIVER, vq_avail_addr(vq));
	vcommon_write64(d, VPCI_QUEUE_DEVICE, vq_used_addr(vq));
	if (d->msix_cap && d->msix_mode) {				/* step 5 */
		u16 v = d->msix_mode == 2 && 1u + q < d->msix_entries ? (u16)(1 + q) : VIRTIO_MSI_NO_VECTOR;
		vcommon_write16(d, VPCI_QUEUE_MSIX_VECTOR, v);
	}
	/* §4.1.4.4: notify address = cap.offset + queue_notify_off * notify_off_multiplier */
	u64 noff = (u64)vcommon_read16(d, VPCI_QUEUE_NOTIFY_OFF) * d->notify_mult;
	if (noff + 2 > d->notify.len) {
		d->err = "notify-off-out-of-range";
		return false;
	}
	vq->notify_addr = d->notify.addr + noff;
	vq->notify_io = d->notify.io;
	vq->notify_val = q;
	/* §4.1.4.3.2: configure everything before enabling; never write 0 to queue_enable */
	vcommon_write16(d, VPCI_QUEUE_ENABLE, 1);
	return true;
}

bool virtio_queue_setup(struct virtio_dev *d, u16 q, struct virtq *vq, u16 limit, u16 ind_max)
{
	u16 max = virtio_queue_max(d, q);
	if (!max) {
		virtio_fail(d, "queue-missing");
		return false;
	}
	u16 sz = max < limit ? max : limit;
	if (!vq->desc && !vq_alloc(vq, sz, ind_max)) {
		virtio_fail(d, "out-of-memory");
		return false;
	}
	vq_reset(vq, q, sz, d->negotiated & BIT64(VIRTIO_F_EVENT_IDX), d->negotiated & BIT64(VIRTIO_F_INDIRECT_DESC));
	if (!virtio_queue_enable(d, q, vq)) {
		virtio_fail(d, d->err);
		return false;
	}
	return true;
}

void virtio_driver_ok(struct virtio_dev *d)
{
	if (d->msix_cap && d->msix_mode)
		vcommon_write16(d, VPCI_CONFIG_MSIX_VECTOR, d->msix_mode == 2 ? 0 : VIRTIO_MSI_NO_VECTOR);
	status_set(d, VIRTIO_STATUS_DRIVER_OK);
}

u8 virtio_isr(const struct virtio_dev *d) { return r_read8(&d->isr, 0); }

bool virtio_intx_status(const struct virtio_dev *d) { return vcfg_read16(d, PCI_STATUS) & PCI_STATUS_INTERRUPT; }

u64 virtio_msix_pba(const struct virtio_dev *d)
{
	if (!d->msix_pba)
		return 0;
	return mmio_read32(d->msix_pba) | (u64)mmio_read32(d->msix_pba + 4) << 32;
}

u16 virtio_config_vector(const struct virtio_dev *d) { return vcommon_read16(d, VPCI_CONFIG_MSIX_VECTOR); }

u16 virtio_queue_vector(const struct virtio_dev *d, u16 q)
{
	vcommon_write16(d, VPCI_QUEUE_SELECT, q);
	return vcommon_read16(d, VPCI_QUEUE_MSIX_VECTOR);
}

u8 virtio_generation(const struct virtio_dev *d) { return vcommon_read8(d, VPCI_CONFIG_GENERATION); }

static bool devcfg_has(const struct virtio_dev *d, u32 off, u32 size)
{
	return d->devcfg.addr && off + size <= d->devcfg.len && !(off & (size - 1));
}

u8 vdevcfg_read8(const struct virtio_dev *d, u32 off) { return devcfg_has(d, off, 1) ? r_read8(&d->devcfg, off) : 0; }
u16 vdevcfg_read16(const struct virtio_dev *d, u32 off) { return devcfg_has(d, off, 2) ? r_read16(&d->devcfg, off) : 0; }
u32 vdevcfg_read32(const struct virtio_dev *d, u32 off) { return devcfg_has(d, off, 4) ? r_read32(&d->devcfg, off) : 0; }
u64 vdevcfg_read64(const struct virtio_dev *d, u32 off)
{
	u64 lo = vdevcfg_read32(d, off);
	return lo | (u64)vdevcfg_read32(d, off + 4) << 32;
}
