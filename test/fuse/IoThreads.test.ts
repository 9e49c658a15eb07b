/**
 * The FUSE I/O threads on their own: results and errnos of each call, many calls in flight over
 * two threads, a blocking quiesce, close.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { viewAddress } from '../../src/disk/libcFile';
import { IoThreads } from '../../src/fuse/IoThreads';
import { AT, cString, fsLibc, O } from '../../src/fuse/libcFs';
import { cleanupTempDirs, ERR, tempDir } from './helpers';

afterAll(cleanupTempDirs);

function iov(...views: Uint8Array[]): Uint8Array {
  return new Uint8Array(new BigUint64Array(views.flatMap((v) => [BigInt(viewAddress(v)), BigInt(v.length)])).buffer);
}

/** A new file holding `content`, open read-write. */
function tempFile(content: string): { path: string; fd: number } {
  const path = join(tempDir(), 'f');
  writeFileSync(path, Buffer.from(content));
  return { path, fd: fsLibc().openat(AT.FDCWD, cString(path), O.RDWR | O.CLOEXEC, 0) };
}

describe('IoThreads', () => {
  it('warm() starts every thread before the first call; calls then run on them', async () => {
    const { fd } = tempFile('warm');
    const io = new IoThreads(2);
    try {
      expect(io.started).toBe(0);
      io.warm();
      expect(io.started).toBe(2);
      io.warm(); // idempotent
      expect(io.started).toBe(2);
      const a = new Uint8Array(new SharedArrayBuffer(4));
      expect(await io.preadv(fd, iov(a), 1, 0, a)).toBe(4);
      expect(Buffer.from(a).toString()).toBe('warm');
      expect(io.started).toBe(2);
    } finally {
      await io.close();
      fsLibc().close(fd);
    }
    expect(io.started).toBe(0);
    io.warm(); // closed: nothing starts
    expect(io.started).toBe(0);
  });

  it('reads, writes, syncs and allocates on the threads, straight in the callers\' buffers', async () => {
    const { path, fd } = tempFile('abcdefghij');
    const io = new IoThreads(2);
    try {
      const a = new Uint8Array(new SharedArrayBuffer(3));
      const b = new Uint8Array(new SharedArrayBuffer(4));
      expect(await io.preadv(fd, iov(a, b), 2, 2, [a, b])).toBe(7);
      expect(Buffer.from(a).toString() + Buffer.from(b).toString()).toBe('cdefghi');
      const w = new Uint8Array(new SharedArrayBuffer(2));
      w.set([0x58, 0x59]);
      expect(await io.pwritev(fd, iov(w), 1, 8, w)).toBe(2);
      expect(readFileSync(path, 'utf8')).toBe('abcdefghXY');
      expect(await io.fsync(fd, false)).toBe(0);
      expect(await io.fsync(fd, true)).toBe(0);
      expect(await io.fallocate(fd, 0, 0, 4096)).toBe(0);
      expect(readFileSync(path).length).toBe(4096);
      expect(await io.preadv(9999, iov(a), 1, 0, a)).toBe(-ERR.EBADF);
      expect(await io.fallocate(fd, 0x80, 0, 1)).toBe(-ERR.EOPNOTSUPP);
      // many at once over two threads: each lands in its own buffer
      const views = Array.from({ length: 40 }, () => new Uint8Array(new SharedArrayBuffer(1)));
      const rs = await Promise.all(views.map((v, i) => io.preadv(fd, iov(v), 1, i % 10, v)));
      expect(rs.every((r) => r === 1)).toBe(true);
      expect(views.map((v) => String.fromCharCode(v[0]!)).join('')).toBe('abcdefghXY'.repeat(4));
      expect(io.inFlight).toBe(0);
    } finally {
      await io.close();
      fsLibc().close(fd);
    }
  });

  it('quiesce blocks until running calls return; close refuses later calls with EIO', async () => {
    const dir = tempDir();
    const path = join(dir, 'big');
    writeFileSync(path, Buffer.alloc(16 << 20, 1));
    const fd = fsLibc().openat(AT.FDCWD, cString(path), O.RDONLY | O.CLOEXEC, 0);
    const io = new IoThreads(1);
    const buf = new Uint8Array(new SharedArrayBuffer(16 << 20));
    const running = io.preadv(fd, iov(buf), 1, 0, buf);
    const queued = io.preadv(fd, iov(buf), 1, 0, buf);
    // no await in between: the first read was published to the thread synchronously
    io.cancelQueued();
    expect(io.quiesce(10_000)).toBe(true);
    expect(buf[(16 << 20) - 1]).toBe(1); // the running read finished before quiesce returned
    expect(await running).toBe(16 << 20);
    expect(await queued).toBe(-ERR.EIO);
    await io.close();
    expect(await io.preadv(fd, iov(buf), 1, 0, buf)).toBe(-ERR.EIO);
    fsLibc().close(fd);
  });

  it('a thread that dies fails its call and later ones with EIO, says why, and close still returns', async () => {
    const io = new IoThreads(1);
    const fd = fsLibc().openat(AT.FDCWD, cString('/proc/self/status'), O.RDONLY | O.CLOEXEC, 0);
    const buf = new Uint8Array(new SharedArrayBuffer(64));
    expect(await io.preadv(fd, iov(buf), 1, 0, buf)).toBeGreaterThan(0); // the thread exists now
    const thread = (io as unknown as { threads: { worker: { terminate(): Promise<number> } }[] }).threads[0]!;
    await thread.worker.terminate();
    expect(io.error?.message).toMatch(/exited unexpectedly/);
    expect(await io.preadv(fd, iov(buf), 1, 0, buf)).toBe(-ERR.EIO);
    await io.close();
    fsLibc().close(fd);
  });
});
