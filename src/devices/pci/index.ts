/**
 * PCI: the root bus, config mechanism #1 and the type-0 config space helper.
 * @module
 */

export * from './PciDevice';
export * from './PciRegisters';
export * from './PciConfigSpace';
export * from './PciRoot';
export * from './PciConfigIo';
