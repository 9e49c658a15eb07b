/**
 * What the probe's `probe.test=blk,rng` must report, shared by the QEMU cross-check
 * (virtio-qemu.test.ts) and kvmkit's end-to-end test (test/vm/virtio-blk.e2e.test.ts), so both
 * devices are held to one set of tables:
 *
 * - `SPEC_*`: answers virtio 1.2 fixes. Every peer table is built with them on top, so a peer can
 *   never be expected to differ from the spec.
 * - `QEMU` and `KVMKIT` ({@link BlkPeer}): each device's own answers where the spec leaves the
 *   choice to the device (driver errors, limits, malformed chains). README.md ("virtio") lists
 *   QEMU's and the kvmkit section lists where kvmkit differs and why.
 */
import { expect } from 'vitest';
import { fnv1a64, type ProbeRecord } from './parse';

/** The PROBE records of one run and the text they came from (for failure messages). */
export interface ProbeRun {
  probe: ProbeRecord[];
  output: string;
}

export function all(r: ProbeRun, key: string, disk?: number): ProbeRecord[] {
  return r.probe.filter((p) => p.key === key && (disk === undefined || p.disk === String(disk)));
}
export function one(r: ProbeRun, key: string, disk?: number): ProbeRecord {
  const recs = all(r, key, disk);
  expect(recs, `exactly one "PROBE ${key}"${disk === undefined ? '' : ` disk=${disk}`} line in:\n${r.output}`).toHaveLength(1);
  return recs[0]!;
}
export function byCase(r: ProbeRun, key: string, disk: number): Map<string, ProbeRecord> {
  return new Map(all(r, key, disk).map((p) => [p.case!, p]));
}

/** How a malformed chain ended (virtio-blk-bad `result`). */
export type BadResult = 'needs-reset' | 'completed';
/** A virtio-blk-bad answer: the result, and for completed chains the status byte and used length when fixed. */
export interface BadAnswer {
  result: BadResult;
  status_byte?: string;
  used_len?: string;
}

/**
 * Malformed chains whose answer the spec fixes: a request framed over descriptors in any way
 * (§2.7.4.1: no assumptions about the framing; the status is the last writable byte), and direct
 * descriptors followed by one indirect descriptor (§2.7.5.3.2: the device MUST handle it).
 */
export const SPEC_BAD: Record<string, BadAnswer> = {
  'header-split-4+12': { result: 'completed', status_byte: '0x0', used_len: '513' },
  'status-in-data': { result: 'completed', status_byte: '0x0', used_len: '513' },
};
/** §2.7.5.3.2, which QEMU 7.2 violates (see {@link QEMU_BAD}); asserted for kvmkit. */
export const SPEC_DIRECT_THEN_INDIRECT: BadAnswer = { result: 'completed', status_byte: '0x0', used_len: '513' };

/**
 * QEMU 7.2's answers to malformed descriptor chains (virtio-blk-bad lines). "needs-reset": the
 * device set DEVICE_NEEDS_RESET (virtio_error) and completed nothing; "completed": it used the
 * chain. Cases not in {@link SPEC_BAD} are driver errors the device may answer either way, as
 * long as the VMM survives and the device works afterwards.
 */
export const QEMU_BAD: Record<string, BadAnswer> = {
  'header-only': { result: 'needs-reset' },
  'flush-no-status': { result: 'needs-reset' },
  'status-read-only': { result: 'needs-reset' },
  'readable-after-writable': { result: 'needs-reset' },
  'header-short-8': { result: 'needs-reset' },
  'read-to-oob-address': { result: 'completed' }, // QEMU bounce-buffers unassigned memory
  'write-from-oob-address': { result: 'completed' },
  'header-at-oob-address': { result: 'completed' },
  'status-at-oob-address': { result: 'completed', status_byte: '0xa5' }, // the status goes nowhere
  loop: { result: 'needs-reset' },
  'next-out-of-range': { result: 'needs-reset' },
  'zero-length-data': { result: 'needs-reset' },
  // §2.7.5.3.2 says the device MUST handle direct descriptors followed by one indirect one;
  // QEMU 7.2 does not (it only follows an indirect head).
  'direct-then-indirect': { result: 'needs-reset' },
  'indirect-len-not-16n': { result: 'needs-reset' },
  'indirect-len-0': { result: 'needs-reset' },
  'indirect-nested': { result: 'needs-reset' },
  'indirect-next-out-of-table': { result: 'needs-reset' },
  'indirect-at-oob-address': { result: 'needs-reset' },
  'indirect-with-next-flag': { result: 'completed' }, // the NEXT is ignored
  ...SPEC_BAD,
};

