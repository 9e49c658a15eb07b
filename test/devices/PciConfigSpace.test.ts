import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { PciConfigSpace } from '../../src/devices/pci/PciConfigSpace';
import {
  PCI_CAP_ID_MSIX,
  PCI_CAP_ID_VNDR,
  PCI_COMMAND,
  PCI_STATUS,
  PCI_STATUS_CAP_LIST,
} from '../../src/devices/pci/PciRegisters';
import { ConfigError } from '../../src/errors';

const base = { vendorId: 0x1af4, deviceId: 0x1042, classCode: 0x018000, revisionId: 1, subsystemVendorId: 0x1af4, subsystemId: 2 };

/** Guest-side helpers (a dword write at a byte offset, a dword read). */
function guest(cs: PciConfigSpace) {
  return {
    r32: (off: number) => cs.readConfig(off >> 2),
    w32: (off: number, v: number) => cs.writeConfig(off >> 2, 0, Uint8Array.of(v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, v >>> 24)),
    w16: (off: number, v: number) => cs.writeConfig(off >> 2, off & 3, Uint8Array.of(v & 0xff, v >>> 8)),
    w8: (off: number, v: number) => cs.writeConfig(off >> 2, off & 3, Uint8Array.of(v)),
  };
}

/** The size a driver computes from a BAR sizing read (Linux pci_size()). */
function sizeFromMask(mask: number, io: boolean): number {
  const m = (mask & (io ? 0xfffffffc : 0xfffffff0)) >>> 0;
  return ((~m >>> 0) + 1) >>> 0;
}

