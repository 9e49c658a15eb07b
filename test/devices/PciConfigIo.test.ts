import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Bus } from '../../src/devices/Bus';
import { PCI_CONFIG_IO_LEN, PCI_CONFIG_IO_PORT, PciConfigIo } from '../../src/devices/pci/PciConfigIo';
import { PciConfigSpace } from '../../src/devices/pci/PciConfigSpace';
import type { PciDevice } from '../../src/devices/pci/PciDevice';
import { PciRoot } from '../../src/devices/pci/PciRoot';
import { ConfigError } from '../../src/errors';

function io(root = new PciRoot(), onReset?: () => void) {
  const cfg = new PciConfigIo(root, { onReset });
  const bus = new Bus('pio');
  bus.insert(cfg, PCI_CONFIG_IO_PORT, PCI_CONFIG_IO_LEN);
  const inp = (port: number, size: number) => {
    const d = new Uint8Array(size);
    bus.read(port, d);
    return d.reduceRight((v, b) => v * 256 + b, 0);
  };
  const out = (port: number, size: number, v: number) => {
    const d = new Uint8Array(size);
    for (let i = 0; i < size; i++) d[i] = (v >>> (i * 8)) & 0xff;
    bus.write(port, d);
  };
  const addr = (bus_: number, dev: number, fn: number, reg: number) =>
    (0x80000000 | (bus_ << 16) | (dev << 11) | (fn << 8) | (reg & 0xfc)) >>> 0;
  return { cfg, root, inp, out, addr };
}

/** A config space wrapped as a PciDevice. */
function device(name: string, space: PciConfigSpace): PciDevice {
  return { name, readConfig: (r) => space.readConfig(r), writeConfig: (r, o, d) => space.writeConfig(r, o, d) };
}

