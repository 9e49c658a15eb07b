import { readFileSync } from 'node:fs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../../../src/errors';
import { DiskError, type DiskImage } from '../../../../src/disk';
import { VirtioDevice } from '../../../../src/devices/virtio/VirtioDevice';
import {
  VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_VERSION_1, VIRTIO_ID_BLOCK, VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
} from '../../../../src/devices/virtio/constants';
import {
  BLK_CONFIG, BLOCK_MAX_DISCARD_SEGMENTS, VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_F_DISCARD, VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_RO,
  VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_F_WRITE_ZEROES, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP,
  VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_WRITE_ZEROES, VirtioBlock,
} from '../../../../src/devices/virtio/block';
import type { GuestMemory } from '../../../../src/memory/GuestMemory';
import { cleanupTempImages, fdFlags, makeImage, pattern, sameBytes, sha256 } from '../../../disk/helpers';
import { allocRam } from '../driver';
import { BlkHarness, BUFFERS, makeDevices, UNTOUCHED } from './harness';

const MiB = 1 << 20;
const OK = VIRTIO_BLK_S_OK;
const IOERR = VIRTIO_BLK_S_IOERR;
const UNSUPP = VIRTIO_BLK_S_UNSUPP;
const devices = makeDevices();
let mem: GuestMemory;
beforeAll(() => {
  mem = allocRam(32 * MiB);
});
afterEach(async () => {
  await devices.closeAll();
});
afterAll(() => {
  mem.free();
  cleanupTempImages();
});

/** A DiskImage double: 1 MiB, writable, sparse; `read` as given, everything else resolves at once. */
function fakeDisk(over: Partial<DiskImage>): DiskImage {
  return {
    path: 'fake.img', size: MiB, blockSize: 512, readOnly: false, sparse: true, directIo: false,
    read: async () => 0, write: async (_o, b) => b.reduce((n, x) => n + x.length, 0), flush: async () => {}, discard: async () => {},
    writeZeroes: async () => {}, resize: async () => {}, allocatedBytes: () => 0, quiesce: () => true, close: async () => {},
    ...over,
  };
}

/** Answers in head order (asynchronous requests complete in any order). */
function sortByHead<T extends { head: number }>(xs: T[]): T[] {
  return [...xs].sort((a, b) => a.head - b.head);
}

/** A fresh 8 MiB image of known bytes and a device on it, activated on a 64-entry ring. */
function setup(o: { ro?: boolean; sparse?: boolean; id?: string; blockSize?: number; directIo?: boolean; size?: number } = {}) {
  const size = o.size ?? 8 * MiB;
  const data = pattern(size, 101);
  const path = makeImage(size, data);
  const dev = devices.open({ path, ro: o.ro, sparse: o.sparse, id: o.id, blockSize: o.blockSize, directIo: o.directIo });
  const h = new BlkHarness(dev, mem);
  return { path, data, dev, h };
}

