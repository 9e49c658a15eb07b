/**
 * The QEMU twin's stand-in for kvmkit's virtio-fs path allowlist (QEMU's virtiofsd has none):
 * top-level entries of the share that are not allowed are moved to a stash directory beside it,
 * and moved back when allowed. With `cache=never` the guest then sees what an allowlist shows it:
 * only the allowed names, and a revoked one gone for new lookups. Only top-level paths (`/name`).
 */
import { existsSync, mkdirSync, readdirSync, renameSync } from 'node:fs';
import { join } from 'node:path';

function topLevelName(path: string): string {
  const m = /^\/([^/]+)$/.exec(path);
  if (!m || m[1] === '.' || m[1] === '..') throw new Error(`the QEMU twin's allowlist stand-in takes top-level paths (/name) only, got ${path}`);
  return m[1]!;
}

export class StashedAllowlist {
  /** `share`'s entries not in `allowed` go to `stash` (created) now. */
  constructor(private readonly share: string, private readonly stash: string, allowed: readonly string[]) {
    mkdirSync(stash, { recursive: true });
    const keep = new Set(allowed.map(topLevelName));
    for (const name of readdirSync(share)) if (!keep.has(name)) renameSync(join(share, name), join(stash, name));
  }

  allow(paths: readonly string[]): void {
    for (const name of paths.map(topLevelName)) {
      if (existsSync(join(this.stash, name))) renameSync(join(this.stash, name), join(this.share, name));
    }
  }

  revoke(paths: readonly string[]): void {
    for (const name of paths.map(topLevelName)) {
      if (!existsSync(join(this.share, name))) throw new Error(`${name} is not allowed`);
      renameSync(join(this.share, name), join(this.stash, name));
    }
  }

  /** Everything back in the share (after the run, so host-side checks see what kvmkit's would). */
  restore(): void {
    for (const name of readdirSync(this.stash)) renameSync(join(this.stash, name), join(this.share, name));
  }
}
