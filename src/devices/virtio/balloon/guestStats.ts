/**
 * The guest's memory statistics from the balloon's stats queue (virtio 1.2 §5.5.6.3): a buffer of
 * packed `struct virtio_balloon_stat {le16 tag; le64 val}` (Linux include/uapi/linux/virtio_balloon.h),
 * decoded into named fields. The buffer is guest-controlled: any length, any tags and values.
 * @module
 */
import {
  BALLOON_STAT_SIZE, VIRTIO_BALLOON_S_AVAIL, VIRTIO_BALLOON_S_CACHES, VIRTIO_BALLOON_S_HTLB_PGALLOC,
  VIRTIO_BALLOON_S_HTLB_PGFAIL, VIRTIO_BALLOON_S_MAJFLT, VIRTIO_BALLOON_S_MEMFREE, VIRTIO_BALLOON_S_MEMTOT,
  VIRTIO_BALLOON_S_MINFLT, VIRTIO_BALLOON_S_SWAP_IN, VIRTIO_BALLOON_S_SWAP_OUT,
} from './constants';

/**
 * What the guest reported; a field is absent when the guest did not send its tag. Memory amounts
 * are bytes, the rest are counts. Values above 2^53 lose precision (they are le64 in the guest).
 */
export interface BalloonGuestStats {
  /** Memory swapped in (VIRTIO_BALLOON_S_SWAP_IN), bytes. */
  swapIn?: number;
  /** Memory swapped out (VIRTIO_BALLOON_S_SWAP_OUT), bytes. */
  swapOut?: number;
  /** Major page faults (VIRTIO_BALLOON_S_MAJFLT). */
  majorFaults?: number;
  /** Minor page faults (VIRTIO_BALLOON_S_MINFLT). */
  minorFaults?: number;
  /** Memory not used for anything (VIRTIO_BALLOON_S_MEMFREE), bytes. */
  freeMemory?: number;
  /** Memory the guest has (VIRTIO_BALLOON_S_MEMTOT), bytes. */
  totalMemory?: number;
  /** Memory available for new applications without swapping (VIRTIO_BALLOON_S_AVAIL), bytes. */
  availableMemory?: number;
  /** Disk caches, reclaimable (VIRTIO_BALLOON_S_CACHES), bytes. */
  diskCaches?: number;
  /** Successful hugetlb page allocations (VIRTIO_BALLOON_S_HTLB_PGALLOC). */
  hugetlbAllocations?: number;
  /** Failed hugetlb page allocations (VIRTIO_BALLOON_S_HTLB_PGFAIL). */
  hugetlbFailures?: number;
}

/** Field of {@link BalloonGuestStats} for each tag (§5.5.6.3). */
export const BALLOON_STAT_FIELDS: Readonly<Record<number, keyof BalloonGuestStats>> = {
  [VIRTIO_BALLOON_S_SWAP_IN]: 'swapIn',
  [VIRTIO_BALLOON_S_SWAP_OUT]: 'swapOut',
  [VIRTIO_BALLOON_S_MAJFLT]: 'majorFaults',
  [VIRTIO_BALLOON_S_MINFLT]: 'minorFaults',
  [VIRTIO_BALLOON_S_MEMFREE]: 'freeMemory',
  [VIRTIO_BALLOON_S_MEMTOT]: 'totalMemory',
  [VIRTIO_BALLOON_S_AVAIL]: 'availableMemory',
  [VIRTIO_BALLOON_S_CACHES]: 'diskCaches',
  [VIRTIO_BALLOON_S_HTLB_PGALLOC]: 'hugetlbAllocations',
  [VIRTIO_BALLOON_S_HTLB_PGFAIL]: 'hugetlbFailures',
};

/** Most bytes of a stats buffer read: 409 entries, far more than the 10 tags defined. */
export const BALLOON_STATS_MAX_BYTES = 4096;

/**
 * Decode a stats buffer. Unknown tags are ignored (newer guests send more); when a tag comes
 * twice the last value wins; a trailing partial entry is ignored.
 */
export function parseGuestStats(bytes: Uint8Array): BalloonGuestStats {
  const out: BalloonGuestStats = {};
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let at = 0; at + BALLOON_STAT_SIZE <= bytes.length; at += BALLOON_STAT_SIZE) {
    const field = BALLOON_STAT_FIELDS[v.getUint16(at, true)];
    if (field) out[field] = Number(v.getBigUint64(at + 2, true));
  }
  return out;
}
