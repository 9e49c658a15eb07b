/**
 * The FUSE wire protocol as the Linux kernel speaks it: opcodes, flag bits, structure sizes and
 * field offsets, all from include/uapi/linux/fuse.h (protocol 7.38 header; kvmkit speaks 7.37, the
 * version Linux 6.1 negotiates, and answers with full 7.31+ structure sizes). Every structure is
 * little-endian on the x86_64 and aarch64 hosts kvmkit runs on, and virtio-fs carries it unchanged
 * (virtio 1.2 §5.11.6: "the FUSE protocol").
 * @module
 */

/** FUSE_KERNEL_VERSION: the major version (fuse.h). */
export const FUSE_KERNEL_VERSION = 7;
/** The minor version kvmkit answers INIT with: 7.37 (Linux 6.1's FUSE_KERNEL_MINOR_VERSION). */
export const FUSE_KERNEL_MINOR_VERSION = 37;
/** Oldest minor version served: 7.27 (crosvm's floor; every structure has its full size since 7.23). */
export const FUSE_MIN_MINOR_VERSION = 27;
/** FUSE_ROOT_ID: the node id of the share's root (fuse.h). */
export const FUSE_ROOT_ID = 1;

/** enum fuse_opcode (fuse.h). */
export const FuseOpcode = {
  LOOKUP: 1,
  FORGET: 2,
  GETATTR: 3,
  SETATTR: 4,
  READLINK: 5,
  SYMLINK: 6,
  MKNOD: 8,
  MKDIR: 9,
  UNLINK: 10,
  RMDIR: 11,
  RENAME: 12,
  LINK: 13,
  OPEN: 14,
  READ: 15,
  WRITE: 16,
  STATFS: 17,
  RELEASE: 18,
  FSYNC: 20,
  SETXATTR: 21,
  GETXATTR: 22,
  LISTXATTR: 23,
  REMOVEXATTR: 24,
  FLUSH: 25,
  INIT: 26,
  OPENDIR: 27,
  READDIR: 28,
  RELEASEDIR: 29,
  FSYNCDIR: 30,
  GETLK: 31,
  SETLK: 32,
  SETLKW: 33,
  ACCESS: 34,
  CREATE: 35,
  INTERRUPT: 36,
  BMAP: 37,
  DESTROY: 38,
  IOCTL: 39,
  POLL: 40,
  NOTIFY_REPLY: 41,
  BATCH_FORGET: 42,
  FALLOCATE: 43,
  READDIRPLUS: 44,
  RENAME2: 45,
  LSEEK: 46,
  COPY_FILE_RANGE: 47,
  SETUPMAPPING: 48,
  REMOVEMAPPING: 49,
  SYNCFS: 50,
  TMPFILE: 51,
} as const;

/** INIT flags (fuse.h "INIT request/reply flags"); bits 32..63 travel in `flags2`. */
export const FuseInitFlag = {
  ASYNC_READ: 1n << 0n,
  POSIX_LOCKS: 1n << 1n,
  ATOMIC_O_TRUNC: 1n << 3n,
  EXPORT_SUPPORT: 1n << 4n,
  BIG_WRITES: 1n << 5n,
  DONT_MASK: 1n << 6n,
  FLOCK_LOCKS: 1n << 10n,
  AUTO_INVAL_DATA: 1n << 12n,
  DO_READDIRPLUS: 1n << 13n,
  READDIRPLUS_AUTO: 1n << 14n,
  ASYNC_DIO: 1n << 15n,
  WRITEBACK_CACHE: 1n << 16n,
  PARALLEL_DIROPS: 1n << 18n,
  HANDLE_KILLPRIV: 1n << 19n,
  POSIX_ACL: 1n << 20n,
  MAX_PAGES: 1n << 22n,
  CACHE_SYMLINKS: 1n << 23n,
  SETXATTR_EXT: 1n << 29n,
  INIT_EXT: 1n << 30n,
} as const;

/** fuse_setattr_in.valid bits (fuse.h FATTR_*). */
export const FATTR = {
  MODE: 1 << 0,
  UID: 1 << 1,
  GID: 1 << 2,
  SIZE: 1 << 3,
  ATIME: 1 << 4,
  MTIME: 1 << 5,
  FH: 1 << 6,
  ATIME_NOW: 1 << 7,
  MTIME_NOW: 1 << 8,
  LOCKOWNER: 1 << 9,
  CTIME: 1 << 10,
  KILL_SUIDGID: 1 << 11,
} as const;

/** fuse_open_out.open_flags (fuse.h FOPEN_*). */
export const FOPEN = {
  DIRECT_IO: 1 << 0,
  KEEP_CACHE: 1 << 1,
  NONSEEKABLE: 1 << 2,
  CACHE_DIR: 1 << 3,
} as const;

/** fuse_getattr_in.getattr_flags: `fh` is valid (fuse.h FUSE_GETATTR_FH). */
export const FUSE_GETATTR_FH = 1 << 0;
/** fuse_fsync_in.fsync_flags: sync data only (fuse.h FUSE_FSYNC_FDATASYNC). */
export const FUSE_FSYNC_FDATASYNC = 1 << 0;

// ---- structure sizes (fuse.h) ----

