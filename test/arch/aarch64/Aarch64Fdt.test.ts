/**
 * The guest device tree, checked by decompiling it with Debian's dtc (no warnings allowed) and
 * asserting on the DTS text, and in-process with our reader where no external tool is needed.
 */
import { describe, expect, it } from 'vitest';
import { AARCH64_RNG_SEED_SIZE, type Aarch64FdtInput, buildAarch64Fdt } from '../../../src/arch/aarch64/Aarch64Fdt';
import { cellsOf, findNode, findProperty, parseFdt, stringsOf } from '../../../src/arch/aarch64/FdtReader';
import { aarch64MemoryMap } from '../../../src/arch/aarch64/MemoryMap';
import { ConfigError } from '../../../src/errors';
import { type DtsNode, decompile, dtsCells, dtsNode, haveDtc, parseDts, runOnBlob } from './dtc';

const MiB = 2 ** 20;
const CMDLINE = 'console=ttyS0 root=/dev/vda ro panic=-1';

function input(over: Partial<Aarch64FdtInput> & { mem?: number } = {}): Aarch64FdtInput {
  const cpus = over.cpus ?? 2;
  return {
    map: aarch64MemoryMap((over.mem ?? 512) * MiB, cpus),
    cpus,
    cmdline: CMDLINE,
    initrd: { start: 0x8300_0000, end: 0x8300_0000 + 0x12_3456 },
    pciDevices: [
      { device: 1, intPin: 1, irq: 4 },
      { device: 2, intPin: 2, irq: 5 },
      { device: 3 }, // MSI only: no interrupt-map entry
    ],
    kaslrSeed: 0x0123_4567_89ab_cdefn,
    rngSeed: new Uint8Array(16).fill(7),
    ...over,
  };
}

/** Decompile and require a clean run: exit 0 and nothing at all on stderr (no dtc warnings). */
function cleanDts(blob: Uint8Array): { text: string; root: DtsNode } {
  const r = decompile(blob);
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  return { text: r.stdout, root: parseDts(r.stdout).root };
}

/** Every phandle value in the tree, and the nodes carrying them. */
function phandles(root: DtsNode): Map<number, DtsNode> {
  const out = new Map<number, DtsNode>();
  const walk = (n: DtsNode): void => {
    const p = n.properties.get('phandle');
    if (p !== undefined && p[0]?.kind === 'cells') {
      expect(out.has(p[0].cells[0]!), `duplicate phandle ${p[0].cells[0]}`).toBe(false);
      out.set(p[0].cells[0]!, n);
    }
    n.children.forEach(walk);
  };
  walk(root);
  return out;
}

/** The interrupt controller a node's interrupts go to (interrupt-parent, inherited from ancestors). */
function interruptParent(root: DtsNode, path: string): number {
  const parts = path.split('/').filter((p) => p !== '');
  for (let i = parts.length; i >= 0; i--) {
    const n = dtsNode(root, `/${parts.slice(0, i).join('/')}`)!;
    const p = n.properties.get('interrupt-parent');
    if (p !== undefined) return dtsCells(root, `/${parts.slice(0, i).join('/')}`, 'interrupt-parent')[0]!;
  }
  throw new Error(`no interrupt-parent for ${path}`);
}

