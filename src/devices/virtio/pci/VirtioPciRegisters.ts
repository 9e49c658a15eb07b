/**
 * Numbers of the virtio-pci transport (virtio 1.2 §4.1, OASIS virtio-v1.2-cs01; Linux
 * include/uapi/linux/virtio_pci.h) and where kvmkit puts each structure in BAR 0.
 * @module
 */

/** PCI vendor ID of virtio devices (§4.1.2). */
export const VIRTIO_PCI_VENDOR_ID = 0x1af4;
/** Modern (non-transitional) PCI device IDs are 0x1040 + the virtio device ID (§4.1.2). */
export const VIRTIO_PCI_DEVICE_ID_BASE = 0x1040;
/** Revision ID of a non-transitional device: 1 or higher (§4.1.2.1). */
export const VIRTIO_PCI_REVISION = 1;

// ---- virtio_pci_cap.cfg_type (§4.1.4) ----
/** Common configuration (§4.1.4.3). */
export const VIRTIO_PCI_CAP_COMMON_CFG = 1;
/** Notifications (§4.1.4.4). */
export const VIRTIO_PCI_CAP_NOTIFY_CFG = 2;
/** ISR status (§4.1.4.5). */
export const VIRTIO_PCI_CAP_ISR_CFG = 3;
/** Device-specific configuration (§4.1.4.6). */
export const VIRTIO_PCI_CAP_DEVICE_CFG = 4;
/** PCI configuration access window (§4.1.4.9). */
export const VIRTIO_PCI_CAP_PCI_CFG = 5;

// ---- struct virtio_pci_cap (§4.1.4), offsets from the capability's ID byte ----
/** u8 cap_len: length of the whole capability. */
export const VIRTIO_PCI_CAP_LEN = 2;
/** u8 cfg_type. */
export const VIRTIO_PCI_CAP_CFG_TYPE = 3;
/** u8 bar: which BAR holds the structure. */
export const VIRTIO_PCI_CAP_BAR = 4;
/** u8 id: identifies multiple capabilities of one type. */
export const VIRTIO_PCI_CAP_ID = 5;
/** le32 offset of the structure in the BAR. */
export const VIRTIO_PCI_CAP_OFFSET = 8;
/** le32 length of the structure. */
export const VIRTIO_PCI_CAP_LENGTH = 12;
/** sizeof(struct virtio_pci_cap). */
export const VIRTIO_PCI_CAP_SIZE = 16;
/** struct virtio_pci_notify_cap: le32 notify_off_multiplier after the virtio_pci_cap (§4.1.4.4). */
export const VIRTIO_PCI_NOTIFY_CAP_MULT = 16;
/** sizeof(struct virtio_pci_notify_cap). */
export const VIRTIO_PCI_NOTIFY_CAP_SIZE = 20;
/** struct virtio_pci_cfg_cap: u8 pci_cfg_data[4] after the virtio_pci_cap (§4.1.4.9). */
export const VIRTIO_PCI_CFG_CAP_DATA = 16;
/** sizeof(struct virtio_pci_cfg_cap). */
export const VIRTIO_PCI_CFG_CAP_SIZE = 20;