describe('VirtioBlock: identity, features, configuration space', () => {
  it('is block device 2 with one 256-entry queue and the options as properties', () => {
    const path = makeImage(MiB);
    const dev = devices.open({ path, root: true, id: 'SERIAL1' });
    expect(dev).toBeInstanceOf(VirtioDevice);
    expect([dev.deviceKind, dev.deviceType, dev.queueMaxSizes]).toEqual(['virtio-blk', VIRTIO_ID_BLOCK, [256]]);
    expect([dev.path, dev.root, dev.readOnly, dev.sparse, dev.directIo, dev.blockSize, dev.id]).toEqual([path, true, false, true, false, 512, 'SERIAL1']);
    expect(devices.open({ path }).root).toBe(false);
  });

  it('offers SEG_MAX, BLK_SIZE, FLUSH, DISCARD and WRITE_ZEROES on a sparse writable disk; WRITE_ZEROES without DISCARD non-sparse (crosvm); RO and neither read-only', () => {
    const path = makeImage(MiB);
    const base = VIRTIO_F_VERSION_1 | VIRTIO_F_INDIRECT_DESC | VIRTIO_F_EVENT_IDX | VIRTIO_BLK_F_SEG_MAX | VIRTIO_BLK_F_BLK_SIZE | VIRTIO_BLK_F_FLUSH;
    expect(devices.open({ path }).deviceFeatures()).toBe(base | VIRTIO_BLK_F_DISCARD | VIRTIO_BLK_F_WRITE_ZEROES);
    expect(devices.open({ path, ro: true }).deviceFeatures()).toBe(base | VIRTIO_BLK_F_RO);
    expect(devices.open({ path, sparse: false }).deviceFeatures()).toBe(base | VIRTIO_BLK_F_WRITE_ZEROES);
    // non-sparse: write-zeroes limits, no discard limits, and unmap cannot deallocate
    const cfg = new DataView(devices.open({ path, sparse: false }).configSpace().buffer);
    expect([cfg.getUint32(BLK_CONFIG.maxDiscardSectors, true), cfg.getUint32(BLK_CONFIG.maxDiscardSeg, true), cfg.getUint32(BLK_CONFIG.discardSectorAlignment, true)]).toEqual([0, 0, 0]);
    expect(cfg.getUint32(BLK_CONFIG.maxWriteZeroesSeg, true)).toBe(BLOCK_MAX_DISCARD_SEGMENTS);
    expect(cfg.getUint32(BLK_CONFIG.maxWriteZeroesSectors, true)).toBeGreaterThan(1 << 30);
    expect(cfg.getUint8(BLK_CONFIG.writeZeroesMayUnmap)).toBe(0);
  });

  it('lays out struct virtio_blk_config (§5.2.4): capacity in sectors, seg_max, blk_size, discard limits', () => {
    const path = makeImage(5 * MiB + 1000); // the partial last sector is not addressable
    const cfg = new DataView(devices.open({ path, blockSize: 4096 }).configSpace().buffer);
    expect(cfg.byteLength).toBe(60);
    expect(cfg.getBigUint64(BLK_CONFIG.capacity, true)).toBe(BigInt((5 * MiB + 512) / 512));
    expect(cfg.getUint32(BLK_CONFIG.sizeMax, true)).toBe(0); // VIRTIO_BLK_F_SIZE_MAX not offered
    expect(cfg.getUint32(BLK_CONFIG.segMax, true)).toBe(254);
    expect(cfg.getUint32(BLK_CONFIG.blkSize, true)).toBe(4096);
    expect(cfg.getUint16(BLK_CONFIG.numQueues, true)).toBe(1);
    expect(cfg.getUint32(BLK_CONFIG.discardSectorAlignment, true)).toBe(8);
    expect(cfg.getUint32(BLK_CONFIG.maxDiscardSectors, true) % 8).toBe(0);
    expect(cfg.getUint32(BLK_CONFIG.maxDiscardSectors, true)).toBeGreaterThan(1 << 30);
    expect(cfg.getUint32(BLK_CONFIG.maxDiscardSeg, true)).toBe(BLOCK_MAX_DISCARD_SEGMENTS);
    expect(cfg.getUint32(BLK_CONFIG.maxWriteZeroesSectors, true)).toBe(cfg.getUint32(BLK_CONFIG.maxDiscardSectors, true));
    expect(cfg.getUint32(BLK_CONFIG.maxWriteZeroesSeg, true)).toBe(BLOCK_MAX_DISCARD_SEGMENTS);
    expect(cfg.getUint8(BLK_CONFIG.writeZeroesMayUnmap)).toBe(1);
    const ro = devices.open({ path, ro: true }).configSpace();
    expect([...ro.subarray(BLK_CONFIG.maxDiscardSectors)].every((b) => b === 0)).toBe(true);
    expect([ro[33], ro[57], ro[58], ro[59]]).toEqual([0, 0, 0, 0]); // unused0, unused1
  });

  it('checks its options with ConfigError before touching the file', () => {
    const path = makeImage(MiB);
    expect(() => new VirtioBlock({ path, blockSize: 1000 })).toThrow(new ConfigError('block_size', 'must be a power of two >= 512', 1000));
    expect(() => new VirtioBlock({ path, blockSize: 1000 })).toThrow('block_size must be a power of two >= 512, got 1000');
    expect(() => new VirtioBlock({ path, blockSize: 256 })).toThrow(/block_size must be a power of two >= 512/);
    expect(() => new VirtioBlock({ path, blockSize: 1 << 20 })).toThrow('block_size must be at most 65536, got 1048576');
    expect(() => new VirtioBlock({ path, id: 'X'.repeat(21) })).toThrow(`id must be at most 20 printable ASCII characters, got "${'X'.repeat(21)}"`);
    expect(() => new VirtioBlock({ path, id: 'tab\there' })).toThrow(/^id must be at most 20 printable ASCII characters/);
    expect(() => new VirtioBlock({ path, id: 'café' })).toThrow(ConfigError);
    expect(() => new VirtioBlock({ path: '' })).toThrow('path is required: the disk image file, got ""');
    expect(() => new VirtioBlock({} as never)).toThrow(/^path is required/);
    expect(() => new VirtioBlock({ path, ro: 'yes' as never })).toThrow('ro must be true or false, got "yes"');
    expect(() => new VirtioBlock({ path, directIo: 1 as never })).toThrow('o_direct must be true or false, got 1');
    expect(() => new VirtioBlock({ path: '/var/tmp/kvmkit-no-such-dir/x.img' })).toThrow(DiskError);
    expect(devices.open({ path, id: 'X'.repeat(20) }).id).toBe('X'.repeat(20));
  });
});

