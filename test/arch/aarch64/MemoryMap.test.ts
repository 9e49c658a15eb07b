import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ARM64_IMAGE_BASE_ALIGN } from '../../../src/arch/aarch64/ArmImage';
import { placeAarch64Boot } from '../../../src/arch/aarch64/BootPlacement';
import {
  AARCH64_FDT_MAX_SIZE,
  AARCH64_GIC_DIST_BASE,
  AARCH64_MAX_RAM,
  AARCH64_MAX_VCPUS,
  AARCH64_MIN_RAM,
  AARCH64_PCI_CFG_BASE,
  AARCH64_PCI_CFG_WINDOW_SIZE,
  AARCH64_PCI_MEM_BASE,
  AARCH64_PCI_MEM_SIZE,
  AARCH64_PHYS_MEM_START,
  AARCH64_PLATFORM_MMIO_SIZE,
  AARCH64_SERIAL_ADDR,
  type AddressRange,
  aarch64MemoryMap,
} from '../../../src/arch/aarch64/MemoryMap';
import { BootImageError, ConfigError } from '../../../src/errors';

const MiB = 2 ** 20;
const memArb = fc.integer({ min: AARCH64_MIN_RAM / 4096, max: AARCH64_MAX_RAM / 4096 }).map((pages) => pages * 4096);
const cpusArb = fc.integer({ min: 1, max: AARCH64_MAX_VCPUS });
const end = (r: AddressRange): number => r.base + r.size;
const disjoint = (a: AddressRange, b: AddressRange): boolean => end(a) <= b.base || end(b) <= a.base;

describe('aarch64 memory map (crosvm aarch64/src/lib.rs)', () => {
  it("uses crosvm's addresses", () => {
    expect(AARCH64_PHYS_MEM_START).toBe(0x8000_0000);
    expect(AARCH64_GIC_DIST_BASE).toBe(0x3fff_0000);
    expect(AARCH64_SERIAL_ADDR).toBe(0x3f8);
    expect([AARCH64_PCI_CFG_BASE, AARCH64_PCI_CFG_WINDOW_SIZE]).toEqual([0x1_0000, 0x100_0000]);
    expect([AARCH64_PCI_MEM_BASE, AARCH64_PCI_MEM_SIZE]).toEqual([0x200_0000, 0x200_0000]);
    expect(AARCH64_PLATFORM_MMIO_SIZE).toBe(0x4000_0000);
    const map = aarch64MemoryMap(512 * MiB, 4);
    expect(map.ram).toEqual({ base: 0x8000_0000, size: 512 * MiB });
    expect(map.gicRedistributors).toEqual({ base: 0x3fff_0000 - 4 * 0x2_0000, size: 4 * 0x2_0000 });
    expect(map.pciEcam).toEqual({ base: 0x1_0000, size: 0x10_0000 });
    expect(map.platformMmio).toEqual({ base: 0xa000_0000, size: 0x4000_0000 });
    expect(map.pciMmio64).toEqual({ base: 0xe000_0000, size: 2 ** 40 - 0xe000_0000 });
  });

  it('no two regions overlap and all lie in the 40-bit IPA space, for any RAM size and vCPU count (1000 runs)', () => {
    fc.assert(
      fc.property(memArb, cpusArb, (mem, cpus) => {
        const map = aarch64MemoryMap(mem, cpus);
        const { pciConfigWindow, pciEcam, ...rest } = map;
        const regions = Object.entries({ ...rest, pciConfigWindow });
        for (const [, r] of regions) {
          expect(r.size).toBeGreaterThan(0);
          expect(r.base).toBeGreaterThanOrEqual(0);
          expect(end(r)).toBeLessThanOrEqual(2 ** 40);
        }
        for (let i = 0; i < regions.length; i++) {
          for (let j = i + 1; j < regions.length; j++) {
            const [na, a] = regions[i]!;
            const [nb, b] = regions[j]!;
            expect(disjoint(a, b), `${na} [0x${a.base.toString(16)}, 0x${end(a).toString(16)}) overlaps ${nb} [0x${b.base.toString(16)}, 0x${end(b).toString(16)})`).toBe(true);
          }
        }
        // ECAM for bus 0 lies inside the reserved configuration window
        expect(pciEcam.base >= pciConfigWindow.base && end(pciEcam) <= end(pciConfigWindow)).toBe(true);
        // every device region is below RAM, the windows after it
        for (const r of [map.serial, pciConfigWindow, map.pciMmio32, map.gicDistributor, map.gicRedistributors]) expect(end(r)).toBeLessThanOrEqual(map.ram.base);
        expect(map.platformMmio.base).toBe(end(map.ram));
        expect(map.pciMmio64.base).toBe(end(map.platformMmio));
        // GICv3 frames are 64 KiB aligned; one 128 KiB redistributor per vCPU, right below the distributor
        expect(map.gicDistributor.base % 0x1_0000).toBe(0);
        expect(map.gicRedistributors.base % 0x1_0000).toBe(0);
        expect(map.gicRedistributors.size).toBe(cpus * 0x2_0000);
        expect(end(map.gicRedistributors)).toBe(map.gicDistributor.base);
      }),
      { numRuns: 1000 },
    );
  });

  it.each([
    ['mem', () => aarch64MemoryMap(0, 1)],
    ['mem', () => aarch64MemoryMap(MiB, 1)],
    ['mem', () => aarch64MemoryMap(64 * MiB + 1, 1)],
    ['mem', () => aarch64MemoryMap(AARCH64_MAX_RAM + 4096, 1)],
    ['mem', () => aarch64MemoryMap(Number.NaN, 1)],
    ['cpus', () => aarch64MemoryMap(64 * MiB, 0)],
    ['cpus', () => aarch64MemoryMap(64 * MiB, AARCH64_MAX_VCPUS + 1)],
    ['cpus', () => aarch64MemoryMap(64 * MiB, 1.5)],
  ])('rejects a bad %s with a ConfigError naming it', (option, act) => {
    expect(act).toThrow(ConfigError);
    try {
      act();
    } catch (e) {
      expect((e as ConfigError).option).toBe(option);
    }
  });
});

