/**
 * The FUSE server: one request in, one reply out, over any transport that hands it the request's
 * device-readable bytes and a device-writable reply area (virtio-fs descriptor chains, virtio 1.2
 * §5.11.6). It speaks FUSE 7.37 (include/uapi/linux/fuse.h; Linux 6.1 negotiates it) down to 7.27.
 *
 * Wire behaviour (the probe guest and the QEMU + virtiofsd cross-check rely on it):
 * - a request shorter than struct fuse_in_header (40 bytes), or whose reply area cannot hold a
 *   fuse_out_header (16 bytes), cannot be answered: it is returned with used length 0;
 * - FORGET, BATCH_FORGET and INTERRUPT never get a reply (used length 0), malformed or not;
 * - every other request gets exactly one reply: `fuse_out_header {len, error, unique}` and, on
 *   success, the opcode's reply struct. Errors, in the order they are checked:
 *   EINVAL `len` < 40 or larger than the readable bytes; EIO before INIT (as virtiofsd); ENOSYS an
 *   opcode not served (GETLK, SETLK, SETLKW, BMAP, IOCTL, POLL, NOTIFY_REPLY, COPY_FILE_RANGE,
 *   SETUPMAPPING, REMOVEMAPPING, SYNCFS, TMPFILE and unknown numbers); EINVAL arguments shorter
 *   than the opcode's struct, a string without NUL, a reply area too small for the fixed-size
 *   reply; then the operation's own errors (EBADF unknown node id or handle, ENOENT unknown parent
 *   in LOOKUP, EINVAL/ENOENT/ENAMETOOLONG bad names, host errnos);
 * - INIT: major < 7 or minor < 27 is EPROTO; major > 7 gets a bare 7.37 reply to retry with; a
 *   second INIT starts a new session (every node id and handle is dropped, as virtiofsd);
 * - variable-size replies (READ, READDIR, READDIRPLUS, READLINK, GETXATTR, LISTXATTR) are cut to
 *   the reply area: READ returns fewer bytes, directory listings fewer entries, and an xattr value
 *   or list that does not fit is ERANGE (as the host's getxattr says), a link text ERANGE too;
 * - choices where FUSE leaves the answer free: ACCESS is answered from the mode bits (crosvm; not
 *   ENOSYS as virtiofsd); UNLINK/RMDIR/RENAME of a name never looked up work, of a missing name
 *   are ENOENT (virtiofsd: EIO); READLINK of a non-symlink is ENOENT (the host's readlinkat);
 *   OPEN of anything but a regular file or directory is EBADF (as virtiofsd); RELEASE of an
 *   unknown handle is EBADF (crosvm); entry/attribute timeouts are the `timeout` option (crosvm);
 *   READDIRPLUS gives `.` and `..` node id 0, and an entry that vanished meanwhile node id 0 too;
 * - a device reset (`abandonInFlight`) drops the replies of requests still running.
 * @module
 */
import {
  ATTR_OUT_SIZE, ENTRY_OUT_SIZE, FOPEN, FUSE_FSYNC_FDATASYNC, FUSE_KERNEL_MINOR_VERSION, FUSE_KERNEL_VERSION,
  FUSE_MIN_MINOR_VERSION, FuseInitFlag, FuseOpcode as Op, GETXATTR_OUT_SIZE, IN_HEADER_SIZE, IN_SIZE, INIT_IN_COMPAT_SIZE,
  INIT_OUT, INIT_OUT_SIZE, LSEEK_OUT_SIZE, OPEN_OUT_SIZE, OUT_HEADER_SIZE, SETATTR_IN, STATFS_OUT_SIZE, WRITE_OUT_SIZE,
} from './abi';
import { timeoutOf, writeAttr, writeEntryOut, writeKstatfs, type Timeout } from './encode';
import { fail, FuseError } from './FuseError';
import { ArgReader, decodeInHeader, type InHeader, u64 } from './FuseRequest';
import { E } from './libcFs';
import type { Entry, FsContext, PassthroughFs } from './PassthroughFs';

