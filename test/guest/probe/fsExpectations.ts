/**
 * What a FUSE server behind virtio-fs answers to the probe's `fs` test (virtio_fs.c; README.md
 * "virtio-fs"), shared by the QEMU + virtiofsd cross-check (virtiofs-qemu.test.ts) and the kvmkit
 * end-to-end test (test/vm/virtio-fs.e2e.test.ts), so that both are held to one table.
 *
 * Each case names the answer QEMU 7.2's C virtiofsd gives (`qemu`, asserted exactly against
 * QEMU) and the answers any server may give (`accept`, asserted against kvmkit). Where `accept`
 * is absent the answer is fixed: by the FUSE protocol (include/uapi/linux/fuse.h and the kernel
 * client that defines it), or by the Linux system call the operation stands for on a pass-through
 * share (the guest's VFS expects those errnos). `why` says which, or why the answer is free.
 */
import { lstatSync, readFileSync, readdirSync, readlinkSync, statfsSync, statSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import { fnv1a64, type ProbeRecord } from './parse';
import { SPARSE_CHUNK, SPARSE_SECOND, type FsShare } from './virtiofsd';

/** Any errno (a real error reply, not a time-out or a malformed reply). */
export const ANY_ERROR = 'error';

export interface FsCase {
  /** The FUSE operation the case sends (the `op=` field). */
  op: string;
  /** QEMU 7.2's virtiofsd: `0` or an errno name. */
  qemu: string;
  /** Other answers a conforming server may give (ANY_ERROR: any errno). Absent: only `qemu`. */
  accept?: readonly string[];
  /** Only printed when an earlier step succeeded. */
  optional?: boolean;
  why: string;
}

const SYSCALL = 'the Linux system call behind it (pass-through share)';
const BAD_NAME = (name: string): string =>
  `${name}: a name is one path component, so a server that joined host paths would leave the share; must fail, any errno`;

/** Cases with a name that would leave the directory: [case, op, the name (or what is renamed)]. */
const BAD_NAMES: ReadonlyArray<readonly [string, string, string]> = [
  ['create-slash', 'CREATE', 'dir/evil.txt'],
  ['create-dotdot-name', 'CREATE', '../evil.txt'],
  ['create-dotdot', 'CREATE', '..'],
  ['mkdir-slash', 'MKDIR', 'dir/evil'],
  ['mkdir-dotdot-name', 'MKDIR', '../evil'],
  ['mknod-dotdot-name', 'MKNOD', '../evil-node'],
  ['symlink-dotdot-name', 'SYMLINK', '../evil-link'],
  ['link-dotdot-name', 'LINK', '../evil-hard'],
  ['rename-out', 'RENAME', 'exch-b.txt to ../escaped.txt'],
  ['rename-in', 'RENAME', '../secret.txt to stolen.txt'],
  ['unlink-dotdot-name', 'UNLINK', '../secret.txt'],
  ['rmdir-dotdot', 'RMDIR', '..'],
];

/** Every `PROBE fs case=...` line of probe.test=fs, in the order the probe prints them. */
export const FS_CASES: Record<string, FsCase> = {
  'getattr-root': { op: 'GETATTR', qemu: '0', why: 'nodeid 1 is the root (FUSE_ROOT_ID)' },
  'lookup-file': { op: 'LOOKUP', qemu: '0', why: 'a file the host created' },
  'getattr-file': { op: 'GETATTR', qemu: '0', why: 'a looked-up nodeid' },
  'open-file': { op: 'OPEN', qemu: '0', why: 'O_RDONLY on a 0644 file' },
  'read-file': { op: 'READ', qemu: '0', why: 'READ returns the data, a short reply only at end of file' },
  'read-odd-offset': { op: 'READ', qemu: '0', why: 'one byte at offset 12345' },
  'read-eof': { op: 'READ', qemu: '0', why: 'READ at end of file: an empty reply' },
  'read-past-eof': { op: 'READ', qemu: '0', why: 'pread(2) past the end reads 0 bytes' },
  'flush-file': { op: 'FLUSH', qemu: '0', why: 'close(2) on a read-only handle' },
  'release-file': { op: 'RELEASE', qemu: '0', why: 'RELEASE of an open handle' },
  'access-read': {
    op: 'ACCESS', qemu: 'ENOSYS', accept: ['0', 'ENOSYS'],
    why: 'ENOSYS is how a server says it leaves permission checks to the client (Linux then stops sending ACCESS)',
  },
  'access-root-exists': { op: 'ACCESS', qemu: 'ENOSYS', accept: ['0', 'ENOSYS'], why: 'as access-read' },
  'access-exec': { op: 'ACCESS', qemu: 'ENOSYS', accept: ['EACCES', 'ENOSYS'], why: 'X_OK on a 0644 file: access(2) says EACCES even for root; or ENOSYS as access-read' },
  'lookup-missing': { op: 'LOOKUP', qemu: 'ENOENT', why: 'FUSE: ENOENT (or a negative entry, nodeid 0, which the probe reports as ENOENT)' },
  'lookup-slash': { op: 'LOOKUP', qemu: 'EINVAL', accept: [ANY_ERROR], why: 'a name is one path component; the errno is the server\'s choice' },
  'lookup-empty-name': { op: 'LOOKUP', qemu: 'ENOENT', accept: [ANY_ERROR], why: 'Linux never sends it; any error' },
  'getattr-bad-nodeid': { op: 'GETATTR', qemu: 'EBADF', accept: [ANY_ERROR], why: 'a nodeid the server never gave out; any error' },
  'lookup-bad-parent': { op: 'LOOKUP', qemu: 'ENOENT', accept: [ANY_ERROR], why: 'an unknown parent nodeid; any error' },
  'lookup-in-file': { op: 'LOOKUP', qemu: 'ENOTDIR', why: `${SYSCALL}: a file has no entries` },
  'unknown-opcode': { op: '1000', qemu: 'ENOSYS', why: 'FUSE: an opcode the server does not implement is ENOSYS' },
  'mknod-short': { op: 'MKNOD', qemu: 'EINVAL', accept: [ANY_ERROR], why: 'a request shorter than its arguments; any error' },
  'create-file': { op: 'CREATE', qemu: '0', why: 'O_CREAT|O_EXCL of a new name' },
  'write-file': { op: 'WRITE', qemu: '0', why: 'three WRITEs, 25,000 bytes' },
  'flush-created': { op: 'FLUSH', qemu: '0', why: 'FLUSH of an open handle' },
  'fsync-created': { op: 'FSYNC', qemu: '0', why: 'FSYNC of an open handle' },
  'fdatasync-created': { op: 'FSYNC', qemu: '0', why: 'FSYNC with FUSE_FSYNC_FDATASYNC' },
  'release-created': { op: 'RELEASE', qemu: '0', why: 'RELEASE of an open handle' },
  'getattr-created': { op: 'GETATTR', qemu: '0', why: 'size 25000 after the writes' },
  'readback-created': { op: 'READ', qemu: '0', why: 'what was written reads back' },
  'setattr-mode': { op: 'SETATTR', qemu: '0', why: 'chmod 0600' },
  'setattr-size': { op: 'SETATTR', qemu: '0', why: 'truncate to 10000' },
  'getattr-after-setattr': { op: 'GETATTR', qemu: '0', why: 'the new mode and size' },
  'setattr-owner': { op: 'SETATTR', qemu: '0', why: 'chown 1234:5678 (the probe asks as uid 0)' },
  'setattr-times': { op: 'SETATTR', qemu: '0', why: 'atime and mtime with nanoseconds' },
  'create-exists': { op: 'CREATE', qemu: 'EEXIST', why: `${SYSCALL}: O_CREAT|O_EXCL of an existing name` },
  'create-falloc': { op: 'CREATE', qemu: '0', why: 'O_RDWR|O_CREAT|O_EXCL' },
  fallocate: { op: 'FALLOCATE', qemu: '0', why: 'mode 0, 1 MiB: the size grows to 1 MiB' },
  'fallocate-punch-hole': { op: 'FALLOCATE', qemu: '0', why: 'PUNCH_HOLE|KEEP_SIZE of 64 KiB: the size stays' },
  'lseek-data-0': { op: 'LSEEK', qemu: '0', why: `${SYSCALL}: SEEK_DATA at data` },
  'lseek-hole-0': { op: 'LSEEK', qemu: '0', why: 'SEEK_HOLE finds the hole at 64 KiB' },
  'lseek-data-in-hole': { op: 'LSEEK', qemu: '0', why: 'SEEK_DATA from the hole finds 1 MiB' },
  'lseek-hole-in-second': { op: 'LSEEK', qemu: '0', why: 'SEEK_HOLE in the last extent is end of file' },
  'lseek-data-at-eof': { op: 'LSEEK', qemu: 'ENXIO', why: `${SYSCALL}: SEEK_DATA at end of file is ENXIO` },
  mkdir: { op: 'MKDIR', qemu: '0', why: 'a new directory' },
  'mkdir-exists': { op: 'MKDIR', qemu: 'EEXIST', why: SYSCALL },
  'create-inner': { op: 'CREATE', qemu: '0', why: 'a file in the new directory' },
  'rmdir-nonempty': { op: 'RMDIR', qemu: 'ENOTEMPTY', why: SYSCALL },
  'unlink-inner': { op: 'UNLINK', qemu: '0', why: 'the file created in it' },
  rmdir: { op: 'RMDIR', qemu: '0', why: 'now empty' },
  'lookup-removed-dir': { op: 'LOOKUP', qemu: 'ENOENT', why: 'gone' },
  'mkdir-kept': { op: 'MKDIR', qemu: '0', why: 'stays for the host to see' },
  'rmdir-file': { op: 'RMDIR', qemu: 'ENOTDIR', why: SYSCALL },
  'mknod-fifo': { op: 'MKNOD', qemu: '0', why: 'a FIFO' },
  'mknod-regular': { op: 'MKNOD', qemu: '0', why: 'a regular file' },
  'mknod-exists': { op: 'MKNOD', qemu: 'EEXIST', why: SYSCALL },
  'unlink-not-looked-up': {
    op: 'UNLINK', qemu: 'EIO', accept: ['0', 'EIO'],
    why: 'virtiofsd only removes names it has looked up before (Linux always has); FUSE does not say',
  },
  unlink: { op: 'UNLINK', qemu: '0', why: 'after a LOOKUP, as Linux sends it' },
  'lookup-unlinked': { op: 'LOOKUP', qemu: 'ENOENT', why: 'gone' },
  'unlink-missing': { op: 'UNLINK', qemu: 'EIO', accept: ['ENOENT', 'EIO'], why: 'Linux never sends it (its LOOKUP failed); virtiofsd EIO, unlinkat(2) ENOENT' },
  'unlink-dir': { op: 'UNLINK', qemu: 'EISDIR', why: `${SYSCALL}: unlinkat(2) of a directory` },
  rename: { op: 'RENAME', qemu: '0', why: 'after LOOKUPs, as Linux sends it' },
  'rename-missing': { op: 'RENAME', qemu: 'EIO', accept: ['ENOENT', 'EIO'], why: 'Linux never sends it; virtiofsd EIO, renameat(2) ENOENT' },
  'rename2-noreplace-exists': { op: 'RENAME2', qemu: 'EEXIST', why: `${SYSCALL}: RENAME_NOREPLACE onto an existing name` },
  'rename2-noreplace': { op: 'RENAME2', qemu: '0', why: 'RENAME_NOREPLACE to a new name' },
  'rename2-back': { op: 'RENAME2', qemu: '0', why: 'RENAME2 with flags 0 is RENAME' },
  'rename2-exchange': { op: 'RENAME2', qemu: '0', why: 'RENAME_EXCHANGE swaps the two' },
  'lookup-exchanged': { op: 'LOOKUP', qemu: '0', why: 'exch-a.txt now has exch-b.txt\'s 6 bytes' },
  'rename2-exchange-missing': { op: 'RENAME2', qemu: 'ENOENT', why: `${SYSCALL}: RENAME_EXCHANGE needs both names` },
  'rename2-both-flags': { op: 'RENAME2', qemu: 'EINVAL', why: `${SYSCALL}: EXCHANGE with NOREPLACE` },
  'rename2-unknown-flag': { op: 'RENAME2', qemu: 'EINVAL', why: `${SYSCALL}: unknown flag` },
  'rename-into-dir': { op: 'RENAME', qemu: '0', why: 'to another parent' },
  symlink: { op: 'SYMLINK', qemu: '0', why: 'sym -> hello.txt' },
  readlink: { op: 'READLINK', qemu: '0', why: 'the target text' },
  'symlink-exists': { op: 'SYMLINK', qemu: 'EEXIST', why: SYSCALL },
  'readlink-file': { op: 'READLINK', qemu: 'ENOENT', accept: [ANY_ERROR], why: 'not a symlink: readlink(2) says EINVAL, virtiofsd ENOENT; Linux never sends it' },
  link: { op: 'LINK', qemu: '0', why: 'hardlink.txt to hello.txt' },
  'link-same-ino': { op: 'LINK', qemu: '0', why: 'the new name has hello.txt\'s inode' },
  'link-dir': { op: 'LINK', qemu: 'EPERM', why: `${SYSCALL}: no hard links to directories` },
  opendir: { op: 'OPENDIR', qemu: '0', why: 'dir/' },
  readdir: { op: 'READDIR', qemu: '0', why: 'the entries with their types' },
  'readdir-small-buffer': { op: 'READDIR', qemu: '0', why: '80-byte replies: offsets must resume the listing' },
  fsyncdir: { op: 'FSYNCDIR', qemu: '0', why: 'FSYNCDIR of an open directory' },
  releasedir: { op: 'RELEASEDIR', qemu: '0', why: 'RELEASEDIR of an open directory' },
  readdirplus: { op: 'READDIRPLUS', qemu: '0', why: 'entries with their attributes' },
  'opendir-file': { op: 'OPENDIR', qemu: 'ENOTDIR', why: `${SYSCALL}: O_DIRECTORY on a file` },
  statfs: { op: 'STATFS', qemu: '0', why: 'the host file system of the share' },
  setxattr: { op: 'SETXATTR', qemu: '0', why: 'user.kvmkit' },
  'setxattr-create': { op: 'SETXATTR', qemu: '0', why: 'XATTR_CREATE of a new name' },
  'setxattr-create-exists': { op: 'SETXATTR', qemu: 'EEXIST', why: `${SYSCALL}: XATTR_CREATE of an existing name` },
  'setxattr-replace-missing': { op: 'SETXATTR', qemu: 'ENODATA', why: `${SYSCALL}: XATTR_REPLACE of a missing name` },
  'getxattr-size': { op: 'GETXATTR', qemu: '0', why: 'size 0 asks for the value\'s size (fuse_getxattr_out)' },
  getxattr: { op: 'GETXATTR', qemu: '0', why: 'the value' },
  'getxattr-small-buffer': { op: 'GETXATTR', qemu: 'ERANGE', why: `${SYSCALL}: a buffer smaller than the value` },
  'listxattr-size': { op: 'LISTXATTR', qemu: '0', why: 'size 0 asks for the list\'s size' },
  listxattr: { op: 'LISTXATTR', qemu: '0', why: 'NUL-terminated names' },
  removexattr: { op: 'REMOVEXATTR', qemu: '0', why: 'user.other' },
  'getxattr-removed': { op: 'GETXATTR', qemu: 'ENODATA', why: SYSCALL },
  'removexattr-missing': { op: 'REMOVEXATTR', qemu: 'ENODATA', why: SYSCALL },
  'lookup-dotdot-root': {
    op: 'LOOKUP', qemu: '0', accept: ['0', ANY_ERROR],
    why: 'with FUSE_EXPORT_SUPPORT ".." is a valid name; a server may refuse it, but an answer must be the root itself',
  },
  'dotdot-is-root': { op: 'LOOKUP', qemu: '0', accept: ['0', ANY_ERROR], why: 'as lookup-dotdot-root; same_ino=1 when it answered' },
  'dotdot-secret': { op: 'LOOKUP', qemu: 'ENOENT', optional: true, why: 'secret.txt beside the share must not be reachable through ".."' },
  'lookup-dot-root': { op: 'LOOKUP', qemu: '0', accept: ['0', ANY_ERROR], why: 'as lookup-dotdot-root' },
  'dot-is-root': { op: 'LOOKUP', qemu: '0', accept: ['0', ANY_ERROR], why: 'as lookup-dotdot-root' },
  'dir-dotdot': { op: 'LOOKUP', qemu: '0', accept: ['0', ANY_ERROR], why: 'dir/.. is the root' },
  'dir-dotdot-is-root': { op: 'LOOKUP', qemu: '0', accept: ['0', ANY_ERROR], why: 'as dir-dotdot' },
  // names with '/' or '..' in every operation that takes a name: virtiofsd EINVAL, any errno will do
  ...Object.fromEntries(
    BAD_NAMES.map(([name, op, arg]) => [name, { op, qemu: 'EINVAL', accept: [ANY_ERROR], why: BAD_NAME(arg) }]),
  ),
  'lookup-escape': { op: 'LOOKUP', qemu: '0', why: 'a host symlink is a symlink to the guest (S_IFLNK), not its target' },
  'readlink-escape': { op: 'READLINK', qemu: '0', why: 'the target text, which the guest resolves in its own tree' },
  'open-escape': { op: 'OPEN', qemu: 'EBADF', accept: [ANY_ERROR], why: 'OPEN of a symlink node must not follow it (the server never follows host symlinks)' },
  'open-escape-nofollow': { op: 'OPEN', qemu: 'EBADF', accept: [ANY_ERROR], why: 'as open-escape, with O_NOFOLLOW (ELOOP would be open(2)\'s answer)' },
  'lookup-escape-rel': { op: 'LOOKUP', qemu: '0', why: 'as lookup-escape, target ../secret.txt' },
  'readlink-escape-rel': { op: 'READLINK', qemu: '0', why: 'the target text' },
  'open-escape-rel': { op: 'OPEN', qemu: 'EBADF', accept: [ANY_ERROR], why: 'as open-escape' },
  'open-escape-rel-nofollow': { op: 'OPEN', qemu: 'EBADF', accept: [ANY_ERROR], why: 'as open-escape-nofollow' },
  'lookup-escape-dir': { op: 'LOOKUP', qemu: '0', why: 'a symlink to a directory outside the share is a symlink' },
  'escape-dir-child': { op: 'LOOKUP', qemu: 'ENOTDIR', accept: [ANY_ERROR], why: 'a LOOKUP below a symlink node must not follow it' },
  'opendir-escape-dir': { op: 'OPENDIR', qemu: 'ENOTDIR', accept: [ANY_ERROR], why: 'OPENDIR of a symlink node must not follow it' },
  'concurrent-reads': {
    op: 'READ', qemu: '0',
    why: '9 READs of 128 KiB and 9 GETATTRs in flight together: each reply carries its own unique (completion order is free)',
  },
  forget: { op: 'FORGET', qemu: '0', why: 'no reply: the device returns the buffer with nothing written' },
  'lookup-after-forget': { op: 'LOOKUP', qemu: '0', why: 'the server still answers' },
  'batch-forget': { op: 'BATCH_FORGET', qemu: '0', why: 'no reply, as FORGET' },
  'getattr-after-batch-forget': { op: 'GETATTR', qemu: '0', why: 'the root is never forgotten' },
  destroy: { op: 'DESTROY', qemu: '0', why: 'the last request' },
};

/** The listing of dir/ after rename-into-dir (READDIR `names=`: name:type, DT_DIR 4, DT_REG 8). */
export const DIR_NAMES = '.:4,..:4,a.txt:8,b.txt:8,moved.txt:8,sub:4';

/** The share's top level after probe.test=fs (plus nolookup.txt where that UNLINK failed). */
export const SHARE_AFTER = [
  'created.txt', 'dir', 'escape', 'escape-dir', 'escape-rel', 'exch-a.txt', 'exch-b.txt', 'falloc.bin', 'fifo',
  'hardlink.txt', 'hello.txt', 'keptdir', 'mknod.txt', 'sparse.bin', 'sym',
];

const TRANSPORT = new Set(['timeout', 'bad-reply', 'queue-full', 'needs-reset']);

/** Does `err` satisfy this case for this server? */
export function answerAccepted(c: FsCase, err: string, server: 'qemu' | 'kvmkit'): boolean {
  const ok = server === 'qemu' ? [c.qemu] : [c.qemu, ...(c.accept ?? [])];
  if (ok.includes(err)) return true;
  return ok.includes(ANY_ERROR) && err !== '0' && !TRANSPORT.has(err);
}

function octal(mode: number): string {
  return `0${mode.toString(8)}`;
}

/**
 * Check one probe.test=fs run: every case's answer (QEMU: exactly `qemu`; kvmkit: `accept`), the
 * fields the protocol fixes, and the share on the host afterwards (what the guest changed, what
 * it must not have touched).
 */
export function checkFsRun(records: ProbeRecord[], share: FsShare, server: 'qemu' | 'kvmkit', output: string): void {
  const lines = records.filter((r) => r.key === 'fs' && r.case !== undefined);
  const byCase = new Map<string, ProbeRecord>();
  for (const l of lines) {
    expect(byCase.has(l.case!), `case ${l.case} printed twice:\n${output}`).toBe(false);
    byCase.set(l.case!, l);
  }
  const get = (c: string): ProbeRecord => {
    const r = byCase.get(c);
    expect(r, `no "PROBE fs case=${c}" line:\n${output}`).toBeDefined();
    return r!;
  };
  // every case of the table, and nothing else
  for (const [name, c] of Object.entries(FS_CASES)) {
    const r = byCase.get(name);
    if (c.optional && !r) continue;
    expect(r, `no "PROBE fs case=${name}" line:\n${output}`).toBeDefined();
    expect(r!.op, name).toBe(c.op);
    expect(answerAccepted(c, r!.err!, server), `${name}: ${server} answered ${r!.err}, expected ${server === 'qemu' ? c.qemu : [c.qemu, ...(c.accept ?? [])].join(' | ')} (${c.why})`).toBe(true);
  }
  expect([...byCase.keys()].filter((k) => !(k in FS_CASES)), 'cases missing from FS_CASES').toEqual([]);

  const init = records.find((r) => r.key === 'fs-init')!;
  expect(init, output).toBeDefined();
  expect(init).toMatchObject({ err: '0', major: '7', sent_minor: '37' });
  expect(Number(init.minor)).toBeGreaterThanOrEqual(31); // what Linux 6.1's client needs at least
  expect(Number(init.minor)).toBeLessThanOrEqual(37); // never more than the client offered
  expect(Number(init.max_write)).toBeGreaterThanOrEqual(4096);

  const sharedStat = statSync(share.sharedDir);
  const root = get('getattr-root');
  expect(root.mode).toBe(octal(sharedStat.mode));
  expect(root.ino).toBe(String(sharedStat.ino));
  const helloStat = statSync(join(share.sharedDir, 'hello.txt'));
  expect(get('lookup-file')).toMatchObject({ mode: '0100644', size: String(share.helloSize), ino: String(helloStat.ino) });
  expect(Number(get('lookup-file').nodeid)).toBeGreaterThan(1);
  expect(get('getattr-file')).toMatchObject({ size: String(share.helloSize), ino: String(helloStat.ino) });
  expect(get('read-file')).toMatchObject({ bytes: String(share.helloSize), fnv1a64: share.helloFnv });
  const hello = readFileSync(join(share.sharedDir, 'hello.txt'));
  expect(get('read-odd-offset')).toMatchObject({ bytes: '1', byte: String(hello[12345]) });
  expect(get('read-eof').bytes).toBe('0');
  expect(get('read-past-eof').bytes).toBe('0');

  // CREATE + WRITE, read back, chmod, truncate: the host sees it
  expect(get('create-file')).toMatchObject({ mode: '0100644', size: '0' });
  const w = get('write-file');
  expect(w.written).toBe('25000');
  expect(get('getattr-created').size).toBe('25000');
  expect(get('readback-created')).toMatchObject({ bytes: '25000', match: '1' });
  expect(get('setattr-mode').mode).toBe('0100600');
  expect(get('setattr-size')).toMatchObject({ size: '10000', mode: '0100600' });
  expect(get('getattr-after-setattr')).toMatchObject({ size: '10000', mode: '0100600' });
  const created = join(share.sharedDir, 'created.txt');
  const cst = statSync(created);
  const times = statSync(created, { bigint: true }); // before the host reads it (relatime)
  expect(times.mtimeNs).toBe(1234567890123456789n);
  expect(times.atimeNs).toBe(1000000000000000005n);
  expect(cst.size).toBe(10000);
  expect(cst.mode & 0o7777).toBe(0o600);
  expect(fnv1a64(readFileSync(created))).toBe(w.fnv1a64_first_10000);
  expect(get('setattr-owner')).toMatchObject({ uid: '1234', gid: '5678' });
  expect([cst.uid, cst.gid]).toEqual([1234, 5678]);
  expect(get('setattr-times')).toMatchObject({ atime: '1000000000', atimensec: '5', mtime: '1234567890', mtimensec: '123456789' });
  expect(get('mknod-fifo').mode).toBe('010644');
  expect(statSync(join(share.sharedDir, 'fifo')).isFIFO()).toBe(true);
  expect(get('mknod-regular')).toMatchObject({ mode: '0100644', size: '0' });
  expect(statSync(join(share.sharedDir, 'mknod.txt')).size).toBe(0);

  expect(get('fallocate')).toMatchObject({ size: '1048576', getattr_err: '0' });
  expect(Number(get('fallocate').blocks)).toBeGreaterThanOrEqual(2048);
  expect(get('fallocate-punch-hole')).toMatchObject({ size: '1048576' });
  expect(statSync(join(share.sharedDir, 'falloc.bin')).size).toBe(1 << 20);

  const end = SPARSE_SECOND + SPARSE_CHUNK;
  expect(get('lseek-data-0').result).toBe('0');
  expect(get('lseek-hole-0').result).toBe(String(SPARSE_CHUNK));
  expect(get('lseek-data-in-hole').result).toBe(String(SPARSE_SECOND));
  expect(get('lseek-hole-in-second').result).toBe(String(end));

  expect(get('mkdir')).toMatchObject({ mode: '040755', nlink: '2' });
  expect(existsSync(join(share.sharedDir, 'newdir'))).toBe(false);
  expect(statSync(join(share.sharedDir, 'keptdir')).isDirectory()).toBe(true);
  expect(existsSync(join(share.sharedDir, 'todelete.txt'))).toBe(false);
  expect(existsSync(join(share.sharedDir, 'nolookup.txt'))).toBe(get('unlink-not-looked-up').err !== '0');

  // renames: rename-src -> rename-dst -> dir/moved.txt; exch-a/b swapped
  expect(existsSync(join(share.sharedDir, 'rename-src.txt'))).toBe(false);
  expect(existsSync(join(share.sharedDir, 'rename-dst.txt'))).toBe(false);
  expect(readFileSync(join(share.sharedDir, 'dir', 'moved.txt'), 'utf8')).toBe('rename source\n');
  expect(readFileSync(join(share.sharedDir, 'exch-a.txt'), 'utf8')).toBe('BBBBBB');
  expect(readFileSync(join(share.sharedDir, 'exch-b.txt'), 'utf8')).toBe('AAAA');
  expect(existsSync(join(share.sharedDir, 'exch-a2.txt'))).toBe(false);
  expect(get('lookup-exchanged').size).toBe('6');

  expect(get('symlink')).toMatchObject({ mode: '0120777', size: '9' });
  expect(get('readlink')).toMatchObject({ len: '9', target: 'hello.txt' });
  expect(readlinkSync(join(share.sharedDir, 'sym'))).toBe('hello.txt');
  expect(get('link')).toMatchObject({ nlink: '2', ino: String(helloStat.ino) });
  expect(get('link-same-ino').same_ino).toBe('1');
  expect(statSync(join(share.sharedDir, 'hardlink.txt')).ino).toBe(helloStat.ino);

  for (const c of ['readdir', 'readdir-small-buffer', 'readdirplus']) {
    expect(get(c), c).toMatchObject({ names: DIR_NAMES, entries: '6', bad: '0' });
  }
  expect(Number(get('readdir-small-buffer').requests)).toBeGreaterThan(Number(get('readdir').requests));

  const sf = statfsSync(share.sharedDir);
  expect(get('statfs')).toMatchObject({ bsize: String(sf.bsize), blocks: String(sf.blocks), namelen: '255' });

  expect(get('getxattr-size').size).toBe('11');
  expect(get('getxattr')).toMatchObject({ len: '11', value: 'probe-value' });
  expect(get('listxattr').user_names).toBe('user.kvmkit:0,user.other:0');
  expect(get('listxattr-size').size).toBe(get('listxattr').len);

  // confinement: ".." stays at the root, host symlinks are symlinks, nothing outside is reached
  for (const c of ['dotdot-is-root', 'dot-is-root', 'dir-dotdot-is-root']) {
    if (get(c).err === '0') expect(get(c).same_ino, c).toBe('1');
  }
  const dd = byCase.get('dotdot-secret');
  if (dd) expect(dd.err).toBe('ENOENT');
  expect(get('lookup-escape').mode).toBe('0120777');
  expect(get('readlink-escape').target).toBe(share.secretPath);
  expect(get('lookup-escape-rel').mode).toBe('0120777');
  expect(get('readlink-escape-rel').target).toBe('../secret.txt');
  expect(get('lookup-escape-dir').mode).toBe('0120777');
  for (const c of ['open-escape', 'open-escape-nofollow', 'open-escape-rel', 'open-escape-rel-nofollow']) {
    const r = get(c);
    if (r.fnv1a64 !== undefined) expect(r.fnv1a64, `${c} read the secret`).not.toBe(share.secretFnv);
  }
  expect(fnv1a64(readFileSync(share.secretPath))).toBe(share.secretFnv);
  expect(readdirSync(share.base).sort()).toEqual(['outside', 'secret.txt', 'share']);
  // the share holds exactly what the probe made of it (fsbench's files aside): nothing stolen in
  const top = readdirSync(share.sharedDir).filter((n) => !n.startsWith('bench')).sort();
  const kept = get('unlink-not-looked-up').err === '0' ? [] : ['nolookup.txt'];
  expect(top).toEqual([...SHARE_AFTER, ...kept].sort());
  expect(readdirSync(join(share.sharedDir, 'dir')).sort()).toEqual(['a.txt', 'b.txt', 'moved.txt', 'sub']);
  expect(readdirSync(join(share.base, 'outside'))).toEqual(['secret2.txt']);
  expect(lstatSync(join(share.sharedDir, 'escape')).isSymbolicLink()).toBe(true);

  const conc = get('concurrent-reads');
  expect(conc).toMatchObject({ requests: '18', completed: '18', replies_ok: '18', bytes: String(SPARSE_SECOND + SPARSE_CHUNK), fnv1a64: share.sparseFnv });
  expect(get('forget').used_len).toBe('0');
  expect(get('batch-forget').used_len).toBe('0');
  expect(Number(get('batch-forget').count)).toBeGreaterThan(0);

  const done = records.find((r) => r.key === 'fs-done')!;
  expect(done, output).toBeDefined();
  expect(done).toMatchObject({ timeouts: '0', bad_replies: '0', device_status: '0xf' });
}

/** kvmkit's `cache` policies (crosvm's names). */
export type FsCachePolicy = 'never' | 'auto' | 'always';
/** virtiofsd's `-o cache=` for the same policy. */
export const VIRTIOFSD_CACHE: Record<FsCachePolicy, 'none' | 'auto' | 'always'> = { never: 'none', auto: 'auto', always: 'always' };

/** fuse.h FOPEN_* bits in `open_flags`. */
const FOPEN_DIRECT_IO = 1;
const FOPEN_KEEP_CACHE = 2;
const FOPEN_CACHE_DIR = 8;

/**
 * QEMU 7.2's virtiofsd per policy: entry and attribute timeout (`seconds.nanoseconds` as the probe
 * prints it) and the open flags of OPEN and OPENDIR. kvmkit follows crosvm instead: the same
 * flags, its own `timeout` option (5 s, 0 with `never`).
 */
export const QEMU_CACHE: Record<FsCachePolicy, { timeout: string; open: string; opendir: string }> = {
  never: { timeout: '0.000000000', open: '0x1', opendir: '0x0' },
  auto: { timeout: '1.000000000', open: '0x0', opendir: '0x0' },
  always: { timeout: '86400.000000000', open: '0x2', opendir: '0x8' },
};

/**
 * The cache policy as the guest sees it, from a probe.test=fs run: what the policy means (FUSE
 * leaves it to the server, but both follow it): `never` gives zero timeouts and DIRECT_IO opens,
 * `auto` neither DIRECT_IO nor KEEP_CACHE, `always` KEEP_CACHE on files and CACHE_DIR on
 * directories; plus the exact timeout (`s.nnnnnnnnn`) and flags when given.
 */
export function checkCachePolicy(
  records: ProbeRecord[],
  policy: FsCachePolicy,
  exact: { timeout: string; open?: string; opendir?: string },
): void {
  const get = (c: string): ProbeRecord => records.find((r) => r.key === 'fs' && r.case === c)!;
  const lookup = get('lookup-file');
  expect(lookup, 'lookup-file').toBeDefined();
  expect({ entry: lookup.entry_valid, attr: lookup.attr_valid, getattr: get('getattr-file').attr_valid }, policy).toEqual({
    entry: exact.timeout,
    attr: exact.timeout,
    getattr: exact.timeout,
  });
  const open = Number(get('open-file').open_flags);
  const opendir = Number(get('opendir').open_flags);
  if (policy === 'never') {
    expect(exact.timeout).toBe('0.000000000');
    expect(open & FOPEN_DIRECT_IO, 'never: DIRECT_IO').toBe(FOPEN_DIRECT_IO);
  } else {
    expect(open & FOPEN_DIRECT_IO, `${policy}: no DIRECT_IO`).toBe(0);
    expect(Number(exact.timeout), `${policy}: names and attributes are cached`).toBeGreaterThan(0);
  }
  expect(open & FOPEN_KEEP_CACHE, `${policy}: KEEP_CACHE only with always`).toBe(policy === 'always' ? FOPEN_KEEP_CACHE : 0);
  expect(opendir & FOPEN_CACHE_DIR, `${policy}: CACHE_DIR only with always`).toBe(policy === 'always' ? FOPEN_CACHE_DIR : 0);
  if (exact.open !== undefined) expect(get('open-file').open_flags).toBe(exact.open);
  if (exact.opendir !== undefined) expect(get('opendir').open_flags).toBe(exact.opendir);
}

/**
 * Malformed requests (`PROBE fs-bad`, probe.fs.bad=): what the device did, as one word:
 * `reply:<err>` (an answer with that error), `dropped` (the chain came back with nothing
 * written), `needs-reset` (DEVICE_NEEDS_RESET), `no-completion`.
 */
export function badOutcome(r: ProbeRecord): string {
  if (r.result === 'completed') return r.reply_err === 'none' ? 'dropped' : `reply:${r.reply_err}`;
  return r.result!;
}

export interface FsBadCase {
  /** QEMU 7.2's virtiofsd (`after`: its answer to a GETATTR that follows). */
  qemu: string;
  qemuAfter: string;
  /** What kvmkit may do; absent: any error reply, `dropped` or `needs-reset`. */
  accept?: readonly string[];
  why: string;
}

/** Any error reply, a dropped chain or NEEDS_RESET: what a device may do with a broken request. */
const BROKEN = ['reply:error', 'dropped', 'needs-reset'] as const;

export const FS_BAD: Record<string, FsBadCase> = {
  'in-len-too-big': { qemu: 'reply:0', qemuAfter: '0', accept: ['reply:0', ...BROKEN], why: 'in_header.len 64 bytes more than sent: virtiofsd ignores it' },
  'in-len-too-small': { qemu: 'reply:0', qemuAfter: '0', accept: ['reply:0', ...BROKEN], why: 'in_header.len without GETATTR\'s argument: virtiofsd ignores it' },
  'in-header-truncated': {
    qemu: 'no-completion', qemuAfter: 'timeout',
    why: '20 of the 40 header bytes: virtiofsd never answers and stops serving the device, even across a reset',
  },
  'no-writable-buffer': { qemu: 'dropped', qemuAfter: '0', why: 'a GETATTR with no device-writable part' },
  'reply-header-only': { qemu: 'dropped', qemuAfter: '0', why: 'room for the out header only' },
  'reply-buffer-short': { qemu: 'dropped', qemuAfter: '0', why: 'room for 8 of fuse_attr_out\'s 104 bytes' },
  'out-header-short': { qemu: 'dropped', qemuAfter: '0', why: '8 writable bytes: not even an out header' },
  'opcode-0': { qemu: 'reply:ENOSYS', qemuAfter: '0', accept: ['reply:ENOSYS'], why: 'FUSE: an unknown opcode is ENOSYS' },
  'init-again': { qemu: 'reply:0', qemuAfter: '0', accept: ['reply:0', ...BROKEN], why: 'a second INIT in a session: both servers answer it' },
  'forget-unknown-nodeid': { qemu: 'dropped', qemuAfter: '0', accept: ['dropped'], why: 'FORGET never has a reply' },
  'batch-forget-count-too-big': { qemu: 'dropped', qemuAfter: '0', accept: ['dropped'], why: 'BATCH_FORGET never has a reply (count 1000, one entry sent)' },
  'getattr-on-hiprio': { qemu: 'reply:0', qemuAfter: '0', accept: ['reply:0', ...BROKEN], why: 'Linux sends only FORGETs on the hiprio queue; both servers answer anything there' },
};

/**
 * Check the fs-bad lines of a run. QEMU: exactly virtiofsd's outcome and what followed. kvmkit:
 * an allowed outcome, never a request left unanswered, and the next GETATTR answered (`after=0`),
 * after a reset if the device asked for one.
 */
export function checkFsBad(records: ProbeRecord[], server: 'qemu' | 'kvmkit', cases: readonly string[], output: string): void {
  for (const c of cases) {
    const spec = FS_BAD[c]!;
    const lines = records.filter((r) => r.key === 'fs-bad' && r.case === c && r.result !== undefined);
    expect(lines, `one "PROBE fs-bad case=${c}" line:\n${output}`).toHaveLength(1);
    const r = lines[0]!;
    const got = badOutcome(r);
    if (server === 'qemu') {
      expect({ outcome: got, after: r.after }, `${c} (${spec.why})`).toEqual({ outcome: spec.qemu, after: spec.qemuAfter });
      continue;
    }
    const ok = spec.accept ?? BROKEN;
    const allowed = ok.includes(got) || (ok.includes('reply:error') && got.startsWith('reply:') && got !== 'reply:0' && !TRANSPORT.has(got.slice(6)));
    expect(allowed, `${c}: kvmkit ${got}, allowed ${ok.join(' | ')} (${spec.why})`).toBe(true);
    expect(r.after, `${c}: the device answers the next request`).toBe('0');
  }
}
