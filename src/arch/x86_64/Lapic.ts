/**
 * Local APIC setup for the in-kernel LAPIC: LINT0 as ExtINT (the 8259 PIC's output, "virtual
 * wire" mode) and LINT1 as NMI, like Firecracker's `set_lint` (arch/src/x86_64/interrupts.rs).
 *
 * The buffer is struct kvm_lapic_state (asm/kvm.h: `char regs[KVM_APIC_REG_SIZE]`, 0x400 bytes),
 * a copy of the APIC register page; register offsets and the LVT layout are from the Intel SDM
 * Vol. 3A §11.5.1 (Figure 11-8, "Local Vector Table").
 * @module
 */

import { KvmkitError } from '../../errors';

/** Size of struct kvm_lapic_state (asm/kvm.h `KVM_APIC_REG_SIZE`). */
export const KVM_APIC_REG_SIZE = 0x400;
/** LVT LINT0 register offset (Linux asm/apicdef.h `APIC_LVT0`). */
export const APIC_LVT0 = 0x350;
/** LVT LINT1 register offset (asm/apicdef.h `APIC_LVT1`). */
export const APIC_LVT1 = 0x360;
/** LVT delivery mode field, bits 10:8. */
export const APIC_DELIVERY_MODE_MASK = 0x700;
/** Delivery modes (SDM Figure 11-8; asm/apicdef.h `APIC_MODE_NMI`, `APIC_MODE_EXTINT`). */
export const ApicDeliveryMode = { FIXED: 0, SMI: 2, NMI: 4, INIT: 5, EXTINT: 7 } as const;

/** `reg` with its delivery mode field replaced by `mode`. */
export function setDeliveryMode(reg: number, mode: number): number {
  return ((reg & ~APIC_DELIVERY_MODE_MASK) | (mode << 8)) >>> 0;
}

/**
 * Patch a kvm_lapic_state buffer (from KVM_GET_LAPIC) in place: LINT0 = ExtINT, LINT1 = NMI,
 * other LVT bits (mask, trigger, vector) kept. Returns `state`.
 * @throws {@link KvmkitError} if the buffer is smaller than 0x400 bytes.
 */
export function configureLapic(state: Uint8Array): Uint8Array {
  if (state.length < KVM_APIC_REG_SIZE) {
    throw new KvmkitError(`kvm_lapic_state buffer is ${state.length} bytes, expected ${KVM_APIC_REG_SIZE}`);
  }
  const view = new DataView(state.buffer, state.byteOffset, state.byteLength);
  view.setUint32(APIC_LVT0, setDeliveryMode(view.getUint32(APIC_LVT0, true), ApicDeliveryMode.EXTINT), true);
  view.setUint32(APIC_LVT1, setDeliveryMode(view.getUint32(APIC_LVT1, true), ApicDeliveryMode.NMI), true);
  return state;
}
