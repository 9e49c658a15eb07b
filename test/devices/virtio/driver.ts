/**
 * A test-side virtio "driver": lays out a split ring in guest memory the way a guest would
 * (descriptor table, available ring, used ring; virtio 1.2 §2.7) and reads back what the device
 * did. It writes raw fields too, so tests can build malformed rings.
 */
import { GuestMemory } from '../../../src/memory/GuestMemory';
import { VirtQueue } from '../../../src/devices/virtio/VirtQueue';
import type { VirtioDevice, VirtioInterrupt } from '../../../src/devices/virtio/VirtioDevice';
import {
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
} from '../../../src/devices/virtio/constants';

/** 1 MiB of guest RAM at guest-physical 0 (no /dev/kvm needed). */
export function allocRam(size = 1 << 20): GuestMemory {
  return GuestMemory.allocate([{ guestAddress: 0, size }]);
}

/** A raw descriptor (§2.7.5). `addr` may be a bigint to exceed 2^53. */
export interface RawDesc {
  addr: number | bigint;
  len: number;
  flags?: number;
  next?: number;
}

/** One buffer of a chain the driver builds. */
export interface Buf {
  addr: number;
  len: number;
  /** Device-writable. */
  write?: boolean;
}

export interface RingLayout {
  size: number;
  desc: number;
  avail: number;
  used: number;
}

/** Default layout: size 16 at 0x1000 / 0x2000 / 0x3000. */
export const LAYOUT: RingLayout = { size: 16, desc: 0x1000, avail: 0x2000, used: 0x3000 };

export class TestDriver {
  /** Next free descriptor slot (allocated round-robin); tests that write raw descriptors move it. */
  nextDesc = 0;
  private lastSeenUsed = 0;

  constructor(
    readonly mem: GuestMemory,
    readonly layout: RingLayout = LAYOUT,
  ) {
    const { size, desc, avail, used } = layout;
    mem.write(desc, new Uint8Array(16 * size));
    mem.write(avail, new Uint8Array(6 + 2 * size));
    mem.write(used, new Uint8Array(6 + 8 * size));
  }

  /** A VirtQueue configured with this layout, as the transport would (ready, features applied). */
  queue(opts: { maxSize?: number; eventIdx?: boolean; indirect?: boolean; index?: number } = {}): VirtQueue {
    const q = new VirtQueue(opts.maxSize ?? Math.max(this.layout.size, 256), { mem: this.mem, index: opts.index ?? 0 });
    q.size = this.layout.size;
    q.descTable = this.layout.desc;
    q.availRing = this.layout.avail;
    q.usedRing = this.layout.used;
    q.eventIdx = opts.eventIdx ?? false;
    q.indirect = opts.indirect ?? false;
    q.validate();
    q.ready = true;
    return q;
  }

  /** Write descriptor `i` of the table at `table` (default: the ring's descriptor table). */
  writeDesc(i: number, d: RawDesc, table = this.layout.desc): void {
    const a = table + 16 * i;
    this.mem.writeU64(a, BigInt(d.addr));
    this.mem.writeU32(a + 8, d.len >>> 0);
    this.mem.writeU16(a + 12, d.flags ?? 0);
    this.mem.writeU16(a + 14, d.next ?? 0);
  }

  /** Put `head` in the next available-ring slot and, unless `publish` is false, bump avail.idx. */
  putAvail(head: number, publish = true): void {
    const idx = this.availIdx;
    this.mem.writeU16(this.layout.avail + 4 + 2 * (idx % this.layout.size), head);
    if (publish) this.availIdx = (idx + 1) & 0xffff;
  }

  /** Lay out `bufs` as a NEXT-linked chain in free descriptors and make it available; returns the head. */
  addChain(bufs: Buf[], publish = true): number {
    const idx = bufs.map(() => this.allocDesc());
    bufs.forEach((b, i) => {
      const last = i === bufs.length - 1;
      this.writeDesc(idx[i]!, {
        addr: b.addr,
        len: b.len,
        flags: (b.write ? VIRTQ_DESC_F_WRITE : 0) | (last ? 0 : VIRTQ_DESC_F_NEXT),
        next: last ? 0 : idx[i + 1]!,
      });
    });
    this.putAvail(idx[0]!, publish);
    return idx[0]!;
  }

