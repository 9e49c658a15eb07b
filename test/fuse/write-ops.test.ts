/**
 * FUSE operations that change the share, against a real temporary directory through a VirtioFs
 * device on fake guest RAM: SETATTR, SYMLINK, MKNOD, MKDIR, UNLINK, RMDIR, RENAME, RENAME2, LINK,
 * CREATE, WRITE, FLUSH, FSYNC, FSYNCDIR, the xattr family and FALLOCATE. Each result is checked on
 * the host with node:fs.
 */
import {
  existsSync, lstatSync, mkdirSync, readFileSync, readlinkSync, statSync, writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FATTR, FuseOpcode as Op } from '../../src/fuse/abi';
import { cat, FuseClient, le, z } from '../devices/virtio/fs/fuseClient';
import { cleanupTempDirs, ERR, tempDir } from './helpers';

afterAll(cleanupTempDirs);

let dir: string;
let c: FuseClient;
const O_WRONLY = 1;
const O_RDWR = 2;
const O_EXCL = 0o200;
const O_TRUNC = 0o1000;
/** Ownership follows the caller only when the VMM runs as root (as with virtiofsd). */
const AS_ROOT = process.getuid?.() === 0;
const me = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };

beforeEach(async () => {
  dir = tempDir();
  writeFileSync(join(dir, 'file'), '0123456789');
  mkdirSync(join(dir, 'd'));
  c = FuseClient.create({ sharedDir: dir, tag: 'test' });
  await c.init();
});
afterEach(async () => {
  await c.close();
});

/** fuse_setattr_in. */
function setattrArgs(a: { valid: number; fh?: number; size?: number; atime?: [number, number]; mtime?: [number, number]; mode?: number; uid?: number; gid?: number }): Uint8Array {
  return le()
    .u32(a.valid).u32(0).u64(a.fh ?? 0).u64(a.size ?? 0).u64(0)
    .u64(a.atime?.[0] ?? 0).u64(a.mtime?.[0] ?? 0).u64(0)
    .u32(a.atime?.[1] ?? 0).u32(a.mtime?.[1] ?? 0).u32(0).u32(a.mode ?? 0).u32(0).u32(a.uid ?? 0).u32(a.gid ?? 0).u32(0)
    .bytes();
}