/** A malformed chain as kvmkit returns it: used, length 0, nothing written (VirtioBlock's module doc). */
const DROPPED: BadAnswer = { result: 'completed', status_byte: '0xa5', used_len: '0' };

/**
 * kvmkit's answers: a chain the queue or the device cannot parse — no status byte, a short
 * header, a loop, a buffer outside guest RAM, a broken indirect table — is completed with used
 * length 0 and nothing written, instead of DEVICE_NEEDS_RESET, so one bad request never stops the
 * others. A zero-length data descriptor is just an empty buffer (a read of 0 bytes, status 0).
 */
export const KVMKIT_BAD: Record<string, BadAnswer> = {
  ...Object.fromEntries(Object.keys(QEMU_BAD).map((k) => [k, DROPPED])),
  'zero-length-data': { result: 'completed', status_byte: '0x0', used_len: '1' },
  'direct-then-indirect': SPEC_DIRECT_THEN_INDIRECT,
  ...SPEC_BAD,
};

/** Cases that need VIRTIO_F_INDIRECT_DESC (only run when it was negotiated). */
export const INDIRECT_CASES = Object.keys(QEMU_BAD).filter((k) => k.includes('indirect'));

/** virtio-blk-req status bytes (0 OK, 1 IOERR, 2 UNSUPP) the spec fixes. */
export const SPEC_REQ: Record<string, string> = {
  'read-last-sector': '0', // a valid request
  'unknown-type-126': '2', // §5.2.6: UNSUPP for an unsupported request
  'get-lifetime': '2', // not offered -> unsupported
  'secure-erase': '2',
  'discard-unmap-flag': '2', // §5.2.6.2
  'discard-unknown-flag': '2', // §5.2.6.2
  'write-zeroes-unknown-flag': '2', // §5.2.6.2
};

/** QEMU 7.2's virtio-blk-req answers (the same on its read-only disk). */
export const QEMU_REQ: Record<string, string> = {
  'read-past-end': '1',
  'read-at-capacity': '1',
  'read-sector-2^63': '1',
  'read-sector-max': '1',
  'write-past-end': '1',
  'write-at-capacity': '1',
  'read-len-not-512': '1',
  'write-len-not-512': '1',
  'read-len-0': '0',
  'get-id-short-buffer': '0',
  'flush-with-sector': '0',
  'discard-2-segments': '2', // max_discard_seg 1
  'discard-past-end': '1',
  'write-zeroes-past-end': '1',
  ...SPEC_REQ,
};

/** kvmkit: max_discard_seg is 32, so 2 segments are fine; a read-only disk offers no DISCARD and answers it IOERR. */
export const KVMKIT_REQ_RW: Record<string, string> = { ...QEMU_REQ, 'discard-2-segments': '0', ...SPEC_REQ };
export const KVMKIT_REQ_RO: Record<string, string> = { ...KVMKIT_REQ_RW, 'discard-2-segments': '1', ...SPEC_REQ };

/** What one device answers where the spec lets it choose. */
export interface BlkPeer {
  name: 'qemu' | 'kvmkit';
  bad: Record<string, BadAnswer>;
  req(ro: boolean): Record<string, string>;
  /** virtio-blk-config fields besides capacity, bytes, ro, flush and blk_size. */
  config(ro: boolean): Record<string, string>;
  /** The DISCARD line of the read-only disk. */
  roDiscard: Record<string, string>;
  /** QEMU notifies the first used buffer after a reset whatever used_event says (signalled_used_valid). */
  notifiesFirstUsedAfterReset: boolean;
  /** virtio-rng-bad (a device-readable buffer, §5.4.6.1 forbids it). */
  rngBad: Record<string, string>;
}