describe('VirtioBlock: requests', () => {
  it('IN reads sectors into scattered buffers; used length = data + status', async () => {
    const { data, h } = setup();
    const { head, data: bufs } = h.read(3, [512, 1536, 2048]);
    expect(await h.run()).toEqual([{ head, len: 4096 + 1, status: OK }]);
    const got = Buffer.concat(bufs.map((b) => mem.read(b.addr, b.len)));
    expect(sameBytes(got, data.subarray(3 * 512, 3 * 512 + 4096))).toBe(true);
    expect(h.interrupt.used).toEqual([0]);
  });

  it('OUT writes the data to the image; used length 1', async () => {
    const { path, data, h } = setup();
    const bytes = pattern(64 * 1024, 7);
    const head = h.write(100, bytes, 4096);
    expect(await h.run()).toEqual([{ head, len: 1, status: OK }]);
    const file = readFileSync(path);
    expect(sameBytes(file.subarray(100 * 512, 100 * 512 + bytes.length), bytes)).toBe(true);
    expect(sameBytes(file.subarray(0, 100 * 512), data.subarray(0, 100 * 512))).toBe(true);
    expect(sameBytes(file.subarray(100 * 512 + bytes.length), data.subarray(100 * 512 + bytes.length))).toBe(true);
  });

  it('reads the first and last sectors, refuses ranges past the end and sector × 512 overflows with IOERR', async () => {
    const { data, dev, h } = setup();
    const cap = dev.capacity;
    expect(cap).toBe(16384);
    const last = h.read(cap - 1, [512]);
    const pastEnd = h.read(cap - 1, [1024]);
    const atCap = h.read(cap, [512]);
    const huge = h.read(1n << 63n, [512]);
    const max = h.read((1n << 64n) - 1n, [512]);
    const wrap = h.read((1n << 55n) + 1n, [512]); // sector × 512 wraps to 512 in 64 bits
    const wPast = h.write(cap, new Uint8Array(512));
    const answers = sortByHead(await h.run());
    expect(answers).toEqual([
      { head: last.head, len: 513, status: OK },
      { head: pastEnd.head, len: 1, status: IOERR },
      { head: atCap.head, len: 1, status: IOERR },
      { head: huge.head, len: 1, status: IOERR },
      { head: max.head, len: 1, status: IOERR },
      { head: wrap.head, len: 1, status: IOERR },
      { head: wPast, len: 1, status: IOERR },
    ].sort((a, b) => a.head - b.head));
    expect(sameBytes(mem.read(last.data[0]!.addr, 512), data.subarray(data.length - 512))).toBe(true);
  });

  it('answers data lengths that are not multiples of 512 with IOERR, and a read of 0 bytes with OK', async () => {
    const { path, h } = setup();
    const before = sha256(path);
    const r = h.read(0, [1000]);
    const w = h.write(0, new Uint8Array(1000));
    const w2 = h.write(0, new Uint8Array(513), 100);
    const zero = h.bare(0);
    expect(await h.run()).toEqual([
      { head: r.head, len: 1, status: IOERR },
      { head: w, len: 1, status: IOERR },
      { head: w2, len: 1, status: IOERR },
      { head: zero, len: 1, status: OK },
    ]);
    expect(sha256(path)).toBe(before);
  });

  it('FLUSH syncs; GET_ID answers the id NUL-padded to 20 bytes, or what fits', async () => {
    const { h } = setup({ id: 'MYSERIALNO' });
    const flush = h.bare(VIRTIO_BLK_T_FLUSH);
    const flushSector = h.bare(VIRTIO_BLK_T_FLUSH, 8);
    const idHdr = h.header(VIRTIO_BLK_T_GET_ID);
    const idBuf = h.alloc(20);
    mem.write(idBuf, new Uint8Array(20).fill(0xee));
    const idStatus = h.status();
    const id = h.add([{ addr: idHdr, len: 16 }, { addr: idBuf, len: 20, write: true }, { addr: idStatus, len: 1, write: true }], idStatus);
    const shortHdr = h.header(VIRTIO_BLK_T_GET_ID);
    const shortBuf = h.alloc(8);
    const shortStatus = h.status();
    const short = h.add([{ addr: shortHdr, len: 16 }, { addr: shortBuf, len: 8, write: true }, { addr: shortStatus, len: 1, write: true }], shortStatus);
    expect(sortByHead(await h.run())).toEqual(sortByHead([
      { head: flush, len: 1, status: OK },
      { head: id, len: 21, status: OK },
      { head: short, len: 9, status: OK },
      { head: flushSector, len: 1, status: OK },
    ]));
    expect(Buffer.from(mem.read(idBuf, 20)).toString('latin1')).toBe('MYSERIALNO\0\0\0\0\0\0\0\0\0\0');
    expect(Buffer.from(mem.read(shortBuf, 8)).toString('latin1')).toBe('MYSERIAL');
  });

  it('GET_ID without an id answers an empty (all-NUL) serial', async () => {
    const { h } = setup();
    const hdr = h.header(VIRTIO_BLK_T_GET_ID);
    const buf = h.alloc(20);
    mem.write(buf, new Uint8Array(20).fill(0xee));
    const s = h.status();
    const head = h.add([{ addr: hdr, len: 16 }, { addr: buf, len: 20, write: true }, { addr: s, len: 1, write: true }], s);
    expect(await h.run()).toEqual([{ head, len: 21, status: OK }]);
    expect([...mem.read(buf, 20)].every((b) => b === 0)).toBe(true);
  });

  it('answers unknown and unsupported request types with UNSUPP', async () => {
    const { h } = setup();
    const heads = [126, 10, 14, 2, 3, 5, 0x80000000, 0xffffffff].map((t) => h.bare(t));
    const answers = await h.run();
    expect(answers.map((a) => [a.head, a.len, a.status])).toEqual(heads.map((head) => [head, 1, UNSUPP]));
  });

  it('DISCARD punches holes (st_blocks drop), with UNSUPP for flags and too many segments and IOERR past the end', async () => {
    const { path, dev, h } = setup();
    const before = dev.disk.allocatedBytes();
    expect(before).toBeGreaterThanOrEqual(8 * MiB);
    const discard = (segs: Parameters<BlkHarness['segments']>[0], len = 16 * segs.length) => {
      const hdr = h.header(VIRTIO_BLK_T_DISCARD);
      const s = h.status();
      return h.add([{ addr: hdr, len: 16 }, { addr: h.segments(segs), len }, { addr: s, len: 1, write: true }], s);
    };
    const two = discard([{ sector: 2048, sectors: 2048 }, { sector: 8192, sectors: 4096 }]);
    const unmap = discard([{ sector: 0, sectors: 8, flags: 1 }]);
    const unknown = discard([{ sector: 0, sectors: 8, flags: 2 }]);
    const past = discard([{ sector: dev.capacity - 8, sectors: 16 }]);
    const partial = discard([{ sector: 0, sectors: 8 }], 15);
    const tooMany = discard(Array.from({ length: BLOCK_MAX_DISCARD_SEGMENTS + 1 }, (_, i) => ({ sector: i * 8, sectors: 8 })));
    const none = h.bare(VIRTIO_BLK_T_DISCARD);
    const empty = discard([{ sector: 16, sectors: 0 }]);
    const answers = await h.run();
    const byHead = new Map(answers.map((a) => [a.head, a.status]));
    expect([two, unmap, unknown, past, partial, tooMany, none, empty].map((x) => byHead.get(x))).toEqual([OK, UNSUPP, UNSUPP, IOERR, IOERR, UNSUPP, IOERR, OK]);
    expect(dev.disk.allocatedBytes()).toBeLessThanOrEqual(before - 3 * MiB);
    const file = readFileSync(path);
    expect(file.subarray(MiB, 2 * MiB).every((b) => b === 0)).toBe(true);
    expect(file.subarray(4 * MiB, 6 * MiB).every((b) => b === 0)).toBe(true);
    expect(file.subarray(0, 4096).some((b) => b !== 0)).toBe(true); // the refused requests changed nothing
  });

  it('WRITE_ZEROES makes ranges read back as zeroes, with and without unmap', async () => {
    const { path, data, h } = setup();
    const wz = (sector: number, sectors: number, flags = 0) => {
      const hdr = h.header(VIRTIO_BLK_T_WRITE_ZEROES);
      const s = h.status();
      return h.add([{ addr: hdr, len: 16 }, { addr: h.segments([{ sector, sectors, flags }]), len: 16 }, { addr: s, len: 1, write: true }], s);
    };
    const a = wz(1, 3);
    const b = wz(4096, 2048, 1);
    const c = wz(16384 - 1, 2);
    const d = wz(0, 1, 4);
    const answers = new Map((await h.run()).map((x) => [x.head, x.status]));
    expect([a, b, c, d].map((x) => answers.get(x))).toEqual([OK, OK, IOERR, UNSUPP]);
    const file = readFileSync(path);
    expect(file.subarray(512, 2048).every((x) => x === 0)).toBe(true);
    expect(file.subarray(2 * MiB, 3 * MiB).every((x) => x === 0)).toBe(true);
    expect(sameBytes(file.subarray(0, 512), data.subarray(0, 512))).toBe(true);
    expect(sameBytes(file.subarray(2048, 2 * MiB), data.subarray(2048, 2 * MiB))).toBe(true);
  });

  it('on a non-sparse disk DISCARD is UNSUPP (not offered) and WRITE_ZEROES writes zeroes that stay allocated, unmap or not', async () => {
    const { path, dev, h } = setup({ sparse: false });
    const allocated = dev.disk.allocatedBytes();
    const seg = (type: number, sector: number, sectors: number, flags = 0) => {
      const hdr = h.header(type);
      const s = h.status();
      return h.add([{ addr: hdr, len: 16 }, { addr: h.segments([{ sector, sectors, flags }]), len: 16 }, { addr: s, len: 1, write: true }], s);
    };
    const disc = seg(VIRTIO_BLK_T_DISCARD, 0, 8);
    const wz = seg(VIRTIO_BLK_T_WRITE_ZEROES, 2048, 2048);
    const wzUnmap = seg(VIRTIO_BLK_T_WRITE_ZEROES, 8192, 2048, 1);
    const answers = new Map((await h.run()).map((a) => [a.head, a.status]));
    expect([disc, wz, wzUnmap].map((x) => answers.get(x))).toEqual([UNSUPP, OK, OK]);
    const file = readFileSync(path);
    expect(file.subarray(MiB, 2 * MiB).every((b) => b === 0)).toBe(true);
    expect(file.subarray(4 * MiB, 5 * MiB).every((b) => b === 0)).toBe(true);
    expect(file.subarray(0, 4096).some((b) => b !== 0)).toBe(true);
    expect(dev.disk.allocatedBytes()).toBeGreaterThanOrEqual(allocated);
  });

  it('DISCARD and WRITE_ZEROES are UNSUPP when the driver did not negotiate them', async () => {
    const path = makeImage(MiB);
    const dev = devices.open({ path });
    const h = new BlkHarness(dev, mem, { features: VIRTIO_F_VERSION_1 });
    const heads = [VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_WRITE_ZEROES].map((type) => {
      const hdr = h.header(type);
      const s = h.status();
      return h.add([{ addr: hdr, len: 16 }, { addr: h.segments([{ sector: 0, sectors: 8 }]), len: 16 }, { addr: s, len: 1, write: true }], s);
    });
    const answers = new Map((await h.run()).map((a) => [a.head, a.status]));
    expect(heads.map((x) => answers.get(x))).toEqual([UNSUPP, UNSUPP]);
  });

  it('with blockSize 4096 answers IN, OUT, DISCARD and WRITE_ZEROES that are not whole blocks with IOERR (as QEMU with logical_block_size=4096)', async () => {
    const { path, data, dev, h } = setup({ blockSize: 4096 });
    const seg = (type: number, sector: number, sectors: number) => {
      const hdr = h.header(type);
      const s = h.status();
      return h.add([{ addr: hdr, len: 16 }, { addr: h.segments([{ sector, sectors }]), len: 16 }, { addr: s, len: 1, write: true }], s);
    };
    const cases = {
      read512: h.read(8, [512]).head,
      readAtSector9: h.read(9, [4096]).head,
      readBlockPlus512: h.read(8, [4096, 512]).head,
      write512: h.write(16, pattern(512, 1)),
      writeAtSector17: h.write(17, pattern(4096, 2)),
      discardAtSector25: seg(VIRTIO_BLK_T_DISCARD, 25, 8),
      discard512: seg(VIRTIO_BLK_T_DISCARD, 24, 1),
      wzAtSector33: seg(VIRTIO_BLK_T_WRITE_ZEROES, 33, 8),
      wz512: seg(VIRTIO_BLK_T_WRITE_ZEROES, 32, 1),
      readBlock: h.read(8, [100, 3996]).head,
      readNothingAtSector9: h.read(9, []).head, // QEMU checks the sector even without data
      readNothing: h.read(8, []).head,
      writeBlock: h.write(40, pattern(8192, 3), 1000),
      wzBlock: seg(VIRTIO_BLK_T_WRITE_ZEROES, 56, 8),
    };
    const answers = new Map((await h.run()).map((a) => [a.head, a.status]));
    expect(Object.fromEntries(Object.entries(cases).map(([k, head]) => [k, answers.get(head)]))).toEqual({
      read512: IOERR, readAtSector9: IOERR, readBlockPlus512: IOERR, write512: IOERR, writeAtSector17: IOERR,
      discardAtSector25: IOERR, discard512: IOERR, wzAtSector33: IOERR, wz512: IOERR, readNothingAtSector9: IOERR,
      readBlock: OK, readNothing: OK, writeBlock: OK, wzBlock: OK,
    });
    const file = readFileSync(path);
    expect(sameBytes(file.subarray(0, 40 * 512), data.subarray(0, 40 * 512))).toBe(true); // the refused requests changed nothing
    expect(sameBytes(file.subarray(40 * 512, 64 * 512), Buffer.concat([pattern(8192, 3), new Uint8Array(4096)]))).toBe(true);
    expect(dev.blockSize).toBe(4096);
  });
});

