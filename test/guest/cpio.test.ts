import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  lstatSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError, KvmkitError } from '../../src/errors';
import { CPIO_MAX_NAME_BYTES, CpioWriter, normalizeCpioName } from '../../src/guest';

const hasCpio = spawnSync('cpio', ['--version']).status === 0;
if (!hasCpio) {
  console.warn('\n*** test/guest/cpio.test.ts: Debian\'s `cpio` is not installed (apt-get install -y cpio); '
    + 'the tests that read archives back with it are SKIPPED ***\n');
}
const isRoot = process.getuid?.() === 0;

const tmpDirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'kvmkit-cpio-'));
  tmpDirs.push(d);
  return d;
}
afterAll(() => {
  for (const d of tmpDirs) rmSync(d, { recursive: true, force: true });
});

/** `cpio -t`: the names in the archive, in order. */
function cpioList(archive: Buffer): string[] {
  const out = execFileSync('cpio', ['-t', '--quiet'], { input: archive, encoding: 'utf8' });
  return out.split('\n').filter((l) => l !== '');
}

/** `cpio -idmu` into a new temp dir; returns it. */
function cpioExtract(archive: Buffer): string {
  const dir = tempDir();
  execFileSync('cpio', ['-idmu', '--no-absolute-filenames', '--quiet'], { cwd: dir, input: archive, stdio: ['pipe', 'ignore', 'pipe'] });
  return dir;
}

describe('newc encoding', () => {
  it('writes the magic, 13 hex fields, a NUL-terminated name padded to 4 and data padded to 4', () => {
    const w = new CpioWriter({ mtime: 0x5f5e100 });
    w.addFile('abc', 'hello', { mode: 0o640, uid: 1000, gid: 100 });
    const buf = w.toBuffer();
    const header = buf.subarray(0, 110).toString('ascii');
    expect(header.slice(0, 6)).toBe('070701');
    const fields = Array.from({ length: 13 }, (_, i) => parseInt(header.slice(6 + 8 * i, 14 + 8 * i), 16));
    const [ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor, rdevminor, namesize, check] = fields;
    expect({ ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor, rdevminor, namesize, check }).toEqual({
      ino: 1, mode: 0o100640, uid: 1000, gid: 100, nlink: 1, mtime: 0x5f5e100, filesize: 5,
      devmajor: 0, devminor: 0, rdevmajor: 0, rdevminor: 0, namesize: 4, check: 0,
    });
    // 110 + 4 = 114 -> name padded to 116; data 5 -> padded to 8.
    expect(buf.subarray(110, 116)).toEqual(Buffer.from('abc\0\0\0', 'latin1'));
    expect(buf.subarray(116, 121).toString()).toBe('hello');
    expect(buf.subarray(121, 124)).toEqual(Buffer.alloc(3));
    const trailer = buf.subarray(124);
    expect(trailer.subarray(0, 6).toString()).toBe('070701');
    expect(trailer.subarray(110, 121).toString('latin1')).toBe('TRAILER!!!\0');
    expect(trailer.length % 4).toBe(0);
    expect(buf.length % 4).toBe(0);
  });

  it('pads every header+name to a multiple of 4 for names of every length mod 4', () => {
    const w = new CpioWriter();
    for (const name of ['a', 'ab', 'abc', 'abcd', 'abcde']) w.addFile(name, name.repeat(3));
    const buf = w.toBuffer();
    let off = 0;
    const names: string[] = [];
    while (off < buf.length) {
      expect(buf.subarray(off, off + 6).toString()).toBe('070701');
      const field = (i: number) => parseInt(buf.subarray(off + 6 + 8 * i, off + 14 + 8 * i).toString(), 16);
      const filesize = field(6);
      const namesize = field(11);
      const name = buf.subarray(off + 110, off + 110 + namesize - 1).toString();
      names.push(name);
      off += 110 + namesize;
      off += (4 - (off % 4)) % 4;
      if (name !== 'TRAILER!!!') expect(buf.subarray(off, off + filesize).toString()).toBe(name.repeat(3));
      off += filesize;
      off += (4 - (off % 4)) % 4;
    }
    expect(off).toBe(buf.length);
    expect(names).toEqual(['a', 'ab', 'abc', 'abcd', 'abcde', 'TRAILER!!!']);
  });

  it('numbers inodes from firstInode and is reproducible (mtime 0, root-owned by default)', () => {
    const build = () => new CpioWriter({ firstInode: 721 }).addDirectory('d').addFile('d/f', 'x').addSymlink('l', 'd/f');
    const w = build();
    expect(w.entries().map((e) => [e.name, e.ino, e.uid, e.gid, e.mtime])).toEqual([
      ['d', 721, 0, 0, 0], ['d/f', 722, 0, 0, 0], ['l', 723, 0, 0, 0],
    ]);
    expect(build().toBuffer().equals(w.toBuffer())).toBe(true);
  });

  it('gzips on request, and the streamed file equals the buffer', async () => {
    const dir = tempDir();
    const big = join(dir, 'big.bin');
    writeFileSync(big, randomBytes(3 * 1024 * 1024 + 3)); // larger than one read chunk, odd size
    const w = new CpioWriter().addDirectory('data').addFileFromPath('data/big.bin', big).addFile('data/small', 'x');
    const raw = w.toBuffer();
    expect(gunzipSync(w.toBuffer({ gzip: true })).equals(raw)).toBe(true); // (toEqual on MiB buffers is slow)
    expect(gunzipSync(w.toBuffer({ gzip: { level: 1 } })).equals(raw)).toBe(true);
    const out = join(dir, 'a.cpio');
    const res = await w.writeFile(out);
    expect(res.bytes).toBe(raw.length);
    expect(readFileSync(out).equals(raw)).toBe(true);
    await w.writeFile(`${out}.gz`, { gzip: true });
    expect(gunzipSync(readFileSync(`${out}.gz`)).equals(raw)).toBe(true);
    expect(readdirSync(dir).sort()).toEqual(['a.cpio', 'a.cpio.gz', 'big.bin']); // no temp files left behind
  });
});