export const QEMU: BlkPeer = {
  name: 'qemu',
  bad: QEMU_BAD,
  req: () => QEMU_REQ,
  // QEMU 7.2 for a 64 MiB raw image; DISCARD/WRITE_ZEROES are offered on a read-only disk too
  config: () => ({ seg_max: '254', discard: '1', max_discard_seg: '1', write_zeroes: '1', max_write_zeroes_seg: '1', write_zeroes_may_unmap: '1' }),
  roDiscard: { negotiated: '1', status: '0' }, // only a hint: nothing changes
  notifiesFirstUsedAfterReset: true,
  rngBad: { result: 'no-completion', device_status: '0xf' },
};

export const KVMKIT: BlkPeer = {
  name: 'kvmkit',
  bad: KVMKIT_BAD,
  req: (ro) => (ro ? KVMKIT_REQ_RO : KVMKIT_REQ_RW),
  config: (ro): Record<string, string> =>
    ro
      ? { seg_max: '254', discard: '0', max_discard_seg: '0', write_zeroes: '0', max_write_zeroes_seg: '0', write_zeroes_may_unmap: '0' }
      : {
          seg_max: '254', discard: '1', max_discard_sectors: '4294967295', max_discard_seg: '32', discard_sector_alignment: '1',
          write_zeroes: '1', max_write_zeroes_sectors: '4294967295', max_write_zeroes_seg: '32', write_zeroes_may_unmap: '1',
          size_max: '0', geometry: '0/0/0', topology: '0/0/0/0', config_wce: '0', mq: '0',
        },
  roDiscard: { negotiated: '0', status: '1' },
  notifiesFirstUsedAfterReset: false,
  rngBad: { result: 'completed', len: '0', device_status: '0xf' },
};

/** A run's set-up, as the probe sees it. */
export interface BlkRunConfig {
  /** Configuration access the probe found. */
  cfg: 'cf8' | 'ecam';
  /** True when the probe had to assign the BARs (QEMU microvm), false when the VMM did. */
  barsByProbe: boolean;
  indirect: 0 | 1;
  eventidx: 0 | 1;
  msix: 0 | 1 | 2;
}

/** Disk identity the run used. */
export interface BlkDisks {
  capacity: number;
  serialRw: string;
  serialRo: string;
  /** FNV-1a 64 of the image's first MiB and last 64 KiB. */
  head: string;
  tail: string;
}

/** A virtio-pci transport line (virtio-blk-pci, virtio-rng-pci, virtio-console-pci) of device `1af4:<deviceId>`. */
export function checkTransport(key: string, rec: ProbeRecord, c: Pick<BlkRunConfig, 'cfg' | 'barsByProbe'>, deviceId: string): void {
  expect(rec.id, key).toBe(`1af4:${deviceId}`);
  expect(rec.cfg).toBe(c.cfg);
  expect(Number(rec.rev)).toBeGreaterThanOrEqual(1);
  for (const f of ['common', 'notify', 'isr', 'device_cfg']) expect(BigInt(rec[f]!), f).toBeGreaterThan(0n);
  // §4.1.4.4: notify_off_multiplier is 0 or an even power of 2
  const m = Number(rec.notify_mult);
  expect(m === 0 || (Math.log2(m) % 2 === 0 && Number.isInteger(Math.log2(m))), `notify_mult=${m}`).toBe(true);
  expect(Number(rec.msix)).toBeGreaterThanOrEqual(2);
  const bars = Object.keys(rec).filter((k) => /^bar\d$/.test(k));
  expect(bars.length).toBeGreaterThan(0);
  for (const b of bars) expect(rec[b]!.endsWith('/probe'), `${b}=${rec[b]}`).toBe(c.barsByProbe);
}

/**
 * The blk lines of a run with a read-write disk (disk=0) and a read-only one (disk=1), both of
 * `d.capacity` sectors: the spec's answers, then `peer`'s own.
 */
