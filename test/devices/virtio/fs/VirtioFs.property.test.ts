/**
 * Property test: more than 10,000 malformed FUSE requests thrown at a VirtioFs on fake guest RAM,
 * over a share that holds symlinks to a sentinel directory outside it. Kinds: lengths that
 * disagree with the chain, unknown node ids, bad names (with `/`, empty, `.`/`..` where entries
 * are made, too long, unterminated), opcodes not served, argument structs cut short, unknown file
 * handles, and random bytes. An independent model says what each must get, in the order the
 * server checks (length, opcode, reply room, arguments, operation). For every request:
 * - processQueue never throws and the chain comes back exactly once;
 * - a reply-less request (FORGET, BATCH_FORGET, INTERRUPT, no room for a header, no header) has
 *   used length 0 and its reply area untouched; every other request gets exactly a 16-byte
 *   fuse_out_header with its `unique` and the model's errno (random bytes: some valid reply);
 * - the request's device-readable buffers are unchanged and nothing past the reply is written;
 * - the server never hits an internal error.
 * After the run, the sentinel directory outside the share and the share itself are unchanged
 * (names, types, modes, sizes, mtimes, contents), and a valid request still works.
 */
import fc from 'fast-check';
import { createHash } from 'node:crypto';
import { lstatSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FuseOpcode as Op } from '../../../../src/fuse/abi';
import { cleanupTempDirs, ERR, tempDir } from '../../../fuse/helpers';
import { cat, FILL, FuseClient, le, z } from './fuseClient';

const RUNS = 10_400;

// ---- the model: fixed-size argument structs and replies (include/uapi/linux/fuse.h) ----

/** Bytes of each served opcode's fixed argument struct (before any names / data). */
const ARG_STRUCT: Record<number, number> = {
  [Op.GETATTR]: 16, [Op.SETATTR]: 88, [Op.MKNOD]: 16, [Op.MKDIR]: 8, [Op.RENAME]: 8, [Op.RENAME2]: 16, [Op.LINK]: 8,
  [Op.OPEN]: 8, [Op.CREATE]: 16, [Op.READ]: 40, [Op.WRITE]: 40, [Op.FLUSH]: 24, [Op.RELEASE]: 24, [Op.FSYNC]: 16,
  [Op.OPENDIR]: 8, [Op.READDIR]: 40, [Op.READDIRPLUS]: 40, [Op.RELEASEDIR]: 24, [Op.FSYNCDIR]: 16, [Op.ACCESS]: 8,
  [Op.GETXATTR]: 8, [Op.SETXATTR]: 8, [Op.LISTXATTR]: 8, [Op.FALLOCATE]: 32, [Op.LSEEK]: 24, [Op.INIT]: 16,
};
/** Bytes of each opcode's fixed reply after the out header (entry_out 128, attr_out 104, open_out 16, ...). */
const REPLY_STRUCT: Record<number, number> = {
  [Op.LOOKUP]: 128, [Op.MKNOD]: 128, [Op.MKDIR]: 128, [Op.SYMLINK]: 128, [Op.LINK]: 128, [Op.GETATTR]: 104,
  [Op.SETATTR]: 104, [Op.OPEN]: 16, [Op.OPENDIR]: 16, [Op.CREATE]: 144, [Op.WRITE]: 8, [Op.STATFS]: 80, [Op.INIT]: 64,
  [Op.LSEEK]: 8,
};
const NO_REPLY = new Set<number>([Op.FORGET, Op.BATCH_FORGET, Op.INTERRUPT]);
const SERVED = [
  Op.LOOKUP, Op.GETATTR, Op.SETATTR, Op.READLINK, Op.SYMLINK, Op.MKNOD, Op.MKDIR, Op.UNLINK, Op.RMDIR, Op.RENAME,
  Op.RENAME2, Op.LINK, Op.OPEN, Op.CREATE, Op.READ, Op.WRITE, Op.FLUSH, Op.RELEASE, Op.FSYNC, Op.OPENDIR, Op.READDIR,
  Op.READDIRPLUS, Op.RELEASEDIR, Op.FSYNCDIR, Op.STATFS, Op.ACCESS, Op.GETXATTR, Op.SETXATTR, Op.LISTXATTR,
  Op.REMOVEXATTR, Op.FALLOCATE, Op.LSEEK,
];
const NAME_OPS = [Op.LOOKUP, Op.MKDIR, Op.MKNOD, Op.SYMLINK, Op.UNLINK, Op.RMDIR, Op.CREATE, Op.RENAME, Op.RENAME2, Op.LINK];
const HANDLE_OPS = [Op.READ, Op.WRITE, Op.FLUSH, Op.RELEASE, Op.FSYNC, Op.FALLOCATE, Op.LSEEK];
const DIR_HANDLE_OPS: number[] = [Op.READDIR, Op.READDIRPLUS, Op.RELEASEDIR, Op.FSYNCDIR];
const UNSERVED = [0, 7, 19, Op.GETLK, Op.SETLK, Op.SETLKW, Op.BMAP, Op.IOCTL, Op.POLL, Op.NOTIFY_REPLY, Op.COPY_FILE_RANGE,
  Op.SETUPMAPPING, Op.REMOVEMAPPING, Op.SYNCFS, Op.TMPFILE, 52, 4096, 1 << 20, 0xffff_ffff];

