/**
 * The control client's time limits and connection errors against scripted servers (no VM): the
 * per-request timeout, what a timeout does to the connection, the `no kvmkit VM listens` message,
 * and answers that are not response lines.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ControlClient, ControlConnectionError, ControlTimeoutError } from '../../src/control/ControlClient';
import { ScriptedServers } from './scriptedServer';

const servers = new ScriptedServers();
const clients: ControlClient[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await servers.closeAll();
});

async function client(path: string, options?: Parameters<typeof ControlClient.connect>[1]): Promise<ControlClient> {
  const c = await ControlClient.connect(path, options);
  clients.push(c);
  return c;
}


describe('ControlClient time limits', () => {
  it('no limit by default: a slow answer still arrives', async () => {
    const s = await servers.start((_, sock) => {
      setTimeout(() => sock.write('{"ok":true,"result":7}\n'), 300);
      return undefined;
    });
    const c = await client(s.path);
    expect(await c.request({ command: 'balloon_stats' })).toBe(7);
  });

  it('requestTimeoutMs limits every request; the timed-out one, the ones queued behind it and later ones fail, as the connection is closed', async () => {
    let answered = 0; // a stop that never ends: the server answers the first request only (answers go in order)
    const s = await servers.start(() => (answered++ === 0 ? '{"ok":true,"result":{"state":"running"}}\n' : undefined));
    const c = await client(s.path, { requestTimeoutMs: 150 });
    expect(await c.status()).toEqual({ state: 'running' });
    const t0 = Date.now();
    const stop = c.stop().catch((x: unknown) => x);
    const queued = c.status().catch((x: unknown) => x); // queued behind stop
    const e = await stop;
    const waited = Date.now() - t0;
    expect(e).toBeInstanceOf(ControlTimeoutError);
    expect(e).toBeInstanceOf(ControlConnectionError);
    expect((e as ControlTimeoutError).message).toBe(`no answer to stop from ${s.path} within 150 ms`);
    expect((e as ControlTimeoutError).timeoutMs).toBe(150);
    expect(waited).toBeGreaterThanOrEqual(140);
    expect(waited).toBeLessThan(2000);
    const q = await queued;
    expect(q).toBeInstanceOf(ControlConnectionError);
    expect((q as Error).message).toBe(`the connection to ${s.path} was closed: no answer to stop from ${s.path} within 150 ms`);
    await expect(c.status()).rejects.toThrow(`the connection to ${s.path} was closed: no answer to stop`);
  });

  it('a request\'s own timeoutMs overrides the connection\'s', async () => {
    const s = await servers.start((req, sock) => {
      setTimeout(() => sock.write('{"ok":true,"result":1}\n'), 200);
      return undefined;
    });
    const c = await client(s.path, { requestTimeoutMs: 50 });
    expect(await c.request({ command: 'status' }, { timeoutMs: 5000 })).toBe(1);
    await expect(c.sendLine('{"command":"status"}', { timeoutMs: 60 })).rejects.toThrow(`no answer to the request from ${s.path} within 60 ms`);
    const slow = await client(s.path);
    await expect(slow.send({ command: 'suspend' }, { timeoutMs: 60 })).rejects.toThrow(ControlTimeoutError);
  });
});

describe('ControlClient connection errors', () => {
  it('nothing at the path, or nobody listening: no kvmkit VM listens on PATH', async () => {
    const missing = join(servers.dir, 'nobody.sock');
    const e = await ControlClient.connect(missing).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(ControlConnectionError);
    expect((e as Error).message).toBe(`no kvmkit VM listens on ${missing} (ENOENT)`);
    const plain = join(servers.dir, 'plain');
    writeFileSync(plain, '');
    await expect(ControlClient.connect(plain)).rejects.toThrow(`no kvmkit VM listens on ${plain} (ECONNREFUSED)`);
  });

  it('the VM hangs up: the waiting request is named', async () => {
    const s = await servers.start((_, sock) => {
      sock.end();
      return undefined;
    });
    const c = await client(s.path);
    await expect(c.diskResize(0, 4096)).rejects.toThrow(`the VM on ${s.path} closed the connection without answering disk_resize`);
    await expect(c.status()).rejects.toThrow(`the connection to ${s.path} is closed`);
  });

  it('answers that are not response lines reject that request; the connection carries on', async () => {
    const answers = ['hello\n', '{"result":1}\n', '{"ok":false}\n', '{"ok":true,"result":3}\n'];
    const s = await servers.start(() => answers.shift());
    const c = await client(s.path);
    await expect(c.status()).rejects.toThrow(/^malformed answer from .*: Unexpected token/);
    await expect(c.status()).rejects.toThrow(`malformed answer from ${s.path}: expected {"ok": true|false, ...}, got {"result":1}`);
    await expect(c.status()).rejects.toThrow('got {"ok":false}');
    expect(await c.request({ command: 'status' })).toBe(3);
  });

  it('an answer line without end or a line nobody asked for closes the connection', async () => {
    const long = await servers.start((_, sock) => {
      sock.write('x'.repeat((1 << 20) + 10));
      return undefined;
    });
    const c = await client(long.path);
    await expect(c.status()).rejects.toThrow(`the answer from ${long.path} is longer than 1048576 bytes without a newline`);
    const chatty = await servers.start(() => '{"ok":true}\n{"ok":true}\n');
    const d = await client(chatty.path);
    expect(await d.send({ command: 'status' })).toEqual({ ok: true });
    await new Promise((r) => setTimeout(r, 50));
    await expect(d.status()).rejects.toThrow(`${chatty.path} sent a line nobody asked for: {"ok":true}`);
  });

  it('close() rejects what is still waiting', async () => {
    const s = await servers.start(() => undefined);
    const c = await ControlClient.connect(s.path);
    const pending = c.status();
    c.close();
    await expect(pending).rejects.toThrow(`the connection to ${s.path} was closed by this client`);
  });
});
