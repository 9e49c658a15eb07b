/**
 * End-to-end: the probe guest on kvmkit (DESIGN.md, "Two guests for testing"). These run whenever
 * /dev/kvm exists; the probe runs at native speed even on a paravirtual KVM.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { VirtualMachine, type VirtualMachineOptions } from '../../src';
import { fnv1a64 } from '../guest/probe/parse';
import { ensureProbe, HAS_KVM, warnNoKvm } from '../helpers/env';
import { firstRecord as one, runProbe } from '../helpers/runProbe';

warnNoKvm();
let probe = '';
const tmp = mkdtempSync(join(tmpdir(), 'kvmkit-probe-'));

/** Boot the probe, wait for it to end on its own (20 s at most): no VM error event on the way. */
async function run(opts: Partial<VirtualMachineOptions>) {
  const r = await runProbe({ kernel: probe, ...opts }, { timeoutMs: 20_000 });
  expect(r.errors).toEqual([]);
  return r;
}

describe.skipIf(!HAS_KVM)('probe guest on kvmkit', () => {
  beforeAll(() => {
    probe = ensureProbe();
  });

  it('1 vCPU: boot_params carry the e820 map for mem, the command line and the initrd; RTC is host time; poweroff ends as poweroff', async () => {
    const initrd = join(tmp, 'initrd.bin');
    const bytes = randomBytes(3 * 1024 * 1024 + 123);
    writeFileSync(initrd, bytes);
    const before = Date.now();
    const { info, records } = await run({ cpus: 1, mem: 128, initrd, params: ['probe.ring=3', 'probe.cmd=poweroff', 'hello="a b"', 'x=1'] });
    expect(info.reason).toBe('poweroff');
    expect(one(records, 'hello').entry).toBe('64');
    expect(one(records, 'cmdline').cmdline).toMatch(/^console=ttyS0 .*probe\.ring=3 probe\.cmd=poweroff hello="a b" x=1$/);
    // e820: usable RAM is all of mem less the EBDA and the BIOS area below 1 MiB.
    const ram = Number(one(records, 'e820_count').ram_bytes);
    expect(ram).toBeLessThanOrEqual(128 * 2 ** 20);
    expect(ram).toBeGreaterThan(128 * 2 ** 20 - 2 ** 20);
    const initrdRec = one(records, 'initrd');
    expect(Number(initrdRec.size)).toBe(bytes.length);
    expect(initrdRec.fnv1a64).toBe(fnv1a64(bytes));
    expect(one(records, 'cpus_online').cpus_online).toBe('1');
    // (The probe hashes the 3 MiB initrd in ring 3: ring-0 code is emulated on a PVM host.)
    // The RTC shows host UTC time: between the start and the end of the run (1 s resolution).
    const rtc = Date.parse(`${one(records, 'rtc').rtc}Z`);
    expect(rtc).toBeGreaterThanOrEqual(Math.floor(before / 1000) * 1000 - 1000);
    expect(rtc).toBeLessThanOrEqual(Date.now() + 1000);
    expect(one(records, 'pci_count').pci_count).toBe('0');
  });

  it('2 vCPUs: the guest finds both in the MADT and starts the second', async () => {
    const { info, records } = await run({ cpus: 2, params: 'probe.cmd=poweroff' });
    expect(info.reason).toBe('poweroff');
    expect(one(records, 'cpus_source')).toMatchObject({ cpus_source: 'acpi', cpus: '2', apic_ids: '0,1' });
    expect(records.filter((r) => r.key === 'cpu' && 'up' in r).map((r) => r.apic)).toEqual(['1']);
    expect(one(records, 'cpus_online').cpus_online).toBe('2');
  });

  it('large mem: RAM above the MMIO hole is reported at 4 GiB', async () => {
    const { records } = await run({ mem: 4096 + 512, params: 'probe.cmd=poweroff' });
    const e820 = records.filter((r) => r.key === 'e820' && r.type === '1');
    expect(e820.some((r) => r.addr === '0x100000000' && Number(r.size) === 1.5 * 2 ** 30)).toBe(true);
    expect(e820.every((r) => Number(r.addr) + Number(r.size) <= 0xc000_0000 || Number(r.addr) >= 2 ** 32)).toBe(true);
  });

  it('reboot ends as reboot', async () => {
    const { info, records } = await run({ params: 'probe.cmd=reboot' });
    expect(info.reason).toBe('reboot');
    expect(one(records, 'reboot')).toBeDefined();
  });

  it('stop() ends a guest spinning with interrupts off in well under a second', async () => {
    const vm = new VirtualMachine({ kernel: probe, cpus: 2, params: 'probe.cmd=spin' });
    const exits: string[] = [];
    vm.on('exit', (i) => exits.push(i.reason));
    await vm.start();
    await vm.serial.waitFor('PROBE spinning', { timeoutMs: 10_000 });
    await new Promise((r) => setTimeout(r, 100));
    const t0 = performance.now();
    const info = await vm.stop();
    const ms = performance.now() - t0;
    expect(info.reason).toBe('stopped');
    expect(ms).toBeLessThan(500);
    expect(exits).toEqual(['stopped']);
    expect(vm.state).toBe('exited');
  });

  it('serial input reaches the guest (echo), and pause() freezes it until resume()', async () => {
    const vm = new VirtualMachine({ kernel: probe, params: 'probe.cmd=echo' });
    await vm.start();
    await vm.serial.waitFor('PROBE echo_ready', { timeoutMs: 10_000 });
    vm.serial.write('hello kvmkit\n');
    await vm.serial.waitFor('PROBE echo="hello kvmkit"', { timeoutMs: 5_000 });
    await vm.pause();
    expect(vm.state).toBe('paused');
    // Where the paused guest is: 64-bit code of the probe, its own page tables.
    const [regs] = vm.registers();
    expect(BigInt(regs.efer) & 0x400n).toBe(0x400n); // EFER.LMA
    expect(Number(regs.rip)).toBeGreaterThanOrEqual(0x100000);
    expect(Number(regs.cr3)).toBeGreaterThan(0);
    vm.serial.write('while paused\n');
    await new Promise((r) => setTimeout(r, 300));
    expect(vm.serial.output).not.toContain('while paused');
    vm.resume();
    expect(vm.state).toBe('running');
    await vm.serial.waitFor('PROBE echo="while paused"', { timeoutMs: 5_000 });
    vm.serial.write('quit\n');
    expect((await vm.exited).reason).toBe('poweroff');
  });

  it('two VMs at once in one process', async () => {
    const [a, b] = await Promise.all([
      run({ cpus: 2, params: 'probe.cmd=poweroff which=a' }),
      run({ cpus: 1, mem: 64, params: 'probe.cmd=poweroff which=b' }),
    ]);
    expect(a.info.reason).toBe('poweroff');
    expect(b.info.reason).toBe('poweroff');
    expect(one(a.records, 'cmdline').cmdline).toContain('which=a');
    expect(one(b.records, 'cmdline').cmdline).toContain('which=b');
    expect(one(a.records, 'cpus_online').cpus_online).toBe('2');
    expect(one(b.records, 'cpus_online').cpus_online).toBe('1');
  });
});