describe('host files that change before the archive is written', () => {
  it('fails with a KvmkitError naming the file, and leaves no partial archive', async () => {
    const dir = tempDir();
    const f = join(dir, 'gone');
    writeFileSync(f, 'x');
    const w = new CpioWriter().addFileFromPath('gone', f);
    rmSync(f);
    const out = join(dir, 'out.cpio.gz');
    await expect(w.writeFile(out, { gzip: true })).rejects.toThrow(KvmkitError);
    await expect(w.writeFile(out)).rejects.toThrow(/gone/);
    expect(() => w.toBuffer()).toThrow(KvmkitError);
    expect(readdirSync(dir)).toEqual([]);
  });
});

describe('names and options are checked', () => {
  it('normalizes names to relative paths', () => {
    expect(normalizeCpioName('/bin//sh')).toBe('bin/sh');
    expect(normalizeCpioName('./etc/./passwd/')).toBe('etc/passwd');
    expect(normalizeCpioName('init')).toBe('init');
  });

  it.each([
    ['', /empty/],
    ['/', /empty/],
    ['./.', /empty/],
    ['/etc/../../x', /\.\./],
    ['a/..', /\.\./],
    ['a\0b', /NUL/],
    ['TRAILER!!!', /ends the archive/],
    ['x'.repeat(CPIO_MAX_NAME_BYTES + 1), /at most 4095 bytes/],
    ['é'.repeat(2048), /at most 4095 bytes/], // 4096 bytes in UTF-8
  ])('rejects the name %j', (name, message) => {
    const w = new CpioWriter();
    let err: unknown;
    try {
      w.addFile(name, 'x');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).option).toBe('name');
    expect((err as Error).message).toMatch(message);
  });

  it('accepts a name of exactly the longest length', () => {
    expect(() => new CpioWriter().addFile('x'.repeat(CPIO_MAX_NAME_BYTES), '')).not.toThrow();
  });

  it('rejects duplicates, bad modes, ids and times, and bad hard links', () => {
    const w = new CpioWriter().addFile('f', 'x').addDirectory('d');
    expect(() => w.addFile('/f', 'y')).toThrow(/unique/);
    expect(() => w.addFile('g', 'x', { mode: 0o40755 })).toThrow(ConfigError);
    expect(() => w.addFile('g', 'x', { mode: -1 })).toThrow(/mode/);
    expect(() => w.addFile('g', 'x', { uid: 2 ** 32 })).toThrow(/uid/);
    expect(() => w.addFile('g', 'x', { mtime: -5 })).toThrow(/mtime/);
    expect(() => w.addFile('g', 'x', { mtime: new Date(Number.NaN) })).toThrow(/mtime/);
    expect(() => w.addDevice('dev', 'x' as 'c', 1, 1)).toThrow(/type/);
    expect(() => w.addSymlink('l', '')).toThrow(/target/);
    expect(() => w.addHardLink('h', 'missing')).toThrow(/existing/);
    expect(() => w.addHardLink('h', 'd')).toThrow(/regular file/);
    expect(() => w.addFileFromPath('g', '/nonexistent/file')).toThrow(/hostPath/);
    expect(() => w.addFileFromPath('g', '/tmp')).toThrow(/regular file/);
    expect(() => new CpioWriter({ uid: 1.5 })).toThrow(/uid/);
    expect(() => w.toBuffer({ gzip: { level: 12 } })).toThrow(/gzip.level/);
    // Type bits that match the entry are accepted.
    expect(() => w.addFile('g', 'x', { mode: 0o100600 })).not.toThrow();
  });
});

