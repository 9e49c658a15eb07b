/**
 * Per-vCPU CPUID tables built from KVM_GET_SUPPORTED_CPUID.
 *
 * Topology: every vCPU is one core of a single package with one thread per core, APIC id =
 * vCPU index. Bit positions are from the Intel SDM Vol. 2A "CPUID" (leaves 1, 4, 7, 0xB, 0x1F)
 * and the AMD APM Vol. 3 Appendix E (leaves 0x8000_0001, 0x8000_0008, 0x8000_001D, 0x8000_001E),
 * named as in Linux arch/x86/include/asm/cpufeatures.h. crosvm's x86_64/src/cpuid.rs
 * `adjust_cpuid` does the same job.
 * @module
 */

import type { CpuidEntry } from './types';

/** kvm_cpuid_entry2.flags bit: the entry depends on ECX (asm/kvm.h `KVM_CPUID_FLAG_SIGNIFCANT_INDEX`). */
export const KVM_CPUID_FLAG_SIGNIFCANT_INDEX = 1;

/** A CPUID register name. */
export type CpuidRegister = 'eax' | 'ebx' | 'ecx' | 'edx';

/** A feature bit kvmkit may hide from the guest. */
export interface CpuidFeature {
  /** Name as in the Intel SDM / AMD APM. */
  name: string;
  /**
   * Name in /proc/cpuinfo, also accepted by Linux's `clearcpuid=` since 5.18 (arch/x86/include/asm/cpufeatures.h;
   * the parameter's value is limited to 127 characters, and Linux clears dependent features itself).
   */
  linuxName: string;
  leaf: number;
  subleaf: number;
  register: CpuidRegister;
  bit: number;
  /** Why it is hidden on a PVM host. */
  reason: string;
}

const SEEN = 'KVM_EXIT_INTERNAL_ERROR (emulation failure) seen on PVM (DESIGN.md)';
const NEEDS_AVX = 'VEX/EVEX-encoded, needs AVX (hidden)';
const NEEDS_XSAVE = 'state managed by XSAVE (hidden)';
const SAME_CLASS = 'SSE-class instruction KVM\'s emulator cannot execute, like SSSE3/POPCNT';

function f(name: string, linuxName: string, leaf: number, subleaf: number, register: CpuidRegister, bit: number, reason: string): CpuidFeature {
  return { name, linuxName, leaf, subleaf, register, bit, reason };
}

/**
 * Features hidden when the host's KVM is paravirtual (`kvm_pvm`): instructions its instruction
 * emulator cannot run (DESIGN.md "This machine's KVM is paravirtual"), every feature that depends
 * on them (Linux arch/x86/kernel/cpu/cpuid-deps.c: AVX and PKU need XSAVE; FMA, F16C, AVX2 and
 * AVX-512 need AVX), and the remaining SSE-class extensions of the same kind. Leaf 0xD (XSAVE
 * state components) is zeroed as well.
 */