describe('kernel, initrd and FDT placement (crosvm build_vm with FdtPosition::End)', () => {
  it('places the Debian 6.1 kernel, a 16 MiB-aligned initrd and the FDT in the last 2 MiB', () => {
    const p = placeAarch64Boot(512 * MiB, { textOffset: 0, size: 0x201_0000 }, 5 * MiB);
    expect(p.kernelBase).toBe(0x8000_0000);
    expect(p.kernelLoad).toBe(0x8000_0000);
    expect(p.kernelEnd).toBe(0x8201_0000);
    expect(p.initrd).toEqual({ start: 0x8300_0000, end: 0x8300_0000 + 5 * MiB });
    expect(p.fdtAddress).toBe(0x8000_0000 + 512 * MiB - 2 * MiB);
  });

  it('loads at the 2 MiB base + text_offset', () => {
    expect(placeAarch64Boot(64 * MiB, { textOffset: 0x80000, size: MiB }, undefined).kernelLoad).toBe(0x8008_0000);
  });

  it('every placement keeps kernel, initrd and FDT apart inside RAM, or says which file does not fit (1000 runs)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 4096 }).map((m) => m * MiB),
        fc.constantFrom(0, 0x80000, 0x20_0000),
        fc.integer({ min: 64, max: 256 * MiB }),
        fc.option(fc.integer({ min: 0, max: 256 * MiB }), { nil: undefined }),
        (mem, textOffset, size, initrdSize) => {
          let p;
          try {
            p = placeAarch64Boot(mem < AARCH64_MIN_RAM ? AARCH64_MIN_RAM : mem, { textOffset, size }, initrdSize, { kernel: 'K', initrd: 'I' });
          } catch (e) {
            expect(e).toBeInstanceOf(BootImageError);
            expect(['K', 'I']).toContain((e as BootImageError).file);
            expect((e as Error).message).toMatch(/does not fit in \d+ MiB of RAM/);
            return;
          }
          const ramEnd = AARCH64_PHYS_MEM_START + Math.max(mem, AARCH64_MIN_RAM);
          expect(p.kernelBase % ARM64_IMAGE_BASE_ALIGN).toBe(0);
          expect(p.kernelLoad).toBe(p.kernelBase + textOffset);
          expect(p.kernelEnd).toBe(p.kernelLoad + size);
          expect(p.kernelBase).toBeGreaterThanOrEqual(AARCH64_PHYS_MEM_START);
          expect(p.fdtAddress % (2 * MiB)).toBe(0);
          expect(p.fdtAddress + AARCH64_FDT_MAX_SIZE).toBeLessThanOrEqual(ramEnd);
          expect(p.kernelEnd).toBeLessThanOrEqual(p.fdtAddress);
          if (initrdSize !== undefined) {
            expect(p.initrd!.start % (16 * MiB)).toBe(0);
            expect(p.initrd!.start).toBeGreaterThanOrEqual(p.kernelEnd);
            expect(p.initrd!.end - p.initrd!.start).toBe(initrdSize);
            expect(p.initrd!.end).toBeLessThanOrEqual(p.fdtAddress);
          } else {
            expect(p.initrd).toBeUndefined();
          }
        },
      ),
      { numRuns: 1000 },
    );
  });

  it('says how much room a kernel or initrd lacks', () => {
    expect(() => placeAarch64Boot(32 * MiB, { textOffset: 0, size: 0x201_0000 }, undefined, { kernel: 'vmlinuz', initrd: 'i' })).toThrow(
      'vmlinuz does not fit in 32 MiB of RAM: it needs 32.1 MiB (text_offset 0x0 + 32.1 MiB) but 30 MiB lie below the device tree at 0x81e00000; give the guest more memory',
    );
    expect(() => placeAarch64Boot(64 * MiB, { textOffset: 0, size: 0x201_0000 }, 20 * MiB, { kernel: 'k', initrd: 'initrd.img' })).toThrow(
      /^initrd.img \(20 MiB\) does not fit in 64 MiB of RAM: it goes at 0x83000000, .* only 14 MiB lie between there and the device tree at 0x83e00000/,
    );
  });
});
