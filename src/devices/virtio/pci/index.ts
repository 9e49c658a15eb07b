/**
 * The modern virtio-pci transport (virtio 1.2 §4.1): the PCI function carrying a virtio device,
 * its common configuration, and MSI-X.
 * @module
 */
export { VirtioPciDevice, VIRTIO_PCI_BAR, virtioPciClassCode } from './VirtioPciDevice';
export type { BarChange, VirtioPciDeviceOptions } from './VirtioPciDevice';
export { VirtioPciCommonConfig } from './VirtioPciCommonConfig';
export type { CommonConfigHooks } from './VirtioPciCommonConfig';
export { MsixTable, MSIX_TABLE_ENTRY_SIZE, MSIX_MAX_VECTORS, MSIX_CONTROL_ENABLE, MSIX_CONTROL_FUNCTION_MASK, MSIX_CONTROL_TABLE_SIZE, MSIX_VECTOR_CONTROL_MASK } from './MsixTable';
export type { MsiMessage, MsixVectorSink } from './MsixTable';
export * from './VirtioPciRegisters';