export function checkBlk(r: ProbeRun, c: BlkRunConfig, peer: BlkPeer, d: BlkDisks): void {
  expect(r.probe.find((p) => p.key === 'exception' || p.key === 'error'), r.output).toBeUndefined();
  expect(one(r, 'virtio-blk-count')).toMatchObject({ 'virtio-blk-count': '2', cfg: c.cfg });

  for (const disk of [0, 1]) {
    const ro = disk === 1;
    const t = `${peer.name} disk=${disk}`;
    checkTransport(t, one(r, 'virtio-blk-pci', disk), c, '1042');

    const init = one(r, 'virtio-blk', disk);
    expect(init, t).toMatchObject({ init: 'ok', version_1: '1', indirect: String(c.indirect), event_idx: String(c.eventidx), status: '0xf' });
    expect(init.queue_size).toBe('256');

    // §5.2.4 config space
    const cfg = one(r, 'virtio-blk-config', disk);
    expect(cfg, t).toMatchObject({ capacity: String(d.capacity), bytes: String(d.capacity * 512), ro: ro ? '1' : '0', flush: '1', blk_size: '512', ...peer.config(ro) });

    // interrupts, without taking any
    const irq = one(r, 'virtio-blk-irq', disk);
    expect(irq.reset_config_vector, t).toBe('0xffff'); // §4.1.5.1.2.1: unmapped after reset
    expect(irq.reset_queue_vector).toBe('0xffff');
    expect(irq.reinit).toBe('1');
    if (c.msix === 0) {
      // §4.1.4.5.1: ISR bit 0 and PCI status bit 3 set for a notification, cleared by the read
      expect(irq.mode).toBe('intx');
      expect(Number(irq.on_isr) & 1, t).toBe(1);
      expect(irq.on_pci_int).toBe('1');
      expect(irq.isr_after_read).toBe('0x0');
      expect(irq.pci_int_after_read).toBe('0');
      expect(irq.off_isr).toBe('0x0'); // suppression honoured (a SHOULD)
      expect(irq.off_pci_int).toBe('0');
    } else if (c.msix === 1) {
      expect(irq.mode).toBe('msix-no-vector');
      expect(irq).toMatchObject({ config_vector: '0xffff', queue_vector: '0xffff', on_pba: '0x0', on_pci_int: '0' });
    } else {
      expect(irq.mode).toBe('msix-masked');
      // the vectors were accepted, and a notification to a masked vector is a Pending Bit
      expect(irq).toMatchObject({ config_vector: '0x0', queue_vector: '0x1', on_pba: '0x2', on_pci_int: '0' });
      if (!c.eventidx || !peer.notifiesFirstUsedAfterReset) expect(irq.off_pba, t).toBe('0x0');
    }

    const id = one(r, 'virtio-blk-id', disk);
    expect(id.status).toBe('0');
    expect(id.serial, t).toBe(ro ? d.serialRo : d.serialRw);
    expect(id.serial_len).toBe(String((ro ? d.serialRo : d.serialRw).length));

    const reads = byCase(r, 'virtio-blk-read', disk);
    expect(reads.get('head')).toMatchObject({ status: '0', bytes: String(1 << 20), fnv1a64: d.head });
    expect(reads.get('tail')).toMatchObject({ status: '0', sector: String(d.capacity - 128), fnv1a64: d.tail });

    if (ro) {
      // §5.2.6.2: a write to a read-only device fails with IOERR and writes nothing
      expect(one(r, 'virtio-blk-ro', disk)).toMatchObject({ wstatus: '1', unchanged: '1', rstatus: '0/0' });
      expect(all(r, 'virtio-blk-rw', disk)).toHaveLength(0);
    } else {
      const rw = byCase(r, 'virtio-blk-rw', disk);
      expect([...rw.keys()]).toEqual(['single', '4k', 'chain64k', 'unaligned', 'maxseg', '1m']);
      for (const [name, rec] of rw) {
        expect(rec, `${t} ${name}`).toMatchObject({ wstatus: '0', rstatus: '0', rstatus_linear: '0', match: '1', match_linear: '1', indirect: String(c.indirect) });
        expect(Number(rec.rused_len), name).toBe(Number(rec.bytes) + 1); // data + status byte
        expect(rec.wused_len, name).toBe('1');
      }
      expect(rw.get('chain64k')!.segs).toBe('16');
      expect(rw.get('maxseg')!.segs).toBe('254'); // seg_max
    }

    expect(one(r, 'virtio-blk-flush', disk)).toMatchObject({ negotiated: '1', status: '0', used_len: '1' });
    expect(one(r, 'virtio-blk-discard', disk), t).toMatchObject(ro ? peer.roDiscard : { negotiated: '1', status: '0' });
    const wzs = all(r, 'virtio-blk-write-zeroes', disk);
    expect(wzs.map((w) => w.unmap)).toEqual(['0', '1']);
    for (const wz of wzs) {
      if (ro) expect(wz, t).toMatchObject({ wstatus: 'skipped', status: '1' });
      else expect(wz, t).toMatchObject({ negotiated: '1', wstatus: '0', status: '0', rstatus: '0', zeros: '1' });
    }

    const reqs = byCase(r, 'virtio-blk-req', disk);
    const reqExpected = peer.req(ro);
    expect([...reqs.keys()].sort()).toEqual(Object.keys(reqExpected).sort());
    for (const [name, status] of Object.entries(reqExpected)) expect(reqs.get(name)?.status, `${t} ${name}`).toBe(status);

    const bad = byCase(r, 'virtio-blk-bad', disk);
    const expected = Object.entries(peer.bad).filter(([k]) => c.indirect || !INDIRECT_CASES.includes(k));
    expect([...bad.keys()].sort()).toEqual(expected.map(([k]) => k).sort());
    for (const [name, want] of expected) {
      const b = bad.get(name)!;
      const what = `${t} ${name}: ${JSON.stringify(b)}`;
      expect(b, what).toMatchObject(want);
      expect(b.reinit, what).toBe('1');
      expect(b.after, `${what}: the device works afterwards`).toBe('0');
      if (want.result === 'needs-reset') {
        expect(Number(b.device_status) & 0x40, what).toBe(0x40);
        // §2.1.2: after DEVICE_NEEDS_RESET with DRIVER_OK, a configuration change notification
        if (c.msix === 0) expect(Number(b.isr) & 2, what).toBe(2);
        expect(b.reset, what).toBe('1');
      } else {
        expect(b.device_status, what).toBe('0xf');
        expect(b.reset, what).toBe('0');
      }
    }

    expect(one(r, 'virtio-blk-done', disk)).toMatchObject({ final_read: '0', device_status: '0xf' });
  }
}

