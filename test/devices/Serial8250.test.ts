import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Serial8250 } from '../../src/devices/Serial8250';
import { FakeIrq, rd, wr } from './helpers';

// Offsets and bits as in Linux include/uapi/linux/serial_reg.h.
const RX = 0, IER = 1, IIR = 2, FCR = 2, LCR = 3, MCR = 4, LSR = 5, MSR = 6, SCR = 7;
const IIR_NO_INT = 0x01, IIR_THRI = 0x02, IIR_RDI = 0x04, IIR_RLSI = 0x06;
const LSR_DR = 0x01, LSR_OE = 0x02, LSR_THRE = 0x20, LSR_TEMT = 0x40;

function make(inputCapacity?: number) {
  const irq = new FakeIrq();
  const out: number[] = [];
  const uart = new Serial8250({ irq, onOutput: (b) => out.push(...b), inputCapacity });
  return { irq, out, uart };
}

describe('Serial8250', () => {
  it('transmits THR writes through onOutput and keeps THRE/TEMT set', () => {
    const { uart, out } = make();
    for (const c of Buffer.from('hi\n')) wr(uart, 0, c);
    expect(Buffer.from(out).toString()).toBe('hi\n');
    expect(rd(uart, LSR)).toBe(LSR_THRE | LSR_TEMT);
  });

  it('DLAB switches offsets 0/1 to the divisor latch', () => {
    const { uart, out, irq } = make();
    expect(rd(uart, LCR)).toBe(0x03);
    wr(uart, LCR, 0x83);
    expect(rd(uart, 0)).toBe(12); // default divisor 12 (9600 baud)
    expect(rd(uart, 1)).toBe(0);
    wr(uart, 0, 0x01); // 115200 baud
    wr(uart, 1, 0x00);
    expect(out).toEqual([]); // not transmitted
    expect(irq.levels).toEqual([]); // not an IER write
    expect(rd(uart, 0)).toBe(1);
    wr(uart, LCR, 0x03);
    expect(rd(uart, IER)).toBe(0);
    wr(uart, LCR, 0x80);
    expect(rd(uart, 0)).toBe(1); // latched
  });

  it('IER keeps its low four bits only (Linux autoconfig IER probe, UUE probe)', () => {
    const { uart } = make();
    wr(uart, IER, 0xff);
    expect(rd(uart, IER)).toBe(0x0f);
    wr(uart, IER, 0x40);
    expect(rd(uart, IER)).toBe(0);
  });

  it('THRE interrupt: pending when THRI is enabled, cleared by reading IIR, re-armed by a THR write', () => {
    const { uart, irq } = make();
    expect(rd(uart, IIR)).toBe(IIR_NO_INT);
    wr(uart, IER, 0x02);
    expect(irq.levels).toEqual([true]);
    expect(rd(uart, IIR) & 0x0f).toBe(IIR_THRI);
    expect(irq.levels).toEqual([true, false]);
    expect(rd(uart, IIR) & 0x0f).toBe(IIR_NO_INT);
    wr(uart, RX, 0x41);
    expect(irq.level).toBe(true);
    // The write drops the condition and raises it again when the byte has gone: one edge per byte.
    expect(irq.levels).toEqual([true, false, true]);
    wr(uart, RX, 0x42);
    expect(irq.levels).toEqual([true, false, true, false, true]);
    expect(rd(uart, IIR) & 0x0f).toBe(IIR_THRI);
    expect(irq.level).toBe(false);
  });

  it('re-asserts THRE when THRI is toggled off and on (Linux UART_BUG_THRE test passes)', () => {
    const { uart } = make();
    // serial8250_do_startup: IER=THRI, read IIR; IER=0; IER=THRI, read IIR.
    wr(uart, IER, 0x02);
    const iir1 = rd(uart, IIR);
    wr(uart, IER, 0);
    wr(uart, IER, 0x02);
    const iir = rd(uart, IIR);
    wr(uart, IER, 0);
    expect(iir1 & IIR_NO_INT).toBe(0);
    expect(iir & IIR_NO_INT).toBe(0);
  });

  it('disabling THRI lowers the line', () => {
    const { uart, irq } = make();
    wr(uart, IER, 0x02);
    wr(uart, IER, 0x00);
    expect(irq.levels).toEqual([true, false]);
    expect(rd(uart, IIR)).toBe(IIR_NO_INT);
  });

  it('RX: input() sets DR and raises RDI when enabled; reading drains it and lowers the line', () => {
    const { uart, irq } = make();
    expect(uart.input(Buffer.from('ab'))).toBe(2);
    expect(irq.levels).toEqual([]); // IER.RDI off
    expect(rd(uart, LSR) & LSR_DR).toBe(LSR_DR);
    wr(uart, IER, 0x01);
    expect(irq.levels).toEqual([true]);
    expect(rd(uart, IIR) & 0x0f).toBe(IIR_RDI);
    expect(rd(uart, IIR) & 0x0f).toBe(IIR_RDI); // reading IIR does not clear RDI
    expect(rd(uart, RX)).toBe(0x61);
    expect(irq.level).toBe(true);
    expect(rd(uart, RX)).toBe(0x62);
    expect(irq.levels).toEqual([true, false]);
    expect(rd(uart, LSR) & LSR_DR).toBe(0);
    expect(rd(uart, RX)).toBe(0); // empty
    uart.input(Uint8Array.of(1));
    expect(irq.levels).toEqual([true, false, true]);
  });

  it('RDI has priority over THRI', () => {
    const { uart } = make();
    wr(uart, IER, 0x03);
    uart.input(Uint8Array.of(0x31));
    expect(rd(uart, IIR) & 0x0f).toBe(IIR_RDI);
    rd(uart, RX);
    expect(rd(uart, IIR) & 0x0f).toBe(IIR_THRI);
  });

  it('buffers host input beyond the 16-byte FIFO up to its capacity', () => {
    const { uart } = make(100);
    const data = Uint8Array.from({ length: 150 }, (_, i) => i);
    expect(uart.input(data)).toBe(100);
    expect(uart.inputSpace).toBe(0);
    expect(uart.pendingInput).toBe(100);
    const got: number[] = [];
    while (rd(uart, LSR) & LSR_DR) got.push(rd(uart, RX));
    expect(got).toEqual([...data.subarray(0, 100)]);
    expect(uart.input(data.subarray(100))).toBe(50);
  });

  it('FCR: enabling FIFOs shows 0xC0 in IIR; clearing RX drops at most the 16-byte FIFO', () => {
    const { uart } = make();
    expect(rd(uart, IIR)).toBe(0x01);
    wr(uart, FCR, 0x01);
    expect(rd(uart, IIR)).toBe(0xc1);
    uart.input(Uint8Array.from({ length: 20 }, (_, i) => i));
    wr(uart, FCR, 0x03); // clear RCVR
    expect(uart.pendingInput).toBe(4);
    expect(rd(uart, RX)).toBe(16);
    wr(uart, FCR, 0x00); // FIFO enable toggled: both FIFOs cleared
    expect(uart.pendingInput).toBe(0);
    expect(rd(uart, IIR)).toBe(0x01);
  });

  it('loopback: THR goes to RBR, not onOutput; MSR mirrors MCR; host input waits', () => {
    const { uart, out } = make();
    uart.input(Uint8Array.of(0x55));
    wr(uart, MCR, 0x10 | 0x0a); // LOOP | OUT2 | RTS, as Linux autoconfig writes
    expect(rd(uart, MSR) & 0xf0).toBe(0x90); // DCD | CTS
    expect(rd(uart, LSR) & LSR_DR).toBe(0); // the host byte is not visible in loopback
    wr(uart, RX, 0x5a);
    wr(uart, RX, 0xa5);
    expect(out).toEqual([]);
    expect(rd(uart, LSR) & LSR_DR).toBe(LSR_DR);
    expect(rd(uart, RX)).toBe(0x5a);
    expect(rd(uart, RX)).toBe(0xa5);
    wr(uart, MCR, 0x1f);
    expect(rd(uart, MSR)).toBe(0xf0);
    wr(uart, MCR, 0x11);
    expect(rd(uart, MSR)).toBe(0x20); // DTR -> DSR
    // Overrunning the 16-byte loopback FIFO sets OE (cleared by reading LSR).
    for (let i = 0; i < 17; i++) wr(uart, RX, i);
    expect(rd(uart, LSR) & LSR_OE).toBe(LSR_OE);
    expect(rd(uart, LSR) & LSR_OE).toBe(0);
    wr(uart, MCR, 0x0b); // leave loopback: loopback bytes are gone, host byte is back
    expect(rd(uart, RX)).toBe(0x55);
    expect(rd(uart, MSR)).toBe(0xb0); // DCD | DSR | CTS
  });

  it('line status interrupt on a loopback overrun when RLSI is enabled', () => {
    const { uart, irq } = make();
    wr(uart, MCR, 0x10);
    wr(uart, IER, 0x04);
    for (let i = 0; i < 17; i++) wr(uart, RX, i);
    expect(irq.level).toBe(true);
    expect(rd(uart, IIR) & 0x0f).toBe(IIR_RLSI);
    rd(uart, LSR);
    expect(irq.level).toBe(false);
  });

  it('scratch register and MCR mask', () => {
    const { uart } = make();
    wr(uart, SCR, 0x5a);
    expect(rd(uart, SCR)).toBe(0x5a);
    wr(uart, MCR, 0xff);
    expect(rd(uart, MCR)).toBe(0x1f);
  });

  it('passes the register sequence of Linux 8250 autoconfig as a 16550A', () => {
    const { uart, out } = make();
    // autoconfig(): IER probe.
    wr(uart, IER, 0);
    const s1 = rd(uart, IER) & 0x0f;
    wr(uart, IER, 0x0f);
    const s2 = rd(uart, IER) & 0x0f;
    wr(uart, IER, 0);
    expect([s1, s2]).toEqual([0, 0x0f]);
    // Loopback test.
    const saveMcr = rd(uart, MCR);
    wr(uart, MCR, 0x1a);
    expect(rd(uart, MSR) & 0xf0).toBe(0x90);
    wr(uart, MCR, saveMcr);
    // EFR probe with LCR=0xBF, then FIFO detection.
    wr(uart, LCR, 0xbf);
    wr(uart, 2, 0); // UART_EFR
    wr(uart, LCR, 0);
    wr(uart, FCR, 0x01);
    expect(rd(uart, IIR) >> 6).toBe(3); // -> autoconfig_16550a
    // autoconfig_16550a: EFR must not read 0 with LCR=0x80 or 0xBF (it reads IIR here).
    wr(uart, LCR, 0x80);
    expect(rd(uart, 2)).not.toBe(0);
    wr(uart, LCR, 0xbf);
    expect(rd(uart, 2)).not.toBe(0);
    // NS16550A probe: EXCR1 (offset 2 with LCR=0xE0) must not mirror MCR's LOOP bit.
    wr(uart, LCR, 0);
    const st1 = rd(uart, MCR);
    wr(uart, LCR, 0xe0);
    const st2 = rd(uart, 2);
    expect(((st1 ^ st2) & 0x10) === 0).toBe(true);
    wr(uart, LCR, 0);
    wr(uart, MCR, st1 ^ 0x10);
    wr(uart, LCR, 0xe0);
    const st3 = rd(uart, 2);
    wr(uart, LCR, 0);
    wr(uart, MCR, st1);
    expect((st3 ^ st1) & 0x10).toBe(0); // not an NS16550A
    // 16750 probe: IIR bit 5 never set.
    wr(uart, FCR, 0x01 | 0x20);
    expect(rd(uart, IIR) >> 5).toBe(6);
    // XScale UUE probe.
    wr(uart, IER, 0x40);
    expect(rd(uart, IER) & 0x40).toBe(0);
    expect(out).toEqual([]);
  });

  it('splits wide accesses into byte accesses; offsets past 7 read 0xFF', () => {
    const { uart, out } = make();
    wr(uart, SCR, 0x12);
    expect(rd(uart, 6, 2)).toBe(0x12b0); // MSR, SCR
    expect(rd(uart, 7, 4)).toBe(0xffffff12);
    wr(uart, 0, 0x4241, 2); // THR 'A', IER 'B' & 0x0f
    expect(out).toEqual([0x41]);
    expect(rd(uart, IER)).toBe(0x02);
    expect(rd(uart, 100)).toBe(0xff);
    wr(uart, 100, 0x41);
    expect(out).toEqual([0x41]);
  });

  it('property: random register traffic never throws, never outputs except on THR writes, keeps invariants', () => {
    const access = fc.record({
      offset: fc.integer({ min: 0, max: 12 }),
      size: fc.constantFrom(1, 2, 4, 8),
      value: fc.integer({ min: 0, max: 0xffffffff }),
      write: fc.boolean(),
      input: fc.option(fc.uint8Array({ maxLength: 8 }), { freq: 5 }),
    });
    fc.assert(
      fc.property(fc.array(access, { maxLength: 200 }), (ops) => {
        const irq = new FakeIrq();
        let outputs = 0;
        const uart = new Serial8250({ irq, onOutput: () => outputs++, inputCapacity: 32 });
        // Shadow of LCR/MCR to know when a byte lands on THR with DLAB clear and loopback off.
        let lcr = 0x03;
        let mcr = 0x08;
        for (const op of ops) {
          if (op.input) uart.input(op.input);
          const data = new Uint8Array(op.size);
          if (op.write) {
            for (let i = 0; i < op.size; i++) data[i] = (op.value >>> ((i % 4) * 8)) & 0xff;
            let expected = 0;
            for (let i = 0; i < op.size; i++) {
              const o = op.offset + i;
              if (o === 0 && !(lcr & 0x80) && !(mcr & 0x10)) expected++;
              if (o === 3) lcr = data[i]!;
              if (o === 4) mcr = data[i]! & 0x1f;
            }
            const before = outputs;
            uart.write(op.offset, data);
            expect(outputs - before).toBe(expected);
          } else {
            uart.read(op.offset, data);
          }
          const lsr = rd(uart, LSR);
          expect(lsr & (LSR_THRE | LSR_TEMT)).toBe(LSR_THRE | LSR_TEMT);
          if (!(lcr & 0x80)) expect(rd(uart, IER) & 0xf0).toBe(0); // with DLAB set, offset 1 is DLM
          // The line level always matches whether an interrupt is pending... as seen just before
          // the IIR read (which may clear THRE).
          const pending = irq.level;
          const iir = rd(uart, IIR);
          expect((iir & IIR_NO_INT) === 0).toBe(pending);
          expect(iir & 0x30).toBe(0);
          expect(uart.pendingInput).toBeLessThanOrEqual(32);
        }
        // Levels alternate: the line is only driven on changes.
        irq.levels.forEach((l, i) => expect(l).toBe(i % 2 === 0));
      }),
    );
  });
});
