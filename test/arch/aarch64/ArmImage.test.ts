import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ARM64_IMAGE_MAGIC, parseArmImageHeader } from '../../../src/arch/aarch64/ArmImage';
import { Aarch64Layout } from '../../../src/arch/aarch64/Aarch64Layout';
import { BootImageError } from '../../../src/errors';

/** The first 64 bytes of Debian 12's linux-image-6.1.0-50-arm64 vmlinuz (see fixtures/README.md). */
const FIXTURE = new Uint8Array(readFileSync(join(__dirname, 'fixtures', 'image-header-6.1.bin')));

function withU64(bytes: Uint8Array, offset: number, value: bigint): Uint8Array {
  const copy = bytes.slice();
  new DataView(copy.buffer).setBigUint64(offset, value, true);
  return copy;
}

function thrown(act: () => unknown): BootImageError {
  try {
    act();
  } catch (e) {
    expect(e).toBeInstanceOf(BootImageError);
    return e as BootImageError;
  }
  throw new Error('expected a BootImageError');
}

describe('parseArmImageHeader on a real arm64 Image header (Debian 6.1.0-50-arm64)', () => {
  it('decodes every field as booting.rst defines it', () => {
    expect(FIXTURE.length).toBe(64);
    const h = parseArmImageHeader(FIXTURE, 'vmlinuz-6.1.0-50-arm64');
    expect(h.hasEfiStub).toBe(true); // Debian's vmlinuz is the Image with an EFI stub: code0 starts "MZ"
    expect(h.code0 & 0xffff).toBe(0x5a4d);
    expect(h.textOffset).toBe(0); // since v3.17 kernels can be loaded right at the 2 MiB base
    expect(h.imageSize).toBe(0x201_0000); // 32 MiB + 64 KiB including bss
    expect(h.flags).toBe(0xan);
    expect(h.pageSize).toBe(4096);
    expect(h.placeAnywhere).toBe(true);
    expect(h.peHeaderOffset).toBe(0x40);
    expect(new DataView(FIXTURE.buffer).getUint32(56, true)).toBe(ARM64_IMAGE_MAGIC);
    expect(new TextDecoder().decode(FIXTURE.subarray(56, 60))).toBe('ARM\x64');
  });

  it('takes text_offset as 0x80000 when image_size is 0 (pre-3.17 kernels, booting.rst)', () => {
    const old = withU64(withU64(FIXTURE, 16, 0n), 8, 0x12345n);
    expect(parseArmImageHeader(old).textOffset).toBe(0x80000);
  });

  it('decodes the page size bits 1-2 and placement bit 3', () => {
    const flags = (f: bigint): ReturnType<typeof parseArmImageHeader> => parseArmImageHeader(withU64(FIXTURE, 24, f));
    expect(flags(0n).pageSize).toBeUndefined();
    expect(flags(0b010n).pageSize).toBe(4096);
    expect(flags(0b100n).pageSize).toBe(16384);
    expect(flags(0b110n).pageSize).toBe(65536);
    expect(flags(0b0000n).placeAnywhere).toBe(false);
    expect(flags(0b1000n).placeAnywhere).toBe(true);
  });
});

