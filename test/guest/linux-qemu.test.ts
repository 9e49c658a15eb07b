// Boots the Linux fixture (scripts/linux-fixture.mjs) under QEMU's software emulation (TCG): proof
// that the kernel, the initramfs written by our CpioWriter, the module list and the /init protocol
// work, with devices we did not write. The same files later boot on kvmkit.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const fixtureDir = join(__dirname, '..', 'fixtures', 'linux');
const vmlinuz = join(fixtureDir, 'vmlinuz');
const initramfs = join(fixtureDir, 'initramfs.cpio.gz');
const QEMU = 'qemu-system-x86_64';
const VIRTIOFSD = '/usr/lib/qemu/virtiofsd';

const hasQemu = spawnSync(QEMU, ['--version']).status === 0;
const hasFixture = existsSync(vmlinuz) && existsSync(initramfs);
const skipReason = !hasFixture
  ? `the Linux fixture is missing (${fixtureDir}); make it with \`npm run build && node scripts/linux-fixture.mjs\``
  : !hasQemu ? `${QEMU} is not installed (apt-get install -y qemu-system-x86)` : '';
if (skipReason) console.warn(`\n*** test/guest/linux-qemu.test.ts SKIPPED: ${skipReason} ***\n`);
const hasMkfs = spawnSync('mkfs.ext4', ['-V']).status === 0;
const hasVirtiofsd = existsSync(VIRTIOFSD) && process.getuid?.() === 0;

const tmpDirs: string[] = [];
const children: ChildProcess[] = [];
afterAll(() => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  for (const d of tmpDirs) rmSync(d, { recursive: true, force: true });
});

function runArg(script: string): string {
  return `kvmkit.run=${Buffer.from(script, 'utf8').toString('base64')}`;
}

interface Boot {
  code: number | null;
  output: string;
  lines: string[];
  ms: number;
}

/**
 * Boots the fixture under TCG. `quiet` keeps kernel messages from splitting the script's output
 * lines; errors still reach the console. `onOutput` may type into the console.
 */
function boot(opts: {
  append: string;
  args?: string[];
  cpus?: number;
  memMiB?: number;
  timeoutMs?: number;
  onOutput?: (all: string, stdin: NodeJS.WritableStream) => void;
}): Promise<Boot> {
  const args = [
    '-M', 'pc', '-accel', 'tcg', '-m', String(opts.memMiB ?? 512), '-smp', String(opts.cpus ?? 2),
    '-kernel', vmlinuz, '-initrd', initramfs, '-append', `console=ttyS0 panic=-1 quiet ${opts.append}`,
    '-nographic', '-no-reboot', ...(opts.args ?? []),
  ];
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(QEMU, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    children.push(child);
    let output = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`QEMU did not finish within ${opts.timeoutMs ?? 90_000} ms; console so far:\n${output}`));
    }, opts.timeoutMs ?? 90_000);
    const onData = (d: Buffer) => {
      output += d.toString('utf8');
      opts.onOutput?.(output, child.stdin);
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      // Drop terminal escapes (SeaBIOS clears the screen) so markers compare as whole lines.
      // eslint-disable-next-line no-control-regex
      const lines = output.replace(/\x1b(\[[0-9;?]*[A-Za-z]|.)/g, '').split(/\r?\n/).map((l) => l.replace(/\r/g, ''));
      resolve({ code, output, lines, ms: performance.now() - t0 });
    });
  });
}

/** Fails with the whole console when the boot did not follow the kvmkit protocol. */
function expectProtocol(b: Boot, status = 0): void {
  const ctx = `console:\n${b.output}`;
  expect(b.lines, ctx).toContain('KVMKIT-READY');
  expect(b.lines, ctx).toContain(`KVMKIT-EXIT status=${status}`);
  expect(b.output, ctx).not.toMatch(/KVMKIT-MODULE-FAILED|Kernel panic|Call Trace/);
  expect(b.code, ctx).toBe(0);
}

