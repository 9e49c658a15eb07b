import { execFileSync, spawnSync } from 'node:child_process';
import {
  existsSync, linkSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/errors';
import { Initramfs } from '../../src/guest';

const hasCpio = spawnSync('cpio', ['--version']).status === 0;
if (!hasCpio) {
  console.warn('\n*** test/guest/initramfs.test.ts: Debian\'s `cpio` is not installed (apt-get install -y cpio); '
    + 'the tests that list images with it are SKIPPED ***\n');
}
const fixtureDir = join(__dirname, '..', 'fixtures', 'linux');
const fixtureImage = join(fixtureDir, 'initramfs.cpio.gz');
const fixtureManifest = join(fixtureDir, 'manifest.json');
const hasFixture = existsSync(fixtureImage) && existsSync(fixtureManifest);
if (!hasFixture) {
  console.warn(`\n*** test/guest/initramfs.test.ts: the Linux fixture is missing (${fixtureImage}); `
    + 'make it with `npm run build && node scripts/linux-fixture.mjs`. The fixture image checks are SKIPPED ***\n');
}

const tmpDirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'kvmkit-initramfs-'));
  tmpDirs.push(d);
  return d;
}
afterAll(() => {
  for (const d of tmpDirs) rmSync(d, { recursive: true, force: true });
});

function cpioList(archive: Buffer): string[] {
  return execFileSync('cpio', ['-t', '--quiet'], { input: archive, encoding: 'utf8', maxBuffer: 64 << 20 })
    .split('\n').filter((l) => l !== '');
}

function cpioListVerbose(archive: Buffer): Map<string, string> {
  const out = execFileSync('cpio', ['-tv', '--quiet'], { input: archive, encoding: 'utf8', maxBuffer: 64 << 20 });
  const m = new Map<string, string>();
  for (const line of out.split('\n').filter(Boolean)) {
    // mode nlink user group size-or-"major, minor" month day year-or-time name[ -> target]
    const name = /^\S+\s+\d+\s+\S+\s+\S+\s+(?:\d+,\s*\d+|\d+)\s+\w{3}\s+\d+\s+(?:\d{4}|\d\d:\d\d)\s(.+?)(?: -> .*)?$/.exec(line)?.[1];
    if (name) m.set(name, line);
  }
  return m;
}

