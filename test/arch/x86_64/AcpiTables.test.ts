import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { byteSum } from '../../../src/arch/x86_64/acpi/AcpiTable';
import { buildAcpiTables } from '../../../src/arch/x86_64/acpi/AcpiTables';
import { FadtOffset } from '../../../src/arch/x86_64/acpi/Fadt';

const ascii = (b: Uint8Array, at: number, n: number): string => String.fromCharCode(...b.subarray(at, at + n));
const dv = (b: Uint8Array): DataView => new DataView(b.buffer, b.byteOffset, b.byteLength);

describe.each([1, 2, 40, 254])('ACPI tables for %i vCPUs', (cpus) => {
  const acpi = buildAcpiTables({ cpus, ioapicId: cpus });
  const bySig = new Map(acpi.tables.map((t) => [t.signature, t]));
  const get = (s: string) => bySig.get(s)!;

  it('places the RSDP at 0xE0000 and everything below 0xF0000 without overlap', () => {
    expect(acpi.rsdpAddr).toBe(0xe0000);
    expect(get('RSDP').addr).toBe(0xe0000);
    const sorted = [...acpi.tables].sort((a, b) => a.addr - b.addr);
    for (let i = 1; i < sorted.length; i++) expect(sorted[i]!.addr).toBeGreaterThanOrEqual(sorted[i - 1]!.addr + sorted[i - 1]!.data.length);
    for (const t of acpi.tables) expect(t.addr % 16).toBe(0);
    expect(get('FACS').addr % 64).toBe(0);
    expect(acpi.end).toBeLessThanOrEqual(0xf0000);
  });

  it('has valid RSDP checksums and pointers', () => {
    const r = get('RSDP').data;
    expect(r.length).toBe(36);
    expect(ascii(r, 0, 8)).toBe('RSD PTR ');
    expect(byteSum(r, 0, 20)).toBe(0);
    expect(byteSum(r)).toBe(0);
    expect(r[15]).toBe(2);
    expect(ascii(r, 9, 6)).toBe('KVMKIT');
    expect(dv(r).getUint32(16, true)).toBe(get('RSDT').addr);
    expect(dv(r).getUint32(20, true)).toBe(36);
    expect(Number(dv(r).getBigUint64(24, true))).toBe(get('XSDT').addr);
  });

  it('gives every SDT a matching signature, length and a zero byte sum', () => {
    for (const t of acpi.tables.filter((x) => x.signature !== 'RSDP' && x.signature !== 'FACS')) {
      expect(ascii(t.data, 0, 4)).toBe(t.signature);
      expect(dv(t.data).getUint32(4, true)).toBe(t.data.length);
      expect(byteSum(t.data)).toBe(0);
      expect(ascii(t.data, 10, 6)).toBe('KVMKIT');
    }
  });

  it('lists the FADT and MADT in the RSDT and XSDT', () => {
    const want = [get('FACP').addr, get('APIC').addr];
    const rsdt = get('RSDT').data;
    const xsdt = get('XSDT').data;
    expect(rsdt.length).toBe(36 + 8);
    expect(xsdt.length).toBe(36 + 16);
    expect([dv(rsdt).getUint32(36, true), dv(rsdt).getUint32(40, true)]).toEqual(want);
    expect([Number(dv(xsdt).getBigUint64(36, true)), Number(dv(xsdt).getBigUint64(44, true))]).toEqual(want);
  });

  it('builds a revision 6 FADT pointing at the DSDT and FACS', () => {
    const f = get('FACP').data;
    const v = dv(f);
    expect(f.length).toBe(276);
    expect(f[8]).toBe(6);
    expect(v.getUint32(FadtOffset.DSDT, true)).toBe(get('DSDT').addr);
    expect(Number(v.getBigUint64(FadtOffset.X_DSDT, true))).toBe(get('DSDT').addr);
    expect(v.getUint32(FadtOffset.FIRMWARE_CTRL, true)).toBe(get('FACS').addr);
    expect(Number(v.getBigUint64(FadtOffset.X_FIRMWARE_CTRL, true))).toBe(0); // only one of the two may be set
    expect(v.getUint16(FadtOffset.SCI_INT, true)).toBe(9);
    expect(v.getUint32(FadtOffset.SMI_CMD, true)).toBe(0);
    expect(v.getUint32(FadtOffset.PM1A_EVT_BLK, true)).toBe(0x600);
    expect(v.getUint32(FadtOffset.PM1A_CNT_BLK, true)).toBe(0x604);
    expect(f[FadtOffset.PM1_EVT_LEN]).toBe(4);
    expect(f[FadtOffset.PM1_CNT_LEN]).toBe(2);
    // X_PM1a_EVT_BLK / X_PM1a_CNT_BLK: system I/O, bit width = 8 * legacy length
    expect([...f.subarray(FadtOffset.X_PM1A_EVT_BLK, FadtOffset.X_PM1A_EVT_BLK + 4)]).toEqual([1, 32, 0, 2]);
    expect(Number(v.getBigUint64(FadtOffset.X_PM1A_EVT_BLK + 4, true))).toBe(0x600);
    expect([...f.subarray(FadtOffset.X_PM1A_CNT_BLK, FadtOffset.X_PM1A_CNT_BLK + 4)]).toEqual([1, 16, 0, 2]);
    expect(Number(v.getBigUint64(FadtOffset.X_PM1A_CNT_BLK + 4, true))).toBe(0x604);
    const flags = v.getUint32(FadtOffset.FLAGS, true);
    expect(flags).toBe((1 << 0) | (1 << 4) | (1 << 5) | (1 << 10));
    expect(flags & (1 << 20)).toBe(0); // not hardware-reduced
    const iapc = v.getUint16(FadtOffset.IAPC_BOOT_ARCH, true);
    expect(iapc & 0b10).toBe(0b10); // 8042 present
    expect(iapc & 0b1000).toBe(0); // MSI allowed
    expect([...f.subarray(FadtOffset.RESET_REG, FadtOffset.RESET_REG + 4)]).toEqual([1, 8, 0, 1]);
    expect(Number(v.getBigUint64(FadtOffset.RESET_REG + 4, true))).toBe(0x64);
    expect(f[FadtOffset.RESET_VALUE]).toBe(0xfe);
    expect(ascii(f, FadtOffset.HYPERVISOR_VENDOR_ID, 6)).toBe('KVMKIT');
  });

  it('builds a 64-byte FACS', () => {
    const facs = get('FACS').data;
    expect(ascii(facs, 0, 4)).toBe('FACS');
    expect(dv(facs).getUint32(4, true)).toBe(64);
    expect(facs.length).toBe(64);
  });

  it('describes every vCPU, the IOAPIC, the SCI override and LINT1 NMI in the MADT', () => {
    const m = get('APIC').data;
    const v = dv(m);
    expect(m[8]).toBe(5);
    expect(v.getUint32(36, true)).toBe(0xfee00000);
    expect(v.getUint32(40, true)).toBe(1); // PCAT_COMPAT
    const entries: { type: number; at: number }[] = [];
    for (let at = 44; at < m.length; at += m[at + 1]!) {
      expect(m[at + 1]).toBeGreaterThan(0);
      entries.push({ type: m[at]!, at });
    }
    const lapics = entries.filter((e) => e.type === 0);
    expect(lapics.map((e) => [m[e.at + 2], m[e.at + 3], v.getUint32(e.at + 4, true)])).toEqual(
      Array.from({ length: cpus }, (_, i) => [i, i, 1]),
    );
    const [ioapic] = entries.filter((e) => e.type === 1);
    expect(m[ioapic!.at + 2]).toBe(cpus);
    expect(v.getUint32(ioapic!.at + 4, true)).toBe(0xfec00000);
    expect(v.getUint32(ioapic!.at + 8, true)).toBe(0);
    const isos = entries.filter((e) => e.type === 2);
    expect(isos).toHaveLength(1); // no IRQ0 -> GSI2: KVM's PIT raises GSI 0 = IOAPIC pin 0
    expect([m[isos[0]!.at + 2], m[isos[0]!.at + 3], v.getUint32(isos[0]!.at + 4, true), v.getUint16(isos[0]!.at + 8, true)]).toEqual([0, 9, 9, 0x000d]);
    const [nmi] = entries.filter((e) => e.type === 4);
    expect([m[nmi!.at + 2], m[nmi!.at + 5]]).toEqual([0xff, 1]);
  });
});

