/**
 * Disk images behind block devices: the {@link DiskImage} contract and {@link RawDiskImage}, a raw
 * host file (sparse or fully allocated, optionally O_DIRECT) served by its own I/O threads.
 * @module
 */
export { DiskError } from './DiskImage';
export type { DiskImage, WriteZeroesOptions } from './DiskImage';
export { RawDiskImage, checkBlockSize, DEFAULT_IO_THREADS, DEFAULT_DIRECT_IO_THREADS, MAX_BLOCK_SIZE } from './RawDiskImage';
export type { RawDiskImageOptions } from './RawDiskImage';
export { DEFAULT_INLINE_READ_MAX } from './nowaitRead';
