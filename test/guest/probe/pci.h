/*
 * PCI configuration space through configuration mechanism #1 (ports 0xcf8/0xcfc; PCI Local Bus
 * 3.0 section 3.2.2.3.2) and a bus-0 scan. Drivers (one .c per device, chosen by probe.test=)
 * find their device with pci_find() and use the config helpers and pci_bar().
 */
#ifndef PROBE_PCI_H
#define PROBE_PCI_H
#include "probe.h"

#define PCI_MAX_DEVS 64

/* Config space offsets (PCI 3.0 section 6.1) */
#define PCI_VENDOR_ID		0x00
#define PCI_DEVICE_ID		0x02
#define PCI_COMMAND		0x04
#define PCI_STATUS		0x06
#define PCI_CLASS_REVISION	0x08
#define PCI_HEADER_TYPE		0x0e
#define PCI_BAR0		0x10
#define PCI_SUBSYSTEM_VENDOR_ID	0x2c
#define PCI_SUBSYSTEM_ID	0x2e
#define PCI_CAPABILITY_LIST	0x34
#define PCI_INTERRUPT_LINE	0x3c
#define PCI_COMMAND_IO		0x1
#define PCI_COMMAND_MEMORY	0x2
#define PCI_COMMAND_MASTER	0x4
#define PCI_STATUS_CAP_LIST	0x10

struct pci_dev {
	u8 bus, dev, fn;
	u8 header_type;
	u16 vendor, device;
	u32 class_code;		/* class << 16 | subclass << 8 | prog-if */
};

u32 pci_read32(u8 bus, u8 dev, u8 fn, u16 off);
u16 pci_read16(u8 bus, u8 dev, u8 fn, u16 off);
u8 pci_read8(u8 bus, u8 dev, u8 fn, u16 off);
void pci_write32(u8 bus, u8 dev, u8 fn, u16 off, u32 v);
void pci_write16(u8 bus, u8 dev, u8 fn, u16 off, u16 v);
void pci_write8(u8 bus, u8 dev, u8 fn, u16 off, u8 v);

static inline u32 pci_dev_read32(const struct pci_dev *d, u16 off) { return pci_read32(d->bus, d->dev, d->fn, off); }
static inline u16 pci_dev_read16(const struct pci_dev *d, u16 off) { return pci_read16(d->bus, d->dev, d->fn, off); }
static inline u8 pci_dev_read8(const struct pci_dev *d, u16 off) { return pci_read8(d->bus, d->dev, d->fn, off); }
static inline void pci_dev_write32(const struct pci_dev *d, u16 off, u32 v) { pci_write32(d->bus, d->dev, d->fn, off, v); }
static inline void pci_dev_write16(const struct pci_dev *d, u16 off, u16 v) { pci_write16(d->bus, d->dev, d->fn, off, v); }
static inline void pci_dev_write8(const struct pci_dev *d, u16 off, u8 v) { pci_write8(d->bus, d->dev, d->fn, off, v); }

/* Scan bus 0 into the device table; returns the number of functions found. */
u32 pci_scan_bus0(void);
u32 pci_count(void);
const struct pci_dev *pci_get(u32 i);
/* n-th (0-based) function matching vendor/device (0xffff = any), or NULL. */
const struct pci_dev *pci_find(u16 vendor, u16 device, u32 n);
/* Address of BAR i (64-bit BARs combined), with is_io set for I/O BARs. 0 if unassigned. */
u64 pci_bar(const struct pci_dev *d, int i, bool *is_io);
/* Offset of the first capability with this id at or after `start` (0: from the list head), or 0. */
u8 pci_find_cap(const struct pci_dev *d, u8 cap_id, u8 start);

#endif
