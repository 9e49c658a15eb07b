/**
 * Property tests: random and malformed split rings (virtio 1.2 §2.7). Whatever the guest wrote,
 * `pop()` returns a chain whose buffers all lie in RAM and that has at most `size` descriptors, or
 * throws a VirtQueueError; it never throws anything else, never walks more descriptors than the
 * checks allow, and never touches memory outside RAM nor writes outside the used ring.
 */
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import type { GuestMemory } from '../../../src/memory/GuestMemory';
import { VirtQueue, VirtQueueError } from '../../../src/devices/virtio/VirtQueue';
import type { DescriptorChain } from '../../../src/devices/virtio/DescriptorChain';
import { VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE } from '../../../src/devices/virtio/constants';
import { allocRam, type Buf, type RawDesc, TestDriver } from './driver';

const RAM = 1 << 20;
const DESC = 0x1000; // up to 256 entries: 4 KiB
const AVAIL = 0x2000;
const USED = 0x3000;
const TABLES = [0x4000, 0x4400, 0x4800, 0x4c00]; // indirect tables, up to 64 entries each
const SCRATCH = [0x1000, 0x5000] as const; // everything above, zeroed before each run

const ram = allocRam(RAM);
afterAll(() => ram.free());

// ---- a GuestMemory that records every access ----

interface Access {
  op: string;
  addr: number;
  len: number;
  write: boolean;
}
const SPIED: Record<string, (args: unknown[]) => [number, boolean]> = {
  read: (a) => [a[1] as number, false],
  slice: (a) => [a[1] as number, false], // views may be written through: checked by the used-ring rule below only for pops
  write: (a) => [(a[1] as Uint8Array).length, true],
  readU8: () => [1, false],
  readU16: () => [2, false],
  readU32: () => [4, false],
  readU64: () => [8, false],
  writeU8: () => [1, true],
  writeU16: () => [2, true],
  writeU32: () => [4, true],
  writeU64: () => [8, true],
};

function spy(mem: GuestMemory): { mem: GuestMemory; log: Access[] } {
  const log: Access[] = [];
  const proxy = new Proxy(mem, {
    get(target, key) {
      const v: unknown = Reflect.get(target, key, target);
      if (typeof v !== 'function') return v;
      const f = v as (...args: unknown[]) => unknown;
      const spec = typeof key === 'string' ? SPIED[key] : undefined;
      if (!spec) return f.bind(target);
      return (...args: unknown[]) => {
        const [len, write] = spec(args);
        log.push({ op: String(key), addr: args[0] as number, len, write });
        return f.apply(target, args);
      };
    },
  });
  return { mem: proxy, log };
}

// ---- an independent model of what pop() must decide (BigInt arithmetic, recursion) ----

type Outcome = { kind: 'chain'; head: number; buffers: [number, number, boolean][] } | { kind: 'bad'; head: number } | { kind: 'fatal' };

function readRaw(addr: number) {
  return {
    addr: ram.readU64(addr),
    len: ram.readU32(addr + 8),
    flags: ram.readU16(addr + 12),
    next: ram.readU16(addr + 14),
  };
}

function modelChain(size: number, indirectOk: boolean, head: number): Outcome {
  const bufs: [number, number, boolean][] = [];
  let count = 0;
  let total = 0n;
  let sawWrite = false;
  // Walk one table; returns false when the chain is malformed.
  const walkTable = (table: number, entries: number, start: number, nested: boolean): boolean => {
    let idx = start;
    for (let steps = 1; ; steps++) {
      if (idx >= entries || steps > entries) return false;
      const d = readRaw(table + 16 * idx);
      if (d.flags & VIRTQ_DESC_F_INDIRECT) {
        if (nested || !indirectOk || d.flags & VIRTQ_DESC_F_NEXT) return false;
        if (d.len === 0 || d.len % 16 !== 0 || d.addr + BigInt(d.len) > BigInt(RAM)) return false;
        return walkTable(Number(d.addr), d.len / 16, 0, true);
      }
      if (++count > size) return false;
      const w = (d.flags & VIRTQ_DESC_F_WRITE) !== 0;
      if (!w && sawWrite) return false;
      sawWrite ||= w;
      if (d.len > 0) {
        if (d.addr + BigInt(d.len) > BigInt(RAM)) return false;
        total += BigInt(d.len);
        if (total >= 2n ** 32n) return false;
        bufs.push([Number(d.addr), d.len, w]);
      }
      if (!(d.flags & VIRTQ_DESC_F_NEXT)) return true;
      idx = d.next;
    }
  };
  return walkTable(DESC, size, head, false) ? { kind: 'chain', head, buffers: bufs } : { kind: 'bad', head };
}