describe('VirtioBlock: malformed chains', () => {
  it('returns chains without a status byte, with a read-only status or a short header with length 0, and keeps serving', async () => {
    const { path, h } = setup();
    const before = sha256(path);
    const hdr = (t = 0) => h.header(t);
    const headerOnly = h.add([{ addr: hdr(), len: 16 }]);
    const flushNoStatus = h.add([{ addr: hdr(VIRTIO_BLK_T_FLUSH), len: 16 }]);
    const st1 = h.status();
    const statusReadOnly = h.add([{ addr: hdr(1), len: 16 }, { addr: h.alloc(512), len: 512 }, { addr: st1, len: 1 }], st1);
    const st2 = h.status();
    const short8 = h.add([{ addr: hdr(), len: 8 }, { addr: h.alloc(512), len: 512, write: true }, { addr: st2, len: 1, write: true }], st2);
    const st3 = h.status();
    const noHeader = h.add([{ addr: st3, len: 1, write: true }], st3);
    const good = h.read(0, [512]);
    const answers = await h.run();
    expect(answers).toEqual([
      { head: headerOnly, len: 0, status: -1 },
      { head: flushNoStatus, len: 0, status: -1 },
      { head: statusReadOnly, len: 0, status: UNTOUCHED },
      { head: short8, len: 0, status: UNTOUCHED },
      { head: noHeader, len: 0, status: UNTOUCHED },
      { head: good.head, len: 513, status: OK },
    ]);
    expect(h.dev.stats.malformed).toBe(5);
    expect(sha256(path)).toBe(before);
  });

  it('returns chains the queue rejects (loop, next out of range, readable after writable) with length 0', async () => {
    const { h } = setup();
    const d = h.driver;
    const st = h.status();
    // loop: hdr -> data -> hdr ...
    const base = d.nextDesc;
    d.writeDesc(base, { addr: h.header(0), len: 16, flags: VIRTQ_DESC_F_NEXT, next: base + 1 });
    d.writeDesc(base + 1, { addr: h.alloc(512), len: 512, flags: VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, next: base });
    d.putAvail(base);
    // next out of range
    d.writeDesc(base + 2, { addr: h.header(0), len: 16, flags: VIRTQ_DESC_F_NEXT, next: 64 + 5 });
    d.putAvail(base + 2);
    d.nextDesc = base + 3;
    const order = h.add([{ addr: h.header(0), len: 16 }, { addr: h.alloc(512), len: 512, write: true }, { addr: h.alloc(16), len: 16 }, { addr: st, len: 1, write: true }], st);
    const good = h.read(1, [512]);
    const answers = await h.run();
    expect(answers.map((a) => [a.head, a.len])).toEqual([[base, 0], [base + 2, 0], [order, 0], [good.head, 513]]);
    expect(answers[3]!.status).toBe(OK);
  });

  it('finds the header and status wherever the driver split them (§2.7.4.1), and reads through indirect tables', async () => {
    const { data, h } = setup();
    // header split 4 + 12
    const hdrAddr = h.header(0, 2);
    const d1 = h.alloc(512);
    const st1 = h.status();
    const split = h.add([{ addr: hdrAddr, len: 4 }, { addr: hdrAddr + 4, len: 12 }, { addr: d1, len: 512, write: true }, { addr: st1, len: 1, write: true }], st1);
    // status inside the data buffer: 513 writable bytes, status is the last one
    const d2 = h.alloc(513);
    mem.writeU8(d2 + 512, UNTOUCHED);
    const inData = h.add([{ addr: h.header(0, 3), len: 16 }, { addr: d2, len: 513, write: true }]);
    // header and data in one readable buffer (OUT)
    const one = h.alloc(16 + 512);
    mem.write(one, mem.read(h.header(1, 9), 16));
    mem.write(one + 16, pattern(512, 5));
    const st3 = h.status();
    const merged = h.add([{ addr: one, len: 16 + 512 }, { addr: st3, len: 1, write: true }], st3);
    const answers = sortByHead(await h.run()); // all three are asynchronous: any completion order
    expect(answers.map((a) => [a.head, a.len])).toEqual([[split, 513], [inData, 513], [merged, 1]].sort((a, b) => a[0]! - b[0]!));
    expect([mem.readU8(st1), mem.readU8(d2 + 512), mem.readU8(st3)]).toEqual([OK, OK, OK]);
    expect(sameBytes(mem.read(d1, 512), data.subarray(1024, 1536))).toBe(true);
    expect(sameBytes(mem.read(d2, 512), data.subarray(1536, 2048))).toBe(true);
    // indirect: [hdr] then an INDIRECT descriptor holding [data W][status W] (§2.7.5.3.2: a device MUST handle it)
    const table = h.alloc(32, 16);
    const d4 = h.alloc(1024);
    const st4 = h.status();
    const ind = h.driver.addIndirectChain([{ addr: d4, len: 1024, write: true }, { addr: st4, len: 1, write: true }], table, [{ addr: h.header(0, 4), len: 16 }]);
    const [answer] = await h.run();
    expect(answer).toMatchObject({ head: ind, len: 1025 });
    expect(mem.readU8(st4)).toBe(OK);
    expect(sameBytes(mem.read(d4, 1024), data.subarray(2048, 3072))).toBe(true);
    void VIRTQ_DESC_F_INDIRECT;
  });
});