export const PVM_HIDDEN_FEATURES: readonly CpuidFeature[] = [
  f('SSSE3', 'ssse3', 1, 0, 'ecx', 9, SEEN),
  f('CMPXCHG16B', 'cx16', 1, 0, 'ecx', 13, SEEN),
  f('PCID', 'pcid', 1, 0, 'ecx', 17, SEEN),
  f('POPCNT', 'popcnt', 1, 0, 'ecx', 23, SEEN),
  f('XSAVE', 'xsave', 1, 0, 'ecx', 26, SEEN),
  f('OSXSAVE', 'osxsave', 1, 0, 'ecx', 27, SEEN),
  f('AVX', 'avx', 1, 0, 'ecx', 28, SEEN),
  f('RDRAND', 'rdrand', 1, 0, 'ecx', 30, SEEN),
  f('FSGSBASE', 'fsgsbase', 7, 0, 'ebx', 0, SEEN),
  f('INVPCID', 'invpcid', 7, 0, 'ebx', 10, SEEN),
  f('RDSEED', 'rdseed', 7, 0, 'ebx', 18, SEEN),
  f('SMAP', 'smap', 7, 0, 'ebx', 20, SEEN),

  f('FMA', 'fma', 1, 0, 'ecx', 12, NEEDS_AVX),
  f('F16C', 'f16c', 1, 0, 'ecx', 29, NEEDS_AVX),
  f('AVX2', 'avx2', 7, 0, 'ebx', 5, NEEDS_AVX),
  f('AVX512F', 'avx512f', 7, 0, 'ebx', 16, NEEDS_AVX),
  f('AVX512DQ', 'avx512dq', 7, 0, 'ebx', 17, NEEDS_AVX),
  f('AVX512_IFMA', 'avx512ifma', 7, 0, 'ebx', 21, NEEDS_AVX),
  f('AVX512PF', 'avx512pf', 7, 0, 'ebx', 26, NEEDS_AVX),
  f('AVX512ER', 'avx512er', 7, 0, 'ebx', 27, NEEDS_AVX),
  f('AVX512CD', 'avx512cd', 7, 0, 'ebx', 28, NEEDS_AVX),
  f('AVX512BW', 'avx512bw', 7, 0, 'ebx', 30, NEEDS_AVX),
  f('AVX512VL', 'avx512vl', 7, 0, 'ebx', 31, NEEDS_AVX),
  f('AVX512_VBMI', 'avx512vbmi', 7, 0, 'ecx', 1, NEEDS_AVX),
  f('AVX512_VBMI2', 'avx512_vbmi2', 7, 0, 'ecx', 6, NEEDS_AVX),
  f('VAES', 'vaes', 7, 0, 'ecx', 9, NEEDS_AVX),
  f('VPCLMULQDQ', 'vpclmulqdq', 7, 0, 'ecx', 10, NEEDS_AVX),
  f('AVX512_VNNI', 'avx512_vnni', 7, 0, 'ecx', 11, NEEDS_AVX),
  f('AVX512_BITALG', 'avx512_bitalg', 7, 0, 'ecx', 12, NEEDS_AVX),
  f('AVX512_VPOPCNTDQ', 'avx512_vpopcntdq', 7, 0, 'ecx', 14, NEEDS_AVX),
  f('AVX512_4VNNIW', 'avx512_4vnniw', 7, 0, 'edx', 2, NEEDS_AVX),
  f('AVX512_4FMAPS', 'avx512_4fmaps', 7, 0, 'edx', 3, NEEDS_AVX),
  f('AVX512_VP2INTERSECT', 'avx512_vp2intersect', 7, 0, 'edx', 8, NEEDS_AVX),
  f('AVX512_FP16', 'avx512_fp16', 7, 0, 'edx', 23, NEEDS_AVX),
  f('AVX_VNNI', 'avx_vnni', 7, 1, 'eax', 4, NEEDS_AVX),
  f('AVX512_BF16', 'avx512_bf16', 7, 1, 'eax', 5, NEEDS_AVX),
  f('XOP', 'xop', 0x8000_0001, 0, 'ecx', 11, NEEDS_AVX),
  f('FMA4', 'fma4', 0x8000_0001, 0, 'ecx', 16, NEEDS_AVX),

  f('PKU', 'pku', 7, 0, 'ecx', 3, NEEDS_XSAVE),
  f('OSPKE', 'ospke', 7, 0, 'ecx', 4, NEEDS_XSAVE),
  f('AMX_BF16', 'amx_bf16', 7, 0, 'edx', 22, NEEDS_XSAVE),
  f('AMX_TILE', 'amx_tile', 7, 0, 'edx', 24, NEEDS_XSAVE),
  f('AMX_INT8', 'amx_int8', 7, 0, 'edx', 25, NEEDS_XSAVE),

  f('PCLMULQDQ', 'pclmulqdq', 1, 0, 'ecx', 1, SAME_CLASS),
  f('SSE4_1', 'sse4_1', 1, 0, 'ecx', 19, SAME_CLASS),
  f('SSE4_2', 'sse4_2', 1, 0, 'ecx', 20, SAME_CLASS),
  f('AES', 'aes', 1, 0, 'ecx', 25, SAME_CLASS),
  f('SHA', 'sha_ni', 7, 0, 'ebx', 29, SAME_CLASS),
  f('GFNI', 'gfni', 7, 0, 'ecx', 8, SAME_CLASS),
  f('ABM (LZCNT)', 'abm', 0x8000_0001, 0, 'ecx', 5, SAME_CLASS),
  f('SSE4A', 'sse4a', 0x8000_0001, 0, 'ecx', 6, SAME_CLASS),
];

