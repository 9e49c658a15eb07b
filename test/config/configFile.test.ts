/** JSON config files: crosvm's documented examples, merge rules, includes and every error. */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/errors';
import {
  ConfigFileError, emptyConfig, loadConfigFiles, mergeConfig, parseBlockOption, parseConfig, type KvmkitConfig,
} from '../../src/config';

/** A fresh directory with `files` (name -> JSON value, or raw text) written in it. */
function dirWith(files: Record<string, unknown>): string {
  const dir = mkdtempSync(join(tmpdir(), 'kvmkit-cfg-'));
  for (const [name, content] of Object.entries(files)) {
    writeFileSync(join(dir, name), typeof content === 'string' ? content : JSON.stringify(content, null, 2));
  }
  return dir;
}

/** The error `fn` throws (failing the test if it throws none). */
function errorOf(fn: () => unknown): ConfigFileError {
  try {
    fn();
  } catch (e) {
    return e as ConfigFileError;
  }
  throw new Error('expected an error, none was thrown');
}

/** crosvm's vm.json ("Combining configuration files and command-line options"). */
const VM_JSON = { kernel: '/path/to/bzImage', block: [{ path: '/path/to/root.img', root: true }] };

/** A command-line layer, as `kvmkit run` builds one. */
const commandLine = (o: Partial<KvmkitConfig>): KvmkitConfig => ({ ...emptyConfig(), ...o });

describe('crosvm documentation examples', () => {
  it('vm.json + --block home.img gives two disks, root.img (root) first', () => {
    const dir = dirWith({ 'vm.json': VM_JSON });
    const merged = mergeConfig(loadConfigFiles(['vm.json'], { cwd: dir }), commandLine({ block: [parseBlockOption('/path/to/home.img')] }));
    expect(merged.block).toEqual([{ path: '/path/to/root.img', root: true }, { path: '/path/to/home.img' }]);
    expect(merged.kernel).toBe('/path/to/bzImage');
  });

  it('--kernel on the command line wins over the file', () => {
    const dir = dirWith({ 'vm.json': VM_JSON });
    const merged = mergeConfig(loadConfigFiles(['vm.json'], { cwd: dir }), commandLine({ kernel: '/path/to/another/bzImage' }));
    expect(merged.kernel).toBe('/path/to/another/bzImage');
    expect(merged.block).toHaveLength(1);
  });

  it('reads the documented basic VM (cpus num-cores, mem size, block, serial) and names what kvmkit lacks', () => {
    const basic = {
      kernel: '/path/to/bzImage',
      cpus: { 'num-cores': 8 },
      mem: { size: 2048 },
      block: [{ path: '/path/to/root.img', root: true }],
      serial: [{ type: 'stdout', hardware: 'serial', console: true, stdin: true }],
    };
    expect(parseConfig(basic)).toEqual({
      kernel: '/path/to/bzImage', cpus: 8, mem: 2048, initrd: undefined, socket: undefined, noBalloon: undefined,
      serial: { type: 'stdout', stdin: true }, params: [], block: [{ path: '/path/to/root.img', root: true }], sharedDirs: [],
    });
    // the documented example itself uses a virtio-console serial port and a tap network device
    expect(errorOf(() => parseConfig({ ...basic, serial: [{ type: 'stdout', hardware: 'virtio-console', console: true, stdin: true }] }, { source: 'doc.json' })).message)
      .toBe('doc.json: serial[0].hardware must be serial (kvmkit emulates one 8250 UART), got "virtio-console"');
    expect(errorOf(() => parseConfig({ ...basic, net: [{ 'tap-name': 'crosvm_tap' }] }, { source: 'doc.json' })).message)
      .toBe('doc.json: net is a crosvm option that kvmkit does not support');
  });

  it('the same options in command-line form: cpus 8, mem 2048, --block and --serial strings', () => {
    expect(parseConfig({ kernel: 'k', cpus: 8, mem: 2048, block: ['/path/to/root.img,root'], serial: 'stdout,hardware=serial,console,stdin' })).toMatchObject({
      cpus: 8, mem: 2048, block: [{ path: '/path/to/root.img', root: true }], serial: { type: 'stdout', stdin: true },
    });
  });
});

