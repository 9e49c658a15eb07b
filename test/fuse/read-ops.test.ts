/**
 * FUSE read-side operations against a real temporary directory, through a VirtioFs device on fake
 * guest RAM: INIT, DESTROY, LOOKUP, FORGET, BATCH_FORGET, GETATTR, READLINK, OPEN, READ, RELEASE,
 * OPENDIR, READDIR, READDIRPLUS, RELEASEDIR, STATFS, ACCESS, LSEEK, unknown opcodes.
 */
import { linkSync, lstatSync, mkdirSync, readdirSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FuseOpcode as Op, FOPEN, FuseInitFlag } from '../../src/fuse/abi';
import { FUSE_MAX_WRITE } from '../../src/fuse/FuseServer';
import { O } from '../../src/fuse/libcFs';
import { FuseClient, le, z } from '../devices/virtio/fs/fuseClient';
import { cleanupTempDirs, ERR, tempDir } from './helpers';

afterAll(cleanupTempDirs);

let dir: string;
let c: FuseClient;

beforeEach(async () => {
  dir = tempDir();
  writeFileSync(join(dir, 'hello.txt'), 'hello, world\n');
  mkdirSync(join(dir, 'sub'));
  writeFileSync(join(dir, 'sub', 'inner'), Buffer.alloc(10_000, 'x'));
  symlinkSync('hello.txt', join(dir, 'link'));
  c = FuseClient.create({ sharedDir: dir, tag: 'test' });
  expect((await c.init()).error).toBe(0);
});
afterEach(async () => {
  await c.close();
});

describe('INIT', () => {
  it('answers 7.37 with a 64-byte fuse_init_out, max_write 1 MiB and the offered flags it supports', async () => {
    const fresh = FuseClient.create({ sharedDir: dir, tag: 't' });
    try {
      const r = await fresh.init();
      expect(r.error).toBe(0);
      expect(r.len).toBe(16 + 64);
      const v = new DataView(r.body.buffer);
      expect(v.getUint32(0, true)).toBe(7);
      expect(v.getUint32(4, true)).toBe(37);
      expect(v.getUint32(8, true)).toBe(128 * 1024); // max_readahead echoed
      const flags = BigInt(v.getUint32(12, true)) | (BigInt(v.getUint32(32, true)) << 32n);
      expect(flags & FuseInitFlag.DO_READDIRPLUS).toBeTruthy();
      expect(flags & FuseInitFlag.MAX_PAGES).toBeTruthy();
      expect(flags & FuseInitFlag.WRITEBACK_CACHE).toBe(0n); // writeback off by default
      expect(flags & FuseInitFlag.POSIX_LOCKS).toBe(0n); // locks stay local to the guest
      expect(v.getUint32(20, true)).toBe(FUSE_MAX_WRITE);
      expect(v.getUint16(28, true)).toBe(256); // max_pages
      expect(v.getUint32(24, true)).toBe(1); // time_gran
    } finally {
      await fresh.close();
    }
  });

  it('enables only flags the kernel offered, and WRITEBACK_CACHE when asked for', async () => {
    const wb = FuseClient.create({ sharedDir: dir, tag: 't', writeback: true });
    try {
      const offered = Number(FuseInitFlag.ASYNC_READ | FuseInitFlag.WRITEBACK_CACHE);
      const v = new DataView((await wb.init(offered)).body.buffer);
      expect(v.getUint32(12, true)).toBe(offered);
    } finally {
      await wb.close();
    }
  });

  it('refuses requests before INIT with EIO, old protocols with EPROTO, and asks a newer major to retry', async () => {
    const fresh = FuseClient.create({ sharedDir: dir, tag: 't' });
    try {
      expect((await fresh.call(Op.GETATTR, 1, new Uint8Array(16))).error).toBe(-ERR.EIO);
      expect((await fresh.init(0, 26)).error).toBe(-ERR.EPROTO);
      const major8 = await fresh.call(Op.INIT, 0, le().u32(8).u32(0).u32(0).u32(0).bytes());
      expect(major8.error).toBe(0);
      expect(new DataView(major8.body.buffer).getUint32(0, true)).toBe(7);
      expect((await fresh.call(Op.GETATTR, 1, new Uint8Array(16))).error).toBe(-ERR.EIO); // still not initialised
      expect((await fresh.init(0, 31)).error).toBe(0);
    } finally {
      await fresh.close();
    }
  });

  it('DESTROY ends the session: node ids are dropped and requests need a new INIT', async () => {
    const e = await c.lookup(1, 'hello.txt');
    expect((await c.call(Op.DESTROY, 0)).error).toBe(0);
    expect((await c.call(Op.GETATTR, e.nodeid, new Uint8Array(16))).error).toBe(-ERR.EIO);
    await c.init();
    expect((await c.call(Op.GETATTR, e.nodeid, new Uint8Array(16))).error).toBe(-ERR.EBADF);
    expect(c.dev.stats.inodes).toBe(1);
  });
});

