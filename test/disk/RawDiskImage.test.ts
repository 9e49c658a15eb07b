import koffi from 'koffi';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/errors';
import { DiskError, RawDiskImage } from '../../src/disk';
import { O_DIRECT } from '../../src/disk/constants';
import { viewAddress } from '../../src/disk/libcFile';
import { GuestMemory } from '../../src/memory/GuestMemory';
import { cleanupTempImages, fdFlags, fileBytes, makeImage, pattern, sameBytes, sha256 } from './helpers';

const MiB = 1 << 20;
const open: RawDiskImage[] = [];
const shmDirs: string[] = [];
function openImage(path: string, options: Parameters<typeof RawDiskImage.open>[1] = {}): RawDiskImage {
  const img = RawDiskImage.open(path, options);
  open.push(img);
  return img;
}
afterAll(async () => {
  await Promise.all(open.map((i) => i.close()));
  cleanupTempImages();
  for (const d of shmDirs) rmSync(d, { recursive: true, force: true });
});

describe('RawDiskImage: reads and writes', () => {
  it('round-trips scattered buffers at byte offsets, matching the host file', async () => {
    const path = makeImage(4 * MiB);
    const img = openImage(path);
    expect([img.size, img.blockSize, img.readOnly, img.sparse, img.directIo]).toEqual([4 * MiB, 512, false, true, false]);
    const data = pattern(300_000, 7);
    const parts = [data.subarray(0, 1), data.subarray(1, 4097), data.subarray(4097, 100_000), data.subarray(100_000)];
    expect(await img.write(12345, parts)).toBe(data.length);
    expect(sameBytes(fileBytes(path, 12345, data.length), data)).toBe(true);
    const a = new Uint8Array(77);
    const b = new Uint8Array(data.length - 77);
    expect(await img.read(12345, [a, b])).toBe(data.length);
    expect(sameBytes(Buffer.concat([a, b]), Buffer.from(data))).toBe(true);
  });

  it('splits a request with more buffers than a ring slot holds and keeps their order', async () => {
    const path = makeImage(MiB);
    const img = openImage(path);
    const data = pattern(700 * 100, 3);
    const bufs = Array.from({ length: 700 }, (_, i) => data.subarray(i * 100, (i + 1) * 100));
    expect(await img.write(1000, bufs)).toBe(70_000);
    expect(sameBytes(fileBytes(path, 1000, 70_000), data)).toBe(true);
    const back = Array.from({ length: 700 }, () => new Uint8Array(100));
    expect(await img.read(1000, back)).toBe(70_000);
    expect(sameBytes(Buffer.concat(back), Buffer.from(data))).toBe(true);
  });

  it('reads straight into guest RAM: koffi passes a view as its own address, no copy', async () => {
    const mem = GuestMemory.allocate([{ guestAddress: 0, size: 2 * MiB }]);
    try {
      const host = BigInt(mem.regions[0]!.hostAddress);
      const view = mem.slice(0x10003, 5000);
      // The address the disk layer sends to its I/O threads is the guest RAM itself...
      expect(BigInt(viewAddress(view))).toBe(host + 0x10003n);
      // ...and koffi hands the same address to C for a `void *` argument (memset returns its argument).
      const memset = koffi.load('libc.so.6').func('uintptr_t memset(void *s, int c, size_t n)');
      expect(BigInt(memset(view, 0x5a, 3))).toBe(host + 0x10003n);
      expect([...mem.read(0x10002, 5)]).toEqual([0, 0x5a, 0x5a, 0x5a, 0]);
      const path = makeImage(MiB, pattern(MiB, 9));
      const img = openImage(path);
      expect(await img.read(4096, [view])).toBe(5000);
      expect(mem.read(0x10003, 5000)).toEqual(fileBytes(path, 4096, 5000));
      // and writes go from guest RAM to the file
      mem.write(0x20000, pattern(8192, 11));
      expect(await img.write(65536, [mem.slice(0x20000, 8192)])).toBe(8192);
      expect(sameBytes(fileBytes(path, 65536, 8192), pattern(8192, 11))).toBe(true);
      await img.close();
    } finally {
      mem.free();
    }
  });

  it('runs requests concurrently and completes them all', async () => {
    const path = makeImage(8 * MiB, pattern(8 * MiB, 5));
    const img = openImage(path, { inlineReadMax: 0 }); // every read through the I/O threads
    const file = readFileSync(path);
    const reads = Array.from({ length: 200 }, (_, i) => {
      const off = ((i * 7919) % 2000) * 4096;
      const buf = new Uint8Array(4096);
      return img.read(off, [buf]).then((n) => ({ n, off, buf }));
    });
    expect(img.inFlight).toBeGreaterThan(0);
    for (const { n, off, buf } of await Promise.all(reads)) {
      expect(n).toBe(4096);
      expect(Buffer.from(buf).equals(file.subarray(off, off + 4096))).toBe(true);
    }
    expect(img.inFlight).toBe(0);
  });

  it('refuses ranges outside the image and work after close, with DiskError', async () => {
    const img = openImage(makeImage(MiB));
    await expect(img.read(MiB - 100, [new Uint8Array(101)])).rejects.toThrow(/outside disk image/);
    await expect(img.write(-1, [new Uint8Array(1)])).rejects.toBeInstanceOf(DiskError);
    await expect(img.discard(MiB, 1)).rejects.toThrow(/outside/);
    await expect(img.writeZeroes(1.5, 1)).rejects.toThrow(/outside/);
    expect(await img.read(MiB, [])).toBe(0);
    await img.close();
    await expect(img.read(0, [new Uint8Array(1)])).rejects.toThrow(/is closed/);
  });

  it('flushes (fdatasync)', async () => {
    const img = openImage(makeImage(MiB));
    await img.write(0, [pattern(4096)]);
    await expect(img.flush()).resolves.toBeUndefined();
  });

  it('names a missing file, a directory and a bad block size', () => {
    expect(() => RawDiskImage.open('/var/tmp/does-not-exist/kvmkit.img')).toThrow(/cannot open disk image .*ENOENT/);
    expect(() => RawDiskImage.open('/var/tmp')).toThrow(DiskError);
    expect(() => RawDiskImage.open(makeImage(MiB), { blockSize: 1000 })).toThrow(ConfigError);
    expect(() => RawDiskImage.open(makeImage(MiB), { blockSize: 1000 })).toThrow('blockSize must be a power of two >= 512, got 1000');
    expect(() => RawDiskImage.open('')).toThrow(ConfigError);
  });
});

