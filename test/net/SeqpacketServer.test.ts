/**
 * SeqpacketServer / SeqpacketConnection on real AF_UNIX SOCK_SEQPACKET sockets, with Python's
 * socket module as an independent client (and a raw stale socket), and with our own client.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/errors';
import { SeqpacketConnection, SeqpacketServer, SocketError } from '../../src/net';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
function dir(): string {
  const d = mkdtempSync(join(tmpdir(), 'kvmkit-seqpacket-'));
  dirs.push(d);
  return d;
}

/**
 * Run Python with a connected SOCK_SEQPACKET socket `s` to `path` (asynchronously: the server
 * answers on this process's event loop). Resolves with stdout.
 */
export function python(path: string, body: string, timeoutMs = 10_000): Promise<string> {
  const script = `import socket, sys, json, base64, os\ns = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)\ns.connect(sys.argv[1])\n${body}\n`;
  return new Promise((resolve, reject) => {
    execFile('python3', ['-c', script, path], { timeout: timeoutMs }, (err, stdout, stderr) => {
      if (err) reject(new Error(`python failed: ${err.message}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

/** An echo server: every message comes back, prefixed. */
function echo(path: string): SeqpacketServer {
  const s = SeqpacketServer.listen(path);
  s.on('connection', (c) => c.on('message', (m) => c.send(Buffer.concat([Buffer.from('echo:'), m]))));
  return s;
}

describe('SeqpacketServer', () => {
  it('keeps message boundaries both ways, for a Python client sending several packets before reading', async () => {
    const path = join(dir(), 's.sock');
    const s = echo(path);
    try {
      const out = await python(path, `
for m in [b'one', b'two two', b'x' * 65536, b'{"json": 1}']:
    s.send(m)
for _ in range(4):
    m = s.recv(1 << 20)
    print(len(m), m[:12].decode())
`);
      expect(out.trim().split('\n')).toEqual(['8 echo:one', '12 echo:two two', `65541 echo:xxxxxxx`, '16 echo:{"json"']);
    } finally {
      s.close();
    }
  });

  it('serves many clients at once and our own client too; the event loop keeps running', async () => {
    const path = join(dir(), 's.sock');
    const s = echo(path);
    try {
      let ticks = 0;
      const timer = setInterval(() => ticks++, 5);
      const outs = await Promise.all(
        Array.from({ length: 6 }, (_, i) => python(path, `import time\ntime.sleep(0.2)\ns.send(b'c${i}')\nprint(s.recv(100).decode())`)),
      );
      clearInterval(timer);
      expect(outs.map((o) => o.trim())).toEqual(Array.from({ length: 6 }, (_, i) => `echo:c${i}`));
      expect(ticks).toBeGreaterThan(10); // python sleeps 200 ms with its connection open: no blocking accept/recv here
      const c = SeqpacketConnection.connect(path);
      c.send('a');
      c.send(new Uint8Array([0xff, 0]));
      expect(Buffer.from(await c.nextMessage()).toString('latin1')).toBe('echo:a');
      expect([...(await c.nextMessage())]).toEqual([...Buffer.from('echo:'), 0xff, 0]);
      await new Promise((r) => setTimeout(r, 20));
      expect(s.connections).toBe(1);
      c.close();
      await new Promise((r) => setTimeout(r, 20));
      expect(s.connections).toBe(0);
    } finally {
      s.close();
    }
  });

  it('creates the socket 0600 even with umask 0, and removes it on close (clients see the end)', async () => {
    const d = dir();
    const path = join(d, 's.sock');
    const old = process.umask(0);
    let s: SeqpacketServer;
    try {
      s = echo(path);
    } finally {
      process.umask(old);
    }
    const st = statSync(path);
    expect(st.isSocket()).toBe(true);
    expect(st.mode & 0o777).toBe(0o600);
    const c = SeqpacketConnection.connect(path);
    const closed = new Promise<void>((r) => c.once('close', () => r()));
    s.close();
    s.close(); // idempotent
    expect(() => statSync(path)).toThrow(/ENOENT/);
    await closed; // the server closed our connection: recv read 0 bytes
    await expect(c.nextMessage()).rejects.toThrow(SocketError);
    expect(() => SeqpacketConnection.connect(path)).toThrow(/ENOENT/);
  });

  it('replaces a stale socket file, refuses a live one (seqpacket or stream) and other files', async () => {
    const d = dir();
    const stale = join(d, 'stale.sock');
    // a SOCK_SEQPACKET socket bound by a process that exited without removing it
    await new Promise<void>((resolve, reject) =>
      execFile('python3', ['-c', 'import socket,sys\ns=socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)\ns.bind(sys.argv[1])\ns.listen(1)', stale], (e) => (e ? reject(e) : resolve())),
    );
    expect(statSync(stale).isSocket()).toBe(true);
    expect(() => SeqpacketConnection.connect(stale)).toThrow(/ECONNREFUSED|errno 111/);
    const s = echo(stale);
    try {
      expect((await python(stale, "s.send(b'hi')\nprint(s.recv(10).decode())")).trim()).toBe('echo:hi');
      // a second server on a live path
      expect(() => SeqpacketServer.listen(stale, { option: 'allowlist_socket' })).toThrow(/^allowlist_socket is in use/);
      expect(() => SeqpacketServer.listen(stale)).toThrow(ConfigError);
    } finally {
      s.close();
    }
    // a live stream socket (EPROTOTYPE to a seqpacket client) is live too
    const streamPath = join(d, 'stream.sock');
    const ns = createServer();
    await new Promise<void>((r) => ns.listen(streamPath, () => r()));
    try {
      expect(() => SeqpacketServer.listen(streamPath)).toThrow(/^socket is in use/);
      expect(statSync(streamPath).isSocket()).toBe(true);
    } finally {
      await new Promise((r) => ns.close(r));
    }
    const file = join(d, 'file');
    writeFileSync(file, 'keep me');
    expect(() => SeqpacketServer.listen(file)).toThrow(/^socket exists and is not a socket/);
    expect(statSync(file).size).toBe(7);
    expect(() => SeqpacketServer.listen(join(d, 'x'.repeat(120)))).toThrow(/^socket must be a path of at most 107 bytes/);
    expect(() => SeqpacketServer.listen(join(d, 'no-such-dir', 's.sock'))).toThrow(/^socket cannot be created in/);
  });

  it('a zero-length packet or a peer that goes away ends the connection (as crosvm)', async () => {
    const path = join(dir(), 's.sock');
    const s = echo(path);
    try {
      const out = await python(path, "s.send(b'a')\nprint(s.recv(10).decode())\ns.send(b'')\nprint(repr(s.recv(10)))");
      expect(out.trim().split('\n')).toEqual(['echo:a', "b''"]);
      await new Promise((r) => setTimeout(r, 20));
      expect(s.connections).toBe(0);
    } finally {
      s.close();
    }
  });
});