describe('SETATTR', () => {
  it('changes mode, owner, size and times, and answers the new attributes', async () => {
    const e = await c.lookup(1, 'file');
    const r = await c.ok(Op.SETATTR, e.nodeid, setattrArgs({ valid: FATTR.MODE, mode: 0o100604 }));
    expect(r.length).toBe(104);
    expect(lstatSync(join(dir, 'file')).mode & 0o7777).toBe(0o604);
    if (AS_ROOT) {
      await c.ok(Op.SETATTR, e.nodeid, setattrArgs({ valid: FATTR.UID | FATTR.GID, uid: 1234, gid: 5678 }));
      expect(lstatSync(join(dir, 'file'))).toMatchObject({ uid: 1234, gid: 5678 });
      await c.ok(Op.SETATTR, e.nodeid, setattrArgs({ valid: FATTR.GID, gid: 42 }));
      expect(lstatSync(join(dir, 'file'))).toMatchObject({ uid: 1234, gid: 42 });
    } else {
      expect((await c.call(Op.SETATTR, e.nodeid, setattrArgs({ valid: FATTR.UID, uid: me.uid + 1 }))).error).toBe(-ERR.EPERM);
    }
    await c.ok(Op.SETATTR, e.nodeid, setattrArgs({ valid: FATTR.SIZE, size: 4 }));
    expect(readFileSync(join(dir, 'file'), 'utf8')).toBe('0123');
    const b = await c.ok(Op.SETATTR, e.nodeid, setattrArgs({ valid: FATTR.ATIME | FATTR.MTIME, atime: [1_000_000, 5], mtime: [2_000_000, 7] }));
    const st = statSync(join(dir, 'file'), { bigint: true });
    expect(st.atimeNs).toBe(1_000_000n * 1_000_000_000n + 5n);
    expect(st.mtimeNs).toBe(2_000_000n * 1_000_000_000n + 7n);
    expect(new DataView(b.buffer).getBigUint64(16 + 32, true)).toBe(2_000_000n); // attr.mtime in the reply
    const before = Date.now() / 1000;
    await c.ok(Op.SETATTR, e.nodeid, setattrArgs({ valid: FATTR.MTIME | FATTR.MTIME_NOW }));
    expect(statSync(join(dir, 'file')).mtimeMs / 1000).toBeGreaterThanOrEqual(before - 1);
    expect(statSync(join(dir, 'file', '..')).isDirectory()).toBe(true);
  });

  it('uses the open handle when FATTR_FH is set, and EBADF for a stale one', async () => {
    const e = await c.lookup(1, 'file');
    const { fh } = await c.open(e.nodeid, O_RDWR);
    await c.ok(Op.SETATTR, e.nodeid, setattrArgs({ valid: FATTR.SIZE | FATTR.FH, fh, size: 2 }));
    expect(readFileSync(join(dir, 'file'), 'utf8')).toBe('01');
    expect((await c.call(Op.SETATTR, e.nodeid, setattrArgs({ valid: FATTR.SIZE | FATTR.FH, fh: fh + 100, size: 1 }))).error).toBe(-ERR.EBADF);
  });

  it('truncating a directory is EISDIR; a symlink EBADF (only regular files are opened)', async () => {
    const d = await c.lookup(1, 'd');
    expect((await c.call(Op.SETATTR, d.nodeid, setattrArgs({ valid: FATTR.SIZE, size: 0 }))).error).toBe(-ERR.EISDIR);
    const { symlinkSync } = await import('node:fs');
    symlinkSync('/etc/passwd', join(dir, 'l'));
    const l = await c.lookup(1, 'l');
    expect((await c.call(Op.SETATTR, l.nodeid, setattrArgs({ valid: FATTR.SIZE, size: 0 }))).error).toBe(-ERR.EBADF);
    expect(statSync('/etc/passwd').size).toBeGreaterThan(0);
  });

  it('sets the times of a symlink itself, not of its target', async () => {
    const { symlinkSync } = await import('node:fs');
    writeFileSync(join(dir, 'target'), '');
    symlinkSync('target', join(dir, 'sl'));
    const before = statSync(join(dir, 'target'), { bigint: true }).mtimeNs;
    const l = await c.lookup(1, 'sl');
    await c.ok(Op.SETATTR, l.nodeid, setattrArgs({ valid: FATTR.MTIME, mtime: [3_000_000, 0] }));
    expect(lstatSync(join(dir, 'sl'), { bigint: true }).mtimeNs).toBe(3_000_000n * 1_000_000_000n);
    expect(statSync(join(dir, 'target'), { bigint: true }).mtimeNs).toBe(before);
  });
});

