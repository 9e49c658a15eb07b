/**
 * The probe under QEMU TCG: builds test/guest/probe into a temporary directory and checks every
 * PROBE line on both machine types QEMU offers for -kernel (pc with SeaBIOS, microvm with qboot).
 * QEMU+KVM variants run only with KVMKIT_TEST_QEMU_KVM=1 (this machine's KVM is paravirtual and
 * slow for QEMU's real-mode firmware; see README.md).
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fnv1a64, parseProbeLines, type ProbeRecord } from './parse';
import { buildProbe, qemuAvailable, runProbeUnderQemu, type QemuProbeOptions, type QemuProbeResult } from './qemu';

const haveQemu = qemuAvailable();
if (!haveQemu) {
  console.warn(
    '\n*** SKIPPING the probe QEMU tests: qemu-system-x86_64 not found (install qemu-system-x86 or set KVMKIT_QEMU) ***\n',
  );
}
const runKvm = process.env.KVMKIT_TEST_QEMU_KVM === '1';

let dir = '';
let kernel = '';
let initrd = '';
let initrdHash = '';
const INITRD_SIZE = 1024 * 1024 + 123; // odd size: the hash must cover exactly ramdisk_size bytes

function one(r: QemuProbeResult, key: string): ProbeRecord {
  const recs = r.probe.filter((p) => p.key === key);
  expect(recs, `exactly one "PROBE ${key}" line in:\n${r.output}`).toHaveLength(1);
  return recs[0]!;
}

async function run(opts: Partial<QemuProbeOptions> & Pick<QemuProbeOptions, 'machine' | 'cpus'>): Promise<QemuProbeResult> {
  return runProbeUnderQemu({
    accel: 'tcg',
    memMiB: 256,
    append: 'probe.cmd=poweroff foo=bar',
    timeoutMs: 30_000,
    kernel,
    ...opts,
  });
}

/** The checks every normal (poweroff) run must pass. */
function checkCommon(r: QemuProbeResult, o: { machine: 'pc' | 'microvm'; cpus: number; memMiB: number; append: string; initrd: boolean }) {
  const hello = one(r, 'hello');
  expect(hello.entry).toBe('real');
  expect(hello.boot_params).toBe('0x11000'); // SeaBIOS and qboot load setup at 0x10000
  expect(hello.bootproto).toBe('0x020f');
  expect(one(r, 'cmdline').cmdline).toBe(o.append);

  const e820 = r.probe.filter((p) => p.key === 'e820');
  const count = one(r, 'e820_count');
  expect(Number(count.e820_count)).toBe(e820.length);
  const ram = e820.filter((e) => e.type === '1').reduce((s, e) => s + Number(BigInt(e.size!)), 0);
  expect(Number(count.ram_bytes)).toBe(ram);
  // all of -m except firmware holes (EBDA, BIOS area, ACPI tables): within 1 MiB
  expect(ram).toBeLessThanOrEqual(o.memMiB * 1024 * 1024);
  expect(ram).toBeGreaterThan(o.memMiB * 1024 * 1024 - 1024 * 1024);
  expect(e820.every((e) => BigInt(e.size!) > 0n)).toBe(true);

  const ird = one(r, 'initrd');
  if (o.initrd) {
    expect(Number(ird.size)).toBe(INITRD_SIZE);
    expect(ird.fnv1a64).toBe(initrdHash);
  } else {
    expect(ird.initrd).toBe('none');
  }

  const acpi = one(r, 'acpi');
  expect(acpi.fadt).toBe('yes');
  expect(Number(acpi.madt_cpus)).toBe(o.cpus);
  expect(one(r, 'cpus_source').cpus_source).toBe('acpi');
  expect(Number(one(r, 'cpus_online').cpus_online)).toBe(o.cpus);
  const up = r.probe.filter((p) => p.key === 'cpu').map((p) => Number(p.apic)).sort();
  expect(up).toEqual(Array.from({ length: o.cpus - 1 }, (_, i) => i + 1));

  // QEMU's RTC starts at the host's UTC time
  const rtc = one(r, 'rtc').rtc!;
  expect(rtc).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$/);
  expect(Math.abs(Date.parse(rtc + 'Z') - Date.now())).toBeLessThan(5 * 60_000);

  const pci = r.probe.filter((p) => p.key === 'pci');
  expect(Number(one(r, 'pci_count').pci_count)).toBe(pci.length);
  if (o.machine === 'pc') {
    expect(pci.find((p) => p.dev === '00:00.0')).toMatchObject({ id: '8086:1237', class: '060000' });
    expect(pci.find((p) => p.dev === '00:01.0')).toMatchObject({ id: '8086:7000', class: '060100' });
  } else {
    expect(pci).toHaveLength(0);
  }

  one(r, 'ready');
  one(r, 'poweroff');
  expect(r.probe.find((p) => p.key === 'error' || p.key === 'exception')).toBeUndefined();
  expect(r.timedOut, r.output).toBe(false);
  expect(r.exitCode, r.output).toBe(0);
  // the fixed order of the report
  const order = ['hello', 'cmdline', 'e820_count', 'initrd', 'acpi', 'cpus_source', 'cpus_online', 'rtc', 'pci_count', 'ready', 'poweroff'];
  const seen = r.probe.map((p) => p.key).filter((k) => order.includes(k));
  expect(seen).toEqual(order);
}