describe('RawDiskImage: page-cache reads on the calling thread (RWF_NOWAIT)', () => {
  const fadvise = koffi.load('libc.so.6').func('int posix_fadvise(int fd, int64_t offset, int64_t len, int advice)');
  const POSIX_FADV_DONTNEED = 4; // include/uapi/linux/fadvise.h (x86_64, aarch64)
  /** Drop the image's clean pages from the page cache, so the next read must wait for the disk. */
  const evict = (img: RawDiskImage): void => {
    expect(fadvise(img.fd, 0, 0, POSIX_FADV_DONTNEED)).toBe(0);
  };

  it('serves cached data at once, sends uncached data to the I/O threads, and both read the file', async () => {
    const data = pattern(4 * MiB, 41);
    const path = makeImage(4 * MiB, data);
    const img = openImage(path);
    const mem = GuestMemory.allocate([{ guestAddress: 0, size: 2 * MiB }]);
    try {
      readFileSync(path); // all of it in the page cache
      const a = mem.slice(0x1000, 4096);
      const b = mem.slice(0x3001, 100); // scattered, unaligned
      const p = img.read(8192, [a, b]);
      expect([img.inlineReads, img.inFlight]).toEqual([1, 0]); // done before the promise settles
      expect(await p).toBe(4196);
      expect(sameBytes(Buffer.concat([a, b]), Buffer.from(data.subarray(8192, 8192 + 4196)))).toBe(true);

      await img.flush();
      evict(img);
      const c = mem.slice(0x10000, 65536);
      const q = img.read(MiB, [c]);
      expect([img.inlineReads, img.inFlight]).toEqual([1, 1]); // not cached: the I/O threads wait for the disk
      expect(await q).toBe(65536);
      expect(sameBytes(c, data.subarray(MiB, MiB + 65536))).toBe(true);
    } finally {
      await img.close();
      mem.free();
    }
  });

  it('leaves large reads, reads during a write and O_DIRECT images to the I/O threads', async () => {
    const data = pattern(4 * MiB, 43);
    const path = makeImage(4 * MiB, data);
    readFileSync(path);
    const img = openImage(path, { inlineReadMax: 65536 });
    const big = new Uint8Array(65536 + 512);
    const p = img.read(0, [big]);
    expect([img.inlineReads, img.inFlight]).toEqual([0, 1]);
    expect(await p).toBe(big.length);
    const w = img.write(2 * MiB, [pattern(4096, 1)]);
    const r = img.read(0, [new Uint8Array(4096)]); // a write in flight: no read overtakes it here
    expect(img.inlineReads).toBe(0);
    await Promise.all([w, r]);
    expect(await img.read(0, [new Uint8Array(4096)])).toBe(4096);
    expect(img.inlineReads).toBe(1);
    const direct = openImage(path, { directIo: true, inlineReadMax: 65536 });
    readFileSync(path);
    const d = direct.read(0, [new Uint8Array(4096)]);
    expect([direct.inlineReads, direct.inFlight]).toEqual([0, 1]);
    await d;
  });

  it('checks inlineReadMax', () => {
    expect(() => RawDiskImage.open(makeImage(MiB), { inlineReadMax: -1 })).toThrow('inlineReadMax must be a whole number of bytes >= 0, got -1');
  });
});

