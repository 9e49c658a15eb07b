/**
 * What a PCI function on kvmkit's root bus implements, and how functions are addressed.
 * @module
 */

/** A PCI function's configuration space as the guest sees it. */
export interface PciDevice {
  /** Short name for diagnostics (`virtio-blk`, `host-bridge`). */
  readonly name: string;
  /**
   * The dword at config register `reg` (byte offset `reg * 4`; 0..63 for the 256-byte space,
   * up to 1023 for PCIe extended space). Must not throw; unimplemented registers read 0, dwords
   * beyond the function's config space 0xFFFFFFFF.
   */
  readConfig(reg: number): number;
  /**
   * The guest wrote `data` (1, 2 or 4 bytes, little-endian) at byte `offset` (0..3) of dword
   * `reg`. `offset + data.length` never exceeds 4. Must not throw.
   */
  writeConfig(reg: number, offset: number, data: Uint8Array): void;
}

/** Bus/device/function address of a PCI function. */
export interface PciAddress {
  /** Bus number 0..255 (kvmkit has bus 0 only). */
  readonly bus: number;
  /** Device number 0..31. */
  readonly device: number;
  /** Function number 0..7. */
  readonly function: number;
}

/** Devices per bus (PCI Local Bus spec 3.0 §3.2.2.3.2: 5-bit device number). */
export const PCI_DEVICES_PER_BUS = 32;
/** Functions per device (3-bit function number). */
export const PCI_FUNCTIONS_PER_DEVICE = 8;
/** Dwords in the conventional 256-byte config space. */
export const PCI_CONFIG_DWORDS = 64;
/** Dwords in the PCI Express 4 KiB extended config space. */
export const PCIE_CONFIG_DWORDS = 1024;

/** `bb:dd.f` in hex, as Linux prints PCI addresses. */
export function formatPciAddress(a: PciAddress): string {
  const h = (v: number, w: number): string => v.toString(16).padStart(w, '0');
  return `${h(a.bus, 2)}:${h(a.device, 2)}.${a.function}`;
}