/** How much the guest may cache (crosvm's `cache=`): see {@link FuseServerOptions.cache}. */
export type CachePolicy = 'never' | 'auto' | 'always';

/** One request as the transport delivers it (a virtio-fs descriptor chain fits). */
export interface FuseMessage {
  /** Bytes of the request (device-readable). */
  readonly readableLength: number;
  /** Bytes of the reply area (device-writable). */
  readonly writableLength: number;
  /** Copy request bytes from `offset`; returns the count copied. */
  readBytes(offset: number, target: Uint8Array): number;
  /** Copy reply bytes to `offset`; returns the count copied. */
  writeBytes(offset: number, source: Uint8Array): number;
  /** Zero-copy views of the request bytes from `offset` (never written to). */
  readableViews(offset?: number, length?: number): Uint8Array[];
  /** Zero-copy views of the reply area from `offset`. */
  writableViews(offset?: number, length?: number): Uint8Array[];
}

/** Settings of a {@link FuseServer}. */
export interface FuseServerOptions {
  /**
   * `never`: files are opened with FOPEN_DIRECT_IO (no guest page cache); `auto`: close-to-open
   * consistency (the default); `always`: FOPEN_KEEP_CACHE on files and FOPEN_CACHE_DIR on
   * directories (crosvm's mapping, devices/src/virtio/fs/passthrough.rs).
   */
  cache: CachePolicy;
  /** Entry and attribute cache timeout the guest is given, in seconds. */
  timeout: number;
  /** Offer FUSE_WRITEBACK_CACHE. */
  writeback: boolean;
}

/** Largest WRITE / READ payload announced in INIT (`max_write`, and `max_pages` × 4 KiB). */
export const FUSE_MAX_WRITE = 1 << 20;
/** Largest request other than WRITE accepted (a SETXATTR of XATTR_SIZE_MAX plus its name). */
export const FUSE_MAX_REQUEST = IN_HEADER_SIZE + IN_SIZE.setxattr + 256 + 65536;
/** max_background announced in INIT: requests the guest may have in the background. */
export const FUSE_MAX_BACKGROUND = 256;

/** INIT flags kvmkit enables when the kernel offers them (crosvm's set, less the ones it does not implement). */
const SUPPORTED_INIT_FLAGS =
  FuseInitFlag.ASYNC_READ | FuseInitFlag.ATOMIC_O_TRUNC | FuseInitFlag.EXPORT_SUPPORT | FuseInitFlag.BIG_WRITES |
  FuseInitFlag.AUTO_INVAL_DATA | FuseInitFlag.DO_READDIRPLUS | FuseInitFlag.READDIRPLUS_AUTO | FuseInitFlag.ASYNC_DIO |
  FuseInitFlag.PARALLEL_DIROPS | FuseInitFlag.MAX_PAGES | FuseInitFlag.CACHE_SYMLINKS | FuseInitFlag.INIT_EXT;

/** Fixed reply payload per opcode (beyond the out header): checked before the operation runs, so an effect never goes unanswered. */
const FIXED_REPLY: Partial<Record<number, number>> = {
  [Op.LOOKUP]: ENTRY_OUT_SIZE, [Op.MKNOD]: ENTRY_OUT_SIZE, [Op.MKDIR]: ENTRY_OUT_SIZE, [Op.SYMLINK]: ENTRY_OUT_SIZE,
  [Op.LINK]: ENTRY_OUT_SIZE, [Op.GETATTR]: ATTR_OUT_SIZE, [Op.SETATTR]: ATTR_OUT_SIZE, [Op.OPEN]: OPEN_OUT_SIZE,
  [Op.OPENDIR]: OPEN_OUT_SIZE, [Op.CREATE]: ENTRY_OUT_SIZE + OPEN_OUT_SIZE, [Op.WRITE]: WRITE_OUT_SIZE,
  [Op.STATFS]: STATFS_OUT_SIZE, [Op.INIT]: INIT_OUT_SIZE, [Op.LSEEK]: LSEEK_OUT_SIZE,
};

