/**
 * Device models: buses, legacy PC devices and PCI. Plain objects driven by the VM's exit handling;
 * interrupts leave through {@link IrqLine}, other effects through constructor callbacks.
 * @module
 */

export type { BusDevice, IrqLine } from './BusDevice';
export * from './errors';
export * from './Bus';
export * from './Serial8250';
export * from './I8042';
export * from './Cmos';
export * from './AcpiPm';
export * from './pci/index';
