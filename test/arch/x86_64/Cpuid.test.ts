import { describe, expect, it } from 'vitest';
import { buildCpuid, idBits, PVM_HIDDEN_FEATURES, pvmClearCpuidParam, pvmHiddenFeaturesPresent } from '../../../src/arch/x86_64/Cpuid';
import type { CpuidEntry } from '../../../src/arch/x86_64/types';
import kvmPvmSupported from './fixtures/kvm-supported-cpuid-pvm-amd-epyc.json';
import hostCpuid from './fixtures/host-cpuid-amd-epyc.json';

// kvmPvmSupported: KVM_GET_SUPPORTED_CPUID on this machine's PVM KVM; hostCpuid: the same
// machine's raw CPUID, feature-rich (AVX-512, XSAVE, SSE4...) like a hardware KVM (fixtures/README.md).
const supported = kvmPvmSupported as CpuidEntry[];
const richHost = hostCpuid as CpuidEntry[];

const leaf = (entries: CpuidEntry[], fn: number, index = 0): CpuidEntry => {
  const e = entries.find((x) => x.function === fn && x.index === index);
  if (!e) throw new Error(`no CPUID leaf 0x${fn.toString(16)}.${index}`);
  return e;
};
const bit = (v: number, n: number): number => (v >>> n) & 1;

describe('buildCpuid topology', () => {
  it.each([
    [0, 1],
    [0, 4],
    [3, 4],
    [5, 6],
    [63, 64],
  ])('vCPU %i of %i', (vcpuId, cpus) => {
    const out = buildCpuid(supported, { vcpuId, cpus, pvm: false });
    const l1 = leaf(out, 1);
    expect(l1.ebx >>> 24).toBe(vcpuId);
    expect((l1.ebx >>> 16) & 0xff).toBe(cpus);
    expect(l1.ebx & 0xffff).toBe(leaf(supported, 1).ebx & 0xffff); // CLFLUSH size, brand index kept
    expect(bit(l1.ecx, 31)).toBe(1); // hypervisor
    expect(bit(l1.edx, 28)).toBe(cpus > 1 ? 1 : 0); // HTT

    // Leaf 0xB rebuilt: SMT level of 1 thread, core level of `cpus` cores, then invalid.
    const b = out.filter((e) => e.function === 0xb);
    expect(b.map((e) => [e.index, e.eax, e.ebx, e.ecx, e.edx, e.flags])).toEqual([
      [0, 0, 1, 0x100, vcpuId, 1],
      [1, idBits(cpus), cpus, 0x201, vcpuId, 1],
      [2, 0, 0, 2, vcpuId, 1],
    ]);
    expect(out.some((e) => e.function === 0x1f)).toBe(false); // max basic leaf 0x1c

    // AMD: extended APIC id, core count, cache sharing.
    expect(leaf(out, 0x8000_001e).eax).toBe(vcpuId);
    expect(leaf(out, 0x8000_001e).ebx & 0xffff).toBe(vcpuId);
    expect(leaf(out, 0x8000_0008).ecx & 0xff).toBe(cpus - 1);
    expect((leaf(out, 0x8000_0008).ecx >>> 12) & 0xf).toBe(idBits(cpus));
    expect((leaf(out, 0x8000_001d, 0).eax >>> 14) & 0xfff).toBe(0); // L1d per core
    expect((leaf(out, 0x8000_001d, 2).eax >>> 14) & 0xfff).toBe(0); // L2 per core
    expect((leaf(out, 0x8000_001d, 3).eax >>> 14) & 0xfff).toBe(2 ** idBits(cpus) - 1); // L3 shared
    expect(leaf(out, 0x8000_001d, 3).eax & 0x3fff).toBe(leaf(supported, 0x8000_001d, 3).eax & 0x3fff);
  });

  it('keeps every leaf of the supported list, in order, and does not modify it', () => {
    const before = JSON.stringify(supported);
    const out = buildCpuid(supported, { vcpuId: 1, cpus: 2, pvm: true });
    expect(JSON.stringify(supported)).toBe(before);
    const keys = (l: CpuidEntry[]) => l.map((e) => `${e.function}.${e.index}`);
    expect(keys(out).filter((k) => !k.startsWith('11.'))).toEqual(keys(supported).filter((k) => !k.startsWith('11.')));
    for (const e of out) for (const r of [e.eax, e.ebx, e.ecx, e.edx]) expect(r >>> 0).toBe(r);
  });

  it('rewrites leaf 4 core and sharing counts, and rebuilds 0x1F when the max leaf reaches it', () => {
    const synthetic: CpuidEntry[] = [
      { function: 0, index: 0, flags: 0, eax: 0x1f, ebx: 0, ecx: 0, edx: 0 },
      { function: 4, index: 0, flags: 1, eax: 0x1c00_4121, ebx: 0x01c0_003f, ecx: 0x3f, edx: 0 }, // L1d, host: 8 cores, 2 threads
      { function: 4, index: 3, flags: 1, eax: 0x1c03_c163, ebx: 0x03c0_003f, ecx: 0x3fff, edx: 4 }, // L3
      { function: 4, index: 4, flags: 1, eax: 0, ebx: 0, ecx: 0, edx: 0 },
      { function: 0x1f, index: 0, flags: 1, eax: 1, ebx: 2, ecx: 0x100, edx: 9 },
      { function: 0x1f, index: 1, flags: 1, eax: 4, ebx: 16, ecx: 0x201, edx: 9 },
    ];
    const out = buildCpuid(synthetic, { vcpuId: 2, cpus: 3, pvm: false });
    expect(leaf(out, 4, 0).eax).toBe((3 << 26) | (0 << 14) | 0x121);
    expect(leaf(out, 4, 3).eax).toBe((3 << 26) | (3 << 14) | 0x163);
    expect(leaf(out, 4, 3).edx).toBe(4);
    expect(leaf(out, 4, 4).eax).toBe(0);
    expect(out.filter((e) => e.function === 0x1f).map((e) => [e.index, e.eax, e.ebx, e.ecx, e.edx])).toEqual([
      [0, 0, 1, 0x100, 2],
      [1, 2, 3, 0x201, 2],
      [2, 0, 0, 2, 2],
    ]);
  });

  it('rejects a vCPU id outside 0..cpus-1', () => {
    expect(() => buildCpuid(supported, { vcpuId: 2, cpus: 2, pvm: false })).toThrow(RangeError);
    expect(() => buildCpuid(supported, { vcpuId: 0, cpus: 0, pvm: false })).toThrow(RangeError);
  });
});