/** Counters, for tests and diagnostics. */
export interface FuseServerStats {
  /** Replies sent. */
  replies: number;
  /** Of which error replies. */
  errors: number;
  /** Requests that could not be answered (no header, no room for one). */
  unanswerable: number;
  /** FORGET / BATCH_FORGET / INTERRUPT requests (never answered). */
  noReply: number;
  /** Replies of EIO for an unexpected failure inside the server (a bug); see `lastInternalError`. */
  internalErrors: number;
}

/** Serves FUSE requests on a {@link PassthroughFs}. */
export class FuseServer {
  /** Counters since construction. */
  readonly stats: FuseServerStats = { replies: 0, errors: 0, unanswerable: 0, noReply: 0, internalErrors: 0 };
  /** The last unexpected failure answered with EIO (undefined if none). */
  lastInternalError: unknown;
  /** INIT was answered; DESTROY and {@link FuseServer.endSession} clear it. */
  initialized = false;
  /** Protocol minor version in use (the smaller of the kernel's and ours). */
  minor = 0;
  /** INIT flags enabled for this session. */
  initFlags = 0n;
  /** Bumped by {@link FuseServer.abandonInFlight}: replies of older requests are not written. */
  private epoch = 0;
  /** The epoch each request arrived in. */
  private readonly epochs = new WeakMap<FuseMessage, number>();
  private readonly entryTimeout: Timeout;
  private readonly attrTimeout: Timeout;
  private readonly header = new Uint8Array(IN_HEADER_SIZE);

  constructor(
    readonly fs: PassthroughFs,
    readonly options: FuseServerOptions,
  ) {
    this.entryTimeout = timeoutOf(options.timeout);
    this.attrTimeout = timeoutOf(options.timeout);
  }

  /**
   * Serve one request. Never throws for anything the guest sent.
   * @returns the number of reply bytes written (the used length), or a promise of it when the
   *   operation runs off the main thread (large READ/WRITE, FSYNC, FALLOCATE)
   */
  handle(msg: FuseMessage): number | Promise<number> {
    if (msg.readableLength < IN_HEADER_SIZE) {
      this.stats.unanswerable++;
      return 0;
    }
    msg.readBytes(0, this.header);
    const h = decodeInHeader(this.header);
    if (h.opcode === Op.FORGET || h.opcode === Op.BATCH_FORGET || h.opcode === Op.INTERRUPT) {
      this.stats.noReply++;
      if (this.initialized && h.len >= IN_HEADER_SIZE && h.len <= msg.readableLength) {
        this.guard(() => this.forgetLike(msg, h));
      }
      return 0;
    }
    if (msg.writableLength < OUT_HEADER_SIZE) {
      this.stats.unanswerable++;
      return 0;
    }
    let result: number | Promise<number>;
    try {
      result = this.dispatch(msg, h);
    } catch (e) {
      return this.replyError(msg, h.unique, e);
    }
    if (typeof result === 'number') return result;
    this.epochs.set(msg, this.epoch);
    return result.catch((e: unknown) => this.replyError(msg, h.unique, e));
  }

  /**
   * Requests still running (large I/O on the I/O threads) will not write their replies: the
   * transport took their buffers back (a device reset). Their promises resolve to 0.
   */
  abandonInFlight(): void {
    this.epoch++;
  }

  /** End the FUSE session as DESTROY does (a device reset): every node id and handle is dropped; the guest must INIT again. */
  endSession(): void {
    this.fs.destroy();
    this.initialized = false;
  }

  // ---- dispatch ----