describe('VirtioBlock: read-only disks', () => {
  it('answers OUT, DISCARD and WRITE_ZEROES with IOERR and the image never changes', async () => {
    const { path, data, dev, h } = setup({ ro: true });
    expect(fdFlags((dev.disk as unknown as { fd: number }).fd) & 3).toBe(0); // O_RDONLY
    const before = sha256(path);
    const w = h.write(0, pattern(4096, 9));
    const dHdr = h.header(VIRTIO_BLK_T_DISCARD);
    const dSt = h.status();
    const disc = h.add([{ addr: dHdr, len: 16 }, { addr: h.segments([{ sector: 0, sectors: 8 }]), len: 16 }, { addr: dSt, len: 1, write: true }], dSt);
    const zHdr = h.header(VIRTIO_BLK_T_WRITE_ZEROES);
    const zSt = h.status();
    const wz = h.add([{ addr: zHdr, len: 16 }, { addr: h.segments([{ sector: 0, sectors: 8 }]), len: 16 }, { addr: zSt, len: 1, write: true }], zSt);
    const flush = h.bare(VIRTIO_BLK_T_FLUSH);
    const r = h.read(0, [4096]);
    expect(sortByHead(await h.run())).toEqual(sortByHead([
      { head: w, len: 1, status: IOERR },
      { head: disc, len: 1, status: IOERR },
      { head: wz, len: 1, status: IOERR },
      { head: flush, len: 1, status: OK },
      { head: r.head, len: 4097, status: OK },
    ]));
    expect(sameBytes(mem.read(r.data[0]!.addr, 4096), data.subarray(0, 4096))).toBe(true);
    expect(sha256(path)).toBe(before);
    await expect(dev.resize(MiB)).rejects.toThrow(/read-only/);
  });

  it('answers DISCARD with unmap and unknown flags with UNSUPP before IOERR (§5.2.6.2), then DISCARD / WRITE_ZEROES with IOERR', async () => {
    const { path, h } = setup({ ro: true });
    const before = sha256(path);
    const seg = (type: number, flags: number, n = 1) => {
      const hdr = h.header(type);
      const s = h.status();
      const segs = Array.from({ length: n }, (_, i) => ({ sector: 8 * i, sectors: 8, flags }));
      return h.add([{ addr: hdr, len: 16 }, { addr: h.segments(segs), len: 16 * n }, { addr: s, len: 1, write: true }], s);
    };
    const cases = [
      seg(VIRTIO_BLK_T_DISCARD, 1), seg(VIRTIO_BLK_T_DISCARD, 2), seg(VIRTIO_BLK_T_WRITE_ZEROES, 2),
      seg(VIRTIO_BLK_T_DISCARD, 0, 2), seg(VIRTIO_BLK_T_WRITE_ZEROES, 1),
    ];
    const answers = new Map((await h.run()).map((a) => [a.head, a.status]));
    expect(cases.map((x) => answers.get(x))).toEqual([UNSUPP, UNSUPP, UNSUPP, IOERR, IOERR]);
    expect(sha256(path)).toBe(before);
  });
});

