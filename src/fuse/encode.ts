/**
 * Encoders from host structures (struct statx, struct statfs) to the FUSE reply structures
 * (include/uapi/linux/fuse.h), at fixed offsets through DataViews.
 * @module
 */
import { ATTR, DIRENT_SIZE, ENTRY_OUT_SIZE, KSTATFS } from './abi';
import { STATFS, STATX } from './libcFs';

/** A cache timeout as FUSE carries it: whole seconds and nanoseconds. */
export interface Timeout {
  sec: number;
  nsec: number;
}

/** `seconds` (a non-negative number) as a {@link Timeout}. */
export function timeoutOf(seconds: number): Timeout {
  const sec = Math.floor(seconds);
  return { sec, nsec: Math.min(999_999_999, Math.round((seconds - sec) * 1e9)) };
}

/** The `dev:ino` key of the file a struct statx describes. */
export function statKey(stat: Uint8Array): string {
  const v = new DataView(stat.buffer, stat.byteOffset, stat.byteLength);
  return `${v.getUint32(STATX.devMajor, true)}:${v.getUint32(STATX.devMinor, true)}:${v.getBigUint64(STATX.ino, true)}`;
}

/** st_mode of a struct statx. */
export function statMode(stat: Uint8Array): number {
  return stat[STATX.mode]! | (stat[STATX.mode + 1]! << 8);
}

/**
 * Write struct fuse_attr at `off` from a struct statx. Times are copied as their 64-bit seconds
 * and 32-bit nanoseconds; `rdev` is encoded as Linux's new_encode_dev (the kernel decodes it with
 * new_decode_dev).
 */
export function writeAttr(out: DataView, off: number, stat: Uint8Array): void {
  const s = new DataView(stat.buffer, stat.byteOffset, stat.byteLength);
  const copy64 = (to: number, from: number): void => {
    out.setUint32(off + to, s.getUint32(from, true), true);
    out.setUint32(off + to + 4, s.getUint32(from + 4, true), true);
  };
  copy64(ATTR.ino, STATX.ino);
  copy64(ATTR.size, STATX.size);
  copy64(ATTR.blocks, STATX.blocks);
  copy64(ATTR.atime, STATX.atime);
  copy64(ATTR.mtime, STATX.mtime);
  copy64(ATTR.ctime, STATX.ctime);
  out.setUint32(off + ATTR.atimensec, s.getUint32(STATX.atime + 8, true), true);
  out.setUint32(off + ATTR.mtimensec, s.getUint32(STATX.mtime + 8, true), true);
  out.setUint32(off + ATTR.ctimensec, s.getUint32(STATX.ctime + 8, true), true);
  out.setUint32(off + ATTR.mode, s.getUint16(STATX.mode, true), true);
  out.setUint32(off + ATTR.nlink, s.getUint32(STATX.nlink, true), true);
  out.setUint32(off + ATTR.uid, s.getUint32(STATX.uid, true), true);
  out.setUint32(off + ATTR.gid, s.getUint32(STATX.gid, true), true);
  const major = s.getUint32(STATX.rdevMajor, true);
  const minor = s.getUint32(STATX.rdevMinor, true);
  out.setUint32(off + ATTR.rdev, ((minor & 0xff) | ((major & 0xfff) << 8) | ((minor & ~0xff) << 12)) >>> 0, true);
  out.setUint32(off + ATTR.blksize, s.getUint32(STATX.blksize, true), true);
  out.setUint32(off + ATTR.flags, 0, true);
}

/** Write struct fuse_entry_out at `off`: node id, generation 0, the two timeouts, the attributes. */
export function writeEntryOut(out: DataView, off: number, nodeid: number, stat: Uint8Array, entry: Timeout, attr: Timeout): void {
  out.setBigUint64(off, BigInt(nodeid), true);
  out.setBigUint64(off + 8, 0n, true); // generation: node ids are never reused
  out.setBigUint64(off + 16, BigInt(entry.sec), true);
  out.setBigUint64(off + 24, BigInt(attr.sec), true);
  out.setUint32(off + 32, entry.nsec, true);
  out.setUint32(off + 36, attr.nsec, true);
  writeAttr(out, off + 40, stat);
}

/** Write struct fuse_kstatfs at `off` from a struct statfs. */
export function writeKstatfs(out: DataView, off: number, st: Uint8Array): void {
  const s = new DataView(st.buffer, st.byteOffset, st.byteLength);
  const u64 = (field: number): bigint => s.getBigUint64(field, true);
  out.setBigUint64(off + KSTATFS.blocks, u64(STATFS.blocks), true);
  out.setBigUint64(off + KSTATFS.bfree, u64(STATFS.bfree), true);
  out.setBigUint64(off + KSTATFS.bavail, u64(STATFS.bavail), true);
  out.setBigUint64(off + KSTATFS.files, u64(STATFS.files), true);
  out.setBigUint64(off + KSTATFS.ffree, u64(STATFS.ffree), true);
  const bsize = Number(u64(STATFS.bsize));
  const frsize = Number(u64(STATFS.frsize)) || bsize;
  out.setUint32(off + KSTATFS.bsize, bsize, true);
  out.setUint32(off + KSTATFS.namelen, Number(u64(STATFS.namelen)), true);
  out.setUint32(off + KSTATFS.frsize, frsize, true);
}

/** FUSE_DIRENT_SIZE: a fuse_dirent with an `n`-byte name, padded to 8 bytes. */
export function direntSize(n: number): number {
  return (DIRENT_SIZE + n + 7) & ~7;
}

/** FUSE_DIRENTPLUS_SIZE: a fuse_direntplus with an `n`-byte name, padded to 8 bytes. */
export function direntplusSize(n: number): number {
  return ENTRY_OUT_SIZE + direntSize(n);
}

/** Write struct fuse_dirent {ino, off, namelen, type, name} at `off` (the padding stays zero). */
export function writeDirent(out: Uint8Array, off: number, ino: bigint, next: bigint, type: number, name: Uint8Array): void {
  const v = new DataView(out.buffer, out.byteOffset + off, DIRENT_SIZE);
  v.setBigUint64(0, ino, true);
  v.setBigUint64(8, next, true);
  v.setUint32(16, name.length, true);
  v.setUint32(20, type, true);
  out.set(name, off + DIRENT_SIZE);
}