  private dispatch(msg: FuseMessage, h: InHeader): number | Promise<number> {
    if (h.len < IN_HEADER_SIZE || h.len > msg.readableLength) fail(E.INVAL, `request length ${h.len}`);
    if (!this.initialized && h.opcode !== Op.INIT) fail(E.IO, 'request before INIT');
    if (!isServed(h.opcode)) fail(E.NOSYS, `opcode ${h.opcode}`);
    const fixed = FIXED_REPLY[h.opcode] ?? 0;
    if (msg.writableLength < OUT_HEADER_SIZE + fixed) fail(E.INVAL, 'reply area too small');
    if (h.opcode === Op.WRITE) return this.write(msg, h);
    const bodyLen = h.len - IN_HEADER_SIZE;
    if (bodyLen > FUSE_MAX_REQUEST) fail(E.INVAL, `request of ${h.len} bytes`);
    const body = new Uint8Array(bodyLen);
    msg.readBytes(IN_HEADER_SIZE, body);
    const a = new ArgReader(body);
    const ctx: FsContext = { uid: h.uid, gid: h.gid, pid: h.pid };
    const fs = this.fs;
    const n = h.nodeid;
    switch (h.opcode) {
      case Op.INIT:
        return this.init(msg, h, a);
      case Op.DESTROY:
        this.endSession();
        return this.reply(msg, h.unique);
      case Op.LOOKUP:
        return this.entry(msg, h, fs.lookup(n, a.cstr()));
      case Op.GETATTR:
        a.struct(IN_SIZE.getattr); // getattr_flags and fh: attributes come from the inode either way
        return this.attr(msg, h, fs.getattr(n));
      case Op.SETATTR:
        return this.attr(msg, h, fs.setattr(n, decodeSetattr(a.struct(IN_SIZE.setattr))));
      case Op.READLINK: {
        const link = fs.readlink(n);
        if (link.length > msg.writableLength - OUT_HEADER_SIZE) fail(E.RANGE, 'readlink reply');
        return this.reply(msg, h.unique, link);
      }
      case Op.SYMLINK: {
        const name = a.cstr();
        return this.entry(msg, h, fs.symlink(ctx, n, name, a.cstr()));
      }
      case Op.MKNOD: {
        const v = a.struct(IN_SIZE.mknod);
        return this.entry(msg, h, fs.mknod(ctx, n, a.cstr(), v.getUint32(0, true), v.getUint32(4, true)));
      }
      case Op.MKDIR: {
        const v = a.struct(IN_SIZE.mkdir);
        return this.entry(msg, h, fs.mkdir(ctx, n, a.cstr(), v.getUint32(0, true)));
      }
      case Op.UNLINK:
      case Op.RMDIR:
        fs.remove(n, a.cstr(), h.opcode === Op.RMDIR);
        return this.reply(msg, h.unique);
      case Op.RENAME:
      case Op.RENAME2: {
        const v = a.struct(h.opcode === Op.RENAME ? IN_SIZE.rename : IN_SIZE.rename2);
        const flags = h.opcode === Op.RENAME2 ? v.getUint32(8, true) : 0;
        const oldName = a.cstr();
        fs.rename(n, oldName, nodeArg(v, 0), a.cstr(), flags);
        return this.reply(msg, h.unique);
      }
      case Op.LINK: {
        const v = a.struct(IN_SIZE.link);
        return this.entry(msg, h, fs.link(nodeArg(v, 0), n, a.cstr()));
      }
      case Op.OPEN: {
        const v = a.struct(IN_SIZE.open);
        return this.opened(msg, h, fs.open(n, v.getUint32(0, true)), false);
      }
      case Op.CREATE: {
        const v = a.struct(IN_SIZE.create);
        const r = fs.create(ctx, n, a.cstr(), v.getUint32(0, true), v.getUint32(4, true));
        const out = new Uint8Array(ENTRY_OUT_SIZE + OPEN_OUT_SIZE);
        const ov = new DataView(out.buffer);
        writeEntryOut(ov, 0, r.entry.inode.nodeid, r.entry.stat, this.entryTimeout, this.attrTimeout);
        ov.setBigUint64(ENTRY_OUT_SIZE, BigInt(r.fh), true);
        ov.setUint32(ENTRY_OUT_SIZE + 8, this.openFlags(false), true);
        return this.reply(msg, h.unique, out);
      }
      case Op.READ:
        return this.read(msg, h, a.struct(IN_SIZE.read));
      case Op.FLUSH:
        fs.flush(n, fhArg(a.struct(IN_SIZE.flush)));
        return this.reply(msg, h.unique);
      case Op.RELEASE:
      case Op.RELEASEDIR:
        fs.release(n, fhArg(a.struct(IN_SIZE.release)), h.opcode === Op.RELEASEDIR);
        return this.reply(msg, h.unique);
      case Op.FSYNC:
      case Op.FSYNCDIR: {
        const v = a.struct(IN_SIZE.fsync);
        const dataOnly = (v.getUint32(8, true) & FUSE_FSYNC_FDATASYNC) !== 0;
        return fs.fsync(n, fhArg(v), h.opcode === Op.FSYNCDIR, dataOnly).then(() => this.reply(msg, h.unique));
      }
      case Op.OPENDIR:
        a.struct(IN_SIZE.open);
        return this.opened(msg, h, fs.opendir(n), true);
      case Op.READDIR:
      case Op.READDIRPLUS: {
        const v = a.struct(IN_SIZE.read);
        const size = Math.min(v.getUint32(16, true), msg.writableLength - OUT_HEADER_SIZE);
        const plus = h.opcode === Op.READDIRPLUS;
        const timeouts = plus ? { entry: this.entryTimeout, attr: this.attrTimeout } : undefined;
        return this.reply(msg, h.unique, fs.readdir(n, fhArg(v), v.getBigUint64(8, true), size, plus, timeouts));
      }
      case Op.STATFS: {
        const out = new Uint8Array(STATFS_OUT_SIZE);
        writeKstatfs(new DataView(out.buffer), 0, fs.statfs(n));
        return this.reply(msg, h.unique, out);
      }
      case Op.ACCESS:
        fs.access(ctx, n, a.struct(IN_SIZE.access).getUint32(0, true));
        return this.reply(msg, h.unique);
      case Op.GETXATTR:
      case Op.LISTXATTR: {
        const size = a.struct(IN_SIZE.getxattr).getUint32(0, true);
        const room = Math.min(size, msg.writableLength - OUT_HEADER_SIZE);
        const r = h.opcode === Op.GETXATTR ? fs.getxattr(n, a.cstr(), room) : fs.listxattr(n, room);
        if (typeof r !== 'number') return this.reply(msg, h.unique, r);
        if (msg.writableLength < OUT_HEADER_SIZE + GETXATTR_OUT_SIZE) fail(E.INVAL, 'reply area too small');
        const out = new Uint8Array(GETXATTR_OUT_SIZE);
        new DataView(out.buffer).setUint32(0, r, true);
        return this.reply(msg, h.unique, out);
      }
      case Op.SETXATTR: {
        const v = a.struct(IN_SIZE.setxattr);
        const name = a.cstr();
        fs.setxattr(n, name, a.take(v.getUint32(0, true)), v.getUint32(4, true));
        return this.reply(msg, h.unique);
      }
      case Op.REMOVEXATTR:
        fs.removexattr(n, a.cstr());
        return this.reply(msg, h.unique);
      case Op.FALLOCATE: {
        const v = a.struct(IN_SIZE.fallocate);
        return fs.fallocate(n, fhArg(v), v.getUint32(24, true), u64(v, 8), u64(v, 16)).then(() => this.reply(msg, h.unique));
      }
      case Op.LSEEK: {
        const v = a.struct(IN_SIZE.lseek);
        const off = fs.lseek(n, fhArg(v), u64(v, 8), v.getUint32(16, true));
        const out = new Uint8Array(LSEEK_OUT_SIZE);
        new DataView(out.buffer).setBigUint64(0, BigInt(off), true);
        return this.reply(msg, h.unique, out);
      }
      default:
        return fail(E.NOSYS, `opcode ${h.opcode}`);
    }
  }