describe.skipIf(!hasCpio)('read back by Debian cpio', () => {
  function sample(hostFile: string): CpioWriter {
    return new CpioWriter({ mtime: 1_700_000_000 })
      .addDirectory('bin')
      .addFile('bin/tool', '#!/bin/sh\necho tool\n', { mode: 0o4755 })
      .addFileFromPath('bin/fromhost', hostFile, { mode: 0o600 })
      .addSymlink('bin/sh', 'tool')
      .addSymlink('abs', '/bin/tool')
      .addDirectory('etc', { mode: 0o700 })
      .addFile('etc/empty', '')
      .addFile('etc/owned', 'owned\n', { uid: 1234, gid: 4321, mtime: new Date('2020-01-02T03:04:05Z') })
      .addHardLink('etc/tool-link', 'bin/tool')
      .addDirectory('dev')
      .addDevice('dev/console', 'c', 5, 1)
      .addDevice('dev/vda', 'b', 254, 0, { mode: 0o660 })
      .addFifo('dev/fifo')
      .addDirectory('unicode ✓ dir')
      .addFile('unicode ✓ dir/naïve file.txt', 'ünïcödé');
  }

  it('cpio -t lists every entry in order', () => {
    const dir = tempDir();
    const hostFile = join(dir, 'host.bin');
    writeFileSync(hostFile, randomBytes(1001));
    const w = sample(hostFile);
    expect(cpioList(w.toBuffer())).toEqual(w.entries().map((e) => e.name));
    expect(cpioList(gunzipSync(w.toBuffer({ gzip: true })))).toEqual(w.entries().map((e) => e.name));
  });

  it('cpio -idm restores contents, modes, owners, times, symlinks, hard links and devices', () => {
    const src = tempDir();
    const hostFile = join(src, 'host.bin');
    const hostData = randomBytes(1001);
    writeFileSync(hostFile, hostData);
    const dir = cpioExtract(sample(hostFile).toBuffer());
    const st = (p: string) => lstatSync(join(dir, p));

    expect(readFileSync(join(dir, 'bin/tool'), 'utf8')).toBe('#!/bin/sh\necho tool\n');
    expect(readFileSync(join(dir, 'bin/fromhost')).equals(hostData)).toBe(true);
    expect(st('bin/fromhost').mode & 0o7777).toBe(0o600);
    expect(st('bin').isDirectory()).toBe(true);
    expect(st('etc').mode & 0o7777).toBe(0o700);
    expect(st('etc/empty').size).toBe(0);
    expect(readlinkSync(join(dir, 'bin/sh'))).toBe('tool');
    expect(readlinkSync(join(dir, 'abs'))).toBe('/bin/tool');
    expect(st('bin/tool').ino).toBe(st('etc/tool-link').ino);
    expect(st('bin/tool').nlink).toBe(2);
    expect(readFileSync(join(dir, 'unicode ✓ dir/naïve file.txt'), 'utf8')).toBe('ünïcödé');
    expect(Math.floor(st('bin/fromhost').mtimeMs / 1000)).toBe(1_700_000_000);
    expect(Math.floor(st('etc/owned').mtimeMs / 1000)).toBe(Date.parse('2020-01-02T03:04:05Z') / 1000);
    expect(st('dev/fifo').isFIFO()).toBe(true);
    if (isRoot) {
      // Only root may restore owners, setuid bits and device nodes.
      expect(st('bin/tool').mode & 0o7777).toBe(0o4755);
      expect([st('etc/owned').uid, st('etc/owned').gid]).toEqual([1234, 4321]);
      const con = st('dev/console');
      expect(con.isCharacterDevice()).toBe(true);
      expect(con.rdev).toBe((5 << 8) | 1);
      const vda = st('dev/vda');
      expect(vda.isBlockDevice()).toBe(true);
      expect(vda.rdev).toBe((254 << 8) | 0);
      expect(vda.mode & 0o7777).toBe(0o660);
    }
  });

  it('cpio -t accepts hard links whose data comes last, as GNU cpio writes them', () => {
    const w = new CpioWriter().addFile('a', 'shared').addHardLink('b', 'a').addHardLink('c', '/b');
    const e = w.entries();
    expect(e.map((x) => [x.name, x.nlink, x.ino])).toEqual([['a', 3, 1], ['b', 3, 1], ['c', 3, 1]]);
    const dir = cpioExtract(w.toBuffer());
    for (const n of ['a', 'b', 'c']) expect(readFileSync(join(dir, n), 'utf8')).toBe('shared');
    expect(lstatSync(join(dir, 'a')).nlink).toBe(3);
  });
});