/** sizeof(struct fuse_in_header): len u32, opcode u32, unique u64, nodeid u64, uid, gid, pid u32, total_extlen u16, padding u16. */
export const IN_HEADER_SIZE = 40;
/** sizeof(struct fuse_out_header): len u32, error i32, unique u64. */
export const OUT_HEADER_SIZE = 16;
/** sizeof(struct fuse_attr). */
export const ATTR_SIZE = 88;
/** sizeof(struct fuse_entry_out): nodeid, generation, entry_valid, attr_valid u64, two nsec u32, fuse_attr. */
export const ENTRY_OUT_SIZE = 40 + ATTR_SIZE;
/** sizeof(struct fuse_attr_out): attr_valid u64, attr_valid_nsec u32, dummy u32, fuse_attr. */
export const ATTR_OUT_SIZE = 16 + ATTR_SIZE;
/** sizeof(struct fuse_open_out): fh u64, open_flags u32, padding u32. */
export const OPEN_OUT_SIZE = 16;
/** sizeof(struct fuse_init_in) since 7.36 (major, minor, max_readahead, flags, flags2, unused[11]). */
export const INIT_IN_SIZE = 64;
/** The part of fuse_init_in every kernel sends: major, minor, max_readahead, flags. */
export const INIT_IN_COMPAT_SIZE = 16;
/** sizeof(struct fuse_init_out) since 7.23 (max_pages, map_alignment, flags2, unused[7] at the end). */
export const INIT_OUT_SIZE = 64;
/** sizeof(struct fuse_write_out) and fuse_getxattr_out and fuse_lseek_out. */
export const WRITE_OUT_SIZE = 8;
/** sizeof(struct fuse_getxattr_out): size u32, padding u32. */
export const GETXATTR_OUT_SIZE = 8;
/** sizeof(struct fuse_lseek_out): offset u64. */
export const LSEEK_OUT_SIZE = 8;
/** sizeof(struct fuse_statfs_out) = sizeof(struct fuse_kstatfs). */
export const STATFS_OUT_SIZE = 80;
/** sizeof(struct fuse_dirent) without the name (FUSE_NAME_OFFSET). */
export const DIRENT_SIZE = 24;
/** FUSE_NAME_OFFSET_DIRENTPLUS: fuse_entry_out then fuse_dirent. */
export const DIRENTPLUS_SIZE = ENTRY_OUT_SIZE + DIRENT_SIZE;

/** Request argument sizes (fuse.h `struct fuse_*_in`). */
export const IN_SIZE = {
  forget: 8, // nlookup u64
  batchForget: 8, // count u32, dummy u32
  forgetOne: 16, // nodeid u64, nlookup u64
  getattr: 16, // getattr_flags u32, dummy u32, fh u64
  setattr: 88,
  mknod: 16, // mode, rdev, umask, padding
  mkdir: 8, // mode, umask
  rename: 8, // newdir u64
  rename2: 16, // newdir u64, flags u32, padding u32
  link: 8, // oldnodeid u64
  open: 8, // flags u32, open_flags u32
  create: 16, // flags, mode, umask, open_flags
  release: 24, // fh u64, flags u32, release_flags u32, lock_owner u64
  flush: 24, // fh u64, unused u32, padding u32, lock_owner u64
  read: 40, // fh, offset u64, size u32, read_flags u32, lock_owner u64, flags u32, padding u32
  write: 40, // same layout as read
  fsync: 16, // fh u64, fsync_flags u32, padding u32
  setxattr: 8, // size u32, flags u32 (FUSE_COMPAT_SETXATTR_IN_SIZE: SETXATTR_EXT is not negotiated)
  getxattr: 8, // size u32, padding u32
  access: 8, // mask u32, padding u32
  interrupt: 8, // unique u64
  fallocate: 32, // fh, offset, length u64, mode u32, padding u32
  lseek: 24, // fh, offset u64, whence u32, padding u32
} as const;

/** Offsets in struct fuse_setattr_in. */
export const SETATTR_IN = {
  valid: 0, fh: 8, size: 16, lockOwner: 24, atime: 32, mtime: 40, ctime: 48,
  atimensec: 56, mtimensec: 60, ctimensec: 64, mode: 68, uid: 76, gid: 80,
} as const;

/** Offsets in struct fuse_attr. */
export const ATTR = {
  ino: 0, size: 8, blocks: 16, atime: 24, mtime: 32, ctime: 40, atimensec: 48, mtimensec: 52, ctimensec: 56,
  mode: 60, nlink: 64, uid: 68, gid: 72, rdev: 76, blksize: 80, flags: 84,
} as const;

/** Offsets in struct fuse_init_out. */
export const INIT_OUT = {
  major: 0, minor: 4, maxReadahead: 8, flags: 12, maxBackground: 16, congestionThreshold: 18,
  maxWrite: 20, timeGran: 24, maxPages: 28, mapAlignment: 30, flags2: 32,
} as const;

/** Offsets in struct fuse_kstatfs. */
export const KSTATFS = {
  blocks: 0, bfree: 8, bavail: 16, files: 24, ffree: 32, bsize: 40, namelen: 44, frsize: 48,
} as const;
