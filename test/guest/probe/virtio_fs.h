/*
 * virtio-fs (virtio 1.2 §5.11) and the FUSE wire format it carries, for the probe's driver-side
 * client (virtio_fs.c). FUSE layouts and numbers are those of Linux's
 * include/uapi/linux/fuse.h (protocol 7.37, as in Linux 6.1); the flag values of open(2),
 * renameat2(2), setxattr(2), fallocate(2) and lseek(2) are Linux x86_64's
 * (include/uapi/asm-generic/fcntl.h, linux/fs.h, linux/xattr.h, linux/falloc.h).
 */
#ifndef PROBE_VIRTIO_FS_H
#define PROBE_VIRTIO_FS_H
#include "probe.h"

/* virtio 1.2 §5.11.1-§5.11.4 */
#define VIRTIO_ID_FS			26
#define VIRTIO_FS_F_NOTIFICATION	0
#define VIRTIO_FS_CFG_TAG		0	/* u8 tag[36], UTF-8, NUL-padded if shorter */
#define VIRTIO_FS_TAG_BYTES		36
#define VIRTIO_FS_CFG_NUM_REQUEST_QUEUES 36	/* le32 */
#define VIRTIO_FS_HIPRIO_QUEUE		0
#define VIRTIO_FS_REQUEST_QUEUE		1	/* the first request queue */

/* fuse.h: version and root */
#define FUSE_KERNEL_VERSION		7
#define FUSE_LINUX61_MINOR		37
#define FUSE_ROOT_ID			1

/* fuse.h enum fuse_opcode */
#define FUSE_LOOKUP		1
#define FUSE_FORGET		2
#define FUSE_GETATTR		3
#define FUSE_SETATTR		4
#define FUSE_READLINK		5
#define FUSE_SYMLINK		6
#define FUSE_MKNOD		8
#define FUSE_MKDIR		9
#define FUSE_UNLINK		10
#define FUSE_RMDIR		11
#define FUSE_RENAME		12
#define FUSE_LINK		13
#define FUSE_OPEN		14
#define FUSE_READ		15
#define FUSE_WRITE		16
#define FUSE_STATFS		17
#define FUSE_RELEASE		18
#define FUSE_FSYNC		20
#define FUSE_SETXATTR		21
#define FUSE_GETXATTR		22
#define FUSE_LISTXATTR		23
#define FUSE_REMOVEXATTR	24
#define FUSE_FLUSH		25
#define FUSE_INIT		26
#define FUSE_OPENDIR		27
#define FUSE_READDIR		28
#define FUSE_RELEASEDIR		29
#define FUSE_FSYNCDIR		30
#define FUSE_ACCESS		34
#define FUSE_CREATE		35
#define FUSE_INTERRUPT		36
#define FUSE_DESTROY		38
#define FUSE_BATCH_FORGET	42
#define FUSE_FALLOCATE		43
#define FUSE_READDIRPLUS	44
#define FUSE_RENAME2		45
#define FUSE_LSEEK		46

/* fuse.h INIT flags (fuse_init_in.flags; flags2 holds bits 32..63) */
#define FUSE_ASYNC_READ		(1u << 0)
#define FUSE_POSIX_LOCKS	(1u << 1)
#define FUSE_ATOMIC_O_TRUNC	(1u << 3)
#define FUSE_EXPORT_SUPPORT	(1u << 4)
#define FUSE_BIG_WRITES		(1u << 5)
#define FUSE_DONT_MASK		(1u << 6)
#define FUSE_FLOCK_LOCKS	(1u << 10)
#define FUSE_HAS_IOCTL_DIR	(1u << 11)
#define FUSE_AUTO_INVAL_DATA	(1u << 12)
#define FUSE_DO_READDIRPLUS	(1u << 13)
#define FUSE_READDIRPLUS_AUTO	(1u << 14)
#define FUSE_ASYNC_DIO		(1u << 15)
#define FUSE_WRITEBACK_CACHE	(1u << 16)
#define FUSE_PARALLEL_DIROPS	(1u << 18)
#define FUSE_HANDLE_KILLPRIV	(1u << 19)
#define FUSE_ABORT_ERROR	(1u << 21)
#define FUSE_MAX_PAGES		(1u << 22)
#define FUSE_CACHE_SYMLINKS	(1u << 23)
#define FUSE_EXPLICIT_INVAL_DATA (1u << 25)
#define FUSE_HANDLE_KILLPRIV_V2	(1u << 28)
#define FUSE_SETXATTR_EXT	(1u << 29)
#define FUSE_INIT_EXT		(1u << 30)

/* fuse.h fuse_setattr_in.valid */
#define FATTR_MODE		(1u << 0)
#define FATTR_UID		(1u << 1)
#define FATTR_GID		(1u << 2)
#define FATTR_SIZE		(1u << 3)
#define FATTR_ATIME		(1u << 4)
#define FATTR_MTIME		(1u << 5)