/**
 * Expected outcome of the `i`-th pop (from 0), or undefined when the ring is empty by then. Asked
 * just before each pop, because returning chains writes the used ring, which a random indirect
 * pointer may alias.
 */
function model(size: number, indirectOk: boolean, i: number): Outcome | undefined {
  const pending = ram.readU16(AVAIL + 2);
  if (pending > size) return { kind: 'fatal' };
  if (i >= pending) return undefined;
  const head = ram.readU16(AVAIL + 4 + 2 * (i % size));
  if (head >= size) return { kind: 'fatal' };
  return modelChain(size, indirectOk, head);
}

// ---- running a ring ----

interface Ring {
  size: number;
  eventIdx: boolean;
  indirect: boolean;
}

function outcomeOf(c: DescriptorChain): Outcome {
  return { kind: 'chain', head: c.head, buffers: c.buffers.map((b) => [b.addr, b.len, b.writable]) };
}

/** A failed invariant (plain checks: `expect` is too slow for the inner loops of 20,000 rings). */
function check(ok: boolean, what: string): void {
  if (!ok) throw new Error(`invariant broken: ${what}`);
}

function same(a: Outcome | undefined, b: Outcome | undefined): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** Pop until empty or fatal, checking the invariants and the model; returns what happened. */
function runRing(r: Ring): Outcome[] {
  const { mem, log } = spy(ram);
  const q = new VirtQueue(256, { mem });
  Object.assign(q, { size: r.size, descTable: DESC, availRing: AVAIL, usedRing: USED, eventIdx: r.eventIdx, indirect: r.indirect });
  q.validate();
  q.ready = true;
  const usedEnd = USED + 6 + 8 * r.size;
  const seen: Outcome[] = [];
  for (let pops = 0; ; pops++) {
    // pending ≤ size, so at most size chains come out before undefined (or a fatal error).
    check(pops <= r.size + 1, `${pops} pops from a queue of ${r.size}`);
    log.length = 0;
    const expected = model(r.size, r.indirect, pops);
    let chain: DescriptorChain | undefined;
    let outcome: Outcome | undefined;
    try {
      chain = q.pop();
      outcome = chain && outcomeOf(chain);
    } catch (e) {
      if (!(e instanceof VirtQueueError)) throw e;
      outcome = e.fatal ? { kind: 'fatal' } : { kind: 'bad', head: e.head! };
    }
    for (const a of log) {
      check(Number.isSafeInteger(a.addr) && a.addr >= 0 && a.addr + a.len <= RAM, `${a.op} 0x${a.addr.toString(16)}+${a.len} is outside RAM`);
      check(!a.write || (a.addr >= USED && a.addr + a.len <= usedEnd), `pop() wrote 0x${a.addr.toString(16)}, outside the used ring`);
    }
    // Descriptor reads are bounded: ≤ size in the main table, ≤ size + 1 in an indirect one.
    check(log.filter((a) => a.len === 16).length <= 2 * r.size + 1, 'too many descriptor reads');
    check(same(outcome, expected), `pop ${pops}: got ${JSON.stringify(outcome)}, model says ${JSON.stringify(expected)}`);
    if (!outcome) break;
    seen.push(outcome);
    if (outcome.kind === 'fatal') {
      check(throwsVirtQueueError(() => q.pop()), 'a broken queue must stay broken');
      break;
    }
    if (outcome.kind === 'bad') {
      check(outcome.head >= 0 && outcome.head < r.size, 'error head inside the table');
      q.addUsed(outcome.head, 0);
      continue;
    }
    const c = chain!;
    check(c.head < r.size && c.descriptorCount <= r.size && c.buffers.length <= r.size, 'chain within the queue size');
    let total = 0;
    let sawWritable = false;
    for (const b of c.buffers) {
      check(Number.isSafeInteger(b.addr) && b.addr >= 0 && b.len > 0 && b.addr + b.len <= RAM, 'buffer inside RAM');
      check(b.writable || !sawWritable, 'readable after writable');
      sawWritable ||= b.writable;
      total += b.len;
    }
    check(total < 2 ** 32, 'total length below 2^32');
    const views = [...c.readableViews(), ...c.writableViews()];
    check(views.reduce((n, v) => n + v.length, 0) === total, 'views cover the buffers');
    q.addUsed(c.head, 0);
  }
  return seen;
}

function throwsVirtQueueError(fn: () => unknown): boolean {
  try {
    fn();
    return false;
  } catch (e) {
    return e instanceof VirtQueueError;
  }
}

