/**
 * A FUSE-over-virtio "driver" for the tests: builds FUSE requests (include/uapi/linux/fuse.h) in
 * fake guest RAM, puts them on a VirtioFs request queue through the shared test driver
 * (../driver.ts), kicks the device and decodes the replies. No guest and no /dev/kvm needed.
 */
import { VirtioFs } from '../../../../src/devices/virtio/fs/VirtioFs';
import type { VirtioFsOptions } from '../../../../src/devices/virtio/fs/VirtioFsOptions';
import type { GuestMemory } from '../../../../src/memory/GuestMemory';
import { FuseOpcode as Op, IN_HEADER_SIZE, OUT_HEADER_SIZE } from '../../../../src/fuse/abi';
import { activate, type ActiveDevice, allocRam, type Buf } from '../driver';
import { cat } from '../../../helpers/bytes';

/** Where request buffers start in guest RAM (the rings live below). */
export const BUFFERS = 0x100000;
/** Default reply area: enough for every fixed reply and a page of data. */
export const REPLY_SIZE = 8192;
/** Bytes reply areas are pre-filled with, so untouched bytes are visible. */
export const FILL = 0xa5;

export interface Reply {
  /** Used length the device reported (0: no reply). */
  used: number;
  /** fuse_out_header.len. */
  len: number;
  /** fuse_out_header.error (0 or -errno). */
  error: number;
  unique: bigint;
  /** Bytes after the out header, `len - 16` of them. */
  body: Uint8Array;
  /** The whole reply area as the device left it. */
  area: Uint8Array;
  /** Where the request's device-readable buffers were put. */
  request: Buf[];
}

export interface CallOptions {
  uid?: number;
  gid?: number;
  /** Reply area size (default {@link REPLY_SIZE}); 0 for none. */
  replySize?: number;
  /** Split the request into readable buffers of these sizes (the rest in a last one). */
  split?: number[];
  /** Override fuse_in_header.len. */
  len?: number;
  /** Queue to use (default 1, the request queue). */
  queue?: number;
  /** Override fuse_in_header.unique. */
  unique?: bigint;
}

/** An entry reply (fuse_entry_out). */
export interface EntryOut {
  nodeid: number;
  entryValid: number;
  attrValid: number;
  attr: AttrOut;
}
/** fuse_attr, decoded. */
export interface AttrOut {
  ino: bigint;
  size: number;
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  rdev: number;
  mtime: bigint;
  mtimensec: number;
  atime: bigint;
  atimensec: number;
}
/** One directory entry of READDIR / READDIRPLUS. */
export interface DirEntry {
  ino: bigint;
  off: bigint;
  type: number;
  name: string;
  entry?: EntryOut;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

/** NUL-terminated bytes of `s` (strings as UTF-8, or raw bytes). */
export function z(s: string | Uint8Array): Uint8Array {
  const b = typeof s === 'string' ? enc.encode(s) : s;
  const out = new Uint8Array(b.length + 1);
  out.set(b);
  return out;
}

export { cat };

/** A little-endian struct builder: `le().u32(1).u64(2n).bytes()`. */
export function le(): Le {
  return new Le();
}
export class Le {
  private readonly parts: number[] = [];
  u32(v: number): this {
    for (let i = 0; i < 4; i++) this.parts.push((v >>> (8 * i)) & 0xff);
    return this;
  }
  u64(v: number | bigint): this {
    const b = BigInt.asUintN(64, BigInt(v));
    for (let i = 0n; i < 8n; i++) this.parts.push(Number((b >> (8n * i)) & 0xffn));
    return this;
  }
  bytes(): Uint8Array {
    return Uint8Array.from(this.parts);
  }
}

/** A VirtioFs on fake guest RAM with a FUSE client in front of it. */
export class FuseClient {
  readonly active: ActiveDevice;
  private next = BUFFERS;
  private unique = 1n;

  constructor(
    readonly dev: VirtioFs,
    readonly mem: GuestMemory,
    opts: { size?: number } = {},
  ) {
    this.active = activate(dev, mem, { size: opts.size ?? 64 });
  }

  /** A device on `sharedDir` with 16 MiB of RAM. */
  static create(options: VirtioFsOptions, ramBytes = 16 << 20): FuseClient {
    return new FuseClient(new VirtioFs(options), allocRam(ramBytes));
  }

  /** Release the device (waiting for its I/O) and the RAM. */
  async close(): Promise<void> {
    await this.dev.close();
    this.mem.free();
  }

  /** Bump-allocate guest RAM (wrapping to {@link BUFFERS}). */
  alloc(len: number): number {
    let a = Math.ceil(this.next / 16) * 16;
    if (a + len > this.mem.size) a = BUFFERS;
    this.next = a + Math.max(len, 1);
    return a;
  }

