/**
 * End-to-end: kvmkit's VirtioBlock (and VirtioRng) driven by the probe's virtio driver
 * (probe.test=blk,rng, ring 3), held to the same tables as QEMU's virtio-blk-pci
 * (test/guest/probe/blkExpectations.ts: the spec's answers, then kvmkit's documented choices),
 * then every block option from the guest's side, each with the host file checked after poweroff.
 */
import { createHash, randomBytes } from 'node:crypto';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, type VirtualMachineOptions } from '../../src';
import { VirtioBlock } from '../../src/devices/virtio/block/VirtioBlock';
import { VirtioRng } from '../../src/devices/virtio/rng/VirtioRng';
import type { RawDiskImage } from '../../src/disk/RawDiskImage';
import {
  all, byCase, checkBlk, checkBlock4k, checkImages, checkRng, KVMKIT, one, type BlkDisks, type BlkRunConfig, type ProbeRun,
} from '../guest/probe/blkExpectations';
import { fnv1a64 } from '../guest/probe/parse';
import { buildProbe } from '../guest/probe/qemu';
import { ensureProbe, HAS_KVM, warnNoKvm } from '../helpers/env';
import { runProbe } from '../helpers/runProbe';

warnNoKvm();

const MiB = 1 << 20;
const DISK_BYTES = 64 * MiB;
const CAPACITY = DISK_BYTES / 512;
const SERIAL_RW = 'KVMKIT1';
const SERIAL_RO = 'RO-DISK-0123456789AB'; // 20 characters: GET_ID has no room for a NUL (§5.2.6)
const WSECTOR = 2048; // probe.blk.wsector default
/** The probe's DISCARD (1 MiB) and WRITE_ZEROES with unmap (64 KiB), in 512-byte st_blocks. */
const RELEASED_BLOCKS = (MiB + 64 * 1024) / 512;
/** st_blocks also counts file-system metadata: ext4 may add an extent-tree block (4 KiB) once the file has holes. */
const METADATA_SLACK_BLOCKS = (8 * 1024) / 512;

let dir = '';
let kernel = '';
let pristine = '';
let pristineData: Uint8Array = new Uint8Array();
let pristineSha = '';
let disks: BlkDisks;

const sha256 = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');
const blocks = (file: string) => statSync(file).blocks;

interface Result extends ProbeRun {
  reason: string;
  errors: Error[];
  cmdline: string;
  ms: number;
}

/** Boot the probe on kvmkit with these devices and wait for it to power off (or 60 s). */
async function runBlk(opts: Partial<VirtualMachineOptions>, params: string): Promise<Result> {
  const r = await runProbe({ kernel, mem: 256, ...opts, params: `probe.quiet probe.ring=3 ${params}` }, { timeoutMs: 60_000 });
  const probe = r.records;
  return { probe, output: r.output, reason: r.info.reason, errors: r.errors, cmdline: probe.find((p) => p.key === 'cmdline')?.cmdline ?? '', ms: r.ms };
}

/** A fresh copy of the random pristine image (fully allocated: every block written). */
function copyImage(name: string): string {
  const p = join(dir, name);
  copyFileSync(pristine, p);
  return p;
}

const KVMKIT_RUN = (m: { indirect: 0 | 1; eventidx: 0 | 1; msix: 0 | 1 | 2 }): BlkRunConfig => ({ cfg: 'cf8', barsByProbe: false, ...m });

