import { afterAll, describe, expect, it } from 'vitest';
import { GuestMemory } from '../../../src/memory/GuestMemory';
import { VirtQueue, VirtQueueError } from '../../../src/devices/virtio/VirtQueue';
import {
  VIRTIO_F_EVENT_IDX,
  VIRTIO_F_INDIRECT_DESC,
  VIRTIO_F_VERSION_1,
  VIRTIO_MSI_NO_VECTOR,
  VIRTQ_AVAIL_F_NO_INTERRUPT,
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
  VIRTQ_USED_F_NO_NOTIFY,
  vringNeedEvent,
} from '../../../src/devices/virtio/constants';
import { KvmkitError } from '../../../src/errors';
import { allocRam, LAYOUT, TestDriver } from './driver';

const mem = allocRam();
afterAll(() => mem.free());

/** Catch what `fn` throws, failing the test when it returns. */
function thrown(fn: () => unknown): VirtQueueError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(VirtQueueError);
    return e as VirtQueueError;
  }
  throw new Error('expected a VirtQueueError');
}

describe('VirtQueue layout', () => {
  it('starts like a reset queue: size = maxSize, not ready, no vector', () => {
    const q = new VirtQueue(256);
    expect(q.size).toBe(256);
    expect(q.ready).toBe(false);
    expect(q.msixVector).toBe(VIRTIO_MSI_NO_VECTOR);
    expect(q.pop()).toBeUndefined();
  });

  it('refuses a maximum size that is not a power of two up to 32768', () => {
    for (const bad of [0, 3, 100, 65536, 1.5]) expect(() => new VirtQueue(bad)).toThrow(VirtQueueError);
    expect(new VirtQueue(32768).maxSize).toBe(32768);
  });

  it('validate() names each misplaced area (§2.7 alignment, RAM bounds)', () => {
    const cases: [Partial<Record<'size' | 'descTable' | 'availRing' | 'usedRing', number>>, RegExp][] = [
      [{ size: 3 }, /queue size 3 is not a power of two/],
      [{ size: 512 }, /queue size 512 .* maximum 256/],
      [{ descTable: 0x1008 }, /descriptor table at 0x1008 is not 16-byte aligned/],
      [{ availRing: 0x2001 }, /available ring at 0x2001 is not 2-byte aligned/],
      [{ usedRing: 0x3002 }, /used ring at 0x3002 is not 4-byte aligned/],
      [{ descTable: (1 << 20) - 16 * 8 }, /descriptor table at 0xfff80 \(256 bytes for 16 entries\) is not inside guest RAM/],
      [{ availRing: (1 << 20) - 36 }, /available ring .* not inside guest RAM/],
      [{ usedRing: 2 ** 53 }, /used ring address .* not a valid guest address/],
    ];
    for (const [patch, msg] of cases) {
      const q = new VirtQueue(256, { mem, index: 2 });
      Object.assign(q, { size: 16, descTable: 0x1000, availRing: 0x2000, usedRing: 0x3000 }, patch);
      const e = thrown(() => q.validate());
      expect(e.message).toMatch(/^virtqueue 2: /);
      expect(e.message).toMatch(msg);
      expect(e.fatal).toBe(true);
      expect(e).toBeInstanceOf(KvmkitError);
    }
    expect(thrown(() => new VirtQueue(16).validate()).message).toMatch(/no guest memory/);
  });

  it('a ready queue re-validates when the layout changes, and fails fatally', () => {
    const q = new TestDriver(mem).queue();
    q.usedRing = 0x3001;
    expect(thrown(() => q.pop()).fatal).toBe(true);
  });

  it('setFeatures() turns on EVENT_IDX and INDIRECT_DESC', () => {
    const q = new VirtQueue(16);
    q.setFeatures(VIRTIO_F_VERSION_1 | VIRTIO_F_EVENT_IDX);
    expect([q.eventIdx, q.indirect]).toEqual([true, false]);
    q.setFeatures(VIRTIO_F_INDIRECT_DESC);
    expect([q.eventIdx, q.indirect]).toEqual([false, true]);
  });
});

