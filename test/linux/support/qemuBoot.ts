/**
 * Boots a check under QEMU's software emulation (TCG) with QEMU's own virtio devices: the
 * reference run that proves a check's script and assertions, in `npm test` on every host.
 * Devices: virtio-blk-pci (-drive), virtio-rng-pci, virtconsole on virtio-serial-pci (a socket
 * chardev), virtio-balloon-pci, vhost-user-fs-pci with Debian's virtiofsd (guest RAM on a shared
 * memfd, as vhost-user needs). Run-time control goes through QMP.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createConnection, type Socket } from 'node:net';
import { join } from 'node:path';
import { assertCmdlineFits, checkParams, FIXTURE_MISSING, INITRD, KERNEL, rootParams } from './fixture';
import { Qmp } from './qmp';
import { StashedAllowlist } from './stashedAllowlist';
import { consoleLines, StepRunner, type DeviceSpec, type HostControl, type LinuxCheck, type TwinRun } from './spec';

export const QEMU = 'qemu-system-x86_64';
/** Debian's C virtiofsd (package qemu-system-common, QEMU 7.2). */
export const VIRTIOFSD = '/usr/lib/qemu/virtiofsd';

const hasQemu = spawnSync(QEMU, ['--version']).status === 0;

/** Why the QEMU twin cannot run here, or ''. */
export function qemuSkipReason(kinds: readonly DeviceSpec['kind'][]): string {
  if (FIXTURE_MISSING) return FIXTURE_MISSING;
  if (!hasQemu) return `${QEMU} is not installed (apt-get install -y qemu-system-x86)`;
  if (kinds.includes('fs')) {
    if (!existsSync(VIRTIOFSD)) return `${VIRTIOFSD} is missing (apt-get install -y qemu-system-common)`;
    if (process.getuid?.() !== 0) return `${VIRTIOFSD} needs root (it sandboxes itself in namespaces)`;
  }
  return '';
}

