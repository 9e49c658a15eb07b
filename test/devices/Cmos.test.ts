import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Cmos } from '../../src/devices/Cmos';
import { ConfigError } from '../../src/errors';
import { rd, wr } from './helpers';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

function cmosAt(iso: string, mem = { memBelow4g: 512 * MiB, memAbove4g: 0 }) {
  let t = new Date(iso);
  const cmos = new Cmos({ ...mem, now: () => t });
  const reg = (i: number) => {
    wr(cmos, 0, i);
    return rd(cmos, 1);
  };
  const set = (i: number, v: number) => {
    wr(cmos, 0, i);
    wr(cmos, 1, v);
  };
  return { cmos, reg, set, advance: (ms: number) => (t = new Date(t.getTime() + ms)) };
}

describe('Cmos', () => {
  it('reads the host time in BCD, 24-hour, by default', () => {
    // 2024-02-29 was a Thursday (weekday 5 with Sunday = 1).
    const { reg } = cmosAt('2024-02-29T23:59:58Z');
    expect(reg(0x0b)).toBe(0x02);
    expect([reg(0x00), reg(0x02), reg(0x04)]).toEqual([0x58, 0x59, 0x23]);
    expect([reg(0x06), reg(0x07), reg(0x08), reg(0x09), reg(0x32)]).toEqual([0x05, 0x29, 0x02, 0x24, 0x20]);
  });

  it('reads binary when register B sets DM, and 12-hour format when 24H is clear', () => {
    const { reg, set } = cmosAt('1999-12-31T23:59:59Z');
    set(0x0b, 0x06); // binary, 24-hour
    expect([reg(0x00), reg(0x02), reg(0x04), reg(0x07), reg(0x08), reg(0x09), reg(0x32)]).toEqual([59, 59, 23, 31, 12, 99, 19]);
    expect(reg(0x0b)).toBe(0x06);
    set(0x0b, 0x04); // binary, 12-hour: 11 PM
    expect(reg(0x04)).toBe(0x80 | 11);
    set(0x0b, 0x00); // BCD, 12-hour
    expect(reg(0x04)).toBe(0x80 | 0x11);
    const midnight = cmosAt('2000-01-01T00:30:00Z');
    midnight.set(0x0b, 0x00);
    expect(midnight.reg(0x04)).toBe(0x12); // 12 AM
    expect(midnight.reg(0x32)).toBe(0x20);
    expect(midnight.reg(0x06)).toBe(0x07); // Saturday
  });

  it('register A: divider 0x26, UIP never set; D: VRT; C: 0', () => {
    const { reg, set } = cmosAt('2024-01-01T00:00:00Z');
    expect(reg(0x0a)).toBe(0x26);
    set(0x0a, 0xa6);
    expect(reg(0x0a)).toBe(0x26);
    expect(reg(0x0d)).toBe(0x80);
    expect(reg(0x0c)).toBe(0);
    set(0x0d, 0);
    expect(reg(0x0d)).toBe(0x80);
  });

  it('masks the NMI-disable bit off the index', () => {
    const { cmos } = cmosAt('2024-05-06T07:08:09Z');
    wr(cmos, 0, 0x80 | 0x00);
    expect(cmos.nmiDisabled).toBe(true);
    expect(rd(cmos, 1)).toBe(0x09);
    expect(rd(cmos, 0)).toBe(0x00);
    wr(cmos, 0, 0x80 | 0x3f);
    wr(cmos, 1, 0xaa);
    wr(cmos, 0, 0x3f);
    expect(cmos.nmiDisabled).toBe(false);
    expect(rd(cmos, 1)).toBe(0xaa);
  });

  it('memory size registers like crosvm and QEMU', () => {
    const { reg } = cmosAt('2024-01-01T00:00:00Z', { memBelow4g: 3 * GiB, memAbove4g: 5 * GiB });
    const above16m = (3 * GiB - 16 * MiB) / (64 * 1024);
    expect(reg(0x34) | (reg(0x35) << 8)).toBe(above16m);
    expect(reg(0x5b) | (reg(0x5c) << 8) | (reg(0x5d) << 16)).toBe((5 * GiB) / (64 * 1024));
    expect(reg(0x15) | (reg(0x16) << 8)).toBe(640);
    expect(reg(0x17) | (reg(0x18) << 8)).toBe(0xffff);
    expect(reg(0x30) | (reg(0x31) << 8)).toBe(0xffff);

    const small = cmosAt('2024-01-01T00:00:00Z', { memBelow4g: 8 * MiB, memAbove4g: 0 });
    expect(small.reg(0x34) | small.reg(0x35)).toBe(0);
    expect(small.reg(0x17) | (small.reg(0x18) << 8)).toBe(7 * 1024);
    const full = cmosAt('2024-01-01T00:00:00Z', { memBelow4g: 4 * GiB, memAbove4g: 2 ** 40 * 2 });
    expect(full.reg(0x34) | (full.reg(0x35) << 8)).toBe(0xff00); // (4 GiB - 16 MiB) / 64 KiB
    expect(full.reg(0x5b) | (full.reg(0x5c) << 8) | (full.reg(0x5d) << 16)).toBe(0xffffff); // capped
  });

  it('rejects bad memory sizes', () => {
    expect(() => new Cmos({ memBelow4g: -1, memAbove4g: 0 })).toThrow(ConfigError);
    expect(() => new Cmos({ memBelow4g: 5 * GiB, memAbove4g: 0 })).toThrow(ConfigError);
    expect(() => new Cmos({ memBelow4g: 0, memAbove4g: 0.5 })).toThrow(ConfigError);
  });

  it('keeps a guest-set time as an offset from the host clock (SET bit sequence, as Linux writes it)', () => {
    const { cmos, reg, set, advance } = cmosAt('2024-06-01T12:00:00Z');
    // mc146818_set_time: set SET, write the fields, clear SET.
    set(0x0b, 0x82);
    set(0x00, 0x30);
    set(0x02, 0x45);
    set(0x04, 0x08);
    set(0x07, 0x15);
    set(0x08, 0x03);
    set(0x09, 0x21);
    set(0x32, 0x20);
    expect(reg(0x00)).toBe(0x30); // frozen while SET
    advance(5000);
    expect(reg(0x00)).toBe(0x30);
    set(0x0b, 0x02);
    expect(cmos.guestTime().toISOString()).toBe('2021-03-15T08:45:30.000Z');
    advance(10_000);
    expect([reg(0x00), reg(0x02), reg(0x04), reg(0x07), reg(0x08), reg(0x09)]).toEqual([0x40, 0x45, 0x08, 0x15, 0x03, 0x21]);
    expect(reg(0x06)).toBe(0x02); // Monday, derived from the date
  });

  it('a single time register write with SET clear takes effect at once; invalid dates are ignored', () => {
    const { cmos, reg, set } = cmosAt('2024-06-01T12:00:00Z');
    set(0x02, 0x05);
    expect(cmos.guestTime().toISOString()).toBe('2024-06-01T12:05:00.000Z');
    set(0x08, 0x13); // month 13
    set(0x07, 0x31); // June 31st
    set(0x00, 0x7a); // bad BCD
    expect(cmos.guestTime().toISOString()).toBe('2024-06-01T12:05:00.000Z');
    expect(reg(0x08)).toBe(0x06);
  });

  it('splits wide accesses into index + data', () => {
    const { cmos } = cmosAt('2024-06-01T12:34:56Z');
    wr(cmos, 0, 0x3c00 | 0x40, 2); // index 0x40, data 0x3c
    wr(cmos, 0, 0x40);
    expect(rd(cmos, 1)).toBe(0x3c);
    expect(rd(cmos, 0, 2)).toBe(0x3c40);
    expect(rd(cmos, 2)).toBe(0xff);
  });

  it('property: random traffic never throws and time registers stay valid BCD', () => {
    const op = fc.record({
      offset: fc.integer({ min: 0, max: 4 }),
      size: fc.constantFrom(1, 2, 4, 8),
      value: fc.integer({ min: 0, max: 0xffffffff }),
      write: fc.boolean(),
    });
    fc.assert(
      fc.property(fc.array(op, { maxLength: 100 }), fc.integer({ min: 0, max: 4102444800000 }), (ops, ms) => {
        const cmos = new Cmos({ memBelow4g: 256 * MiB, memAbove4g: 0, now: () => new Date(ms) });
        for (const o of ops) {
          const d = new Uint8Array(o.size);
          for (let i = 0; i < o.size; i++) d[i] = (o.value >>> ((i % 4) * 8)) & 0xff;
          if (o.write) cmos.write(o.offset, d);
          else cmos.read(o.offset, d);
        }
        // Restore a known format, leave SET, and check the clock reads sensibly.
        wr(cmos, 0, 0x0b);
        wr(cmos, 1, 0x02);
        const t = cmos.guestTime();
        expect(Number.isFinite(t.getTime())).toBe(true);
        for (const r of [0x00, 0x02, 0x04, 0x07, 0x08]) {
          wr(cmos, 0, r);
          const v = rd(cmos, 1);
          expect(v >> 4).toBeLessThan(10);
          expect(v & 0xf).toBeLessThan(10);
        }
        wr(cmos, 0, 0x0a);
        // UIP announces the update in the last 20 ms of each second, as the MC146818 does ahead of it.
        expect(rd(cmos, 1) & 0x80).toBe(cmos.guestTime().getUTCMilliseconds() >= 980 ? 0x80 : 0);
      }),
    );
  });

  it('reads the time registers after a UIP-clear poll from one snapshot, so a second boundary cannot tear them', () => {
    let ms = Date.UTC(2026, 10, 23, 12, 59, 59, 975);
    const cmos = new Cmos({ memBelow4g: 256 * MiB, memAbove4g: 0, now: () => new Date(ms) });
    wr(cmos, 0, 0x0b);
    wr(cmos, 1, 0x06); // binary, 24 h
    wr(cmos, 0, 0x0a);
    expect(rd(cmos, 1) & 0x80).toBe(0); // 975 ms: not yet in the update window
    wr(cmos, 0, 0x00);
    expect(rd(cmos, 1)).toBe(59);
    ms += 30; // the host clock crosses into 13:00:00 between the two reads
    wr(cmos, 0, 0x02);
    expect(rd(cmos, 1)).toBe(59); // minutes from the same snapshot: 12:59:59, not 12:59:00
    ms = Date.UTC(2026, 10, 23, 12, 59, 59, 990);
    wr(cmos, 0, 0x0a);
    expect(rd(cmos, 1) & 0x80).toBe(0x80); // update in progress
  });
});
