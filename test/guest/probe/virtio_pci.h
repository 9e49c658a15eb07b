/*
 * A virtio 1.2 driver core for the probe: the modern virtio-pci transport (virtio 1.2 §4.1) and
 * the generic device initialisation (§3.1). Split virtqueues are in virtqueue.h; the device
 * drivers/tests are virtio_blk.c and virtio_rng.c.
 *
 * Section numbers refer to "Virtual I/O Device (VIRTIO) Version 1.2", OASIS Committee
 * Specification 01 (virtio-v1.2-cs01), https://docs.oasis-open.org/virtio/virtio/v1.2/.
 *
 * Configuration space is reached through ECAM when ACPI has an MCFG table (q35) or a PCI0._CBA
 * in the DSDT (QEMU microvm with pcie=on), and through configuration mechanism #1 (ports 0xcf8/0xcfc, pci.h) otherwise
 * (QEMU pc, kvmkit). Only bus 0 is scanned. BARs the firmware left unassigned (0, or above
 * 4 GiB where the probe's page tables do not reach) are assigned by the probe from a window that
 * starts at probe.virtio.barbase (default 0xd0000000) and ends below the IOAPIC (0xfec00000).
 *
 * Command-line options shared by all virtio tests:
 *   probe.virtio.msix=0|1|2   0: leave MSI-X disabled (INTx semantics: ISR status, PCI status
 *                             bit 3); 1: enable MSI-X (function masked) and map every event to
 *                             NO_VECTOR (0xffff); 2: enable MSI-X with the function masked and
 *                             map config changes to vector 0, queue i to vector 1 + i, so
 *                             notifications show up as Pending Bits (no interrupt is taken)
 *   probe.virtio.cfg=auto|cf8|ecam   configuration access method (default auto)
 *   probe.virtio.barbase=ADDR        start of the BAR assignment window
 *   probe.virtio.reassign            move the memory BARs even if the firmware assigned them
 */
#ifndef PROBE_VIRTIO_PCI_H
#define PROBE_VIRTIO_PCI_H
#include "probe.h"

struct virtq;

/* §4.1.2: vendor 0x1af4, device 0x1040 + virtio device id (transitional: 0x1000..0x103f). */
#define VIRTIO_PCI_VENDOR		0x1af4
#define VIRTIO_PCI_MODERN_BASE		0x1040
/* §5: device ids */
#define VIRTIO_ID_BLOCK			2
#define VIRTIO_ID_RNG			4

/* §2.1 Device Status Field */
#define VIRTIO_STATUS_ACKNOWLEDGE	1
#define VIRTIO_STATUS_DRIVER		2
#define VIRTIO_STATUS_DRIVER_OK		4
#define VIRTIO_STATUS_FEATURES_OK	8
#define VIRTIO_STATUS_NEEDS_RESET	64
#define VIRTIO_STATUS_FAILED		128

/* §6 Reserved Feature Bits */
#define VIRTIO_F_INDIRECT_DESC		28
#define VIRTIO_F_EVENT_IDX		29
#define VIRTIO_F_VERSION_1		32
#define VIRTIO_F_ACCESS_PLATFORM	33
#define VIRTIO_F_RING_PACKED		34
#define VIRTIO_F_IN_ORDER		35
#define VIRTIO_F_ORDER_PLATFORM		36
#define VIRTIO_F_NOTIFICATION_DATA	38
#define VIRTIO_F_RING_RESET		40
#define BIT64(n)			(1ull << (n))

/* §4.1.4 virtio_pci_cap.cfg_type */
#define VIRTIO_PCI_CAP_COMMON_CFG	1
#define VIRTIO_PCI_CAP_NOTIFY_CFG	2
#define VIRTIO_PCI_CAP_ISR_CFG		3
#define VIRTIO_PCI_CAP_DEVICE_CFG	4
#define VIRTIO_PCI_CAP_PCI_CFG		5

/* §4.1.4.3 struct virtio_pci_common_cfg: offsets */
#define VPCI_DEVICE_FEATURE_SELECT	0x00
#define VPCI_DEVICE_FEATURE		0x04
#define VPCI_DRIVER_FEATURE_SELECT	0x08
#define VPCI_DRIVER_FEATURE		0x0c
#define VPCI_CONFIG_MSIX_VECTOR		0x10
#define VPCI_NUM_QUEUES			0x12
#define VPCI_DEVICE_STATUS		0x14
#define VPCI_CONFIG_GENERATION		0x15
#define VPCI_QUEUE_SELECT		0x16
#define VPCI_QUEUE_SIZE			0x18
#define VPCI_QUEUE_MSIX_VECTOR		0x1a
#define VPCI_QUEUE_ENABLE		0x1c
#define VPCI_QUEUE_NOTIFY_OFF		0x1e
#define VPCI_QUEUE_DESC			0x20
#define VPCI_QUEUE_DRIVER		0x28
#define VPCI_QUEUE_DEVICE		0x30
#define VPCI_COMMON_MIN_LEN		0x38	/* up to queue_notify_data (not used) */

/* §4.1.5.1.2 */
#define VIRTIO_MSI_NO_VECTOR		0xffff

/* One of the four structures, in a memory or I/O BAR (§4.1.4). */
struct vregion {
	u64 addr;		/* 0: not present */
	u32 len;
	bool io;
	u8 bar;
};

#define VIRTIO_MAX_DEVS 8

