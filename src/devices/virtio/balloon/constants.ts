/**
 * virtio-balloon numbers (virtio 1.2 §5.5, OASIS virtio-v1.2-cs01; the same names as Linux's
 * include/uapi/linux/virtio_balloon.h): feature bits, queue numbers, the configuration layout
 * and the memory statistics tags.
 * @module
 */

// ---- Feature bits (§5.5.3), as 64-bit masks ----

/** The driver must tell the host before reusing a page from the balloon (bit 0). Not offered: a discarded page refills with zeros on touch. */
export const VIRTIO_BALLOON_F_MUST_TELL_HOST = 1n << 0n;
/** A virtqueue for reporting guest memory statistics is present (bit 1). */
export const VIRTIO_BALLOON_F_STATS_VQ = 1n << 1n;
/** The driver may deflate the balloon when the guest runs out of memory (bit 2). */
export const VIRTIO_BALLOON_F_DEFLATE_ON_OOM = 1n << 2n;
/** Free page hinting (bit 3). Not offered. */
export const VIRTIO_BALLOON_F_FREE_PAGE_HINT = 1n << 3n;
/** The device is told the value free pages are poisoned with (bit 4). Not offered. */
export const VIRTIO_BALLOON_F_PAGE_POISON = 1n << 4n;
/** Free page reporting (bit 5). Not offered. */
export const VIRTIO_BALLOON_F_REPORTING = 1n << 5n;

// ---- Virtqueues (§5.5.2) ----

/** inflateq: the driver gives pages to the host. */
export const BALLOON_INFLATEQ = 0;
/** deflateq: the driver takes pages back. */
export const BALLOON_DEFLATEQ = 1;
/** statsq: memory statistics (only with VIRTIO_BALLOON_F_STATS_VQ). */
export const BALLOON_STATSQ = 2;

// ---- Page frames (§5.5.6) ----

/** Page frame numbers in inflate/deflate buffers count 4 KiB pages (VIRTIO_BALLOON_PFN_SHIFT 12). */
export const VIRTIO_BALLOON_PFN_SHIFT = 12;
/** Bytes per balloon page. */
export const BALLOON_PAGE_SIZE = 1 << VIRTIO_BALLOON_PFN_SHIFT;
/** Bytes per page frame number in an inflate/deflate buffer (le32, §5.5.6). */
export const BALLOON_PFN_SIZE = 4;

// ---- Configuration layout (§5.5.4 struct virtio_balloon_config) ----

/** Byte offsets of the fields kvmkit exposes: `le32 num_pages` (device-set target), `le32 actual` (driver-set). */
export const BALLOON_CONFIG = {
  numPages: 0,
  actual: 4,
  /** Bytes exposed: free_page_hint_cmd_id and poison_val exist only with features not offered. */
  length: 8,
} as const;

// ---- Memory statistics (§5.5.6.3 struct virtio_balloon_stat {le16 tag; le64 val} packed) ----

/** Size of one packed `struct virtio_balloon_stat`. */
export const BALLOON_STAT_SIZE = 10;
/** Amount of memory swapped in, bytes. */
export const VIRTIO_BALLOON_S_SWAP_IN = 0;
/** Amount of memory swapped out, bytes. */
export const VIRTIO_BALLOON_S_SWAP_OUT = 1;
/** Major page faults. */
export const VIRTIO_BALLOON_S_MAJFLT = 2;
/** Minor page faults. */
export const VIRTIO_BALLOON_S_MINFLT = 3;
/** Memory not used for any purpose, bytes. */
export const VIRTIO_BALLOON_S_MEMFREE = 4;
/** Memory available to the guest, bytes. */
export const VIRTIO_BALLOON_S_MEMTOT = 5;
/** Memory available for new applications without swapping (estimate), bytes. */
export const VIRTIO_BALLOON_S_AVAIL = 6;
/** Memory in the disk caches, reclaimable, bytes. */
export const VIRTIO_BALLOON_S_CACHES = 7;
/** Successful hugetlb page allocations. */
export const VIRTIO_BALLOON_S_HTLB_PGALLOC = 8;
/** Failed hugetlb page allocations. */
export const VIRTIO_BALLOON_S_HTLB_PGFAIL = 9;