describe('merge rules', () => {
  it('several --cfg files merge in order: later once-only options win, block devices and params extend', () => {
    const dir = dirWith({
      'a.json': { kernel: 'a-kernel', 'no-balloon': true, cpus: 1, mem: 128, initrd: 'a.initrd', socket: 'a.sock', params: ['a=1'], block: ['a.img'], serial: 'sink' },
      'b.json': { kernel: 'b-kernel', mem: 512, params: 'b=2', block: [{ path: 'b.img', ro: true }] },
    });
    const m = loadConfigFiles(['a.json', 'b.json'], { cwd: dir });
    expect(m).toMatchObject({ kernel: 'b-kernel', noBalloon: true, cpus: 1, mem: 512, initrd: 'a.initrd', socket: 'a.sock', params: ['a=1', 'b=2'], serial: { type: 'sink' } });
    expect(m.block.map((b) => b.path)).toEqual(['a.img', 'b.img']);
    // the other order
    const r = loadConfigFiles(['b.json', 'a.json'], { cwd: dir });
    expect(r).toMatchObject({ kernel: 'a-kernel', mem: 128, params: ['b=2', 'a=1'] });
    expect(r.block.map((b) => b.path)).toEqual(['b.img', 'a.img']);
  });

  it('command-line options override every file, and command-line devices come after the files\' devices', () => {
    const dir = dirWith({ 'a.json': { kernel: 'k', cpus: 4, mem: 1024, block: ['a.img'], params: ['p=file'] } });
    const m = mergeConfig(loadConfigFiles(['a.json'], { cwd: dir }), commandLine({ cpus: 2, block: [{ path: 'cli.img' }], params: ['p=cli'] }));
    expect(m).toMatchObject({ kernel: 'k', cpus: 2, mem: 1024, params: ['p=file', 'p=cli'] });
    expect(m.block.map((b) => b.path)).toEqual(['a.img', 'cli.img']);
  });

  it('cfg includes are applied first, in order, and the including file wins wherever its cfg key is', () => {
    const dir = dirWith({
      'net.json': { kernel: 'net-kernel', cpus: 2, mem: 256, block: ['net.img'], params: ['net'] },
      'gpu.json': { cpus: 3, block: ['gpu.img'], params: ['gpu'] },
      'main.json': { mem: 1024, block: ['main.img'], cfg: ['net.json', 'gpu.json'], params: ['main'] },
      'main-cfg-last.json': '{"mem": 1024, "block": ["main.img"], "params": ["main"], "cfg": ["net.json", "gpu.json"]}',
    });
    for (const f of ['main.json', 'main-cfg-last.json']) {
      const m = loadConfigFiles([f], { cwd: dir });
      expect(m).toMatchObject({ kernel: 'net-kernel', cpus: 3, mem: 1024, params: ['net', 'gpu', 'main'] });
      expect(m.block.map((b) => b.path)).toEqual(['net.img', 'gpu.img', 'main.img']);
    }
  });

  it('nested includes, a single-string cfg, and includes read relative to the current directory as crosvm does', () => {
    const dir = dirWith({ 'base.json': { kernel: 'base', block: ['base.img'] } });
    mkdirSync(join(dir, 'sub'));
    writeFileSync(join(dir, 'sub', 'mid.json'), JSON.stringify({ cfg: 'base.json', block: ['mid.img'] }));
    writeFileSync(join(dir, 'top.json'), JSON.stringify({ cfg: ['sub/mid.json'], kernel: 'top' }));
    const m = loadConfigFiles(['top.json'], { cwd: dir });
    expect(m.kernel).toBe('top');
    expect(m.block.map((b) => b.path)).toEqual(['base.img', 'mid.img']);
    // an absolute --cfg path works from anywhere
    expect(loadConfigFiles([join(dir, 'base.json')], { cwd: '/' }).kernel).toBe('base');
  });

  it('the same file included twice (not a cycle) is applied twice, as crosvm does', () => {
    const dir = dirWith({ 'd.json': { block: ['d.img'] }, 'm.json': { cfg: ['d.json', 'd.json'] } });
    expect(loadConfigFiles(['m.json'], { cwd: dir }).block.map((b) => b.path)).toEqual(['d.img', 'd.img']);
  });

  it('include cycles are errors naming the chain', () => {
    const dir = dirWith({ 'self.json': { cfg: ['self.json'] }, 'a.json': { cfg: ['b.json'] }, 'b.json': { cfg: ['c.json'] }, 'c.json': { cfg: ['a.json'] } });
    const self = errorOf(() => loadConfigFiles(['self.json'], { cwd: dir }));
    expect(self).toBeInstanceOf(ConfigFileError);
    expect(self).toBeInstanceOf(ConfigError);
    expect(self.message).toBe(`self.json (included from self.json): cfg includes form a cycle (${join(dir, 'self.json')} -> ${join(dir, 'self.json')}): a file cannot include itself`);
    const abc = errorOf(() => loadConfigFiles(['a.json'], { cwd: dir }));
    expect(abc.message).toMatch(/^a\.json \(included from c\.json \(included from b\.json \(included from a\.json\)\)\): cfg includes form a cycle \(.*\/a\.json -> .*\/b\.json -> .*\/c\.json -> .*\/a\.json\)/);
    expect(abc.file).toBe('a.json (included from c.json (included from b.json (included from a.json)))');
  });
});