async function waitForPath(path: string, what: string, ms = 10_000): Promise<void> {
  const until = Date.now() + ms;
  while (!existsSync(path)) {
    if (Date.now() > until) throw new Error(`${what} did not create ${path} within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function connectUnix(path: string, ms = 10_000): Promise<Socket> {
  const until = Date.now() + ms;
  for (;;) {
    try {
      return await new Promise<Socket>((resolve, reject) => {
        const s = createConnection(path, () => resolve(s));
        s.once('error', reject);
      });
    } catch (e) {
      if (Date.now() > until) throw new Error(`cannot connect to ${path}: ${(e as Error).message}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

const VIRTIOFSD_CACHE = { never: 'none', auto: 'auto', always: 'always' } as const;

/**
 * Boots `check` under QEMU TCG; `dir` holds the sockets. Resolves when QEMU exits (or is killed
 * at `timeoutMs`, then `poweredOff` is false).
 */
export async function bootQemu(check: LinuxCheck, dir: string, timeoutMs: number): Promise<TwinRun> {
  const mem = check.mem ?? 512;
  const helpers: ChildProcess[] = [];
  const helperLogs: string[] = [];
  const args = ['-M', 'pc', '-accel', 'tcg', '-m', String(mem), '-smp', String(check.cpus ?? 2), '-nographic', '-no-reboot', '-nic', 'none'];
  const qmpPath = join(dir, 'qmp.sock');
  args.push('-qmp', `unix:${qmpPath},server=on,wait=off`);
  if (check.devices.some((d) => d.kind === 'fs')) {
    args.push('-object', `memory-backend-memfd,id=mem,size=${mem}M,share=on`, '-numa', 'node,memdev=mem');
  }
  let consolePath: string | undefined;
  let disk = 0;
  const shares: (StashedAllowlist | undefined)[] = [];
  try {
    for (const [i, d] of check.devices.entries()) {
      switch (d.kind) {
        case 'blk': {
          const sparse = d.sparse ?? true;
          args.push('-drive', `file=${d.path},if=none,id=d${disk},format=raw,discard=${sparse ? 'unmap' : 'ignore'}${d.ro ? ',readonly=on' : ''}${d.directIo ? ',cache.direct=on' : ''}`);
          const bs = d.blockSize ? `,logical_block_size=${d.blockSize},physical_block_size=${d.blockSize}` : '';
          args.push('-device', `virtio-blk-pci,drive=d${disk},discard=${sparse ? 'on' : 'off'}${d.id ? `,serial=${d.id}` : ''}${bs}`);
          disk++;
          break;
        }
        case 'rng':
          args.push('-device', 'virtio-rng-pci');
          break;
        case 'balloon':
          args.push('-device', `virtio-balloon-pci,id=balloon0,deflate-on-oom=${d.deflateOnOom ?? true ? 'on' : 'off'}`);
          break;
        case 'console':
          if (consolePath) throw new Error('the QEMU twin supports one virtio console');
          consolePath = join(dir, 'hvc0.sock');
          // wait=on: QEMU waits for us before it starts, so no hvc0 output is lost.
          args.push('-device', 'virtio-serial-pci', '-chardev', `socket,id=hvc0,path=${consolePath},server=on,wait=on`, '-device', 'virtconsole,chardev=hvc0');
          break;
        case 'fs': {
          const sock = join(dir, `vfs${i}.sock`);
          const fsd = spawn(VIRTIOFSD, [`--socket-path=${sock}`, '-o', `source=${d.sharedDir}`, '-o', `cache=${VIRTIOFSD_CACHE[d.cache ?? 'auto']}`, '-o', 'xattr'], { stdio: ['ignore', 'ignore', 'pipe'] });
          helpers.push(fsd);
          fsd.stderr!.on('data', (b: Buffer) => helperLogs.push(`virtiofsd ${d.tag}: ${b.toString().trim()}`));
          await waitForPath(sock, `virtiofsd for ${d.tag}`);
          shares.push(d.allowedPaths ? new StashedAllowlist(d.sharedDir, join(dir, `stash${i}`), d.allowedPaths) : undefined);
          args.push('-chardev', `socket,id=vfs${i},path=${sock}`, '-device', `vhost-user-fs-pci,chardev=vfs${i},tag=${d.tag}`);
          break;
        }
      }
    }
    const cmdline = ['console=ttyS0', 'panic=-1', 'quiet', ...rootParams(check.devices), ...checkParams(check)].join(' ');
    assertCmdlineFits(cmdline);
    args.push('-kernel', KERNEL, '-initrd', INITRD, '-append', cmdline);

    const t0 = performance.now();
    const child = spawn(QEMU, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    helpers.push(child); // killed in `finally` if anything below throws while it runs
    let output = '';
    let hvc = '';
    let hvcSocket: Socket | undefined;
    let qmp: Promise<Qmp> | undefined;
    const ctl: HostControl = {
      async resizeDisk(index, bytes) {
        qmp ??= Qmp.connect(qmpPath);
        await (await qmp).execute('block_resize', { device: `d${index}`, size: bytes });
      },
      async balloon(bytes) {
        qmp ??= Qmp.connect(qmpPath);
        await (await qmp).execute('balloon', { value: mem * 1024 * 1024 - bytes });
      },
      async allowPaths(i, paths) {
        const a = shares[i];
        if (!a) throw new Error(`virtio-fs device ${i} has no allowlist`);
        a.allow(paths);
      },
      async revokePaths(i, paths) {
        const a = shares[i];
        if (!a) throw new Error(`virtio-fs device ${i} has no allowlist`);
        a.revoke(paths);
      },
      async writeConsole(text) {
        if (!hvcSocket) throw new Error('this check has no virtio console');
        hvcSocket.write(text);
      },
      consoleOutput: () => hvc,
    };
    const steps = new StepRunner(check.steps, ctl, (text) => child.stdin.write(text));
    if (consolePath) {
      hvcSocket = await connectUnix(consolePath);
      hvcSocket.on('data', (b: Buffer) => (hvc += b.toString('utf8')));
    }
    let killed = false;
    const code = await new Promise<number | null>((resolve, reject) => {
      const timer = setTimeout(() => {
        killed = true;
        child.kill('SIGKILL');
      }, timeoutMs);
      const onData = (b: Buffer): void => {
        output += b.toString('utf8');
        steps.onOutput(output);
      };
      child.stdout.on('data', onData);
      child.stderr.on('data', (b: Buffer) => helperLogs.push(`qemu: ${b.toString().trim()}`));
      child.on('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
      child.on('close', (c) => {
        clearTimeout(timer);
        resolve(c);
      });
    });
    await steps.idle();
    if (qmp) (await qmp.catch(() => undefined))?.close();
    hvcSocket?.destroy();
    const lines = consoleLines(output);
    const exit = lines.map((l) => /^KVMKIT-EXIT status=(\d+)$/.exec(l)).find(Boolean);
    if (helperLogs.length) output += `\n[host] ${helperLogs.join('\n[host] ')}\n`;
    return {
      vmm: 'qemu', cmdline, lines, output, console: hvc, exitStatus: exit ? Number(exit[1]) : undefined,
      poweredOff: !killed && code === 0 && /reboot: Power down/.test(output),
      ms: performance.now() - t0, stepErrors: steps.errors, stepsRun: steps.ran,
    };
  } finally {
    for (const h of helpers) if (h.exitCode === null && h.signalCode === null) h.kill('SIGKILL');
    for (const a of shares) a?.restore();
  }
}
