import { afterAll, describe, expect, it } from 'vitest';
import { RNG_MAX_REQUEST_BYTES, VirtioRng } from '../../../src/devices/virtio/rng/VirtioRng';
import { VirtioDevice } from '../../../src/devices/virtio/VirtioDevice';
import { VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_VERSION_1, VIRTIO_ID_RNG } from '../../../src/devices/virtio/constants';
import { activate, allocRam } from './driver';

const mem = allocRam();
afterAll(() => mem.free());

/** Fill guest RAM with a marker so untouched bytes can be recognised. */
function paint(addr: number, len: number, value: number): void {
  mem.write(addr, new Uint8Array(len).fill(value));
}
function allEqual(addr: number, len: number, value: number): boolean {
  return mem.read(addr, len).every((b) => b === value);
}

describe('VirtioRng', () => {
  it('is entropy device 4 with one queue of 256, no config space, the ring features', () => {
    const rng = new VirtioRng();
    expect(rng).toBeInstanceOf(VirtioDevice);
    expect([rng.deviceKind, rng.deviceType, rng.queueMaxSizes]).toEqual(['virtio-rng', VIRTIO_ID_RNG, [256]]);
    expect(rng.deviceFeatures()).toBe(VIRTIO_F_VERSION_1 | VIRTIO_F_INDIRECT_DESC | VIRTIO_F_EVENT_IDX);
    expect(rng.configSpace()).toHaveLength(0);
    expect(new VirtioRng({ id: 'rng0' }).options.id).toBe('rng0');
  });

  it('fills exactly the writable bytes of each request and reports their length', () => {
    const rng = new VirtioRng();
    const { drivers: [d], interrupt } = activate(rng, mem);
    paint(0x10000, 0x4000, 0xa5); // readable buffer, writable buffers and the bytes around them
    const head = d!.addChain([{ addr: 0x10100, len: 32 }, { addr: 0x11000, len: 100, write: true }, { addr: 0x12003, len: 4096 - 3, write: true }]);
    rng.processQueue(0);
    expect(d!.takeUsed()).toEqual([{ id: head, len: 100 + 4093 }]);
    expect(interrupt.used).toEqual([0]);
    expect(allEqual(0x10100, 32, 0xa5)).toBe(true); // device-readable: never written (§2.7.5.1)
    expect(allEqual(0x10000, 0x100, 0xa5) && allEqual(0x10120, 0x11000 - 0x10120, 0xa5)).toBe(true);
    expect(allEqual(0x11064, 0x12003 - 0x11064, 0xa5)).toBe(true);
    expect(allEqual(0x13000, 0x1000, 0xa5)).toBe(true);
    for (const [a, n] of [[0x11000, 100], [0x12003, 4093]] as const) {
      const bytes = mem.read(a, n);
      expect(bytes.filter((b) => b === 0xa5).length).toBeLessThan(n / 16); // random, not the paint
      expect(new Set(bytes).size).toBeGreaterThan(Math.min(n, 256) / 3);
    }
  });

  it('serves every chain of a doorbell with one interrupt, through indirect tables too', () => {
    const rng = new VirtioRng();
    const { drivers: [d], interrupt } = activate(rng, mem);
    const a = d!.addChain([{ addr: 0x10000, len: 64, write: true }]);
    const b = d!.addIndirectChain([{ addr: 0x10100, len: 16, write: true }, { addr: 0x10200, len: 16, write: true }], 0x9000);
    const c = d!.addChain([{ addr: 0x10300, len: 1, write: true }]);
    rng.processQueue(0);
    expect(d!.takeUsed()).toEqual([{ id: a, len: 64 }, { id: b, len: 32 }, { id: c, len: 1 }]);
    expect(interrupt.used).toEqual([0]);
  });

  it('answers a malformed chain with length 0 and serves the rest', () => {
    const rng = new VirtioRng();
    const { drivers: [d] } = activate(rng, mem);
    const bad = d!.addChain([{ addr: 0xfff00, len: 0x200, write: true }]); // runs past RAM
    const good = d!.addChain([{ addr: 0x10000, len: 8, write: true }]);
    rng.processQueue(0);
    expect(d!.takeUsed()).toEqual([{ id: bad, len: 0 }, { id: good, len: 8 }]);
  });

  it('answers a request with only readable buffers with length 0', () => {
    const rng = new VirtioRng();
    const { drivers: [d] } = activate(rng, mem);
    const h = d!.addChain([{ addr: 0x10000, len: 8 }]);
    rng.processQueue(0);
    expect(d!.takeUsed()).toEqual([{ id: h, len: 0 }]);
  });

  it(`serves at most ${RNG_MAX_REQUEST_BYTES} bytes per request (§5.4.6.2 allows less than the buffer)`, () => {
    const big = allocRam(4 << 20);
    try {
      const rng = new VirtioRng();
      const { drivers: [d] } = activate(rng, big);
      big.write(0x100000, new Uint8Array(0x180000).fill(0xa5));
      const h = d!.addChain([{ addr: 0x100000, len: 0x180000, write: true }]);
      rng.processQueue(0);
      expect(d!.takeUsed()).toEqual([{ id: h, len: RNG_MAX_REQUEST_BYTES }]);
      expect(big.read(0x100000 + RNG_MAX_REQUEST_BYTES, 0x80000).every((b) => b === 0xa5)).toBe(true);
    } finally {
      big.free();
    }
  });

  it('honours EVENT_IDX: no interrupt before the driver asks for one', () => {
    const rng = new VirtioRng();
    const { drivers: [d], interrupt } = activate(rng, mem);
    d!.usedEvent = 2;
    d!.addChain([{ addr: 0x10000, len: 8, write: true }]);
    rng.processQueue(0);
    expect(interrupt.used).toEqual([]);
    d!.addChain([{ addr: 0x10000, len: 8, write: true }]);
    d!.addChain([{ addr: 0x10000, len: 8, write: true }]);
    rng.processQueue(0); // used idx 1 -> 3 writes entry 2
    expect(interrupt.used).toEqual([0]);
  });

  it('does nothing before activation, after reset, or for a queue it does not have', () => {
    const rng = new VirtioRng();
    rng.processQueue(0);
    const { drivers: [d], interrupt } = activate(rng, mem);
    d!.addChain([{ addr: 0x10000, len: 8, write: true }]);
    rng.processQueue(1);
    rng.reset();
    rng.processQueue(0);
    expect(d!.usedIdx).toBe(0);
    expect(interrupt.used).toEqual([]);
  });

  it('lets a fatal ring error out of processQueue for the transport (DEVICE_NEEDS_RESET)', () => {
    const rng = new VirtioRng();
    const { drivers: [d] } = activate(rng, mem);
    d!.availIdx = 100;
    expect(() => rng.processQueue(0)).toThrow(/more than the queue size 16/);
  });
});
