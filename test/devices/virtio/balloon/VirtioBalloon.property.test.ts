/**
 * Guest-controlled data of the balloon, decoded under arbitrary input: PFN arrays split anyhow
 * over buffers, stats buffers of any length and tags, and inflate chains naming any frames.
 */
import { afterAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  BALLOON_INFLATEQ, BALLOON_STAT_FIELDS, pageFrameRuns, parseGuestStats, VirtioBalloon, type BalloonGuestStats,
} from '../../../../src/devices/virtio/balloon';
import { activate, allocRam } from '../driver';

/** Cut `bytes` at the given points into views. */
function split(bytes: Uint8Array, cuts: number[]): Uint8Array[] {
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const out: Uint8Array[] = [];
  let from = 0;
  for (const p of [...points, bytes.length]) {
    out.push(bytes.subarray(from, p));
    from = p;
  }
  return out;
}

describe('balloon parsing (property)', () => {
  it('pageFrameRuns decodes every whole le32 in order, however the buffer is split, and merges only consecutive frames', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.array(fc.nat(), { maxLength: 8 }), (bytes, cuts) => {
        const runs = pageFrameRuns(split(bytes, cuts));
        const flat = runs.flatMap((r) => Array.from({ length: r.count }, (_, i) => r.first + i));
        const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
        const want = Array.from({ length: Math.floor(bytes.length / 4) }, (_, i) => v.getUint32(4 * i, true));
        expect(flat).toEqual(want);
        for (let i = 1; i < runs.length; i++) expect(runs[i]!.first).not.toBe(runs[i - 1]!.first + runs[i - 1]!.count);
        for (const r of runs) expect(r.count).toBeGreaterThan(0);
      }),
      { numRuns: 500 },
    );
  });

  it('parseGuestStats keeps the last value of each known tag, ignores unknown tags and a trailing partial entry', () => {
    const entry = fc.tuple(fc.oneof(fc.integer({ min: 0, max: 12 }), fc.integer({ min: 0, max: 0xffff })), fc.bigUint64Array({ minLength: 1, maxLength: 1 }));
    fc.assert(
      fc.property(fc.array(entry, { maxLength: 30 }), fc.nat(9), (entries, tail) => {
        const bytes = new Uint8Array(10 * entries.length + tail);
        const v = new DataView(bytes.buffer);
        const want: BalloonGuestStats = {};
        entries.forEach(([tag, [val]], i) => {
          v.setUint16(10 * i, tag, true);
          v.setBigUint64(10 * i + 2, val!, true);
          const field = BALLOON_STAT_FIELDS[tag];
          if (field) want[field] = Number(val);
        });
        expect(parseGuestStats(bytes)).toEqual(want);
        expect(parseGuestStats(bytes.subarray(0, 10 * entries.length))).toEqual(want); // the tail adds nothing
      }),
      { numRuns: 500 },
    );
  });
});

describe('balloon inflate (property)', () => {
  const mem = allocRam(2 << 20);
  afterAll(() => mem.free());
  const ramPages = mem.size / 4096;

  it('discards exactly the named pages inside RAM and counts the rest as ignored, never throwing', () => {
    // Frames from 64 up (the rings and the PFN buffer live below 256 KiB), some past RAM.
    const pfn = fc.oneof(fc.integer({ min: 64, max: ramPages + 16 }), fc.integer({ min: 0, max: 0xffff_ffff }).filter((p) => p >= 64));
    fc.assert(
      fc.property(fc.array(pfn, { maxLength: 40 }), (pfns) => {
        const b = new VirtioBalloon();
        const { drivers } = activate(b, mem);
        mem.write(0x40000, new Uint8Array(mem.size - 0x40000).fill(0xee));
        const buf = new Uint8Array(4 * pfns.length);
        pfns.forEach((p, i) => new DataView(buf.buffer).setUint32(4 * i, p, true));
        mem.write(0x30000, buf);
        const h = drivers[BALLOON_INFLATEQ]!.addChain([{ addr: 0x30000, len: buf.length }]);
        b.processQueue(BALLOON_INFLATEQ);
        expect(drivers[BALLOON_INFLATEQ]!.takeUsed()).toEqual([{ id: h, len: 0 }]);
        const inRam = pfns.filter((p) => p < ramPages);
        expect(b.counters.inflatedPages).toBe(inRam.length);
        expect(b.counters.ignoredPfns).toBe(pfns.length - inRam.length);
        const gone = new Set(inRam);
        for (let p = 64; p < ramPages; p += 1) expect(mem.readU8(p * 4096 + 5), `page ${p}`).toBe(gone.has(p) ? 0 : 0xee);
      }),
      { numRuns: 60 },
    );
  });
});
