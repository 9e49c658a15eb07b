/**
 * The virtio-fs allowlist socket (crosvm's wire protocol, src/devices/virtio/fs/AllowlistSocket.ts)
 * on a real SOCK_SEQPACKET socket: Python's socket module as an independent client for the exact
 * bytes, kvmkit's AllowlistClient for the rest, and the guest's view through the device's queues
 * (fuseClient.ts): a path invisible, visible after AddPaths, invisible after RemovePaths, at once.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import {
  ADD_FAILED, AllowlistClient, AllowlistCommandError, AllowlistSocket, answerAllowlistCommand, parseAllowlistCommand, REMOVE_FAILED,
} from '../../../../src/devices/virtio/fs/AllowlistSocket';
import { VirtioFs } from '../../../../src/devices/virtio/fs';
import { ConfigError } from '../../../../src/errors';
import { FuseOpcode as Op } from '../../../../src/fuse/abi';
import { Allowlist, AllowlistError } from '../../../../src/fuse/Allowlist';
import { cleanupTempDirs, ERR, tempDir } from '../../../fuse/helpers';
import { FuseClient, z } from './fuseClient';

afterAll(cleanupTempDirs);

/** A share with /pub/docs/readme, /pub/other, /secret. */
function share(): string {
  const d = tempDir('kvmkit-alsock-');
  mkdirSync(join(d, 'share', 'pub', 'docs'), { recursive: true });
  mkdirSync(join(d, 'share', 'pub', 'other'));
  writeFileSync(join(d, 'share', 'pub', 'docs', 'readme'), 'read me');
  writeFileSync(join(d, 'share', 'secret'), 'secret');
  return d;
}

/** A device with an allowlist socket and a FUSE client on its queues. */
async function device(): Promise<{ c: FuseClient; sock: string; dir: string }> {
  const dir = share();
  const sock = join(dir, 'allowlist.sock');
  const c = FuseClient.create({ sharedDir: join(dir, 'share'), tag: 'al', allowlistSocket: sock });
  await c.init();
  return { c, sock, dir };
}

/** Python sends each packet (bytes, given as base64) and prints each answer as base64, one per line. */
function python(path: string, packets: (string | Uint8Array)[]): Promise<Uint8Array[]> {
  const script = `import socket, sys, base64
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.connect(sys.argv[1])
for p in sys.argv[2:]:
    s.send(base64.b64decode(p))
    print(base64.b64encode(s.recv(1 << 20)).decode())
`;
  const args = packets.map((p) => Buffer.from(typeof p === 'string' ? Buffer.from(p, 'utf8') : p).toString('base64'));
  return new Promise((resolve, reject) => {
    execFile('python3', ['-c', script, path, ...args], { timeout: 20_000, maxBuffer: 1 << 24 }, (err, out, stderr) => {
      if (err) reject(new Error(`python client failed: ${err.message}\n${stderr}`));
      else resolve(out.trim().split('\n').filter(Boolean).map((l) => new Uint8Array(Buffer.from(l, 'base64'))));
    });
  });
}
const text = (b: Uint8Array): string => Buffer.from(b).toString('utf8');