describe.skipIf(!haveDtc)('the aarch64 guest device tree, decompiled by dtc', () => {
  it('decompiles without a single warning for 1, 2, 8, 17 and 512 vCPUs, with and without initrd and PCI devices', () => {
    for (const cpus of [1, 2, 8, 17, 512]) {
      cleanDts(buildAarch64Fdt(input({ cpus })));
      cleanDts(buildAarch64Fdt({ map: aarch64MemoryMap(64 * MiB, cpus), cpus, cmdline: '' }));
    }
  });

  it('has the nodes crosvm gives a guest, with their addresses', () => {
    const { text, root } = cleanDts(buildAarch64Fdt(input()));
    expect(root.children.map((c) => c.name)).toEqual(['chosen', 'memory@80000000', 'cpus', 'intc@3fff0000', 'timer', 'serial@3f8', 'psci', 'pci@10000']);
    expect(text).toContain('compatible = "linux,dummy-virt";');
    expect(dtsCells(root, '/', '#address-cells')).toEqual([2]);
    expect(dtsCells(root, '/', '#size-cells')).toEqual([2]);

    expect(text).toMatch(/memory@80000000 \{\s+device_type = "memory";\s+reg = <0x00 0x80000000 0x00 0x20000000>;/);

    expect(text).toMatch(/cpu@1 \{\s+device_type = "cpu";\s+compatible = "arm,armv8";\s+enable-method = "psci";\s+reg = <0x01>;/);
    expect(dtsCells(root, '/cpus', '#address-cells')).toEqual([1]);
    expect(dtsCells(root, '/cpus', '#size-cells')).toEqual([0]);

    expect(text).toMatch(/psci \{\s+compatible = "arm,psci-1.0\\0arm,psci-0.2";\s+method = "hvc";/);

    // GICv3: distributor, then one redistributor region of 2 x 128 KiB right below it
    expect(text).toContain('compatible = "arm,gic-v3";');
    expect(text).toMatch(/intc@3fff0000 \{[^}]*interrupt-controller;/);
    expect(dtsCells(root, '/intc@3fff0000', '#interrupt-cells')).toEqual([3]);
    expect(dtsCells(root, '/intc@3fff0000', 'reg')).toEqual([0, 0x3fff_0000, 0, 0x1_0000, 0, 0x3ffb_0000, 0, 0x4_0000]);

    // timer: PPIs 13, 14, 11, 10, level-low (8), CPU mask of 2 CPUs (0b11 << 8)
    expect(dtsCells(root, '/timer', 'interrupts')).toEqual([1, 13, 0x308, 1, 14, 0x308, 1, 11, 0x308, 1, 10, 0x308]);
    expect(text).toMatch(/timer \{\s+compatible = "arm,armv8-timer";[^}]*always-on;/);

    // ns16550a at 0x3f8, SPI 0 edge-rising, 1.8432 MHz
    expect(text).toContain('compatible = "ns16550a";');
    expect(dtsCells(root, '/serial@3f8', 'reg')).toEqual([0, 0x3f8, 0, 8]);
    expect(dtsCells(root, '/serial@3f8', 'interrupts')).toEqual([0, 0, 1]);
    expect(dtsCells(root, '/serial@3f8', 'clock-frequency')).toEqual([1_843_200]);

    // chosen
    expect(text).toContain(`bootargs = "${CMDLINE}";`);
    expect(text).toContain('stdout-path = "/serial@3f8";');
    expect(dtsCells(root, '/chosen', 'linux,initrd-start')).toEqual([0, 0x8300_0000]);
    expect(dtsCells(root, '/chosen', 'linux,initrd-end')).toEqual([0, 0x8312_3456]);
    expect(dtsCells(root, '/chosen', 'kaslr-seed')).toEqual([0x0123_4567, 0x89ab_cdef]);
    expect(text).not.toContain('linux,pci-probe-only');
  });

  it('describes the PCI host: ECAM, ranges, bus-range and one interrupt-map entry per INTx device', () => {
    const { text, root } = cleanDts(buildAarch64Fdt(input({ mem: 1024 })));
    const pci = '/pci@10000';
    expect(text).toContain('compatible = "pci-host-ecam-generic";');
    expect(text).toMatch(/pci@10000 \{[^}]*device_type = "pci";[^}]*dma-coherent;/);
    expect(dtsCells(root, pci, 'reg')).toEqual([0, 0x1_0000, 0, 0x10_0000]);
    expect(dtsCells(root, pci, 'bus-range')).toEqual([0, 0]);
    expect(dtsCells(root, pci, '#address-cells')).toEqual([3]);
    expect(dtsCells(root, pci, '#size-cells')).toEqual([2]);
    expect(dtsCells(root, pci, '#interrupt-cells')).toEqual([1]);
    // 32-bit non-prefetchable window, then the 64-bit prefetchable window after RAM + 1 GiB platform MMIO
    // (0x8000_0000 + 1 GiB RAM + 1 GiB = 0x1_0000_0000, up to 2^40: size 0xff_0000_0000)
    expect(dtsCells(root, pci, 'ranges')).toEqual([
      0x0200_0000, 0, 0x200_0000, 0, 0x200_0000, 0, 0x200_0000,
      0x4300_0000, 0x1, 0, 0x1, 0, 0xff, 0,
    ]);
    // device 1 INTA -> SPI 4, device 2 INTB -> SPI 5, level-high, through the GIC (phandle 1, 2 address cells)
    expect(dtsCells(root, pci, 'interrupt-map')).toEqual([
      0x800, 0, 0, 1, 1, 0, 0, 0, 4, 4,
      0x1000, 0, 0, 2, 1, 0, 0, 0, 5, 4,
    ]);
    expect(dtsCells(root, pci, 'interrupt-map-mask')).toEqual([0xf800, 0, 0, 7]);
  });

  it('every phandle reference resolves to the node it means', () => {
    const { root } = cleanDts(buildAarch64Fdt(input({ cpus: 4 })));
    const handles = phandles(root);
    const gic = handles.get(interruptParent(root, '/serial@3f8'))!;
    expect(gic.name).toBe('intc@3fff0000');
    expect(gic.properties.has('interrupt-controller')).toBe(true);
    for (const path of ['/timer', '/serial@3f8', '/pci@10000']) expect(handles.get(interruptParent(root, path))).toBe(gic);
    // interrupt-map: 10 cells per entry, the 5th is the parent's phandle
    const map = dtsCells(root, '/pci@10000', 'interrupt-map');
    for (let i = 0; i < map.length; i += 10) expect(handles.get(map[i + 4]!)).toBe(gic);
    // each CPU has its own phandle
    for (let id = 0; id < 4; id++) expect(handles.get(0x100 + id)?.name).toBe(`cpu@${id}`);
    // stdout-path names an existing node
    const stdout = dtsNode(root, '/chosen')!.properties.get('stdout-path')![0]!;
    expect(stdout.kind === 'string' && dtsNode(root, stdout.value)?.name).toBe('serial@3f8');
  });

  it('names CPUs by their MPIDR affinity: 16 per Aff0 group, as KVM assigns them', () => {
    const { root } = cleanDts(buildAarch64Fdt(input({ cpus: 17 })));
    const names = dtsNode(root, '/cpus')!.children.map((c) => c.name);
    expect(names.slice(0, 3)).toEqual(['cpu@0', 'cpu@1', 'cpu@2']);
    expect(names[15]).toBe('cpu@f');
    expect(names[16]).toBe('cpu@100');
    expect(dtsCells(root, '/cpus/cpu@100', 'reg')).toEqual([0x100]);
    // 17 redistributors; the timer's CPU mask saturates at 8 CPUs (bits 15:8)
    expect(dtsCells(root, '/intc@3fff0000', 'reg').slice(4)).toEqual([0, 0x3fff_0000 - 17 * 0x2_0000, 0, 17 * 0x2_0000]);
    expect(dtsCells(root, '/timer', 'interrupts')[2]).toBe(0xff08);
  });

  it('fdtget reads /chosen/bootargs back', () => {
    const r = runOnBlob('fdtget', ['-t', 's', '{}', '/chosen', 'bootargs'], buildAarch64Fdt(input()));
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe(`${CMDLINE}\n`);
  });
});

describe('the aarch64 guest device tree, in-process', () => {
  it('draws a fresh kaslr-seed and rng-seed from node:crypto for every build', () => {
    const a = parseFdt(buildAarch64Fdt(input({ kaslrSeed: undefined, rngSeed: undefined })));
    const b = parseFdt(buildAarch64Fdt(input({ kaslrSeed: undefined, rngSeed: undefined })));
    const seed = (t: typeof a, name: string): Uint8Array => findProperty(findNode(t.root, '/chosen')!, name)!;
    expect(seed(a, 'kaslr-seed').length).toBe(8);
    expect(seed(a, 'rng-seed').length).toBe(AARCH64_RNG_SEED_SIZE);
    expect(Buffer.from(seed(a, 'kaslr-seed')).equals(Buffer.from(seed(b, 'kaslr-seed')))).toBe(false);
    expect(Buffer.from(seed(a, 'rng-seed')).equals(Buffer.from(seed(b, 'rng-seed')))).toBe(false);
  });

  it('is reproducible with fixed seeds, and rngSeed: null leaves rng-seed out', () => {
    expect(buildAarch64Fdt(input())).toEqual(buildAarch64Fdt(input()));
    const t = parseFdt(buildAarch64Fdt(input({ rngSeed: null })));
    expect(findProperty(findNode(t.root, '/chosen')!, 'rng-seed')).toBeUndefined();
  });

  it('leaves initrd properties out without an initrd, and adds linux,pci-probe-only on request', () => {
    const chosen = findNode(parseFdt(buildAarch64Fdt(input({ initrd: undefined, pciProbeOnly: true }))).root, '/chosen')!;
    expect(chosen.properties.map((p) => p.name)).toEqual(['linux,pci-probe-only', 'bootargs', 'stdout-path', 'kaslr-seed', 'rng-seed']);
    expect(cellsOf(findProperty(chosen, 'linux,pci-probe-only')!)).toEqual([1]);
  });

  it('sets boot_cpuid_phys to the boot CPU and has no memory reservations', () => {
    const t = parseFdt(buildAarch64Fdt(input()));
    expect(t.bootCpuidPhys).toBe(0);
    expect(t.reservations).toEqual([]);
    expect(stringsOf(findProperty(findNode(t.root, '/psci')!, 'compatible')!)).toEqual(['arm,psci-1.0', 'arm,psci-0.2']);
  });

  it.each([
    ['cmdline', { cmdline: 'x'.repeat(2048) }, /at most 2047 bytes/],
    ['pciDevices[0].device', { pciDevices: [{ device: 32 }] }, /0 to 31/],
    ['pciDevices[0].intPin', { pciDevices: [{ device: 1, intPin: 5, irq: 4 }] }, /INTA# to INTD#/],
    ['pciDevices[0].irq', { pciDevices: [{ device: 1, intPin: 1 }] }, /required when intPin is set/],
    ['pciDevices[0].irq', { pciDevices: [{ device: 1, intPin: 1, irq: 0 }] }, /SPI from 4 to 31/],
    ['pciDevices[0].irq', { pciDevices: [{ device: 1, intPin: 1, irq: 32 }] }, /SPI from 4 to 31/],
    ['pciDevices[1]', { pciDevices: [{ device: 1, intPin: 1, irq: 4 }, { device: 1, intPin: 1, irq: 5 }] }, /repeats device 1 pin 1/],
  ])('rejects a bad %s with a ConfigError', (option, over, message) => {
    const act = (): Uint8Array => buildAarch64Fdt(input(over));
    expect(act).toThrow(ConfigError);
    expect(act).toThrow(message);
    try {
      act();
    } catch (e) {
      expect((e as ConfigError).option).toBe(option);
    }
  });

  it('accepts a 2047-byte command line', () => {
    const t = parseFdt(buildAarch64Fdt(input({ cmdline: 'y'.repeat(2047) })));
    expect(stringsOf(findProperty(findNode(t.root, '/chosen')!, 'bootargs')!)[0]!.length).toBe(2047);
  });
});
