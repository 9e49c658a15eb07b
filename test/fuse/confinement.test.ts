/**
 * Confinement: nothing the guest sends reaches a host file outside the shared directory.
 * - a host symlink inside the share pointing at a secret outside it is seen as a symlink: its
 *   READLINK is the link text, OPEN is refused, every operation on it acts on the link itself;
 * - `..` at the root stays at the root, names with `/` are refused;
 * - renames racing with the guest (a real concurrent process swapping a file or a directory for a
 *   symlink to the secret) never make the guest read the secret or look up a name inside it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, lstatSync, mkdirSync, readFileSync, readlinkSync, renameSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FATTR, FuseOpcode as Op } from '../../src/fuse/abi';
import { cat, FuseClient, le, z } from '../devices/virtio/fs/fuseClient';
import { cleanupTempDirs, ERR, tempDir } from './helpers';

afterAll(cleanupTempDirs);

const SECRET = 'TOP-SECRET-CONTENT';
let outside: string;
let share: string;
let c: FuseClient;

beforeEach(async () => {
  outside = tempDir('kvmkit-fuse-outside-');
  writeFileSync(join(outside, 'secret.txt'), SECRET);
  chmodSync(join(outside, 'secret.txt'), 0o600);
  mkdirSync(join(outside, 'secretdir'));
  writeFileSync(join(outside, 'secretdir', 'inner.txt'), SECRET);
  share = tempDir();
  writeFileSync(join(share, 'public.txt'), 'public');
  symlinkSync(join(outside, 'secret.txt'), join(share, 'to-secret'));
  symlinkSync(join(outside, 'secretdir'), join(share, 'to-secretdir'));
  symlinkSync('../' + outside.split('/').pop() + '/secret.txt', join(share, 'relative'));
  c = FuseClient.create({ sharedDir: share, tag: 'conf' });
  await c.init();
});
afterEach(async () => {
  await c.close();
});

function setattr(valid: number, mode = 0, size = 0): Uint8Array {
  return le().u32(valid).u32(0).u64(0).u64(size).u64(0).u64(0).u64(7).u64(0).u32(0).u32(0).u32(0).u32(mode).u32(0).u32(0).u32(0).u32(0).bytes();
}

describe('a host symlink to a secret outside the share', () => {
  it('is a symlink to the guest; READLINK gives its text; OPEN is refused; nothing reads the secret', async () => {
    for (const name of ['to-secret', 'relative']) {
      const l = await c.lookup(1, name);
      expect(l.attr.mode & 0o170000, name).toBe(0o120000);
      expect(l.attr.ino).not.toBe(statSync(join(outside, 'secret.txt'), { bigint: true }).ino);
      const link = await c.call(Op.READLINK, l.nodeid);
      expect(new TextDecoder().decode(link.body)).toBe(readlinkSync(join(share, name)));
      for (const flags of [0, 1, 2, 0o1000]) {
        const r = await c.call(Op.OPEN, l.nodeid, le().u32(flags).u32(0).bytes());
        expect(r.error).toBe(-ERR.EBADF);
        expect(new TextDecoder().decode(r.area)).not.toContain(SECRET);
      }
      expect((await c.call(Op.OPENDIR, l.nodeid, le().u32(0).u32(0).bytes())).error).toBe(-ERR.ENOTDIR);
    }
  });

  it('operations on the link act on the link: chmod, truncate, times, xattrs, link', async () => {
    const l = await c.lookup(1, 'to-secret');
    expect((await c.call(Op.SETATTR, l.nodeid, setattr(FATTR.MODE, 0o777))).error).toBe(-ERR.EOPNOTSUPP);
    expect((await c.call(Op.SETATTR, l.nodeid, setattr(FATTR.SIZE, 0, 0))).error).toBe(-ERR.EBADF);
    expect((await c.call(Op.SETATTR, l.nodeid, setattr(FATTR.MTIME))).error).toBe(0);
    const r = await c.call(Op.GETXATTR, l.nodeid, cat(le().u32(64).u32(0).bytes(), z('user.x')));
    expect(r.error).toBe(-ERR.ENODATA);
    expect((await c.call(Op.LINK, 1, cat(le().u64(l.nodeid).bytes(), z('hard')))).error).toBe(0);
    expect(lstatSync(join(share, 'hard')).isSymbolicLink()).toBe(true);
    const st = statSync(join(outside, 'secret.txt'));
    expect(st.mode & 0o777).toBe(0o600);
    expect(st.size).toBe(SECRET.length);
    expect(readFileSync(join(outside, 'secret.txt'), 'utf8')).toBe(SECRET);
  });

  it('a symlink to a directory outside cannot be entered or listed', async () => {
    const l = await c.lookup(1, 'to-secretdir');
    expect((await c.call(Op.LOOKUP, l.nodeid, z('inner.txt'))).error).toBe(-ERR.ENOTDIR);
    expect((await c.call(Op.MKDIR, l.nodeid, cat(le().u32(0o755).u32(0).bytes(), z('new')))).error).toBe(-ERR.ENOTDIR);
    expect((await c.call(Op.CREATE, l.nodeid, cat(le().u32(1).u32(0o644).u32(0).u32(0).bytes(), z('new')))).error).toBe(-ERR.ENOTDIR);
    expect((await c.call(Op.OPENDIR, l.nodeid, le().u32(0).u32(0).bytes())).error).toBe(-ERR.ENOTDIR);
  });

  it('CREATE over a dangling symlink does not create its target outside', async () => {
    symlinkSync(join(outside, 'created-by-guest'), join(share, 'dangling'));
    const r = await c.call(Op.CREATE, 1, cat(le().u32(1).u32(0o644).u32(0).u32(0).bytes(), z('dangling')));
    expect(r.error).toBe(-ERR.EBADF); // EEXIST on the host, then the existing entry is a symlink: not opened
    expect(() => lstatSync(join(outside, 'created-by-guest'))).toThrow();
  });
});

describe('.. and names with /', () => {
  it('.. at the root stays at the root, any number of times; .. below it goes up', async () => {
    let node = 1;
    for (let i = 0; i < 5; i++) {
      const e = await c.lookup(node, '..');
      expect(e.nodeid).toBe(1);
      expect(e.attr.ino).toBe(statSync(share, { bigint: true }).ino);
      node = e.nodeid;
    }
    mkdirSync(join(share, 'a'));
    const a = await c.lookup(1, 'a');
    expect((await c.lookup(a.nodeid, '..')).nodeid).toBe(1);
    const listing = await c.list(1, true);
    expect(listing.find((d) => d.name === '..')!.ino).toBe(statSync(share, { bigint: true }).ino);
  });

  it('names with / are EINVAL everywhere a name is taken', async () => {
    const name = z(`../${outside.split('/').pop()}/secret.txt`);
    expect((await c.call(Op.LOOKUP, 1, name)).error).toBe(-ERR.EINVAL);
    expect((await c.call(Op.UNLINK, 1, name)).error).toBe(-ERR.EINVAL);
    expect((await c.call(Op.CREATE, 1, cat(le().u32(1).u32(0o644).u32(0).u32(0).bytes(), name))).error).toBe(-ERR.EINVAL);
    expect((await c.call(Op.SYMLINK, 1, cat(z('x/y'), z('t')))).error).toBe(-ERR.EINVAL);
    expect((await c.call(Op.RENAME, 1, cat(le().u64(1).bytes(), z('public.txt'), name))).error).toBe(-ERR.EINVAL);
    expect((await c.call(Op.LINK, 1, cat(le().u64(1).bytes(), name))).error).toBe(-ERR.EINVAL);
    expect((await c.call(Op.LOOKUP, 1, z('/etc'))).error).toBe(-ERR.EINVAL);
    expect(readFileSync(join(outside, 'secret.txt'), 'utf8')).toBe(SECRET);
  });
});

describe('renames racing with the guest', () => {
  let swapper: ChildProcess | undefined;
  afterEach(() => {
    swapper?.kill('SIGKILL');
    swapper = undefined;
  });

  /** A separate process that keeps replacing `name` in the share with a symlink to `target` and back to a real entry. */
  function startSwapper(name: string, target: string, dir: boolean): Promise<void> {
    const script = `
      const fs = require('fs'); const [share, name, target, dir] = process.argv.slice(1);
      process.stdout.write('go\\n');
      const at = (n) => share + '/' + n;
      const pause = () => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 0.3);
      for (let i = 0; ; i++) {
        if (dir === '1') { fs.mkdirSync(at('.real' + i)); fs.writeFileSync(at('.real' + i) + '/inner.txt', 'public'); }
        else fs.writeFileSync(at('.real' + i), 'public');
        fs.symlinkSync(target, at('.link' + i));
        try { fs.renameSync(at(name), at('.old' + i)); } catch {}
        fs.renameSync(at('.link' + i), at(name)); // now the symlink
        pause();
        fs.renameSync(at(name), at('.oldlink' + i));
        fs.renameSync(at('.real' + i), at(name)); // now a real entry again
        pause();
        if (i % 64 === 63) for (const f of fs.readdirSync(share)) if (f.startsWith('.old')) fs.rmSync(at(f), { recursive: true, force: true });
      }`;
    swapper = spawn(process.execPath, ['-e', script, share, name, target, dir ? '1' : '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
    swapper.stderr!.on('data', (d: Buffer) => {
      throw new Error(`the swapper process failed: ${d.toString()}`);
    });
    return new Promise((resolve) => swapper!.stdout!.once('data', () => resolve()));
  }

  it('a file swapped for a symlink between LOOKUP and OPEN: the guest reads the looked-up file or nothing, never the secret', async () => {
    writeFileSync(join(share, 'f'), 'public');
    await startSwapper('f', join(outside, 'secret.txt'), false);
    let sawLink = 0;
    let readPublic = 0;
    for (let i = 0; i < 1500; i++) {
      const l = await c.call(Op.LOOKUP, 1, z('f'));
      if (l.error) continue;
      const nodeid = Number(new DataView(l.body.buffer).getBigUint64(0, true));
      const o = await c.call(Op.OPEN, nodeid, le().u32(0).u32(0).bytes());
      if (o.error) {
        expect(o.error).toBe(-ERR.EBADF); // it was the symlink
        sawLink++;
      } else {
        const fh = Number(new DataView(o.body.buffer).getBigUint64(0, true));
        const r = await c.call(Op.READ, nodeid, c.readArgs(fh, 0, 100));
        expect(new TextDecoder().decode(r.body)).toBe('public');
        readPublic++;
        await c.release(nodeid, fh);
      }
      expect((await c.call(Op.FORGET, nodeid, le().u64(1).bytes())).used).toBe(0);
    }
    expect(sawLink).toBeGreaterThan(5); // the race really happened both ways
    expect(readPublic).toBeGreaterThan(5);
    expect(readFileSync(join(outside, 'secret.txt'), 'utf8')).toBe(SECRET);
  });

  it('a directory swapped for a symlink to a secret directory: lookups inside never reach it', async () => {
    mkdirSync(join(share, 'd'));
    writeFileSync(join(share, 'd', 'inner.txt'), 'public');
    await startSwapper('d', join(outside, 'secretdir'), true);
    const secretIno = statSync(join(outside, 'secretdir', 'inner.txt'), { bigint: true }).ino;
    let inside = 0;
    let links = 0;
    for (let i = 0; i < 1500; i++) {
      const d = await c.call(Op.LOOKUP, 1, z('d'));
      if (d.error) continue;
      const nodeid = Number(new DataView(d.body.buffer).getBigUint64(0, true));
      if ((new DataView(d.body.buffer).getUint32(40 + 60, true) & 0o170000) === 0o120000) links++;
      const e = await c.call(Op.LOOKUP, nodeid, z('inner.txt'));
      if (e.error === 0) {
        inside++;
        expect(new DataView(e.body.buffer).getBigUint64(40, true)).not.toBe(secretIno);
        const inner = Number(new DataView(e.body.buffer).getBigUint64(0, true));
        const o = await c.call(Op.OPEN, inner, le().u32(0).u32(0).bytes());
        if (o.error === 0) {
          const fh = Number(new DataView(o.body.buffer).getBigUint64(0, true));
          expect(new TextDecoder().decode((await c.call(Op.READ, inner, c.readArgs(fh, 0, 100))).body)).toBe('public');
          await c.release(inner, fh);
        }
        await c.call(Op.FORGET, inner, le().u64(1).bytes());
      } else {
        expect([-ERR.ENOTDIR, -ERR.ENOENT]).toContain(e.error);
      }
      await c.call(Op.FORGET, nodeid, le().u64(1).bytes());
    }
    expect(inside).toBeGreaterThan(5);
    expect(links).toBeGreaterThan(5);
  });

  it('a directory the guest holds, moved out of the way on the host, keeps its node id; its replacement is a new one', async () => {
    mkdirSync(join(share, 'held'));
    writeFileSync(join(share, 'held', 'x'), 'one');
    const held = await c.lookup(1, 'held');
    renameSync(join(share, 'held'), join(share, 'held-old'));
    symlinkSync(join(outside, 'secretdir'), join(share, 'held'));
    expect((await c.lookup(held.nodeid, 'x')).attr.size).toBe(3); // still the original directory
    expect((await c.call(Op.LOOKUP, held.nodeid, z('inner.txt'))).error).toBe(-ERR.ENOENT);
    const now = await c.lookup(1, 'held');
    expect(now.nodeid).not.toBe(held.nodeid);
    expect(now.attr.mode & 0o170000).toBe(0o120000);
  });
});