  // ---- operations with their own reply shapes ----

  private init(msg: FuseMessage, h: InHeader, a: ArgReader): number {
    const v = a.struct(INIT_IN_COMPAT_SIZE);
    const major = v.getUint32(0, true);
    const minor = v.getUint32(4, true);
    const out = new Uint8Array(INIT_OUT_SIZE);
    const ov = new DataView(out.buffer);
    ov.setUint32(INIT_OUT.major, FUSE_KERNEL_VERSION, true);
    ov.setUint32(INIT_OUT.minor, FUSE_KERNEL_MINOR_VERSION, true);
    if (major < FUSE_KERNEL_VERSION) fail(E.PROTO, `FUSE major version ${major}`);
    if (major > FUSE_KERNEL_VERSION) return this.reply(msg, h.unique, out); // the kernel retries with 7.x
    if (minor < FUSE_MIN_MINOR_VERSION) fail(E.PROTO, `FUSE minor version ${minor}`);
    let flags = BigInt(v.getUint32(12, true));
    if (flags & FuseInitFlag.INIT_EXT && a.remaining >= 4) flags |= BigInt(a.struct(4).getUint32(0, true)) << 32n;
    if (this.initialized) this.fs.destroy(); // a new session (a guest that rebooted without DESTROY)
    const want = SUPPORTED_INIT_FLAGS | (this.options.writeback ? FuseInitFlag.WRITEBACK_CACHE : 0n);
    const enabled = flags & want;
    const maxReadahead = v.getUint32(8, true);
    ov.setUint32(INIT_OUT.maxReadahead, maxReadahead, true);
    ov.setUint32(INIT_OUT.flags, Number(enabled & 0xffff_ffffn), true);
    ov.setUint16(INIT_OUT.maxBackground, FUSE_MAX_BACKGROUND, true);
    ov.setUint16(INIT_OUT.congestionThreshold, (FUSE_MAX_BACKGROUND * 3) / 4, true);
    ov.setUint32(INIT_OUT.maxWrite, FUSE_MAX_WRITE, true);
    ov.setUint32(INIT_OUT.timeGran, 1, true); // nanosecond timestamps
    ov.setUint16(INIT_OUT.maxPages, Math.min(Math.max(maxReadahead, FUSE_MAX_WRITE) / 4096, 0xffff), true);
    ov.setUint32(INIT_OUT.flags2, Number(enabled >> 32n), true);
    this.initialized = true;
    this.fs.warmIo(); // large transfers will follow; their threads boot meanwhile
    this.minor = Math.min(minor, FUSE_KERNEL_MINOR_VERSION);
    this.initFlags = enabled;
    return this.reply(msg, h.unique, out);
  }