// ---- property test: random trees round-trip through `cpio -i` ----

type Tree = { [name: string]: TreeNode };
type TreeNode =
  | { t: 'file'; data: Uint8Array; mode: number }
  | { t: 'link'; target: string }
  | { t: 'dir'; mode: number; children: Tree };

const nameArb = fc
  .string({ unit: fc.constantFrom(...'abcXYZ019 -_.,+=~@é✓'.split('')), minLength: 1, maxLength: 12 })
  .filter((s) => s !== '.' && s !== '..');
const fileMode = isRoot ? fc.integer({ min: 0, max: 0o7777 }) : fc.constantFrom(0o644, 0o600, 0o755, 0o700, 0o444);
const dirMode = isRoot ? fc.integer({ min: 0, max: 0o7777 }) : fc.constantFrom(0o755, 0o700, 0o775);

const { tree: treeArb } = fc.letrec<{ tree: Tree; node: TreeNode }>((tie) => ({
  tree: fc.dictionary(nameArb, tie('node'), { maxKeys: 5 }) as fc.Arbitrary<Tree>,
  node: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.record({ t: fc.constant('file' as const), data: fc.uint8Array({ maxLength: 600 }), mode: fileMode }),
    fc.record({ t: fc.constant('link' as const), target: fc.string({ minLength: 1, maxLength: 40 }).filter((s) => !s.includes('\0')) }),
    fc.record({ t: fc.constant('dir' as const), mode: dirMode, children: tie('tree') as fc.Arbitrary<Tree> }),
  ),
}));

function addTree(w: CpioWriter, tree: Tree, prefix: string): void {
  for (const [name, node] of Object.entries(tree)) {
    const path = prefix ? `${prefix}/${name}` : name;
    if (node.t === 'file') w.addFile(path, node.data, { mode: node.mode });
    else if (node.t === 'link') w.addSymlink(path, node.target);
    else {
      w.addDirectory(path, { mode: node.mode });
      addTree(w, node.children, path);
    }
  }
}

function checkTree(dir: string, tree: Tree): void {
  expect(readdirSync(dir).sort()).toEqual(Object.keys(tree).sort());
  for (const [name, node] of Object.entries(tree)) {
    const p = join(dir, name);
    const st = lstatSync(p);
    if (node.t === 'file') {
      expect(st.isFile()).toBe(true);
      expect(st.mode & 0o7777).toBe(node.mode);
      expect(Buffer.compare(readFileSync(p), node.data)).toBe(0);
    } else if (node.t === 'link') {
      expect(st.isSymbolicLink()).toBe(true);
      expect(readlinkSync(p)).toBe(node.target);
    } else {
      expect(st.isDirectory()).toBe(true);
      expect(st.mode & 0o7777).toBe(node.mode);
      checkTree(p, node.children);
    }
  }
}

describe.skipIf(!hasCpio)('property: random trees round-trip through cpio -i', () => {
  it('extracts to the same names, contents, modes and link targets', () => {
    fc.assert(
      fc.property(treeArb, fc.boolean(), (tree, gzip) => {
        const w = new CpioWriter();
        addTree(w, tree, '');
        const bytes = w.toBuffer({ gzip });
        const archive = gzip ? gunzipSync(bytes) : bytes;
        expect(cpioList(archive).map((n) => n)).toEqual(w.entries().map((e) => e.name));
        const dir = cpioExtract(archive);
        try {
          checkTree(dir, tree);
        } finally {
          rmSync(dir, { recursive: true, force: true });
        }
      }),
      { numRuns: 100 },
    );
  });
});