  /**
   * Lay out `bufs` in an indirect table at `tableAddr`, reached through `direct` ordinary
   * descriptors then one INDIRECT descriptor (§2.7.5.3.2); returns the head.
   */
  addIndirectChain(bufs: Buf[], tableAddr: number, direct: Buf[] = []): number {
    bufs.forEach((b, i) => {
      const last = i === bufs.length - 1;
      this.writeDesc(i, {
        addr: b.addr,
        len: b.len,
        flags: (b.write ? VIRTQ_DESC_F_WRITE : 0) | (last ? 0 : VIRTQ_DESC_F_NEXT),
        next: last ? 0 : i + 1,
      }, tableAddr);
    });
    const idx = [...direct, null].map(() => this.allocDesc());
    direct.forEach((b, i) => {
      this.writeDesc(idx[i]!, { addr: b.addr, len: b.len, flags: (b.write ? VIRTQ_DESC_F_WRITE : 0) | VIRTQ_DESC_F_NEXT, next: idx[i + 1]! });
    });
    this.writeDesc(idx[direct.length]!, { addr: tableAddr, len: 16 * bufs.length, flags: VIRTQ_DESC_F_INDIRECT });
    this.putAvail(idx[0]!);
    return idx[0]!;
  }

  private allocDesc(): number {
    const i = this.nextDesc;
    this.nextDesc = (this.nextDesc + 1) % this.layout.size;
    return i;
  }

  get availIdx(): number {
    return this.mem.readU16(this.layout.avail + 2);
  }
  set availIdx(v: number) {
    this.mem.writeU16(this.layout.avail + 2, v & 0xffff);
  }
  set availFlags(v: number) {
    this.mem.writeU16(this.layout.avail, v);
  }
  /** used_event, after the available ring (§2.7.6). */
  set usedEvent(v: number) {
    this.mem.writeU16(this.layout.avail + 4 + 2 * this.layout.size, v & 0xffff);
  }
  get usedIdx(): number {
    return this.mem.readU16(this.layout.used + 2);
  }
  get usedFlags(): number {
    return this.mem.readU16(this.layout.used);
  }
  /** avail_event, after the used ring (§2.7.8). */
  get availEvent(): number {
    return this.mem.readU16(this.layout.used + 4 + 8 * this.layout.size);
  }
  usedElem(i: number): { id: number; len: number } {
    const a = this.layout.used + 4 + 8 * (i % this.layout.size);
    return { id: this.mem.readU32(a), len: this.mem.readU32(a + 4) };
  }
  /** Used elements published since the last call. */
  takeUsed(): { id: number; len: number }[] {
    const out = [];
    const idx = this.usedIdx;
    while (this.lastSeenUsed !== idx) {
      out.push(this.usedElem(this.lastSeenUsed));
      this.lastSeenUsed = (this.lastSeenUsed + 1) & 0xffff;
    }
    return out;
  }
}

/** A VirtioInterrupt that records what it was asked to do. */
export class FakeInterrupt implements VirtioInterrupt {
  readonly used: number[] = [];
  configChanges = 0;
  readonly resets: Error[] = [];
  signalUsedQueue(index: number): void {
    this.used.push(index);
  }
  signalConfigChange(): void {
    this.configChanges++;
  }
  needsReset(cause: Error): void {
    this.resets.push(cause);
  }
}

/** A device activated on rings laid out by test drivers, as the transport would do it. */
export interface ActiveDevice {
  drivers: TestDriver[];
  queues: VirtQueue[];
  interrupt: FakeInterrupt;
}

/**
 * Lay out one ring per queue (queue `i` at 0x1000 + i * 0x4000, `size` entries), negotiate
 * `features` (default: everything the device offers) and call `device.activate()`.
 */
export function activate(
  device: VirtioDevice,
  mem: GuestMemory,
  opts: { size?: number; features?: bigint } = {},
): ActiveDevice {
  const features = opts.features ?? device.deviceFeatures();
  const drivers = device.queueMaxSizes.map((max, i) => {
    const base = 0x1000 + i * 0x4000;
    return new TestDriver(mem, { size: Math.min(opts.size ?? 16, max), desc: base, avail: base + 0x1000, used: base + 0x2000 });
  });
  const queues = drivers.map((d, i) => {
    const q = d.queue({ maxSize: device.queueMaxSizes[i]!, index: i });
    q.setFeatures(features);
    return q;
  });
  const interrupt = new FakeInterrupt();
  device.activate({ mem, queues, interrupt, features });
  return { drivers, queues, interrupt };
}