describe('creating entries', () => {
  it('MKDIR, MKNOD, SYMLINK give exact modes, the caller as owner, and entries the guest can use', async () => {
    const d = await c.mkdir(1, 'newdir', 0o777, { uid: 1000, gid: 1001 });
    const st = lstatSync(join(dir, 'newdir'));
    expect(st.isDirectory()).toBe(true);
    expect(st.mode & 0o7777).toBe(0o777); // the VMM's umask does not apply
    expect(st).toMatchObject(AS_ROOT ? { uid: 1000, gid: 1001 } : me);
    expect(d.attr.uid).toBe(AS_ROOT ? 1000 : me.uid);
    const fifo = await c.ok(Op.MKNOD, d.nodeid, cat(le().u32(0o010640).u32(0).u32(0).u32(0).bytes(), z('fifo')));
    expect(lstatSync(join(dir, 'newdir', 'fifo')).isFIFO()).toBe(true);
    expect(new DataView(fifo.buffer).getUint32(40 + 60, true)).toBe(0o010640);
    const reg = await c.call(Op.MKNOD, d.nodeid, cat(le().u32(0o100600).u32(0).u32(0).u32(0).bytes(), z('regular')));
    expect(reg.error).toBe(0);
    expect(lstatSync(join(dir, 'newdir', 'regular')).isFile()).toBe(true);
    const s = await c.ok(Op.SYMLINK, d.nodeid, cat(z('ln'), z('../../outside/target')), { uid: 1000, gid: 1000 });
    expect(readlinkSync(join(dir, 'newdir', 'ln'))).toBe('../../outside/target');
    expect(lstatSync(join(dir, 'newdir', 'ln')).uid).toBe(AS_ROOT ? 1000 : me.uid);
    expect(new DataView(s.buffer).getUint32(40 + 60, true) & 0o170000).toBe(0o120000);
  });

  it('refuses ., .. and names with / where entries are created (EINVAL), and existing names (EEXIST)', async () => {
    for (const name of ['.', '..', 'a/b']) {
      expect((await c.call(Op.MKDIR, 1, cat(le().u32(0o755).u32(0).bytes(), z(name)))).error, name).toBe(-ERR.EINVAL);
      expect((await c.call(Op.UNLINK, 1, z(name))).error, name).toBe(-ERR.EINVAL);
    }
    expect((await c.call(Op.MKDIR, 1, cat(le().u32(0o755).u32(0).bytes(), z('')))).error).toBe(-ERR.ENOENT);
    expect((await c.call(Op.MKDIR, 1, cat(le().u32(0o755).u32(0).bytes(), z('d')))).error).toBe(-ERR.EEXIST);
    expect((await c.call(Op.MKDIR, 4242, cat(le().u32(0o755).u32(0).bytes(), z('x')))).error).toBe(-ERR.EBADF);
  });

  it('CREATE makes and opens a new file; O_EXCL on an existing one is EEXIST, without it the file is opened', async () => {
    const r = await c.create(1, 'new.txt', O_WRONLY, 0o4755, { uid: 1000, gid: 1000 });
    expect(r.entry.nodeid).toBeGreaterThan(1);
    expect(await c.write(r.entry.nodeid, r.fh, 0, new TextEncoder().encode('created'))).toBe(7);
    expect(readFileSync(join(dir, 'new.txt'), 'utf8')).toBe('created');
    const st = lstatSync(join(dir, 'new.txt'));
    expect(st.mode & 0o7777).toBe(0o4755); // set-user-ID survives the chown to the caller
    expect(st).toMatchObject(AS_ROOT ? { uid: 1000, gid: 1000 } : me);
    expect((await c.lookup(1, 'new.txt')).nodeid).toBe(r.entry.nodeid);
    const excl = await c.call(Op.CREATE, 1, cat(le().u32(O_WRONLY | O_EXCL).u32(0o644).u32(0).u32(0).bytes(), z('new.txt')));
    expect(excl.error).toBe(-ERR.EEXIST);
    const again = await c.create(1, 'new.txt', O_RDWR | O_TRUNC, 0o644);
    expect(again.entry.nodeid).toBe(r.entry.nodeid);
    expect(readFileSync(join(dir, 'new.txt'), 'utf8')).toBe('');
  });

  it('LINK makes a hard link and answers the same node id with nlink 2', async () => {
    const e = await c.lookup(1, 'file');
    const d = await c.lookup(1, 'd');
    const b = await c.ok(Op.LINK, d.nodeid, cat(le().u64(e.nodeid).bytes(), z('hard')));
    expect(Number(new DataView(b.buffer).getBigUint64(0, true))).toBe(e.nodeid);
    expect(new DataView(b.buffer).getUint32(40 + 64, true)).toBe(2);
    expect(statSync(join(dir, 'd', 'hard')).ino).toBe(statSync(join(dir, 'file')).ino);
    expect((await c.call(Op.LINK, 1, cat(le().u64(d.nodeid).bytes(), z('dirlink')))).error).toBe(-ERR.EPERM);
  });
});