function clearScratch(): void {
  ram.write(SCRATCH[0], new Uint8Array(SCRATCH[1] - SCRATCH[0]));
}

// ---- generators ----

const u16 = fc.integer({ min: 0, max: 0xffff });
const u32 = fc.integer({ min: 0, max: 0xffff_ffff });
const addrArb: fc.Arbitrary<number | bigint> = fc.oneof(
  { weight: 6, arbitrary: fc.integer({ min: 0, max: RAM - 1 }) },
  { weight: 2, arbitrary: fc.integer({ min: RAM - 80, max: RAM + 80 }) },
  { weight: 3, arbitrary: fc.constantFrom(...TABLES) },
  { weight: 1, arbitrary: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }) },
  { weight: 1, arbitrary: fc.constantFrom(2n ** 53n - 1n, 2n ** 53n, 2n ** 64n - 16n, 2n ** 32n, 2n ** 52n) },
);
const lenArb = fc.oneof(
  { weight: 5, arbitrary: fc.integer({ min: 0, max: 64 }) },
  { weight: 3, arbitrary: fc.integer({ min: 0, max: 64 }).map((k) => 16 * k) },
  { weight: 2, arbitrary: fc.constantFrom(0, 24, 0xffff_ffff, 0x8000_0000, RAM, RAM + 1, 0xffff_fff0) },
  { weight: 1, arbitrary: u32 },
);
const flagsArb = fc.oneof({ weight: 8, arbitrary: fc.integer({ min: 0, max: 7 }) }, { weight: 1, arbitrary: u16 });

function descArb(size: number): fc.Arbitrary<RawDesc> {
  return fc.record({
    addr: addrArb,
    len: lenArb,
    flags: flagsArb,
    next: fc.oneof({ weight: 8, arbitrary: fc.integer({ min: 0, max: size + 1 }) }, { weight: 1, arbitrary: u16 }),
  });
}

const sizeArb = fc.oneof(
  { weight: 6, arbitrary: fc.integer({ min: 0, max: 5 }).map((k) => 1 << k) },
  { weight: 2, arbitrary: fc.integer({ min: 6, max: 8 }).map((k) => 1 << k) },
);

/** A ring of random descriptor contents, random heads and a random avail.idx. */
const garbageRing = sizeArb.chain((size) =>
  fc.record({
    size: fc.constant(size),
    eventIdx: fc.boolean(),
    indirect: fc.boolean(),
    descs: fc.array(descArb(size), { minLength: size, maxLength: size }),
    tables: fc.array(fc.array(descArb(16), { maxLength: 64 }), { minLength: TABLES.length, maxLength: TABLES.length }),
    heads: fc.array(fc.oneof({ weight: 9, arbitrary: fc.integer({ min: 0, max: size - 1 }) }, { weight: 1, arbitrary: u16 }), { minLength: size, maxLength: size }),
    availIdx: fc.oneof({ weight: 9, arbitrary: fc.integer({ min: 0, max: size }) }, { weight: 1, arbitrary: u16 }),
  }),
);

/** One buffer of a well-formed chain. */
const bufArb = fc.record({ addr: fc.integer({ min: 0x10000, max: RAM - 4096 }), len: fc.integer({ min: 0, max: 4096 }) });
interface GoodChain {
  readable: { addr: number; len: number }[];
  writable: { addr: number; len: number }[];
  indirect: boolean;
  direct: number; // descriptors before the indirect pointer
}
const chainArb: fc.Arbitrary<GoodChain> = fc.record({
  readable: fc.array(bufArb, { maxLength: 4 }),
  writable: fc.array(bufArb, { maxLength: 4 }),
  indirect: fc.boolean(),
  direct: fc.integer({ min: 0, max: 2 }),
});

type Mutation =
  | { kind: 'desc'; table: number; index: number; field: 'addr' | 'len' | 'flags' | 'next'; value: number | bigint }
  | { kind: 'availIdx'; value: number }
  | { kind: 'head'; slot: number; value: number };
const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant('desc' as const),
      table: fc.integer({ min: -1, max: TABLES.length - 1 }),
      index: fc.integer({ min: 0, max: 11 }),
      field: fc.constantFrom('addr' as const, 'len' as const, 'flags' as const, 'next' as const),
      value: fc.oneof(addrArb, lenArb, flagsArb, u16),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('availIdx' as const), value: u16 }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('head' as const), slot: fc.integer({ min: 0, max: 255 }), value: u16 }) },
);

