/**
 * The probe's virtio driver (virtio_pci.c, virtqueue.c, virtio_blk.c, virtio_rng.c) against
 * QEMU's own devices: virtio-blk-pci and virtio-rng-pci with disable-legacy=on, under TCG on
 * `-M pc` (SeaBIOS assigns the BARs, config space through ports 0xcf8/0xcfc) and
 * `-M microvm,pcie=on` (ECAM from the DSDT's _CBA, the probe assigns the BARs).
 *
 * What QEMU answers here is the reference kvmkit's VirtioBlock/VirtioRng must match wherever the
 * virtio 1.2 spec fixes the answer (README.md, "virtio: QEMU's answers"). QEMU+KVM variants run
 * with KVMKIT_TEST_QEMU_KVM=1.
 */
import { createHash, randomBytes } from 'node:crypto';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { all, byCase, checkBlk, checkBlock4k, checkImages, checkRng, one, QEMU, type BlkRunConfig } from './blkExpectations';
import { fnv1a64 } from './parse';
import { buildProbe, qemuAvailable, runProbeUnderQemu, type QemuProbeResult } from './qemu';

const haveQemu = qemuAvailable();
if (!haveQemu) {
  console.warn('\n*** SKIPPING the probe virtio QEMU tests: qemu-system-x86_64 not found (install qemu-system-x86 or set KVMKIT_QEMU) ***\n');
}
const runKvm = process.env.KVMKIT_TEST_QEMU_KVM === '1';

const DISK_BYTES = 64 * 1024 * 1024;
const CAPACITY = DISK_BYTES / 512;
const SERIAL_RW = 'KVMKIT1';
const SERIAL_RO = 'RO-DISK-0123456789AB'; // 20 bytes: no NUL terminator (virtio 1.2 §5.2.6)
const WSECTOR = 2048; // probe.blk.wsector default: the write tests stay in [1 MiB, ~5.3 MiB)

let dir = '';
let kernel = '';
let pristine = ''; // the random disk image every run starts from
let pristineSha = '';

const sha256 = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');

interface Config {
  machine: 'pc' | 'microvm';
  accel?: 'tcg' | 'kvm';
  ring: 0 | 3;
  indirect: 0 | 1;
  eventidx: 0 | 1;
  msix: 0 | 1 | 2;
}

interface Run {
  r: QemuProbeResult;
  rw: string;
  ro: string;
}

/** How the probe sees QEMU's machine: pc has SeaBIOS assign BARs behind 0xcf8; microvm,pcie=on is ECAM with BARs left to the probe. */
const runConfig = (c: Config): BlkRunConfig => ({
  cfg: c.machine === 'pc' ? 'cf8' : 'ecam',
  barsByProbe: c.machine === 'microvm',
  indirect: c.indirect,
  eventidx: c.eventidx,
  msix: c.msix,
});

/** Boot once with a read-write disk (disk=0), a read-only disk (disk=1) and an entropy device. */
async function runBlkRng(c: Config): Promise<Run> {
  const tag = `${c.machine}-${c.accel ?? 'tcg'}-${c.ring}${c.indirect}${c.eventidx}${c.msix}`;
  const rw = join(dir, `rw-${tag}.img`);
  const ro = join(dir, `ro-${tag}.img`);
  copyFileSync(pristine, rw);
  copyFileSync(pristine, ro);
  const r = await runProbeUnderQemu({
    machine: c.machine,
    machineOptions: c.machine === 'microvm' ? 'pcie=on' : undefined,
    accel: c.accel ?? 'tcg',
    cpus: 1,
    memMiB: 256,
    kernel,
    timeoutMs: c.accel === 'kvm' ? 600_000 : 60_000,
    append:
      `probe.quiet probe.test=blk,rng probe.ring=${c.ring} probe.blk.indirect=${c.indirect} ` +
      `probe.blk.eventidx=${c.eventidx} probe.virtio.msix=${c.msix}`,
    extraArgs: [
      '-device', `virtio-blk-pci,disable-legacy=on,drive=d0,serial=${SERIAL_RW}`,
      '-drive', `id=d0,file=${rw},format=raw,if=none`,
      '-device', `virtio-blk-pci,disable-legacy=on,drive=d1,serial=${SERIAL_RO}`,
      '-drive', `id=d1,file=${ro},format=raw,if=none,readonly=on`,
      '-device', 'virtio-rng-pci,disable-legacy=on',
    ],
  });
  return { r, rw, ro };
}

