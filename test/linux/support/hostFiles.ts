/** Host-side helpers for preparing images and reading back what the guest did to them. */
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, statSync, writeFileSync } from 'node:fs';

/** A short random token, so a guest result cannot come from an earlier run or a constant. */
export function nonce(): string {
  return randomBytes(6).toString('hex');
}

/** A fully allocated file of random bytes. */
export function randomFile(path: string, bytes: number): void {
  writeFileSync(path, randomBytes(bytes));
}

export function sha256File(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

/** Bytes the host file system allocated for `path` (st_blocks is in 512-byte units). */
export function allocatedBytes(path: string): number {
  return statSync(path).blocks * 512;
}

/** An empty ext4 image made by the host's mkfs.ext4. */
export function mkfsExt4(path: string, sizeMiB: number, blockSize = 4096): void {
  execFileSync('mkfs.ext4', ['-q', '-F', '-b', String(blockSize), path, `${sizeMiB}M`], { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** A file's contents inside an ext4 image, read by debugfs (no mount, so no host cache involved). */
export function debugfsCat(image: string, file: string): string {
  return execFileSync('debugfs', ['-R', `cat ${file}`, image], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}