  /** Put `request` (already a full FUSE request) on a queue as one chain, kick, and wait for the reply. */
  async raw(request: Uint8Array, o: CallOptions = {}): Promise<Reply> {
    const bufs: Buf[] = [];
    let at = 0;
    for (const n of o.split ?? []) {
      const len = Math.min(n, request.length - at);
      if (len <= 0) break;
      const a = this.alloc(len);
      this.mem.write(a, request.subarray(at, at + len));
      bufs.push({ addr: a, len });
      at += len;
    }
    if (at < request.length) {
      const a = this.alloc(request.length - at);
      this.mem.write(a, request.subarray(at));
      bufs.push({ addr: a, len: request.length - at });
    }
    const replySize = o.replySize ?? REPLY_SIZE;
    let replyAddr = 0;
    if (replySize > 0) {
      replyAddr = this.alloc(replySize);
      this.mem.write(replyAddr, new Uint8Array(replySize).fill(FILL));
      bufs.push({ addr: replyAddr, len: replySize, write: true });
    }
    const q = o.queue ?? 1;
    const driver = this.active.drivers[q]!;
    const head = driver.addChain(bufs);
    this.dev.processQueue(q);
    const used = await this.waitUsed(q, head);
    const area = replySize > 0 ? this.mem.read(replyAddr, replySize) : new Uint8Array(0);
    const v = new DataView(area.buffer, area.byteOffset, area.byteLength);
    const sent = bufs.filter((b) => !b.write);
    if (used < OUT_HEADER_SIZE) return { used, len: 0, error: 0, unique: 0n, body: new Uint8Array(0), area, request: sent };
    const len = v.getUint32(0, true);
    const body = area.slice(OUT_HEADER_SIZE, Math.max(OUT_HEADER_SIZE, Math.min(len, replySize)));
    return { used, len, error: v.getInt32(4, true), unique: v.getBigUint64(8, true), body, area, request: sent };
  }

  /** Build and send opcode `opcode` for `nodeid` with argument bytes `args`. */
  call(opcode: number, nodeid: number | bigint, args: Uint8Array = new Uint8Array(0), o: CallOptions = {}): Promise<Reply> {
    const unique = o.unique ?? this.unique++;
    const header = le()
      .u32(o.len ?? IN_HEADER_SIZE + args.length)
      .u32(opcode)
      .u64(unique)
      .u64(nodeid)
      .u32(o.uid ?? 0)
      .u32(o.gid ?? 0)
      .u32(4242)
      .u32(0)
      .bytes();
    return this.raw(cat(header, args), o);
  }

  private pending = new Map<number, Map<number, number>>();

  /** Wait until the device returns chain `head` of queue `q`; returns its used length. */
  private async waitUsed(q: number, head: number): Promise<number> {
    const driver = this.active.drivers[q]!;
    let seen = this.pending.get(q);
    if (!seen) this.pending.set(q, (seen = new Map()));
    const deadline = Date.now() + 20_000;
    for (;;) {
      for (const e of driver.takeUsed()) seen.set(e.id, e.len);
      const len = seen.get(head);
      if (len !== undefined) {
        seen.delete(head);
        return len;
      }
      if (Date.now() > deadline) throw new Error(`virtio-fs did not return chain ${head} of queue ${q}`);
      await new Promise((r) => setTimeout(r, 1));
    }
  }

  /** Expect success and return the reply body. */
  async ok(opcode: number, nodeid: number | bigint, args?: Uint8Array, o?: CallOptions): Promise<Uint8Array> {
    const r = await this.call(opcode, nodeid, args, o);
    if (r.error !== 0) throw new Error(`opcode ${opcode} on node ${nodeid} failed with errno ${-r.error}`);
    return r.body;
  }

  // ---- typed helpers ----

  /** INIT as Linux 6.1 sends it (7.37, fuse_init_in of 64 bytes with INIT_EXT). */
  async init(flags = 0xffff_ffff, minor = 37): Promise<Reply> {
    const args = cat(le().u32(7).u32(minor).u32(128 * 1024).u32(flags >>> 0).u32(0).bytes(), new Uint8Array(44));
    return this.call(Op.INIT, 0, args);
  }

  async lookup(parent: number, name: string | Uint8Array, o?: CallOptions): Promise<EntryOut> {
    return decodeEntry(await this.ok(Op.LOOKUP, parent, z(name), o));
  }

  async getattr(nodeid: number): Promise<AttrOut> {
    const b = await this.ok(Op.GETATTR, nodeid, le().u32(0).u32(0).u64(0).bytes());
    return decodeAttr(b, 16);
  }

  async open(nodeid: number, flags: number): Promise<{ fh: number; openFlags: number }> {
    const b = new DataView((await this.ok(Op.OPEN, nodeid, le().u32(flags).u32(0).bytes())).buffer);
    return { fh: Number(b.getBigUint64(0, true)), openFlags: b.getUint32(8, true) };
  }

  async opendir(nodeid: number): Promise<number> {
    const b = new DataView((await this.ok(Op.OPENDIR, nodeid, le().u32(0).u32(0).bytes())).buffer);
    return Number(b.getBigUint64(0, true));
  }

  readArgs(fh: number, offset: number | bigint, size: number): Uint8Array {
    return le().u64(fh).u64(offset).u32(size).u32(0).u64(0).u32(0).u32(0).bytes();
  }

  async read(nodeid: number, fh: number, offset: number, size: number, o?: CallOptions): Promise<Uint8Array> {
    return this.ok(Op.READ, nodeid, this.readArgs(fh, offset, size), { replySize: size + OUT_HEADER_SIZE, ...o });
  }

