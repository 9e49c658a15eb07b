import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import type { ArchLayout, LayoutInput } from '../../../src/arch/ArchLayout';
import {
  AARCH64_BOOT_PSTATE,
  Aarch64Layout,
  type Aarch64VcpuInit,
  KVM_ARM_VCPU_POWER_OFF,
  KVM_ARM_VCPU_PSCI_0_2,
  cellsOf,
  findNode,
  findProperty,
  mpidrAffinity,
  parseFdt,
  stringsOf,
  writeDeviceTreeBlob,
} from '../../../src/arch/aarch64';
import { BootImageError, ConfigError } from '../../../src/errors';
import { haveDtc, runOnBlob } from './dtc';

const MiB = 2 ** 20;
const HEADER = new Uint8Array(readFileSync(join(__dirname, 'fixtures', 'image-header-6.1.bin')));

/** A stand-in kernel: the real Debian header (image_size 0x2010000) followed by 1 MiB of filler. */
function kernel(): Uint8Array {
  const k = new Uint8Array(MiB);
  k.set(HEADER);
  return k;
}

const KERNEL = kernel();
const INITRD = new Uint8Array(3 * MiB).fill(0xaa);
const INITRD_POOL = new Uint8Array(64 * MiB);

function input(over: Partial<LayoutInput> = {}): LayoutInput {
  return { memBytes: 256 * MiB, cpus: 4, kernel: KERNEL, kernelPath: 'vmlinuz', initrd: INITRD, cmdline: 'console=ttyS0', ...over };
}

const layout = new Aarch64Layout({ kaslrSeed: 1n, rngSeed: null });

