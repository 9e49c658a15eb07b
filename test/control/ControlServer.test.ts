/**
 * The control server against a fake VM (no KVM): every command, junk lines, ordering, the socket
 * file's mode, name and lifetime, stale and live sockets.
 */
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { execFileSync, spawnSync } from 'node:child_process';
import { ROOT } from '../helpers/env';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, VmStateError } from '../../src/errors';
import { ControlClient, ControlConnectionError, ControlRequestError } from '../../src/control/ControlClient';
import { ControlServer } from '../../src/control/ControlServer';
import { parseRequest } from '../../src/control/protocol';
import type { ControlTarget } from '../../src/control/ControlTarget';
import { resolveSocketPath } from '../../src/control/socketPath';
import type { VmStatus } from '../../src/vm/status';

let dir = '';
const servers: ControlServer[] = [];
const clients: ControlClient[] = [];

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'kvmkit-ctl-'));
});
afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await Promise.all(servers.splice(0).map((s) => s.close()));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A fake VM that records what was asked. */
class FakeVm implements ControlTarget {
  state = 'running';
  calls: string[] = [];
  /** Called when stop() begins (a VM closes its control server there). */
  onStop?: () => void;
  status(): VmStatus {
    return { state: this.state, cpus: 2, mem: 256, uptimeMs: 5, devices: [{ kind: 'virtio-blk', pci: '00:01.0', disk: 0, path: '/d.img', bytes: 4096, capacity: 8, blockSize: 512, readOnly: false }] };
  }
  async pause(): Promise<void> {
    if (this.state !== 'running') throw new VmStateError(`pause() needs a running VM; this one is ${this.state}`);
    this.calls.push('pause');
    this.state = 'paused';
  }
  resume(): void {
    if (this.state !== 'paused') throw new VmStateError(`resume() needs a paused VM; this one is ${this.state}`);
    this.calls.push('resume');
    this.state = 'running';
  }
  async stop(): Promise<unknown> {
    this.calls.push('stop');
    this.onStop?.();
    await new Promise((r) => setTimeout(r, 20));
    this.state = 'exited';
    return { reason: 'stopped' };
  }
  async resizeDisk(index: number, bytes: number): Promise<void> {
    if (index !== 0) throw new ConfigError('index', 'must be an integer from 0 to 0', index);
    this.calls.push(`resize ${index} ${bytes}`);
  }
}

class BalloonVm extends FakeVm {
  balloon(bytes: number): { bytes: number } {
    this.calls.push(`balloon ${bytes}`);
    return { bytes: bytes - (bytes % 4096) };
  }
  async balloonStats(): Promise<{ actual: bigint }> {
    return { actual: 4096n };
  }
}

let n = 0;
async function serve(target: ControlTarget = new FakeVm()): Promise<{ server: ControlServer; client: ControlClient; path: string }> {
  const path = join(dir, `s${n++}.sock`);
  const server = await ControlServer.listen(path, target);
  servers.push(server);
  const client = await ControlClient.connect(path);
  clients.push(client);
  return { server, client, path };
}

/** Write raw bytes and collect `count` response lines. */
function rawExchange(path: string, data: string, count: number): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const sock: Socket = connect(path);
    let buf = '';
    sock.setEncoding('utf8');
    sock.on('data', (c: string) => {
      buf += c;
      const lines = buf.split('\n');
      if (lines.length > count) {
        sock.destroy();
        resolve(lines.slice(0, count));
      }
    });
    sock.on('error', reject);
    sock.write(data);
  });
}

