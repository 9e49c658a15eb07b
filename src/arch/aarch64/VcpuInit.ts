/**
 * aarch64 initial vCPU state as plain data. A layout produces it; `vm/` applies it with
 * KVM_ARM_VCPU_INIT (the feature bits) and KVM_SET_ONE_REG (the core registers).
 * @module
 */

/** Feature bit numbers of `struct kvm_vcpu_init.features[0]` (linux arch/arm64/include/uapi/asm/kvm.h). */
export const KVM_ARM_VCPU_POWER_OFF = 0;
export const KVM_ARM_VCPU_PSCI_0_2 = 2;

/** PSTATE bits (linux arch/arm64/include/uapi/asm/ptrace.h). */
const PSR_MODE_EL1H = 0x5;
const PSR_F_BIT = 0x40;
const PSR_I_BIT = 0x80;
const PSR_A_BIT = 0x100;
const PSR_D_BIT = 0x200;
/**
 * Boot PSTATE: EL1h with D, A, I and F masked. booting.rst "CPU mode": all forms of interrupts
 * must be masked in PSTATE.DAIF; crosvm aarch64/src/lib.rs `vcpu_init` sets the same value.
 */
export const AARCH64_BOOT_PSTATE = PSR_D_BIT | PSR_A_BIT | PSR_I_BIT | PSR_F_BIT | PSR_MODE_EL1H;

/** Core registers of the boot vCPU (booting.rst "Primary CPU general-purpose register settings"). */
export interface Aarch64BootRegs {
  /** Entry point: the first byte of the loaded Image. */
  pc: number;
  /** Physical address of the device tree blob. */
  x0: number;
  /** Reserved, must be 0. */
  x1: number;
  /** Reserved, must be 0. */
  x2: number;
  /** Reserved, must be 0. */
  x3: number;
  /** {@link AARCH64_BOOT_PSTATE}. */
  pstate: number;
}

/** Everything one aarch64 vCPU needs before its first KVM_RUN. */
export interface Aarch64VcpuInit {
  /** vCPU index (the KVM vcpu id). */
  id: number;
  /**
   * Affinity fields (Aff2.Aff1.Aff0) of the MPIDR_EL1 KVM gives this vCPU, as computed by
   * {@link mpidrAffinity}; the `reg` of its `/cpus/cpu@N` node and the PSCI CPU_ON target.
   */
  mpidr: number;
  /**
   * Start powered off (KVM_ARM_VCPU_POWER_OFF): true for every vCPU but the boot one; the guest
   * starts them with PSCI CPU_ON.
   */
  powerOff: boolean;
  /** Feature bit numbers to set in `kvm_vcpu_init.features[0]` (PSCI 0.2, and POWER_OFF when {@link powerOff}). */
  features: number[];
  /** Core registers, for the boot vCPU only; secondaries get their entry point from PSCI CPU_ON. */
  regs?: Aarch64BootRegs;
}

/**
 * MPIDR_EL1 affinity KVM assigns to vCPU `id`: Aff0 = id[3:0], Aff1 = id[11:4], Aff2 = id[19:12]
 * (linux arch/arm64/kvm/sys_regs.c `reset_mpidr`; 16 CPUs per Aff0 group because a GICv3 SGI
 * targets at most 16 CPUs of one group, ICC_SGI1R_EL1.TargetList). Bit 31 (RES1) is left out, as
 * crosvm's `MPIDR_AFF_MASK` does.
 */
export function mpidrAffinity(id: number): number {
  return (id & 0x0f) | (((id >> 4) & 0xff) << 8) | (((id >> 12) & 0xff) << 16);
}

/** The initial state of `cpus` vCPUs: vCPU 0 boots at `entry` with `x0 = fdtAddress`, the others wait for PSCI. */
export function aarch64VcpuInits(cpus: number, entry: number, fdtAddress: number): Aarch64VcpuInit[] {
  return Array.from({ length: cpus }, (_, id): Aarch64VcpuInit => {
    const powerOff = id !== 0;
    return {
      id,
      mpidr: mpidrAffinity(id),
      powerOff,
      features: powerOff ? [KVM_ARM_VCPU_PSCI_0_2, KVM_ARM_VCPU_POWER_OFF] : [KVM_ARM_VCPU_PSCI_0_2],
      ...(powerOff ? {} : { regs: { pc: entry, x0: fdtAddress, x1: 0, x2: 0, x3: 0, pstate: AARCH64_BOOT_PSTATE } }),
    };
  });
}
