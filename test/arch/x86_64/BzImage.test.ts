import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { BootImageError } from '../../../src/errors';
import { parseBzImage, XLF_KERNEL_64 } from '../../../src/arch/x86_64/BzImage';
import { syntheticBzImage } from './syntheticBzImage';
import { FIXTURES } from '../../helpers/env';

const FIXTURE_KERNEL = `${FIXTURES}/linux/vmlinuz`;

describe('parseBzImage', () => {
  it('reads the setup header fields of a synthetic bzImage', () => {
    const h = parseBzImage(syntheticBzImage({ setupSects: 27, payloadSize: 0x2345, initSize: 0x1234000 }), 'vmlinuz');
    expect(h.setupSects).toBe(27);
    expect(h.bootFlag).toBe(0xaa55);
    expect(h.version).toBe(0x020f);
    expect(h.loadflags).toBe(0x01);
    expect(h.code32Start).toBe(0x100000);
    expect(h.initrdAddrMax).toBe(0x7fffffff);
    expect(h.kernelAlignment).toBe(0x200000);
    expect(h.relocatableKernel).toBe(true);
    expect(h.cmdlineSize).toBe(2047);
    expect(h.xloadflags & XLF_KERNEL_64).toBe(XLF_KERNEL_64);
    expect(h.prefAddress).toBe(0x1000000);
    expect(h.initSize).toBe(0x1234000);
    expect(h.protectedModeOffset).toBe(28 * 512);
    expect(h.protectedModeSize).toBe(0x2345);
    // 0x1F1 .. 0x202 + 0x6A = 0x26C
    expect(h.setupHeader.length).toBe(0x26c - 0x1f1);
    expect(h.setupHeader[0]).toBe(27);
  });

  it('treats setup_sects 0 as 4', () => {
    const h = parseBzImage(syntheticBzImage({ setupSects: 0 }), 'k');
    expect(h.setupSects).toBe(4);
    expect(h.protectedModeOffset).toBe(5 * 512);
  });

  it('caps the copied header at boot_params.edd_mbr_sig_buffer (0x290)', () => {
    const h = parseBzImage(syntheticBzImage({ jumpOffset: 0xff }), 'k');
    expect(0x1f1 + h.setupHeader.length).toBe(0x290);
  });

  it('rejects a file too small for the header, naming the file', () => {
    const e = (() => {
      try {
        parseBzImage(new Uint8Array(100), '/boot/tiny');
      } catch (err) {
        return err;
      }
    })();
    expect(e).toBeInstanceOf(BootImageError);
    expect((e as BootImageError).file).toBe('/boot/tiny');
    expect((e as Error).message).toMatch(/\/boot\/tiny: too small for a bzImage \(100 bytes/);
  });

  it('rejects garbage without the 0xAA55 boot flag', () => {
    const garbage = new Uint8Array(8192).map((_, i) => (i * 37) & 0xff);
    expect(() => parseBzImage(garbage, 'junk.bin')).toThrow(/junk.bin: not a bzImage \(no 0xAA55 boot flag/);
  });

  it('rejects a file without HdrS', () => {
    expect(() => parseBzImage(syntheticBzImage({ magic: 'XXXX' }), 'old.img')).toThrow('old.img: not a bzImage (no HdrS magic at 0x202)');
  });

  it('rejects boot protocols older than 2.12', () => {
    expect(() => parseBzImage(syntheticBzImage({ version: 0x020b }), 'k')).toThrow(/boot protocol 2.11 is too old, kvmkit needs 2.12/);
    expect(() => parseBzImage(syntheticBzImage({ version: 0x020c }), 'k')).not.toThrow();
  });

  it('rejects a kernel without the 64-bit entry point', () => {
    expect(() => parseBzImage(syntheticBzImage({ xloadflags: 0x7e }), 'bzImage32')).toThrow(/kernel has no 64-bit entry point/);
  });

  it('rejects a truncated file whose setup runs past the end', () => {
    const img = syntheticBzImage({ setupSects: 4, payloadSize: 0 });
    expect(() => parseBzImage(img, 'cut')).toThrow(/truncated bzImage/);
  });

  // Default: the Debian kernel of the Linux fixture, which the test set-up builds.
  const real = process.env.KVMKIT_TEST_BZIMAGE ?? (existsSync(FIXTURE_KERNEL) ? FIXTURE_KERNEL : undefined);
  const why = real ? `${real} does not exist` : 'set KVMKIT_TEST_BZIMAGE to a Debian cloud kernel to run it';
  const haveReal = real !== undefined && existsSync(real);
  if (!haveReal) console.log(`skipping the real-kernel bzImage test: ${why}`);
  it.skipIf(!haveReal)('parses a real kernel (KVMKIT_TEST_BZIMAGE)', () => {
    const bytes = new Uint8Array(readFileSync(real!));
    const h = parseBzImage(bytes, real!);
    expect(h.bootFlag).toBe(0xaa55);
    expect(h.version).toBeGreaterThanOrEqual(0x020c);
    expect(h.xloadflags & XLF_KERNEL_64).toBe(XLF_KERNEL_64);
    expect(h.relocatableKernel).toBe(true);
    expect(h.cmdlineSize).toBeGreaterThanOrEqual(255);
    expect(h.initSize).toBeGreaterThan(h.protectedModeSize);
    expect(h.protectedModeOffset + h.protectedModeSize).toBe(bytes.length);
    expect(0x1f1 + h.setupHeader.length).toBe(0x202 + bytes[0x201]!);
  });
});