describe('VirtioBlock: concurrency and the event loop', () => {
  it('runs requests on the real image concurrently', async () => {
    const { data, dev, h } = setup({ size: 24 * MiB });
    const big = h.read(0, [16 * MiB]);
    const small = Array.from({ length: 8 }, (_, i) => h.read(40000 + i, [512]));
    dev.processQueue(0);
    expect(dev.inFlight).toBe(9); // all started before any completed
    const answers = await h.settle();
    expect(sortByHead(answers)).toEqual(sortByHead([big, ...small].map((r, i) => ({ head: r.head, len: i === 0 ? 16 * MiB + 1 : 513, status: OK }))));
    expect(sameBytes(mem.read(big.data[0]!.addr, 16 * MiB), data.subarray(0, 16 * MiB))).toBe(true);
    small.forEach((s, i) => expect(sameBytes(mem.read(s.data[0]!.addr, 512), data.subarray((40000 + i) * 512, (40001 + i) * 512))).toBe(true));
  });

  it('answers each request when its I/O finishes, in any order', async () => {
    // A disk whose reads finish when the test says so.
    const pending: { offset: number; bufs: readonly Uint8Array[]; finish: () => void }[] = [];
    const disk = fakeDisk({
      read: (offset, bufs) =>
        new Promise<number>((resolve) => {
          pending.push({ offset, bufs, finish: () => resolve(bufs.reduce((n, b) => (b.fill(offset / 512), n + b.length), 0)) });
        }),
    });
    const dev = new VirtioBlock({ path: 'fake.img' }, disk);
    const h = new BlkHarness(dev, mem, { features: dev.deviceFeatures() & ~VIRTIO_F_EVENT_IDX }); // every used buffer interrupts
    const reqs = [1, 2, 3, 4].map((sector) => h.read(sector, [512]));
    dev.processQueue(0);
    expect(pending.map((p) => p.offset)).toEqual([512, 1024, 1536, 2048]);
    expect(h.driver.usedIdx).toBe(0);
    for (const i of [2, 0, 3, 1]) {
      pending[i]!.finish();
      await new Promise((r) => setImmediate(r));
    }
    const answers = await h.settle();
    expect(answers.map((a) => a.head)).toEqual([2, 0, 3, 1].map((i) => reqs[i]!.head));
    expect(answers.every((a) => a.status === OK && a.len === 513)).toBe(true);
    reqs.forEach((r, i) => expect(mem.readU8(r.data[0]!.addr)).toBe(i + 1));
    expect(h.interrupt.used).toEqual([0, 0, 0, 0]); // one notification per completion (each finished alone)
  });

  it('keeps the main event loop free while a large read is in flight', async () => {
    const { dev, h } = setup({ size: 24 * MiB });
    let ticks = 0;
    let maxGap = 0;
    let last = performance.now();
    const timer = setInterval(() => {
      const now = performance.now();
      maxGap = Math.max(maxGap, now - last);
      last = now;
      ticks++;
    }, 1);
    try {
      let processMs = 0;
      let ticksInFlight = 0;
      const t0 = performance.now();
      for (let i = 0; i < 8; i++) {
        h.rewind();
        h.read(0, [8 * MiB, 8 * MiB, 8 * MiB]);
        const p0 = performance.now();
        dev.processQueue(0);
        processMs = Math.max(processMs, performance.now() - p0);
        const before = ticks;
        await h.settle();
        ticksInFlight += ticks - before; // the timer ran while the 24 MiB read was in flight
      }
      const total = performance.now() - t0;
      console.log(`8 × 24 MiB reads: ${total.toFixed(1)} ms, timer ticks while in flight ${ticksInFlight}, longest gap ${maxGap.toFixed(1)} ms, longest processQueue ${processMs.toFixed(2)} ms`);
      expect(processMs).toBeLessThan(50); // processQueue only starts the I/O (~0.1-0.3 ms here)
      expect(ticksInFlight).toBeGreaterThan(0);
    } finally {
      clearInterval(timer);
    }
  });

  it('batches interrupts: one used-queue notification per batch of completions', async () => {
    const { h } = setup();
    for (let i = 0; i < 20; i++) h.read(i * 8, [4096]);
    const answers = await h.run();
    expect(answers).toHaveLength(20);
    expect(h.interrupt.used.length).toBeGreaterThanOrEqual(1);
    expect(h.interrupt.used.length).toBeLessThan(20);
  });
});