/** One CPU, 256 MiB, `-M microvm,pcie=on` under TCG with these devices. */
/** One probe boot under QEMU TCG (1 vCPU, 256 MiB); microvm gets PCIe (ECAM). */
function runTcg(machine: 'pc' | 'microvm', append: string, extraArgs: string[]): Promise<QemuProbeResult> {
  const machineOptions = machine === 'microvm' ? 'pcie=on' : undefined;
  return runProbeUnderQemu({ machine, machineOptions, accel: 'tcg', cpus: 1, memMiB: 256, kernel, timeoutMs: 60_000, append, extraArgs });
}

function checkRun(run: Run, c: Config, hostHead: string, hostTail: string) {
  const { r } = run;
  expect(r.timedOut, r.output).toBe(false);
  expect(r.exitCode, r.output).toBe(0);
  checkBlk(r, runConfig(c), QEMU, { capacity: CAPACITY, serialRw: SERIAL_RW, serialRo: SERIAL_RO, head: hostHead, tail: hostTail });
  // the status of a chain whose status descriptor points outside RAM goes nowhere
  expect(byCase(r, 'virtio-blk-bad', 0).get('status-at-oob-address')!.status_byte).toBe('0xa5');
  checkImages(r, readFileSync(run.rw), sha256(run.ro), { sha: pristineSha, data: readFileSync(pristine) }, WSECTOR);
  checkRng(r, runConfig(c), QEMU);
}