// ---- struct virtio_pci_common_cfg (§4.1.4.3), byte offsets ----
/** le32 device_feature_select (RW). */
export const COMMON_DEVICE_FEATURE_SELECT = 0x00;
/** le32 device_feature (RO). */
export const COMMON_DEVICE_FEATURE = 0x04;
/** le32 driver_feature_select (RW). */
export const COMMON_DRIVER_FEATURE_SELECT = 0x08;
/** le32 driver_feature (RW). */
export const COMMON_DRIVER_FEATURE = 0x0c;
/** le16 config_msix_vector (RW). */
export const COMMON_CONFIG_MSIX_VECTOR = 0x10;
/** le16 num_queues (RO). */
export const COMMON_NUM_QUEUES = 0x12;
/** u8 device_status (RW). */
export const COMMON_DEVICE_STATUS = 0x14;
/** u8 config_generation (RO). */
export const COMMON_CONFIG_GENERATION = 0x15;
/** le16 queue_select (RW). */
export const COMMON_QUEUE_SELECT = 0x16;
/** le16 queue_size (RW). */
export const COMMON_QUEUE_SIZE = 0x18;
/** le16 queue_msix_vector (RW). */
export const COMMON_QUEUE_MSIX_VECTOR = 0x1a;
/** le16 queue_enable (RW). */
export const COMMON_QUEUE_ENABLE = 0x1c;
/** le16 queue_notify_off (RO). */
export const COMMON_QUEUE_NOTIFY_OFF = 0x1e;
/** le64 queue_desc (RW). */
export const COMMON_QUEUE_DESC = 0x20;
/** le64 queue_driver (RW). */
export const COMMON_QUEUE_DRIVER = 0x28;
/** le64 queue_device (RW). */
export const COMMON_QUEUE_DEVICE = 0x30;
/**
 * Length of the common configuration structure kvmkit exposes: up to queue_device, i.e.
 * sizeof(struct virtio_pci_common_cfg) in Linux. queue_notify_data (0x38) and queue_reset (0x3A)
 * belong to VIRTIO_F_NOTIFICATION_DATA and VIRTIO_F_RING_RESET, which are not offered.
 */
export const COMMON_CFG_SIZE = 0x38;

// ---- ISR status bits (§4.1.4.5) ----
/** ISR bit 0: a virtqueue has used buffers (queue interrupt). */
export const VIRTIO_PCI_ISR_QUEUE = 0x1;
/** ISR bit 1: the device configuration changed. */
export const VIRTIO_PCI_ISR_CONFIG = 0x2;

/**
 * notify_off_multiplier: queue `q`'s doorbell is at notify offset `q * 4` (§4.1.4.4: 0 or an even
 * power of two). 4 bytes per queue keeps each doorbell its own dword for KVM_IOEVENTFD.
 */
export const NOTIFY_OFF_MULTIPLIER = 4;

// ---- kvmkit's BAR 0 layout: each structure in its own 4 KiB page (so the guest may map them
// separately and the MSI-X table and PBA do not share a page with other registers, as PCI 3.0
// §6.8.2 recommends) ----
/** Common configuration at BAR 0 + 0x0000. */
export const BAR0_COMMON_OFFSET = 0x0000;
/** ISR status at BAR 0 + 0x1000. */
export const BAR0_ISR_OFFSET = 0x1000;
/** Device-specific configuration at BAR 0 + 0x2000 (up to 4 KiB). */
export const BAR0_DEVICE_OFFSET = 0x2000;
/** Largest device-specific configuration kvmkit exposes. */
export const BAR0_DEVICE_SIZE = 0x1000;
/** Notification doorbells at BAR 0 + 0x3000: one dword per queue (up to 1024 queues). */
export const BAR0_NOTIFY_OFFSET = 0x3000;
/** Room for doorbells. */
export const BAR0_NOTIFY_SIZE = 0x1000;
/** MSI-X vector table at BAR 0 + 0x4000 (up to 256 vectors). */
export const BAR0_MSIX_TABLE_OFFSET = 0x4000;
/** Room for the vector table. */
export const BAR0_MSIX_TABLE_SIZE = 0x1000;
/** MSI-X Pending Bit Array at BAR 0 + 0x5000. */
export const BAR0_MSIX_PBA_OFFSET = 0x5000;
/** Room for the PBA. */
export const BAR0_MSIX_PBA_SIZE = 0x1000;
/** Size of BAR 0: a power of two covering the layout above (32 KiB). */
export const BAR0_SIZE = 0x8000;
/** Most queues a device may have with this layout (notify room / multiplier, and one MSI-X vector each plus config). */
export const MAX_QUEUES = 255;
