/**
 * The control subcommands' one-shot requests (src/control/ControlClient underneath), against a
 * scripted server (no VM needed).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { controlRequest } from '../../src/cli/controlCommands';
import { ControlConnectionError, ControlRequestError, ControlTimeoutError } from '../../src/control/ControlClient';
import { parseByteSize, parseIndex } from '../../src/cli/sizeArgument';
import { ConfigError } from '../../src/errors';
import { ensureProbe } from '../helpers/env';
import { ScriptedServers } from '../control/scriptedServer';
import { kvmkitAsync as kvmkit } from './runCli';

const servers = new ScriptedServers();
const dir = servers.dir;
const scripted = servers.start.bind(servers);

afterEach(() => servers.closeAll());

beforeAll(() => {
  ensureProbe(); // builds dist/ when a direct vitest run skipped npm test's set-up
});

describe('controlRequest', () => {
  it('sends one JSON line and returns the result of the answer line', async () => {
    const s = await scripted(() => '{"ok":true,"result":{"state":"running","cpus":2}}\n');
    expect(await controlRequest(s.path, { command: 'status' }, 10_000)).toEqual({ state: 'running', cpus: 2 });
    expect(await controlRequest(s.path, { command: 'disk_resize', index: 1, bytes: 2 ** 31 }, 10_000)).toEqual({ state: 'running', cpus: 2 });
    expect(s.requests).toEqual([{ command: 'status' }, { command: 'disk_resize', index: 1, bytes: 2 ** 31 }]);
  });

  it('an answer split across packets is put together', async () => {
    const s = await scripted((_, sock) => {
      sock.write('{"ok":tr');
      setTimeout(() => sock.write('ue,"result":42}\n'), 20);
      return undefined;
    });
    expect(await controlRequest(s.path, { command: 'balloon', bytes: 4096 }, 10_000)).toBe(42);
  });

  it('a refusal, silence, a closed connection, a malformed answer and a missing socket are clear errors', async () => {
    const refuse = await scripted(() => '{"ok":false,"error":"disk 3 does not exist (2 block devices)"}\n');
    const refused = await controlRequest(refuse.path, { command: 'disk_resize', index: 3, bytes: 0 }, 10_000).catch((x: unknown) => x);
    expect(refused).toBeInstanceOf(ControlRequestError);
    expect((refused as Error).message).toBe('disk_resize failed: disk 3 does not exist (2 block devices)');
    const silent = await scripted(() => undefined);
    const late = await controlRequest(silent.path, { command: 'status' }, 200).catch((x: unknown) => x);
    expect(late).toBeInstanceOf(ControlTimeoutError);
    expect((late as Error).message).toBe(`no answer to status from ${silent.path} within 200 ms`);
    const hangup = await scripted((_, sock) => {
      sock.end();
      return undefined;
    });
    await expect(controlRequest(hangup.path, { command: 'stop' }, 10_000)).rejects.toThrow(`the VM on ${hangup.path} closed the connection without answering stop`);
    const garbage = await scripted(() => 'hello\n');
    await expect(controlRequest(garbage.path, { command: 'status' }, 10_000)).rejects.toThrow(/^malformed answer from .*: Unexpected token/);
    const wrongShape = await scripted(() => '{"result":1}\n');
    await expect(controlRequest(wrongShape.path, { command: 'status' }, 10_000)).rejects.toThrow('expected {"ok": true|false, ...}, got {"result":1}');
    const missing = join(dir, 'nobody.sock');
    await expect(controlRequest(missing, { command: 'status' }, 10_000)).rejects.toThrow(`no kvmkit VM listens on ${missing} (ENOENT)`);
    const notSocket = join(dir, 'plain-file');
    writeFileSync(notSocket, '');
    const e = await controlRequest(notSocket, { command: 'status' }, 10_000).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(ControlConnectionError);
    expect((e as Error).message).toMatch(/^no kvmkit VM listens on .*plain-file \(ECONNREFUSED\)$/);
  });
});

describe('SIZE and INDEX arguments', () => {
  it('bytes as crosvm takes them, plus K/M/G/T powers of 1024', () => {
    expect(parseByteSize('SIZE', '4096')).toBe(4096);
    expect(parseByteSize('SIZE', '0')).toBe(0);
    expect(parseByteSize('SIZE', '64M')).toBe(64 * 2 ** 20);
    expect(parseByteSize('SIZE', '2G')).toBe(2 ** 31);
    expect(parseByteSize('SIZE', '1GiB')).toBe(2 ** 30);
    expect(parseByteSize('SIZE', '3k')).toBe(3072);
    expect(parseByteSize('SIZE', '1T')).toBe(2 ** 40);
    for (const bad of ['', 'lots', '-1', '1.5G', '1E', '0x10', '9007199254740993', '01']) {
      expect(() => parseByteSize('SIZE', bad), bad).toThrow(ConfigError);
    }
    expect(() => parseByteSize('SIZE', 'lots')).toThrow('SIZE must be a number of bytes, optionally with K, M, G or T (powers of 1024), got "lots"');
    expect(parseIndex('DISK_INDEX', '0')).toBe(0);
    expect(parseIndex('DISK_INDEX', '12')).toBe(12);
    expect(() => parseIndex('DISK_INDEX', '-1')).toThrow('DISK_INDEX must be a 0-based index (0, 1, ...), got "-1"');
  });
});

describe('kvmkit control subcommands (spawned) send the protocol\'s requests', () => {
  it('each subcommand sends its request; results print as JSON; refusals exit 1 with the message', async () => {
    const s = await scripted((req) => {
      const c = (req as { command: string }).command;
      if (c === 'status') return '{"ok":true,"result":{"state":"paused"}}\n';
      if (c === 'balloon_stats') return '{"ok":true,"result":{"actual":4096,"stats":{"free-memory":1000}}}\n';
      if (c === 'resume') return '{"ok":false,"error":"the VM is not paused"}\n';
      return '{"ok":true}\n';
    });
    const status = await kvmkit(['status', s.path]);
    expect(status.status).toBe(0);
    expect(JSON.parse(status.stdout)).toEqual({ state: 'paused' });
    expect((await kvmkit(['suspend', s.path])).status).toBe(0);
    const resume = await kvmkit(['resume', s.path]);
    expect(resume.status).toBe(1);
    expect(resume.stderr).toBe('kvmkit: resume failed: the VM is not paused\n');
    expect((await kvmkit(['balloon', '64M', s.path])).status).toBe(0);
    const stats = await kvmkit(['balloon_stats', s.path]);
    expect(JSON.parse(stats.stdout)).toEqual({ actual: 4096, stats: { 'free-memory': 1000 } });
    expect((await kvmkit(['disk', 'resize', '1', '2147483648', s.path])).status).toBe(0);
    const stop = await kvmkit(['stop', s.path]);
    expect([stop.status, stop.stdout]).toEqual([0, '']);
    expect(s.requests).toEqual([
      { command: 'status' },
      { command: 'suspend' },
      { command: 'resume' },
      { command: 'balloon', bytes: 64 * 2 ** 20 },
      { command: 'balloon_stats' },
      { command: 'disk_resize', index: 1, bytes: 2147483648 },
      { command: 'stop' },
    ]);
  });

  it('bad arguments and a missing socket fail before or at the connection with a message', async () => {
    const missing = join(dir, 'none.sock');
    const r = await kvmkit(['stop', missing]);
    expect(r.status).toBe(1);
    expect(r.stderr).toBe(`kvmkit: no kvmkit VM listens on ${missing} (ENOENT)\n`);
    const size = await kvmkit(['balloon', 'lots', missing]);
    expect(size.status).toBe(1);
    expect(size.stderr).toContain('SIZE must be a number of bytes, optionally with K, M, G or T (powers of 1024), got "lots"');
    const index = await kvmkit(['disk', 'resize', 'first', '1G', missing]);
    expect(index.status).toBe(1);
    expect(index.stderr).toContain('DISK_INDEX must be a 0-based index (0, 1, ...), got "first"');
    const args = await kvmkit(['balloon', '4096']);
    expect(args.status).toBe(1);
    expect(args.stderr).toContain("missing required argument 'VM_SOCKET'");
  });
});
