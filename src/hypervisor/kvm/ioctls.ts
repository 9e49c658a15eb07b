/**
 * KVM ioctl request numbers, computed like the _IO/_IOR/_IOW/_IOWR macros of
 * include/uapi/asm-generic/ioctl.h with the numbers and struct sizes of include/uapi/linux/kvm.h
 * and arch/x86/include/uapi/asm/kvm.h (x86_64).
 * @module
 */

const KVMIO = 0xae; // include/uapi/linux/kvm.h
const IOC_WRITE = 1; // asm-generic/ioctl.h: _IOC_WRITE
const IOC_READ = 2; // asm-generic/ioctl.h: _IOC_READ

function ioc(dir: number, nr: number, size: number): number {
  // _IOC(dir,type,nr,size) = dir << 30 | size << 16 | type << 8 | nr  (asm-generic/ioctl.h)
  return ((dir << 30) >>> 0) + (size << 16) + (KVMIO << 8) + nr;
}
const io = (nr: number): number => ioc(0, nr, 0);
const ior = (nr: number, size: number): number => ioc(IOC_READ, nr, size);
const iow = (nr: number, size: number): number => ioc(IOC_WRITE, nr, size);
const iowr = (nr: number, size: number): number => ioc(IOC_READ | IOC_WRITE, nr, size);

/** ioctl numbers by their kvm.h names. */
export const KVM = {
  GET_API_VERSION: io(0x00),
  CREATE_VM: io(0x01),
  CHECK_EXTENSION: io(0x03),
  GET_VCPU_MMAP_SIZE: io(0x04),
  GET_SUPPORTED_CPUID: iowr(0x05, 8), // struct kvm_cpuid2 header
  CREATE_VCPU: io(0x41),
  SET_USER_MEMORY_REGION: iow(0x46, 32), // struct kvm_userspace_memory_region
  SET_TSS_ADDR: io(0x47),
  SET_IDENTITY_MAP_ADDR: iow(0x48, 8),
  CREATE_IRQCHIP: io(0x60),
  IRQ_LINE: iow(0x61, 8), // struct kvm_irq_level
  SET_GSI_ROUTING: iow(0x6a, 8), // struct kvm_irq_routing header
  IRQFD: iow(0x76, 32), // struct kvm_irqfd
  CREATE_PIT2: iow(0x77, 64), // struct kvm_pit_config
  IOEVENTFD: iow(0x79, 64), // struct kvm_ioeventfd
  RUN: io(0x80),
  GET_REGS: ior(0x81, 144), // struct kvm_regs
  SET_REGS: iow(0x82, 144),
  GET_SREGS: ior(0x83, 312), // struct kvm_sregs
  SET_SREGS: iow(0x84, 312),
  TRANSLATE: iowr(0x85, 24), // struct kvm_translation
  SET_MSRS: iow(0x89, 8), // struct kvm_msrs header
  SET_SIGNAL_MASK: iow(0x8b, 4), // struct kvm_signal_mask header
  GET_FPU: ior(0x8c, 416), // struct kvm_fpu
  SET_FPU: iow(0x8d, 416),
  GET_LAPIC: ior(0x8e, 1024), // struct kvm_lapic_state
  SET_LAPIC: iow(0x8f, 1024),
  SET_CPUID2: iow(0x90, 8), // struct kvm_cpuid2 header
  GET_MP_STATE: ior(0x98, 4),
  SET_MP_STATE: iow(0x99, 4),
  GET_VCPU_EVENTS: ior(0x9f, 64), // struct kvm_vcpu_events
  SET_VCPU_EVENTS: iow(0xa0, 64),
} as const;

/** Names of the ioctls above, for error messages. */
export const KVM_IOCTL_NAMES: ReadonlyMap<number, string> = new Map(
  Object.entries(KVM).map(([k, v]) => [v, `KVM_${k}`]),
);

/** KVM_CAP_* numbers (include/uapi/linux/kvm.h). */
export const KVM_CAP = {
  IRQCHIP: 0,
  USER_MEMORY: 3,
  SET_TSS_ADDR: 4,
  EXT_CPUID: 7,
  NR_VCPUS: 9,
  NR_MEMSLOTS: 10,
  PIT2: 33,
  IRQFD: 32,
  IOEVENTFD: 36,
  IMMEDIATE_EXIT: 136,
  MAX_VCPUS: 66,
} as const;

/** KVM_EXIT_* reasons (include/uapi/linux/kvm.h). */
export const KVM_EXIT = {
  UNKNOWN: 0,
  EXCEPTION: 1,
  IO: 2,
  HYPERCALL: 3,
  DEBUG: 4,
  HLT: 5,
  MMIO: 6,
  IRQ_WINDOW_OPEN: 7,
  SHUTDOWN: 8,
  FAIL_ENTRY: 9,
  INTR: 10,
  INTERNAL_ERROR: 17,
  SYSTEM_EVENT: 24,
} as const;

/** KVM_INTERNAL_ERROR_EMULATION (include/uapi/linux/kvm.h). */
export const KVM_INTERNAL_ERROR_EMULATION = 1;
/** KVM_MP_STATE_RUNNABLE / UNINITIALIZED (include/uapi/linux/kvm.h). */
export const KVM_MP_STATE = { RUNNABLE: 0, UNINITIALIZED: 1, INIT_RECEIVED: 2, HALTED: 3, SIPI_RECEIVED: 4 } as const;
/** KVM_PIT_SPEAKER_DUMMY (arch/x86/include/uapi/asm/kvm.h). */
export const KVM_PIT_SPEAKER_DUMMY = 1;
/** KVM_API_VERSION (include/uapi/linux/kvm.h). */
export const KVM_API_VERSION = 12;
