/**
 * The probe's virtio-console driver (virtio_console.c, probe.test=console) against QEMU's
 * console: `virtio-serial-pci,disable-legacy=on,max_ports=1` + `virtconsole` on a Unix-socket
 * chardev the test reads and types into. With max_ports=1 QEMU does not offer MULTIPORT (with
 * more ports it does, and the driver still gets port 0 by not accepting it). kvmkit's
 * VirtioConsole must give the same lines and the same byte stream
 * (test/vm/virtio-console.e2e.test.ts; consoleExpectations.ts).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { one } from './blkExpectations';
import { checkConsole, consoleInput } from './consoleExpectations';
import { buildProbe, qemuAvailable, runProbeUnderQemu, type QemuProbeResult } from './qemu';

const haveQemu = qemuAvailable();
if (!haveQemu) console.warn('\n*** SKIPPING the probe virtio-console QEMU tests: qemu-system-x86_64 not found ***\n');

let dir = '';
let kernel = '';

/** Connect to QEMU's chardev socket once it exists (QEMU waits for us: server=on,wait=on). */
async function connectWhenListening(path: string, deadline: number): Promise<Socket> {
  for (;;) {
    try {
      return await new Promise<Socket>((resolve, reject) => {
        const s = connect(path, () => resolve(s));
        s.once('error', reject);
      });
    } catch (e) {
      if (Date.now() > deadline) throw e;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

/** Run probe.test=console under QEMU TCG; type `input` once the console shows "hvc0 ready". */
async function runConsole(machine: 'pc' | 'microvm', input: Uint8Array, extra = ''): Promise<{ r: QemuProbeResult; stream: Buffer }> {
  const sock = join(dir, `console-${machine}-${input.length}.sock`);
  const run = runProbeUnderQemu({
    machine,
    machineOptions: machine === 'microvm' ? 'pcie=on' : undefined,
    accel: 'tcg',
    cpus: 1,
    memMiB: 256,
    kernel,
    timeoutMs: 60_000,
    append: `probe.quiet probe.ring=3 probe.test=console probe.console.echo=${input.length} ${extra}`,
    extraArgs: [
      '-device', 'virtio-serial-pci,disable-legacy=on,max_ports=1',
      '-chardev', `socket,id=con0,path=${sock},server=on,wait=on`,
      '-device', 'virtconsole,chardev=con0',
    ],
  });
  const socket = await connectWhenListening(sock, Date.now() + 20_000);
  const chunks: Buffer[] = [];
  let typed = false;
  socket.on('data', (d: Buffer) => {
    chunks.push(d);
    if (!typed && input.length > 0 && Buffer.concat(chunks).includes('hvc0 ready')) {
      typed = true;
      socket.write(input);
    }
  });
  socket.on('error', () => {}); // QEMU closes its end when it exits
  const r = await run;
  socket.destroy();
  return { r, stream: Buffer.concat(chunks) };
}

describe.skipIf(!haveQemu)('probe virtio-console driver against QEMU TCG (virtio-serial-pci + virtconsole)', () => {
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'kvmkit-probe-console-'));
    kernel = buildProbe(dir);
  });
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('microvm (ECAM, BARs by the probe): emerg write, hello, 64 KiB pattern byte-exact, 20 KB of input through 256-byte receive buffers echoed back', async () => {
    const input = consoleInput(20_000);
    const { r, stream } = await runConsole('microvm', input);
    expect(r.exitCode, r.output).toBe(0);
    checkConsole(r, stream, { transport: { cfg: 'ecam', barsByProbe: true }, input });
    // QEMU's own shape: port 0 and the (unused) control queues, 4 in all; RING_RESET offered too
    expect(one(r, 'virtio-console')).toMatchObject({ num_queues: '4', offered: '0x10130000004' });
  }, 90_000);

  it('pc (0xcf8, SeaBIOS BARs), no input, split and direct rings: the same stream', async () => {
    const { r, stream } = await runConsole('pc', new Uint8Array(), 'probe.console.indirect=0 probe.console.eventidx=0');
    expect(r.exitCode, r.output).toBe(0);
    checkConsole(r, stream, { transport: { cfg: 'cf8', barsByProbe: false } });
    expect(one(r, 'virtio-console')).toMatchObject({ indirect: '0', event_idx: '0' });
  }, 90_000);
});