describe('Initramfs builder', () => {
  it('creates parents implicitly, before their children, and /dev/console by default', () => {
    const img = new Initramfs();
    img.addFile('/usr/share/doc/readme', 'hi');
    img.addSymlink('/bin/sh', 'busybox');
    expect(img.paths()).toEqual([
      '/dev', '/dev/console', '/usr', '/usr/share', '/usr/share/doc', '/usr/share/doc/readme', '/bin', '/bin/sh',
    ]);
    const entries = img.toCpio().entries();
    const con = entries.find((e) => e.name === 'dev/console');
    expect(con).toMatchObject({ kind: 'char', rdev: { major: 5, minor: 1 }, mode: 0o020600 });
    expect(entries.find((e) => e.name === 'usr/share')).toMatchObject({ kind: 'directory', mode: 0o040755 });
    expect(new Initramfs({ devConsole: false }).paths()).toEqual([]);
  });

  it('lets mkdir set the mode of an implicit directory, and later files replace earlier ones', () => {
    const img = new Initramfs({ devConsole: false });
    img.addFile('/etc/motd', 'one');
    img.mkdir('/etc', { mode: 0o700 });
    img.addFile('/etc/motd', 'two', { mode: 0o600 });
    const entries = img.toCpio().entries();
    expect(entries.map((e) => [e.name, e.mode])).toEqual([['etc', 0o040700], ['etc/motd', 0o100600]]);
    expect(img.toBuffer().includes('two')).toBe(true);
    expect(img.toBuffer().includes('one')).toBe(false);
  });

  it('refuses paths through non-directories and directory/file swaps', () => {
    const img = new Initramfs({ devConsole: false });
    img.addFile('/a', 'x').mkdir('/d');
    expect(() => img.addFile('/a/b', 'y')).toThrow(/parent \/a that is a regular file/);
    expect(() => img.mkdir('/a')).toThrow(ConfigError);
    expect(() => img.addFile('/d', 'y')).toThrow(/already exists as a directory/);
    expect(() => img.addFile('/../etc', 'y')).toThrow(/\.\./);
    expect(() => img.addFile('', 'y')).toThrow(ConfigError);
    expect(() => img.addHardLink('/h', '/d')).toThrow(/regular file/);
    expect(() => img.setInit('  ')).toThrow(/script/);
  });

  it('writes /init executable, adding #!/bin/sh when the script has no interpreter line', () => {
    const img = new Initramfs({ devConsole: false });
    img.setInit('echo hi\n');
    const init = img.toCpio().entries().find((e) => e.name === 'init');
    expect(init?.mode).toBe(0o100755);
    expect(img.toBuffer().includes('#!/bin/sh\necho hi\n')).toBe(true);
    const py = new Initramfs({ devConsole: false }).setInit('#!/bin/busybox sh\necho x\n');
    expect(py.toBuffer().includes('#!/bin/busybox sh\necho x\n')).toBe(true);
  });

  it('copies a host tree: files, modes, symlinks, FIFOs, filters and (optionally) hard links', () => {
    const src = tempDir();
    mkdirSync(join(src, 'bin'));
    mkdirSync(join(src, 'skip'));
    writeFileSync(join(src, 'bin', 'tool'), 'tool', { mode: 0o750 });
    linkSync(join(src, 'bin', 'tool'), join(src, 'bin', 'tool2'));
    symlinkSync('tool', join(src, 'bin', 'link'));
    writeFileSync(join(src, 'skip', 'x'), 'x');
    execFileSync('mkfifo', [join(src, 'fifo')]);
    const img = new Initramfs({ devConsole: false });
    img.addTree(src, '/opt/app', { hardLinks: true, filter: (rel) => rel !== 'skip' });
    const entries = img.toCpio().entries();
    expect(entries.map((e) => e.name)).toEqual([
      'opt', 'opt/app', 'opt/app/bin', 'opt/app/bin/link', 'opt/app/bin/tool', 'opt/app/bin/tool2', 'opt/app/fifo',
    ]);
    const tool = entries.find((e) => e.name === 'opt/app/bin/tool');
    const tool2 = entries.find((e) => e.name === 'opt/app/bin/tool2');
    expect(tool).toMatchObject({ mode: 0o100750, nlink: 2, uid: 0, mtime: 0 });
    expect(tool2?.ino).toBe(tool?.ino);
    expect(entries.find((e) => e.name === 'opt/app/bin/link')?.linkTarget).toBe('tool');
    expect(entries.find((e) => e.name === 'opt/app/fifo')?.kind).toBe('fifo');
    // Without hardLinks the second name is a copy.
    const copy = new Initramfs({ devConsole: false }).addTree(src).toCpio().entries();
    expect(copy.find((e) => e.name === 'bin/tool2')?.nlink).toBe(1);
    expect(() => new Initramfs().addTree(join(src, 'missing'))).toThrow(/hostDir/);
  });

  it.skipIf(!hasCpio)('round-trips a host tree through cpio -i', () => {
    const src = tempDir();
    mkdirSync(join(src, 'a', 'b'), { recursive: true });
    writeFileSync(join(src, 'a', 'b', 'f'), 'data');
    symlinkSync('../b/f', join(src, 'a', 'l'));
    const dest = tempDir();
    execFileSync('cpio', ['-idmu', '--quiet', '--no-absolute-filenames'], {
      cwd: dest, input: gunzipSync(new Initramfs({ devConsole: false }).addTree(src, '/x').toBuffer({ gzip: true })),
    });
    expect(readFileSync(join(dest, 'x', 'a', 'b', 'f'), 'utf8')).toBe('data');
    expect(readlinkSync(join(dest, 'x', 'a', 'l'))).toBe('../b/f');
    expect(lstatSync(join(dest, 'x', 'a')).isDirectory()).toBe(true);
  });

  it.skipIf(!hasCpio)('builds a busybox-style initramfs that cpio -t lists with /init, /bin/busybox and modules', async () => {
    const dir = tempDir();
    const busybox = join(dir, 'busybox');
    writeFileSync(busybox, '\x7fELF fake busybox', { mode: 0o755 });
    const img = new Initramfs();
    for (const d of ['/proc', '/sys', '/tmp']) img.mkdir(d);
    img.addFileFromPath('/bin/busybox', busybox);
    for (const applet of ['sh', 'mount', 'insmod', 'poweroff']) img.addSymlink(`/bin/${applet}`, 'busybox');
    img.addFile('/lib/modules/6.1.0-test/kernel/drivers/virtio/virtio.ko', Buffer.from('module'));
    img.addFile('/lib/modules/6.1.0-test/kernel/drivers/block/virtio_blk.ko', Buffer.from('module'));
    img.setInit('mount -t proc proc /proc\ninsmod /lib/modules/6.1.0-test/kernel/drivers/virtio/virtio.ko\n');
    const out = join(dir, 'initramfs.cpio.gz');
    await img.writeFile(out, { gzip: true });
    const names = cpioList(gunzipSync(readFileSync(out)));
    expect(names).toEqual(expect.arrayContaining([
      'init', 'bin/busybox', 'bin/sh', 'dev/console', 'proc',
      'lib/modules/6.1.0-test/kernel/drivers/virtio/virtio.ko', 'lib/modules/6.1.0-test/kernel/drivers/block/virtio_blk.ko',
    ]));
    // Every parent is listed before its children, as the kernel's unpacker needs.
    names.forEach((n, i) => {
      const parent = n.split('/').slice(0, -1).join('/');
      if (parent) expect(names.indexOf(parent)).toBeLessThan(i);
    });
    const verbose = cpioListVerbose(gunzipSync(readFileSync(out)));
    expect(verbose.get('init')).toMatch(/^-rwxr-xr-x/);
    expect(verbose.get('bin/sh')).toMatch(/^lrwxrwxrwx .* bin\/sh -> busybox$/);
    expect(verbose.get('dev/console')).toMatch(/^crw-------/);
  });
});

