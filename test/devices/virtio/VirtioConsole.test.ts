import { afterAll, describe, expect, it } from 'vitest';
import {
  CONSOLE_RECEIVEQ,
  CONSOLE_TRANSMITQ,
  VIRTIO_CONSOLE_F_EMERG_WRITE,
  VIRTIO_CONSOLE_F_MULTIPORT,
  VIRTIO_CONSOLE_F_SIZE,
  VirtioConsole,
} from '../../../src/devices/virtio/console/VirtioConsole';
import { VIRTIO_F_VERSION_1, VIRTIO_ID_CONSOLE, VIRTQUEUE_FEATURES } from '../../../src/devices/virtio/constants';
import { ConfigError } from '../../../src/errors';
import { activate, allocRam } from './driver';

const mem = allocRam();
afterAll(() => mem.free());

const text = (b: Uint8Array) => new TextDecoder().decode(b);
const put = (addr: number, s: string) => mem.write(addr, new TextEncoder().encode(s));
const get = (addr: number, n: number) => text(mem.read(addr, n));

/** A console whose output is collected. */
function console0(opts: ConstructorParameters<typeof VirtioConsole>[0] = {}) {
  const out: string[] = [];
  const dev = new VirtioConsole({ onOutput: (b) => out.push(text(b)), ...opts });
  return { dev, out };
}

