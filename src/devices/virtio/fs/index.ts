/**
 * virtio-fs: a host directory shared with the guest (virtio 1.2 §5.11), served by src/fuse.
 * @module
 */
export { VirtioFs, FS_QUEUE_SIZE, FS_REQUEST_QUEUES, FS_CONFIG_SIZE, FS_RESET_DRAIN_MS } from './VirtioFs';
export { DEFAULT_POLL_MAX_NS } from '../QueuePolling';
export type { VirtioFsStats } from './VirtioFs';
export { resolveFsOptions, MAX_TAG_BYTES, DEFAULT_FS_TIMEOUT } from './VirtioFsOptions';
export type { VirtioFsOptions, ResolvedFsOptions, CachePolicy } from './VirtioFsOptions';
