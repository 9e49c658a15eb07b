/**
 * Virtio numbers shared by the transport, the queues and the devices: device IDs, device status
 * bits, reserved feature bits and split-ring layout. Every value cites the virtio 1.2 section
 * (OASIS virtio-v1.2-cs01) that defines it.
 * @module
 */

// ---- Device IDs (§5 "Device Types", table of Virtio Device IDs) ----

/** Network card (§5.1.1). */
export const VIRTIO_ID_NET = 1;
/** Block device (§5.2.1). */
export const VIRTIO_ID_BLOCK = 2;
/** Console (§5.3.1). */
export const VIRTIO_ID_CONSOLE = 3;
/** Entropy source (§5.4.1). */
export const VIRTIO_ID_RNG = 4;
/** Traditional memory balloon (§5.5.1). */
export const VIRTIO_ID_BALLOON = 5;
/** Socket device (§5.10.1). */
export const VIRTIO_ID_VSOCK = 19;
/** File system device (§5.11.1). */
export const VIRTIO_ID_FS = 26;

// ---- Device status field (§2.1) ----

/** The guest OS found the device (§2.1). */
export const VIRTIO_STATUS_ACKNOWLEDGE = 1;
/** The guest OS knows how to drive the device (§2.1). */
export const VIRTIO_STATUS_DRIVER = 2;
/** The driver is set up and ready to drive the device (§2.1). */
export const VIRTIO_STATUS_DRIVER_OK = 4;
/** Feature negotiation is complete (§2.1). */
export const VIRTIO_STATUS_FEATURES_OK = 8;
/** The device hit an error it cannot recover from without a reset (§2.1, §2.1.2). */
export const VIRTIO_STATUS_DEVICE_NEEDS_RESET = 64;
/** The guest gave up on the device (§2.1). */
export const VIRTIO_STATUS_FAILED = 128;

// ---- Reserved feature bits (§6), as 64-bit masks ----

/** Driver may use indirect descriptor tables (§6 bit 28, §2.7.5.3). */
export const VIRTIO_F_INDIRECT_DESC = 1n << 28n;
/** used_event / avail_event notification suppression (§6 bit 29, §2.7.7, §2.7.10). */
export const VIRTIO_F_EVENT_IDX = 1n << 29n;
/** Linux's name for {@link VIRTIO_F_INDIRECT_DESC} (include/uapi/linux/virtio_ring.h). */
export const VIRTIO_RING_F_INDIRECT_DESC = VIRTIO_F_INDIRECT_DESC;
/** Linux's name for {@link VIRTIO_F_EVENT_IDX} (include/uapi/linux/virtio_ring.h). */
export const VIRTIO_RING_F_EVENT_IDX = VIRTIO_F_EVENT_IDX;
/** Compliance with virtio 1.0 or later; every modern device offers it (§6 bit 32). */
export const VIRTIO_F_VERSION_1 = 1n << 32n;
/** The device sits behind an IOMMU / platform access restrictions (§6 bit 33). Not offered. */
export const VIRTIO_F_ACCESS_PLATFORM = 1n << 33n;
/** Packed virtqueue layout (§6 bit 34, §2.8). Not offered: kvmkit implements split rings. */
export const VIRTIO_F_RING_PACKED = 1n << 34n;
/** Buffers are used in the order they were made available (§6 bit 35, §2.7.9). Not offered. */
export const VIRTIO_F_IN_ORDER = 1n << 35n;
/** Per-queue reset through the transport (§6 bit 40). Not offered. */
export const VIRTIO_F_RING_RESET = 1n << 40n;

/**
 * What every kvmkit device can offer because `VirtQueue` implements it: VERSION_1,
 * INDIRECT_DESC and EVENT_IDX. Devices OR their own bits into it.
 */
export const VIRTQUEUE_FEATURES = VIRTIO_F_VERSION_1 | VIRTIO_F_INDIRECT_DESC | VIRTIO_F_EVENT_IDX;

// ---- Split virtqueue layout (§2.7) ----

/** Largest queue size a split ring can have (§2.7: "The maximum Queue Size value is 32768"). */
export const VIRTQ_MAX_SIZE = 32768;
/** Descriptor table alignment in bytes (§2.7 table, §2.7.1). */
export const VIRTQ_DESC_ALIGN = 16;
/** Available ring alignment in bytes (§2.7 table). */
export const VIRTQ_AVAIL_ALIGN = 2;
/** Used ring alignment in bytes (§2.7 table). */
export const VIRTQ_USED_ALIGN = 4;
/** sizeof(struct virtq_desc): le64 addr, le32 len, le16 flags, le16 next (§2.7.5). */
export const VIRTQ_DESC_SIZE = 16;
/** sizeof(struct virtq_used_elem): le32 id, le32 len (§2.7.8). */
export const VIRTQ_USED_ELEM_SIZE = 8;

/** virtq_desc.flags: the chain continues at `next` (§2.7.5). */
export const VIRTQ_DESC_F_NEXT = 1;
/** virtq_desc.flags: the buffer is device write-only, else device read-only (§2.7.5). */
export const VIRTQ_DESC_F_WRITE = 2;
/** virtq_desc.flags: the buffer holds an indirect descriptor table (§2.7.5, §2.7.5.3). */
export const VIRTQ_DESC_F_INDIRECT = 4;
/** virtq_avail.flags: the driver does not want used-buffer notifications (§2.7.6, §2.7.7). */
export const VIRTQ_AVAIL_F_NO_INTERRUPT = 1;
/** virtq_used.flags: the device does not want available-buffer notifications (§2.7.8, §2.7.10). */
export const VIRTQ_USED_F_NO_NOTIFY = 1;

/** "No MSI-X vector" in config_msix_vector / queue_msix_vector (§4.1.5.1.2). */
export const VIRTIO_MSI_NO_VECTOR = 0xffff;

/**
 * The spec's event-index test (§2.7.7.2, helper `virtq_need_event` in Appendix A virtio_queue.h):
 * true when `eventIdx` lies in the window of ring indices `[oldIdx, newIdx)` just published,
 * computed on wrapping 16-bit indices.
 */
export function vringNeedEvent(eventIdx: number, newIdx: number, oldIdx: number): boolean {
  return ((newIdx - eventIdx - 1) & 0xffff) < ((newIdx - oldIdx) & 0xffff);
}