describe('RawDiskImage: read-only', () => {
  it('opens O_RDONLY, refuses every kind of write, and the bytes never change', async () => {
    const path = makeImage(2 * MiB, pattern(2 * MiB, 13));
    const before = sha256(path);
    const img = openImage(path, { readOnly: true });
    expect(img.readOnly).toBe(true);
    expect(fdFlags(img.fd) & 3).toBe(0); // O_ACCMODE == O_RDONLY
    await expect(img.write(0, [new Uint8Array(4096)])).rejects.toThrow(/read-only: write refused/);
    await expect(img.discard(0, MiB)).rejects.toMatchObject({ errno: 30 });
    await expect(img.writeZeroes(0, MiB)).rejects.toThrow(/read-only/);
    await expect(img.resize(MiB)).rejects.toThrow(/read-only/);
    await expect(img.flush()).resolves.toBeUndefined();
    const buf = new Uint8Array(4096);
    expect(await img.read(4096, [buf])).toBe(4096);
    expect(sameBytes(buf, pattern(2 * MiB, 13).subarray(4096, 8192))).toBe(true);
    await img.close();
    expect(sha256(path)).toBe(before);
  });

  it('a sparse=false read-only image is not allocated (the file must not change)', () => {
    const path = makeImage(4 * MiB);
    const img = openImage(path, { readOnly: true, sparse: false });
    expect(img.allocatedBytes()).toBe(0);
  });
});

