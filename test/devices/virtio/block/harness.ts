/**
 * A virtio-blk driver for the tests, on the shared test driver (../driver.ts): builds requests
 * (header, data, status) in guest RAM, kicks the device and waits for its answers.
 */
import { VirtioBlock } from '../../../../src/devices/virtio/block/VirtioBlock';
import type { VirtioBlockOptions } from '../../../../src/devices/virtio/block/VirtioBlockOptions';
import type { GuestMemory } from '../../../../src/memory/GuestMemory';
import { activate, type ActiveDevice, type Buf, type TestDriver } from '../driver';

/** Where request buffers start in guest RAM (the rings live below). */
export const BUFFERS = 0x100000;
/** Status bytes are pre-set to this so an untouched one is visible. */
export const UNTOUCHED = 0xa5;

export interface Answer {
  head: number;
  len: number;
  /** The status byte (UNTOUCHED if the device did not write it). */
  status: number;
}

export class BlkHarness {
  readonly driver: TestDriver;
  readonly active: ActiveDevice;
  private next = BUFFERS;
  private readonly statusAt = new Map<number, number>();

  constructor(
    readonly dev: VirtioBlock,
    readonly mem: GuestMemory,
    opts: { size?: number; features?: bigint } = {},
  ) {
    this.active = activate(dev, mem, { size: opts.size ?? 64, features: opts.features });
    this.driver = this.active.drivers[0]!;
  }

  get interrupt(): ActiveDevice['interrupt'] {
    return this.active.interrupt;
  }

  /** Bump-allocate `len` bytes of guest RAM (wrapping back to BUFFERS at `limit`). */
  alloc(len: number, align = 16): number {
    let a = Math.ceil(this.next / align) * align;
    if (a + len > this.mem.size) a = BUFFERS;
    this.next = a + Math.max(len, 1);
    return a;
  }

  /** Reuse guest RAM from the start of the buffer area. */
  rewind(): void {
    this.next = BUFFERS;
  }

  /** A 16-byte request header in guest RAM. */
  header(type: number, sector: bigint | number = 0): number {
    const a = this.alloc(16);
    this.mem.writeU32(a, type >>> 0);
    this.mem.writeU32(a + 4, 0);
    this.mem.writeU64(a + 8, BigInt.asUintN(64, BigInt(sector)));
    return a;
  }

  /** A status byte in guest RAM, pre-set to UNTOUCHED. */
  status(): number {
    const a = this.alloc(1, 1);
    this.mem.writeU8(a, UNTOUCHED);
    return a;
  }

  /** Discard / write-zeroes segments (struct virtio_blk_discard_write_zeroes, §5.2.6). */
  segments(segs: { sector: bigint | number; sectors: number; flags?: number }[]): number {
    const a = this.alloc(16 * segs.length);
    segs.forEach((s, i) => {
      this.mem.writeU64(a + 16 * i, BigInt.asUintN(64, BigInt(s.sector)));
      this.mem.writeU32(a + 16 * i + 8, s.sectors >>> 0);
      this.mem.writeU32(a + 16 * i + 12, (s.flags ?? 0) >>> 0);
    });
    return a;
  }

  /** Make a chain available; `statusAddr` is remembered to read the answer. */
  add(bufs: Buf[], statusAddr?: number): number {
    const head = this.driver.addChain(bufs);
    if (statusAddr !== undefined) this.statusAt.set(head, statusAddr);
    else this.statusAt.delete(head);
    return head;
  }

  /** IN of `len` bytes at `sector` into `parts` buffers (data lengths). Returns head and the data buffers. */
  read(sector: bigint | number, lens: number[]): { head: number; data: Buf[] } {
    const h = this.header(0, sector);
    const data = lens.map((l) => ({ addr: this.alloc(l), len: l, write: true }));
    const s = this.status();
    return { head: this.add([{ addr: h, len: 16 }, ...data, { addr: s, len: 1, write: true }], s), data };
  }

  /** OUT of `bytes` at `sector`, split into buffers of `split` bytes. */
  write(sector: bigint | number, bytes: Uint8Array, split = bytes.length || 1): number {
    const h = this.header(1, sector);
    const data: Buf[] = [];
    for (let off = 0; off < bytes.length; off += split) {
      const part = bytes.subarray(off, off + split);
      const a = this.alloc(part.length);
      this.mem.write(a, part);
      data.push({ addr: a, len: part.length });
    }
    const s = this.status();
    return this.add([{ addr: h, len: 16 }, ...data, { addr: s, len: 1, write: true }], s);
  }

  /** A request with only a header and a status byte (FLUSH, unknown types). */
  bare(type: number, sector: bigint | number = 0): number {
    const h = this.header(type, sector);
    const s = this.status();
    return this.add([{ addr: h, len: 16 }, { addr: s, len: 1, write: true }], s);
  }

  /** Kick the device and wait until every request it started has been answered. */
  async run(timeoutMs = 10_000): Promise<Answer[]> {
    this.dev.processQueue(0);
    return this.settle(timeoutMs);
  }

  /** Wait for in-flight requests, then collect the used ring. */
  async settle(timeoutMs = 10_000): Promise<Answer[]> {
    const deadline = Date.now() + timeoutMs;
    while (this.dev.inFlight > 0) {
      if (Date.now() > deadline) throw new Error(`${this.dev.inFlight} virtio-blk requests still in flight after ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 1));
    }
    await new Promise((r) => setImmediate(r)); // the batched interrupt check (a microtask) has run
    return this.driver.takeUsed().map(({ id, len }) => {
      const s = this.statusAt.get(id);
      return { head: id, len, status: s === undefined ? -1 : this.mem.readU8(s) };
    });
  }
}

/** Open a VirtioBlock and remember it for `closeAll`. */
export function makeDevices(): { open(o: VirtioBlockOptions): VirtioBlock; closeAll(): Promise<void> } {
  const devs: VirtioBlock[] = [];
  return {
    open(o) {
      const d = new VirtioBlock(o);
      devs.push(d);
      return d;
    },
    async closeAll() {
      await Promise.all(devs.splice(0).map((d) => d.close()));
    },
  };
}