/* fuse.h */
#define FUSE_FSYNC_FDATASYNC	(1u << 0)
#define FUSE_COMPAT_SETXATTR_IN_SIZE 8
#define FUSE_COMPAT_INIT_IN_SIZE 16	/* fuse_init_in up to flags (before 7.36) */

/* Linux x86_64 flag values */
#define L_O_RDONLY		0
#define L_O_WRONLY		01
#define L_O_RDWR		02
#define L_O_CREAT		0100
#define L_O_EXCL		0200
#define L_O_TRUNC		01000
#define L_O_DIRECTORY		0200000
#define L_O_NOFOLLOW		0400000
#define L_S_IFMT		0170000
#define L_S_IFREG		0100000
#define L_S_IFDIR		0040000
#define L_S_IFLNK		0120000
#define L_S_IFIFO		0010000
#define L_RENAME_NOREPLACE	1
#define L_RENAME_EXCHANGE	2
#define L_XATTR_CREATE		1
#define L_XATTR_REPLACE		2
#define L_FALLOC_FL_KEEP_SIZE	1
#define L_FALLOC_FL_PUNCH_HOLE	2
#define L_SEEK_SET		0
#define L_SEEK_DATA		3
#define L_SEEK_HOLE		4
#define L_R_OK			4
#define L_W_OK			2
#define L_X_OK			1
#define L_F_OK			0

struct fuse_attr {
	u64 ino, size, blocks, atime, mtime, ctime;
	u32 atimensec, mtimensec, ctimensec;
	u32 mode, nlink, uid, gid, rdev, blksize, flags;
};

struct fuse_kstatfs {
	u64 blocks, bfree, bavail, files, ffree;
	u32 bsize, namelen, frsize, padding;
	u32 spare[6];
};

struct fuse_entry_out {
	u64 nodeid, generation, entry_valid, attr_valid;
	u32 entry_valid_nsec, attr_valid_nsec;
	struct fuse_attr attr;
};

struct fuse_forget_in { u64 nlookup; };
struct fuse_forget_one { u64 nodeid, nlookup; };
struct fuse_batch_forget_in { u32 count, dummy; };
struct fuse_getattr_in { u32 getattr_flags, dummy; u64 fh; };
struct fuse_attr_out { u64 attr_valid; u32 attr_valid_nsec, dummy; struct fuse_attr attr; };
struct fuse_mkdir_in { u32 mode, umask; };
struct fuse_mknod_in { u32 mode, rdev, umask, padding; };
struct fuse_rename_in { u64 newdir; };
struct fuse_rename2_in { u64 newdir; u32 flags, padding; };
struct fuse_link_in { u64 oldnodeid; };

struct fuse_setattr_in {
	u32 valid, padding;
	u64 fh, size, lock_owner, atime, mtime, ctime;
	u32 atimensec, mtimensec, ctimensec, mode, unused4, uid, gid, unused5;
};

struct fuse_open_in { u32 flags, open_flags; };
struct fuse_create_in { u32 flags, mode, umask, open_flags; };
struct fuse_open_out { u64 fh; u32 open_flags, padding; };
struct fuse_release_in { u64 fh; u32 flags, release_flags; u64 lock_owner; };
struct fuse_flush_in { u64 fh; u32 unused, padding; u64 lock_owner; };
struct fuse_read_in { u64 fh, offset; u32 size, read_flags; u64 lock_owner; u32 flags, padding; };
struct fuse_write_in { u64 fh, offset; u32 size, write_flags; u64 lock_owner; u32 flags, padding; };
struct fuse_write_out { u32 size, padding; };
struct fuse_statfs_out { struct fuse_kstatfs st; };
struct fuse_fsync_in { u64 fh; u32 fsync_flags, padding; };
struct fuse_setxattr_in { u32 size, flags, setxattr_flags, padding; };
struct fuse_getxattr_in { u32 size, padding; };
struct fuse_getxattr_out { u32 size, padding; };
struct fuse_access_in { u32 mask, padding; };

struct fuse_init_in {
	u32 major, minor, max_readahead, flags, flags2;
	u32 unused[11];
};

struct fuse_init_out {
	u32 major, minor, max_readahead, flags;
	u16 max_background, congestion_threshold;
	u32 max_write, time_gran;
	u16 max_pages, map_alignment;
	u32 flags2;
	u32 unused[7];
};

struct fuse_fallocate_in { u64 fh, offset, length; u32 mode, padding; };
struct fuse_lseek_in { u64 fh, offset; u32 whence, padding; };
struct fuse_lseek_out { u64 offset; };

struct fuse_in_header {
	u32 len, opcode;
	u64 unique, nodeid;
	u32 uid, gid, pid;
	u16 total_extlen, padding;
};

struct fuse_out_header {
	u32 len;
	int32_t error;
	u64 unique;
};

/* READDIR records: fuse_dirent, name, padded to 8 bytes; READDIRPLUS: fuse_entry_out first */
struct fuse_dirent { u64 ino, off; u32 namelen, type; };
#define FUSE_DIRENT_ALIGN(x)	(((x) + 7) & ~7u)

#endif