describe('LOOKUP and GETATTR', () => {
  it('returns the host attributes, the 5 s default timeouts, and one node id per host file', async () => {
    const e = await c.lookup(1, 'hello.txt');
    const st = statSync(join(dir, 'hello.txt'), { bigint: true });
    expect(e.nodeid).toBeGreaterThan(1);
    expect(e.entryValid).toBe(5);
    expect(e.attrValid).toBe(5);
    expect(e.attr.ino).toBe(st.ino);
    expect(e.attr.size).toBe(13);
    expect(e.attr.mode).toBe(Number(st.mode));
    expect(e.attr.nlink).toBe(1);
    expect(e.attr.mtime).toBe(st.mtimeNs / 1_000_000_000n);
    expect(e.attr.mtimensec).toBe(Number(st.mtimeNs % 1_000_000_000n));
    expect((await c.lookup(1, 'hello.txt')).nodeid).toBe(e.nodeid);
    linkSync(join(dir, 'hello.txt'), join(dir, 'hard'));
    expect((await c.lookup(1, 'hard')).nodeid).toBe(e.nodeid); // same host inode, same node id
    const a = await c.getattr(e.nodeid);
    expect(a.nlink).toBe(2);
  });

  it('sees a symlink as a symlink, and directories, through nested lookups', async () => {
    const l = await c.lookup(1, 'link');
    expect(l.attr.mode & 0o170000).toBe(0o120000);
    expect(l.attr.size).toBe('hello.txt'.length);
    const sub = await c.lookup(1, 'sub');
    expect(sub.attr.mode & 0o170000).toBe(0o040000);
    expect((await c.lookup(sub.nodeid, 'inner')).attr.size).toBe(10_000);
    expect((await c.lookup(sub.nodeid, '..')).nodeid).toBe(1);
    expect((await c.lookup(sub.nodeid, '.')).nodeid).toBe(sub.nodeid);
  });

  it('answers ENOENT for missing names, unknown parents and empty names; EINVAL for names with /', async () => {
    expect((await c.call(Op.LOOKUP, 1, z('missing'))).error).toBe(-ERR.ENOENT);
    expect((await c.call(Op.LOOKUP, 999, z('hello.txt'))).error).toBe(-ERR.ENOENT);
    expect((await c.call(Op.LOOKUP, 1, z(''))).error).toBe(-ERR.ENOENT);
    expect((await c.call(Op.LOOKUP, 1, z('sub/inner'))).error).toBe(-ERR.EINVAL);
    expect((await c.call(Op.LOOKUP, 1, z('x'.repeat(256)))).error).toBe(-ERR.ENAMETOOLONG);
    expect((await c.call(Op.LOOKUP, 1, new TextEncoder().encode('no-nul'))).error).toBe(-ERR.EINVAL);
    const file = await c.lookup(1, 'hello.txt');
    expect((await c.call(Op.LOOKUP, file.nodeid, z('x'))).error).toBe(-ERR.ENOTDIR);
  });

  it('GETATTR of an unknown node id is EBADF; a short fuse_getattr_in is EINVAL', async () => {
    expect((await c.call(Op.GETATTR, 77, new Uint8Array(16))).error).toBe(-ERR.EBADF);
    expect((await c.call(Op.GETATTR, 1, new Uint8Array(8))).error).toBe(-ERR.EINVAL);
    const root = await c.getattr(1);
    expect(root.ino).toBe(statSync(dir, { bigint: true }).ino);
  });

  it('FORGET drops the node id once every lookup is forgotten; BATCH_FORGET too; neither replies', async () => {
    const e = await c.lookup(1, 'hello.txt');
    await c.lookup(1, 'hello.txt');
    expect((await c.call(Op.FORGET, e.nodeid, le().u64(1).bytes(), { queue: 0 })).used).toBe(0);
    expect((await c.getattr(e.nodeid)).size).toBe(13); // one lookup left
    expect((await c.call(Op.FORGET, e.nodeid, le().u64(1).bytes(), { queue: 0 })).used).toBe(0);
    expect((await c.call(Op.GETATTR, e.nodeid, new Uint8Array(16))).error).toBe(-ERR.EBADF);
    const a = await c.lookup(1, 'hello.txt');
    const b = await c.lookup(1, 'sub');
    const batch = le().u32(3).u32(0).u64(a.nodeid).u64(1).u64(b.nodeid).u64(5).u64(12345).u64(1).bytes();
    expect((await c.call(Op.BATCH_FORGET, 0, batch, { queue: 0 })).used).toBe(0);
    expect(c.dev.stats.inodes).toBe(1);
    expect((await c.call(Op.FORGET, 1, le().u64(100).bytes())).used).toBe(0); // the root is never forgotten
    expect((await c.getattr(1)).mode & 0o170000).toBe(0o040000);
  });
});