describe('ControlServer', () => {
  it('serves every command through the typed client', async () => {
    const vm = new FakeVm();
    const { client } = await serve(vm);
    expect(await client.status()).toMatchObject({ state: 'running', cpus: 2, mem: 256, devices: [{ kind: 'virtio-blk', path: '/d.img', capacity: 8 }] });
    await client.suspend();
    expect(vm.state).toBe('paused');
    await expect(client.suspend()).rejects.toThrow(new ControlRequestError('pause() needs a running VM; this one is paused'));
    await client.resume();
    await client.diskResize(0, 8192);
    await expect(client.diskResize(1, 8192)).rejects.toThrow('index must be an integer from 0 to 0, got 1');
    await expect(client.balloon(4096)).rejects.toThrow('this VM has no balloon device');
    await expect(client.balloonStats()).rejects.toThrow('this VM has no balloon device');
    expect(await client.stop()).toEqual({ reason: 'stopped' });
    expect(vm.calls).toEqual(['pause', 'resume', 'resize 0 8192', 'stop']);
  });

  it('routes balloon and balloon_stats to the VM when it has those methods', async () => {
    const vm = new BalloonVm();
    const { client } = await serve(vm);
    expect(await client.balloon(10_000)).toEqual({ bytes: 8192 });
    expect(await client.balloonStats()).toEqual({ actual: 4096 }); // bigint sent as a number
    expect(vm.calls).toEqual(['balloon 10000']);
  });

  it('a result that cannot be encoded as JSON still gets one error line, and the server carries on', async () => {
    class Circular extends BalloonVm {
      override async balloonStats(): Promise<{ actual: bigint }> {
        const o: Record<string, unknown> = { actual: 1n };
        o.self = o;
        return o as unknown as { actual: bigint };
      }
    }
    const { client } = await serve(new Circular());
    await expect(client.balloonStats()).rejects.toThrow(/^the result cannot be sent as JSON: .*circular/i);
    expect(await client.status()).toMatchObject({ state: 'running' });
  });

  it('answers in request order on one connection, even when an earlier command takes longer', async () => {
    const { path } = await serve();
    const lines = await rawExchange(path, '{"command":"stop"}\n{"command":"status"}\nnope\n', 3);
    expect(lines.map((l) => JSON.parse(l) as unknown)).toEqual([
      { ok: true, result: { reason: 'stopped' } },
      { ok: true, result: expect.objectContaining({ state: 'exited' }) },
      { ok: false, error: expect.stringMatching(/^malformed JSON/) },
    ]);
  });

  it('CR LF line ends and blank lines; requests split across writes', async () => {
    const { path } = await serve();
    const lines = await rawExchange(path, '\n\r\n  \n{"command":"status"}\r\n', 1);
    expect(JSON.parse(lines[0]!)).toMatchObject({ ok: true });
    const sock = connect(path);
    const got = new Promise<string>((r) => sock.once('data', (d) => r(d.toString())));
    for (const part of ['{"comm', 'and":"st', 'atus"}', '\n']) {
      sock.write(part);
      await new Promise((r) => setTimeout(r, 5));
    }
    expect(JSON.parse(await got)).toMatchObject({ ok: true, result: { state: 'running' } });
    sock.destroy();
  });

  it('an over-long line gets one error and the connection keeps working', async () => {
    const { path } = await serve();
    const lines = await rawExchange(path, `${'x'.repeat(200_000)}\n{"command":"status"}\n`, 2);
    expect(JSON.parse(lines[0]!)).toEqual({ ok: false, error: 'request line longer than 65536 characters' });
    expect(JSON.parse(lines[1]!)).toMatchObject({ ok: true, result: { state: 'running' } });
  });

  it('property: random junk lines each get an error response and the server keeps serving', async () => {
    const vm = new FakeVm();
    const { client } = await serve(vm);
    const junk = fc.oneof(
      fc.string({ maxLength: 300 }),
      fc.string({ unit: 'grapheme', maxLength: 100 }),
      fc.json({ maxDepth: 2 }),
      fc.constantFrom('{"command":"balloon","bytes":-5}', '{"command":"disk_resize","index":0}', '{"command":"status","x":1}', '{"command":"shutdown"}'),
    ).filter((s) => !s.includes('\n') && s.trim() !== '' && !parseRequest(s.replace(/\r$/, '')).ok); // junk: no valid request
    await fc.assert(fc.asyncProperty(junk, async (line) => {
      const r = await client.sendLine(line);
      const expected = parseRequest(line.endsWith('\r') ? line.slice(0, -1) : line); // the server drops a CR before LF
      expect(r).toEqual({ ok: false, error: expected.ok ? '' : expected.error });
    }), { numRuns: 300 });
    expect(await client.status()).toMatchObject({ state: 'running' });
    expect(vm.calls).toEqual([]);
  });

  it('a client that disconnects mid-request does not disturb the server', async () => {
    const { path, client } = await serve();
    const s = connect(path);
    await new Promise((r) => s.once('connect', r));
    s.write('{"command":"stop"}\n');
    s.destroy();
    await new Promise((r) => setTimeout(r, 50));
    expect(await client.status()).toMatchObject({ state: 'exited' });
  });
});