describe.skipIf(skipReason !== '')('Linux fixture under QEMU TCG', () => {
  it('boots, loads the modules, runs kvmkit.run and powers off', async () => {
    const b = await boot({ append: runArg('nproc; grep MemTotal /proc/meminfo') });
    console.log(`TCG boot to poweroff: ${(b.ms / 1000).toFixed(2)} s (2 vCPUs, 512 MiB)`);
    expectProtocol(b);
    const ready = b.lines.indexOf('KVMKIT-READY');
    const after = b.lines.slice(ready);
    expect(after, b.output).toContain('2');
    const mem = after.map((l) => /^MemTotal:\s+(\d+) kB$/.exec(l)).find(Boolean);
    expect(mem, b.output).toBeTruthy();
    const kib = Number(mem![1]);
    expect(kib).toBeGreaterThan(0.85 * 512 * 1024); // the kernel keeps some for itself
    expect(kib).toBeLessThanOrEqual(512 * 1024);
    expect(b.output).toMatch(/reboot: Power down/);
  });

  it('binds every virtio driver: blk (ext4), rng, balloon, console, and virtiofs', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kvmkit-linux-qemu-'));
    tmpDirs.push(dir);
    const args = ['-device', 'virtio-rng-pci', '-device', 'virtio-balloon-pci',
      '-device', 'virtio-serial-pci', '-chardev', 'null,id=vc0', '-device', 'virtconsole,chardev=vc0'];
    const checks = [
      'ls /sys/bus/virtio/drivers',
      'for d in /sys/bus/virtio/devices/*; do echo "BOUND $(basename $(readlink $d/driver))"; done',
      'echo "RNG $(cat /sys/class/misc/hw_random/rng_current)"',
      'echo "RNGBYTES $(dd if=/dev/hwrng bs=16 count=1 2>/dev/null | wc -c)"',
      'ls /dev/hvc0 >/dev/null && echo HVC0',
    ];
    if (hasMkfs) {
      mkdirSync(join(dir, 'disk'));
      writeFileSync(join(dir, 'disk', 'hello.txt'), 'hello from ext4\n');
      const mk = spawnSync('mkfs.ext4', ['-q', '-F', '-d', join(dir, 'disk'), join(dir, 'disk.img'), '16M']);
      expect(mk.status, mk.stderr?.toString()).toBe(0);
      args.push('-drive', `file=${join(dir, 'disk.img')},if=none,id=d0,format=raw`, '-device', 'virtio-blk-pci,drive=d0,serial=KVMKIT1');
      checks.push('echo "SERIAL $(cat /sys/block/vda/serial)"', 'mount -t ext4 /dev/vda /mnt && echo "EXT4 $(cat /mnt/hello.txt)"');
    } else {
      console.warn('linux-qemu: mkfs.ext4 missing (apt-get install -y e2fsprogs): the virtio-blk/ext4 check is skipped');
    }
    let virtiofsd: ChildProcess | undefined;
    if (hasVirtiofsd) {
      mkdirSync(join(dir, 'share'));
      writeFileSync(join(dir, 'share', 'file.txt'), 'hello from virtiofs\n');
      const sock = join(dir, 'vfs.sock');
      virtiofsd = spawn(VIRTIOFSD, [`--socket-path=${sock}`, '-o', `source=${join(dir, 'share')}`, '-o', 'cache=none', '-f'], { stdio: 'ignore' });
      children.push(virtiofsd);
      for (let i = 0; i < 100 && !existsSync(sock); i++) await new Promise((r) => setTimeout(r, 50));
      expect(existsSync(sock), 'virtiofsd did not create its socket').toBe(true);
      // vhost-user needs guest RAM the back-end can map: a shared memfd.
      args.push('-object', 'memory-backend-memfd,id=mem,size=512M,share=on', '-numa', 'node,memdev=mem',
        '-chardev', `socket,id=vfs,path=${sock}`, '-device', 'vhost-user-fs-pci,chardev=vfs,tag=kvmkitfs');
      checks.push('mkdir -p /share && mount -t virtiofs kvmkitfs /share && echo "VIRTIOFS $(cat /share/file.txt)"');
    } else {
      console.warn(`linux-qemu: ${VIRTIOFSD} missing or not root: the virtiofs mount check is skipped (the driver must still register)`);
    }
    const b = await boot({ append: runArg(checks.join('\n')), args });
    virtiofsd?.kill();
    expectProtocol(b);
    const drivers = b.lines.slice(b.lines.indexOf('KVMKIT-READY')).join(' ').split(/\s+/);
    for (const d of ['virtio_blk', 'virtio_rng', 'virtio_balloon', 'virtio_console', 'virtiofs']) expect(drivers, b.output).toContain(d);
    const bound = b.lines.filter((l) => l.startsWith('BOUND ')).map((l) => l.slice(6)).sort();
    const expected = ['virtio_balloon', 'virtio_console', 'virtio_rng', ...(hasMkfs ? ['virtio_blk'] : []), ...(hasVirtiofsd ? ['virtiofs'] : [])].sort();
    expect(bound, b.output).toEqual(expected);
    expect(b.lines, b.output).toContain('RNG virtio_rng.0');
    expect(b.lines, b.output).toContain('RNGBYTES 16');
    expect(b.lines, b.output).toContain('HVC0');
    if (hasMkfs) {
      expect(b.lines, b.output).toContain('SERIAL KVMKIT1');
      expect(b.lines, b.output).toContain('EXT4 hello from ext4');
    }
    if (hasVirtiofsd) expect(b.lines, b.output).toContain('VIRTIOFS hello from virtiofs');
  });

  it('reports the script exit status and honours kvmkit.after=reboot', async () => {
    const b = await boot({ append: `${runArg('echo about to fail; exit 7')} kvmkit.after=reboot`, cpus: 1 });
    expectProtocol(b, 7);
    expect(b.lines).toContain('about to fail');
    expect(b.output).toMatch(/reboot: Restarting system/);
    expect(b.output).not.toMatch(/reboot: Power down/);
  });

  it('reboots instead of halting when there is no ACPI to power off with', async () => {
    const b = await boot({ append: `acpi=off reboot=k ${runArg('true')}`, cpus: 1 });
    expectProtocol(b);
    expect(b.lines).toContain('kvmkit: no ACPI, so no power-off: rebooting instead');
    expect(b.output).toMatch(/reboot: Restarting system/);
  });

  it('without kvmkit.run, gives an interactive shell on the console; leaving it powers off', async () => {
    let typed = 0;
    const b = await boot({
      append: '',
      cpus: 1,
      onOutput: (all, stdin) => {
        if (typed === 0 && all.includes('starting a shell')) {
          typed = 1;
          setTimeout(() => stdin.write('echo "typed-$((6 * 7))"\n'), 300);
        } else if (typed === 1 && /^typed-42\r?$/m.test(all)) {
          typed = 2;
          stdin.write('exit\n');
        }
      },
    });
    expect(b.lines, b.output).toContain('KVMKIT-READY');
    expect(b.lines, b.output).toContain('typed-42');
    expect(b.output).toMatch(/reboot: Power down/);
    expect(b.code).toBe(0);
  });
});