describe('PciConfigIo', () => {
  it('CONFIG_ADDRESS reads back a dword write (Linux pci_check_type1)', () => {
    const { inp, out } = io();
    out(0xcfb, 1, 0x01); // not CONFIG_ADDRESS: dropped
    expect(inp(0xcf8, 4)).toBe(0);
    out(0xcf8, 4, 0x80000000);
    expect(inp(0xcf8, 4)).toBe(0x80000000);
    out(0xcf8, 4, 0x80001233);
    expect(inp(0xcf8, 4)).toBe(0x80001230); // bits 1:0 read 0
  });

  it('byte accesses to 0xCF8/0xCFA are not CONFIG_ADDRESS (the mechanism #2 probe fails)', () => {
    const { inp, out } = io();
    out(0xcfb, 1, 0);
    out(0xcf8, 1, 0);
    out(0xcfa, 1, 0);
    expect(inp(0xcf8, 1)).toBe(0xff);
    expect(inp(0xcfa, 1)).toBe(0xff);
    expect(inp(0xcf8, 2)).toBe(0xffff);
  });

  it('an empty root reads all ones for every function, register and size', () => {
    const { inp, out, addr } = io();
    for (const [dev, fn, reg] of [[0, 0, 0], [31, 7, 0xfc], [3, 0, 8]] as const) {
      out(0xcf8, 4, addr(0, dev, fn, reg));
      expect(inp(0xcfc, 4)).toBe(0xffffffff);
      expect(inp(0xcfe, 2)).toBe(0xffff);
      expect(inp(0xcff, 1)).toBe(0xff);
    }
  });

  it('routes accesses to a device and returns the addressed bytes', () => {
    const root = new PciRoot();
    const space = new PciConfigSpace({ vendorId: 0x8086, deviceId: 0x1237, classCode: 0x060000, revisionId: 2 });
    expect(root.add(device('host-bridge', space))).toEqual({ bus: 0, device: 0, function: 0 });
    const { inp, out, addr } = io(root);
    out(0xcf8, 4, addr(0, 0, 0, 0));
    expect(inp(0xcfc, 4)).toBe(0x12378086);
    expect(inp(0xcfc, 2)).toBe(0x8086);
    expect(inp(0xcfe, 2)).toBe(0x1237);
    expect(inp(0xcfd, 1)).toBe(0x80);
    out(0xcf8, 4, addr(0, 0, 0, 0x08));
    expect(inp(0xcfc, 4)).toBe(0x06000002);
    // Linux pci_sanity_check reads PCI_CLASS_DEVICE (0x0a) as a word.
    out(0xcf8, 4, addr(0, 0, 0, 0x0a));
    expect(inp(0xcfe, 2)).toBe(0x0600);
    // Function 1 and bus 1 are absent.
    out(0xcf8, 4, addr(0, 0, 1, 0));
    expect(inp(0xcfc, 4)).toBe(0xffffffff);
    out(0xcf8, 4, addr(1, 0, 0, 0));
    expect(inp(0xcfc, 4)).toBe(0xffffffff);
    // Writes through CONFIG_DATA: interrupt line at 0x3c byte 0.
    out(0xcf8, 4, addr(0, 0, 0, 0x3c));
    out(0xcfc, 1, 0x0b);
    expect(inp(0xcfc, 1)).toBe(0x0b);
    expect(space.interruptLine).toBe(0x0b);
    // Enable bit clear: no config cycle.
    out(0xcf8, 4, addr(0, 0, 0, 0) & 0x7fffffff);
    expect(inp(0xcfc, 4)).toBe(0xffffffff);
  });

  it('accesses running past 0xCFF read all ones and write nothing', () => {
    const root = new PciRoot();
    const writes: unknown[] = [];
    root.add({ name: 'rec', readConfig: () => 0x11223344, writeConfig: (...a) => writes.push(a) }, { device: 5 });
    const { inp, out, addr } = io(root);
    out(0xcf8, 4, addr(0, 5, 0, 0));
    expect(inp(0xcfd, 2)).toBe(0x2233);
    expect(inp(0xcfe, 4)).toBe(0xffffffff);
    out(0xcfe, 4, 0);
    out(0xcfd, 2, 0xaabb);
    expect(writes).toEqual([[0, 1, Uint8Array.of(0xbb, 0xaa)]]);
  });

  it('AMD IO ECS bits 27:24 extend the register number', () => {
    const root = new PciRoot();
    const seen: number[] = [];
    root.add({ name: 'rec', readConfig: (r) => (seen.push(r), 0), writeConfig: () => {} });
    const { inp, out } = io(root);
    out(0xcf8, 4, 0x81000000 | 0x04); // reg 0x104
    inp(0xcfc, 4);
    expect(seen).toEqual([0x104 / 4]);
  });

  it('0xCF9 RST_CPU requests a reset', () => {
    let resets = 0;
    const { inp, out } = io(new PciRoot(), () => resets++);
    out(0xcf9, 1, 0x02);
    expect(resets).toBe(0);
    expect(inp(0xcf9, 1)).toBe(0x02);
    out(0xcf9, 1, 0x06); // Linux reboot=pci
    expect(resets).toBe(1);
  });

  it('PciRoot rejects taken or invalid slots and fills the lowest free device number', () => {
    const root = new PciRoot();
    const d = (name: string): PciDevice => ({ name, readConfig: () => 0, writeConfig: () => {} });
    root.add(d('a'), { device: 0 });
    root.add(d('a1'), { device: 0, function: 1 });
    expect(() => root.add(d('b'), { device: 0 })).toThrow(/00:00.0.*already used by a/);
    expect(() => root.add(d('b'), { device: 32 })).toThrow(ConfigError);
    expect(() => root.add(d('b'), { device: 1, function: 8 })).toThrow(ConfigError);
    expect(root.add(d('c'))).toEqual({ bus: 0, device: 1, function: 0 });
    expect(root.entries().map((e) => e.device.name)).toEqual(['a', 'a1', 'c']);
    expect(root.remove({ bus: 0, device: 1, function: 0 })?.name).toBe('c');
    for (let i = 1; i < 32; i++) root.add(d(`x${i}`));
    expect(() => root.add(d('full'))).toThrow(/all 32 device numbers/);
  });

  it('property: with no devices every CONFIG_DATA read is all ones, for any access size and address', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            port: fc.integer({ min: 0xcf6, max: 0xd01 }),
            size: fc.constantFrom(1, 2, 3, 4, 8),
            value: fc.integer({ min: 0, max: 0xffffffff }),
            write: fc.boolean(),
          }),
          { maxLength: 100 },
        ),
        (ops) => {
          const { cfg } = io();
          for (const op of ops) {
            const off = op.port - PCI_CONFIG_IO_PORT;
            if (off < 0 || off >= PCI_CONFIG_IO_LEN) continue;
            const d = new Uint8Array(op.size);
            for (let i = 0; i < op.size; i++) d[i] = (op.value >>> ((i % 4) * 8)) & 0xff;
            if (op.write) cfg.write(off, d);
            else {
              cfg.read(off, d);
              if (off >= 4) expect([...d].every((b) => b === 0xff)).toBe(true);
            }
          }
        },
      ),
    );
  });

  it('property: random traffic with a device present never throws', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            off: fc.integer({ min: 0, max: 9 }),
            size: fc.constantFrom(1, 2, 3, 4, 8),
            value: fc.integer({ min: 0, max: 0xffffffff }),
            write: fc.boolean(),
          }),
          { maxLength: 200 },
        ),
        (ops) => {
          const root = new PciRoot();
          const space = new PciConfigSpace({ vendorId: 0x1af4, deviceId: 0x1041, classCode: 0x020000, extended: true });
          space.addBar(0, { kind: 'mem64', size: 0x4000 });
          space.addCapability(0x09, new Uint8Array(14));
          root.add(device('virtio', space), { device: 0 });
          const cfg = new PciConfigIo(root);
          for (const op of ops) {
            const d = new Uint8Array(op.size);
            for (let i = 0; i < op.size; i++) d[i] = (op.value >>> ((i % 4) * 8)) & 0xff;
            if (op.write) cfg.write(op.off, d);
            else cfg.read(op.off, d);
          }
          // Identity registers survive anything the guest wrote.
          expect(space.readConfig(0)).toBe(0x10411af4);
        },
      ),
    );
  });
});
