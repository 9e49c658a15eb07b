/**
 * virtio-blk (virtio 1.2 §5.2): the device, its options and protocol numbers.
 * @module
 */
export { VirtioBlock, BLOCK_QUEUE_SIZE, BLOCK_SEG_MAX, BLOCK_MAX_DISCARD_SEGMENTS, BLOCK_RESET_DRAIN_MS } from './VirtioBlock';
export type { VirtioBlockStats } from './VirtioBlock';
export { resolveBlockOptions, MAX_ID_LENGTH } from './VirtioBlockOptions';
export type { VirtioBlockOptions, ResolvedBlockOptions } from './VirtioBlockOptions';
export * from './constants';