describe.skipIf(!haveQemu)('probe under QEMU TCG', () => {
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'kvmkit-probe-'));
    kernel = buildProbe(dir);
    const data = randomBytes(INITRD_SIZE);
    initrd = join(dir, 'initrd.bin');
    writeFileSync(initrd, data);
    initrdHash = fnv1a64(data);
  });
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  for (const machine of ['pc', 'microvm'] as const) {
    for (const cpus of [1, 2]) {
      for (const withInitrd of [false, true]) {
        it(`${machine}, ${cpus} CPU(s), ${withInitrd ? 'with' : 'without'} initrd: full report and poweroff`, async () => {
          const append = `probe.cmd=poweroff foo=bar quoted="a b"`;
          const r = await run({ machine, cpus, append, initrd: withInitrd ? initrd : undefined });
          checkCommon(r, { machine, cpus, memMiB: 256, append, initrd: withInitrd });
        });
      }
    }
  }

  for (const machine of ['pc', 'microvm'] as const) {
    it(`${machine}, 2 CPUs, initrd, probe.ring=3: same report from ring 3`, async () => {
      const append = 'probe.ring=3 probe.cmd=poweroff';
      const r = await run({ machine, cpus: 2, append, initrd });
      expect(one(r, 'hello').ring).toBe('3');
      checkCommon(r, { machine, cpus: 2, memMiB: 256, append, initrd: true });
    });
  }

  it('pc with 4 CPUs and 512 MiB', async () => {
    const r = await run({ machine: 'pc', cpus: 4, memMiB: 512, append: 'probe.quiet' });
    expect(r.probe.filter((p) => p.key === 'e820' || p.key === 'pci')).toHaveLength(0);
    expect(Number(one(r, 'cpus_online').cpus_online)).toBe(4);
    expect(Number(one(r, 'e820_count').ram_bytes)).toBeGreaterThan(511 * 1024 * 1024);
    expect(r.exitCode).toBe(0);
  });

  it('microvm without ACPI finds the CPUs in qboot\'s MP table (and cannot power off)', async () => {
    const r = await run({ machine: 'microvm', cpus: 2, machineOptions: 'acpi=off', append: 'probe.cmd=halt', timeoutMs: 3_000 });
    expect(one(r, 'acpi').acpi).toBe('none');
    expect(one(r, 'cpus_source').cpus_source).toBe('mptable');
    expect(Number(one(r, 'cpus_online').cpus_online)).toBe(2);
    one(r, 'halted');
  });

  for (const machine of ['pc', 'microvm'] as const) {
    it(`${machine}: reboot makes QEMU -no-reboot exit`, async () => {
      const r = await run({ machine, cpus: 2, append: 'probe.cmd=reboot' });
      const rb = one(r, 'reboot');
      expect(rb.method).toBe(machine === 'pc' ? 'i8042' : 'acpi-mmio');
      expect(r.probe.find((p) => p.key === 'reboot_fallback' || p.key === 'error')).toBeUndefined();
      expect(r.timedOut, r.output).toBe(false);
      expect(r.exitCode).toBe(0);
    });
  }

  it('echo mode echoes serial input and powers off on "quit"', async () => {
    const r = await run({
      machine: 'pc',
      cpus: 1,
      append: 'probe.cmd=echo probe.quiet probe.ring=3',
      stdin: 'hello world\r\nsay "hi"\\\nquit\n',
    });
    one(r, 'echo_ready');
    expect(r.probe.filter((p) => p.key === 'echo').map((p) => p.echo)).toEqual(['hello world', 'say "hi"\\', 'quit']);
    one(r, 'poweroff');
    expect(r.exitCode).toBe(0);
  });

  it('probe.test runs registered tests in order and reports unknown ones', async () => {
    const r = await run({ machine: 'microvm', cpus: 1, append: 'probe.quiet probe.test=cpu-bench,no-such-test' });
    const bench = one(r, 'cpu-bench');
    expect(Number(bench.bytes)).toBe(4 * 1024 * 1024);
    expect(Number(bench.tsc_cycles)).toBeGreaterThan(0);
    expect(one(r, 'error')).toMatchObject({ error: 'unknown-test', test: 'no-such-test' });
    const keys = r.probe.map((p) => p.key);
    expect(keys.indexOf('cpu-bench')).toBeGreaterThan(keys.indexOf('pci_count'));
    expect(keys.indexOf('ready')).toBeGreaterThan(keys.indexOf('error'));
    expect(r.exitCode).toBe(0);
  });

  for (const ring of [0, 3]) {
    it(`an exception in ring ${ring} is reported and halts the CPU`, async () => {
      const r = await run({ machine: 'pc', cpus: 1, append: `probe.quiet probe.ring=${ring} probe.test=fault`, timeoutMs: 3_000 });
      expect(one(r, 'exception')).toMatchObject({ vector: '14', cr2: '0x123456789000', cpl: String(ring) });
      expect(r.probe.find((p) => p.key === 'ready')).toBeUndefined();
      expect(r.timedOut).toBe(true);
    });
  }

  it('spin keeps the guest running until it is killed', async () => {
    const r = await run({ machine: 'microvm', cpus: 1, append: 'probe.cmd=spin', timeoutMs: 3_000 });
    one(r, 'spinning');
    expect(r.timedOut).toBe(true);
    expect(r.exitCode).toBeNull();
  });

  it('halt stops the guest without exiting', async () => {
    const r = await run({ machine: 'pc', cpus: 2, append: 'probe.cmd=halt probe.ring=3', timeoutMs: 3_000 });
    one(r, 'halted');
    expect(r.probe.find((p) => p.key === 'exception')).toBeUndefined();
    expect(r.timedOut).toBe(true);
  });
});