describe('RawDiskImage: discard, write-zeroes, allocation', () => {
  it('discard punches a hole: st_blocks drop and the range reads zeroes', async () => {
    const path = makeImage(8 * MiB, pattern(8 * MiB, 17));
    const img = openImage(path);
    const before = img.allocatedBytes();
    expect(before).toBeGreaterThanOrEqual(8 * MiB);
    await img.discard(MiB, 4 * MiB);
    expect(img.allocatedBytes()).toBeLessThanOrEqual(before - 4 * MiB);
    expect(fileBytes(path, MiB, 4 * MiB).every((b) => b === 0)).toBe(true);
    expect(sameBytes(fileBytes(path, MiB - 10, 10), pattern(8 * MiB, 17).subarray(MiB - 10, MiB))).toBe(true);
    expect(sameBytes(fileBytes(path, 5 * MiB, 10), pattern(8 * MiB, 17).subarray(5 * MiB, 5 * MiB + 10))).toBe(true);
    expect(img.size).toBe(8 * MiB); // KEEP_SIZE
  });

  it('write-zeroes reads back zeroes, with and without unmap, at unaligned edges', async () => {
    const data = pattern(4 * MiB, 19);
    const path = makeImage(4 * MiB, data);
    const img = openImage(path);
    await img.writeZeroes(1000, 5000);
    await img.writeZeroes(MiB + 3, 2 * MiB, { unmap: true });
    const file = readFileSync(path);
    expect(file.subarray(1000, 6000).every((b) => b === 0)).toBe(true);
    expect(file.subarray(MiB + 3, 3 * MiB + 3).every((b) => b === 0)).toBe(true);
    expect(sameBytes(file.subarray(0, 1000), Buffer.from(data.subarray(0, 1000)))).toBe(true);
    expect(sameBytes(file.subarray(6000, MiB + 3), Buffer.from(data.subarray(6000, MiB + 3)))).toBe(true);
    expect(sameBytes(file.subarray(3 * MiB + 3), Buffer.from(data.subarray(3 * MiB + 3)))).toBe(true);
  });

  it('sparse=false allocates the whole file at open and refuses discard', async () => {
    const path = makeImage(16 * MiB);
    const probe = openImage(path, { readOnly: true });
    expect(probe.allocatedBytes()).toBe(0);
    const img = openImage(path, { sparse: false });
    expect(img.sparse).toBe(false);
    expect(img.allocatedBytes()).toBeGreaterThanOrEqual(16 * MiB);
    await expect(img.discard(0, MiB)).rejects.toThrow(/not sparse/);
    // write-zeroes on a non-sparse image keeps the blocks allocated (ZERO_RANGE, never a hole)
    await img.write(0, [pattern(MiB)]);
    await img.writeZeroes(0, MiB, { unmap: true });
    expect(img.allocatedBytes()).toBeGreaterThanOrEqual(16 * MiB);
    expect(fileBytes(path, 0, MiB).every((b) => b === 0)).toBe(true);
  });

  it('resizes (ftruncate), allocating again when not sparse', async () => {
    const path = makeImage(MiB);
    const img = openImage(path, { sparse: false });
    await img.resize(3 * MiB);
    expect(img.size).toBe(3 * MiB);
    expect(img.allocatedBytes()).toBeGreaterThanOrEqual(3 * MiB);
    await img.write(3 * MiB - 512, [pattern(512)]);
    await img.resize(MiB / 2);
    expect(readFileSync(path).length).toBe(MiB / 2);
    await expect(img.read(MiB / 2 - 1, [new Uint8Array(2)])).rejects.toThrow(/outside/);
  });
});

describe('RawDiskImage: file systems without ZERO_RANGE (tmpfs)', () => {
  /** An image on /dev/shm (tmpfs: PUNCH_HOLE yes, ZERO_RANGE no), or undefined when there is none. */
  function shmImage(data: Uint8Array): string | undefined {
    let dir: string;
    try {
      dir = mkdtempSync(join('/dev/shm', 'kvmkit-disk-'));
    } catch {
      console.log('skipping tmpfs checks: no writable /dev/shm');
      return undefined;
    }
    shmDirs.push(dir);
    const path = join(dir, 'disk.img');
    writeFileSync(path, data);
    return path;
  }

  it('write-zeroes falls back to PUNCH_HOLE (sparse) or to writing zeroes (sparse=false)', async () => {
    const data = pattern(2 * MiB, 61);
    for (const sparse of [true, false]) {
      const path = shmImage(data);
      if (!path) return;
      const img = openImage(path, { sparse });
      await img.writeZeroes(1000, 300_000);
      await img.writeZeroes(MiB, MiB / 2, { unmap: true });
      const file = readFileSync(path);
      expect(file.subarray(1000, 301_000).every((b) => b === 0)).toBe(true);
      expect(file.subarray(MiB, MiB + MiB / 2).every((b) => b === 0)).toBe(true);
      expect(sameBytes(file.subarray(0, 1000), data.subarray(0, 1000))).toBe(true);
      expect(sameBytes(file.subarray(301_000, MiB), data.subarray(301_000, MiB))).toBe(true);
      expect(sameBytes(file.subarray(MiB + MiB / 2), data.subarray(MiB + MiB / 2))).toBe(true);
      // a sparse=false image never gets holes, even from write-zeroes with unmap
      if (!sparse) expect(img.allocatedBytes()).toBeGreaterThanOrEqual(2 * MiB);
    }
  });
});