describe.skipIf(!haveQemu)('probe virtio driver against QEMU TCG devices', () => {
  let hostHead = '';
  let hostTail = '';
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'kvmkit-probe-virtio-'));
    kernel = buildProbe(dir);
    const data = randomBytes(DISK_BYTES);
    pristine = join(dir, 'pristine.img');
    writeFileSync(pristine, data);
    pristineSha = sha256(pristine);
    hostHead = fnv1a64(data.subarray(0, 1 << 20));
    hostTail = fnv1a64(data.subarray(DISK_BYTES - 65536));
  });
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const configs: Config[] = [
    { machine: 'pc', ring: 0, indirect: 1, eventidx: 1, msix: 0 },
    { machine: 'pc', ring: 3, indirect: 0, eventidx: 0, msix: 1 },
    { machine: 'microvm', ring: 3, indirect: 1, eventidx: 0, msix: 2 },
    { machine: 'microvm', ring: 0, indirect: 0, eventidx: 1, msix: 0 },
  ];
  for (const c of configs) {
    it(`${c.machine}, ring ${c.ring}, indirect=${c.indirect} event_idx=${c.eventidx} msix=${c.msix}: blk (rw + ro disk) and rng`, async () => {
      checkRun(await runBlkRng(c), c, hostHead, hostTail);
    }, 90_000);
  }

  it('logical_block_size=4096: blk_size 4096 in config space, and every request that is not whole blocks answered IOERR (virtio-blk-align)', async () => {
    const img = join(dir, 'block4k.img');
    copyFileSync(pristine, img);
    const r = await runTcg('microvm', 'probe.quiet probe.test=blk probe.ring=3 probe.blk.bad=0', [
      '-device', 'virtio-blk-pci,disable-legacy=on,drive=d0,logical_block_size=4096,physical_block_size=4096',
      '-drive', `id=d0,file=${img},format=raw,if=none`,
    ]);
    expect(r.exitCode, r.output).toBe(0);
    checkBlock4k(r, readFileSync(img), readFileSync(pristine), CAPACITY);
  }, 90_000);

  it('pc, probe.virtio.reassign: BARs moved by the driver, around the ones other devices decode', async () => {
    const img = join(dir, 'reassign.img');
    copyFileSync(pristine, img);
    // SeaBIOS puts the VGA framebuffer (16 MiB) at 0xfd000000 and the virtio BARs at 0xfe000000+
    const r = await runTcg('pc', 'probe.quiet probe.test=blk,rng probe.blk.bad=0 probe.virtio.reassign probe.virtio.barbase=0xfd000000', [
      '-device', 'virtio-blk-pci,disable-legacy=on,drive=d0', '-drive', `id=d0,file=${img},format=raw,if=none`,
      '-device', 'virtio-rng-pci,disable-legacy=on',
    ]);
    expect(r.exitCode, r.output).toBe(0);
    const bars = [one(r, 'virtio-blk-pci', 0), one(r, 'virtio-rng-pci')].flatMap((rec) =>
      Object.keys(rec).filter((k) => /^bar\d$/.test(k)).map((k) => rec[k]!.split('/')),
    );
    expect(bars).toHaveLength(4);
    const ranges = bars.map(([a, s, ...flags]) => {
      expect(flags).toContain('probe');
      return [Number(a), Number(a) + Number(s)] as const;
    });
    for (const [a, e] of ranges) {
      expect(a).toBeGreaterThanOrEqual(0xfe008000); // past VGA and the firmware's virtio BARs
      expect(e).toBeLessThanOrEqual(0xfec00000);
      for (const [a2, e2] of ranges) if (a2 !== a) expect(e <= a2 || e2 <= a).toBe(true);
    }
    expect(one(r, 'virtio-blk-done', 0).final_read).toBe('0');
    expect(all(r, 'virtio-blk-rw', 0).every((rw) => rw.match === '1')).toBe(true);
    expect(one(r, 'virtio-rng-done').final_read).toBe('completed');
  }, 90_000);

  it('blkbench: every mode, queue depth and request size reports its figures', async () => {
    const img = join(dir, 'bench.img');
    copyFileSync(pristine, img);
    const r = await runTcg('microvm', 
      'probe.quiet probe.ring=3 probe.test=blkbench probe.blk.bench=seqread,seqwrite,randread,randwrite probe.blk.qd=1,32 probe.blk.bs=4k,1m probe.blk.size=8',
      ['-device', 'virtio-blk-pci,disable-legacy=on,drive=d0', '-drive', `id=d0,file=${img},format=raw,if=none`],
    );
    expect(r.exitCode, r.output).toBe(0);
    const lines = all(r, 'virtio-blk-bench');
    expect(lines).toHaveLength(4 * 2 * 2);
    for (const l of lines) {
      const bs = Number(l.bs);
      expect(l, JSON.stringify(l)).toMatchObject({ errors: '0', timed_out: '0' });
      expect(Number(l.requests)).toBe((8 << 20) / bs);
      expect(Number(l.inflight_max)).toBe(Math.min(Number(l.qd), Number(l.requests)));
      expect(Number(l.bytes)).toBe(8 << 20);
      expect(Number(l.us)).toBeGreaterThan(0);
      expect(Number(l.iops)).toBeGreaterThan(0);
      expect(l.mb_s).toMatch(/^\d+\.\d$/);
    }
  }, 90_000);

  it('blkbench on a read-only disk refuses the write modes', async () => {
    const r = await runTcg('pc', 'probe.quiet probe.test=blkbench probe.blk.bench=seqwrite,seqread probe.blk.size=4', [
      '-device', 'virtio-blk-pci,disable-legacy=on,drive=d0', '-drive', `id=d0,file=${pristine},format=raw,if=none,readonly=on`,
    ]);
    expect(r.exitCode, r.output).toBe(0);
    expect(all(r, 'virtio-blk-bench').map((l) => l.error ?? l.mode)).toEqual(['read-only', 'seqread']);
    expect(sha256(pristine)).toBe(pristineSha);
  }, 90_000);
});

describe.skipIf(!haveQemu || !runKvm)('probe virtio driver against QEMU+KVM devices (KVMKIT_TEST_QEMU_KVM=1)', () => {
  let hostHead = '';
  let hostTail = '';
  beforeAll(() => {
    dir ||= mkdtempSync(join(tmpdir(), 'kvmkit-probe-virtio-'));
    kernel = buildProbe(dir);
    if (!pristine) {
      const data = randomBytes(DISK_BYTES);
      pristine = join(dir, 'pristine.img');
      writeFileSync(pristine, data);
      pristineSha = sha256(pristine);
    }
    const data = readFileSync(pristine);
    hostHead = fnv1a64(data.subarray(0, 1 << 20));
    hostTail = fnv1a64(data.subarray(DISK_BYTES - 65536));
  });
  it('microvm, ring 3, indirect + event_idx, MSI-X masked', async () => {
    const c: Config = { machine: 'microvm', accel: 'kvm', ring: 3, indirect: 1, eventidx: 1, msix: 2 };
    checkRun(await runBlkRng(c), c, hostHead, hostTail);
  }, 700_000);
});