describe('Aarch64Layout implements the ArchLayout seam', () => {
  it('is an ArchLayout<Aarch64VcpuInit> for aarch64 with one RAM region at 0x8000_0000', () => {
    const seam: ArchLayout<Aarch64VcpuInit> = layout;
    expect(seam.arch).toBe('aarch64');
    expect(seam.ramRegions(256 * MiB)).toEqual([{ guestAddress: 0x8000_0000, size: 256 * MiB }]);
    expect(() => seam.ramRegions(MiB)).toThrow(ConfigError);
  });

  it('writes the kernel at the start of RAM, the initrd 16 MiB-aligned after image_size, the FDT in the last 2 MiB', () => {
    const plan = layout.build(input());
    expect(plan.ramRegions).toEqual([{ guestAddress: 0x8000_0000, size: 256 * MiB }]);
    expect(plan.writes.map((w) => [w.what, w.guestAddress])).toEqual([
      ['kernel', 0x8000_0000], // text_offset 0
      ['initrd', 0x8300_0000], // after 0x8000_0000 + image_size 0x2010000, on 16 MiB
      ['fdt', 0x8000_0000 + 254 * MiB],
    ]);
    expect(Buffer.from(plan.writes[0]!.data).equals(Buffer.from(kernel()))).toBe(true);
    expect(plan.writes[1]!.data.length).toBe(3 * MiB);
    // writes never overlap and stay in RAM
    const spans = plan.writes.map((w) => [w.guestAddress, w.guestAddress + w.data.length] as const);
    for (const [s, e] of spans) expect(s >= 0x8000_0000 && e <= 0x8000_0000 + 256 * MiB).toBe(true);
    for (let i = 1; i < spans.length; i++) expect(spans[i]![0]).toBeGreaterThanOrEqual(spans[i - 1]![1]);
  });

  it('boots vCPU 0 at the kernel with X0 = FDT and X1..X3 = 0; the others start powered off for PSCI', () => {
    const plan = layout.build(input({ cpus: 4 }));
    const fdt = plan.writes.find((w) => w.what === 'fdt')!.guestAddress;
    expect(plan.vcpus).toHaveLength(4);
    expect(plan.vcpus[0]).toEqual({
      id: 0,
      mpidr: 0,
      powerOff: false,
      features: [KVM_ARM_VCPU_PSCI_0_2],
      regs: { pc: 0x8000_0000, x0: fdt, x1: 0, x2: 0, x3: 0, pstate: AARCH64_BOOT_PSTATE },
    });
    expect(AARCH64_BOOT_PSTATE).toBe(0x3c5); // EL1h, DAIF masked
    for (const v of plan.vcpus.slice(1)) {
      expect(v.powerOff).toBe(true);
      expect(v.features).toEqual([KVM_ARM_VCPU_PSCI_0_2, KVM_ARM_VCPU_POWER_OFF]);
      expect(v.regs).toBeUndefined();
      expect(v.mpidr).toBe(mpidrAffinity(v.id));
    }
  });

  it('computes MPIDR affinity as KVM reset_mpidr does', () => {
    expect([0, 1, 15, 16, 17, 255, 256, 511].map(mpidrAffinity)).toEqual([0, 1, 0xf, 0x100, 0x101, 0xf0f, 0x1000, 0x1f0f]);
  });

  it('puts a device tree in RAM that matches the plan: memory, initrd range, one cpu node per vCPU', () => {
    const plan = layout.build(input({ cpus: 3, pciDevices: [{ device: 1, intPin: 1, irq: 4 }] }));
    const t = parseFdt(plan.writes.find((w) => w.what === 'fdt')!.data);
    const initrd = plan.writes.find((w) => w.what === 'initrd')!;
    const chosen = findNode(t.root, '/chosen')!;
    expect(cellsOf(findProperty(chosen, 'linux,initrd-start')!)).toEqual([0, initrd.guestAddress]);
    expect(cellsOf(findProperty(chosen, 'linux,initrd-end')!)).toEqual([0, initrd.guestAddress + initrd.data.length]);
    expect(stringsOf(findProperty(chosen, 'bootargs')!)).toEqual(['console=ttyS0']);
    expect(cellsOf(findProperty(findNode(t.root, '/memory@80000000')!, 'reg')!)).toEqual([0, 0x8000_0000, 0, 256 * MiB]);
    expect(findNode(t.root, '/cpus')!.children.map((c) => c.name)).toEqual(['cpu@0', 'cpu@1', 'cpu@2']);
    expect(cellsOf(findProperty(findNode(t.root, '/pci@10000')!, 'interrupt-map')!)).toHaveLength(10);
  });

  it('builds without an initrd: no initrd write, no initrd properties', () => {
    const plan = layout.build(input({ initrd: undefined }));
    expect(plan.writes.map((w) => w.what)).toEqual(['kernel', 'fdt']);
    expect(findProperty(findNode(parseFdt(plan.writes[1]!.data).root, '/chosen')!, 'linux,initrd-start')).toBeUndefined();
  });

  it('any RAM size and vCPU count either lays out a consistent plan or names what does not fit (300 runs)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 2, max: 2048 }), fc.integer({ min: 1, max: 64 }), fc.integer({ min: 0, max: 64 * MiB }), (memMiB, cpus, initrdSize) => {
        let plan;
        try {
          plan = layout.build(input({ memBytes: memMiB * MiB, cpus, initrd: INITRD_POOL.subarray(0, initrdSize) }));
        } catch (e) {
          expect(e).toBeInstanceOf(BootImageError);
          expect(['vmlinuz', 'initrd']).toContain((e as BootImageError).file);
          return;
        }
        expect(plan.vcpus).toHaveLength(cpus);
        const fdt = plan.writes.find((w) => w.what === 'fdt')!;
        expect(plan.vcpus[0]!.regs!.x0).toBe(fdt.guestAddress);
        expect(findNode(parseFdt(fdt.data).root, '/cpus')!.children).toHaveLength(cpus);
      }),
      { numRuns: 300 },
    );
  });
});

