/**
 * Extended attributes on both sides of a shared directory: the host's through libc (koffi; Node
 * has no xattr API), the guest's through kvmkit-xattr (xattr.c), a static freestanding binary
 * built here with the host's gcc (no libc needed), since the guest's busybox has no setfattr/getfattr.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import koffi from 'koffi';

const libc = koffi.load('libc.so.6');
const lgetxattr = libc.func('intptr_t lgetxattr(const char *path, const char *name, _Out_ uint8_t *value, size_t size)');
const lsetxattr = libc.func('int lsetxattr(const char *path, const char *name, const uint8_t *value, size_t size, int flags)');

/** The attribute's value as UTF-8, or undefined when the file does not have it. */
export function hostGetXattr(path: string, name: string): string | undefined {
  const buf = Buffer.alloc(65536);
  const n = Number(lgetxattr(path, name, buf, buf.length));
  return n < 0 ? undefined : buf.subarray(0, n).toString('utf8');
}

/** Sets an attribute on a host file; throws with errno's meaning when the file system refuses. */
export function hostSetXattr(path: string, name: string, value: string): void {
  const data = Buffer.from(value, 'utf8');
  if (lsetxattr(path, name, data, data.length, 0) !== 0) throw new Error(`lsetxattr ${path} ${name} failed (errno ${koffi.errno()})`);
}

/** Builds kvmkit-xattr (static, no libc, so it runs in a busybox root) into `dir`; returns its bytes. */
export function buildGuestXattrTool(dir: string): Buffer {
  const out = join(dir, 'kvmkit-xattr');
  execFileSync('gcc', ['-static', '-nostdlib', '-ffreestanding', '-fno-stack-protector', '-fno-builtin', '-O2', '-Wall', '-Wextra', '-Werror',
    '-o', out, join(__dirname, 'xattr.c')], { stdio: ['ignore', 'ignore', 'pipe'] });
  return readFileSync(out);
}