describe('buildCpuid on a PVM host', () => {
  it('hides the listed features of a feature-rich host', () => {
    const plain = buildCpuid(richHost, { vcpuId: 0, cpus: 1, pvm: false });
    const pvm = buildCpuid(richHost, { vcpuId: 0, cpus: 1, pvm: true });
    // the rich host really offers them
    for (const [fn, idx, reg, n] of [
      [1, 0, 'ecx', 23], // POPCNT
      [1, 0, 'ecx', 28], // AVX
      [1, 0, 'ecx', 26], // XSAVE
      [7, 0, 'ebx', 16], // AVX512F
    ] as const) {
      expect(bit(leaf(plain, fn, idx)[reg], n)).toBe(1);
    }
    for (const f of PVM_HIDDEN_FEATURES) {
      const e = pvm.find((x) => x.function === f.leaf && x.index === f.subleaf);
      if (e) expect(bit(e[f.register], f.bit), f.name).toBe(0);
    }
    const named = (n: string) => PVM_HIDDEN_FEATURES.find((f) => f.name === n)!;
    for (const n of ['POPCNT', 'CMPXCHG16B', 'RDRAND', 'SSSE3', 'PCID', 'AVX', 'XSAVE', 'OSXSAVE', 'FMA', 'F16C', 'RDSEED', 'FSGSBASE', 'SMAP', 'INVPCID', 'AVX2', 'AVX512F', 'AVX512VL', 'AVX512BW']) {
      expect(named(n), n).toBeDefined();
    }
    for (const e of pvm.filter((x) => x.function === 0xd)) expect([e.eax, e.ebx, e.ecx, e.edx]).toEqual([0, 0, 0, 0]);
  });

  it('leaves other features alone', () => {
    const plain = buildCpuid(richHost, { vcpuId: 0, cpus: 2, pvm: false });
    const pvm = buildCpuid(richHost, { vcpuId: 0, cpus: 2, pvm: true });
    expect(leaf(pvm, 1).edx).toBe(leaf(plain, 1).edx); // FPU, SSE, SSE2, HTT...
    expect(bit(leaf(pvm, 1).ecx, 21)).toBe(1); // x2APIC
    expect(bit(leaf(pvm, 1).ecx, 0)).toBe(1); // SSE3
    expect(bit(leaf(pvm, 7).ebx, 7)).toBe(1); // SMEP
    expect(leaf(pvm, 0x8000_0001).edx).toBe(leaf(plain, 0x8000_0001).edx); // LM, NX, SYSCALL
    expect(leaf(pvm, 0x4000_0001)).toEqual(leaf(plain, 0x4000_0001)); // KVM PV features
  });

  it('reports what it takes away from this machine\'s PVM KVM', () => {
    expect(pvmHiddenFeaturesPresent(supported).map((f) => f.name)).toEqual(['CMPXCHG16B', 'GFNI']);
    expect(pvmHiddenFeaturesPresent(richHost).map((f) => f.name)).toContain('AVX512F');
    for (const f of PVM_HIDDEN_FEATURES) expect(f.linuxName).toMatch(/^[a-z0-9_]+$/);
  });
});

describe('pvmClearCpuidParam', () => {
  it('names the root features within Linux\'s 127-character limit', () => {
    const param = pvmClearCpuidParam();
    expect(param).toBe('clearcpuid=ssse3,cx16,pcid,popcnt,xsave,rdrand,fsgsbase,invpcid,rdseed,smap,pclmulqdq,sse4_1,sse4_2,aes,sha_ni,gfni,abm,sse4a');
    expect(param.length - 'clearcpuid='.length).toBeLessThanOrEqual(127);
  });
});