  private read(msg: FuseMessage, h: InHeader, v: DataView): number | Promise<number> {
    const size = Math.min(v.getUint32(16, true), msg.writableLength - OUT_HEADER_SIZE);
    const offset = u64(v, 8);
    const views = msg.writableViews(OUT_HEADER_SIZE, size);
    const r = this.fs.read(h.nodeid, fhArg(v), offset, views);
    const done = (n: number): number => this.reply(msg, h.unique, undefined, n);
    return typeof r === 'number' ? done(r) : r.then(done);
  }

  private write(msg: FuseMessage, h: InHeader): number | Promise<number> {
    const args = new Uint8Array(IN_SIZE.write);
    if (h.len < IN_HEADER_SIZE + IN_SIZE.write) fail(E.INVAL, 'WRITE without fuse_write_in');
    msg.readBytes(IN_HEADER_SIZE, args);
    const v = new DataView(args.buffer);
    const size = v.getUint32(16, true);
    if (IN_HEADER_SIZE + IN_SIZE.write + size > h.len) fail(E.INVAL, `WRITE of ${size} bytes in a request of ${h.len}`);
    const views = msg.readableViews(IN_HEADER_SIZE + IN_SIZE.write, size);
    const r = this.fs.write(h.nodeid, fhArg(v), u64(v, 8), views);
    const done = (n: number): number => {
      const out = new Uint8Array(WRITE_OUT_SIZE);
      new DataView(out.buffer).setUint32(0, n, true);
      return this.reply(msg, h.unique, out);
    };
    return typeof r === 'number' ? done(r) : r.then(done);
  }

