/**
 * struct kvm_irqfd (include/uapi/linux/kvm.h) for KVM_IRQFD: writing an eventfd raises a GSI inside
 * the kernel, so an interrupt costs one write(2) and no ioctl. A level-triggered GSI may have a
 * resample eventfd, signalled when the guest EOIs the interrupt.
 * @module
 */

/** KVM_IRQFD_FLAG_DEASSIGN (kvm.h): unbind the eventfd from the GSI. */
export const KVM_IRQFD_FLAG_DEASSIGN = 1 << 0;
/** KVM_IRQFD_FLAG_RESAMPLE (kvm.h): level-triggered, with a resample eventfd (KVM_CAP_IRQFD_RESAMPLE). */
export const KVM_IRQFD_FLAG_RESAMPLE = 1 << 1;
/** sizeof(struct kvm_irqfd): fd u32 @0, gsi u32 @4, flags u32 @8, resamplefd u32 @12, pad[16] @16. */
export const IRQFD_SIZE = 32;

/** Encode a struct kvm_irqfd binding `fd` to `gsi` (or unbinding it with `deassign`). */
export function encodeIrqfd(fd: number, gsi: number, options: { resampleFd?: number; deassign?: boolean } = {}): Uint8Array {
  const buf = new Uint8Array(IRQFD_SIZE);
  const dv = new DataView(buf.buffer);
  let flags = 0;
  if (options.deassign) flags |= KVM_IRQFD_FLAG_DEASSIGN;
  else if (options.resampleFd !== undefined) flags |= KVM_IRQFD_FLAG_RESAMPLE;
  dv.setUint32(0, fd, true);
  dv.setUint32(4, gsi, true);
  dv.setUint32(8, flags, true);
  dv.setUint32(12, options.resampleFd ?? 0, true);
  return buf;
}
