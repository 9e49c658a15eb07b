/**
 * The FUSE server under the host kernel's own FUSE client (/dev/fuse, devFuse.ts): Linux does the
 * INIT handshake, LOOKUP/READDIRPLUS, page-cache reads and writes, renames, links, xattrs and
 * FORGETs exactly as in a virtio-fs guest. Ordinary file operations on the mount point must give
 * the same results as on the shared directory itself, the shared directory must show what was done
 * through the mount, and (with cache=never) the mount must see changes made on the host at once.
 * Needs root and /dev/fuse; skipped otherwise, saying why.
 */
import { execFile } from 'node:child_process';
import { existsSync, promises as fsp, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { cleanupTempDirs, tempDir } from './helpers';
import { DevFuseMount } from './devFuse';

const run = promisify(execFile);
const CAN_MOUNT = process.getuid?.() === 0 && existsSync('/dev/fuse');
if (!CAN_MOUNT) console.warn('\n*** SKIPPING the host-kernel FUSE client tests: they need root and /dev/fuse ***\n');

afterAll(cleanupTempDirs);

describe.skipIf(!CAN_MOUNT)('FUSE server under the host kernel FUSE client', () => {
  let share: string;
  let m: DevFuseMount;
  beforeEach(() => {
    share = tempDir();
    writeFileSync(join(share, 'hello.txt'), 'hello from the host\n');
  });
  afterEach(async () => {
    await m?.close();
  });

  it('negotiates INIT, lists, reads, writes, renames, links, symlinks, chmods, truncates and removes', async () => {
    m = await DevFuseMount.mount(share, { cache: 'auto', timeout: 5, writeback: false });
    const mnt = m.mountpoint;
    expect(m.server.initialized).toBe(true);
    expect(m.server.minor).toBe(37);
    expect((await fsp.readdir(mnt)).sort()).toEqual(['hello.txt']);
    expect(await fsp.readFile(join(mnt, 'hello.txt'), 'utf8')).toBe('hello from the host\n');
    await fsp.mkdir(join(mnt, 'dir/sub'), { recursive: true });
    await fsp.writeFile(join(mnt, 'dir/new.txt'), 'written by the client');
    expect(readFileSync(join(share, 'dir/new.txt'), 'utf8')).toBe('written by the client');
    await fsp.rename(join(mnt, 'dir/new.txt'), join(mnt, 'dir/sub/moved.txt'));
    expect(readFileSync(join(share, 'dir/sub/moved.txt'), 'utf8')).toBe('written by the client');
    await fsp.link(join(mnt, 'hello.txt'), join(mnt, 'hard.txt'));
    expect(statSync(join(share, 'hard.txt')).ino).toBe(statSync(join(share, 'hello.txt')).ino);
    expect((await fsp.stat(join(mnt, 'hello.txt'))).nlink).toBe(2);
    await fsp.symlink('hello.txt', join(mnt, 'sym'));
    expect(await fsp.readlink(join(mnt, 'sym'))).toBe('hello.txt');
    expect(await fsp.readFile(join(mnt, 'sym'), 'utf8')).toBe('hello from the host\n'); // the client resolves it
    await fsp.chmod(join(mnt, 'hello.txt'), 0o600);
    expect(statSync(join(share, 'hello.txt')).mode & 0o777).toBe(0o600);
    await fsp.truncate(join(mnt, 'hello.txt'), 5);
    expect(readFileSync(join(share, 'hello.txt'), 'utf8')).toBe('hello');
    await fsp.utimes(join(mnt, 'hello.txt'), 1_000_000, 2_000_000);
    expect(statSync(join(share, 'hello.txt')).mtimeMs).toBe(2_000_000_000);
    await fsp.unlink(join(mnt, 'hard.txt'));
    await fsp.rm(join(mnt, 'dir'), { recursive: true });
    expect(readdirSync(share).sort()).toEqual(['hello.txt', 'sym']);
    const st = await fsp.statfs(mnt);
    expect(st.bsize).toBeGreaterThan(0);
    expect(m.writeErrors).toEqual([]);
    expect(m.server.stats.internalErrors).toBe(0);
  });

  it('moves large files through the I/O threads intact (1 MiB requests both ways)', async () => {
    m = await DevFuseMount.mount(share, { cache: 'auto', timeout: 5, writeback: false });
    const data = Buffer.alloc(24 << 20);
    for (let i = 0; i < data.length; i += 4096) data.writeUInt32LE(i, i);
    await fsp.writeFile(join(m.mountpoint, 'big.bin'), data);
    expect(readFileSync(join(share, 'big.bin')).equals(data)).toBe(true);
    writeFileSync(join(share, 'big2.bin'), data);
    expect((await fsp.readFile(join(m.mountpoint, 'big2.bin'))).equals(data)).toBe(true);
    expect(m.writeErrors).toEqual([]);
  });

  it('1,000 small files: created through the mount, seen on the host, listed and removed', async () => {
    m = await DevFuseMount.mount(share, { cache: 'auto', timeout: 5, writeback: false });
    const dir = join(m.mountpoint, 'many');
    await fsp.mkdir(dir);
    for (let i = 0; i < 1000; i += 50) {
      await Promise.all(Array.from({ length: 50 }, (_, j) => fsp.writeFile(join(dir, `f${i + j}`), `file ${i + j}`)));
    }
    expect(readdirSync(join(share, 'many')).length).toBe(1000);
    expect(readFileSync(join(share, 'many', 'f777'), 'utf8')).toBe('file 777');
    expect((await fsp.readdir(dir)).length).toBe(1000);
    await fsp.rm(dir, { recursive: true });
    expect(existsSync(join(share, 'many'))).toBe(false);
    expect(m.writeErrors).toEqual([]);
  });

  it('extended attributes through the client (a child process sets and reads them)', async () => {
    m = await DevFuseMount.mount(share, { cache: 'auto', timeout: 5, writeback: false });
    const f = join(m.mountpoint, 'hello.txt');
    const py = `import os,sys; p=sys.argv[1]; os.setxattr(p,'user.k',b'v1'); print(os.getxattr(p,'user.k').decode(), ','.join(sorted(os.listxattr(p)))); os.removexattr(p,'user.k'); print(len(os.listxattr(p)))`;
    const { stdout } = await run('python3', ['-c', py, f]);
    expect(stdout.trim().split('\n')).toEqual(['v1 user.k', '0']);
  });

  it('with cache=never the client sees changes made on the host at once', async () => {
    m = await DevFuseMount.mount(share, { cache: 'never', timeout: 0, writeback: false });
    const f = join(m.mountpoint, 'hello.txt');
    expect(await fsp.readFile(f, 'utf8')).toBe('hello from the host\n');
    writeFileSync(join(share, 'hello.txt'), 'changed on the host, and longer than before\n');
    expect(await fsp.readFile(f, 'utf8')).toBe('changed on the host, and longer than before\n');
    writeFileSync(join(share, 'appeared.txt'), 'new');
    expect(await fsp.readFile(join(m.mountpoint, 'appeared.txt'), 'utf8')).toBe('new');
  });

  it('writeback caching: the client may read files it opened write-only, appends land at the end', async () => {
    m = await DevFuseMount.mount(share, { cache: 'auto', timeout: 5, writeback: true });
    const f = join(m.mountpoint, 'wb.txt');
    const h = await fsp.open(f, 'w');
    await h.write('0123456789');
    await h.write('abc', 3); // a partial page: the client reads the page back from the server
    await h.close();
    await fsp.appendFile(f, '!');
    expect(readFileSync(join(share, 'wb.txt'), 'utf8')).toBe('012abc6789!');
    expect(m.writeErrors).toEqual([]);
  });
});