describe('removing and renaming', () => {
  it('UNLINK and RMDIR remove entries, with the host errors for the wrong kind or a non-empty directory', async () => {
    writeFileSync(join(dir, 'd', 'x'), '');
    expect((await c.call(Op.RMDIR, 1, z('d'))).error).toBe(-ERR.ENOTEMPTY);
    expect((await c.call(Op.UNLINK, 1, z('d'))).error).toBe(-ERR.EISDIR);
    const d = await c.lookup(1, 'd');
    expect((await c.call(Op.UNLINK, d.nodeid, z('x'))).error).toBe(0);
    expect((await c.call(Op.RMDIR, 1, z('file'))).error).toBe(-ERR.ENOTDIR);
    expect((await c.call(Op.RMDIR, 1, z('d'))).error).toBe(0);
    expect((await c.call(Op.UNLINK, 1, z('file'))).error).toBe(0);
    expect((await c.call(Op.UNLINK, 1, z('file'))).error).toBe(-ERR.ENOENT);
    expect(existsSync(join(dir, 'd')) || existsSync(join(dir, 'file'))).toBe(false);
  });

  it('RENAME moves entries between directories; the moved node id keeps working', async () => {
    const e = await c.lookup(1, 'file');
    const d = await c.lookup(1, 'd');
    expect((await c.call(Op.RENAME, 1, cat(le().u64(d.nodeid).bytes(), z('file'), z('moved')))).error).toBe(0);
    expect(readFileSync(join(dir, 'd', 'moved'), 'utf8')).toBe('0123456789');
    expect((await c.getattr(e.nodeid)).size).toBe(10);
    expect((await c.lookup(d.nodeid, 'moved')).nodeid).toBe(e.nodeid);
  });

  it('RENAME2 NOREPLACE refuses to overwrite; EXCHANGE swaps two entries; unknown flags are EINVAL', async () => {
    writeFileSync(join(dir, 'other'), 'other');
    const r2 = (flags: number, from: string, to: string): Promise<number> =>
      c.call(Op.RENAME2, 1, cat(le().u64(1).u32(flags).u32(0).bytes(), z(from), z(to))).then((r) => r.error);
    expect(await r2(1, 'file', 'other')).toBe(-ERR.EEXIST);
    expect(await r2(2, 'file', 'other')).toBe(0);
    expect(readFileSync(join(dir, 'file'), 'utf8')).toBe('other');
    expect(readFileSync(join(dir, 'other'), 'utf8')).toBe('0123456789');
    expect(await r2(2, 'file', 'nothere')).toBe(-ERR.ENOENT);
    expect(await r2(0x80, 'file', 'x')).toBe(-ERR.EINVAL);
    expect(await r2(0, 'file', 'plain')).toBe(0);
    expect(existsSync(join(dir, 'plain'))).toBe(true);
  });

  it('refuses . and .. as rename sources and targets', async () => {
    expect((await c.call(Op.RENAME, 1, cat(le().u64(1).bytes(), z('..'), z('x')))).error).toBe(-ERR.EINVAL);
    expect((await c.call(Op.RENAME, 1, cat(le().u64(1).bytes(), z('file'), z('.')))).error).toBe(-ERR.EINVAL);
    expect((await c.call(Op.RENAME, 1, cat(le().u64(1).bytes(), z('file')))).error).toBe(-ERR.EINVAL); // no new name
  });
});

describe('WRITE, FLUSH, FSYNC, FALLOCATE', () => {
  it('writes at offsets, small and large (thread pool), from split guest buffers', async () => {
    const e = await c.lookup(1, 'file');
    const { fh } = await c.open(e.nodeid, O_RDWR);
    expect(await c.write(e.nodeid, fh, 2, new TextEncoder().encode('ab'))).toBe(2);
    expect(readFileSync(join(dir, 'file'), 'utf8')).toBe('01ab456789');
    const big = Buffer.alloc((1 << 20) + 3);
    for (let i = 0; i < big.length; i++) big[i] = (i * 13) & 0xff;
    const args = cat(le().u64(fh).u64(4096).u32(big.length).u32(0).u64(0).u32(0).u32(0).bytes(), big);
    const r = await c.call(Op.WRITE, e.nodeid, args, { split: [40, 40, 1000, 70_000, 3] });
    expect(r.error).toBe(0);
    expect(new DataView(r.body.buffer).getUint32(0, true)).toBe(big.length);
    expect(readFileSync(join(dir, 'file')).subarray(4096).equals(big)).toBe(true);
    expect((await c.call(Op.FLUSH, e.nodeid, le().u64(fh).u32(0).u32(0).u64(0).bytes())).error).toBe(0);
    expect((await c.call(Op.FSYNC, e.nodeid, le().u64(fh).u32(0).u32(0).bytes())).error).toBe(0);
    expect((await c.call(Op.FSYNC, e.nodeid, le().u64(fh).u32(1).u32(0).bytes())).error).toBe(0);
    expect((await c.release(e.nodeid, fh)).error).toBe(0);
  });

  it('a WRITE whose size runs past the request is EINVAL and writes nothing', async () => {
    const e = await c.lookup(1, 'file');
    const { fh } = await c.open(e.nodeid, O_RDWR);
    const args = cat(le().u64(fh).u64(0).u32(100).u32(0).u64(0).u32(0).u32(0).bytes(), new Uint8Array(10));
    expect((await c.call(Op.WRITE, e.nodeid, args)).error).toBe(-ERR.EINVAL);
    expect(readFileSync(join(dir, 'file'), 'utf8')).toBe('0123456789');
    expect((await c.call(Op.WRITE, e.nodeid, args.subarray(0, 20))).error).toBe(-ERR.EINVAL);
  });

  it('writing to a read-only handle is the host EBADF', async () => {
    const e = await c.lookup(1, 'file');
    const { fh } = await c.open(e.nodeid, 0);
    const args = cat(le().u64(fh).u64(0).u32(1).u32(0).u64(0).u32(0).u32(0).bytes(), new Uint8Array(1));
    expect((await c.call(Op.WRITE, e.nodeid, args)).error).toBe(-ERR.EBADF);
  });

  it('FSYNCDIR syncs a directory handle; FALLOCATE extends and punches', async () => {
    const fhd = await c.opendir(1);
    expect((await c.call(Op.FSYNCDIR, 1, le().u64(fhd).u32(0).u32(0).bytes())).error).toBe(0);
    const e = await c.lookup(1, 'file');
    const { fh } = await c.open(e.nodeid, O_RDWR);
    const fa = (mode: number, off: number, len: number): Promise<number> =>
      c.call(Op.FALLOCATE, e.nodeid, le().u64(fh).u64(off).u64(len).u32(mode).u32(0).bytes()).then((r) => r.error);
    expect(await fa(0, 0, 65536)).toBe(0);
    expect(statSync(join(dir, 'file')).size).toBe(65536);
    expect(await fa(0x01 | 0x02, 0, 4)).toBe(0); // KEEP_SIZE | PUNCH_HOLE
    expect(readFileSync(join(dir, 'file')).subarray(0, 6)).toEqual(Buffer.from([0, 0, 0, 0, 0x34, 0x35]));
    expect(await fa(0x80, 0, 1)).toBe(-ERR.EOPNOTSUPP);
  });
});

