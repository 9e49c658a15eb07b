import { existsSync, readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { BootPlan, GuestWrite } from '../../../src/arch/ArchLayout';
import { buildE820Map, E820Type } from '../../../src/arch/x86_64/E820Map';
import type { X86VcpuInit } from '../../../src/arch/x86_64/types';
import { X86Layout } from '../../../src/arch/x86_64/X86Layout';
import { BootImageError, ConfigError } from '../../../src/errors';
import { syntheticBzImage } from './syntheticBzImage';
import { FIXTURES } from '../../helpers/env';

const FIXTURE_KERNEL = `${FIXTURES}/linux/vmlinuz`;

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
const layout = new X86Layout();

const find = (plan: BootPlan<X86VcpuInit>, what: string): GuestWrite => {
  const w = plan.writes.find((x) => x.what === what);
  if (!w) throw new Error(`no write "${what}"`);
  return w;
};
const bootParams = (plan: BootPlan<X86VcpuInit>): DataView => {
  const w = find(plan, 'boot_params');
  return new DataView(w.data.buffer, w.data.byteOffset, w.data.byteLength);
};
const errorOf = (f: () => unknown): Error => {
  try {
    f();
  } catch (e) {
    return e as Error;
  }
  throw new Error('did not throw');
};

describe('X86Layout.ramRegions', () => {
  it('keeps small guests below the MMIO hole', () => {
    expect(layout.ramRegions(256 * MiB)).toEqual([{ guestAddress: 0, size: 256 * MiB }]);
    expect(layout.ramRegions(3 * GiB)).toEqual([{ guestAddress: 0, size: 3 * GiB }]);
  });

  it('continues above 4 GiB', () => {
    expect(layout.ramRegions(5 * GiB)).toEqual([
      { guestAddress: 0, size: 3 * GiB },
      { guestAddress: 4 * GiB, size: 2 * GiB },
    ]);
  });

  it('rejects less than 16 MiB or a size that is not whole pages, naming mem', () => {
    const e = errorOf(() => layout.ramRegions(1 * MiB));
    expect(e).toBeInstanceOf(ConfigError);
    expect((e as ConfigError).option).toBe('mem');
    expect(e.message).toMatch(/^mem must be at least 16 MiB/);
    expect(() => layout.ramRegions(16 * MiB + 512)).toThrow(/^mem must be a multiple of 4 KiB/);
  });
});

describe('X86Layout.build', () => {
  const kernel = syntheticBzImage({ setupSects: 30, payloadSize: 0x30000, initSize: 8 * MiB });
  const initrd = new Uint8Array(1 * MiB + 12345).fill(0xab);
  const plan = layout.build({ memBytes: 256 * MiB, cpus: 2, kernel, kernelPath: '/k/vmlinuz', initrd, cmdline: 'console=ttyS0 reboot=k' });

  it('loads the protected-mode kernel at 1 MiB', () => {
    const k = find(plan, 'kernel');
    expect(k.guestAddress).toBe(0x100000);
    expect(k.data.length).toBe(0x30000);
    expect(k.data[0]).toBe(0x5a);
    expect(k.data[1]).toBe(0x5b);
  });

  it('puts the initrd page-aligned at the top of RAM and tells the kernel', () => {
    const w = find(plan, 'initrd');
    expect(w.guestAddress % 4096).toBe(0);
    expect(w.guestAddress).toBe(Math.floor((256 * MiB - initrd.length) / 4096) * 4096);
    expect(w.guestAddress + w.data.length).toBeLessThanOrEqual(256 * MiB);
    expect(w.data).toBe(initrd);
    const bp = bootParams(plan);
    expect(bp.getUint32(0x218, true)).toBe(w.guestAddress);
    expect(bp.getUint32(0x21c, true)).toBe(initrd.length);
  });

  it('writes the NUL-terminated command line at 0x20000', () => {
    const c = find(plan, 'cmdline');
    expect(c.guestAddress).toBe(0x20000);
    expect(new TextDecoder().decode(c.data)).toBe('console=ttyS0 reboot=k\0');
    expect(bootParams(plan).getUint32(0x228, true)).toBe(0x20000);
  });

  it('points boot_params at the RSDP and carries the e820 map', () => {
    const bp = bootParams(plan);
    expect(find(plan, 'boot_params').guestAddress).toBe(0x7000);
    expect(bp.getBigUint64(0x70, true)).toBe(0xe0000n);
    expect(find(plan, 'acpi:RSDP').guestAddress).toBe(0xe0000);
    expect(bp.getUint8(0x1e8)).toBe(buildE820Map(256 * MiB).length);
    expect(bp.getUint8(0x1f1)).toBe(30);
  });

  it('writes the GDT, IDT, page tables, MP table and every ACPI table', () => {
    const whats = plan.writes.map((w) => w.what);
    for (const w of ['gdt', 'idt', 'page_tables:pml4', 'page_tables:pdpt', 'page_tables:pd', 'mptable:floating_pointer', 'mptable:config']) expect(whats).toContain(w);
    for (const s of ['RSDP', 'RSDT', 'XSDT', 'FACS', 'DSDT', 'FACP', 'APIC']) expect(whats).toContain(`acpi:${s}`);
    expect(find(plan, 'gdt').guestAddress).toBe(0x500);
    expect(find(plan, 'idt').guestAddress).toBe(0x520);
    expect(find(plan, 'page_tables:pml4').guestAddress).toBe(0x9000);
  });

  it('gives the BSP registers and every vCPU its APIC id, FPU and MSRs', () => {
    expect(plan.vcpus).toHaveLength(2);
    const [bsp, ap] = plan.vcpus;
    expect(bsp!.apicId).toBe(0);
    expect(bsp!.regs).toEqual({ rip: 0x100200, rsp: 0x8ff0, rbp: 0x8ff0, rsi: 0x7000, rflags: 2 });
    expect(bsp!.sregs).toMatchObject({ cr3: 0x9000, cr4: 0x20, efer: 0x500, gdt: { base: 0x500, limit: 31 } });
    expect(ap!.apicId).toBe(1);
    expect(ap!.regs).toBeUndefined();
    expect(ap!.sregs).toBeUndefined();
    for (const v of plan.vcpus) {
      expect(v.fpu).toEqual({ fcw: 0x37f, mxcsr: 0x1f80 });
      expect(v.msrs.length).toBe(11);
    }
  });

  it('keeps the initrd below initrd_addr_max + 1 on big guests', () => {
    const big = layout.build({ memBytes: 4 * GiB, cpus: 1, kernel, initrd, cmdline: '' });
    const w = find(big, 'initrd');
    expect(w.guestAddress + w.data.length).toBeLessThanOrEqual(0x8000_0000);
    expect(w.guestAddress).toBe(Math.floor((0x8000_0000 - initrd.length) / 4096) * 4096);
  });

  it('works without an initrd', () => {
    const p = layout.build({ memBytes: 64 * MiB, cpus: 1, kernel, cmdline: 'quiet' });
    expect(p.writes.some((w) => w.what === 'initrd')).toBe(false);
    expect(bootParams(p).getUint32(0x218, true)).toBe(0);
    expect(bootParams(p).getUint32(0x21c, true)).toBe(0);
  });

  it('moves the MP configuration table out of the EBDA for more than 40 vCPUs', () => {
    const p = layout.build({ memBytes: 64 * MiB, cpus: 64, kernel, cmdline: '' });
    expect(find(p, 'mptable:config').guestAddress).toBe(0xf0000);
    expect(p.vcpus.map((v) => v.apicId)).toEqual(Array.from({ length: 64 }, (_, i) => i));
  });

  describe('errors', () => {
    it('names mem when the kernel does not fit', () => {
      const e = errorOf(() => layout.build({ memBytes: 16 * MiB, cpus: 1, kernel, kernelPath: '/k/vmlinuz', cmdline: '' }));
      expect(e).toBeInstanceOf(ConfigError);
      expect((e as ConfigError).option).toBe('mem');
      expect(e.message).toContain('/k/vmlinuz');
      expect(e.message).toContain('init_size 8 MiB');
      expect(e.message).toContain('24 MiB');
    });

    it('names mem and the sizes when the initrd does not fit above the kernel', () => {
      const e = errorOf(() => layout.build({ memBytes: 32 * MiB, cpus: 1, kernel, initrd: new Uint8Array(20 * MiB), cmdline: '' }));
      expect(e).toBeInstanceOf(ConfigError);
      expect(e.message).toMatch(/^mem is too small: the initrd \(20 MiB\) does not fit between the end of the kernel at 24 MiB and 32 MiB/);
      expect(e.message).toContain('at least 44 MiB');
    });

    it('blames the initrd when initrd_addr_max is the limit', () => {
      const lowMax = syntheticBzImage({ initrdAddrMax: 0x37ff_ffff, initSize: 8 * MiB });
      const e = errorOf(() => layout.build({ memBytes: 2 * GiB, cpus: 1, kernel: lowMax, initrd: new Uint8Array(900 * MiB), cmdline: '' }));
      expect(e).toBeInstanceOf(BootImageError);
      expect((e as BootImageError).file).toBe('initrd');
      expect(e.message).toContain('initrd_addr_max 0x37ffffff');
    });

    it('names cmdline when it exceeds cmdline_size', () => {
      const short = syntheticBzImage({ cmdlineSize: 10 });
      expect(() => layout.build({ memBytes: 64 * MiB, cpus: 1, kernel: short, cmdline: '0123456789' })).not.toThrow();
      const e = errorOf(() => layout.build({ memBytes: 64 * MiB, cpus: 1, kernel: short, cmdline: '0123456789a' }));
      expect(e).toBeInstanceOf(ConfigError);
      expect(e.message).toBe('cmdline must be at most 10 bytes for this kernel (its setup header\'s cmdline_size), got "11 bytes"');
    });

    it('names cpus outside 1..254', () => {
      for (const cpus of [0, 255]) expect(() => layout.build({ memBytes: 64 * MiB, cpus, kernel, cmdline: '' })).toThrow(/^cpus must be an integer from 1 to 254/);
    });

    it('passes kernel format errors through with the kernel path', () => {
      const e = errorOf(() => layout.build({ memBytes: 64 * MiB, cpus: 1, kernel: new Uint8Array(4096), kernelPath: 'bad.img', cmdline: '' }));
      expect(e).toBeInstanceOf(BootImageError);
      expect((e as BootImageError).file).toBe('bad.img');
    });
  });
});

describe('X86Layout properties', () => {
  const smallKernel = syntheticBzImage({ payloadSize: 0x8000, prefAddress: 0x200000, initSize: 2 * MiB });

  it('lays out any machine from 16 MiB to 64 GiB and 1 to 64 vCPUs consistently', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: (16 * MiB) / 4096, max: (64 * GiB) / 4096 }).map((pages) => pages * 4096),
        fc.integer({ min: 1, max: 64 }),
        fc.integer({ min: 0, max: 4 * MiB }),
        (memBytes, cpus, initrdSize) => {
          const initrd = initrdSize > 0 ? new Uint8Array(initrdSize) : undefined;
          const plan = layout.build({ memBytes, cpus, kernel: smallKernel, initrd, cmdline: 'console=ttyS0' });

          // RAM regions: never in the MMIO hole, summing to mem.
          for (const r of plan.ramRegions) {
            const end = r.guestAddress + r.size;
            expect(end <= 3 * GiB || r.guestAddress >= 4 * GiB).toBe(true);
          }
          expect(plan.ramRegions.reduce((s, r) => s + r.size, 0)).toBe(memBytes);

          // e820: sorted, disjoint, inside RAM; RAM + the 384 KiB below 1 MiB that is reserved or the VGA hole = mem.
          const e820 = buildE820Map(memBytes);
          for (let i = 1; i < e820.length; i++) expect(e820[i]!.addr).toBeGreaterThanOrEqual(e820[i - 1]!.addr + e820[i - 1]!.size);
          const ramSum = e820.filter((e) => e.type === E820Type.RAM).reduce((s, e) => s + e.size, 0);
          expect(ramSum).toBe(memBytes - (0x100000 - 0x9fc00));
          const inRam = (a: number, n: number) => plan.ramRegions.some((r) => a >= r.guestAddress && a + n <= r.guestAddress + r.size);
          for (const e of e820) expect(inRam(e.addr, e.size)).toBe(true);

          // Writes: inside RAM and inside an e820 RAM or reserved range; no two overlap.
          for (const w of plan.writes) {
            expect(inRam(w.guestAddress, w.data.length), w.what).toBe(true);
            const covered = e820.some((e) => w.guestAddress >= e.addr && w.guestAddress + w.data.length <= e.addr + e.size);
            expect(covered, w.what).toBe(true);
          }
          const sorted = [...plan.writes].sort((a, b) => a.guestAddress - b.guestAddress);
          for (let i = 1; i < sorted.length; i++) {
            const prev = sorted[i - 1]!;
            expect(sorted[i]!.guestAddress, `${prev.what} overlaps ${sorted[i]!.what}`).toBeGreaterThanOrEqual(prev.guestAddress + prev.data.length);
          }
          expect(plan.vcpus).toHaveLength(cpus);
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe('X86Layout with a real kernel', () => {
  // Default: the Debian kernel of the Linux fixture, which the test set-up builds.
  const real = process.env.KVMKIT_TEST_BZIMAGE ?? (existsSync(FIXTURE_KERNEL) ? FIXTURE_KERNEL : undefined);
  const haveReal = real !== undefined && existsSync(real);
  if (!haveReal) console.log(`skipping the real-kernel layout test: ${real ? `${real} does not exist` : 'set KVMKIT_TEST_BZIMAGE to a Debian cloud kernel to run it'}`);
  it.skipIf(!haveReal)('lays out KVMKIT_TEST_BZIMAGE with a 30 MiB initrd in 256 MiB', () => {
    const kernel = new Uint8Array(readFileSync(real!));
    const plan = layout.build({ memBytes: 256 * MiB, cpus: 2, kernel, kernelPath: real, initrd: new Uint8Array(30 * MiB), cmdline: 'console=ttyS0' });
    const k = find(plan, 'kernel');
    const i = find(plan, 'initrd');
    expect(k.guestAddress).toBe(0x100000);
    expect(k.data.length).toBe(kernel.length - (kernel[0x1f1]! + 1) * 512);
    expect(i.guestAddress + i.data.length).toBeLessThanOrEqual(256 * MiB);
    // above the kernel's runtime footprint (pref_address + init_size)
    const v = new DataView(kernel.buffer, kernel.byteOffset);
    expect(i.guestAddress).toBeGreaterThanOrEqual(Number(v.getBigUint64(0x258, true)) + v.getUint32(0x260, true));
    expect(() => layout.build({ memBytes: 48 * MiB, cpus: 1, kernel, kernelPath: real, cmdline: '' })).toThrow(/^mem is too small for/);
  });
});