/**
 * Host-side image checks after the guest is gone: the read-only image is unchanged, every write
 * the probe reported is in the read-write image, WRITE_ZEROES left zeroes, and nothing before the
 * write area changed.
 */
export function checkImages(r: ProbeRun, rwImage: Uint8Array, roSha: string, pristine: { sha: string; data: Uint8Array }, wsector: number): void {
  expect(roSha).toBe(pristine.sha);
  const rws = all(r, 'virtio-blk-rw', 0).filter((rec) => rec.wstatus === '0');
  expect(rws.length).toBeGreaterThan(0);
  for (const rec of rws) {
    const off = Number(rec.sector) * 512;
    expect(fnv1a64(rwImage.subarray(off, off + Number(rec.bytes))), rec.case).toBe(rec.fnv1a64);
  }
  const wz = all(r, 'virtio-blk-write-zeroes', 0);
  expect(wz).toHaveLength(2);
  for (const rec of wz) {
    const off = Number(rec.sector) * 512;
    expect(rwImage.subarray(off, off + Number(rec.sectors) * 512).every((b) => b === 0), rec.sector).toBe(true);
  }
  expect(fnv1a64(rwImage.subarray(0, wsector * 512))).toBe(fnv1a64(pristine.data.subarray(0, wsector * 512)));
}

/** The rng lines: 4 full reads of random bytes, a two-buffer chain, the bad request, a final read. */
export function checkRng(r: ProbeRun, c: BlkRunConfig, peer: BlkPeer): void {
  expect(one(r, 'virtio-rng-count')['virtio-rng-count']).toBe('1');
  checkTransport('rng', one(r, 'virtio-rng-pci'), c, '1044');
  expect(one(r, 'virtio-rng')).toMatchObject({ init: 'ok', status: '0xf' });
  const reads = all(r, 'virtio-rng-read');
  expect(reads).toHaveLength(4);
  for (const rd of reads) {
    expect(rd.len).toBe('4096'); // both fill the whole buffer (§5.4.6.2 allows less)
    expect(Number(rd.distinct)).toBeGreaterThan(200);
    expect(rd.same_as_previous).toBe('0');
  }
  expect(new Set(reads.map((rd) => rd.fnv1a64)).size).toBe(4);
  const chain = one(r, 'virtio-rng-chain');
  expect(chain).toMatchObject({ result: 'completed', len: '300' });
  expect(Number(chain.distinct_second)).toBeGreaterThan(50);
  expect(one(r, 'virtio-rng-bad')).toMatchObject({ case: 'device-readable-buffer', ...peer.rngBad });
  expect(one(r, 'virtio-rng-done')).toMatchObject({ ok_reads: '4', repeats: '0', constant: '0', final_read: 'completed' });
}

