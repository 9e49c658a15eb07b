/**
 * Linux numbers the disk layer passes to the kernel: open(2) flags, fallocate(2) modes, statx(2)
 * masks and layout, and the errno values it tells apart. x86_64 and aarch64 share these values.
 * @module
 */

// ---- open(2) flags (include/uapi/asm-generic/fcntl.h; x86_64 and aarch64 differ only in O_DIRECT, see below) ----

/** Open for reading only. */
export const O_RDONLY = 0o0;
/** Open for reading and writing. */
export const O_RDWR = 0o2;
/** Close the descriptor on exec. */
export const O_CLOEXEC = 0o2000000;
/**
 * Bypass the page cache: I/O goes straight between the device and the caller's buffers, which
 * must be aligned (asm-generic/fcntl.h 0o40000 on x86_64; aarch64 uses 0o200000,
 * arch/arm64/include/uapi/asm/fcntl.h).
 */
export const O_DIRECT = process.arch === 'arm64' ? 0o200000 : 0o40000;

// ---- fallocate(2) modes (include/uapi/linux/falloc.h) ----

/** Allocate or punch without changing the file size. */
export const FALLOC_FL_KEEP_SIZE = 0x01;
/** Deallocate the range (must be ORed with KEEP_SIZE); reads return zeroes. */
export const FALLOC_FL_PUNCH_HOLE = 0x02;
/** Zero the range, keeping it allocated (as unwritten extents where the file system can). */
export const FALLOC_FL_ZERO_RANGE = 0x10;

// ---- lseek(2) (include/uapi/linux/fs.h) ----

/** Seek relative to the end of the file: `lseek(fd, 0, SEEK_END)` is the size of a file or block device. */
export const SEEK_END = 2;

// ---- preadv2(2) flags (include/uapi/linux/fs.h) ----

/** Per-call non-blocking: fail with EAGAIN instead of waiting for the disk (data not in the page cache). */
export const RWF_NOWAIT = 0x00000008;

// ---- statx(2) (include/uapi/linux/stat.h, fcntl.h) ----

/** statx on the descriptor itself (`pathname` ""). */
export const AT_EMPTY_PATH = 0x1000;
/** Ask for stx_size. */
export const STATX_SIZE = 0x200;
/** Ask for stx_blocks. */
export const STATX_BLOCKS = 0x400;
/** Ask for stx_dio_mem_align and stx_dio_offset_align (Linux 6.1+). */
export const STATX_DIOALIGN = 0x2000;
/** sizeof(struct statx). */
export const STATX_SIZEOF = 256;
/** Offsets in struct statx: stx_mask u32, stx_size u64, stx_blocks u64, stx_dio_mem_align u32, stx_dio_offset_align u32. */
export const STATX_OFF = { mask: 0, size: 40, blocks: 48, dioMemAlign: 152, dioOffsetAlign: 156 } as const;

// ---- errno values (include/uapi/asm-generic/errno-base.h, errno.h) ----

export const EINTR = 4;
export const EIO = 5;
export const EBADF = 9;
export const EINVAL = 22;
export const ENOSPC = 28;
export const EROFS = 30;
export const ENOSYS = 38;
export const EOPNOTSUPP = 95;
export const ECANCELED = 125;

/** A 512-byte sector: the unit of virtio-blk addresses and of st_blocks. */
export const SECTOR_SIZE = 512;
/** Buffer alignment assumed for O_DIRECT when statx cannot report it (the page size). */
export const DEFAULT_DIO_MEM_ALIGN = 4096;