describe('errors name the file, the key and the rule', () => {
  const bad = (object: unknown): string => errorOf(() => parseConfig(object, { source: 'vm.json' })).message;

  it('the example of the issue', () => {
    expect(bad({ mem: 'x' })).toBe('vm.json: mem must be an integer number of MiB from 16 to 1048576, got "x"');
  });

  it('bad values for every option', () => {
    const cases: [unknown, string][] = [
      [{ kernel: '' }, 'kernel must be the path of the guest kernel (a bzImage on x86_64), got ""'],
      [{ kernel: 42 }, 'kernel must be the path of the guest kernel (a bzImage on x86_64), got 42'],
      [{ initrd: ['a'] }, 'initrd must be the path of an initrd file, got ["a"]'],
      [{ cpus: 0 }, 'cpus must be an integer from 1 to 254, got 0'],
      [{ cpus: 255 }, 'cpus must be an integer from 1 to 254, got 255'],
      [{ cpus: 1.5 }, 'cpus must be an integer from 1 to 254, got 1.5'],
      [{ cpus: '2' }, 'cpus must be an integer from 1 to 254, got "2"'],
      [{ cpus: null }, 'cpus must be an integer from 1 to 254, got null'],
      [{ cpus: { 'num-cores': 0 } }, 'cpus.num-cores must be an integer from 1 to 254, got 0'],
      [{ cpus: {} }, 'cpus.num-cores is required in the object form of cpus, got {}'],
      [{ cpus: { clusters: [[0]] } }, 'cpus.clusters is a crosvm cpus option that kvmkit does not support, got [[0]]'],
      [{ cpus: { cores: 2 } }, 'cpus.cores is not a cpus option (valid keys: num-cores), got 2'],
      [{ cpus: [2] }, 'cpus must be a number of vCPUs or {"num-cores": N}, got [2]'],
      [{ mem: 15 }, 'mem must be an integer number of MiB from 16 to 1048576, got 15'],
      [{ mem: 1048577 }, 'mem must be an integer number of MiB from 16 to 1048576, got 1048577'],
      [{ mem: { size: '1G' } }, 'mem.size must be an integer number of MiB from 16 to 1048576, got "1G"'],
      [{ mem: { bytes: 1 } }, 'mem.bytes is not a mem option (valid keys: size), got 1'],
      [{ params: 3 }, 'params must be a string or an array of strings (kernel command line pieces), got 3'],
      [{ params: ['a', null] }, 'params must be a string or an array of strings (kernel command line pieces), got ["a",null]'],
      [{ block: 5 }, 'block must be an array of block devices (objects like {"path": "disk.img", "ro": true} or --block strings), got 5'],
      [{ block: [5] }, 'block[0] entries must be objects ({"path": "disk.img", ...}) or --block strings, got 5'],
      [{ block: [{ ro: true }] }, 'block[0].path is required: the disk image file, got {"ro":true}'],
      [{ block: [{ path: '' }] }, 'block[0].path is required: the disk image file, got ""'],
      [{ block: ['a.img', { path: 'b.img', ro: 'yes' }] }, 'block[1].ro must be true or false, got "yes"'],
      [{ block: [{ path: 'b.img', root: 1 }] }, 'block[0].root must be true or false, got 1'],
      [{ block: [{ path: 'b.img', sparse: 'false' }] }, 'block[0].sparse must be true or false, got "false"'],
      [{ block: [{ path: 'b.img', direct: null }] }, 'block[0].direct must be true or false, got null'],
      [{ block: [{ path: 'b.img', o_direct: true, direct: false }] }, 'block[0].direct is given twice (also as o_direct), got {"path":"b.img","o_direct":true,"direct":false}'],
      [{ block: [{ path: 'b.img', 'block-size': 1000 }] }, 'block[0].block-size must be a power of two >= 512, got 1000'],
      [{ block: [{ path: 'b.img', block_size: '4096' }] }, 'block[0].block_size must be a power of two >= 512, got "4096"'],
      [{ block: [{ path: 'b.img', 'block-size': 131072 }] }, 'block[0].block-size must be at most 65536, got 131072'],
      [{ block: [{ path: 'b.img', id: 7 }] }, 'block[0].id must be a string of at most 20 printable ASCII characters, got 7'],
      [{ block: [{ path: 'b.img', id: 'X'.repeat(21) }] }, `block[0].id must be at most 20 printable ASCII characters, got "${'X'.repeat(21)}"`],
      [{ block: [{ path: 'b.img', readonly: true }] }, 'block[0].readonly is not a --block option (valid keys: path, ro, root, sparse, direct, o_direct, block-size, block_size, id), got {"path":"b.img","readonly":true}'],
      [{ block: [{ path: 'b.img', bootindex: 1 }] }, 'block[0].bootindex is a crosvm --block option that kvmkit does not support, got {"path":"b.img","bootindex":1}'],
      [{ block: ['b.img,block_size=1000'] }, 'block[0].block_size must be a power of two >= 512, got 1000'],
      [{ block: ['b.img,,ro'] }, 'block[0] has an empty item, got "b.img,,ro"'],
      [{ socket: '' }, 'socket must be the path of the control socket (or of a directory for it), got ""'],
      [{ socket: true }, 'socket must be the path of the control socket (or of a directory for it), got true'],
      [{ serial: 3 }, 'serial must be a list of one serial port ({"type": "stdout"} or a --serial string), got 3'],
      [{ serial: ['stdout', 'sink'] }, 'serial lists more than one serial port: kvmkit has one (COM1), got ["stdout","sink"]'],
      [{ serial: [{ type: 'syslog' }] }, 'serial[0].type is a crosvm serial type that kvmkit does not support (use stdout, file or sink), got "syslog"'],
      [{ serial: [{ type: 'tty' }] }, 'serial[0].type must be stdout, file or sink, got "tty"'],
      [{ serial: [{ type: 'file' }] }, 'serial[0].path is required with type=file, got {"type":"file"}'],
      [{ serial: [{ type: 'stdout', path: 'x' }] }, 'serial[0].path is only for type=file, got {"type":"stdout","path":"x"}'],
      [{ serial: [{ stdin: 'yes' }] }, 'serial[0].stdin must be true or false, got "yes"'],
      [{ serial: [{ console: false }] }, 'serial[0].console must be true: kvmkit\'s one serial port is the guest console, got false'],
      [{ serial: [{ num: 2 }] }, 'serial[0].num must be 1 (kvmkit has one serial port, COM1), got 2'],
      [{ serial: [{ earlycon: true }] }, 'serial[0].earlycon is a crosvm --serial option that kvmkit does not support, got {"earlycon":true}'],
      [{ serial: [{ colour: true }] }, 'serial[0].colour is not a --serial option (valid keys: type, path, stdin, console, hardware, num), got {"colour":true}'],
      [{ 'shared-dir': 1 }, 'shared-dir must be a string PATH:TAG:type=fs[:key=value...] or an array of them, got 1'],
      [{ 'shared-dir': ['/srv:tag'] }, 'shared-dir[0].type is required: add :type=fs (kvmkit shares directories with virtio-fs; crosvm\'s default p9 is not supported), got "/srv:tag"'],
      [{ 'shared-dir': ['/srv:tag:type=p9'] }, 'shared-dir[0].type must be fs: kvmkit has no virtio-9p device, got "p9"'],
      [{ 'shared-dir': ['/srv:tag:type=fs:cache=sometimes'] }, 'shared-dir[0].cache must be never, auto or always, got "sometimes"'],
      [{ 'shared-dir': ['/srv'] }, 'shared-dir[0].tag is required as the second field: PATH:TAG:type=fs, got "/srv"'],
      [{ 'no-balloon': 'yes' }, 'no-balloon must be true or false, got "yes"'],
      [{ cfg: 3 }, 'cfg must be a config file path or an array of them, got 3'],
      [{ cfg: [''] }, 'cfg[0] must be a config file path, got ""'],
      [{ cfg: '' }, 'cfg must be a config file path, got ""'],
      [{ cfg: ['a.json', 2] }, 'cfg must be a config file path or an array of them, got ["a.json",2]'],
    ];
    for (const [object, message] of cases) {
      const e = errorOf(() => parseConfig(object, { source: 'vm.json' }));
      expect(e, JSON.stringify(object)).toBeInstanceOf(ConfigFileError);
      expect(e.message, JSON.stringify(object)).toBe(`vm.json: ${message}`);
      expect(e.file).toBe('vm.json');
    }
  });

  it('unknown keys: typos get a hint, crosvm options kvmkit lacks are named as such', () => {
    expect(bad({ kernal: 'x' })).toBe('vm.json: kernal is not a kvmkit config option (valid keys: kernel, initrd, cpus, mem, params, block, socket, serial, shared-dir, no-balloon, cfg)');
    expect(bad({ shared_dir: 'x' })).toBe('vm.json: shared_dir is not a kvmkit config option (did you mean shared-dir?) (valid keys: kernel, initrd, cpus, mem, params, block, socket, serial, shared-dir, no-balloon, cfg)');
    expect(bad({ Kernel: 'x' })).toMatch(/^vm\.json: Kernel is not a kvmkit config option \(did you mean kernel\?\)/);
    expect(bad({ gpu: {} })).toBe('vm.json: gpu is a crosvm option that kvmkit does not support');
    expect(bad({ 'balloon-bias-mib': 1 })).toBe('vm.json: balloon-bias-mib is a crosvm option that kvmkit does not support');
  });

  it('files that cannot be read, are not JSON, or hold no object', () => {
    const dir = dirWith({ 'broken.json': '{"kernel": "k",}', 'list.json': '[1]', 'inc.json': { cfg: ['missing.json'] }, 'bad-inc.json': { cfg: ['bad-mem.json'] }, 'bad-mem.json': { mem: 1 } });
    expect(errorOf(() => loadConfigFiles(['nope.json'], { cwd: dir })).message).toBe(`nope.json: does not exist (${join(dir, 'nope.json')})`);
    expect(errorOf(() => loadConfigFiles(['broken.json'], { cwd: dir })).message).toMatch(/^broken\.json: is not valid JSON: /);
    expect(errorOf(() => loadConfigFiles(['list.json'], { cwd: dir })).message).toBe('list.json: must hold a JSON object of options ({"kernel": "bzImage", ...}), got [1]');
    expect(errorOf(() => loadConfigFiles(['inc.json'], { cwd: dir })).message).toBe(`missing.json (included from inc.json): does not exist (${join(dir, 'missing.json')})`);
    expect(errorOf(() => loadConfigFiles(['bad-inc.json'], { cwd: dir })).message).toBe('bad-mem.json (included from bad-inc.json): mem must be an integer number of MiB from 16 to 1048576, got 1');
    expect(errorOf(() => parseConfig(null)).message).toBe('config: must hold a JSON object of options ({"kernel": "bzImage", ...}), got null');
  });
});

