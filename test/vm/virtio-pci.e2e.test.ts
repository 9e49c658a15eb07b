/**
 * End-to-end: virtio-pci on kvmkit with the probe as the driver (DESIGN.md, "Two guests for
 * testing"). The probe enumerates PCI through 0xCF8, finds the host bridge and the virtio-rng
 * function kvmkit placed, drives it as a spec-conformant driver (probe.test=rng) in each
 * interrupt mode, and kvmkit's counters show the doorbells went through KVM_IOEVENTFD.
 */
import { describe, expect, it, beforeAll } from 'vitest';
import { ConfigError, VirtualMachine, type VirtualMachineOptions } from '../../src';
import { VirtioRng } from '../../src/devices/virtio/rng/VirtioRng';
import type { ProbeRecord } from '../guest/probe/parse';
import { ensureProbe, HAS_KVM, processResources, warnNoKvm } from '../helpers/env';
import { firstRecord as one, runProbe } from '../helpers/runProbe';

warnNoKvm();
let probe = '';

const run = (opts: Partial<VirtualMachineOptions>) => runProbe({ kernel: probe, ...opts }, { timeoutMs: 30_000 });

const all = (records: ProbeRecord[], key: string): ProbeRecord[] => records.filter((r) => r.key === key);

describe.skipIf(!HAS_KVM)('virtio-pci on kvmkit (probe guest)', () => {
  beforeAll(() => {
    probe = ensureProbe();
  });

  it('PCI bus 0 shows the host bridge at 00:00.0 and virtio-rng (1af4:1044) at 00:01.0', async () => {
    const { info, records } = await run({ devices: [new VirtioRng()], params: 'probe.ring=3' });
    expect(info.reason).toBe('poweroff');
    expect(all(records, 'pci').map((r) => `${r.dev} ${r.id} ${r.class}`)).toEqual([
      '00:00.0 8086:1237 060000',
      '00:01.0 1af4:1044 ff0000',
    ]);
    expect(one(records, 'pci_count').pci_count).toBe('2');
  });

  // msix=0: INTx semantics (ISR, PCI status bit 3); 1: MSI-X on, every event NO_VECTOR;
  // 2: MSI-X on with the function masked, vectors mapped (notifications become pending bits).
  const modes = [
    { ring: 3, msix: 0, indirect: 1, eventidx: 1 },
    { ring: 3, msix: 1, indirect: 0, eventidx: 0 },
    { ring: 3, msix: 2, indirect: 1, eventidx: 0 },
    { ring: 0, msix: 2, indirect: 0, eventidx: 1 },
  ];
  it.each(modes)('probe.test=rng reads random bytes (ring $ring, msix=$msix, indirect=$indirect, event_idx=$eventidx); doorbells cost no exit', async (m) => {
    const params = `probe.quiet probe.ring=${m.ring} probe.test=rng probe.virtio.msix=${m.msix} probe.rng.indirect=${m.indirect} probe.rng.eventidx=${m.eventidx}`;
    const { info, records, vm, errors, output } = await run({ devices: [new VirtioRng()], params });
    expect(info.reason, output).toBe('poweroff');
    expect(records.find((r) => r.key === 'exception' || r.key === 'error'), output).toBeUndefined();
    expect(one(records, 'virtio-rng-count')['virtio-rng-count']).toBe('1');
    const t = one(records, 'virtio-rng-pci');
    expect(t).toMatchObject({ dev: '00:01.0', id: '1af4:1044', rev: '1', cfg: 'cf8', notify_mult: '4', msix: '2' });
    // kvmkit placed BAR 0 itself (the probe did not have to: no "/probe" suffix), in the MMIO hole
    expect(t.bar0).toBe('0xc0000000/0x8000/64');
    for (const f of ['common', 'notify', 'isr', 'device_cfg']) expect(BigInt(t[f]!), f).toBeGreaterThanOrEqual(0xc000_0000n);
    const init = one(records, 'virtio-rng');
    expect(init).toMatchObject({ init: 'ok', status: '0xf' });
    const negotiated = BigInt(init.negotiated!);
    expect(negotiated & (1n << 32n)).toBe(1n << 32n);
    expect((negotiated >> 28n) & 1n).toBe(BigInt(m.indirect));
    expect((negotiated >> 29n) & 1n).toBe(BigInt(m.eventidx));
    const reads = all(records, 'virtio-rng-read');
    expect(reads).toHaveLength(4);
    for (const r of reads) {
      expect(r.len).toBe(r.requested);
      expect(Number(r.distinct)).toBeGreaterThan(200);
      expect(r.same_as_previous).toBe('0');
    }
    expect(new Set(reads.map((r) => r.fnv1a64)).size).toBe(4);
    expect(one(records, 'virtio-rng-chain')).toMatchObject({ result: 'completed', len: '300' });
    expect(one(records, 'virtio-rng-done')).toMatchObject({ ok_reads: '4', repeats: '0', constant: '0', final_read: 'completed' });
    expect(errors).toEqual([]);
    // every doorbell went through the ioeventfd: none came as an MMIO exit
    const [stats] = vm.deviceStats();
    const kicks = Number(one(records, 'virtio-rng-done').kicks);
    expect(stats).toMatchObject({ kind: 'virtio-rng', address: '00:01.0', mmioDoorbells: 0, doorbellWrites: kicks });
    expect(stats!.doorbells).toBeGreaterThan(0);
    // The rng test polls with interrupts suppressed (VIRTQ_AVAIL_F_NO_INTERRUPT / used_event), and
    // msix=2 masks the function: no MSI-X message is sent, and INTx only exists with MSI-X off.
    expect(stats!.msiFired).toBe(0);
    if (m.msix !== 0) expect(stats!.intxAsserted).toBe(0);
  });

  it('devices are refused before anything starts when they cannot be attached', async () => {
    const rng = new VirtioRng();
    await expect(new VirtualMachine({ kernel: probe, devices: [rng, rng] }).start()).rejects.toThrow(ConfigError);
    await expect(new VirtualMachine({ kernel: probe, devices: [{ deviceKind: 'toaster' }] }).start()).rejects.toThrow(/toaster, which kvmkit cannot attach/);
    // one device object in two running VMs at once
    const a = new VirtualMachine({ kernel: probe, devices: [rng], params: 'probe.cmd=spin probe.ring=3' });
    await a.start();
    await expect(new VirtualMachine({ kernel: probe, devices: [rng] }).start()).rejects.toThrow(/already attached to a running VM/);
    await a.stop();
    // free again once that VM ended
    const b = new VirtualMachine({ kernel: probe, devices: [rng], params: 'probe.cmd=spin probe.ring=3' });
    await b.start();
    await b.stop();
  });

  it('20 start/stop cycles with two virtio devices leave open fds and threads where they started', async () => {
    const cycle = async (): Promise<void> => {
      const vm = new VirtualMachine({ kernel: probe, cpus: 2, devices: [new VirtioRng(), new VirtioRng()], params: 'probe.ring=3 probe.test=rng probe.quiet probe.cmd=spin' });
      await vm.start();
      await vm.serial.waitFor('PROBE spinning', { timeoutMs: 20_000 });
      const info = await vm.stop();
      expect(info.reason).toBe('stopped');
      expect(vm.deviceStats().map((s) => s.address)).toEqual(['00:01.0', '00:02.0']);
    };
    await cycle(); // warm-up: koffi bindings and the vCPU thread pool stay
    await new Promise((r) => setTimeout(r, 50));
    const before = processResources();
    for (let i = 0; i < 20; i++) await cycle();
    await new Promise((r) => setTimeout(r, 200));
    const after = processResources();
    expect(after.fds).toBe(before.fds);
    expect(after.threads).toBe(before.threads);
  });
});