/** What a request must get: an errno in an error reply, no reply at all, or any well-formed reply. */
type Expect = { errno: number } | 'none' | 'any';

interface Req {
  kind: string;
  opcode: number;
  nodeid: bigint;
  args: Uint8Array;
  /** fuse_in_header.len override. */
  len?: number;
  /** Raw bytes instead of a header + args. */
  raw?: Uint8Array;
  replySize: number;
  split: number[];
  queue: number;
  /** The errno the request's own fault gives once it reaches the operation. */
  fault: Expect;
  /** The fault is in the length or opcode: checked before the reply room. */
  early?: boolean;
}

/** Well-formed arguments for `opcode`, with `name` (NUL-terminated bytes) where it takes one and handle `fh`. */
function argsFor(opcode: number, name: Uint8Array, fh: bigint, second: Uint8Array = z('other')): Uint8Array {
  const struct = (n: number, fill: (b: ReturnType<typeof le>) => void = () => undefined): Uint8Array => {
    const b = le();
    fill(b);
    const head = b.bytes();
    return cat(head, new Uint8Array(Math.max(0, n - head.length)));
  };
  switch (opcode) {
    case Op.LOOKUP: case Op.UNLINK: case Op.RMDIR: case Op.REMOVEXATTR: return name;
    case Op.SYMLINK: return cat(name, z('target'));
    case Op.MKNOD: return cat(struct(16, (b) => b.u32(0o100644)), name);
    case Op.MKDIR: return cat(struct(8, (b) => b.u32(0o755)), name);
    case Op.RENAME: return cat(struct(8, (b) => b.u64(1)), name, second);
    case Op.RENAME2: return cat(struct(16, (b) => b.u64(1)), name, second);
    case Op.LINK: return cat(struct(8, (b) => b.u64(1)), name);
    case Op.CREATE: return cat(struct(16, (b) => b.u32(1).u32(0o644)), name);
    case Op.GETXATTR: return cat(struct(8, (b) => b.u32(64)), z('user.x'));
    case Op.SETXATTR: return cat(struct(8, (b) => b.u32(3)), z('user.x'), new Uint8Array(3));
    case Op.WRITE: return cat(struct(40, (b) => b.u64(fh).u64(0).u32(5)), new Uint8Array(5));
    case Op.READ: case Op.READDIR: case Op.READDIRPLUS: return struct(40, (b) => b.u64(fh).u64(0).u32(64));
    case Op.SETATTR: return struct(88, (b) => b.u32(0x40 | 0x8).u32(0).u64(fh)); // FATTR_FH | FATTR_SIZE
    case Op.READLINK: case Op.STATFS: return new Uint8Array(0);
    case Op.ACCESS: return struct(8, (b) => b.u32(4));
    default: return struct(ARG_STRUCT[opcode] ?? 0, (b) => b.u64(fh));
  }
}

