// A scratch disk image for the benchmarks: random bytes (so nothing reads as holes or zeroes) in a
// new directory, flushed to the disk before any measurement starts.
import { randomFillSync } from 'node:crypto';
import { closeSync, fsyncSync, mkdtempSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';

/** Write `bytes` random bytes to `<new dir under baseDir>/<name>`; returns the directory and the image path. */
export function makeRandomImage(baseDir, prefix, name, bytes) {
  const dir = mkdtempSync(join(baseDir, prefix));
  const path = join(dir, name);
  const fd = openSync(path, 'w');
  try {
    const chunk = Buffer.alloc(8 << 20);
    for (let off = 0; off < bytes; off += chunk.length) writeSync(fd, randomFillSync(chunk), 0, Math.min(chunk.length, bytes - off), off);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  return { dir, path };
}