describe('READLINK', () => {
  it('gives the link text unresolved; ENOENT (the host readlinkat) on anything but a symlink', async () => {
    const l = await c.lookup(1, 'link');
    const r = await c.call(Op.READLINK, l.nodeid);
    expect(new TextDecoder().decode(r.body)).toBe('hello.txt');
    expect(r.len).toBe(16 + 9);
    const f = await c.lookup(1, 'hello.txt');
    expect((await c.call(Op.READLINK, f.nodeid)).error).toBe(-ERR.ENOENT);
  });
});

describe('OPEN, READ, RELEASE', () => {
  it('reads a file in pieces, returns short reads at EOF, and releases the handle', async () => {
    const e = await c.lookup(1, 'hello.txt');
    const { fh, openFlags } = await c.open(e.nodeid, 0);
    expect(openFlags).toBe(0); // cache=auto
    expect(new TextDecoder().decode(await c.read(e.nodeid, fh, 0, 5))).toBe('hello');
    expect(new TextDecoder().decode(await c.read(e.nodeid, fh, 7, 100))).toBe('world\n');
    expect((await c.read(e.nodeid, fh, 100, 10)).length).toBe(0);
    expect((await c.release(e.nodeid, fh)).error).toBe(0);
    expect((await c.call(Op.READ, e.nodeid, c.readArgs(fh, 0, 5))).error).toBe(-ERR.EBADF);
    expect((await c.release(e.nodeid, fh)).error).toBe(-ERR.EBADF);
  });

  it('reads a large file straight into guest buffers split across descriptors (the thread-pool path)', async () => {
    const data = Buffer.alloc(3 << 20);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7 + (i >> 12)) & 0xff;
    writeFileSync(join(dir, 'big'), data);
    const e = await c.lookup(1, 'big');
    const { fh } = await c.open(e.nodeid, 0);
    const got = await c.read(e.nodeid, fh, 4096 * 3 + 5, 1 << 20);
    expect(Buffer.from(got).equals(data.subarray(4096 * 3 + 5, 4096 * 3 + 5 + (1 << 20)))).toBe(true);
    // several small buffers: 16-byte header area split from the data
    const reply = await c.call(Op.READ, e.nodeid, c.readArgs(fh, 100, 3000), { replySize: 3016 });
    expect(Buffer.from(reply.body).equals(data.subarray(100, 3100))).toBe(true);
    expect(reply.len).toBe(3016);
    await c.release(e.nodeid, fh);
  });

  it('cuts a READ to the reply area', async () => {
    const e = await c.lookup(1, 'hello.txt');
    const { fh } = await c.open(e.nodeid, 0);
    const r = await c.call(Op.READ, e.nodeid, c.readArgs(fh, 0, 4096), { replySize: 16 + 4 });
    expect(r.len).toBe(20);
    expect(new TextDecoder().decode(r.body)).toBe('hell');
  });

  it('uses cache policies for open flags: never → DIRECT_IO, always → KEEP_CACHE / CACHE_DIR', async () => {
    for (const [cache, file, dirFlags] of [['never', FOPEN.DIRECT_IO, 0], ['always', FOPEN.KEEP_CACHE, FOPEN.CACHE_DIR]] as const) {
      const k = FuseClient.create({ sharedDir: dir, tag: 't', cache });
      try {
        await k.init();
        const e = await k.lookup(1, 'hello.txt');
        expect(e.entryValid).toBe(cache === 'never' ? 0 : 5);
        expect((await k.open(e.nodeid, 0)).openFlags).toBe(file);
        const r = await k.call(Op.OPENDIR, 1, le().u32(0).u32(0).bytes());
        expect(new DataView(r.body.buffer).getUint32(8, true)).toBe(dirFlags);
      } finally {
        await k.close();
      }
    }
  });

  it('handles belong to their node id and kind', async () => {
    const e = await c.lookup(1, 'hello.txt');
    const other = await c.lookup(1, 'sub');
    const { fh } = await c.open(e.nodeid, 0);
    expect((await c.call(Op.READ, other.nodeid, c.readArgs(fh, 0, 5))).error).toBe(-ERR.EBADF);
    expect((await c.release(e.nodeid, fh, true)).error).toBe(-ERR.EBADF);
    const dfh = await c.opendir(other.nodeid);
    expect((await c.call(Op.READ, other.nodeid, c.readArgs(dfh, 0, 5))).error).toBe(-ERR.EBADF);
  });

  it('never opens anything but regular files and directories (a symlink is EBADF)', async () => {
    const l = await c.lookup(1, 'link');
    expect((await c.call(Op.OPEN, l.nodeid, le().u32(0).u32(0).bytes())).error).toBe(-ERR.EBADF);
  });

  it('OPEN of a directory with O_TMPFILE opens the directory, not an unnamed file in it', async () => {
    const sub = await c.lookup(1, 'sub');
    const O_TMPFILE = O.TMPFILE_BIT | O.DIRECTORY;
    const r = await c.call(Op.OPEN, sub.nodeid, le().u32(O_TMPFILE | 2).u32(0).bytes());
    expect(r.error).toBe(-ERR.EISDIR); // O_RDWR on the directory itself
  });
});