struct virtio_dev {
	/* PCI function (bus 0) */
	u8 dev, fn;
	u64 ecam;			/* this function's ECAM page, or 0: mechanism #1 */
	u16 vendor, device, subsys_vendor, subsys_id;
	u8 revision;
	u16 type;			/* virtio device id */
	u64 bar[6];
	u64 bar_size[6];
	u8 bar_kind[6];			/* VBAR_* */
	u8 bar_by_probe;		/* bitmap: BARs the probe assigned */
	struct vregion common, notify, isr, devcfg;
	u32 notify_mult;
	u8 msix_cap;			/* 0: none */
	u16 msix_entries;		/* Table Size + 1 */
	u64 msix_table, msix_pba;
	u8 msix_mode;			/* probe.virtio.msix */
	u64 offered, negotiated;
	u16 num_queues;
	const char *err;		/* why setup or init failed */
};

#define VBAR_NONE	0
#define VBAR_MEM32	1
#define VBAR_MEM64	2
#define VBAR_IO		3
#define VBAR_HIGH	4	/* upper half of a 64-bit BAR */

/* Find the virtio devices of this type on bus 0 (modern and transitional ids), in slot order.
 * Fills identity and config access only. Returns how many were found (at most max). */
u32 virtio_pci_find(u16 type, struct virtio_dev *out, u32 max);
/* How configuration space is reached: 0 for ports 0xcf8/0xcfc, else the ECAM base (MCFG). */
u64 virtio_pci_ecam(void);
/* Walk the capability list (§4.1.4), assign and enable the BARs, find MSI-X; false with
 * d->err set if the device cannot be driven (e.g. no common cfg: a legacy-only device). */
bool virtio_pci_setup(struct virtio_dev *d);
/* "PROBE <name> <label> dev=00:04.0 id=1af4:1042 ..." describing the transport. */
void virtio_pci_report(const struct virtio_dev *d, const char *name, const char *label);

/* PCI configuration space of the function (ECAM or mechanism #1). */
u8 vcfg_read8(const struct virtio_dev *d, u16 off);
u16 vcfg_read16(const struct virtio_dev *d, u16 off);
u32 vcfg_read32(const struct virtio_dev *d, u16 off);
void vcfg_write16(const struct virtio_dev *d, u16 off, u16 v);
void vcfg_write32(const struct virtio_dev *d, u16 off, u32 v);

/* Common configuration structure accessors. */
u8 vcommon_read8(const struct virtio_dev *d, u32 off);
u16 vcommon_read16(const struct virtio_dev *d, u32 off);
u32 vcommon_read32(const struct virtio_dev *d, u32 off);
void vcommon_write8(const struct virtio_dev *d, u32 off, u8 v);
void vcommon_write16(const struct virtio_dev *d, u32 off, u16 v);
void vcommon_write32(const struct virtio_dev *d, u32 off, u32 v);

u8 virtio_status(const struct virtio_dev *d);
/* Write 0 to device_status and wait (bounded) until it reads 0 (§4.1.4.3.2). */
bool virtio_reset(struct virtio_dev *d);
/*
 * §3.1.1 steps 1-6: reset, ACKNOWLEDGE, DRIVER, read the offered features, accept
 * (offered & wanted) — VERSION_1 is required —, FEATURES_OK and re-read it. On failure sets
 * FAILED, d->err, and returns false. Afterwards d->offered and d->negotiated are set.
 */
bool virtio_negotiate(struct virtio_dev *d, u64 wanted);
/* §4.1.5.1.3: maximum size of queue q (0: the queue does not exist). */
u16 virtio_queue_max(struct virtio_dev *d, u16 q);
/* §4.1.5.1.3: program queue q with vq's rings (already reset by vq_reset) and enable it.
 * Also maps its MSI-X vector as probe.virtio.msix says. */
bool virtio_queue_enable(struct virtio_dev *d, u16 q, struct virtq *vq);
/* §4.1.5.1.3 for one queue, as most drivers here want it: min(limit, device maximum) entries,
 * vq allocated on first use (ind_max indirect tables), reset with the negotiated EVENT_IDX and
 * INDIRECT_DESC, enabled. On failure the device is failed (d->err: "queue-missing",
 * "out-of-memory" or virtio_queue_enable's reason) and false returned. */
bool virtio_queue_setup(struct virtio_dev *d, u16 q, struct virtq *vq, u16 limit, u16 ind_max);
/* §3.1.1 step 8 (and the config vector, when MSI-X is on). */
void virtio_driver_ok(struct virtio_dev *d);
/* Set FAILED (§3.1.1: the driver gave up). */
void virtio_fail(struct virtio_dev *d, const char *why);

/* ISR status (§4.1.4.5): reading clears it. */
u8 virtio_isr(const struct virtio_dev *d);
/* PCI Status register bit 3 (Interrupt Status). */
bool virtio_intx_status(const struct virtio_dev *d);
/* MSI-X Pending Bits 0..63 (0 if MSI-X is absent). */
u64 virtio_msix_pba(const struct virtio_dev *d);
u16 virtio_config_vector(const struct virtio_dev *d);
u16 virtio_queue_vector(const struct virtio_dev *d, u16 q);

/* Device-specific configuration fields, each with its natural width (§4.1.3.1); 64-bit fields
 * as two 32-bit reads, low half first. Reads outside the structure give 0. Callers read a set of
 * fields between two equal virtio_generation() values (§2.5.1). */
u8 virtio_generation(const struct virtio_dev *d);
u8 vdevcfg_read8(const struct virtio_dev *d, u32 off);
u16 vdevcfg_read16(const struct virtio_dev *d, u32 off);
u32 vdevcfg_read32(const struct virtio_dev *d, u32 off);
u64 vdevcfg_read64(const struct virtio_dev *d, u32 off);

/* TSC deadline helpers for polling */
static inline bool tsc_before(u64 deadline) { return (int64_t)(rdtsc() - deadline) < 0; }

#endif