  private forgetLike(msg: FuseMessage, h: InHeader): void {
    const body = new Uint8Array(Math.min(h.len - IN_HEADER_SIZE, IN_SIZE.batchForget + IN_SIZE.forgetOne * 0xffff));
    msg.readBytes(IN_HEADER_SIZE, body);
    const v = new DataView(body.buffer);
    if (h.opcode === Op.FORGET) {
      if (body.length >= IN_SIZE.forget) this.fs.forget(h.nodeid, nlookupArg(v, 0));
    } else if (h.opcode === Op.BATCH_FORGET && body.length >= IN_SIZE.batchForget) {
      const count = Math.min(v.getUint32(0, true), Math.floor((body.length - IN_SIZE.batchForget) / IN_SIZE.forgetOne));
      for (let i = 0; i < count; i++) {
        const at = IN_SIZE.batchForget + IN_SIZE.forgetOne * i;
        this.fs.forget(u64(v, at), nlookupArg(v, at + 8));
      }
    }
    // INTERRUPT: every operation either completes at once or is a system call already running on
    // the thread pool, which cannot be stopped; the request's own reply will come.
  }

  // ---- replies ----

  private entry(msg: FuseMessage, h: InHeader, e: Entry): number {
    const out = new Uint8Array(ENTRY_OUT_SIZE);
    writeEntryOut(new DataView(out.buffer), 0, e.inode.nodeid, e.stat, this.entryTimeout, this.attrTimeout);
    return this.reply(msg, h.unique, out);
  }

  private attr(msg: FuseMessage, h: InHeader, stat: Uint8Array): number {
    const out = new Uint8Array(ATTR_OUT_SIZE);
    const v = new DataView(out.buffer);
    v.setBigUint64(0, BigInt(this.attrTimeout.sec), true);
    v.setUint32(8, this.attrTimeout.nsec, true);
    writeAttr(v, 16, stat);
    return this.reply(msg, h.unique, out);
  }

  private opened(msg: FuseMessage, h: InHeader, fh: number, dir: boolean): number {
    const out = new Uint8Array(OPEN_OUT_SIZE);
    const v = new DataView(out.buffer);
    v.setBigUint64(0, BigInt(fh), true);
    v.setUint32(8, this.openFlags(dir), true);
    return this.reply(msg, h.unique, out);
  }

  /** fuse_open_out.open_flags for the cache policy (crosvm's get_cache_open_options). */
  private openFlags(dir: boolean): number {
    switch (this.options.cache) {
      case 'never':
        return dir ? 0 : FOPEN.DIRECT_IO;
      case 'always':
        return dir ? FOPEN.CACHE_DIR : FOPEN.KEEP_CACHE;
      default:
        return 0;
    }
  }

  /**
   * Write fuse_out_header (and `payload`) at the start of the reply area. `dataBytes` counts bytes
   * already placed after the header (READ). Returns the used length.
   */
  private reply(msg: FuseMessage, unique: bigint, payload?: Uint8Array, dataBytes = 0): number {
    if (this.isAbandoned(msg)) return 0;
    const len = OUT_HEADER_SIZE + (payload?.length ?? 0) + dataBytes;
    const out = new Uint8Array(OUT_HEADER_SIZE + (payload?.length ?? 0));
    const v = new DataView(out.buffer);
    v.setUint32(0, len, true);
    v.setInt32(4, 0, true);
    v.setBigUint64(8, unique, true);
    if (payload) out.set(payload, OUT_HEADER_SIZE);
    msg.writeBytes(0, out);
    this.stats.replies++;
    return len;
  }