describe('OPENDIR, READDIR, READDIRPLUS', () => {
  it('lists every entry with . and .., types and offsets that resume the listing', async () => {
    const names = (await c.list(1)).map((d) => d.name).sort();
    expect(names).toEqual(['.', '..', 'hello.txt', 'link', 'sub']);
    const all = await c.list(1);
    const link = all.find((d) => d.name === 'link')!;
    expect(link.type).toBe(10); // DT_LNK
    expect(all.find((d) => d.name === 'sub')!.type).toBe(4); // DT_DIR
    // the root's .. is the root itself
    expect(all.find((d) => d.name === '..')!.ino).toBe(statSync(dir, { bigint: true }).ino);
  });

  it('pages through a large directory in small replies without losing or repeating entries', async () => {
    const big = join(dir, 'many');
    mkdirSync(big);
    for (let i = 0; i < 300; i++) writeFileSync(join(big, `file-${i}-${'y'.repeat(i % 40)}`), '');
    const e = await c.lookup(1, 'many');
    const listed = (await c.list(e.nodeid, false, 200)).map((d) => d.name).filter((n) => n !== '.' && n !== '..');
    expect(listed.length).toBe(300);
    expect(new Set(listed)).toEqual(new Set(readdirSync(big)));
  });

  it('READDIRPLUS looks each entry up (node id and attributes), . and .. without a node id', async () => {
    const all = await c.list(1, true);
    const hello = all.find((d) => d.name === 'hello.txt')!;
    expect(hello.entry!.nodeid).toBeGreaterThan(1);
    expect(hello.entry!.attr.size).toBe(13);
    expect(hello.entry!.entryValid).toBe(5);
    expect(all.find((d) => d.name === '.')!.entry!.nodeid).toBe(0);
    expect(all.find((d) => d.name === '..')!.entry!.nodeid).toBe(0);
    expect((await c.lookup(1, 'hello.txt')).nodeid).toBe(hello.entry!.nodeid);
  });

  it('a reply area smaller than one entry yields an empty listing, not a broken one', async () => {
    const fh = await c.opendir(1);
    expect(await c.readdir(1, fh, 0, 20)).toEqual([]);
    expect((await c.readdir(1, fh, 0, 32)).length).toBe(1);
  });

  it('OPENDIR of a file is ENOTDIR', async () => {
    const e = await c.lookup(1, 'hello.txt');
    expect((await c.call(Op.OPENDIR, e.nodeid, le().u32(0).u32(0).bytes())).error).toBe(-ERR.ENOTDIR);
  });
});