/**
 * virtio-blk-align lines (a disk with blk_size > 512): the answers QEMU 7.2 gives with
 * `logical_block_size=4096` — IOERR for everything that is not whole blocks, including DISCARD
 * and WRITE_ZEROES — which kvmkit matches. The spec leaves this open (§5.2.5: blk_size does not
 * change the protocol's 512-byte units).
 */
export const ALIGN_STATUS: Record<string, string> = {
  'write-block': '0',
  'read-block': '0',
  'read-512': '1',
  'write-512': '1',
  'read-block-at-sector+1': '1',
  'write-block-at-sector+1': '1',
  'read-block+512': '1',
  'write-block+512': '1',
  'discard-at-sector+1': '1',
  'discard-512': '1',
  'discard-block': '0',
  'write-zeroes-at-sector+1': '1',
  'write-zeroes-512': '1',
  'write-zeroes-block': '0',
  'unaligned-buffers': '0',
  'read-block-again': '0',
};

/** Check a disk's virtio-blk-align lines against {@link ALIGN_STATUS}; returns them by case. */
export function checkAlign(r: ProbeRun, disk: number, blkSize: number): Map<string, ProbeRecord> {
  const lines = byCase(r, 'virtio-blk-align', disk);
  expect([...lines.keys()], r.output).toEqual(Object.keys(ALIGN_STATUS));
  for (const [name, status] of Object.entries(ALIGN_STATUS)) expect(lines.get(name), name).toMatchObject({ status, blk_size: String(blkSize) });
  for (const name of ['read-block', 'unaligned-buffers', 'read-block-again']) expect(lines.get(name)!.match, name).toBe('1');
  expect(lines.get('unaligned-buffers')!.rstatus).toBe('0');
  return lines;
}

/**
 * A run of probe.test=blk on one read-write disk with blk_size 4096 (QEMU's
 * `logical_block_size=4096`, kvmkit's `blockSize: 4096`): config space, the virtio-blk-align
 * answers, the rw cases that are 512-byte multiples but not whole blocks refused the same way,
 * and the host image holding exactly the writes that succeeded.
 */
export function checkBlock4k(r: ProbeRun, image: Uint8Array, pristine: Uint8Array, capacity: number): void {
  expect(one(r, 'virtio-blk-config', 0)).toMatchObject({ blk_size: '4096', discard_sector_alignment: '8', capacity: String(capacity) });
  const align = checkAlign(r, 0, 4096);
  const rw = byCase(r, 'virtio-blk-rw', 0);
  expect([...rw].map(([k, v]) => `${k}=${v.wstatus}/${v.rstatus}`)).toEqual(['single=1/1', '4k=0/0', 'chain64k=0/0', 'unaligned=1/1', 'maxseg=1/1', '1m=0/0']);
  expect(byCase(r, 'virtio-blk-req', 0).get('read-last-sector')!.status).toBe('1'); // 512 bytes: not a whole block
  const written = [align.get('unaligned-buffers')!, align.get('read-block-again')!, ...[...rw.values()].filter((v) => v.wstatus === '0')];
  for (const l of written) {
    const off = Number(l.sector) * 512;
    expect(fnv1a64(image.subarray(off, off + Number(l.bytes))), l.case).toBe(l.fnv1a64);
  }
  // the refused 512-byte write ("single") left the image's bytes
  const so = Number(rw.get('single')!.sector) * 512;
  expect(fnv1a64(image.subarray(so, so + 512))).toBe(fnv1a64(pristine.subarray(so, so + 512)));
}