/** What the server must answer for `r` and a reply area of `r.replySize` bytes. */
function expected(r: Req): Expect {
  if (r.raw) return r.raw.length < 40 ? 'none' : 'any';
  if (NO_REPLY.has(r.opcode)) return 'none';
  if (r.replySize < 16) return 'none';
  if (r.early) return r.fault;
  if (r.replySize < 16 + (REPLY_STRUCT[r.opcode] ?? 0)) return { errno: ERR.EINVAL };
  return r.fault;
}

// ---- generators ----

const nodeid = { file: 0n, dir: 0n };
const chain = fc.record({
  replySize: fc.oneof({ weight: 12, arbitrary: fc.integer({ min: 160, max: 600 }) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 159 }) }),
  split: fc.array(fc.integer({ min: 1, max: 48 }), { maxLength: 4 }),
  queue: fc.constantFrom(0, 1, 1, 1),
});
const unknownNode = fc.oneof(fc.constant(0n), fc.bigInt({ min: 100_000n, max: (1n << 64n) - 1n }), fc.constant((1n << 64n) - 1n));
const unknownFh = fc.oneof(fc.bigInt({ min: 1_000_000n, max: (1n << 64n) - 1n }), fc.constant(0n));
const okName = fc.stringMatching(/^[a-z]{1,12}$/).map((s) => z('fz-' + s));
/** A bad name and the errno it earns where entries are created (LOOKUP allows . and ..). */
const badName = fc.oneof(
  fc.tuple(fc.stringMatching(/^[a-z]{0,6}$/), fc.stringMatching(/^[a-z.]{0,6}$/)).map(([a, b]) => ({ name: z(`${a}/${b}`), errno: ERR.EINVAL, dots: false })),
  fc.constant({ name: z(''), errno: ERR.ENOENT, dots: false }),
  fc.constantFrom('.', '..').map((d) => ({ name: z(d), errno: ERR.EINVAL, dots: true })),
  fc.integer({ min: 256, max: 600 }).map((n) => ({ name: z('n'.repeat(n)), errno: ERR.ENAMETOOLONG, dots: false })),
  fc.stringMatching(/^[a-z]{0,8}$/).map((s) => ({ name: new TextEncoder().encode(s), errno: ERR.EINVAL, dots: false, unterminated: true })),
);

const badLength = fc.record({
  opcode: fc.constantFrom(...SERVED, Op.INIT, Op.DESTROY, Op.FORGET, Op.BATCH_FORGET, Op.INTERRUPT),
  delta: fc.oneof(fc.integer({ min: -40, max: -1 }), fc.integer({ min: 1, max: 100_000 })),
  c: chain,
}).map(({ opcode, delta, c }): Req => {
  const args = argsFor(opcode, z('x'), 1n);
  const actual = 40 + args.length;
  const len = delta < 0 ? Math.max(0, 40 + delta) : actual + delta;
  return { kind: 'length', opcode, nodeid: 1n, args, len, ...c, fault: { errno: ERR.EINVAL }, early: true };
});

const badNode = fc.record({ opcode: fc.constantFrom(...SERVED), node: unknownNode, name: okName, c: chain }).map(({ opcode, node, name, c }): Req => ({
  kind: 'node', opcode, nodeid: node, args: argsFor(opcode, name, 7_000_000n), ...c,
  fault: { errno: opcode === Op.LOOKUP ? ERR.ENOENT : ERR.EBADF },
}));

const badNames = fc.record({ opcode: fc.constantFrom(...NAME_OPS), bad: badName, second: fc.boolean(), c: chain })
  .filter(({ opcode, bad }) => !(opcode === Op.LOOKUP && bad.dots))
  .map(({ opcode, bad, second, c }): Req => {
    const twoNames = opcode === Op.RENAME || opcode === Op.RENAME2;
    const unterminated = 'unterminated' in bad;
    // An unterminated name must come last: as the second name of a rename, or alone.
    const badSecond = twoNames && (second || unterminated);
    // SYMLINK takes the name then the target: an unterminated name swallows the target and the
    // target then has no NUL; either way the request is EINVAL.
    const args = badSecond ? argsFor(opcode, z('fz-ok'), 1n, bad.name) : argsFor(opcode, bad.name, 1n);
    return { kind: 'name', opcode, nodeid: 1n, args, ...c, fault: { errno: bad.errno } };
  });

