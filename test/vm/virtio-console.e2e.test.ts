/**
 * End-to-end: kvmkit's VirtioConsole driven by the probe's virtio-console driver
 * (probe.test=console, ring 3): the guest's hvc0 output reaches `console` events and
 * `vm.console` byte-exact, and `vm.console.write()` reaches the guest, which echoes it. The same
 * lines and byte stream as from QEMU's virtconsole (test/guest/probe/virtio-console-qemu.test.ts).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { VirtualMachine } from '../../src';
import { VirtioConsole } from '../../src/devices/virtio/console/VirtioConsole';
import { one } from '../guest/probe/blkExpectations';
import { checkConsole, consoleInput } from '../guest/probe/consoleExpectations';
import { parseProbeLines } from '../guest/probe/parse';
import { buildProbe } from '../guest/probe/qemu';
import { ensureProbe, HAS_KVM, warnNoKvm } from '../helpers/env';
import { runProbe } from '../helpers/runProbe';

warnNoKvm();

let dir = '';
let kernel = '';

interface ConsoleResult {
  vm: VirtualMachine;
  reason: string;
  errors: Error[];
  /** Every `console` event's chunk, in order. */
  events: Buffer[];
  /** What the device's own onOutput option received. */
  own: Uint8Array[];
}

/**
 * Boot the probe with one VirtioConsole; `type` runs once the VM is running (it may write to
 * vm.console at any point); wait for poweroff.
 */
async function runConsole(params: string, type: (vm: VirtualMachine) => Promise<void>): Promise<ConsoleResult> {
  const own: Uint8Array[] = [];
  const con = new VirtioConsole({ onOutput: (b) => own.push(b) });
  const events: Buffer[] = [];
  const r = await runProbe({ kernel, mem: 256, devices: [con], params: `probe.quiet probe.ring=3 probe.test=console ${params}` }, {
    timeoutMs: 60_000,
    beforeStart: (vm) =>
      vm.on('console', (chunk, info) => {
        expect(info.port).toBe(0);
        events.push(chunk);
      }),
    whileRunning: type,
  });
  return { vm: r.vm, reason: r.info.reason, errors: r.errors, events, own };
}

describe.skipIf(!HAS_KVM)('virtio-console on kvmkit, driven by the probe', () => {
  beforeAll(() => {
    ensureProbe(); // the vCPU worker bundle
    dir = mkdtempSync(join(tmpdir(), 'kvmkit-console-e2e-'));
    kernel = buildProbe(dir);
  });
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('hvc0 output reaches console events and vm.console byte-exact; vm.console.write after "hvc0 ready" reaches the guest and comes back', async () => {
    const input = consoleInput(20_000); // > 32 receive buffers of 256 bytes: the guest must re-post them
    const r = await runConsole(`probe.console.echo=${input.length}`, async (vm) => {
      await vm.console.waitFor('hvc0 ready', { timeoutMs: 30_000 });
      vm.console.write(input.toString('utf8'));
      await vm.console.waitFor('hvc0 bye', { timeoutMs: 30_000 });
    });
    const probe = { probe: parseProbeLines(r.vm.serial.output), output: r.vm.serial.output };
    expect(r.reason, probe.output).toBe('poweroff');
    expect(r.errors).toEqual([]);
    const stream = Buffer.concat(r.events);
    checkConsole(probe, stream, { transport: { cfg: 'cf8', barsByProbe: false }, input });
    // vm.console decodes the same bytes (UTF-8 input included); the device's own onOutput saw them too
    expect(r.vm.console.output).toBe(stream.toString('utf8'));
    expect(Buffer.compare(Buffer.concat(r.own), stream)).toBe(0);
    // kvmkit's shape: receiveq + transmitq only (QEMU allocates control queues too)
    expect(one(probe, 'virtio-console')).toMatchObject({ num_queues: '2', offered: '0x130000004' });
    expect(one(probe, 'virtio-console-pci')).toMatchObject({ dev: '00:01.0', bar0: '0xc0000000/0x8000/64' });
    console.log(`virtio-console: ${stream.length} bytes of hvc0 output in ${r.events.length} console events; ${one(probe, 'virtio-console-rx').buffers} receive buffers for ${input.length} bytes of input`);
  }, 90_000);

  it('input written before the guest posts receive buffers waits in the device and arrives whole', async () => {
    const input = consoleInput(3_000);
    const r = await runConsole(`probe.console.echo=${input.length} probe.console.rxbuf=100 probe.console.indirect=0 probe.console.eventidx=0`, async (vm) => {
      vm.console.write(input); // right after start: the probe is still booting
      await vm.console.waitFor('hvc0 bye', { timeoutMs: 30_000 });
    });
    const probe = { probe: parseProbeLines(r.vm.serial.output), output: r.vm.serial.output };
    expect(r.reason, probe.output).toBe('poweroff');
    expect(r.errors).toEqual([]);
    checkConsole(probe, Buffer.concat(r.events), { transport: { cfg: 'cf8', barsByProbe: false }, input, rxbuf: 100 });
    expect(one(probe, 'virtio-console')).toMatchObject({ indirect: '0', event_idx: '0' });
  }, 90_000);
});
