#include "pci.h"

#define PCI_CONFIG_ADDRESS 0xcf8
#define PCI_CONFIG_DATA 0xcfc

static struct pci_dev devs[PCI_MAX_DEVS];
static u32 ndevs;

static inline void pci_select(u8 bus, u8 dev, u8 fn, u16 off)
{
	outl(PCI_CONFIG_ADDRESS, 0x80000000u | (u32)bus << 16 | (u32)(dev & 31) << 11 |
					 (u32)(fn & 7) << 8 | (off & 0xfc));
}

u32 pci_read32(u8 bus, u8 dev, u8 fn, u16 off)
{
	pci_select(bus, dev, fn, off);
	return inl(PCI_CONFIG_DATA);
}

u16 pci_read16(u8 bus, u8 dev, u8 fn, u16 off)
{
	pci_select(bus, dev, fn, off);
	return inw(PCI_CONFIG_DATA + (off & 2));
}

u8 pci_read8(u8 bus, u8 dev, u8 fn, u16 off)
{
	pci_select(bus, dev, fn, off);
	return inb(PCI_CONFIG_DATA + (off & 3));
}

void pci_write32(u8 bus, u8 dev, u8 fn, u16 off, u32 v)
{
	pci_select(bus, dev, fn, off);
	outl(PCI_CONFIG_DATA, v);
}

void pci_write16(u8 bus, u8 dev, u8 fn, u16 off, u16 v)
{
	pci_select(bus, dev, fn, off);
	outw(PCI_CONFIG_DATA + (off & 2), v);
}

void pci_write8(u8 bus, u8 dev, u8 fn, u16 off, u8 v)
{
	pci_select(bus, dev, fn, off);
	outb(PCI_CONFIG_DATA + (off & 3), v);
}

static void add(u8 dev, u8 fn, u32 id, u8 hdr)
{
	if (ndevs >= PCI_MAX_DEVS)
		return;
	struct pci_dev *d = &devs[ndevs++];
	d->bus = 0;
	d->dev = dev;
	d->fn = fn;
	d->vendor = (u16)id;
	d->device = (u16)(id >> 16);
	d->header_type = hdr & 0x7f;
	d->class_code = pci_read32(0, dev, fn, PCI_CLASS_REVISION) >> 8;
}

u32 pci_scan_bus0(void)
{
	ndevs = 0;
	for (u8 dev = 0; dev < 32; dev++) {
		u32 id = pci_read32(0, dev, 0, PCI_VENDOR_ID);
		if ((u16)id == 0xffff || (u16)id == 0)
			continue;
		u8 hdr = pci_read8(0, dev, 0, PCI_HEADER_TYPE);
		add(dev, 0, id, hdr);
		if (!(hdr & 0x80))
			continue;
		for (u8 fn = 1; fn < 8; fn++) {
			u32 fid = pci_read32(0, dev, fn, PCI_VENDOR_ID);
			if ((u16)fid == 0xffff || (u16)fid == 0)
				continue;
			add(dev, fn, fid, pci_read8(0, dev, fn, PCI_HEADER_TYPE));
		}
	}
	return ndevs;
}

u32 pci_count(void) { return ndevs; }
const struct pci_dev *pci_get(u32 i) { return i < ndevs ? &devs[i] : NULL; }

const struct pci_dev *pci_find(u16 vendor, u16 device, u32 n)
{
	for (u32 i = 0; i < ndevs; i++)
		if ((vendor == 0xffff || devs[i].vendor == vendor) &&
		    (device == 0xffff || devs[i].device == device) && n-- == 0)
			return &devs[i];
	return NULL;
}

u64 pci_bar(const struct pci_dev *d, int i, bool *is_io)
{
	if (i < 0 || i > 5 || d->header_type != 0)
		return 0;
	u32 lo = pci_dev_read32(d, PCI_BAR0 + 4 * i);
	if (lo & 1) {
		if (is_io)
			*is_io = true;
		return lo & ~3u;
	}
	if (is_io)
		*is_io = false;
	u64 addr = lo & ~15u;
	if (((lo >> 1) & 3) == 2 && i < 5)	/* 64-bit memory BAR */
		addr |= (u64)pci_dev_read32(d, PCI_BAR0 + 4 * (i + 1)) << 32;
	return addr;
}

u8 pci_find_cap(const struct pci_dev *d, u8 cap_id, u8 start)
{
	if (!(pci_dev_read16(d, PCI_STATUS) & PCI_STATUS_CAP_LIST))
		return 0;
	u8 p = start ? pci_dev_read8(d, start + 1) : pci_dev_read8(d, PCI_CAPABILITY_LIST);
	for (int guard = 0; p >= 0x40 && guard < 48; guard++) {
		p &= 0xfc;
		if (pci_dev_read8(d, p) == cap_id)
			return p;
		p = pci_dev_read8(d, p + 1);
	}
	return 0;
}
