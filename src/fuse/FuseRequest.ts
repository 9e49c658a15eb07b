/**
 * Reading a FUSE request out of a descriptor chain: struct fuse_in_header, then the opcode's
 * arguments (include/uapi/linux/fuse.h). The bytes are guest-controlled: every read is checked
 * against the request's length and a short or malformed request is a {@link FuseError} EINVAL.
 * @module
 */
import { IN_HEADER_SIZE } from './abi';
import { fail } from './FuseError';
import { E } from './libcFs';

/** struct fuse_in_header, decoded. */
export interface InHeader {
  /** Bytes of the whole request (header included), as the guest claims. */
  len: number;
  opcode: number;
  unique: bigint;
  /** Node id, or -1 when it does not fit a safe integer (no such node id exists). */
  nodeid: number;
  uid: number;
  gid: number;
  pid: number;
}

/** Decode a fuse_in_header from its 40 bytes. */
export function decodeInHeader(b: Uint8Array): InHeader {
  const v = new DataView(b.buffer, b.byteOffset, IN_HEADER_SIZE);
  return {
    len: v.getUint32(0, true),
    opcode: v.getUint32(4, true),
    unique: v.getBigUint64(8, true),
    nodeid: u64(v, 16),
    uid: v.getUint32(24, true),
    gid: v.getUint32(28, true),
    pid: v.getUint32(32, true),
  };
}

/** A u64 as a Number, or -1 above 2^53 (no node id, handle or offset that large exists). */
export function u64(v: DataView, at: number): number {
  const hi = v.getUint32(at + 4, true);
  return hi < 0x20_0000 ? hi * 0x1_0000_0000 + v.getUint32(at, true) : -1;
}

/** The arguments after the header, read front to back with bounds checks. */
export class ArgReader {
  private pos = 0;

  constructor(readonly bytes: Uint8Array) {}

  /** Bytes not read yet. */
  get remaining(): number {
    return this.bytes.length - this.pos;
  }

  /**
   * Take a fixed-size argument struct of `size` bytes and return a view of it.
   * @throws FuseError EINVAL when the request is shorter
   */
  struct(size: number): DataView {
    if (this.remaining < size) fail(E.INVAL, `request argument of ${size} bytes (${this.remaining} left)`);
    const v = new DataView(this.bytes.buffer, this.bytes.byteOffset + this.pos, size);
    this.pos += size;
    return v;
  }

  /**
   * Take a NUL-terminated string and return it with its NUL (ready for libc).
   * @throws FuseError EINVAL when no NUL ends it inside the request
   */
  cstr(): Uint8Array {
    const end = this.bytes.indexOf(0, this.pos);
    if (end < 0) fail(E.INVAL, 'request string without a NUL terminator');
    const s = this.bytes.subarray(this.pos, end + 1);
    this.pos = end + 1;
    return s;
  }

  /** Take exactly `n` bytes. @throws FuseError EINVAL when fewer are left */
  take(n: number): Uint8Array {
    if (this.remaining < n) fail(E.INVAL, `request payload of ${n} bytes (${this.remaining} left)`);
    const s = this.bytes.subarray(this.pos, this.pos + n);
    this.pos += n;
    return s;
  }
}