const badOpcode = fc.record({
  opcode: fc.oneof(fc.constantFrom(...UNSERVED), fc.integer({ min: 52, max: 0xffff_ffff })),
  body: fc.uint8Array({ maxLength: 64 }),
  c: chain,
}).map(({ opcode, body, c }): Req => ({ kind: 'opcode', opcode, nodeid: 1n, args: body, ...c, fault: { errno: ERR.ENOSYS }, early: true }));

const truncated = fc.record({
  opcode: fc.constantFrom(...Object.keys(ARG_STRUCT).map(Number), ...NAME_OPS, Op.SETXATTR, Op.WRITE, Op.FORGET, Op.BATCH_FORGET),
  cut: fc.nat(),
  noise: fc.uint8Array({ minLength: 64, maxLength: 64 }).map((b) => b.map((x) => x || 1)),
  c: chain,
}).map(({ opcode, cut, noise, c }): Req => {
  const struct = opcode === Op.FORGET || opcode === Op.BATCH_FORGET ? 8 : ARG_STRUCT[opcode] ?? 0;
  let args: Uint8Array;
  if (opcode === Op.SETXATTR && cut % 2 === 0) args = cat(le().u32(50).u32(0).bytes(), z('user.x'), noise.subarray(0, cut % 50)); // value short of its size
  else if (opcode === Op.WRITE && cut % 2 === 0) args = cat(le().u64(1).u64(0).u32(100 + (cut % 1000)).u32(0).u64(0).u32(0).u32(0).bytes(), noise.subarray(0, cut % 64));
  else if (struct > 0) args = noise.subarray(0, cut % struct); // the struct cut short
  else args = noise.subarray(0, cut % 20); // a name with no NUL
  return { kind: 'truncated', opcode, nodeid: 1n, args, ...c, fault: { errno: ERR.EINVAL } };
});

const badHandle = fc.record({ opcode: fc.constantFrom(...HANDLE_OPS, ...DIR_HANDLE_OPS, Op.SETATTR), fh: unknownFh, c: chain }).map(({ opcode, fh, c }): Req => ({
  kind: 'handle', opcode, nodeid: DIR_HANDLE_OPS.includes(opcode) ? nodeid.dir : nodeid.file, args: argsFor(opcode, z('x'), fh), ...c,
  fault: { errno: ERR.EBADF },
}));

const garbage = fc.record({ bytes: fc.uint8Array({ maxLength: 200 }), c: chain }).map(({ bytes, c }): Req => {
  const raw = bytes.slice();
  if (raw.length >= 8) {
    const op = new DataView(raw.buffer).getUint32(4, true);
    if (op === Op.INIT || op === Op.DESTROY) raw[4] ^= 0x80; // never end or restart the session
  }
  return { kind: 'garbage', opcode: -1, nodeid: 0n, args: raw, raw, ...c, fault: 'any' };
});

const request = fc.oneof(badLength, badNode, badNames, badOpcode, truncated, badHandle, garbage);

// ---- the run ----

afterAll(cleanupTempDirs);

interface Snapshot { [path: string]: string }
function snapshot(root: string): Snapshot {
  const out: Snapshot = {};
  const walk = (rel: string): void => {
    for (const name of readdirSync(join(root, rel)).sort()) {
      const p = join(root, rel, name);
      const st = lstatSync(p, { bigint: true });
      const content = st.isFile() ? createHash('sha256').update(readFileSync(p)).digest('hex') : '';
      out[join(rel, name)] = `${st.mode}:${st.size}:${st.mtimeNs}:${st.ino}:${content}`;
      if (st.isDirectory()) walk(join(rel, name));
    }
  };
  walk('');
  return out;
}