  async write(nodeid: number, fh: number, offset: number, data: Uint8Array, o?: CallOptions): Promise<number> {
    const args = cat(le().u64(fh).u64(offset).u32(data.length).u32(0).u64(0).u32(0).u32(0).bytes(), data);
    return new DataView((await this.ok(Op.WRITE, nodeid, args, o)).buffer).getUint32(0, true);
  }

  async release(nodeid: number, fh: number, dir = false): Promise<Reply> {
    return this.call(dir ? Op.RELEASEDIR : Op.RELEASE, nodeid, le().u64(fh).u32(0).u32(0).u64(0).bytes());
  }

  async readdir(nodeid: number, fh: number, offset: number | bigint = 0, size = 4096, plus = false): Promise<DirEntry[]> {
    const b = await this.ok(plus ? Op.READDIRPLUS : Op.READDIR, nodeid, this.readArgs(fh, offset, size), { replySize: size + 16 });
    return decodeDirents(b, plus);
  }

  /** Every entry of a directory, through as many READDIR(PLUS) calls as needed. */
  async list(nodeid: number, plus = false, size = 4096): Promise<DirEntry[]> {
    const fh = await this.opendir(nodeid);
    const all: DirEntry[] = [];
    let off: bigint = 0n;
    for (;;) {
      const part = await this.readdir(nodeid, fh, off, size, plus);
      if (part.length === 0) break;
      all.push(...part);
      off = part[part.length - 1]!.off;
    }
    await this.release(nodeid, fh, true);
    return all;
  }

  async create(parent: number, name: string, flags: number, mode: number, o?: CallOptions): Promise<{ entry: EntryOut; fh: number; openFlags: number }> {
    const b = await this.ok(Op.CREATE, parent, cat(le().u32(flags).u32(mode).u32(0o022).u32(0).bytes(), z(name)), o);
    const v = new DataView(b.buffer);
    return { entry: decodeEntry(b), fh: Number(v.getBigUint64(128, true)), openFlags: v.getUint32(136, true) };
  }

  async mkdir(parent: number, name: string, mode = 0o755, o?: CallOptions): Promise<EntryOut> {
    return decodeEntry(await this.ok(Op.MKDIR, parent, cat(le().u32(mode).u32(0o022).bytes(), z(name)), o));
  }

  /** Look a relative path up component by component from the root. */
  async walk(path: string): Promise<EntryOut> {
    let e: EntryOut | undefined;
    let node = 1;
    for (const c of path.split('/').filter(Boolean)) {
      e = await this.lookup(node, c);
      node = e.nodeid;
    }
    if (!e) throw new Error('empty path');
    return e;
  }

  /** Read a whole file through OPEN/READ/RELEASE. */
  async readFile(nodeid: number, chunk = 4096): Promise<Uint8Array> {
    const { fh } = await this.open(nodeid, 0);
    const parts: Uint8Array[] = [];
    for (let off = 0; ; ) {
      const b = await this.read(nodeid, fh, off, chunk);
      if (b.length === 0) break;
      parts.push(b);
      off += b.length;
    }
    await this.release(nodeid, fh);
    return cat(...parts);
  }
}

/** fuse_attr at `off`. */
export function decodeAttr(b: Uint8Array, off: number): AttrOut {
  const v = new DataView(b.buffer, b.byteOffset + off, 88);
  return {
    ino: v.getBigUint64(0, true),
    size: Number(v.getBigUint64(8, true)),
    atime: v.getBigUint64(24, true),
    mtime: v.getBigUint64(32, true),
    atimensec: v.getUint32(48, true),
    mtimensec: v.getUint32(52, true),
    mode: v.getUint32(60, true),
    nlink: v.getUint32(64, true),
    uid: v.getUint32(68, true),
    gid: v.getUint32(72, true),
    rdev: v.getUint32(76, true),
  };
}

/** fuse_entry_out at `off`. */
export function decodeEntry(b: Uint8Array, off = 0): EntryOut {
  const v = new DataView(b.buffer, b.byteOffset + off, 128);
  return {
    nodeid: Number(v.getBigUint64(0, true)),
    entryValid: Number(v.getBigUint64(16, true)),
    attrValid: Number(v.getBigUint64(24, true)),
    attr: decodeAttr(b, off + 40),
  };
}

/** A READDIR / READDIRPLUS reply. */
export function decodeDirents(b: Uint8Array, plus: boolean): DirEntry[] {
  const out: DirEntry[] = [];
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  for (let p = 0; p < b.length; ) {
    const entry = plus ? decodeEntry(b, p) : undefined;
    const d = plus ? p + 128 : p;
    const namelen = v.getUint32(d + 16, true);
    out.push({
      ino: v.getBigUint64(d, true),
      off: v.getBigUint64(d + 8, true),
      type: v.getUint32(d + 20, true),
      name: dec.decode(b.subarray(d + 24, d + 24 + namelen)),
      entry,
    });
    p = d + ((24 + namelen + 7) & ~7);
  }
  return out;
}