describe('ACPI tables and iasl', () => {
  const iasl = spawnSync('iasl', ['-v'], { encoding: 'utf8' });
  const haveIasl = iasl.status === 0;
  if (!haveIasl) console.log('skipping the iasl cross-check: iasl is not installed (apt-get install acpica-tools)');
  it.skipIf(!haveIasl)('disassemble without errors', () => {
    const dir = mkdtempSync(join(tmpdir(), 'kvmkit-acpi-'));
    try {
      const acpi = buildAcpiTables({ cpus: 4, ioapicId: 4, pciDevices: [{ device: 3, intPin: 1, irq: 11 }] });
      for (const t of acpi.tables.filter((x) => x.signature !== 'RSDP')) {
        const file = join(dir, `${t.signature.toLowerCase()}.dat`);
        writeFileSync(file, t.data);
        const r = spawnSync('iasl', ['-d', file], { encoding: 'utf8' });
        expect(r.status, `${t.signature}: ${r.stdout}${r.stderr}`).toBe(0);
        const dsl = readFileSync(file.replace(/\.dat$/, '.dsl'), 'utf8');
        expect(dsl).not.toMatch(/Error|Invalid/);
        if (t.signature === 'DSDT') {
          expect(dsl).toContain('Name (_S5, Package (0x04)');
          expect(dsl).toContain('EisaId ("PNP0A03")');
          expect(dsl).toContain('0x0003FFFF');
        }
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