describe.skipIf(!HAS_KVM)('virtio-blk on kvmkit, driven by the probe (the same checks as against QEMU)', () => {
  beforeAll(() => {
    ensureProbe(); // the vCPU worker bundle
    dir = mkdtempSync(join(tmpdir(), 'kvmkit-blk-e2e-'));
    kernel = buildProbe(dir); // this checkout's probe, with its newest checks
    pristineData = randomBytes(DISK_BYTES);
    pristine = join(dir, 'pristine.img');
    writeFileSync(pristine, pristineData);
    pristineSha = sha256(pristine);
    disks = {
      capacity: CAPACITY, serialRw: SERIAL_RW, serialRo: SERIAL_RO,
      head: fnv1a64(pristineData.subarray(0, MiB)), tail: fnv1a64(pristineData.subarray(DISK_BYTES - 65536)),
    };
  });
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  // The interrupt / indirect / event_idx combinations of virtio-pci.e2e.test.ts, all in ring 3.
  const modes = [
    { msix: 0, indirect: 1, eventidx: 1 },
    { msix: 1, indirect: 0, eventidx: 0 },
    { msix: 2, indirect: 1, eventidx: 0 },
    { msix: 2, indirect: 0, eventidx: 1 },
  ] as const;
  it.each(modes)(
    'rw disk (id=KVMKIT1) + ro disk (20-char id) + rng, msix=$msix indirect=$indirect event_idx=$eventidx: QEMU\'s answers where the spec fixes them, sparse DISCARD frees blocks, images checked',
    async (m) => {
      const rw = copyImage(`rw-${m.msix}${m.indirect}${m.eventidx}.img`);
      const ro = copyImage(`ro-${m.msix}${m.indirect}${m.eventidx}.img`);
      const before = blocks(rw);
      expect(before * 512).toBeGreaterThanOrEqual(DISK_BYTES); // every block written
      const rwDisk = new VirtioBlock({ path: rw, id: SERIAL_RW }); // sparse: true is the default
      const roDisk = new VirtioBlock({ path: ro, ro: true, id: SERIAL_RO });
      const r = await runBlk(
        { devices: [rwDisk, roDisk, new VirtioRng()] },
        `probe.test=blk,rng probe.virtio.msix=${m.msix} probe.blk.indirect=${m.indirect} probe.blk.eventidx=${m.eventidx} ` +
          `probe.rng.indirect=${m.indirect} probe.rng.eventidx=${m.eventidx}`,
      );
      // malformed chains, requests past the end: answered, and the VMM carries on to a normal poweroff
      expect(r.reason, r.output).toBe('poweroff');
      expect(r.errors).toEqual([]);
      checkBlk(r, KVMKIT_RUN(m), KVMKIT, disks);
      expect([one(r, 'virtio-blk-pci', 0).dev, one(r, 'virtio-blk-pci', 1).dev, one(r, 'virtio-rng-pci').dev]).toEqual(['00:01.0', '00:02.0', '00:03.0']);
      // kvmkit offers SEG_MAX BLK_SIZE FLUSH DISCARD WRITE_ZEROES (rw) or SEG_MAX RO BLK_SIZE FLUSH (ro), plus the ring features
      expect([one(r, 'virtio-blk', 0).offered, one(r, 'virtio-blk', 1).offered]).toEqual(['0x130006244', '0x130000264']);
      checkRng(r, KVMKIT_RUN(m), KVMKIT);
      expect(rwDisk.stats.malformed).toBeGreaterThan(0);
      expect(roDisk.stats.malformed).toBe(rwDisk.stats.malformed);
      checkImages(r, readFileSync(rw), sha256(ro), { sha: pristineSha, data: pristineData }, WSECTOR);
      // sparse (default): the guest's DISCARD and WRITE_ZEROES with unmap punched holes in the host file
      const after = blocks(rw);
      console.log(`sparse=true msix=${m.msix}: host file ${before} -> ${after} allocated 512-byte blocks (${((before - after) * 512) / 1024} KiB released), ${r.ms} ms`);
      expect(after).toBeLessThanOrEqual(before - RELEASED_BLOCKS + METADATA_SLACK_BLOCKS);
      const img = readFileSync(rw);
      const discarded = one(r, 'virtio-blk-discard', 0);
      const off = Number(discarded.sector) * 512;
      expect(img.subarray(off, off + Number(discarded.sectors) * 512).every((b) => b === 0)).toBe(true); // a hole reads as zeroes
    },
    90_000,
  );

  it('sparse=false: the image is fully allocated at start, DISCARD not offered (UNSUPP), WRITE_ZEROES zeroes without freeing; root on the 2nd disk gives root=/dev/vdb rw', async () => {
    const ro = copyImage('sparse-false-ro.img');
    const path = join(dir, 'sparse-false.img');
    writeFileSync(path, '');
    truncateSync(path, DISK_BYTES); // a sparse file: no block allocated
    expect(blocks(path)).toBe(0);
    const disk = new VirtioBlock({ path, sparse: false, root: true, id: 'NOT-SPARSE' });
    expect(blocks(path) * 512).toBeGreaterThanOrEqual(DISK_BYTES); // allocated when the device opened it
    const r = await runBlk({ devices: [new VirtioBlock({ path: ro, ro: true, id: SERIAL_RO }), disk] }, 'probe.test=blk');
    expect(r.reason, r.output).toBe('poweroff');
    expect(r.errors).toEqual([]);
    expect(r.cmdline).toMatch(/(^| )root=\/dev\/vdb rw( |$)/);
    expect(one(r, 'virtio-blk-id', 1).serial).toBe('NOT-SPARSE');
    expect(one(r, 'virtio-blk-config', 1)).toMatchObject({
      ro: '0', discard: '0', max_discard_sectors: '0', max_discard_seg: '0', write_zeroes: '1', max_write_zeroes_seg: '32', write_zeroes_may_unmap: '0',
    });
    expect(one(r, 'virtio-blk-discard', 1)).toMatchObject({ negotiated: '0', status: '2' });
    for (const wz of all(r, 'virtio-blk-write-zeroes', 1)) expect(wz, wz.unmap).toMatchObject({ negotiated: '1', wstatus: '0', status: '0', zeros: '1' });
    for (const rec of byCase(r, 'virtio-blk-rw', 1).values()) expect(rec, rec.case).toMatchObject({ wstatus: '0', match: '1', match_linear: '1' });
    const reqs = byCase(r, 'virtio-blk-req', 1);
    expect(Object.fromEntries(['discard-unmap-flag', 'discard-2-segments', 'discard-past-end', 'write-zeroes-unknown-flag', 'write-zeroes-past-end'].map((k) => [k, reqs.get(k)!.status])))
      .toEqual({ 'discard-unmap-flag': '2', 'discard-2-segments': '2', 'discard-past-end': '2', 'write-zeroes-unknown-flag': '2', 'write-zeroes-past-end': '1' });
    expect(one(r, 'virtio-blk-done', 1)).toMatchObject({ final_read: '0', device_status: '0xf' });
    const after = blocks(path);
    console.log(`sparse=false: host file 0 -> ${after} allocated blocks at start and after the run (${DISK_BYTES / 512} needed)`);
    expect(after * 512).toBeGreaterThanOrEqual(DISK_BYTES); // no hole punched, unmap or not
    const img = readFileSync(path);
    for (const rec of all(r, 'virtio-blk-rw', 1)) {
      const off = Number(rec.sector) * 512;
      expect(fnv1a64(img.subarray(off, off + Number(rec.bytes))), rec.case).toBe(rec.fnv1a64);
    }
    expect(sha256(ro)).toBe(pristineSha);
  }, 90_000);

  it('directIo: every rw check passes on an O_DIRECT image; unaligned guest buffers went through the bounce buffer', async () => {
    const rw = copyImage('direct-rw.img');
    const ro = copyImage('direct-ro.img');
    const rwDisk = new VirtioBlock({ path: rw, id: SERIAL_RW, directIo: true });
    const roDisk = new VirtioBlock({ path: ro, ro: true, id: SERIAL_RO, directIo: true });
    const r = await runBlk({ devices: [rwDisk, roDisk] }, 'probe.test=blk');
    expect(r.reason, r.output).toBe('poweroff');
    expect(r.errors).toEqual([]);
    checkBlk(r, KVMKIT_RUN({ msix: 0, indirect: 1, eventidx: 1 }), KVMKIT, disks);
    const unaligned = byCase(r, 'virtio-blk-rw', 0).get('unaligned')!;
    expect(unaligned).toMatchObject({ segs: '3', match: '1', match_linear: '1' });
    const bounced = (rwDisk.disk as RawDiskImage).bouncedRequests;
    console.log(`directIo: ${bounced} requests through the bounce buffer, ${r.ms} ms`);
    expect(rwDisk.directIo && roDisk.directIo).toBe(true);
    expect(bounced).toBeGreaterThan(0);
    checkImages(r, readFileSync(rw), sha256(ro), { sha: pristineSha, data: pristineData }, WSECTOR);
  }, 90_000);

  it('blockSize 4096: blk_size=4096 in config space, and requests that are not whole blocks get IOERR as from QEMU (virtio-blk-align)', async () => {
    const path = copyImage('block4k.img');
    const r = await runBlk({ devices: [new VirtioBlock({ path, blockSize: 4096 })] }, 'probe.test=blk probe.blk.bad=0');
    expect(r.reason, r.output).toBe('poweroff');
    expect(r.errors).toEqual([]);
    checkBlock4k(r, readFileSync(path), pristineData, CAPACITY);
  }, 90_000);

  it('bad option values are ConfigErrors naming the option, before any file is opened', () => {
    const path = join(dir, 'does-not-exist.img'); // a DiskError would come later: the options are checked first
    expect(() => new VirtioBlock({ path, blockSize: 1000 })).toThrow(new ConfigError('block_size', 'must be a power of two >= 512', 1000));
    expect(() => new VirtioBlock({ path, id: 'X'.repeat(21) })).toThrow(/^id must be at most 20 printable ASCII characters, got "X{21}"$/);
    expect(() => new VirtioBlock({ path, id: 'bad\u0001id' })).toThrow(ConfigError);
    expect(() => new VirtioBlock({ path, id: 'bad\u0001id' })).toThrow(/^id must be at most 20 printable ASCII characters/);
  });
});
