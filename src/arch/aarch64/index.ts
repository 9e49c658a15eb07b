/**
 * aarch64 layout: memory map, arm64 Image loading, flattened device tree, initial vCPU state.
 * @module
 */

export { Aarch64Layout, type Aarch64LayoutOptions } from './Aarch64Layout';
export { type Aarch64VcpuInit, type Aarch64BootRegs, AARCH64_BOOT_PSTATE, KVM_ARM_VCPU_POWER_OFF, KVM_ARM_VCPU_PSCI_0_2, mpidrAffinity } from './VcpuInit';
export { type ArmImageHeader, parseArmImageHeader } from './ArmImage';
export { type Aarch64BootPlacement, type KernelExtent, kernelExtentOf, placeAarch64Boot } from './BootPlacement';
export { type Aarch64MemoryMap, type AddressRange, aarch64MemoryMap } from './MemoryMap';
export { type Aarch64FdtInput, buildAarch64Fdt } from './Aarch64Fdt';
export { FdtError, type FdtReservation } from './Fdt';
export { FdtWriter, type FdtWriterOptions } from './FdtWriter';
export { type FdtNode, type FdtProperty, type FdtTree, parseFdt, findNode, findProperty, cellsOf, stringsOf } from './FdtReader';
export { type DeviceTreeBlobOptions, type DeviceTreeBlobResult, writeDeviceTreeBlob } from './DeviceTreeBlob';
