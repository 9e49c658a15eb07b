/**
 * The allowlist as the guest sees it, through `VirtioFs.allowPaths()` / `revokePaths()` (the API
 * the allowlist socket drives): lookups, listings, opens and changes follow it at once; handles
 * already open keep working after a revoke.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { VirtioFs } from '../../../../src/devices/virtio/fs';
import { FuseOpcode as Op } from '../../../../src/fuse/abi';
import { AllowlistError } from '../../../../src/fuse/Allowlist';
import { cleanupTempDirs, ERR, tempDir } from '../../../fuse/helpers';
import { cat, FuseClient, le, z } from './fuseClient';

afterAll(cleanupTempDirs);

let dir: string;
let c: FuseClient;

beforeEach(async () => {
  dir = tempDir();
  for (const d of ['a/b/c', 'a/x', 'other']) mkdirSync(join(dir, d), { recursive: true });
  writeFileSync(join(dir, 'a/b/c/file'), 'in c');
  writeFileSync(join(dir, 'a/b/sib'), 'sibling');
  writeFileSync(join(dir, 'a/x/hidden'), 'hidden');
  writeFileSync(join(dir, 'top'), 'top');
  c = FuseClient.create({ sharedDir: dir, tag: 'al', allowedPaths: ['/a/b/c'] });
  await c.init();
});
afterEach(async () => {
  await c.close();
});

const names = async (nodeid: number): Promise<string[]> => (await c.list(nodeid)).map((d) => d.name).filter((n) => n !== '.' && n !== '..').sort();

describe('VirtioFs allowlist', () => {
  it('shows allowed paths, their descendants and the directories leading to them, nothing else', async () => {
    expect(await names(1)).toEqual(['a']);
    const a = await c.lookup(1, 'a');
    expect(await names(a.nodeid)).toEqual(['b']);
    const b = await c.lookup(a.nodeid, 'b');
    expect(await names(b.nodeid)).toEqual(['c']);
    const cc = await c.lookup(b.nodeid, 'c');
    expect(await names(cc.nodeid)).toEqual(['file']);
    expect(new TextDecoder().decode(await c.readFile((await c.lookup(cc.nodeid, 'file')).nodeid))).toBe('in c');
    for (const [parent, name] of [[1, 'top'], [1, 'other'], [a.nodeid, 'x'], [b.nodeid, 'sib']] as const) {
      expect((await c.call(Op.LOOKUP, parent, z(name))).error, name).toBe(-ERR.ENOENT);
    }
    const plus = (await c.list(b.nodeid, true)).map((d) => d.name);
    expect(plus).not.toContain('sib');
  });

  it('nothing can be created, removed or changed in a traverse-only directory; everything below an allowed path', async () => {
    const a = await c.lookup(1, 'a');
    expect((await c.call(Op.MKDIR, a.nodeid, cat(le().u32(0o755).u32(0).bytes(), z('new')))).error).toBe(-ERR.EACCES);
    expect((await c.call(Op.CREATE, 1, cat(le().u32(1).u32(0o644).u32(0).u32(0).bytes(), z('new')))).error).toBe(-ERR.EACCES);
    expect((await c.call(Op.UNLINK, 1, z('top'))).error).toBe(-ERR.EACCES);
    expect((await c.call(Op.SETXATTR, a.nodeid, cat(le().u32(1).u32(0).bytes(), z('user.x'), new Uint8Array(1)))).error).toBe(-ERR.EACCES);
    const cc = await c.walk('a/b/c');
    expect((await c.mkdir(cc.nodeid, 'made')).nodeid).toBeGreaterThan(1);
    expect((await c.call(Op.RENAME, cc.nodeid, cat(le().u64(a.nodeid).bytes(), z('made'), z('escaped')))).error).toBe(-ERR.EACCES);
  });

  it('allowPaths takes effect for the next request', async () => {
    expect((await c.call(Op.LOOKUP, 1, z('top'))).error).toBe(-ERR.ENOENT);
    c.dev.allowPaths(['/top', '/other']);
    expect((await c.lookup(1, 'top')).attr.size).toBe(3);
    expect(await names(1)).toEqual(['a', 'other', 'top']);
    expect(c.dev.allowlist!.paths()).toEqual(['/a/b/c', '/other', '/top']);
  });

  it('revokePaths hides a path at once for lookups and opens; open handles keep working', async () => {
    const file = await c.walk('a/b/c/file');
    const { fh } = await c.open(file.nodeid, 0);
    c.dev.revokePaths(['/a/b/c']);
    expect((await c.call(Op.LOOKUP, 1, z('a'))).error).toBe(-ERR.ENOENT);
    expect((await c.call(Op.OPEN, file.nodeid, le().u32(0).u32(0).bytes())).error).toBe(-ERR.EACCES);
    expect(new TextDecoder().decode(await c.read(file.nodeid, fh, 0, 100))).toBe('in c'); // already open
    expect(await names(1)).toEqual([]);
  });

  it('a revoked file the guest still holds cannot be linked back into view', async () => {
    c.dev.allowPaths(['/open']);
    mkdirSync(join(dir, 'open'));
    const file = await c.walk('a/b/c/file');
    const open = await c.lookup(1, 'open');
    c.dev.revokePaths(['/a/b/c']);
    expect((await c.call(Op.LINK, open.nodeid, cat(le().u64(file.nodeid).bytes(), z('again')))).error).toBe(-ERR.EACCES);
    expect((await c.call(Op.READLINK, file.nodeid)).error).toBe(-ERR.EACCES);
  });

  it('follows renames: a moved file is judged by where it is now', async () => {
    c.dev.allowPaths(['/a/b/c/keep']);
    mkdirSync(join(dir, 'a/b/c/keep'));
    const cc = await c.walk('a/b/c');
    const keep = await c.lookup(cc.nodeid, 'keep');
    const f = await c.create(keep.nodeid, 'moving', 1, 0o644);
    await c.release(f.entry.nodeid, f.fh);
    expect((await c.call(Op.RENAME, keep.nodeid, cat(le().u64(cc.nodeid).bytes(), z('moving'), z('moved')))).error).toBe(0);
    c.dev.revokePaths(['/a/b/c']); // /a/b/c/keep stays allowed, /a/b/c/moved does not
    expect((await c.call(Op.OPEN, f.entry.nodeid, le().u32(0).u32(0).bytes())).error).toBe(-ERR.EACCES);
    expect(await c.opendir(keep.nodeid)).toBeGreaterThan(0); // still allowed
    expect((await c.call(Op.LOOKUP, cc.nodeid, z('moved'))).error).toBe(-ERR.ENOENT);
  });

  it('bad paths change nothing and throw AllowlistError; a device without an allowlist refuses the calls', async () => {
    expect(() => c.dev.allowPaths(['/ok', '../escape'])).toThrow(AllowlistError);
    expect(() => c.dev.revokePaths(['/not-there'])).toThrow(AllowlistError);
    expect(c.dev.allowlist!.paths()).toEqual(['/a/b/c']);
    const plain = new VirtioFs({ sharedDir: dir, tag: 'plain' });
    try {
      expect(plain.allowlist).toBeUndefined();
      expect(() => plain.allowPaths(['/a'])).toThrow(/has no allowlist/);
    } finally {
      await plain.close();
    }
  });

  it('allowlistSocket alone turns the allowlist on, empty', async () => {
    const k = FuseClient.create({ sharedDir: dir, tag: 'sock', allowlistSocket: join(dir, 'never-created.sock') });
    try {
      await k.init();
      expect(k.dev.allowlistSocket).toBe(join(dir, 'never-created.sock'));
      expect((await k.list(1)).map((d) => d.name).sort()).toEqual(['.', '..']);
      expect((await k.call(Op.LOOKUP, 1, z('top'))).error).toBe(-ERR.ENOENT);
    } finally {
      await k.close();
    }
  });
});
