import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Bus } from '../../src/devices/Bus';
import { I8042, I8042_PORT, I8042_PORT_LEN } from '../../src/devices/I8042';

describe('I8042', () => {
  function setup() {
    let resets = 0;
    const kbd = new I8042({ onReset: () => resets++ });
    const bus = new Bus('pio');
    bus.insert(kbd, I8042_PORT, I8042_PORT_LEN);
    const inb = (port: number) => {
      const d = new Uint8Array(1);
      bus.read(port, d);
      return d[0];
    };
    const outb = (port: number, v: number) => bus.write(port, Uint8Array.of(v));
    return { kbd, bus, inb, outb, resets: () => resets };
  }

  it('covers ports 0x60..0x64', () => {
    const { bus } = setup();
    expect(bus.lookup(0x5f)).toBeUndefined();
    expect(bus.lookup(0x60)?.device.name).toBe('i8042');
    expect(bus.lookup(0x64)?.device.name).toBe('i8042');
    expect(bus.lookup(0x65)).toBeUndefined();
  });

  it('status and data read 0 (nothing pending, input buffer empty)', () => {
    const { inb } = setup();
    expect(inb(0x64)).toBe(0);
    expect(inb(0x60)).toBe(0);
    expect(inb(0x62)).toBe(0xff);
  });

  it('0xFE on the command port resets; on the data port or other commands it does not', () => {
    const { outb, resets } = setup();
    outb(0x60, 0xfe);
    outb(0x64, 0xad);
    outb(0x64, 0xd1);
    expect(resets()).toBe(0);
    outb(0x64, 0xfe);
    expect(resets()).toBe(1);
  });

  it('property: random accesses never throw; only byte 0xFE at offset 4 resets', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ offset: fc.integer({ min: 0, max: 8 }), data: fc.uint8Array({ minLength: 1, maxLength: 8 }), write: fc.boolean() })),
        (ops) => {
          let resets = 0;
          const kbd = new I8042({ onReset: () => resets++ });
          let expected = 0;
          for (const op of ops) {
            if (op.write) {
              kbd.write(op.offset, op.data);
              if (op.offset === 4 && op.data.length === 1 && op.data[0] === 0xfe) expected++;
            } else kbd.read(op.offset, op.data);
          }
          expect(resets).toBe(expected);
        },
      ),
    );
  });
});