/** Options of {@link buildCpuid}. */
export interface CpuidOptions {
  /** This vCPU's index, which is also its APIC id. */
  vcpuId: number;
  /** Number of vCPUs in the VM. */
  cpus: number;
  /** Hide {@link PVM_HIDDEN_FEATURES} and leaf 0xD (the host's KVM is `kvm_pvm`). */
  pvm: boolean;
}

/** Leaf 1 ECX bit 31: running under a hypervisor (SDM: reserved, "not used"; set by all VMMs). */
const LEAF1_ECX_HYPERVISOR = 1 << 31;
/** Leaf 1 EDX bit 28: HTT, EBX[23:16] is valid. */
const LEAF1_EDX_HTT = 1 << 28;
/** Topology level types in leaf 0xB/0x1F ECX[15:8] (SDM "Extended Topology Enumeration Leaf"). */
const TopologyLevel = { INVALID: 0, SMT: 1, CORE: 2 } as const;

/** Number of bits needed to hold ids 0..n-1 (ceil(log2 n)). */
export function idBits(n: number): number {
  return n <= 1 ? 0 : 32 - Math.clz32(n - 1);
}

/**
 * Build the CPUID table of one vCPU from the host's supported list. Returns new entries; the
 * input is not modified.
 *
 * - Leaf 1: EBX[31:24] initial APIC id, EBX[23:16] logical processors per package, EDX.HTT when
 *   cpus > 1, ECX bit 31 (hypervisor) set.
 * - Leaf 4 and 0x8000_001D: EAX[25:14] (threads sharing the cache) 0 for L1/L2 and all vCPUs for
 *   L3; leaf 4 EAX[31:26] (cores per package - 1).
 * - Leaf 0xB and 0x1F (if the host lists them and the max basic leaf reaches them): rebuilt with
 *   an SMT level of 1 thread, a core level of `cpus` cores, and EDX = x2APIC id.
 * - Leaf 0x8000_0008 ECX (AMD core count) and 0x8000_001E (AMD extended APIC id/core id).
 * - With `pvm`, {@link PVM_HIDDEN_FEATURES} are cleared and leaf 0xD is zeroed.
 */
export function buildCpuid(supported: readonly CpuidEntry[], opts: CpuidOptions): CpuidEntry[] {
  const { vcpuId, cpus } = opts;
  if (!Number.isInteger(cpus) || cpus < 1 || cpus > 255) throw new RangeError(`cpus must be 1..255, got ${cpus}`);
  if (!Number.isInteger(vcpuId) || vcpuId < 0 || vcpuId >= cpus) throw new RangeError(`vcpuId must be 0..${cpus - 1}, got ${vcpuId}`);

  const maxBasic = supported.find((e) => e.function === 0)?.eax ?? 0;
  const packageBits = idBits(cpus);
  const maxIds = Math.min(2 ** packageBits, 64);
  const out: CpuidEntry[] = [];
  const rebuilt = new Set<number>();

  for (const original of supported) {
    const e: CpuidEntry = { ...original };
    switch (e.function) {
      case 1:
        e.ebx = ((vcpuId & 0xff) << 24) | (Math.min(cpus, 255) << 16) | (e.ebx & 0xffff);
        e.ecx |= LEAF1_ECX_HYPERVISOR;
        e.edx = cpus > 1 ? e.edx | LEAF1_EDX_HTT : e.edx & ~LEAF1_EDX_HTT;
        break;
      case 4:
        if ((e.eax & 0x1f) !== 0) {
          // EAX[31:26]: max addressable core ids in the package - 1; EAX[25:14]: max addressable logical processor ids sharing this cache - 1.
          e.eax = (e.eax & 0x3fff) | (cacheSharing(e.eax, cpus) << 14) | ((maxIds - 1) << 26);
        }
        break;
      case 0xb:
      case 0x1f:
        if (!rebuilt.has(e.function) && maxBasic >= e.function) out.push(...topologyLeaf(e.function, vcpuId, cpus));
        rebuilt.add(e.function);
        continue;
      case 0x8000_0008:
        // ECX[7:0] NC = cores - 1, ECX[15:12] ApicIdSize (AMD APM E.4.7).
        e.ecx = (e.ecx & ~0xf0ff) | (packageBits << 12) | ((cpus - 1) & 0xff);
        break;
      case 0x8000_001d:
        if ((e.eax & 0x1f) !== 0) e.eax = (e.eax & ~(0xfff << 14)) | (cacheSharing(e.eax, cpus) << 14);
        break;
      case 0x8000_001e:
        // EAX extended APIC id; EBX[7:0] core id, EBX[15:8] threads per core - 1 = 0; ECX[7:0] node id 0, ECX[10:8] nodes - 1 = 0 (AMD APM E.4.15).
        e.eax = vcpuId;
        e.ebx = (e.ebx & ~0xffff) | (vcpuId & 0xff);
        e.ecx = e.ecx & ~0x7ff;
        break;
    }
    out.push(e);
  }

  if (opts.pvm) {
    for (const e of out) {
      for (const feature of PVM_HIDDEN_FEATURES) {
        if (e.function === feature.leaf && e.index === feature.subleaf) e[feature.register] &= ~(1 << feature.bit);
      }
      if (e.function === 0xd) e.eax = e.ebx = e.ecx = e.edx = 0;
    }
  }
  for (const e of out) {
    e.eax >>>= 0;
    e.ebx >>>= 0;
    e.ecx >>>= 0;
    e.edx >>>= 0;
  }
  return out;
}