describe('VirtioFs under malformed FUSE requests', () => {
  let sentinel: string;
  let share: string;
  let c: FuseClient;
  let before: { sentinel: Snapshot; share: Snapshot };

  beforeAll(async () => {
    sentinel = tempDir('kvmkit-fuse-sentinel-');
    writeFileSync(join(sentinel, 'secret'), 'sentinel secret');
    mkdirSync(join(sentinel, 'sub'));
    writeFileSync(join(sentinel, 'sub', 'deep'), 'deep secret');
    share = tempDir();
    writeFileSync(join(share, 'file'), 'in the share');
    mkdirSync(join(share, 'dir'));
    symlinkSync(sentinel, join(share, 'to-sentinel'));
    symlinkSync(join(sentinel, 'secret'), join(share, 'to-secret'));
    symlinkSync('../..', join(share, 'dir', 'up'));
    c = FuseClient.create({ sharedDir: share, tag: 'fuzz' });
    await c.init();
    nodeid.file = BigInt((await c.lookup(1, 'file')).nodeid);
    nodeid.dir = BigInt((await c.lookup(1, 'dir')).nodeid);
    before = { sentinel: snapshot(sentinel), share: snapshot(share) };
  });

  it(`answers ${RUNS} malformed requests as the model says, and touches nothing outside the share`, async () => {
    const counts: Record<string, number> = {};
    let total = 0;
    await fc.assert(
      fc.asyncProperty(request, async (r) => {
        total++;
        counts[r.kind] = (counts[r.kind] ?? 0) + 1;
        const unique = BigInt(total) * 1000n + 7n;
        const o = { replySize: r.replySize, split: r.split, queue: r.queue, len: r.len, unique };
        const reply = r.raw ? await c.raw(r.raw, o) : await c.call(r.opcode, r.nodeid, r.args, o);
        // the request is as the driver wrote it
        const sent = r.raw;
        if (sent) expect(cat(...reply.request.map((b) => c.mem.read(b.addr, b.len)))).toEqual(sent);
        else expect(cat(...reply.request.map((b) => c.mem.read(b.addr, b.len))).subarray(40)).toEqual(r.args);
        const want = expected(r);
        if (want === 'none') {
          expect(reply.used).toBe(0);
          expect(reply.area.every((b) => b === FILL)).toBe(true);
          return;
        }
        if (want === 'any') {
          if (reply.used === 0) return;
          expect(reply.used).toBeGreaterThanOrEqual(16);
          expect(reply.len).toBe(reply.used);
          expect(reply.area.subarray(reply.used).every((b) => b === FILL)).toBe(true);
          return;
        }
        expect({ kind: r.kind, op: r.opcode, used: reply.used, len: reply.len, error: reply.error, unique: reply.unique }).toEqual({
          kind: r.kind, op: r.opcode, used: 16, len: 16, error: -want.errno, unique,
        });
        expect(reply.area.subarray(16).every((b) => b === FILL)).toBe(true);
      }),
      { numRuns: RUNS, seed: Number(process.env.FUZZ_SEED ?? 20261123) },
    );
    expect(total).toBeGreaterThanOrEqual(10_000);
    for (const k of ['length', 'node', 'name', 'opcode', 'truncated', 'handle', 'garbage']) expect(counts[k], k).toBeGreaterThan(500);
    expect(c.dev.stats.internalErrors).toBe(0);
    console.log(`virtio-fs property test: ${total} requests`, counts, c.dev.stats);
  }, 600_000);

  it('left the sentinel outside the share and the share itself untouched, and still serves', async () => {
    expect(snapshot(sentinel)).toEqual(before.sentinel);
    expect(snapshot(share)).toEqual(before.share);
    expect((await c.getattr(1)).mode & 0o170000).toBe(0o040000);
    expect(new TextDecoder().decode(await c.readFile((await c.lookup(1, 'file')).nodeid))).toBe('in the share');
    await c.close();
  });
});
