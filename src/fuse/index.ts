/**
 * A FUSE server in TypeScript (include/uapi/linux/fuse.h, protocol 7.37) over a host directory,
 * confined to it: the engine behind `VirtioFs`, usable over any transport that delivers requests
 * as {@link FuseMessage}s.
 * @module
 */
export * from './abi';
export { Allowlist, AllowlistError, parseAllowlistPath, componentKey } from './Allowlist';
export type { ListingFilter } from './Allowlist';
export { FuseError } from './FuseError';
export { FuseServer, FUSE_MAX_WRITE, FUSE_MAX_REQUEST, FUSE_MAX_BACKGROUND } from './FuseServer';
export type { CachePolicy, FuseMessage, FuseServerOptions, FuseServerStats } from './FuseServer';
export { PassthroughFs, ASYNC_IO_MIN_BYTES, PATH_MAX, NAME_MAX } from './PassthroughFs';
export type { Entry, FsContext, PassthroughFsOptions, SetattrArgs } from './PassthroughFs';
export { Inode, InodeTable } from './InodeTable';
export { HandleTable } from './HandleTable';
export type { Handle } from './HandleTable';
