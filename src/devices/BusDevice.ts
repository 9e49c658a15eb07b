/**
 * What a device on the port-I/O or MMIO bus implements. Offsets are relative to the start of the
 * range the device was inserted at; `data.length` is the access size (1, 2, 4 or 8 bytes).
 * @module
 */

/** A device reachable by port I/O or MMIO accesses from a vCPU. */
export interface BusDevice {
  /** Short name for diagnostics (`serial0`, `i8042`). */
  readonly name: string;
  /** Fill `data` with the bytes the guest reads at `offset` (little-endian). */
  read(offset: number, data: Uint8Array): void;
  /** The guest wrote `data` at `offset` (little-endian). */
  write(offset: number, data: Uint8Array): void;
  /**
   * True when writes may be applied later, in order, without the vCPU waiting (e.g. a UART's
   * transmit register): reads still see every earlier write. Saves a main-thread round trip per write.
   */
  readonly postedWrites?: boolean;
  /**
   * The byte a one-byte read at `offset` returns right now, if that read has no side effect;
   * otherwise undefined. Lets a vCPU thread answer status polls (a UART's LSR) by itself.
   */
  peekByte?(offset: number): number | undefined;
}

/** An interrupt line into the in-kernel irqchip (an ISA IRQ / GSI). */
export interface IrqLine {
  /** Drive the line high (`true`) or low (`false`). Edge-triggered ISA devices raise then lower it. */
  set(level: boolean): void;
}
