/**
 * virtio-blk numbers (virtio 1.2 §5.2, OASIS virtio-v1.2-cs01; the same names as Linux's
 * include/uapi/linux/virtio_blk.h): feature bits, request types, status values and the layouts
 * of the configuration space, the request header and discard/write-zeroes segments.
 * @module
 */

// ---- Feature bits (§5.2.3), as 64-bit masks ----

/** Maximum size of any single segment is in `size_max` (bit 1). Not offered: any size is served. */
export const VIRTIO_BLK_F_SIZE_MAX = 1n << 1n;
/** Maximum number of segments in a request is in `seg_max` (bit 2). */
export const VIRTIO_BLK_F_SEG_MAX = 1n << 2n;
/** Disk-style geometry in `geometry` (bit 4). Not offered. */
export const VIRTIO_BLK_F_GEOMETRY = 1n << 4n;
/** Device is read-only (bit 5). */
export const VIRTIO_BLK_F_RO = 1n << 5n;
/** Block size of disk is in `blk_size` (bit 6). */
export const VIRTIO_BLK_F_BLK_SIZE = 1n << 6n;
/** Cache flush command support (bit 9). */
export const VIRTIO_BLK_F_FLUSH = 1n << 9n;
/** Optimal I/O alignment in `topology` (bit 10). Not offered. */
export const VIRTIO_BLK_F_TOPOLOGY = 1n << 10n;
/** Writeback/writethrough toggle in `writeback` (bit 11). Not offered: the cache is writeback, FLUSH commits. */
export const VIRTIO_BLK_F_CONFIG_WCE = 1n << 11n;
/** More than one request queue (bit 12). Not offered. */
export const VIRTIO_BLK_F_MQ = 1n << 12n;
/** DISCARD command, limits in `max_discard_*` (bit 13). */
export const VIRTIO_BLK_F_DISCARD = 1n << 13n;
/** WRITE_ZEROES command, limits in `max_write_zeroes_*` (bit 14). */
export const VIRTIO_BLK_F_WRITE_ZEROES = 1n << 14n;

// ---- Request types (§5.2.6) ----

/** Read sectors into the device-writable data. */
export const VIRTIO_BLK_T_IN = 0;
/** Write the device-readable data to sectors. */
export const VIRTIO_BLK_T_OUT = 1;
/** Commit completed writes to stable storage. */
export const VIRTIO_BLK_T_FLUSH = 4;
/** Fetch the device ID string (20 bytes, NUL-padded). */
export const VIRTIO_BLK_T_GET_ID = 8;
/** Storage lifetime information (needs VIRTIO_BLK_F_LIFETIME; unsupported here). */
export const VIRTIO_BLK_T_GET_LIFETIME = 10;
/** Discard ranges (segments). */
export const VIRTIO_BLK_T_DISCARD = 11;
/** Zero ranges (segments). */
export const VIRTIO_BLK_T_WRITE_ZEROES = 13;
/** Secure erase (needs VIRTIO_BLK_F_SECURE_ERASE; unsupported here). */
export const VIRTIO_BLK_T_SECURE_ERASE = 14;

// ---- Status byte (§5.2.6) ----

/** Success. */
export const VIRTIO_BLK_S_OK = 0;
/** Device or driver error. */
export const VIRTIO_BLK_S_IOERR = 1;
/** Request unsupported by the device. */
export const VIRTIO_BLK_S_UNSUPP = 2;

/** `flags.unmap` of a discard/write-zeroes segment (§5.2.6): write-zeroes may deallocate. */
export const VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP = 1;

// ---- Layouts ----

/** The protocol's sector: `sector` fields and `capacity` count 512-byte units, whatever blk_size is (§5.2.5). */
export const VIRTIO_BLK_SECTOR_SIZE = 512;
/** struct virtio_blk_req header: le32 type, le32 reserved, le64 sector (§5.2.6). */
export const VIRTIO_BLK_REQ_HEADER_SIZE = 16;
/** struct virtio_blk_discard_write_zeroes: le64 sector, le32 num_sectors, le32 flags (§5.2.6). */
export const VIRTIO_BLK_SEGMENT_SIZE = 16;
/** Length of the GET_ID string (§5.2.6: "up to 20 bytes long"). */
export const VIRTIO_BLK_ID_BYTES = 20;

/** Byte offsets in struct virtio_blk_config (§5.2.4). */
export const BLK_CONFIG = {
  capacity: 0, // le64, 512-byte sectors
  sizeMax: 8, // le32
  segMax: 12, // le32
  geometry: 16, // le16 cylinders, u8 heads, u8 sectors
  blkSize: 20, // le32
  topology: 24, // u8 physical_block_exp, u8 alignment_offset, le16 min_io_size, le32 opt_io_size
  writeback: 32, // u8
  numQueues: 34, // le16 (after u8 unused0)
  maxDiscardSectors: 36, // le32
  maxDiscardSeg: 40, // le32
  discardSectorAlignment: 44, // le32
  maxWriteZeroesSectors: 48, // le32
  maxWriteZeroesSeg: 52, // le32
  writeZeroesMayUnmap: 56, // u8, then u8 unused1[3]
  /** Bytes up to and including unused1 (secure erase and zoned fields follow; their features are not offered). */
  length: 60,
} as const;
