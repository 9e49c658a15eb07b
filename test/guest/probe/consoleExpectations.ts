/**
 * What the probe's `probe.test=console` (virtio_console.c) must report, and what the host must
 * receive on the console, shared by the QEMU cross-check (virtio-console-qemu.test.ts) and
 * kvmkit's end-to-end test (test/vm/virtio-console.e2e.test.ts).
 */
import { expect } from 'vitest';
import { checkTransport, one, type BlkRunConfig, type ProbeRun } from './blkExpectations';
import { fnv1a64 } from './parse';

/** Bytes of the pattern the probe writes after "hvc0 hello". */
export const CONSOLE_PATTERN_BYTES = 65536;
const EMERG = 'hvc0 emerg\r\n';
const HELLO = 'hvc0 hello\r\n';
const HEAD = EMERG + HELLO;
const READY = 'hvc0 ready\r\n';
const BYE = 'hvc0 bye\r\n';

/** How the run was set up. */
export interface ConsoleRun {
  transport: Pick<BlkRunConfig, 'cfg' | 'barsByProbe'>;
  /** Host input typed after "hvc0 ready" (probe.console.echo = its length), if any. */
  input?: Uint8Array;
  /** probe.console.rxbuf (default 256). */
  rxbuf?: number;
}

/**
 * Check the probe's lines and the console byte stream the host received. Both devices must give
 * the same: EMERG_WRITE characters, one transmit request per buffer chain with used length 0
 * (§2.7.8: nothing written to device-readable buffers), host input split over the receive
 * buffers (never more than a buffer holds) and echoed back, MULTIPORT not negotiated.
 */
export function checkConsole(r: ProbeRun, stream: Uint8Array, c: ConsoleRun): void {
  expect(r.probe.find((p) => p.key === 'exception' || p.key === 'error'), r.output).toBeUndefined();
  expect(one(r, 'virtio-console-count')['virtio-console-count']).toBe('1');
  checkTransport('console', one(r, 'virtio-console-pci'), c.transport, '1043');
  const init = one(r, 'virtio-console');
  expect(init, r.output).toMatchObject({ init: 'ok', emerg_write: '1', multiport_offered: '0', status: '0xf' });
  expect(BigInt(init.negotiated!) & 2n).toBe(0n); // VIRTIO_CONSOLE_F_MULTIPORT (§5.3.3)
  const tx = r.probe.filter((p) => p.key === 'virtio-console-tx');
  expect(tx.map((t) => t.case)).toEqual(['hello', 'pattern']);
  expect(tx[0]).toMatchObject({ result: 'completed', used_len: '0' });
  expect(tx[1]).toMatchObject({ bytes: String(CONSOLE_PATTERN_BYTES), requests: '9', segs: '12', completed: '9', used_len_max: '0' });
  const input = c.input ?? new Uint8Array();
  const rxbuf = c.rxbuf ?? 256;
  expect(one(r, 'virtio-console-ready')).toMatchObject({ result: 'completed', echo: String(input.length), rxbuf: String(rxbuf) });
  if (input.length > 0) {
    const rx = one(r, 'virtio-console-rx');
    expect(rx, r.output).toMatchObject({ bytes: String(input.length), result: 'ok', empty: '0', bad_token: '0', fnv1a64: fnv1a64(input) });
    expect(Number(rx.max_len)).toBeLessThanOrEqual(rxbuf);
    expect(Number(rx.buffers)).toBeGreaterThanOrEqual(Math.ceil(input.length / rxbuf));
    expect(one(r, 'virtio-console-echo')).toMatchObject({ bytes: String(input.length), result: 'completed' });
  }
  const done = one(r, 'virtio-console-done');
  // emerg_wr characters go through config space, not the transmitq
  const txBytes = HELLO.length + CONSOLE_PATTERN_BYTES + READY.length + input.length + BYE.length;
  expect(done).toMatchObject({ bye: 'completed', device_status: '0xf', tx_bytes: String(txBytes) });

  // the host's byte stream, exactly: emerg + hello + pattern + ready + echo + bye
  const text = (b: Uint8Array) => Buffer.from(b).toString('latin1');
  const s = Buffer.from(stream);
  expect(s.length, JSON.stringify(text(s.subarray(0, 200)))).toBe(HEAD.length + CONSOLE_PATTERN_BYTES + READY.length + input.length + BYE.length);
  expect(text(s.subarray(0, HEAD.length))).toBe(HEAD);
  const pattern = s.subarray(HEAD.length, HEAD.length + CONSOLE_PATTERN_BYTES);
  expect(fnv1a64(pattern)).toBe(tx[1]!.fnv1a64);
  expect(/^([a-z]{63}\n)+$/.test(text(pattern))).toBe(true);
  let at = HEAD.length + CONSOLE_PATTERN_BYTES;
  expect(text(s.subarray(at, at + READY.length))).toBe(READY);
  at += READY.length;
  expect(Buffer.compare(s.subarray(at, at + input.length), Buffer.from(input))).toBe(0);
  expect(text(s.subarray(at + input.length))).toBe(BYE);
}

/** Host input for the echo check: numbered lines with some UTF-8, about `bytes` long (more than the 32 x 256-byte receive buffers). */
export function consoleInput(bytes: number): Buffer {
  const lines: string[] = [];
  for (let i = 0, n = 0; n < bytes; i++) {
    const l = `line ${String(i).padStart(4, '0')} from the host: caf\u00e9 \u20ac ${'.'.repeat(i % 40)}\n`;
    lines.push(l);
    n += Buffer.byteLength(l);
  }
  return Buffer.from(lines.join(''));
}
