/**
 * The FUSE server behind the host kernel's own FUSE client: /dev/fuse is opened, a `fuse` file
 * system is mounted on a temporary directory with that descriptor, and every request the kernel
 * writes there goes through {@link FuseServer.handle} and back. Ordinary file-system calls on the
 * mount point then exercise the server exactly as Linux's FUSE client drives it (the client
 * virtio-fs guests run, minus the virtqueue). Root only.
 *
 * The server runs on this thread: callers must use asynchronous file-system calls (libuv's pool)
 * or child processes on the mount, never synchronous ones (they would wait for this thread).
 */
import koffi from 'koffi';
import { mkdtempSync, rmdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FuseServer, type FuseMessage, type FuseServerOptions } from '../../src/fuse/FuseServer';
import { PassthroughFs } from '../../src/fuse/PassthroughFs';

const BUF = (1 << 20) + 65536; // max_write (1 MiB) + headers, > FUSE_MIN_READ_BUFFER

type Fn = (...args: unknown[]) => number;

let lib: { open: Fn; close: Fn; read: Fn; write: Fn; mount: Fn; umount2: Fn } | undefined;
function libc(): NonNullable<typeof lib> {
  if (lib) return lib;
  const l = koffi.load('libc.so.6');
  lib = {
    open: l.func('int open(const char *path, int flags)') as Fn,
    close: l.func('int close(int fd)') as Fn,
    read: l.func('intptr_t read(int fd, void *buf, size_t len)') as Fn,
    write: l.func('intptr_t write(int fd, void *buf, size_t len)') as Fn,
    mount: l.func('int mount(const char *src, const char *target, const char *type, unsigned long flags, const char *data)') as Fn,
    umount2: l.func('int umount2(const char *target, int flags)') as Fn,
  };
  return lib;
}

/** A request read from /dev/fuse and its reply buffer (both in memory koffi can address). */
class DevMessage implements FuseMessage {
  readonly reply: Uint8Array;
  constructor(private readonly req: Uint8Array) {
    // Room for the reply: the size asked for where the opcode carries one (READ, READDIR(PLUS),
    // GETXATTR, LISTXATTR: fuse_read_in.size at 56, fuse_getxattr_in.size at 40), else a page.
    const v = new DataView(req.buffer, req.byteOffset, req.byteLength);
    const op = v.getUint32(4, true);
    const sized = op === 15 || op === 28 || op === 44 ? v.getUint32(56, true) : op === 22 || op === 23 ? v.getUint32(40, true) : 0;
    this.reply = new Uint8Array(new SharedArrayBuffer(Math.min(BUF, 16 + Math.max(sized, 8192))));
  }
  get readableLength(): number {
    return this.req.length;
  }
  get writableLength(): number {
    return this.reply.length;
  }
  readBytes(offset: number, target: Uint8Array): number {
    const n = Math.max(0, Math.min(target.length, this.req.length - offset));
    target.set(this.req.subarray(offset, offset + n));
    return n;
  }
  writeBytes(offset: number, source: Uint8Array): number {
    this.reply.set(source, offset);
    return source.length;
  }
  readableViews(offset = 0, length = Infinity): Uint8Array[] {
    return [this.req.subarray(offset, Math.min(this.req.length, offset + length))];
  }
  writableViews(offset = 0, length = Infinity): Uint8Array[] {
    return [this.reply.subarray(offset, Math.min(this.reply.length, offset + length))];
  }
}

/** A share mounted through /dev/fuse. */
export class DevFuseMount {
  readonly mountpoint: string;
  readonly fs: PassthroughFs;
  readonly server: FuseServer;
  /** Replies the kernel refused (write(2) failed): a protocol error of ours. */
  readonly writeErrors: { opcode: number; errno: number }[] = [];
  private readonly fd: number;
  private readonly poller: ReturnType<typeof koffi.node.poll>;
  private stopped = false;
  private readonly readBuf = new Uint8Array(new SharedArrayBuffer(BUF));

  /** Mount `sharedDir` and wait for the kernel's INIT to be answered. */
  static async mount(sharedDir: string, options: FuseServerOptions): Promise<DevFuseMount> {
    const m = new DevFuseMount(sharedDir, options);
    for (let i = 0; !m.server.initialized; i++) {
      if (i > 5000) throw new Error('the kernel sent no FUSE INIT');
      await new Promise((r) => setTimeout(r, 1));
    }
    return m;
  }

  private constructor(sharedDir: string, options: FuseServerOptions) {
    const c = libc();
    this.fs = new PassthroughFs({ sharedDir, writeback: options.writeback });
    this.server = new FuseServer(this.fs, options);
    this.mountpoint = mkdtempSync(join(tmpdir(), 'kvmkit-devfuse-mnt-'));
    this.fd = c.open('/dev/fuse', 0o2 | 0o4000 | 0o2000000); // O_RDWR | O_NONBLOCK | O_CLOEXEC
    if (this.fd < 0) throw new Error(`cannot open /dev/fuse (errno ${koffi.errno()})`);
    const data = `fd=${this.fd},rootmode=40000,user_id=0,group_id=0,default_permissions,allow_other`;
    if (c.mount('kvmkit', this.mountpoint, 'fuse.kvmkit', 0x2 | 0x4, data) < 0) { // MS_NOSUID | MS_NODEV
      const e = koffi.errno();
      c.close(this.fd);
      throw new Error(`mount of ${this.mountpoint} failed (errno ${e})`);
    }
    // An event-loop poll, not libuv's thread pool: the pool runs the callers' file operations,
    // which wait for this server; a read queued behind them would never run.
    this.poller = koffi.node.poll(this.fd, { readable: true }, () => this.drain());
  }

  /** Unmount (lazily), stop serving, close the file system. */
  async close(): Promise<void> {
    const c = libc();
    c.umount2(this.mountpoint, 2); // MNT_DETACH
    this.stopped = true;
    this.poller.close();
    c.close(this.fd); // aborts the connection
    await this.fs.close();
    rmdirSync(this.mountpoint);
  }

  /** Serve every request waiting on /dev/fuse. */
  private drain(): void {
    while (!this.stopped) {
      const buf = this.readBuf;
      const n = libc().read(this.fd, buf, buf.length);
      if (n < 0) {
        const e = koffi.errno();
        if (e === 2 || e === 4) continue; // ENOENT (a request interrupted meanwhile), EINTR
        return; // EAGAIN: nothing more for now; ENODEV: unmounted
      }
      const req = new Uint8Array(new SharedArrayBuffer(n)); // a WRITE's data is read on an I/O thread later
      req.set(buf.subarray(0, n));
      this.serve(req);
    }
  }

  private serve(req: Uint8Array): void {
    const msg = new DevMessage(req);
    const opcode = new DataView(req.buffer, req.byteOffset).getUint32(4, true);
    const send = (used: number): void => {
      if (used === 0 || this.stopped) return; // FORGET, BATCH_FORGET, INTERRUPT: no reply
      if (libc().write(this.fd, msg.reply, used) < 0) this.writeErrors.push({ opcode, errno: koffi.errno() });
    };
    const r = this.server.handle(msg);
    if (typeof r === 'number') send(r);
    else void r.then(send);
  }
}