describe('parseArmImageHeader rejects what is not a bootable little-endian arm64 Image', () => {
  it('garbage: not an arm64 Image, named after the file', () => {
    const e = thrown(() => parseArmImageHeader(new Uint8Array(4096).fill(0x41), '/tmp/bzImage'));
    expect(e.file).toBe('/tmp/bzImage');
    expect(e.message).toBe('/tmp/bzImage is not an arm64 Image (no ARM\\x64 magic at offset 56)');
  });

  it('any bytes without the magic give that error and no other (1000 runs)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 64, maxLength: 256 }), (bytes) => {
        fc.pre(new DataView(bytes.buffer).getUint32(56, true) !== ARM64_IMAGE_MAGIC);
        expect(thrown(() => parseArmImageHeader(bytes, 'k')).message).toMatch(/^k is not an arm64 Image \(no ARM\\x64 magic at offset 56\)/);
      }),
      { numRuns: 1000 },
    );
  });

  it('any header with the magic parses or fails with a BootImageError (1000 runs)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 64, maxLength: 64 }), (bytes) => {
        bytes.set(FIXTURE.subarray(56, 60), 56);
        try {
          const h = parseArmImageHeader(bytes);
          expect(Number.isSafeInteger(h.textOffset) && Number.isSafeInteger(h.imageSize)).toBe(true);
        } catch (e) {
          expect(e).toBeInstanceOf(BootImageError);
        }
      }),
      { numRuns: 1000 },
    );
  });

  it('too small', () => {
    expect(thrown(() => parseArmImageHeader(FIXTURE.subarray(0, 63), 'tiny')).message).toBe(
      'tiny is too small to be an arm64 Image: 63 bytes, the header alone is 64',
    );
    expect(thrown(() => parseArmImageHeader(new Uint8Array(0))).message).toMatch(/too small/);
  });

  it('big-endian (flags bit 0)', () => {
    expect(thrown(() => parseArmImageHeader(withU64(FIXTURE, 24, 0xbn), 'be')).message).toMatch(/^be is a big-endian arm64 Image/);
  });

  it('a gzip-compressed Image says to gunzip it', () => {
    const gz = new Uint8Array(gzipSync(Buffer.concat([FIXTURE, new Uint8Array(4096)])));
    expect(thrown(() => parseArmImageHeader(gz, 'Image.gz')).message).toMatch(/not an arm64 Image .*gzip-compressed \(decompress it with gunzip first\)/);
  });

  it('an EFI zboot image names its compression', () => {
    const zboot = new Uint8Array(128);
    zboot.set([0x4d, 0x5a], 0);
    zboot.set(new TextEncoder().encode('zimg'), 4);
    zboot.set(new TextEncoder().encode('zstd\0'), 24);
    expect(thrown(() => parseArmImageHeader(zboot, 'vmlinuz.efi')).message).toMatch(/EFI zboot image \(zstd\)/);
  });

  it('an impossible text_offset or image_size', () => {
    expect(thrown(() => parseArmImageHeader(withU64(FIXTURE, 8, 1n << 60n))).message).toMatch(/text_offset 0x1000000000000000 is impossibly large/);
    expect(thrown(() => parseArmImageHeader(withU64(FIXTURE, 16, 1n << 63n))).message).toMatch(/image_size .* impossibly large/);
  });
});

const wholeImage = process.env.KVMKIT_TEST_ARM64_IMAGE;
describe.skipIf(wholeImage === undefined)('a whole arm64 Image from KVMKIT_TEST_ARM64_IMAGE', () => {
  it('parses and lays out in 256 MiB', () => {
    const path = wholeImage!;
    const kernel = new Uint8Array(readFileSync(path));
    const h = parseArmImageHeader(kernel, path);
    expect(h.imageSize).toBeGreaterThan(0); // every kernel since v3.17 states its effective size
    expect(statSync(path).size).toBe(kernel.length);
    const plan = new Aarch64Layout().build({ memBytes: 256 * 2 ** 20, cpus: 2, kernel, kernelPath: path, initrd: new Uint8Array(1 << 20), cmdline: 'console=ttyS0' });
    const k = plan.writes.find((w) => w.what === 'kernel')!;
    expect(k.guestAddress).toBe(0x8000_0000 + h.textOffset);
    expect(k.data.length).toBe(kernel.length);
    expect(plan.vcpus[0]!.regs!.pc).toBe(k.guestAddress);
  });
});
if (wholeImage === undefined) {
  console.info('aarch64: whole-Image test skipped; set KVMKIT_TEST_ARM64_IMAGE=/path/to/arm64/Image to run it (see test/arch/aarch64/fixtures/README.md)');
}