describe.skipIf(!haveQemu || !runKvm)('probe under QEMU+KVM (KVMKIT_TEST_QEMU_KVM=1)', () => {
  beforeAll(() => {
    dir ||= mkdtempSync(join(tmpdir(), 'kvmkit-probe-'));
    kernel = buildProbe(dir);
  });
  for (const machine of ['pc', 'microvm'] as const) {
    it(`${machine}, 2 CPUs`, async () => {
      const r = await run({ machine, cpus: 2, accel: 'kvm', timeoutMs: 600_000, append: 'probe.cmd=poweroff' });
      expect(Number(one(r, 'cpus_online').cpus_online)).toBe(2);
      one(r, 'poweroff');
      expect(r.exitCode, r.output).toBe(0);
    }, 700_000);
  }
});

describe('parseProbeLines', () => {
  it('parses keys, values, quoted values with escapes, bare words and firmware noise', () => {
    const recs = parseProbeLines(
      'Booting from ROM..PROBE hello entry=real bootproto=0x020f\r\n' +
        'noise\r\n' +
        'PROBE cmdline="a=\\"b c\\" \\\\ \\x01" \r\n' +
        'PROBE cpu apic=1 up\n' +
        'PROBE initrd=none\nPROBE ready',
    );
    expect(recs).toEqual([
      { key: 'hello', hello: '', entry: 'real', bootproto: '0x020f' },
      { key: 'cmdline', cmdline: 'a="b c" \\ \x01' },
      { key: 'cpu', cpu: '', apic: '1', up: '' },
      { key: 'initrd', initrd: 'none' },
      { key: 'ready', ready: '' },
    ]);
  });
  it('computes FNV-1a 64 like the probe', () => {
    expect(fnv1a64(new Uint8Array())).toBe('cbf29ce484222325');
    expect(fnv1a64(new TextEncoder().encode('a'))).toBe('af63dc4c8601ec8c');
    expect(fnv1a64(new TextEncoder().encode('foobar'))).toBe('85944171f73967e8');
  });
});