  private replyError(msg: FuseMessage, unique: bigint, e: unknown): number {
    if (this.isAbandoned(msg)) return 0;
    let errno: number;
    if (e instanceof FuseError) errno = e.errno;
    else {
      // Not the guest's doing: a bug or a host failure (koffi, memory). The guest gets EIO.
      errno = E.IO;
      this.stats.internalErrors++;
      this.lastInternalError = e;
    }
    const out = new Uint8Array(OUT_HEADER_SIZE);
    const v = new DataView(out.buffer);
    v.setUint32(0, OUT_HEADER_SIZE, true);
    v.setInt32(4, -errno, true);
    v.setBigUint64(8, unique, true);
    msg.writeBytes(0, out);
    this.stats.replies++;
    this.stats.errors++;
    return OUT_HEADER_SIZE;
  }

  /** A request that went asynchronous before {@link FuseServer.abandonInFlight}. */
  private isAbandoned(msg: FuseMessage): boolean {
    const e = this.epochs.get(msg);
    return e !== undefined && e !== this.epoch;
  }

  /** Run a reply-less operation; an unexpected failure is counted and kept as for replies. */
  private guard(fn: () => void): void {
    try {
      fn();
    } catch (e) {
      if (e instanceof FuseError) return; // reply-less: nothing to tell the guest
      this.stats.internalErrors++;
      this.lastInternalError = e;
    }
  }
}

/** Opcodes with a handler here (FORGET, BATCH_FORGET and INTERRUPT are handled before dispatch). */
const SERVED = new Set<number>([
  Op.INIT, Op.DESTROY, Op.LOOKUP, Op.GETATTR, Op.SETATTR, Op.READLINK, Op.SYMLINK, Op.MKNOD, Op.MKDIR, Op.UNLINK,
  Op.RMDIR, Op.RENAME, Op.RENAME2, Op.LINK, Op.OPEN, Op.CREATE, Op.READ, Op.WRITE, Op.FLUSH, Op.RELEASE, Op.FSYNC,
  Op.OPENDIR, Op.READDIR, Op.READDIRPLUS, Op.RELEASEDIR, Op.FSYNCDIR, Op.STATFS, Op.ACCESS, Op.GETXATTR, Op.SETXATTR,
  Op.LISTXATTR, Op.REMOVEXATTR, Op.FALLOCATE, Op.LSEEK,
]);

function isServed(opcode: number): boolean {
  return SERVED.has(opcode);
}

/** The `fh` at the start of an argument struct (-1, an unknown handle, above 2^53). */
function fhArg(v: DataView): number {
  return u64(v, 0);
}

/** A node id argument (-1, an unknown node id, above 2^53). */
function nodeArg(v: DataView, at: number): number {
  return u64(v, at);
}

/** A FORGET count: u64, saturating (forgetting more than was looked up forgets everything). */
function nlookupArg(v: DataView, at: number): number {
  const n = u64(v, at);
  return n < 0 ? Number.MAX_SAFE_INTEGER : n;
}

/** struct fuse_setattr_in. */
function decodeSetattr(v: DataView): Parameters<PassthroughFs['setattr']>[1] {
  const size = u64(v, SETATTR_IN.size);
  return {
    valid: v.getUint32(SETATTR_IN.valid, true),
    fh: u64(v, SETATTR_IN.fh),
    size: size < 0 ? Number.POSITIVE_INFINITY : size,
    atime: { sec: v.getBigInt64(SETATTR_IN.atime, true), nsec: v.getUint32(SETATTR_IN.atimensec, true) },
    mtime: { sec: v.getBigInt64(SETATTR_IN.mtime, true), nsec: v.getUint32(SETATTR_IN.mtimensec, true) },
    mode: v.getUint32(SETATTR_IN.mode, true),
    uid: v.getUint32(SETATTR_IN.uid, true),
    gid: v.getUint32(SETATTR_IN.gid, true),
  };
}
