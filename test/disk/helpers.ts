/**
 * Temp image files for the disk and block-device tests. They live under /var/tmp (a real disk
 * file system here), not /tmp, because tmpfs refuses O_DIRECT and punches holes differently.
 */
import { createHash } from 'node:crypto';
import { closeSync, ftruncateSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';

const roots: string[] = [];

/** A fresh directory under /var/tmp, removed by {@link cleanupTempImages}. */
export function tempDir(): string {
  const d = mkdtempSync(join('/var/tmp', 'kvmkit-disk-'));
  roots.push(d);
  return d;
}

/** Remove every directory made by {@link tempDir}. */
export function cleanupTempImages(): void {
  for (const d of roots.splice(0)) rmSync(d, { recursive: true, force: true });
}

/** Deterministic pseudo-random bytes (xorshift32) so failures are reproducible. */
export function pattern(len: number, seed = 1): Uint8Array {
  const out = new Uint8Array(len);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < len; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

/** Create an image: `fill` bytes written from the start (allocated), then truncated to `size` (sparse rest). */
export function makeImage(size: number, fill?: Uint8Array, name = 'disk.img'): string {
  const path = join(tempDir(), name);
  const fd = openSync(path, 'w');
  try {
    if (fill) writeSync(fd, fill, 0, fill.length, 0);
    ftruncateSync(fd, size);
  } finally {
    closeSync(fd);
  }
  return path;
}

export function sha256(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

/** The open flags of descriptor `fd` of this process (/proc/self/fdinfo), e.g. to check O_RDONLY and O_DIRECT. */
export function fdFlags(fd: number): number {
  const m = /flags:\s+([0-7]+)/.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'));
  return m ? parseInt(m[1]!, 8) : -1;
}

/** Bytes `[offset, offset+len)` of the file at `path`. */
export function fileBytes(path: string, offset: number, len: number): Uint8Array {
  return new Uint8Array(readFileSync(path).subarray(offset, offset + len));
}

/** Byte equality without vitest's slow element-wise diff of large arrays. */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.length).equals(Buffer.from(b.buffer, b.byteOffset, b.length));
}