describe('control socket file', () => {
  it('is created with mode 0600 and no other name is left beside it', async () => {
    const sub = join(dir, 'mode');
    mkdirSync(sub);
    const old = process.umask(0o000); // the most permissive umask: the mode must still be 0600
    let server: ControlServer;
    try {
      server = await ControlServer.listen(join(sub, 'vm.sock'), new FakeVm());
    } finally {
      process.umask(old);
    }
    servers.push(server);
    const st = lstatSync(join(sub, 'vm.sock'));
    expect(st.isSocket()).toBe(true);
    expect(st.mode & 0o777).toBe(0o600);
    expect(readdirSync(sub)).toEqual(['vm.sock']);
    await server.close();
    expect(readdirSync(sub)).toEqual([]);
  });

  it('a directory gets kvmkit-<pid>.sock inside it, as crosvm names crosvm-<pid>.sock', async () => {
    const sub = join(dir, 'bydir');
    mkdirSync(sub);
    expect(resolveSocketPath(sub)).toBe(join(sub, `kvmkit-${process.pid}.sock`));
    expect(resolveSocketPath(join(sub, 'x.sock'))).toBe(join(sub, 'x.sock'));
    const server = await ControlServer.listen(resolveSocketPath(sub), new FakeVm());
    servers.push(server);
    expect(existsSync(join(sub, `kvmkit-${process.pid}.sock`))).toBe(true);
  });

  it('is removed on close; open connections get their pending answers first (a stop request closes it, as the VM does)', async () => {
    const vm = new FakeVm();
    const { server, client, path } = await serve(vm);
    let closing: Promise<void> | undefined;
    vm.onStop = () => {
      closing = server.close();
      expect(existsSync(path)).toBe(false); // at once
    };
    expect(await client.stop()).toEqual({ reason: 'stopped' });
    await closing;
    await expect(client.status()).rejects.toThrow(ControlConnectionError); // the server ended this connection
    await expect(ControlClient.connect(path, { timeoutMs: 500 })).rejects.toThrow(ControlConnectionError);
  });

  it('is removed when the process exits without closing it', () => {
    const path = join(dir, 'exit.sock');
    const script = join(dir, 'exit-child.ts');
    writeFileSync(script, `
      import { existsSync } from 'node:fs';
      import { ControlServer } from ${JSON.stringify(join(ROOT, 'src/control/ControlServer'))};
      const target = { status: () => ({ state: 'running', cpus: 1, mem: 16, uptimeMs: 0, devices: [] }),
        pause: async () => {}, resume: () => {}, stop: async () => ({}), resizeDisk: async () => {} };
      await ControlServer.listen(${JSON.stringify(path)}, target);
      console.log('listening', existsSync(${JSON.stringify(path)}));
      process.exit(3);
    `);
    const r = spawnSync(join(ROOT, 'node_modules/.bin/vite-node'), [script], { encoding: 'utf8', cwd: ROOT, timeout: 60_000 });
    expect(r.stdout, r.stderr).toContain('listening true');
    expect(r.status).toBe(3);
    expect(existsSync(path)).toBe(false);
  }, 60_000);

  it('a stale socket file (nobody listening) is replaced', async () => {
    const path = join(dir, 'stale.sock');
    // a VMM killed with SIGKILL leaves its socket file behind: a process that binds and exits does too
    execFileSync('python3', ['-c', 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(1)', path]);
    const fd = lstatSync(path).ino;
    expect(lstatSync(path).isSocket()).toBe(true);
    const server = await ControlServer.listen(path, new FakeVm());
    servers.push(server);
    expect(lstatSync(path).ino).not.toBe(fd);
    const c = await ControlClient.connect(path);
    clients.push(c);
    expect(await c.status()).toMatchObject({ state: 'running' });
  });

  it('refuses a path where a live server answers, and a path that is not a socket', async () => {
    const { path } = await serve();
    const e = await ControlServer.listen(path, new FakeVm()).then(() => undefined, (x: unknown) => x);
    expect(e).toBeInstanceOf(ConfigError);
    expect((e as ConfigError).message).toMatch(/^socket is in use: a running server answers there/);
    const file = join(dir, 'plain.txt');
    writeFileSync(file, 'keep me');
    await expect(ControlServer.listen(file, new FakeVm())).rejects.toThrow(/^socket exists and is not a socket/);
    expect(existsSync(file)).toBe(true);
    await expect(ControlServer.listen(join(dir, 'missing-dir', 'x.sock'), new FakeVm())).rejects.toThrow(/^socket cannot be created in/);
    await expect(ControlServer.listen(join(dir, 'y'.repeat(120)), new FakeVm())).rejects.toThrow(/at most 107 bytes/);
  });
});
