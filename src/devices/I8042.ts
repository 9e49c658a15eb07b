/**
 * The i8042 keyboard controller, only as far as a VMM needs it: the guest resets the machine
 * through it (`reboot=k`: write 0xFE, "pulse reset line", to the command port). Like crosvm's
 * `devices/src/i8042.rs`, no keyboard or mouse is emulated.
 * @module
 */

import type { BusDevice } from './BusDevice';

/** First i8042 port: the data port (0x60). */
export const I8042_PORT = 0x60;
/**
 * The i8042 device spans 0x60..0x64 (data port at offset 0, status/command port at offset 4), one
 * range like Firecracker's (`0x060`, length 5). Port 0x61 (system control port B) inside it is
 * handled by KVM's in-kernel PIT speaker device and never reaches userspace.
 */
export const I8042_PORT_LEN = 5;

/** Offset of the data port (0x60). */
const DATA_OFFSET = 0;
/** Offset of the status (read) / command (write) port (0x64). */
const COMMAND_OFFSET = 4;
/** Command 0xFE: pulse output port bit 0, the CPU reset line (Linux `arch/x86/kernel/reboot.c`, kb_wait + outb(0xfe, 0x64)). */
const CMD_RESET_CPU = 0xfe;

/** Options for {@link I8042}. */
export interface I8042Options {
  /** Called when the guest pulses the reset line (a reboot request). */
  onReset: () => void;
  /** Bus device name for diagnostics. Default `i8042`. */
  name?: string;
}

/**
 * A minimal i8042. Insert at {@link I8042_PORT} with length {@link I8042_PORT_LEN}.
 *
 * - The status port (0x64) reads 0: output buffer empty (bit 0 clear), so nothing is ever pending,
 *   and input buffer empty (bit 1 clear), so Linux's `kb_wait()` before a reset returns at once.
 * - The data port (0x60) reads 0; data writes are ignored.
 * - Writing 0xFE to the command port calls `onReset()`; other commands are ignored.
 * - Other offsets (0x61..0x63) read 0xFF and ignore writes; so does any access wider than a byte
 *   (as crosvm, which only answers single-byte accesses).
 */
export class I8042 implements BusDevice {
  readonly name: string;
  readonly #onReset: () => void;

  constructor(options: I8042Options) {
    this.name = options.name ?? 'i8042';
    this.#onReset = options.onReset;
  }

  /** Fill `data` with what the guest reads at `offset`. */
  read(offset: number, data: Uint8Array): void {
    const v = data.length === 1 && (offset === DATA_OFFSET || offset === COMMAND_OFFSET) ? 0 : 0xff;
    data.fill(v);
  }

  /** The guest wrote `data` at `offset`. */
  write(offset: number, data: Uint8Array): void {
    if (data.length === 1 && offset === COMMAND_OFFSET && data[0] === CMD_RESET_CPU) this.#onReset();
  }
}