describe('VirtioConsole', () => {
  it('is console device 3: receiveq + transmitq, EMERG_WRITE, SIZE only with cols/rows, never MULTIPORT', () => {
    const plain = new VirtioConsole();
    expect([plain.deviceKind, plain.deviceType, plain.queueMaxSizes]).toEqual(['virtio-console', VIRTIO_ID_CONSOLE, [256, 256]]);
    expect(plain.deviceFeatures()).toBe(VIRTQUEUE_FEATURES | VIRTIO_CONSOLE_F_EMERG_WRITE);
    expect(plain.deviceFeatures() & VIRTIO_F_VERSION_1).toBe(VIRTIO_F_VERSION_1);
    const sized = new VirtioConsole({ cols: 132, rows: 43 });
    expect(sized.deviceFeatures() & VIRTIO_CONSOLE_F_SIZE).toBe(VIRTIO_CONSOLE_F_SIZE);
    expect(sized.deviceFeatures() & VIRTIO_CONSOLE_F_MULTIPORT).toBe(0n);
    // struct virtio_console_config (§5.3.4): cols, rows, max_nr_ports, emerg_wr
    expect([...sized.configSpace()]).toEqual([132, 0, 43, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
    expect([...plain.configSpace().subarray(0, 4)]).toEqual([0, 0, 0, 0]);
  });

  it('refuses half a size or an out-of-range one with a ConfigError', () => {
    expect(() => new VirtioConsole({ cols: 80 })).toThrow(ConfigError);
    expect(() => new VirtioConsole({ cols: 80, rows: 0 })).toThrow(/rows must be an integer from 1 to 65535, got 0/);
    expect(() => new VirtioConsole({ cols: 70000, rows: 25 })).toThrow(/cols must be an integer from 1 to 65535/);
    expect(() => new VirtioConsole({ maxPendingInput: -1 })).toThrow(ConfigError);
  });

  it('delivers guest output from transmitq, one chunk per request, used length 0', () => {
    const { dev, out } = console0();
    const { drivers, interrupt } = activate(dev, mem);
    const tx = drivers[CONSOLE_TRANSMITQ]!;
    put(0x10000, 'hello ');
    put(0x10100, 'world');
    put(0x10200, '\r\n');
    const a = tx.addChain([{ addr: 0x10000, len: 6 }, { addr: 0x10100, len: 5 }]);
    const b = tx.addChain([{ addr: 0x10200, len: 2 }]);
    dev.processQueue(CONSOLE_TRANSMITQ);
    expect(out).toEqual(['hello world', '\r\n']);
    expect(tx.takeUsed()).toEqual([{ id: a, len: 0 }, { id: b, len: 0 }]);
    expect(interrupt.used).toEqual([CONSOLE_TRANSMITQ]);
  });

  it('gives output chunks that stay valid after the guest reuses its buffer', () => {
    const chunks: Uint8Array[] = [];
    const dev = new VirtioConsole({ onOutput: (b) => chunks.push(b) });
    const { drivers } = activate(dev, mem);
    put(0x10000, 'abc');
    drivers[CONSOLE_TRANSMITQ]!.addChain([{ addr: 0x10000, len: 3 }]);
    dev.processQueue(CONSOLE_TRANSMITQ);
    put(0x10000, 'xyz');
    expect(text(chunks[0]!)).toBe('abc');
  });

  it('queues host input until the guest posts receive buffers, then fills them in order', () => {
    const { dev } = console0();
    dev.input('ls -l\n');
    dev.input(Uint8Array.from([0xe2, 0x82, 0xac])); // "€"
    expect(dev.pendingInput).toBe(9);
    const { drivers, interrupt } = activate(dev, mem); // no buffers yet
    expect(dev.pendingInput).toBe(9);
    const rx = drivers[CONSOLE_RECEIVEQ]!;
    const a = rx.addChain([{ addr: 0x20000, len: 4, write: true }]);
    const b = rx.addChain([{ addr: 0x20100, len: 2, write: true }, { addr: 0x20200, len: 64, write: true }]);
    const c = rx.addChain([{ addr: 0x20300, len: 64, write: true }]);
    dev.processQueue(CONSOLE_RECEIVEQ);
    expect(rx.takeUsed()).toEqual([{ id: a, len: 4 }, { id: b, len: 5 }]);
    expect(get(0x20000, 4) + get(0x20100, 2) + get(0x20200, 3)).toBe('ls -l\n€');
    expect(dev.pendingInput).toBe(0);
    expect(interrupt.used).toEqual([CONSOLE_RECEIVEQ]);
    // The third buffer stays with the device for the next input.
    dev.input('q');
    expect(rx.takeUsed()).toEqual([{ id: c, len: 1 }]);
    expect(get(0x20300, 1)).toBe('q');
  });

  it('keeps what does not fit for the next receive buffers', () => {
    const { dev } = console0();
    const { drivers } = activate(dev, mem);
    const rx = drivers[CONSOLE_RECEIVEQ]!;
    rx.addChain([{ addr: 0x20000, len: 3, write: true }]);
    dev.input('abcdefgh');
    expect(dev.pendingInput).toBe(5);
    rx.addChain([{ addr: 0x20100, len: 16, write: true }]);
    dev.processQueue(CONSOLE_RECEIVEQ);
    expect(rx.takeUsed().map((u) => u.len)).toEqual([3, 5]);
    expect(get(0x20000, 3) + get(0x20100, 5)).toBe('abcdefgh');
  });

  it('drops input beyond maxPendingInput and counts it', () => {
    const { dev } = console0({ maxPendingInput: 4 });
    dev.input('abc');
    dev.input('def');
    expect([dev.pendingInput, dev.droppedInput]).toEqual([4, 2]);
  });

  it('outputs the low byte written to emerg_wr, even before activation (§5.3.5.1)', () => {
    const { dev, out } = console0();
    dev.writeConfig(8, Uint8Array.of(0x41, 0x42, 0, 0));
    dev.writeConfig(6, Uint8Array.of(0, 0, 0x43, 0));
    dev.writeConfig(9, Uint8Array.of(0x44));
    dev.writeConfig(0, Uint8Array.of(0x45, 0));
    expect(out).toEqual(['A', 'C']);
  });

  it('signals a configuration change on resize when SIZE was negotiated', () => {
    const dev = new VirtioConsole({ cols: 80, rows: 25 });
    const { interrupt } = activate(dev, mem);
    dev.resize(100, 30);
    expect(interrupt.configChanges).toBe(1);
    expect([...dev.configSpace().subarray(0, 4)]).toEqual([100, 0, 30, 0]);
    const noSize = new VirtioConsole({ cols: 80, rows: 25 });
    const other = activate(noSize, mem, { features: VIRTQUEUE_FEATURES });
    noSize.resize(90, 20);
    expect(other.interrupt.configChanges).toBe(0);
    expect(() => dev.resize(0, 1)).toThrow(ConfigError);
  });

  it('answers malformed requests with length 0 on both queues', () => {
    const { dev, out } = console0();
    const { drivers } = activate(dev, mem);
    const tx = drivers[CONSOLE_TRANSMITQ]!;
    const badTx = tx.addChain([{ addr: 0x200000, len: 4 }]);
    put(0x10000, 'ok');
    const goodTx = tx.addChain([{ addr: 0x10000, len: 2 }]);
    dev.processQueue(CONSOLE_TRANSMITQ);
    expect(tx.takeUsed()).toEqual([{ id: badTx, len: 0 }, { id: goodTx, len: 0 }]);
    expect(out).toEqual(['ok']);
    const rx = drivers[CONSOLE_RECEIVEQ]!;
    const badRx = rx.addChain([{ addr: 0x20000, len: 4, write: true }, { addr: 0x20100, len: 4 }]);
    const goodRx = rx.addChain([{ addr: 0x20000, len: 4, write: true }]);
    dev.input('hi');
    expect(rx.takeUsed()).toEqual([{ id: badRx, len: 0 }, { id: goodRx, len: 2 }]);
  });

  it('keeps pending input across a reset and delivers it to the next driver', () => {
    const { dev } = console0();
    activate(dev, mem);
    dev.reset();
    dev.input('after reset');
    const { drivers } = activate(dev, mem);
    drivers[CONSOLE_RECEIVEQ]!.addChain([{ addr: 0x20000, len: 64, write: true }]);
    dev.processQueue(CONSOLE_RECEIVEQ);
    expect(get(0x20000, 11)).toBe('after reset');
  });

  it('reports a broken receiveq met by input() through needsReset, keeping the input', () => {
    const { dev } = console0();
    const { drivers, interrupt } = activate(dev, mem);
    drivers[CONSOLE_RECEIVEQ]!.availIdx = 40;
    dev.input('x');
    expect(interrupt.resets).toHaveLength(1);
    expect(interrupt.resets[0]!.message).toMatch(/virtqueue 0: avail.idx 40/);
    expect(dev.pendingInput).toBe(1);
  });
});