describe('PciConfigSpace', () => {
  it('lays out a read-only type-0 header', () => {
    const cs = new PciConfigSpace({ ...base, interruptPin: 1 });
    const g = guest(cs);
    expect(g.r32(0x00)).toBe(0x10421af4);
    expect(g.r32(0x08)).toBe(0x01800001);
    expect(g.r32(0x0c)).toBe(0);
    expect(g.r32(0x2c)).toBe(0x00021af4);
    expect(g.r32(0x3c)).toBe(0x00000100);
    g.w32(0x00, 0xffffffff);
    g.w32(0x08, 0xffffffff);
    g.w32(0x2c, 0);
    g.w8(0x3d, 4);
    expect(g.r32(0x00)).toBe(0x10421af4);
    expect(g.r32(0x08)).toBe(0x01800001);
    expect(g.r32(0x2c)).toBe(0x00021af4);
    expect(cs.readU8(0x3d)).toBe(1);
    g.w8(0x3c, 11); // interrupt line and cache line size are writable
    g.w8(0x0c, 0x10);
    expect(cs.interruptLine).toBe(11);
    expect(cs.readU8(0x0c)).toBe(0x10);
    expect(g.r32(0x30)).toBe(0); // no expansion ROM
    g.w32(0x30, 0xffffffff);
    expect(g.r32(0x30)).toBe(0);
  });

  it('command bits: I/O, memory, master, SERR, INTx disable writable, others read 0', () => {
    const cs = new PciConfigSpace(base);
    guest(cs).w16(PCI_COMMAND, 0xffff);
    expect(cs.command).toBe(0x0507);
  });

  it('status: RW1C error bits, interrupt status from the device', () => {
    const cs = new PciConfigSpace(base);
    cs.writeU16(PCI_STATUS, 0xf900);
    guest(cs).w16(PCI_STATUS, 0x2000);
    expect(cs.readU16(PCI_STATUS)).toBe(0xd900);
    guest(cs).w16(PCI_STATUS, 0xffff);
    expect(cs.readU16(PCI_STATUS)).toBe(0x0000);
    cs.setInterruptStatus(true);
    expect(guest(cs).r32(0x04) >>> 16).toBe(0x08);
    cs.setInterruptStatus(false);
    expect(guest(cs).r32(0x04) >>> 16).toBe(0);
  });

  it('BAR sizing dance: 32-bit memory, prefetchable', () => {
    const cs = new PciConfigSpace(base);
    cs.addBar(1, { kind: 'mem32', size: 0x1000, prefetchable: true });
    const g = guest(cs);
    expect(g.r32(0x14)).toBe(0x08);
    g.w32(0x14, 0xffffffff);
    const mask = g.r32(0x14);
    expect(mask).toBe(0xfffff008);
    expect(sizeFromMask(mask, false)).toBe(0x1000);
    g.w32(0x14, 0xfebf1234); // low bits below the size are not writable
    expect(g.r32(0x14)).toBe(0xfebf1008);
    expect(cs.barAddress(1)).toBe(0xfebf1000);
    expect(cs.barAddress(0)).toBeUndefined();
    // Unused BARs read 0 even after a sizing write.
    g.w32(0x10, 0xffffffff);
    expect(g.r32(0x10)).toBe(0);
  });

  it('BAR sizing dance: I/O BAR', () => {
    const cs = new PciConfigSpace(base);
    cs.addBar(0, { kind: 'io', size: 0x20 });
    const g = guest(cs);
    expect(g.r32(0x10)).toBe(0x01);
    g.w32(0x10, 0xffffffff);
    expect(g.r32(0x10)).toBe(0xffffffe1);
    expect(sizeFromMask(g.r32(0x10), true)).toBe(0x20);
    g.w32(0x10, 0xc040);
    expect(cs.barAddress(0)).toBe(0xc040);
  });

  it('BAR sizing dance: 64-bit BARs, below and above 4 GiB in size', () => {
    const cs = new PciConfigSpace(base);
    cs.addBar(2, { kind: 'mem64', size: 0x4000, prefetchable: true });
    cs.addBar(4, { kind: 'mem64', size: 2 ** 34 });
    const g = guest(cs);
    expect(g.r32(0x18)).toBe(0x0c);
    g.w32(0x18, 0xffffffff);
    g.w32(0x1c, 0xffffffff);
    expect(g.r32(0x18)).toBe(0xffffc00c);
    expect(g.r32(0x1c)).toBe(0xffffffff);
    g.w32(0x18, 0xe0000000);
    g.w32(0x1c, 0x00000008);
    expect(cs.barAddress(2)).toBe(0x8_e000_0000);
    expect(cs.barAddress(3)).toBeUndefined();

    g.w32(0x20, 0xffffffff);
    g.w32(0x24, 0xffffffff);
    expect(g.r32(0x20)).toBe(0x04); // no writable bits in the low dword
    expect(g.r32(0x24)).toBe(0xfffffffc);
    // size = ~(hi:lo & ~0xf) + 1 over 64 bits
    const mask64 = BigInt(g.r32(0x24)) << 32n | BigInt(g.r32(0x20) & 0xfffffff0);
    expect((~mask64 & 0xffff_ffff_ffff_ffffn) + 1n).toBe(2n ** 34n);
  });

  it('rejects bad BARs', () => {
    const cs = new PciConfigSpace(base);
    cs.addBar(0, { kind: 'mem64', size: 0x1000 });
    expect(() => cs.addBar(1, { kind: 'mem32', size: 0x1000 })).toThrow(ConfigError); // upper half of BAR 0
    expect(() => cs.addBar(5, { kind: 'mem64', size: 0x1000 })).toThrow(ConfigError);
    expect(() => cs.addBar(2, { kind: 'mem32', size: 0x1800 })).toThrow(ConfigError);
    expect(() => cs.addBar(2, { kind: 'mem32', size: 8 })).toThrow(ConfigError);
    expect(() => cs.addBar(2, { kind: 'io', size: 512 })).toThrow(ConfigError);
    expect(() => cs.addBar(6, { kind: 'io', size: 4 })).toThrow(ConfigError);
    expect(() => cs.addBar(2, { kind: 'io', size: 4, prefetchable: true })).toThrow(ConfigError);
    expect(cs.bars.map((b) => b.index)).toEqual([0]);
  });

  it('capability list: linked from 0x34 in insertion order, status bit set, masks apply', () => {
    const cs = new PciConfigSpace(base);
    expect(cs.readU16(PCI_STATUS) & PCI_STATUS_CAP_LIST).toBe(0);
    expect(cs.readU8(0x34)).toBe(0);
    const vndr = cs.addCapability(PCI_CAP_ID_VNDR, Uint8Array.of(14, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0));
    // MSI-X: message control (enable bit 15 and function mask bit 14 writable), table, PBA.
    const msixBody = new Uint8Array(10);
    msixBody[0] = 7; // table size - 1
    const msixMask = new Uint8Array(10);
    msixMask[1] = 0xc0;
    const msix = cs.addCapability(PCI_CAP_ID_MSIX, msixBody, { writeMask: msixMask });
    expect(vndr).toBe(0x40);
    expect(msix).toBe(0x50); // 0x40 + 16 bytes, dword aligned
    expect(cs.readU16(PCI_STATUS) & PCI_STATUS_CAP_LIST).toBe(PCI_STATUS_CAP_LIST);

    // Walk the list the way a driver does.
    const g = guest(cs);
    const ids: [number, number][] = [];
    let p = (g.r32(0x34) & 0xff) & ~3;
    while (p) {
      const hdr = g.r32(p);
      ids.push([p, hdr & 0xff]);
      p = ((hdr >> 8) & 0xff) & ~3;
    }
    expect(ids).toEqual([[0x40, PCI_CAP_ID_VNDR], [0x50, PCI_CAP_ID_MSIX]]);
    expect(cs.capabilities.map((c) => c.offset)).toEqual([0x40, 0x50]);

    // The guest cannot rewrite the header or read-only body, but can set MSI-X enable.
    g.w32(0x40, 0xffffffff);
    expect(g.r32(0x40)).toBe(0x010e5009);
    g.w16(0x52, 0xffff);
    expect(cs.readU16(0x52)).toBe(0xc007);
    g.w8(0x34, 0x80);
    expect(cs.readU8(0x34)).toBe(0x40);
  });

  it('capabilities must fit below 0x100', () => {
    const cs = new PciConfigSpace(base);
    cs.addCapability(PCI_CAP_ID_VNDR, new Uint8Array(0xb0));
    expect(() => cs.addCapability(PCI_CAP_ID_VNDR, new Uint8Array(16))).toThrow(ConfigError);
    expect(() => cs.addCapability(PCI_CAP_ID_VNDR, new Uint8Array(2), { writeMask: new Uint8Array(3) })).toThrow(ConfigError);
  });

  it('extended config space and extended capabilities', () => {
    const small = new PciConfigSpace(base);
    expect(small.size).toBe(256);
    expect(small.readConfig(64)).toBe(0xffffffff);
    expect(() => small.addExtendedCapability(0x0b, 1, new Uint8Array(4))).toThrow(ConfigError);

    const cs = new PciConfigSpace({ ...base, extended: true });
    expect(cs.size).toBe(4096);
    expect(cs.readConfig(0x100 / 4)).toBe(0); // no extended capabilities: a zero header
    const a = cs.addExtendedCapability(0x0b, 1, new Uint8Array(6));
    const b = cs.addExtendedCapability(0x23, 2, new Uint8Array(8));
    expect([a, b]).toEqual([0x100, 0x10c]);
    expect(cs.readConfig(a / 4)).toBe((0x10c << 20) | (1 << 16) | 0x0b);
    expect(cs.readConfig(b / 4)).toBe((2 << 16) | 0x23);
    expect(cs.readConfig(1024)).toBe(0xffffffff);
  });

  it('device-side accessors are bounds-checked', () => {
    const cs = new PciConfigSpace(base);
    expect(() => cs.readU32(253)).toThrow(ConfigError);
    expect(() => cs.writeU8(-1, 0)).toThrow(ConfigError);
    cs.writeU32(0xfc, 0xdeadbeef);
    expect(cs.readConfig(63)).toBe(0xdeadbeef);
  });

  it('rejects bad identity options', () => {
    expect(() => new PciConfigSpace({ ...base, vendorId: 0x10000 })).toThrow(ConfigError);
    expect(() => new PciConfigSpace({ ...base, classCode: -1 })).toThrow(ConfigError);
    expect(() => new PciConfigSpace({ ...base, interruptPin: 5 })).toThrow(ConfigError);
  });

  it('property: guest writes never throw and never change read-only bytes', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            reg: fc.integer({ min: -2, max: 1100 }),
            offset: fc.integer({ min: -1, max: 5 }),
            data: fc.uint8Array({ minLength: 0, maxLength: 8 }),
          }),
          { maxLength: 200 },
        ),
        (writes) => {
          const cs = new PciConfigSpace({ ...base, extended: true });
          cs.addBar(0, { kind: 'mem32', size: 0x1000 });
          cs.addBar(2, { kind: 'mem64', size: 0x100000 });
          cs.addCapability(PCI_CAP_ID_VNDR, new Uint8Array(14));
          const before = Array.from({ length: 1024 }, (_, r) => cs.readConfig(r));
          for (const w of writes) cs.writeConfig(w.reg, w.offset, w.data);
          // Identity, header type, capability pointer, capability contents unchanged.
          for (const r of [0, 2, 0x0b, 0x0d, 0x10, 0x11, 0x12, 0x13]) expect(cs.readConfig(r)).toBe(before[r]);
          expect(cs.readConfig(3) >>> 16).toBe(before[3]! >>> 16); // header type, BIST (not cache line size)
          for (let r = 0x40 / 4; r < 1024; r++) expect(cs.readConfig(r)).toBe(before[r]);
          // BAR type bits are fixed and address bits stay size-aligned.
          expect(cs.readConfig(4) & 0xfff).toBe(0);
          expect(cs.readConfig(6) & 0xfffff).toBe(0x4);
          expect(cs.readConfig(5)).toBe(0);
        },
      ),
    );
  });
});