describe('merge rules, for any files (fast-check)', () => {
  it('the last file that sets a once-only option wins, repeatable options concatenate in file order, and merging is associative', () => {
    const layer = fc.record(
      {
        kernel: fc.constantFrom('k1', 'k2', 'k3'),
        cpus: fc.integer({ min: 1, max: 254 }),
        mem: fc.integer({ min: 16, max: 4096 }),
        params: fc.array(fc.constantFrom('a', 'b=1', 'quiet'), { maxLength: 3 }),
        block: fc.array(fc.constantFrom('x.img', 'y.img,ro', 'z.img,id=Z'), { maxLength: 3 }),
      },
      { requiredKeys: [] },
    );
    fc.assert(
      fc.property(fc.array(layer, { minLength: 1, maxLength: 5 }), (objects) => {
        const dir = dirWith(Object.fromEntries(objects.map((o, i) => [`f${i}.json`, o])));
        const names = objects.map((_, i) => `f${i}.json`);
        const merged = loadConfigFiles(names, { cwd: dir });
        for (const key of ['kernel', 'cpus', 'mem'] as const) {
          const last = objects.filter((o) => o[key] !== undefined).at(-1);
          expect(merged[key]).toBe(last?.[key]);
        }
        expect(merged.params).toEqual(objects.flatMap((o) => o.params ?? []));
        expect(merged.block).toEqual(objects.flatMap((o) => (o.block ?? []).map(parseBlockOption)));
        // one file including all the others first gives the same as listing them
        writeFileSync(join(dir, 'all.json'), JSON.stringify({ cfg: names }));
        expect(loadConfigFiles(['all.json'], { cwd: dir })).toEqual(merged);
        const parsed = names.map((n) => loadConfigFiles([n], { cwd: dir }));
        const left = parsed.reduce((a, b) => mergeConfig(a, b), emptyConfig());
        const right = parsed.reduceRight((b, a) => mergeConfig(a, b), emptyConfig());
        expect(right).toEqual(left);
      }),
      { numRuns: 100 },
    );
  });
});