describe('VirtioBlock: reset, resize, O_DIRECT, non-sparse', () => {
  it('reset drops in-flight requests: nothing is returned afterwards and the I/O is drained', async () => {
    const { dev, h } = setup({ size: 16 * MiB });
    for (let i = 0; i < 16; i++) h.read(i * 2048, [MiB]);
    dev.processQueue(0);
    expect(dev.inFlight).toBe(16);
    dev.reset();
    expect(dev.disk.quiesce(0)).toBe(true); // reset already drained the disk: no I/O touches guest RAM any more
    await new Promise((r) => setTimeout(r, 20));
    expect(dev.inFlight).toBe(0);
    expect(h.driver.usedIdx).toBe(0);
    expect(h.interrupt.used).toEqual([]);
    dev.processQueue(0); // not active any more
    expect(h.driver.usedIdx).toBe(0);
  });

  it('resize changes the capacity and signals a configuration change', async () => {
    const { dev, h } = setup({ size: MiB });
    expect(dev.capacity).toBe(2048);
    await dev.resize(3 * MiB);
    expect(dev.capacity).toBe(6144);
    expect(h.interrupt.configChanges).toBe(1);
    expect(new DataView(dev.configSpace().buffer).getBigUint64(0, true)).toBe(6144n);
    const r = h.read(6143, [512]);
    expect(await h.run()).toEqual([{ head: r.head, len: 513, status: OK }]);
  });

  it('serves whole blocks of a 4 KiB-block O_DIRECT disk from unaligned guest buffers (bounce buffer), and refuses 512-byte ones', async () => {
    let dev: VirtioBlock;
    const data = pattern(4 * MiB, 77);
    const path = makeImage(4 * MiB, data);
    try {
      dev = devices.open({ path, directIo: true, blockSize: 4096 });
    } catch (e) {
      if (e instanceof DiskError && e.errno === 22) {
        console.log(`skipping O_DIRECT device checks: ${e.message}`);
        return;
      }
      throw e;
    }
    const h = new BlkHarness(dev, mem);
    const refused = h.write(9, pattern(512, 3));
    const w = h.write(8, pattern(4096, 4), 500); // unaligned guest buffers: through the bounce buffer
    const answers = new Map((await h.run()).map((a) => [a.head, a.status]));
    expect([refused, w].map((x) => answers.get(x))).toEqual([IOERR, OK]);
    expect((dev.disk as unknown as { bouncedRequests: number }).bouncedRequests).toBeGreaterThan(0);
    const r = h.read(8, [4096]);
    expect(await h.run()).toEqual([{ head: r.head, len: 4097, status: OK }]);
    const expected = pattern(4096, 4);
    expect(sameBytes(mem.read(r.data[0]!.addr, 4096), expected)).toBe(true);
    expect(sameBytes(readFileSync(path).subarray(8 * 512, 16 * 512), expected)).toBe(true);
    expect(sameBytes(readFileSync(path).subarray(0, 8 * 512), data.subarray(0, 8 * 512))).toBe(true);
  });

  it('a non-sparse disk is fully allocated at start', () => {
    const path = makeImage(8 * MiB);
    const dev = devices.open({ path, sparse: false });
    expect(dev.disk.allocatedBytes()).toBeGreaterThanOrEqual(8 * MiB);
    void BUFFERS;
  });
});