describe('allowlist socket: crosvm wire protocol', () => {
  it('answers "Ok" and {"Err":...} as serde_json writes them, one packet per message, in order', async () => {
    const { c, sock } = await device();
    try {
      const answers = await python(sock, [
        '{"AddPaths":{"paths":["/pub/docs","/secret"]}}',
        '{"RemovePaths":{"paths":["/secret"]}}',
        '{"RemovePaths":{"paths":["/secret"]}}', // no longer allowed
        '{"AddPaths":{"paths":["pub"]}}', // relative
        '{"AddPaths":{"paths":[]}}', // nothing to do
        ' { "AddPaths" : { "paths" : [ "/pub/other" ] , "note": 1 } } ', // whitespace, an extra field (serde ignores it)
      ]);
      expect(answers.map(text)).toEqual([
        '"Ok"',
        '"Ok"',
        `{"Err":"${REMOVE_FAILED}: allowlist path \\"/secret\\" is not in the allowlist"}`,
        `{"Err":"${ADD_FAILED}: allowlist path \\"pub\\" must start with / (relative to the share's root)"}`,
        '"Ok"',
        '"Ok"',
      ]);
      expect(c.dev.allowlist!.paths()).toEqual(['/pub/docs', '/pub/other']);
      expect(c.dev.allowlistServer!.requests).toBe(6);
    } finally {
      await c.close();
    }
  });

  it('malformed JSON, wrong shapes, unknown commands, relative paths and .. get {"Err"} and change nothing; the connection stays usable', async () => {
    const { c, sock } = await device();
    try {
      c.dev.allowPaths(['/pub/docs']);
      const bad: (string | Uint8Array)[] = [
        'not json',
        '{"AddPaths":{"paths":["/a"]}', // truncated
        '"AddPaths"',
        '[]',
        'null',
        '{}',
        '{"AddPaths":{"paths":["/a"]},"RemovePaths":{"paths":["/a"]}}',
        '{"Foo":{"paths":["/a"]}}',
        '{"addpaths":{"paths":["/a"]}}',
        '{"AddPaths":{}}',
        '{"AddPaths":{"paths":"/a"}}',
        '{"AddPaths":{"paths":[1]}}',
        '{"AddPaths":["/a"]}',
        '{"AddPaths":{"paths":["/ok","relative"]}}', // atomic: /ok is not added either
        '{"AddPaths":{"paths":["/ok","/a/../b"]}}',
        '{"AddPaths":{"paths":["/.."]}}',
        '{"AddPaths":{"paths":["/a\\u0000b"]}}',
        '{"RemovePaths":{"paths":["/pub/docs","/never"]}}', // atomic: /pub/docs stays
        '{"RemovePaths":{"paths":["../pub/docs"]}}',
        new Uint8Array([0x7b, 0x22, 0xff, 0x22, 0x7d]), // invalid UTF-8
      ];
      const answers = await python(sock, [...bad, '{"AddPaths":{"paths":["/pub/other"]}}']);
      expect(answers).toHaveLength(bad.length + 1);
      for (const [i, a] of answers.slice(0, -1).entries()) {
        const v = JSON.parse(text(a)) as unknown;
        expect(v, `${String(bad[i])} -> ${text(a)}`).toEqual({ Err: expect.any(String) });
      }
      const err = (i: number): string => (JSON.parse(text(answers[i]!)) as { Err: string }).Err;
      expect(err(7)).toMatch(/^unknown command "Foo"/);
      expect(err(13)).toMatch(/^Failed to add one or more paths: .*must start with \//);
      expect(err(14)).toMatch(/^Failed to add one or more paths: .*'\.\.'/);
      expect(err(17)).toMatch(/^Failed to remove one or more paths: .*"\/never" is not in the allowlist/);
      expect(text(answers.at(-1)!)).toBe('"Ok"'); // the same connection still works
      expect(c.dev.allowlist!.paths()).toEqual(['/pub/docs', '/pub/other']);
    } finally {
      await c.close();
    }
  });

  it('property: any packet gets exactly one answer, "Ok" or {"Err": string}, and only "Ok" changes the allowlist', () => {
    const target = new Allowlist();
    const api = { allowPaths: (p: readonly string[]) => target.allow(p), revokePaths: (p: readonly string[]) => target.revoke(p) };
    const path = fc.oneof(fc.constantFrom('/a', '/a/b', '/b', '/', 'a', '/a/../b', '/..', '//a//', '/./a'), fc.string());
    const command = fc.oneof(
      fc.record({ AddPaths: fc.record({ paths: fc.array(path, { maxLength: 4 }) }) }).map((x) => JSON.stringify(x)),
      fc.record({ RemovePaths: fc.record({ paths: fc.array(path, { maxLength: 4 }) }) }).map((x) => JSON.stringify(x)),
      fc.json(),
      fc.string(),
    );
    const packet = fc.oneof(command.map((s) => new Uint8Array(Buffer.from(s, 'utf8'))), fc.uint8Array({ maxLength: 64 }));
    fc.assert(
      fc.property(packet, (p) => {
        const before = target.paths();
        const a = answerAllowlistCommand(p, api);
        const wire = JSON.stringify(a);
        if (a === 'Ok') {
          expect(wire).toBe('"Ok"');
          expect(parseAllowlistCommand(p).ok).toBe(true);
        } else {
          expect(Object.keys(a)).toEqual(['Err']);
          expect(typeof a.Err).toBe('string');
          expect(target.paths()).toEqual(before);
        }
      }),
      { numRuns: 3000 },
    );
  });
});

describe('allowlist socket: what the guest sees, through the device queues', () => {
  it('a path is invisible, visible after AddPaths, invisible again after RemovePaths, at once', async () => {
    const { c, sock } = await device();
    const client = AllowlistClient.connect(sock);
    try {
      const lookup = (parent: number, name: string) => c.call(Op.LOOKUP, parent, z(name));
      const names = async (nodeid: number) => (await c.list(nodeid)).map((d) => d.name).filter((n) => n !== '.' && n !== '..').sort();
      expect((await lookup(1, 'pub')).error).toBe(-ERR.ENOENT);
      expect(await names(1)).toEqual([]);

      await client.addPaths(['/pub/docs']);
      const pub = await c.lookup(1, 'pub'); // the directory leading to it
      expect(await names(1)).toEqual(['pub']);
      expect(await names(pub.nodeid)).toEqual(['docs']);
      expect((await lookup(pub.nodeid, 'other')).error).toBe(-ERR.ENOENT);
      const docs = await c.lookup(pub.nodeid, 'docs');
      const readme = await c.lookup(docs.nodeid, 'readme'); // a descendant
      expect(text(await c.readFile(readme.nodeid))).toBe('read me');
      expect((await lookup(1, 'secret')).error).toBe(-ERR.ENOENT);

      // handles opened before the revoke: a file for reading, one for writing, the directory
      const { fh } = await c.open(readme.nodeid, 0);
      const { fh: wfh } = await c.open(readme.nodeid, 2); // O_RDWR
      const dfh = await c.opendir(docs.nodeid);
      await client.removePaths(['/pub/docs']);
      // open handles stay usable: writing through one works (as crosvm, which checks paths at lookup/open/create only)
      expect(await c.write(readme.nodeid, wfh, 0, new Uint8Array(Buffer.from('READ')))).toBe(4);
      // but a listing read through a directory handle opened before is filtered with the allowlist of now
      expect((await c.readdir(docs.nodeid, dfh)).map((d) => d.name).sort()).toEqual(['.', '..']);
      expect((await c.release(docs.nodeid, dfh, true)).error).toBe(0);
      expect((await c.release(readme.nodeid, wfh)).error).toBe(0);
      expect((await lookup(1, 'pub')).error).toBe(-ERR.ENOENT); // new lookups: gone at once
      expect((await lookup(docs.nodeid, 'readme')).error).toBe(-ERR.ENOENT);
      expect(await names(1)).toEqual([]);
      expect((await c.call(Op.OPEN, readme.nodeid, new Uint8Array(8))).error).toBe(-ERR.EACCES); // node ids still held: no new opens
      expect((await c.call(Op.OPENDIR, docs.nodeid, new Uint8Array(8))).error).toBe(-ERR.EACCES);
      expect(text(await c.read(readme.nodeid, fh, 0, 100))).toBe('READ me'); // the open handle keeps working (as crosvm)
      expect((await c.release(readme.nodeid, fh)).error).toBe(0);
      expect((await c.getattr(readme.nodeid)).size).toBe(7); // attributes of a held node id: still answered (as crosvm)

      await expect(client.removePaths(['/pub/docs'])).rejects.toThrow(AllowlistCommandError);
      await expect(client.addPaths(['/x/../y'])).rejects.toThrow(/^Failed to add one or more paths: /);
    } finally {
      client.close();
      await c.close();
    }
  });

  it('the VirtioFs API and the socket change the same allowlist', async () => {
    const { c, sock } = await device();
    const client = AllowlistClient.connect(sock);
    try {
      c.dev.allowPaths(['/secret']);
      await client.addPaths(['/pub']);
      expect(c.dev.allowlist!.paths()).toEqual(['/pub', '/secret']);
      await client.removePaths(['/secret']);
      expect(() => c.dev.revokePaths(['/secret'])).toThrow(AllowlistError);
      expect((await c.call(Op.LOOKUP, 1, z('secret'))).error).toBe(-ERR.ENOENT);
      expect((await c.lookup(1, 'pub')).nodeid).toBeGreaterThan(1);
    } finally {
      client.close();
      await c.close();
    }
  });
});

describe('allowlist socket: the file', () => {
  it('is 0600 from construction, refuses a second device on the same live path, and goes away with close()', async () => {
    const dir = share();
    const sock = join(dir, 'al.sock');
    const old = process.umask(0);
    let dev: VirtioFs;
    try {
      dev = new VirtioFs({ sharedDir: join(dir, 'share'), tag: 't', allowlistSocket: sock });
    } finally {
      process.umask(old);
    }
    try {
      expect(statSync(sock).isSocket()).toBe(true);
      expect(statSync(sock).mode & 0o777).toBe(0o600);
      expect(dev.allowlistServer!.path).toBe(sock);
      expect(() => new VirtioFs({ sharedDir: join(dir, 'share'), tag: 't2', allowlistSocket: sock })).toThrow(ConfigError);
      expect(() => new VirtioFs({ sharedDir: join(dir, 'share'), tag: 't2', allowlistSocket: sock })).toThrow(/^allowlist_socket is in use/);
      const client = AllowlistClient.connect(sock);
      await client.addPaths(['/pub']);
      await dev.close();
      expect(existsSync(sock)).toBe(false);
      await expect(client.addPaths(['/secret'])).rejects.toThrow(); // the server closed the connection
      expect(dev.allowlist!.paths()).toEqual(['/pub']);
      client.close();
    } finally {
      await dev.close();
    }
  });

  it('replaces a stale socket left by a process that died; a device without allowlistSocket has no socket', async () => {
    const dir = share();
    const sock = join(dir, 'stale.sock');
    await new Promise<void>((resolve, reject) =>
      execFile('python3', ['-c', 'import socket,sys\ns=socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)\ns.bind(sys.argv[1])', sock], (e) => (e ? reject(e) : resolve())),
    );
    expect(statSync(sock).isSocket()).toBe(true);
    const dev = new VirtioFs({ sharedDir: join(dir, 'share'), tag: 't', allowlistSocket: sock });
    try {
      expect(text((await python(sock, ['{"AddPaths":{"paths":["/pub"]}}']))[0]!)).toBe('"Ok"');
    } finally {
      await dev.close();
    }
    const plain = new VirtioFs({ sharedDir: join(dir, 'share'), tag: 't' });
    expect(plain.allowlistServer).toBeUndefined();
    await plain.close();
    // a socket whose directory is missing: a ConfigError at construction, nothing left open
    expect(() => new VirtioFs({ sharedDir: join(dir, 'share'), tag: 't', allowlistSocket: join(dir, 'missing', 's.sock') })).toThrow(/^allowlist_socket cannot be created/);
  });

  it('AllowlistSocket.listen serves any target (the API VirtioFs implements)', async () => {
    const dir = share();
    const calls: string[] = [];
    const s = AllowlistSocket.listen(join(dir, 'x.sock'), {
      allowPaths: (p) => void calls.push(`add ${p.join(',')}`),
      revokePaths: (p) => void calls.push(`remove ${p.join(',')}`),
    });
    try {
      const answers = await python(s.path, ['{"AddPaths":{"paths":["/a","/b/c"]}}', '{"RemovePaths":{"paths":["/a"]}}']);
      expect(answers.map(text)).toEqual(['"Ok"', '"Ok"']);
      expect(calls).toEqual(['add /a,/b/c', 'remove /a']);
      expect(s.errors).toEqual([]);
    } finally {
      s.close();
    }
  });
});