/** Threads sharing a cache described by a leaf 4 / 0x8000_001D EAX, minus 1: none for L1/L2, all vCPUs for L3 and beyond. */
function cacheSharing(eax: number, cpus: number): number {
  const level = (eax >>> 5) & 0x7;
  return level >= 3 ? Math.min(2 ** idBits(cpus), 0x1000) - 1 : 0;
}

/** Subleaves 0..2 of leaf 0xB or 0x1F: SMT (1 thread per core), core (`cpus` cores), then the invalid terminator. */
function topologyLeaf(leaf: number, apicId: number, cpus: number): CpuidEntry[] {
  const entry = (index: number, eax: number, ebx: number, type: number): CpuidEntry => ({
    function: leaf,
    index,
    flags: KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
    eax,
    ebx,
    ecx: (type << 8) | index,
    edx: apicId,
  });
  return [
    entry(0, 0, 1, TopologyLevel.SMT),
    entry(1, idBits(cpus), cpus & 0xffff, TopologyLevel.CORE),
    entry(2, 0, 0, TopologyLevel.INVALID),
  ];
}

/** The {@link PVM_HIDDEN_FEATURES} the host actually offers, i.e. what `pvm` mode takes away (for logging). */
export function pvmHiddenFeaturesPresent(supported: readonly CpuidEntry[]): CpuidFeature[] {
  return PVM_HIDDEN_FEATURES.filter((feature) =>
    supported.some((e) => e.function === feature.leaf && e.index === feature.subleaf && ((e[feature.register] >>> feature.bit) & 1) === 1),
  );
}

/** Longest value Linux's `clearcpuid=` reads (arch/x86/kernel/cpu/common.c: `char arg[128]`). */
export const CLEARCPUID_MAX_LENGTH = 127;

/**
 * The `clearcpuid=` kernel parameter for a PVM host, naming the hidden features Linux cannot
 * derive itself (it clears AVX, FMA, AVX2, AVX-512, PKU... when XSAVE is cleared, by
 * arch/x86/kernel/cpu/cpuid-deps.c).
 *
 * It is needed because on `kvm_pvm` the guest's CPUID instruction is not intercepted: a Linux
 * guest booted with the CPUID table from {@link buildCpuid} still saw XSAVE and AVX-512 and died
 * in the emulator on its first XRSTOR (measured here with Debian's 6.1 cloud kernel). Names are
 * accepted by Linux 5.18 and later.
 */
export function pvmClearCpuidParam(): string {
  const derived = new Set(['avx', 'osxsave']);
  const names = PVM_HIDDEN_FEATURES.filter((x) => x.reason !== NEEDS_AVX && x.reason !== NEEDS_XSAVE && !derived.has(x.linuxName)).map((x) => x.linuxName);
  const value = [...new Set(names)].join(',');
  if (value.length > CLEARCPUID_MAX_LENGTH) throw new RangeError(`clearcpuid value is ${value.length} characters, Linux reads at most ${CLEARCPUID_MAX_LENGTH}`);
  return `clearcpuid=${value}`;
}
