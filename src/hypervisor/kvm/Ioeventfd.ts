/**
 * struct kvm_ioeventfd (include/uapi/linux/kvm.h) for KVM_IOEVENTFD: a guest write to an MMIO or
 * port address signals an eventfd inside the kernel, with no exit to userspace (virtio doorbells).
 * @module
 */

/** KVM_IOEVENTFD_FLAG_DATAMATCH (kvm.h, `1 << kvm_ioeventfd_flag_nr_datamatch`): only writes of `datamatch` signal. */
export const KVM_IOEVENTFD_FLAG_DATAMATCH = 1 << 0;
/** KVM_IOEVENTFD_FLAG_PIO (kvm.h): the address is an I/O port, not MMIO. */
export const KVM_IOEVENTFD_FLAG_PIO = 1 << 1;
/** KVM_IOEVENTFD_FLAG_DEASSIGN (kvm.h): remove a registration made with the same fields. */
export const KVM_IOEVENTFD_FLAG_DEASSIGN = 1 << 2;
/** sizeof(struct kvm_ioeventfd): datamatch u64 @0, addr u64 @8, len u32 @16, fd s32 @20, flags u32 @24, pad[36] @28. */
export const IOEVENTFD_SIZE = 64;

/** Where and how an ioeventfd listens. */
export interface IoeventfdBinding {
  /** Guest-physical MMIO address, or I/O port with `pio`. */
  address: number;
  /**
   * Access length that matches: 1, 2, 4 or 8, or 0 for any length (KVM_CAP_IOEVENTFD_ANY_LENGTH;
   * an MMIO ioeventfd of length 0 also sits on KVM's fast-MMIO bus). Default 0.
   */
  length?: 0 | 1 | 2 | 4 | 8;
  /** Only a write of this value signals (needs a non-zero `length`). Default: any value. */
  datamatch?: bigint;
  /** The address is an I/O port. Default false. */
  pio?: boolean;
}

/** Encode a struct kvm_ioeventfd for `fd` (assign, or deassign when `deassign`). */
export function encodeIoeventfd(fd: number, b: IoeventfdBinding, deassign = false): Uint8Array {
  const buf = new Uint8Array(IOEVENTFD_SIZE);
  const dv = new DataView(buf.buffer);
  let flags = 0;
  if (b.datamatch !== undefined) flags |= KVM_IOEVENTFD_FLAG_DATAMATCH;
  if (b.pio) flags |= KVM_IOEVENTFD_FLAG_PIO;
  if (deassign) flags |= KVM_IOEVENTFD_FLAG_DEASSIGN;
  dv.setBigUint64(0, b.datamatch ?? 0n, true);
  dv.setBigUint64(8, BigInt(b.address), true);
  dv.setUint32(16, b.length ?? 0, true);
  dv.setInt32(20, fd, true);
  dv.setUint32(24, flags, true);
  return buf;
}
