/**
 * `kvmkit run` with crosvm's options and JSON config files, spawned as a user runs it, on the probe
 * guest at ring 3 (native speed on a PVM host).
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ensureProbe, HAS_KVM, ROOT, warnNoKvm } from '../helpers/env';

const CLI = join(ROOT, 'dist', 'cli.js');
const dir = mkdtempSync(join(tmpdir(), 'kvmkit-run-'));
const kvmkit = (args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 60_000, cwd: dir });
const PROBE_FAST = ['-p', 'probe.ring=3'];
let probe = '';

/** A 1 MiB raw image in the test directory. */
function image(name: string): string {
  const p = join(dir, name);
  writeFileSync(p, Buffer.alloc(1 << 20));
  return p;
}

/** `PROBE virtio-blk-id disk=N ... serial="X"` lines as disk -> serial. */
function diskSerials(stdout: string): Record<string, string> {
  return Object.fromEntries([...stdout.matchAll(/PROBE virtio-blk-id disk=(\d+) .*serial="([^"]*)"/g)].map((m) => [m[1]!, m[2]!]));
}

beforeAll(() => {
  warnNoKvm();
  probe = ensureProbe();
});

describe('kvmkit run --help', () => {
  it('lists every --block key with its default, as crosvm does, and the other options', () => {
    const r = kvmkit(['run', '--help']);
    expect(r.status).toBe(0);
    for (const line of [
      'path=PATH - Path to the disk image. Can be specified',
      'ro=BOOL - Whether the block should be read-only.',
      'root=BOOL - Whether the block device should be mounted',
      'sparse=BOOL - Indicates whether the disk should support',
      'the discard operation. (default: true)',
      'block-size=BYTES - Set the reported block size of the',
      'disk (alias block_size). (default: 512)',
      'id=STRING - Set the block device identifier to an ASCII',
      'string, up to 20 characters. (default: no ID)',
      'direct=BOOL - Use O_DIRECT mode to bypass page cache',
      '(alias o_direct). (default: false)',
      'cache=(never, auto, always)',
      'type=(stdout, file, sink)',
    ]) {
      expect(r.stdout, line).toContain(line);
    }
    for (const flag of ['-c, --cpus <N>', '-m, --mem <N>', '-b, --block', '-i, --initrd <PATH>', '-p, --params <PARAMS>', '-s, --socket <PATH>', '--serial', '--shared-dir', '--cfg <CONFIG_FILE>', '--kernel <PATH>']) {
      expect(r.stdout, flag).toContain(flag);
    }
    expect(r.stdout).toMatch(/\(default:\s+1\)/);
    expect(r.stdout).toMatch(/\(default:\s+256\)/);
    expect(r.stdout).toContain('Exit code: 0 after guest poweroff');
  });

  it('every subcommand has its own help', () => {
    for (const cmd of [['stop'], ['suspend'], ['resume'], ['status'], ['balloon'], ['balloon_stats'], ['disk', 'resize']]) {
      const r = kvmkit([...cmd, '--help']);
      expect(r.status, cmd.join(' ')).toBe(0);
      expect(r.stdout, cmd.join(' ')).toContain('VM_SOCKET');
    }
  });
});

describe.skipIf(!HAS_KVM)('kvmkit run with --cfg files (crosvm\'s documented merge rules)', () => {
  it('vm.json + --block home.img gives two disks, root first, and --kernel on the command line wins', () => {
    image('root.img');
    image('home.img');
    writeFileSync(join(dir, 'vm.json'), JSON.stringify({
      kernel: '/nonexistent/bzImage',
      mem: { size: 128 },
      block: [{ path: 'root.img', root: true, id: 'ROOT' }],
      params: ['probe.ring=3', 'probe.test=blk', 'probe.blk.bad=0', 'from=file'],
    }));
    const r = kvmkit(['run', '--cfg', 'vm.json', '--block', 'home.img,id=HOME,ro', '--kernel', probe, '-p', 'from=cli']);
    expect(r.stderr).toContain('guest ended: poweroff');
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('PROBE virtio-blk-count=2');
    expect(diskSerials(r.stdout)).toEqual({ 0: 'ROOT', 1: 'HOME' });
    expect(r.stdout).toMatch(/PROBE virtio-blk-config disk=1 .* ro=1 /);
    // the root disk's root=/dev/vda, then the file's params, then the command line's
    expect(r.stdout).toMatch(/PROBE cmdline=".* root=\/dev\/vda rw probe\.ring=3 probe\.test=blk probe\.blk\.bad=0 from=file from=cli"/);
    // the file's 128 MiB (less the legacy hole below 1 MiB), not the default 256
    const ram = Number(/PROBE e820_count=\d+ ram_bytes=(\d+)/.exec(r.stdout)?.[1]);
    expect(ram).toBeGreaterThan(127 * 2 ** 20);
    expect(ram).toBeLessThanOrEqual(128 * 2 ** 20);
  });

  it('command-line options override the files wherever they stand; later files override earlier ones', () => {
    writeFileSync(join(dir, 'a.json'), JSON.stringify({ kernel: probe, cpus: 1, params: ['probe.ring=3', 'a=1'] }));
    writeFileSync(join(dir, 'b.json'), JSON.stringify({ cpus: { 'num-cores': 3 }, params: 'b=2' }));
    const r = kvmkit(['run', '-c', '2', '--cfg', 'a.json', '--cfg', 'b.json']);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('PROBE cpus_online=2');
    expect(r.stdout).toMatch(/PROBE cmdline=".* a=1 b=2"/);
    const files = kvmkit(['run', '--cfg', 'a.json', '--cfg', 'b.json']);
    expect(files.stdout).toContain('PROBE cpus_online=3');
  });

  it('cfg includes inside a file, with the including file winning', () => {
    writeFileSync(join(dir, 'base.json'), JSON.stringify({ kernel: probe, cpus: 3, params: ['probe.ring=3'] }));
    writeFileSync(join(dir, 'top.json'), JSON.stringify({ cpus: 2, cfg: ['base.json'] }));
    const r = kvmkit(['run', '--cfg', 'top.json']);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('PROBE cpus_online=2');
  });

  it('a bad config file exits 1 with the file, key and rule, before anything starts', () => {
    writeFileSync(join(dir, 'bad.json'), JSON.stringify({ kernel: probe, mem: 'x' }));
    const r = kvmkit(['run', '--cfg', 'bad.json']);
    expect(r.status).toBe(1);
    expect(r.stderr).toBe('kvmkit: bad.json: mem must be an integer number of MiB from 16 to 1048576, got "x"\n');
    expect(r.stdout).toBe('');
    writeFileSync(join(dir, 'loop.json'), JSON.stringify({ cfg: ['loop.json'] }));
    expect(kvmkit(['run', '--cfg', 'loop.json']).stderr).toMatch(/^kvmkit: loop\.json \(included from loop\.json\): cfg includes form a cycle/);
    expect(kvmkit(['run', '--cfg', 'absent.json', probe]).stderr).toBe(`kvmkit: absent.json: does not exist (${join(dir, 'absent.json')})\n`);
    const noKernel = kvmkit(['run', '-c', '2']);
    expect(noKernel.status).toBe(1);
    expect(noKernel.stderr).toContain('kernel is required: give KERNEL on the command line, --kernel, or "kernel" in a --cfg file');
  });
});

describe.skipIf(!HAS_KVM)('kvmkit run options', () => {
  it('bad option values exit 1 naming the option and the rule', () => {
    const cases: [string[], string][] = [
      [['-b', 'd.img,ro=yes'], 'ro must be true or false, got "yes"'],
      [['-b', 'd.img,colour=red'], 'colour is not a --block option'],
      [['-m', 'size=8'], 'mem must be an integer number of MiB from 16 to 1048576, got 8'],
      [['-c', 'num-cores=x'], 'cpus must be an integer from 1 to 254, got "x"'],
      [['--serial', 'type=tty'], 'type must be stdout, file or sink, got "tty"'],
      [['--shared-dir', '/srv:tag'], 'type is required: add :type=fs'],
      [['--shared-dir', `${join(dir, 'no-such-dir')}:tag:type=fs`], 'no-such-dir'],
      [['-b', join(dir, 'missing.img')], 'missing.img'],
      [['-b', join(dir, 'missing.img'), '-p', 'x'], 'missing.img'],
      [['--kernel', '/other/bzImage'], 'kernel is given twice: as KERNEL'],
    ];
    for (const [args, message] of cases) {
      const r = kvmkit(['run', ...args, probe]);
      expect(r.status, args.join(' ')).toBe(1);
      expect(r.stderr, args.join(' ')).toContain(message);
    }
  });

  it('--serial type=file writes the console to a file, sink drops it, a bare --serial before KERNEL is the switch', () => {
    const log = join(dir, 'console.log');
    const toFile = kvmkit(['run', '--serial', `type=file,path=${log}`, ...PROBE_FAST, probe]);
    expect(toFile.status).toBe(0);
    expect(toFile.stdout).not.toContain('PROBE');
    expect(readFileSync(log, 'utf8')).toContain('PROBE poweroff');
    const sink = kvmkit(['run', '--serial', 'sink', ...PROBE_FAST, probe]);
    expect([sink.status, sink.stdout]).toEqual([0, '']);
    const bare = kvmkit(['run', '--serial', probe, ...PROBE_FAST]);
    expect(bare.status).toBe(0);
    expect(bare.stdout).toContain('PROBE poweroff');
  });

  it('a virtio-balloon device is there by default, as in crosvm; --no-balloon and "no-balloon" leave it out', () => {
    const dflt = kvmkit(['run', ...PROBE_FAST, probe]);
    expect(dflt.stdout).toContain('PROBE pci dev=00:01.0 id=1af4:1045'); // virtio 1.2 §4.1.2: 0x1040 + 5 (balloon)
    const none = kvmkit(['run', '--no-balloon', ...PROBE_FAST, probe]);
    expect(none.stdout).toContain('PROBE pci_count=0');
    writeFileSync(join(dir, 'nob.json'), JSON.stringify({ 'no-balloon': true }));
    expect(kvmkit(['run', '--cfg', 'nob.json', ...PROBE_FAST, probe]).stdout).toContain('PROBE pci_count=0');
  });

  it('--shared-dir and "shared-dir" give the guest virtio-fs shares with the options given', () => {
    const share = mkdtempSync(join(dir, 'share-'));
    writeFileSync(join(share, 'hello.txt'), 'hello\n');
    const r = kvmkit(['run', '--shared-dir', `${share}:myshare:type=fs:timeout=7`, ...PROBE_FAST, '-p', 'probe.test=fs', probe]);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/PROBE virtio-fs index=0 init=ok .* tag="myshare"/);
    expect(r.stdout).toMatch(/PROBE fs case=getattr-root op=GETATTR err=0 .* attr_valid=7\.000000000/);
    expect(r.stdout).toMatch(/PROBE fs case=read-file op=READ err=0 errno=0 bytes=6 /);
    writeFileSync(join(dir, 'fs.json'), JSON.stringify({ 'shared-dir': [`${share}:fromfile:type=fs:cache=always`] }));
    const f = kvmkit(['run', '--cfg', 'fs.json', ...PROBE_FAST, '-p', 'probe.test=fs', probe]);
    expect(f.stdout).toMatch(/PROBE virtio-fs index=0 init=ok .* tag="fromfile"/);
    expect(f.stdout).toMatch(/PROBE fs case=open-file op=OPEN err=0 errno=0 fh=\d+ open_flags=0x2/); // FOPEN_KEEP_CACHE (fuse.h) with cache=always
  });

  it('Ctrl-C (SIGINT) stops the guest cleanly and exits 0', async () => {
    const child = spawn(process.execPath, [CLI, 'run', ...PROBE_FAST, '-p', 'probe.cmd=echo', probe], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const code = await new Promise<number | null>((resolve) => {
      const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
      child.stdout.on('data', (d: Buffer) => {
        const before = out;
        out += d.toString();
        if (!before.includes('PROBE echo_ready') && out.includes('PROBE echo_ready')) child.kill('SIGINT');
      });
      child.on('exit', (c) => {
        clearTimeout(timer);
        resolve(c);
      });
    });
    expect(err).toContain('guest ended: stopped');
    expect(code).toBe(0);
  });
});