describe('VirtQueue chains', () => {
  it('pops a NEXT chain: readable then writable buffers, and copies in and out', () => {
    const d = new TestDriver(mem);
    const q = d.queue();
    mem.write(0x10000, Uint8Array.from([1, 2, 3, 4]));
    mem.write(0x10100, Uint8Array.from([5, 6]));
    const head = d.addChain([{ addr: 0x10000, len: 4 }, { addr: 0x10100, len: 2 }, { addr: 0x20000, len: 3, write: true }, { addr: 0x20100, len: 5, write: true }]);
    expect(q.hasAvailable()).toBe(true);
    const c = q.pop()!;
    expect(c.head).toBe(head);
    expect(c.readable).toEqual([{ addr: 0x10000, len: 4, writable: false }, { addr: 0x10100, len: 2, writable: false }]);
    expect(c.writable.map((b) => b.addr)).toEqual([0x20000, 0x20100]);
    expect([c.readableLength, c.writableLength, c.descriptorCount, c.indirect]).toEqual([6, 8, 4, false]);

    const all = new Uint8Array(10);
    expect(c.readBytes(0, all)).toBe(6);
    expect([...all.subarray(0, 6)]).toEqual([1, 2, 3, 4, 5, 6]);
    const mid = new Uint8Array(2);
    expect(c.readBytes(3, mid)).toBe(2);
    expect([...mid]).toEqual([4, 5]);
    expect(c.readBytes(6, mid)).toBe(0);
    expect(c.readBytes(100, mid)).toBe(0);

    expect(c.writeBytes(2, Uint8Array.from([9, 8, 7, 6, 5, 4, 3, 2, 1]))).toBe(6);
    expect([...mem.read(0x20000, 3)]).toEqual([0, 0, 9]);
    expect([...mem.read(0x20100, 5)]).toEqual([8, 7, 6, 5, 4]);
    expect(c.writeBytes(8, Uint8Array.of(1))).toBe(0);
    expect(() => c.writeBytes(-1, Uint8Array.of(1))).toThrow(RangeError);

    expect(c.readableViews().map((v) => v.length)).toEqual([4, 2]);
    expect(c.writableViews(1, 4).map((v) => v.length)).toEqual([2, 2]);
    c.writableViews(0, 1)[0]![0] = 0xaa; // views are zero-copy
    expect(mem.readU8(0x20000)).toBe(0xaa);

    q.addUsed(c.head, 6);
    expect(d.takeUsed()).toEqual([{ id: head, len: 6 }]);
    expect(q.pop()).toBeUndefined();
    expect(q.hasAvailable()).toBe(false);
  });

  it('returns nothing while the queue is not ready', () => {
    const d = new TestDriver(mem);
    const q = d.queue();
    d.addChain([{ addr: 0x10000, len: 1, write: true }]);
    q.ready = false;
    expect(q.pop()).toBeUndefined();
    expect(q.hasAvailable()).toBe(false);
    q.ready = true;
    expect(q.pop()).toBeDefined();
  });

  it('skips zero-length descriptors, wherever they point', () => {
    const d = new TestDriver(mem);
    const q = d.queue();
    d.writeDesc(0, { addr: 0xffff_ffff_ffffn, len: 0, flags: VIRTQ_DESC_F_NEXT, next: 1 });
    d.writeDesc(1, { addr: 0x10000, len: 8, flags: VIRTQ_DESC_F_WRITE });
    d.putAvail(0);
    const c = q.pop()!;
    expect(c.buffers).toEqual([{ addr: 0x10000, len: 8, writable: true }]);
    expect(c.descriptorCount).toBe(2);
  });

  it('follows an indirect table (§2.7.5.3), also after direct descriptors (§2.7.5.3.2)', () => {
    const d = new TestDriver(mem);
    const q = d.queue({ indirect: true });
    const h = d.addIndirectChain([{ addr: 0x10000, len: 16 }, { addr: 0x11000, len: 512 }, { addr: 0x12000, len: 1, write: true }], 0x8000);
    const c = q.pop()!;
    expect(c.head).toBe(h);
    expect(c.indirect).toBe(true);
    expect(c.buffers.map((b) => [b.addr, b.len, b.writable])).toEqual([[0x10000, 16, false], [0x11000, 512, false], [0x12000, 1, true]]);

    const h2 = d.addIndirectChain([{ addr: 0x13000, len: 4, write: true }], 0x8800, [{ addr: 0x14000, len: 2 }]);
    const c2 = q.pop()!;
    expect(c2.head).toBe(h2);
    expect(c2.buffers.map((b) => b.addr)).toEqual([0x14000, 0x13000]);
    expect(c2.descriptorCount).toBe(2);
  });

  it('ignores the WRITE flag of the descriptor pointing at an indirect table (§2.7.5.3.2)', () => {
    const d = new TestDriver(mem);
    const q = d.queue({ indirect: true });
    d.writeDesc(0, { addr: 0x10000, len: 4 }, 0x8000);
    d.writeDesc(0, { addr: 0x8000, len: 16, flags: VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_WRITE });
    d.putAvail(0);
    expect(q.pop()!.readable).toHaveLength(1);
  });

  it('a chain may be as long as the queue, through an indirect table too', () => {
    const d = new TestDriver(mem);
    const q = d.queue({ indirect: true });
    const bufs = Array.from({ length: 16 }, (_, i) => ({ addr: 0x10000 + i * 16, len: 16, write: i >= 8 }));
    d.addIndirectChain(bufs, 0x8000);
    expect(q.pop()!.buffers).toHaveLength(16);
    d.addChain(bufs);
    expect(q.pop()!.buffers).toHaveLength(16);
  });

  const malformed: [string, (d: TestDriver) => void, RegExp][] = [
    ['a readable buffer after a writable one (§2.7.4.2)', (d) => d.addChain([{ addr: 0x10000, len: 4, write: true }, { addr: 0x10010, len: 4 }]), /device-readable descriptor follows a device-writable/],
    ['a NEXT loop', (d) => {
      d.writeDesc(0, { addr: 0x10000, len: 4, flags: VIRTQ_DESC_F_NEXT, next: 1 });
      d.writeDesc(1, { addr: 0x10000, len: 4, flags: VIRTQ_DESC_F_NEXT, next: 0 });
      d.putAvail(0);
    }, /loops|more than 16 descriptors/],
    ['a next index outside the table', (d) => {
      d.writeDesc(0, { addr: 0x10000, len: 4, flags: VIRTQ_DESC_F_NEXT, next: 16 });
      d.putAvail(0);
    }, /next index 16 is outside the descriptor table of 16/],
    ['a buffer outside RAM', (d) => d.addChain([{ addr: 0x100000, len: 1 }]), /buffer at 0x100000 \(\+1\) is not inside guest RAM/],
    ['a buffer across the end of RAM', (d) => d.addChain([{ addr: 0xff000, len: 0x1001, write: true }]), /not inside guest RAM/],
    ['a buffer address above 2^53', (d) => {
      d.writeDesc(0, { addr: 0xffff_ffff_ffff_0000n, len: 16 });
      d.putAvail(0);
    }, /buffer at 0xffffffffffff0000 \(\+16\) is not inside guest RAM/],
    ['INDIRECT without the feature', (d) => {
      d.writeDesc(0, { addr: 0x8000, len: 16, flags: VIRTQ_DESC_F_INDIRECT });
      d.putAvail(0);
    }, /VIRTIO_F_INDIRECT_DESC was not negotiated/],
  ];
  for (const [name, build, msg] of malformed) {
    it(`fails just the chain for ${name}, and goes on`, () => {
      const d = new TestDriver(mem);
      const q = d.queue();
      build(d);
      d.nextDesc = 8; // past the raw descriptors
      const good = d.addChain([{ addr: 0x30000, len: 8, write: true }]);
      const e = thrown(() => q.pop());
      expect(e.fatal).toBe(false);
      expect(e.head).toBe(0);
      expect(e.message).toMatch(/^virtqueue 0: descriptor chain at head 0: /);
      expect(e.message).toMatch(msg);
      expect(q.inFlight).toBe(1);
      q.addUsed(e.head!, 0);
      expect(q.pop()!.head).toBe(good);
      expect(d.takeUsed()).toEqual([{ id: 0, len: 0 }]);
    });
  }

  const badIndirect: [string, (d: TestDriver) => void, RegExp][] = [
    ['nested indirect', (d) => {
      d.writeDesc(0, { addr: 0x8800, len: 16, flags: VIRTQ_DESC_F_INDIRECT }, 0x8000);
      d.writeDesc(0, { addr: 0x8000, len: 16, flags: VIRTQ_DESC_F_INDIRECT });
    }, /indirect table contains an INDIRECT descriptor/],
    ['INDIRECT with NEXT', (d) => d.writeDesc(0, { addr: 0x8000, len: 16, flags: VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT, next: 1 }), /both INDIRECT and NEXT/],
    ['a table length not a multiple of 16', (d) => d.writeDesc(0, { addr: 0x8000, len: 24, flags: VIRTQ_DESC_F_INDIRECT }), /length 24 is not a non-zero multiple of 16/],
    ['an empty table', (d) => d.writeDesc(0, { addr: 0x8000, len: 0, flags: VIRTQ_DESC_F_INDIRECT }), /length 0/],
    ['a table outside RAM', (d) => d.writeDesc(0, { addr: 0xffff0, len: 32, flags: VIRTQ_DESC_F_INDIRECT }), /indirect table at 0xffff0 \(\+32\) is not inside guest RAM/],
    ['a loop inside the table', (d) => {
      d.writeDesc(0, { addr: 0x10000, len: 1, flags: VIRTQ_DESC_F_NEXT, next: 1 }, 0x8000);
      d.writeDesc(1, { addr: 0x10000, len: 1, flags: VIRTQ_DESC_F_NEXT, next: 0 }, 0x8000);
      d.writeDesc(0, { addr: 0x8000, len: 32, flags: VIRTQ_DESC_F_INDIRECT });
    }, /loops \(more than 2 descriptors/],
    ['a next index past the table', (d) => {
      d.writeDesc(0, { addr: 0x10000, len: 1, flags: VIRTQ_DESC_F_NEXT, next: 2 }, 0x8000);
      d.writeDesc(0, { addr: 0x8000, len: 32, flags: VIRTQ_DESC_F_INDIRECT });
    }, /next index 2 is outside the indirect table of 2/],
    ['more descriptors than the queue size', (d) => {
      for (let i = 0; i < 17; i++) d.writeDesc(i, { addr: 0x10000, len: 1, flags: i < 16 ? VIRTQ_DESC_F_NEXT : 0, next: i + 1 }, 0x8000);
      d.writeDesc(0, { addr: 0x8000, len: 17 * 16, flags: VIRTQ_DESC_F_INDIRECT });
    }, /more than 16 descriptors, the queue size/],
  ];
  for (const [name, build, msg] of badIndirect) {
    it(`fails the chain for ${name}`, () => {
      const d = new TestDriver(mem);
      const q = d.queue({ indirect: true });
      mem.write(0x8000, new Uint8Array(0x1000));
      build(d);
      d.putAvail(0);
      const e = thrown(() => q.pop());
      expect([e.fatal, e.head]).toEqual([false, 0]);
      expect(e.message).toMatch(msg);
    });
  }

  it('fails a chain of more than 2^32-1 bytes (§2.7.5.2)', () => {
    const big = allocRam(2 << 20);
    try {
      const d = new TestDriver(big, { size: 8192, desc: 0x1000, avail: 0x21000, used: 0x30000 });
      const q = d.queue({ maxSize: 8192, indirect: true });
      // 4097 overlapping 1 MiB buffers: each lies in RAM, together 2^32 + 2^20 bytes.
      const table = 0x80000;
      for (let i = 0; i < 4097; i++) d.writeDesc(i, { addr: 1 << 20, len: 1 << 20, flags: i < 4096 ? VIRTQ_DESC_F_NEXT : 0, next: i + 1 }, table);
      d.writeDesc(0, { addr: table, len: 4097 * 16, flags: VIRTQ_DESC_F_INDIRECT });
      d.putAvail(0);
      expect(thrown(() => q.pop()).message).toMatch(/more than 2\^32-1 bytes/);
    } finally {
      big.free();
    }
  });

  it('treats a head index outside the table as fatal until reset', () => {
    const d = new TestDriver(mem);
    const q = d.queue();
    d.putAvail(16);
    d.addChain([{ addr: 0x10000, len: 1 }]);
    const e = thrown(() => q.pop());
    expect(e.fatal).toBe(true);
    expect(e.head).toBeUndefined();
    expect(e.message).toMatch(/names descriptor 16, outside the table of 16; the device needs a reset/);
    expect(thrown(() => q.pop())).toBe(e);
    expect(q.error).toBe(e);
    expect(q.shouldNotify()).toBe(false);
    q.reset();
    expect(q.error).toBeUndefined();
  });

  it('treats avail.idx running more than size ahead as fatal (§2.7.13)', () => {
    const d = new TestDriver(mem);
    const q = d.queue();
    d.availIdx = 17;
    const e = thrown(() => q.pop());
    expect(e.fatal).toBe(true);
    expect(e.message).toMatch(/avail.idx 17 is 17 entries ahead of the 0 consumed, more than the queue size 16/);
    // A full ring (exactly size ahead) is fine.
    const d2 = new TestDriver(mem);
    const q2 = d2.queue();
    for (let i = 0; i < 16; i++) d2.addChain([{ addr: 0x10000, len: 1 }]);
    for (let i = 0; i < 16; i++) expect(q2.pop()).toBeDefined();
    expect(q2.pop()).toBeUndefined();
  });

  it('detects avail.idx going backwards once the known entries are consumed', () => {
    const d = new TestDriver(mem);
    const q = d.queue();
    d.addChain([{ addr: 0x10000, len: 1 }]);
    d.addChain([{ addr: 0x10000, len: 1 }]);
    q.pop();
    q.pop();
    d.availIdx = 1;
    expect(thrown(() => q.pop()).fatal).toBe(true);
  });

  it('drain() returns malformed chains with length 0 and yields the good ones', () => {
    const d = new TestDriver(mem);
    const q = d.queue();
    const a = d.addChain([{ addr: 0x10000, len: 4, write: true }]);
    const bad = d.addChain([{ addr: 0x200000, len: 4 }]);
    const b = d.addChain([{ addr: 0x10000, len: 4, write: true }]);
    const errors: VirtQueueError[] = [];
    const heads = [];
    for (const c of q.drain((e) => errors.push(e))) {
      heads.push(c.head);
      q.addUsed(c.head, 4);
    }
    expect(heads).toEqual([a, b]);
    expect(errors.map((e) => e.head)).toEqual([bad]);
    expect(d.takeUsed()).toEqual([{ id: a, len: 4 }, { id: bad, len: 0 }, { id: b, len: 4 }]);
  });

  it('addUsed checks its head, its length and that a chain is in flight', () => {
    const d = new TestDriver(mem);
    const q = d.queue();
    const h = d.addChain([{ addr: 0x10000, len: 1 }]);
    expect(thrown(() => q.addUsed(h, 0)).message).toMatch(/no chain in flight/);
    q.pop();
    expect(thrown(() => q.addUsed(16, 0)).message).toMatch(/head 16 is outside/);
    expect(() => q.addUsed(h, -1)).toThrow(RangeError);
    expect(() => q.addUsed(h, 2 ** 32)).toThrow(RangeError);
    q.addUsed(h, 0xffff_ffff);
    expect(d.takeUsed()).toEqual([{ id: h, len: 0xffff_ffff }]);
    expect(thrown(() => q.addUsed(h, 0)).message).toMatch(/returned twice/);
  });

  it('views split a buffer that crosses two RAM regions', () => {
    const two = GuestMemory.allocate([{ guestAddress: 0, size: 1 << 19 }, { guestAddress: 1 << 19, size: 1 << 19 }]);
    try {
      const d = new TestDriver(two);
      const q = d.queue();
      const edge = (1 << 19) - 8;
      d.addChain([{ addr: edge, len: 16 }, { addr: edge - 16, len: 32, write: true }]);
      two.write(edge, Uint8Array.from({ length: 16 }, (_, i) => i + 1));
      const c = q.pop()!;
      expect(c.readableViews().map((v) => v.length)).toEqual([8, 8]);
      const out = new Uint8Array(16);
      expect(c.readBytes(0, out)).toBe(16);
      expect([...out]).toEqual(Array.from({ length: 16 }, (_, i) => i + 1));
      expect(c.writableViews(20).map((v) => v.length)).toEqual([4, 8]);
      expect(c.writeBytes(0, new Uint8Array(32).fill(7))).toBe(32);
      expect([...two.read(edge - 16, 32)]).toEqual(new Array(32).fill(7));
    } finally {
      two.free();
    }
  });
});

describe('VirtQueue notifications', () => {
  it('without EVENT_IDX: notify unless VIRTQ_AVAIL_F_NO_INTERRUPT, and only for new entries (§2.7.7.2)', () => {
    const d = new TestDriver(mem);
    const q = d.queue();
    expect(q.shouldNotify()).toBe(false);
    d.addChain([{ addr: 0x10000, len: 1 }]);
    q.addUsed(q.pop()!.head, 0);
    expect(q.shouldNotify()).toBe(true);
    expect(q.shouldNotify()).toBe(false);
    d.availFlags = VIRTQ_AVAIL_F_NO_INTERRUPT;
    d.addChain([{ addr: 0x10000, len: 1 }]);
    q.addUsed(q.pop()!.head, 0);
    expect(q.shouldNotify()).toBe(false);
    d.usedEvent = 0; // ignored without EVENT_IDX
    d.availFlags = 0;
    d.addChain([{ addr: 0x10000, len: 1 }]);
    q.addUsed(q.pop()!.head, 0);
    expect(q.shouldNotify()).toBe(true);
  });

  it('with EVENT_IDX: notify when used_event falls in the entries just written (§2.7.7.2)', () => {
    const d = new TestDriver(mem);
    const q = d.queue({ eventIdx: true });
    d.availFlags = VIRTQ_AVAIL_F_NO_INTERRUPT; // must be ignored with EVENT_IDX
    const use = (n: number) => {
      for (let i = 0; i < n; i++) d.addChain([{ addr: 0x10000, len: 1 }]);
      for (let i = 0; i < n; i++) q.addUsed(q.pop()!.head, 1);
    };
    d.usedEvent = 0; // "notify after the first buffer"
    use(1); // used idx 0 -> 1: entry 0 written
    expect(q.shouldNotify()).toBe(true);
    d.usedEvent = 3;
    use(2); // entries 1, 2
    expect(q.shouldNotify()).toBe(false);
    use(2); // entries 3, 4: 3 is used_event
    expect(q.shouldNotify()).toBe(true);
    use(1);
    expect(q.shouldNotify()).toBe(false);
  });

  it('EVENT_IDX decisions match vring_need_event for every used_event and batch (exhaustive on a window)', () => {
    const d = new TestDriver(mem);
    const q = d.queue({ eventIdx: true });
    let old = 0;
    for (let batch = 1; batch <= 12; batch++) {
      for (let ev = 0; ev < 40; ev += 3) {
        d.usedEvent = ev;
        for (let i = 0; i < batch % 5; i++) d.addChain([{ addr: 0x10000, len: 1 }]);
        for (let i = 0; i < batch % 5; i++) q.addUsed(q.pop()!.head, 1);
        const now = q.nextUsed;
        expect(q.shouldNotify()).toBe(now !== old && vringNeedEvent(ev, now, old));
        old = now;
      }
    }
  });

  it('vringNeedEvent is the spec formula on 16-bit indices', () => {
    expect(vringNeedEvent(0, 1, 0)).toBe(true);
    expect(vringNeedEvent(1, 1, 0)).toBe(false);
    expect(vringNeedEvent(0xffff, 0, 0xfffe)).toBe(true); // wraps
    expect(vringNeedEvent(0xfffe, 2, 0xffff)).toBe(false);
    expect(vringNeedEvent(5, 5, 5)).toBe(false);
  });

  it('keeps avail_event at the next entry it will consume, and can suppress kicks (§2.7.10)', () => {
    const d = new TestDriver(mem);
    const q = d.queue({ eventIdx: true });
    expect(q.pop()).toBeUndefined();
    expect(d.availEvent).toBe(0);
    d.addChain([{ addr: 0x10000, len: 1 }]);
    d.addChain([{ addr: 0x10000, len: 1 }]);
    q.pop();
    expect(d.availEvent).toBe(1);
    q.disableNotifications();
    q.pop();
    expect(d.availEvent).toBe(1);
    d.addChain([{ addr: 0x10000, len: 1 }]);
    expect(q.enableNotifications()).toBe(true); // a chain came while kicks were off
    expect(d.availEvent).toBe(2);
    q.pop();
    expect(q.enableNotifications()).toBe(false);
    expect(d.availEvent).toBe(3);
    q.setAvailEvent(0x1234);
    expect(d.availEvent).toBe(0x1234);
    expect(d.usedFlags).toBe(0);
  });

  it('without EVENT_IDX, suppresses kicks with VIRTQ_USED_F_NO_NOTIFY', () => {
    const d = new TestDriver(mem);
    const q = d.queue();
    q.disableNotifications();
    expect(d.usedFlags).toBe(VIRTQ_USED_F_NO_NOTIFY);
    expect(q.enableNotifications()).toBe(false);
    expect(d.usedFlags).toBe(0);
    q.setAvailEvent(7); // no effect without EVENT_IDX
    expect(d.availEvent).toBe(0);
  });
});

describe('VirtQueue indices and reset', () => {
  it('wraps the 16-bit avail and used indices (70,000 requests through a 4-entry ring)', () => {
    const d = new TestDriver(mem, { size: 4, desc: 0x1000, avail: 0x2000, used: 0x3000 });
    const q = d.queue({ eventIdx: true });
    let notified = 0;
    const wrong: string[] = []; // plain checks: expect() per iteration would dominate the run time
    for (let i = 0; i < 70_000; i++) {
      d.usedEvent = i; // a driver that wants every interrupt
      const h = d.addChain([{ addr: 0x10000 + (i % 4) * 8, len: 8, write: true }]);
      const c = q.pop()!;
      if (c.head !== h) wrong.push(`request ${i}: head ${c.head}, expected ${h}`);
      q.addUsed(c.head, i % 9);
      if (q.shouldNotify()) notified++;
      const u = d.usedElem(i);
      if (d.usedIdx !== ((i + 1) & 0xffff) || u.id !== h || u.len !== i % 9) wrong.push(`request ${i}: used ${JSON.stringify(u)} at idx ${d.usedIdx}`);
    }
    expect(wrong).toEqual([]);
    expect(notified).toBe(70_000);
    expect(q.nextAvail).toBe(70_000 & 0xffff);
    expect(d.usedIdx).toBe(70_000 & 0xffff);
    expect(d.availEvent).toBe(70_000 & 0xffff);
  });

  it('reset() forgets the layout, the features and the indices', () => {
    const d = new TestDriver(mem);
    const q = d.queue({ eventIdx: true, indirect: true });
    q.msixVector = 3;
    d.addChain([{ addr: 0x10000, len: 1 }]);
    q.pop();
    q.reset();
    expect([q.ready, q.size, q.descTable, q.availRing, q.usedRing, q.msixVector]).toEqual([false, 256, 0, 0, 0, VIRTIO_MSI_NO_VECTOR]);
    expect([q.eventIdx, q.indirect, q.nextAvail, q.nextUsed, q.inFlight]).toEqual([false, false, 0, 0, 0]);
    expect(q.pop()).toBeUndefined();
    expect(thrown(() => q.addUsed(0, 0)).message).toMatch(/not ready/);
    // A fresh driver set-up works again.
    const d2 = new TestDriver(mem);
    Object.assign(q, { size: 16, descTable: LAYOUT.desc, availRing: LAYOUT.avail, usedRing: LAYOUT.used, ready: true });
    const h = d2.addChain([{ addr: 0x10000, len: 1 }]);
    expect(q.pop()!.head).toBe(h);
  });
});
