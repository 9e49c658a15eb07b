import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { AcpiPm, PM1A_CNT_LEN, PM1A_CNT_PORT, PM1A_EVT_LEN, PM1A_EVT_PORT, S5_SLP_TYP } from '../../src/devices/AcpiPm';
import { Bus } from '../../src/devices/Bus';
import { FakeIrq } from './helpers';

function setup() {
  const events: string[] = [];
  const sci = new FakeIrq();
  const pm = new AcpiPm({ onPowerOff: () => events.push('off'), onSleep: (t) => events.push(`sleep${t}`), sci });
  const bus = new Bus('pio');
  bus.insert(pm.eventBlock, PM1A_EVT_PORT, PM1A_EVT_LEN);
  bus.insert(pm.controlBlock, PM1A_CNT_PORT, PM1A_CNT_LEN);
  const inw = (port: number) => {
    const d = new Uint8Array(2);
    bus.read(port, d);
    return d[0]! | (d[1]! << 8);
  };
  const outw = (port: number, v: number) => bus.write(port, Uint8Array.of(v & 0xff, v >> 8));
  const outb = (port: number, v: number) => bus.write(port, Uint8Array.of(v));
  return { pm, events, sci, bus, inw, outw, outb };
}

describe('AcpiPm', () => {
  it('exports the FADT port layout', () => {
    expect([PM1A_EVT_PORT, PM1A_EVT_LEN, PM1A_CNT_PORT, PM1A_CNT_LEN, S5_SLP_TYP]).toEqual([0x600, 4, 0x604, 2, 5]);
  });

  it('SCI_EN reads 1 always', () => {
    const { inw, outw } = setup();
    expect(inw(0x604) & 1).toBe(1);
    outw(0x604, 0);
    expect(inw(0x604) & 1).toBe(1);
  });

  it('SLP_EN with SLP_TYP 5 powers off; other SLP_TYP values do not', () => {
    const { inw, outw, events } = setup();
    outw(0x604, (5 << 10) | 0); // SLP_TYP without SLP_EN: nothing
    expect(events).toEqual([]);
    expect(inw(0x604)).toBe((5 << 10) | 1); // SLP_TYP reads back, SLP_EN reads 0
    for (const t of [0, 1, 3, 7]) outw(0x604, (t << 10) | (1 << 13));
    expect(events).toEqual(['sleep0', 'sleep1', 'sleep3', 'sleep7']);
    outw(0x604, (5 << 10) | (1 << 13)); // what Linux's acpi_hw_legacy_sleep writes for S5
    expect(events).toEqual(['sleep0', 'sleep1', 'sleep3', 'sleep7', 'off']);
    expect(inw(0x604) & (1 << 13)).toBe(0);
  });

  it('byte-wide writes: SLP_EN acts when the high byte is written', () => {
    const { outb, events } = setup();
    outb(0x604, 0x01);
    outb(0x605, ((5 << 10) | (1 << 13)) >> 8);
    expect(events).toEqual(['off']);
  });

  it('only onPowerOff given: other sleep states are ignored; only onSleep given: S5 arrives there', () => {
    let offs = 0;
    const pm = new AcpiPm({ onPowerOff: () => offs++ });
    pm.controlBlock.write(0, Uint8Array.of(0, ((3 << 10) | (1 << 13)) >> 8));
    expect(offs).toBe(0);
    pm.controlBlock.write(0, Uint8Array.of(0, ((5 << 10) | (1 << 13)) >> 8));
    expect(offs).toBe(1);
    const types: number[] = [];
    const pm2 = new AcpiPm({ onSleep: (t) => types.push(t) });
    pm2.controlBlock.write(0, Uint8Array.of(0, ((5 << 10) | (1 << 13)) >> 8));
    expect(types).toEqual([5]);
  });

  it('PM1_STS is write-1-to-clear, PM1_EN read/write; the power button raises the SCI when enabled', () => {
    const { pm, inw, outw, sci } = setup();
    pm.pressPowerButton();
    expect(inw(0x600)).toBe(0x100);
    expect(sci.levels).toEqual([]); // PWRBTN_EN clear
    outw(0x602, 0x100);
    expect(inw(0x602)).toBe(0x100);
    expect(sci.levels).toEqual([true]);
    outw(0x600, 0x0001); // clearing another bit leaves PWRBTN_STS
    expect(inw(0x600)).toBe(0x100);
    outw(0x600, 0x100);
    expect(inw(0x600)).toBe(0);
    expect(sci.levels).toEqual([true, false]);
  });

  it('reads past the block end are 0xFF', () => {
    const { pm } = setup();
    const d = new Uint8Array(4);
    pm.controlBlock.read(1, d);
    expect([...d]).toEqual([0, 0xff, 0xff, 0xff]);
  });

  it('property: random accesses never throw; only SLP_EN writes call back; SCI_EN always reads 1', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            block: fc.constantFrom<'evt' | 'cnt'>('evt', 'cnt'),
            offset: fc.integer({ min: 0, max: 6 }),
            data: fc.uint8Array({ minLength: 1, maxLength: 8 }),
            write: fc.boolean(),
          }),
        ),
        (ops) => {
          const calls: number[] = [];
          const pm = new AcpiPm({ onPowerOff: () => calls.push(5), onSleep: (t) => calls.push(t) });
          let expected = 0;
          for (const op of ops) {
            const dev = op.block === 'evt' ? pm.eventBlock : pm.controlBlock;
            if (op.write) {
              dev.write(op.offset, op.data);
              const hi = 1 - op.offset; // index of PM1_CNT's high byte in data
              if (op.block === 'cnt' && hi >= 0 && hi < op.data.length && op.data[hi]! & 0x20) expected++;
            } else dev.read(op.offset, op.data);
            const d = new Uint8Array(1);
            pm.controlBlock.read(0, d);
            expect(d[0]! & 1).toBe(1);
          }
          expect(calls.length).toBe(expected);
        },
      ),
    );
  });
});
