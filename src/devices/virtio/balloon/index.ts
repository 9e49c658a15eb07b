/**
 * virtio-balloon (virtio 1.2 §5.5): the device, its stats and page-frame decoding, and its numbers.
 * @module
 */
export {
  VirtioBalloon, BalloonError, BALLOON_QUEUE_SIZE, BALLOON_STATS_QUEUE_SIZE, BALLOON_STATS_TIMEOUT_MS, BALLOON_MAX_BYTES,
} from './VirtioBalloon';
export type { VirtioBalloonOptions, BalloonStats, VirtioBalloonCounters, BalloonChange } from './VirtioBalloon';
export { parseGuestStats, BALLOON_STAT_FIELDS, BALLOON_STATS_MAX_BYTES } from './guestStats';
export type { BalloonGuestStats } from './guestStats';
export { pageFrameRuns } from './pageFrames';
export type { PageRun } from './pageFrames';
export * from './constants';