/** Well-formed chains laid out by the test driver, then damaged by a few mutations (maybe none). */
const mutatedRing = fc.record({
  size: sizeArb.filter((s) => s >= 4),
  eventIdx: fc.boolean(),
  chains: fc.array(chainArb, { minLength: 1, maxLength: 12 }),
  mutations: fc.oneof({ weight: 1, arbitrary: fc.constant([] as Mutation[]) }, { weight: 3, arbitrary: fc.array(mutationArb, { minLength: 1, maxLength: 4 }) }),
});

function layOutGood(size: number, chains: GoodChain[]): number {
  const d = new TestDriver(ram, { size, desc: DESC, avail: AVAIL, used: USED });
  let usedDescs = 0;
  let tables = 0;
  let laid = 0;
  for (const c of chains) {
    const bufs: Buf[] = [...c.readable, ...c.writable.map((b) => ({ ...b, write: true }))];
    if (bufs.length === 0) bufs.push({ addr: 0x10000, len: 1 });
    if (bufs.length > size) bufs.length = size; // a chain is at most the queue size (§2.7.5.3.1)
    const indirect = c.indirect && tables < TABLES.length;
    const need = indirect ? c.direct + 1 : bufs.length;
    if (usedDescs + need > size || laid === size) break;
    usedDescs += need;
    if (indirect) {
      const direct = bufs.splice(0, Math.min(c.direct, bufs.length - 1));
      if (bufs.length === 0) bufs.push({ addr: 0x10000, len: 1, write: true });
      d.addIndirectChain(bufs, TABLES[tables++]!, direct);
    } else {
      d.addChain(bufs);
    }
    laid++;
  }
  return laid;
}

function applyMutation(size: number, m: Mutation): void {
  if (m.kind === 'availIdx') return ram.writeU16(AVAIL + 2, m.value);
  if (m.kind === 'head') return ram.writeU16(AVAIL + 4 + 2 * (m.slot % size), m.value);
  const base = m.table < 0 ? DESC + 16 * (m.index % size) : TABLES[m.table]! + 16 * m.index;
  if (m.field === 'addr') ram.writeU64(base, BigInt(m.value));
  else if (m.field === 'len') ram.writeU32(base + 8, Number(BigInt.asUintN(32, BigInt(m.value))));
  else ram.writeU16(base + (m.field === 'flags' ? 12 : 14), Number(BigInt.asUintN(16, BigInt(m.value))));
}

describe('VirtQueue.pop() on random and malformed rings (fast-check)', () => {
  it('random descriptor contents, heads and avail.idx: a checked chain or a VirtQueueError (10,000 rings)', () => {
    let chains = 0;
    let bad = 0;
    let fatal = 0;
    fc.assert(
      fc.property(garbageRing, (r) => {
        clearScratch();
        const d = new TestDriver(ram, { size: r.size, desc: DESC, avail: AVAIL, used: USED });
        r.descs.forEach((x, i) => d.writeDesc(i, x));
        r.tables.forEach((t, k) => t.forEach((x, i) => d.writeDesc(i, x, TABLES[k])));
        r.heads.forEach((h, i) => ram.writeU16(AVAIL + 4 + 2 * i, h));
        ram.writeU16(AVAIL + 2, r.availIdx);
        for (const o of runRing(r)) {
          if (o.kind === 'chain') chains++;
          else if (o.kind === 'bad') bad++;
          else fatal++;
        }
      }),
      { numRuns: 10_000 },
    );
    if (process.env.KVMKIT_TEST_STATS) console.log('random rings', { chains, bad, fatal });
    // The generator must reach every outcome, or the property proves little.
    expect(chains).toBeGreaterThan(1000);
    expect(bad).toBeGreaterThan(1000);
    expect(fatal).toBeGreaterThan(100);
  });

  it('well-formed rings pop intact; damaged ones fail only what was damaged (10,000 rings)', () => {
    const kinds = { clean: 0, chain: 0, bad: 0, fatal: 0 };
    fc.assert(
      fc.property(mutatedRing, (r) => {
        clearScratch();
        const laid = layOutGood(r.size, r.chains);
        for (const m of r.mutations) applyMutation(r.size, m);
        const seen = runRing({ size: r.size, eventIdx: r.eventIdx, indirect: true });
        if (r.mutations.length === 0) {
          kinds.clean++;
          check(seen.length === laid && seen.every((o) => o.kind === 'chain'), 'an undamaged ring pops every chain intact');
        } else {
          for (const o of seen) kinds[o.kind]++;
        }
      }),
      { numRuns: 10_000 },
    );
    if (process.env.KVMKIT_TEST_STATS) console.log('mutated rings', kinds);
    expect(kinds.clean).toBeGreaterThan(1000);
    expect(kinds.bad).toBeGreaterThan(500);
    expect(kinds.fatal).toBeGreaterThan(500);
  });
});
