/**
 * Host side of the probe's virtio-fs tests (probe.test=fs / fsbench, README.md "virtio-fs"):
 * the shared directory the probe expects, and Debian's virtiofsd (the C one shipped in QEMU 7.2's
 * qemu-system-common at /usr/lib/qemu/virtiofsd) behind QEMU's vhost-user-fs-pci.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, symlinkSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { fnv1a64 } from './parse';

/** Where virtiofsd is looked for: $KVMKIT_VIRTIOFSD, then Debian's two locations. */
export const VIRTIOFSD_CANDIDATES = [
  process.env.KVMKIT_VIRTIOFSD,
  '/usr/lib/qemu/virtiofsd', // qemu-system-common (Debian 12, QEMU 7.2: the C virtiofsd)
  '/usr/libexec/virtiofsd', // package virtiofsd (Debian 13: the Rust one)
].filter((p): p is string => typeof p === 'string' && p.length > 0);

/** The virtiofsd binary, or null if none is installed. */
export function findVirtiofsd(): string | null {
  return VIRTIOFSD_CANDIDATES.find((p) => existsSync(p)) ?? null;
}

/** What prepareShare() built: paths and the facts the probe's answers are checked against. */
export interface FsShare {
  /** The directory containing the share and the secrets outside it. */
  base: string;
  /** The shared directory (virtiofsd `-o source=`, kvmkit `sharedDir`). */
  sharedDir: string;
  /** A file outside the share that must never be read through it. */
  secretPath: string;
  secretFnv: string;
  /** hello.txt: size and FNV-1a 64 of its content. */
  helloSize: number;
  helloFnv: string;
  /** FNV-1a 64 of sparse.bin as a whole (holes read as zeroes). */
  sparseFnv: string;
}

/** Size of hello.txt: not a multiple of 4096 or 65536, so the last READ is short. */
export const HELLO_SIZE = 100_000;
/** sparse.bin: data in [0, 64 KiB) and [1 MiB, 1 MiB + 64 KiB), a hole between. */
export const SPARSE_CHUNK = 65536;
export const SPARSE_SECOND = 1 << 20;

/**
 * Build the layout the probe's `fs` test expects under `base`:
 *
 *     base/secret.txt, base/outside/secret2.txt      (outside the share)
 *     base/share/hello.txt        100,000 random bytes
 *     base/share/todelete.txt, nolookup.txt, rename-src.txt, exch-a.txt ("AAAA"), exch-b.txt ("BBBBBB")
 *     base/share/sparse.bin       64 KiB data, hole to 1 MiB, 64 KiB data
 *     base/share/dir/a.txt, dir/b.txt, dir/sub/
 *     base/share/escape -> base/secret.txt, escape-rel -> ../secret.txt, escape-dir -> base/outside
 */
export function prepareShare(base: string): FsShare {
  const sharedDir = join(base, 'share');
  mkdirSync(join(sharedDir, 'dir', 'sub'), { recursive: true });
  mkdirSync(join(base, 'outside'), { recursive: true });
  const secret = Buffer.from(`kvmkit-secret-${randomBytes(16).toString('hex')}\n`);
  const secretPath = join(base, 'secret.txt');
  writeFileSync(secretPath, secret);
  writeFileSync(join(base, 'outside', 'secret2.txt'), secret);
  const hello = randomBytes(HELLO_SIZE);
  writeFileSync(join(sharedDir, 'hello.txt'), hello);
  writeFileSync(join(sharedDir, 'todelete.txt'), 'delete me\n');
  writeFileSync(join(sharedDir, 'nolookup.txt'), 'unlinked without a LOOKUP first\n');
  writeFileSync(join(sharedDir, 'rename-src.txt'), 'rename source\n');
  writeFileSync(join(sharedDir, 'exch-a.txt'), 'AAAA');
  writeFileSync(join(sharedDir, 'exch-b.txt'), 'BBBBBB');
  writeFileSync(join(sharedDir, 'dir', 'a.txt'), 'a');
  writeFileSync(join(sharedDir, 'dir', 'b.txt'), 'bb');
  const fd = openSync(join(sharedDir, 'sparse.bin'), 'w');
  try {
    writeSync(fd, randomBytes(SPARSE_CHUNK), 0, SPARSE_CHUNK, 0);
    writeSync(fd, randomBytes(SPARSE_CHUNK), 0, SPARSE_CHUNK, SPARSE_SECOND);
  } finally {
    closeSync(fd);
  }
  symlinkSync(secretPath, join(sharedDir, 'escape'));
  symlinkSync('../secret.txt', join(sharedDir, 'escape-rel'));
  symlinkSync(join(base, 'outside'), join(sharedDir, 'escape-dir'));
  const sparseFnv = fnv1a64(readFileSync(join(sharedDir, 'sparse.bin')));
  return { base, sharedDir, secretPath, secretFnv: fnv1a64(secret), helloSize: HELLO_SIZE, helloFnv: fnv1a64(hello), sparseFnv };
}

export interface VirtiofsdOptions {
  binary: string;
  socketPath: string;
  sharedDir: string;
  /** `-o cache=` (default auto). */
  cache?: 'auto' | 'always' | 'none';
  /** Extra `-o` options, e.g. 'xattr'. */
  options?: string[];
}

export interface Virtiofsd {
  child: ChildProcess;
  /** Everything virtiofsd wrote (it logs to stderr). */
  log(): string;
  /** Resolves with the exit code once it ended (it exits when QEMU disconnects). */
  exited: Promise<number | null>;
  /** SIGTERM (then SIGKILL after 2 s) if still running. */
  stop(): Promise<void>;
}

/**
 * Start virtiofsd on a vhost-user socket and wait until the socket exists (it then waits for
 * QEMU's connection and serves one VM). The C virtiofsd sandboxes itself in new namespaces
 * (`-o sandbox=namespace`, the default), which needs root, as the tests here run.
 */
export async function startVirtiofsd(o: VirtiofsdOptions): Promise<Virtiofsd> {
  const args = [`--socket-path=${o.socketPath}`, '-o', `source=${o.sharedDir}`, '-o', `cache=${o.cache ?? 'auto'}`];
  for (const opt of o.options ?? []) args.push('-o', opt);
  const child = spawn(o.binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stdout!.on('data', (c: Buffer) => (log += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (log += c.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  let ended = false;
  void exited.then(() => (ended = true));
  const deadline = Date.now() + 10_000;
  while (!existsSync(o.socketPath)) {
    if (ended || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`virtiofsd did not create ${o.socketPath} (${[o.binary, ...args].join(' ')}):\n${log}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return {
    child,
    log: () => log,
    exited,
    async stop() {
      if (ended) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 2000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/**
 * QEMU arguments for a vhost-user-fs-pci device on `socketPath`. vhost-user needs the guest RAM
 * in shared memory: a memfd backend of the VM's size, share=on, as the machine's memory.
 */
export function qemuVirtiofsArgs(socketPath: string, tag: string, memMiB: number): string[] {
  return [
    '-chardev', `socket,id=vfs0,path=${socketPath}`,
    '-device', `vhost-user-fs-pci,chardev=vfs0,tag=${tag}`,
    '-object', `memory-backend-memfd,id=mem,size=${memMiB}M,share=on`,
    '-numa', 'node,memdev=mem',
  ];
}