describe('RawDiskImage: quiesce', () => {
  it('cancels queued requests and waits for running ones, leaving nothing in flight', async () => {
    const path = makeImage(16 * MiB, pattern(16 * MiB, 23));
    const img = openImage(path, { inlineReadMax: 0 }); // cached reads would complete at once, with nothing to cancel
    const results = Array.from({ length: 150 }, (_, i) =>
      img.read((i % 16) * MiB, [new Uint8Array(MiB)]).then(() => 'done', (e: DiskError) => (e.errno === 125 ? 'cancelled' : String(e))),
    );
    expect(img.quiesce(5000)).toBe(true);
    expect(img.inFlight).toBe(0);
    const outcomes = await Promise.all(results);
    expect(outcomes.every((o) => o === 'done' || o === 'cancelled')).toBe(true);
    expect(outcomes).toContain('cancelled');
    // still usable afterwards
    const buf = new Uint8Array(10);
    expect(await img.read(5, [buf])).toBe(10);
  });
});

describe('RawDiskImage: O_DIRECT', () => {
  /** Open with O_DIRECT, or explain why this file system cannot. */
  function openDirect(path: string, blockSize = 512): RawDiskImage | undefined {
    try {
      return openImage(path, { directIo: true, blockSize });
    } catch (e) {
      if (e instanceof DiskError && e.errno === 22) {
        console.log(`skipping O_DIRECT checks: ${e.message}`);
        return undefined;
      }
      throw e;
    }
  }

  it.each([true, false])('serves 64 concurrent aligned reads, writes and flushes (nativeAio: %s)', async (nativeAio) => {
    const data = pattern(8 * MiB, 37);
    const path = makeImage(8 * MiB, data);
    let img: RawDiskImage;
    try {
      img = openImage(path, { directIo: true, nativeAio });
    } catch (e) {
      if (e instanceof DiskError && e.errno === 22) return console.log(`skipping O_DIRECT checks: ${e.message}`);
      throw e;
    }
    expect(img.nativeAio).toBe(nativeAio);
    const mem = GuestMemory.allocate([{ guestAddress: 0, size: 8 * MiB }]);
    try {
      // One buffer (PREAD) or two (PREADV, the second part first in memory), at scattered offsets.
      const reads = Array.from({ length: 64 }, (_, i) => {
        const off = ((i * 37) % 1024) * 8192;
        const bufs = i % 2 ? [mem.slice(i * 65536 + 4096, 4096), mem.slice(i * 65536, 4096)] : [mem.slice(i * 65536, 8192)];
        return img.read(off, bufs).then((n) => ({ n, off, got: Buffer.concat(bufs) }));
      });
      expect(img.inFlight).toBe(64);
      for (const { n, off, got } of await Promise.all(reads)) {
        expect(n).toBe(8192);
        expect(sameBytes(got, data.subarray(off, off + 8192))).toBe(true);
      }
      mem.write(0x400000, pattern(MiB, 39));
      const writes = Array.from({ length: 16 }, (_, i) => img.write(i * 65536, [mem.slice(0x400000 + i * 65536, 32768), mem.slice(0x400000 + i * 65536 + 32768, 32768)]));
      expect(await Promise.all([...writes, img.flush()])).toEqual([...Array(16).fill(65536), undefined]);
      expect(sameBytes(fileBytes(path, 0, MiB), pattern(MiB, 39))).toBe(true);
      expect(img.bouncedRequests).toBe(0);
    } finally {
      await img.close();
      mem.free();
    }
  });

  it('opens with O_DIRECT and round-trips aligned guest buffers without bouncing', async () => {
    const data = pattern(4 * MiB, 29);
    const path = makeImage(4 * MiB, data);
    const img = openDirect(path);
    if (!img) return;
    expect(fdFlags(img.fd) & O_DIRECT).toBe(O_DIRECT);
    expect(img.directAlignment % 512).toBe(0);
    const mem = GuestMemory.allocate([{ guestAddress: 0, size: 4 * MiB }]);
    try {
      expect(await img.read(MiB, [mem.slice(0, 64 * 1024), mem.slice(0x20000, 4096)])).toBe(68 * 1024);
      expect(sameBytes(mem.read(0, 64 * 1024), data.subarray(MiB, MiB + 64 * 1024))).toBe(true);
      expect(sameBytes(mem.read(0x20000, 4096), data.subarray(MiB + 64 * 1024, MiB + 68 * 1024))).toBe(true);
      mem.write(0x100000, pattern(MiB, 31));
      expect(await img.write(2 * MiB, [mem.slice(0x100000, MiB)])).toBe(MiB);
      expect(sameBytes(fileBytes(path, 2 * MiB, MiB), pattern(MiB, 31))).toBe(true);
      expect(img.bouncedRequests).toBe(0);
      // an odd guest address needs the bounce buffer
      expect(await img.read(0, [mem.slice(0x200001, 4096)])).toBe(4096);
      expect(img.bouncedRequests).toBe(1);
      expect(sameBytes(mem.read(0x200001, 4096), data.subarray(0, 4096))).toBe(true);
    } finally {
      await img.close();
      mem.free();
    }
  });

  it('bounces unaligned buffers and lengths, and read-modify-writes partial blocks', async () => {
    const data = pattern(2 * MiB, 37);
    const path = makeImage(2 * MiB, data);
    const img = openDirect(path, 4096);
    if (!img) return;
    expect(img.directAlignment).toBeGreaterThanOrEqual(4096);
    const expected = Buffer.from(data);
    // odd addresses and lengths (plain JS buffers here: any memory works), a 512-aligned offset in a 4 KiB-block image
    const src = pattern(100 + 1000 + 948, 41);
    const parts = [src.subarray(0, 100), src.subarray(100, 1100), src.subarray(1100)].map((p) => {
      const b = new Uint8Array(p.length + 3).subarray(3);
      b.set(p);
      return b;
    });
    expect(await img.write(4096 * 10 + 512, parts)).toBe(2048);
    expected.set(src, 4096 * 10 + 512);
    // a write that is not even sector-aligned, crossing a block boundary
    expect(await img.write(8191, [pattern(3, 43)])).toBe(3);
    expected.set(pattern(3, 43), 8191);
    // bigger than the bounce buffer, unaligned at both ends
    const big = pattern(MiB + 1000, 47);
    expect(await img.write(300_001, [big])).toBe(big.length);
    expected.set(big, 300_001);
    expect(readFileSync(path).equals(expected)).toBe(true);
    const back = new Uint8Array(big.length + 5).subarray(5);
    expect(await img.read(300_001, [back])).toBe(big.length);
    expect(Buffer.from(back).equals(Buffer.from(big))).toBe(true);
    const odd = [new Uint8Array(33), new Uint8Array(1000)];
    expect(await img.read(4096 * 10 + 500, odd)).toBe(1033);
    expect(Buffer.concat(odd).equals(expected.subarray(4096 * 10 + 500, 4096 * 10 + 1533))).toBe(true);
    await img.close();
  });

  it('keeps concurrent sector writes into one 4 KiB block apart (no lost read-modify-write)', async () => {
    const path = makeImage(MiB);
    const img = openDirect(path, 4096);
    if (!img) return;
    const writes = [];
    for (let round = 0; round < 4; round++) {
      for (let s = 0; s < 8; s++) writes.push(img.write(round * 4096 + s * 512, [new Uint8Array(512).fill(round * 8 + s + 1)]));
    }
    await Promise.all(writes);
    const file = readFileSync(path);
    for (let round = 0; round < 4; round++) {
      for (let s = 0; s < 8; s++) {
        const at = round * 4096 + s * 512;
        expect(file.subarray(at, at + 512).every((b) => b === round * 8 + s + 1)).toBe(true);
      }
    }
    await img.close();
  });

  it('write-zeroes and discard work on an O_DIRECT image', async () => {
    const data = pattern(4 * MiB, 53);
    const path = makeImage(4 * MiB, data);
    const img = openDirect(path, 4096);
    if (!img) return;
    await img.writeZeroes(512, 1024);
    await img.discard(MiB, MiB);
    const file = readFileSync(path);
    expect(file.subarray(512, 1536).every((b) => b === 0)).toBe(true);
    expect(file.subarray(MiB, 2 * MiB).every((b) => b === 0)).toBe(true);
    expect(file.subarray(0, 512).equals(Buffer.from(data.subarray(0, 512)))).toBe(true);
    expect(file.subarray(1536, MiB).equals(Buffer.from(data.subarray(1536, MiB)))).toBe(true);
    await img.close();
  });

  it('hides a partial last block from the guest', () => {
    const img = openDirect(makeImage(MiB + 1000), 4096);
    if (!img) return;
    expect(img.size).toBe(MiB);
  });
});