describe.skipIf(!hasCpio || !hasFixture)('the Linux fixture image (scripts/linux-fixture.mjs)', () => {
  it('has /init, busybox with its applets, /dev/console and every module of the manifest', () => {
    const manifest = JSON.parse(readFileSync(fixtureManifest, 'utf8')) as {
      kernel: { release: string };
      busybox: { applets: number };
      modules: { loadOrder: { name: string; path: string }[]; builtin: string[] };
    };
    const archive = gunzipSync(readFileSync(fixtureImage));
    const verbose = cpioListVerbose(archive);
    expect(verbose.get('init')).toMatch(/^-rwxr-xr-x/);
    expect(verbose.get('bin/busybox')).toMatch(/^-rwxr-xr-x/);
    expect(verbose.get('dev/console')).toMatch(/^crw-------.* 5,\s+1 /);
    for (const applet of ['bin/sh', 'bin/mount', 'sbin/insmod', 'sbin/poweroff', 'sbin/reboot', 'usr/bin/nproc', 'bin/base64', 'bin/dmesg', 'sbin/switch_root']) {
      expect(verbose.get(applet), applet).toMatch(/-> \/bin\/busybox$/);
    }
    const symlinks = [...verbose.values()].filter((l) => l.endsWith('-> /bin/busybox')).length;
    expect(symlinks).toBe(manifest.busybox.applets);
    const names = manifest.modules.loadOrder.map((m) => m.name);
    expect(names).toEqual(expect.arrayContaining(['virtio_pci', 'virtio_blk', 'virtio_console', 'virtio_rng', 'virtio_balloon', 'virtiofs', 'fuse']));
    // Dependencies come before the modules that need them.
    expect(names.indexOf('virtio')).toBeLessThan(names.indexOf('virtio_pci'));
    expect(names.indexOf('virtio_ring')).toBeLessThan(names.indexOf('virtio_blk'));
    expect(names.indexOf('fuse')).toBeLessThan(names.indexOf('virtiofs'));
    for (const m of manifest.modules.loadOrder) {
      expect(m.path).toMatch(/\.ko$/); // decompressed
      expect(verbose.has(m.path.slice(1)), m.path).toBe(true);
    }
    expect(verbose.has(`lib/modules/${manifest.kernel.release}/modules.dep`)).toBe(true);
    // The init script loads exactly these modules, in this order.
    const init = execFileSync('cpio', ['-i', '--to-stdout', '--quiet', 'init'], { input: archive }).toString();
    const listed = [...init.matchAll(/^ {2}(kernel\/\S+\.ko) \\$/gm)].map((m) => m[1]);
    expect(listed.map((p) => `/lib/modules/${manifest.kernel.release}/${p}`)).toEqual(manifest.modules.loadOrder.map((m) => m.path));
    expect(init).toContain('KVMKIT-READY');
    expect(init).toContain('KVMKIT-EXIT status=%d');
  });
});