describe('STATFS, ACCESS, LSEEK, unknown opcodes', () => {
  it('STATFS reports the host file system', async () => {
    const b = await c.ok(Op.STATFS, 1);
    const v = new DataView(b.buffer);
    expect(b.length).toBe(80);
    expect(Number(v.getBigUint64(0, true))).toBeGreaterThan(0); // blocks
    expect(v.getUint32(40, true)).toBeGreaterThan(0); // bsize
    expect(v.getUint32(44, true)).toBe(255); // namelen
  });

  it('ACCESS checks the mode bits for the caller', async () => {
    writeFileSync(join(dir, 'ro'), '');
    const { chmodSync } = await import('node:fs');
    chmodSync(join(dir, 'ro'), 0o640);
    const e = await c.lookup(1, 'ro');
    const st = lstatSync(join(dir, 'ro'));
    const acc = (mask: number, uid: number, gid: number): Promise<number> =>
      c.call(Op.ACCESS, e.nodeid, le().u32(mask).u32(0).bytes(), { uid, gid }).then((r) => r.error);
    expect(await acc(4 | 2, st.uid, 12345)).toBe(0); // owner rw
    expect(await acc(1, st.uid, 12345)).toBe(-ERR.EACCES); // no x
    expect(await acc(4, 54321, st.gid)).toBe(0); // group r
    expect(await acc(2, 54321, st.gid)).toBe(-ERR.EACCES);
    expect(await acc(4, 54321, 54321)).toBe(-ERR.EACCES); // other: nothing
    expect(await acc(0, 54321, 54321)).toBe(0); // F_OK
    expect(await acc(4 | 2, 0, 0)).toBe(0); // root
  });

  it('LSEEK finds data and holes (SEEK_DATA 3, SEEK_HOLE 4)', async () => {
    const e = await c.lookup(1, 'hello.txt');
    const { fh } = await c.open(e.nodeid, 0);
    const seek = async (off: number, whence: number): Promise<number> => {
      const r = await c.call(Op.LSEEK, e.nodeid, le().u64(fh).u64(off).u32(whence).u32(0).bytes());
      return r.error || Number(new DataView(r.body.buffer).getBigUint64(0, true));
    };
    expect(await seek(0, 3)).toBe(0);
    expect(await seek(0, 4)).toBe(13);
    expect(await seek(20, 3)).toBe(-6); // ENXIO past the end
  });

  it('answers ENOSYS to opcodes it does not serve, and to unknown numbers', async () => {
    for (const op of [Op.GETLK, Op.SETLK, Op.SETLKW, Op.BMAP, Op.IOCTL, Op.POLL, Op.COPY_FILE_RANGE, Op.SYNCFS, Op.TMPFILE, 9999, 0]) {
      const r = await c.call(op, 1, new Uint8Array(64));
      expect(r.error, `opcode ${op}`).toBe(-ERR.ENOSYS);
      expect(r.len).toBe(16);
    }
  });
});