describe('extended attributes', () => {
  it('SETXATTR, GETXATTR (size probe and value), LISTXATTR, REMOVEXATTR', async () => {
    const e = await c.lookup(1, 'file');
    const value = new TextEncoder().encode('some value');
    const set = (name: string, v: Uint8Array, flags = 0): Promise<number> =>
      c.call(Op.SETXATTR, e.nodeid, cat(le().u32(v.length).u32(flags).bytes(), z(name), v)).then((r) => r.error);
    expect(await set('user.test', value)).toBe(0);
    expect(await set('user.test', value, 1)).toBe(-ERR.EEXIST); // XATTR_CREATE
    expect(await set('user.none', value, 2)).toBe(-ERR.ENODATA); // XATTR_REPLACE
    const probe = await c.call(Op.GETXATTR, e.nodeid, cat(le().u32(0).u32(0).bytes(), z('user.test')));
    expect(probe.len).toBe(24);
    expect(new DataView(probe.body.buffer).getUint32(0, true)).toBe(value.length);
    const got = await c.call(Op.GETXATTR, e.nodeid, cat(le().u32(100).u32(0).bytes(), z('user.test')));
    expect(new TextDecoder().decode(got.body)).toBe('some value');
    const small = await c.call(Op.GETXATTR, e.nodeid, cat(le().u32(3).u32(0).bytes(), z('user.test')));
    expect(small.error).toBe(-ERR.ERANGE);
    expect((await c.call(Op.GETXATTR, e.nodeid, cat(le().u32(100).u32(0).bytes(), z('user.missing')))).error).toBe(-ERR.ENODATA);
    const list = await c.call(Op.LISTXATTR, e.nodeid, le().u32(100).u32(0).bytes());
    expect(new TextDecoder().decode(list.body).split('\0')).toContain('user.test');
    const listSize = await c.call(Op.LISTXATTR, e.nodeid, le().u32(0).u32(0).bytes());
    expect(new DataView(listSize.body.buffer).getUint32(0, true)).toBe(list.body.length);
    expect((await c.call(Op.REMOVEXATTR, e.nodeid, z('user.test'))).error).toBe(0);
    expect((await c.call(Op.REMOVEXATTR, e.nodeid, z('user.test'))).error).toBe(-ERR.ENODATA);
  });

  it('xattrs of a symlink are the symlink own (user.* is not allowed on symlinks: EPERM)', async () => {
    const { symlinkSync } = await import('node:fs');
    symlinkSync('file', join(dir, 'sl'));
    const l = await c.lookup(1, 'sl');
    const r = await c.call(Op.SETXATTR, l.nodeid, cat(le().u32(1).u32(0).bytes(), z('user.x'), new Uint8Array(1)));
    expect(r.error).toBe(-ERR.EPERM);
    const f = await c.lookup(1, 'file');
    const list = await c.call(Op.LISTXATTR, f.nodeid, le().u32(100).u32(0).bytes());
    expect(new TextDecoder().decode(list.body)).not.toContain('user.x');
  });
});
