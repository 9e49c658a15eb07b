import { describe, expect, it } from 'vitest';
import * as aml from '../../../src/arch/x86_64/acpi/Aml';
import { dsdtAml, s5Package } from '../../../src/arch/x86_64/acpi/Dsdt';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

// Expected bytes were produced by `iasl -p t t.asl` (acpica-tools 20200925) from the ASL in the
// test names; the DSDT body test's ASL is written out below.
describe('AML encoder', () => {
  it('Name (_S5, Package (0x04) { 0x05, 0x05, Zero, Zero })', () => {
    expect(hex(s5Package())).toBe('085f53355f1208040a050a050000');
  });

  it('encodes integers in their shortest form', () => {
    expect(hex(aml.integer(0))).toBe('00');
    expect(hex(aml.integer(1))).toBe('01');
    expect(hex(aml.integer(5))).toBe('0a05');
    expect(hex(aml.integer(0x1234))).toBe('0b3412');
    expect(hex(aml.integer(0x12345678))).toBe('0c78563412');
    expect(hex(aml.integer(0x1_0000_0000))).toBe('0e0000000001000000');
    expect(() => aml.integer(-1)).toThrow(RangeError);
  });

  it('encodes PkgLength in 1 to 4 bytes, counting itself (ACPI 6.5 §20.2.4)', () => {
    expect(hex(aml.pkgLength(0))).toBe('01');
    expect(hex(aml.pkgLength(62))).toBe('3f');
    expect(hex(aml.pkgLength(63))).toBe('4104'); // 65 = 0x41
    expect(hex(aml.pkgLength(86))).toBe('4805'); // 88, as in iasl's `Buffer` of 84 bytes
    expect(hex(aml.pkgLength(0xffd))).toBe('4fff'); // 0xfff, the largest 2-byte length
    expect(hex(aml.pkgLength(0xffe))).toBe('810001'); // 0x1001 in 3 bytes
    expect(hex(aml.pkgLength(0x100000))).toBe('c4000001'); // 0x100004 in 4 bytes
    expect(() => aml.pkgLength(2 ** 28)).toThrow(RangeError);
  });

  it('encodes name strings', () => {
    expect(hex(aml.nameString('_S5'))).toBe('5f53355f');
    expect(hex(aml.nameString('\\_SB_.PCI0'))).toBe('5c2e5f53425f50434930');
    expect(hex(aml.nameString('A.B.C'))).toBe('2f03415f5f5f425f5f5f435f5f5f');
    expect(() => aml.nameSeg('lower')).toThrow(RangeError);
  });

  it('EisaId ("PNP0A03")', () => {
    expect(hex(aml.eisaId('PNP0A03'))).toBe('0c41d00a03');
    expect(hex(aml.eisaId('PNP0501'))).toBe('0c41d00501');
  });

  it('resource descriptors', () => {
    expect(hex(aml.ioPort(0xcf8, 0xcf8, 1, 8))).toBe('4701f80cf80c0108');
    expect(hex(aml.wordBusNumber(0, 0))).toBe('880d00020c0000000000000000000100');
    expect(hex(aml.wordIo(0, 0xcf7))).toBe('880d00010c0300000000f70c0000f80c');
    expect(hex(aml.dwordMemory(0xc000_0000, 0xfebf_ffff))).toBe('871700000c01000000000000' + '00c0ffffbffe000000000000c03e');
  });

  /*
   * DefinitionBlock ("t.aml", "DSDT", 2, "KVMKIT", "KVMKDSDT", 1) {
   *   Name (_S5, Package (0x04) { 0x05, 0x05, Zero, Zero })
   *   Device (\_SB.PCI0) {
   *     Name (_HID, EisaId ("PNP0A03"))
   *     Name (_SEG, Zero)  Name (_UID, Zero)  Name (_BBN, Zero)
   *     Name (_CRS, ResourceTemplate () {
   *       WordBusNumber (ResourceProducer, MinFixed, MaxFixed, PosDecode, 0x0000, 0x0000, 0x0000, 0x0000, 0x0001,,,)
   *       IO (Decode16, 0x0CF8, 0x0CF8, 0x01, 0x08,)
   *       WordIO (ResourceProducer, MinFixed, MaxFixed, PosDecode, EntireRange, 0x0000, 0x0000, 0x0CF7, 0x0000, 0x0CF8,,,, TypeStatic, DenseTranslation)
   *       WordIO (ResourceProducer, MinFixed, MaxFixed, PosDecode, EntireRange, 0x0000, 0x0D00, 0xFFFF, 0x0000, 0xF300,,,, TypeStatic, DenseTranslation)
   *       DWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed, NonCacheable, ReadWrite, 0x00000000, 0xC0000000, 0xFEBFFFFF, 0x00000000, 0x3EC00000,,,, AddressRangeMemory, TypeStatic)
   *     })
   *     Name (_PRT, Package (0x02) { Package (0x04) { 0x0001FFFF, Zero, Zero, 0x05 }, Package (0x04) { 0x0002FFFF, One, Zero, 0x0A } })
   *   }
   * }
   */
  it('produces the same DSDT body as iasl', () => {
    const body = dsdtAml([
      { device: 1, intPin: 1, irq: 5 },
      { device: 2, intPin: 2, irq: 10 },
    ]);
    expect(hex(body)).toBe(
      '085f53355f1208040a050a0500005b82450a2e5f53425f50434930085f4849440c41d00a03085f53454700085f55494400085f42424e00085f4352531148050a54880d00020c00000000000000000001004701f80cf80c0108880d00010c0300000000f70c0000f80c880d00010c030000000dffff000000f3871700000c0100000000000000c0ffffbffe000000000000c03e7900085f505254121a02120b040cffff010000000a05120b040cffff020001000a0a',
    );
  });
});