describe('Aarch64Layout errors name the file and the fix', () => {
  it('a kernel that is not an arm64 Image', () => {
    const act = (): unknown => layout.build(input({ kernel: new Uint8Array(4096), kernelPath: '/boot/bzImage' }));
    expect(act).toThrow(BootImageError);
    expect(act).toThrow('/boot/bzImage is not an arm64 Image (no ARM\\x64 magic at offset 56)');
  });

  it('a kernel that does not fit', () => {
    expect(() => layout.build(input({ memBytes: 32 * MiB, initrd: undefined }))).toThrow(/^vmlinuz does not fit in 32 MiB of RAM/);
  });

  it('an initrd that does not fit', () => {
    try {
      layout.build(input({ memBytes: 64 * MiB, initrd: new Uint8Array(15 * MiB) }));
      expect.fail('expected a BootImageError');
    } catch (e) {
      expect(e).toBeInstanceOf(BootImageError);
      expect((e as BootImageError).file).toBe('initrd');
      expect((e as Error).message).toMatch(/^initrd \(15 MiB\) does not fit in 64 MiB of RAM/);
    }
  });

  it('bad vCPU count or RAM size', () => {
    expect(() => layout.build(input({ cpus: 0 }))).toThrow(ConfigError);
    expect(() => layout.build(input({ memBytes: 256 * MiB + 1 }))).toThrow(ConfigError);
  });
});

describe('writeDeviceTreeBlob (what `kvmkit dump-fdt` will call)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kvmkit-dump-fdt-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('writes the blob a boot with these options would use', async () => {
    const path = join(dir, 'plain.dtb');
    const result = await writeDeviceTreeBlob({ mem: 512, cpus: 2, cmdline: 'console=ttyS0 root=/dev/vda' }, path);
    const blob = new Uint8Array(readFileSync(path));
    expect(result.size).toBe(blob.length);
    expect(result.placement.fdtAddress).toBe(0x8000_0000 + 510 * MiB);
    const t = parseFdt(blob);
    expect(findNode(t.root, '/cpus')!.children).toHaveLength(2);
    expect(findProperty(findNode(t.root, '/chosen')!, 'linux,initrd-start')).toBeUndefined();
    if (haveDtc) expect(runOnBlob('fdtget', ['-t', 's', '{}', '/chosen', 'bootargs'], blob).stdout).toBe('console=ttyS0 root=/dev/vda\n');
  });

  it('places the initrd after the kernel read from disk, exactly as Aarch64Layout.build does', async () => {
    const kernelPath = join(dir, 'Image');
    const initrdPath = join(dir, 'initrd.img');
    writeFileSync(kernelPath, kernel());
    writeFileSync(initrdPath, new Uint8Array(3 * MiB));
    const path = join(dir, 'initrd.dtb');
    const seeds = { kaslrSeed: 1n, rngSeed: null };
    await writeDeviceTreeBlob({ mem: 256, cpus: 4, cmdline: 'console=ttyS0', kernel: kernelPath, initrd: initrdPath, ...seeds }, path);
    const fromBuild = new Aarch64Layout(seeds).build(input()).writes.find((w) => w.what === 'fdt')!.data;
    expect(new Uint8Array(readFileSync(path))).toEqual(fromBuild);
    // initrdSize instead of a file gives the same blob
    await writeDeviceTreeBlob({ mem: 256, cpus: 4, cmdline: 'console=ttyS0', kernel: kernelPath, initrdSize: 3 * MiB, ...seeds }, path);
    expect(new Uint8Array(readFileSync(path))).toEqual(fromBuild);
  });

  it('rejects options it cannot honour', async () => {
    const path = join(dir, 'x.dtb');
    await expect(writeDeviceTreeBlob({ mem: 64, cpus: 1, cmdline: '', initrdSize: MiB }, path)).rejects.toThrow(/kernel is needed to describe an initrd/);
    await expect(writeDeviceTreeBlob({ mem: 64.5, cpus: 1, cmdline: '' }, path)).rejects.toThrow(ConfigError);
    await expect(writeDeviceTreeBlob({ mem: 1, cpus: 1, cmdline: '' }, path)).rejects.toThrow('mem must be a whole number of MiB from 2 to 524288 for an aarch64 guest, got 1');
    await expect(writeDeviceTreeBlob({ mem: 64, cpus: 513, cmdline: '' }, path)).rejects.toThrow(/^cpus must be an integer from 1 to 512/);
    await expect(writeDeviceTreeBlob({ mem: 64, cpus: 1, cmdline: '', kernel: join(dir, 'missing') }, path)).rejects.toThrow(BootImageError);
    await expect(writeDeviceTreeBlob({ mem: 64, cpus: 1, cmdline: '', kernel: path + '.none', initrd: join(dir, 'missing') }, path)).rejects.toThrow(/cannot read initrd/);
  });
});
