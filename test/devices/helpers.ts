import type { BusDevice, IrqLine } from '../../src/devices/BusDevice';

/** An IrqLine that records every level it is driven to. */
export class FakeIrq implements IrqLine {
  readonly levels: boolean[] = [];
  level = false;
  set(level: boolean): void {
    this.levels.push(level);
    this.level = level;
  }
}

/** Read one byte at `offset`. */
export function rd(dev: BusDevice, offset: number, size = 1): number {
  const d = new Uint8Array(size);
  dev.read(offset, d);
  let v = 0;
  for (let i = size - 1; i >= 0; i--) v = v * 256 + d[i]!;
  return v;
}

/** Write `value` (little-endian, `size` bytes) at `offset`. */
export function wr(dev: BusDevice, offset: number, value: number, size = 1): void {
  const d = new Uint8Array(size);
  for (let i = 0; i < size; i++) d[i] = Math.floor(value / 256 ** i) & 0xff;
  dev.write(offset, d);
}
