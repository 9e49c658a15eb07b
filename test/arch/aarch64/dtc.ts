/**
 * Test helpers around Debian's device-tree-compiler (dtc, fdtget) and a small parser of the DTS
 * text `dtc -I dtb -O dts` prints, so tests can check our blobs with a tool we did not write.
 */

import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

function toolWorks(tool: string): boolean {
  const r = spawnSync(tool, ['--version'], { encoding: 'utf8' });
  return r.error === undefined && r.status === 0;
}

/** Whether dtc and fdtget are installed; when not, dtc tests skip and say why. */
export const haveDtc = toolWorks('dtc') && spawnSync('fdtget', ['-h'], { encoding: 'utf8' }).error === undefined;
if (!haveDtc) {
  console.warn(
    '\n*** SKIPPING dtc-based aarch64 device tree tests: `dtc`/`fdtget` not found. ' +
      'Install them with `apt-get install -y device-tree-compiler`. ***\n',
  );
}

/** Result of running a tool. */
export interface ToolRun {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Run `tool` with `args` on a blob written to a temporary file (its path replaces `{}` in args). */
export function runOnBlob(tool: string, args: string[], blob: Uint8Array): ToolRun & { output?: Uint8Array } {
  const dir = mkdtempSync(join(tmpdir(), 'kvmkit-fdt-'));
  try {
    const input = join(dir, 'in.dtb');
    const output = join(dir, 'out.bin');
    writeFileSync(input, blob);
    const r = spawnSync(tool, args.map((a) => (a === '{}' ? input : a === '{out}' ? output : a)), { encoding: 'utf8' });
    if (r.error !== undefined) throw r.error;
    let out: Uint8Array | undefined;
    try {
      out = new Uint8Array(readFileSync(output));
    } catch {
      out = undefined;
    }
    return { status: r.status, stdout: r.stdout, stderr: r.stderr, ...(out === undefined ? {} : { output: out }) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** `dtc -I dtb -O dts` of a blob. */
export function decompile(blob: Uint8Array): ToolRun {
  return runOnBlob('dtc', ['-I', 'dtb', '-O', 'dts', '{}'], blob);
}

/** One value piece of a DTS property: `<cells>`, `"string"` or `[bytes]`. */
export type DtsPiece = { kind: 'cells'; cells: number[] } | { kind: 'string'; value: string } | { kind: 'bytes'; bytes: number[] };

/** A node of parsed DTS text. */
export interface DtsNode {
  name: string;
  properties: Map<string, DtsPiece[]>;
  children: DtsNode[];
}

/**
 * Parse the DTS text dtc prints for a blob: `/dts-v1/;`, optional `/memreserve/ a b;` lines, then
 * the root node. Handles `name;`, `name = <..>, "..", [..];` and nested nodes; enough for dtc's
 * own output, not for hand-written sources (no labels, includes or expressions).
 */
export function parseDts(text: string): { root: DtsNode; memreserve: [bigint, bigint][] } {
  let i = 0;
  const ws = (): void => {
    while (i < text.length && /\s/.test(text[i]!)) i++;
  };
  const expect = (s: string): void => {
    ws();
    if (!text.startsWith(s, i)) throw new Error(`DTS parse: expected "${s}" at ${i}: ${JSON.stringify(text.slice(i, i + 40))}`);
    i += s.length;
  };
  const word = (): string => {
    ws();
    const m = /^[^\s=;{}<>"[\]]+/.exec(text.slice(i));
    if (m === null) throw new Error(`DTS parse: expected a name at ${i}: ${JSON.stringify(text.slice(i, i + 40))}`);
    i += m[0].length;
    return m[0];
  };
  const string = (): string => {
    expect('"');
    let out = '';
    for (;;) {
      const c = text[i++];
      if (c === undefined) throw new Error('DTS parse: unterminated string');
      if (c === '"') return out;
      if (c !== '\\') {
        out += c;
        continue;
      }
      const e = text[i++]!;
      const simple: Record<string, string> = { a: '\x07', b: '\b', t: '\t', n: '\n', v: '\v', f: '\f', r: '\r', '\\': '\\', '"': '"', "'": "'" };
      if (e in simple) out += simple[e];
      else if (e === 'x') {
        const m = /^[0-9a-fA-F]{1,2}/.exec(text.slice(i))!;
        out += String.fromCharCode(parseInt(m[0], 16));
        i += m[0].length;
      } else if (e === '0') {
        // dtc 1.6.1 writes an embedded NUL as "\0" without guarding a following digit ("\00" is
        // NUL then '0'), so in its output "\0" is exactly one NUL, never the start of an octal escape.
        out += '\0';
      } else throw new Error(`DTS parse: unknown escape \\${e}`);
    }
  };
  const piece = (): DtsPiece => {
    ws();
    if (text[i] === '"') return { kind: 'string', value: string() };
    if (text[i] === '<') {
      i++;
      const cells: number[] = [];
      for (;;) {
        ws();
        if (text[i] === '>') {
          i++;
          return { kind: 'cells', cells };
        }
        const m = /^(0x[0-9a-fA-F]+|\d+)/.exec(text.slice(i));
        if (m === null) throw new Error(`DTS parse: expected a cell at ${i}: ${JSON.stringify(text.slice(i, i + 40))}`);
        cells.push(Number(m[0]));
        i += m[0].length;
      }
    }
    if (text[i] === '[') {
      i++;
      const bytes: number[] = [];
      for (;;) {
        ws();
        if (text[i] === ']') {
          i++;
          return { kind: 'bytes', bytes };
        }
        bytes.push(parseInt(text.slice(i, i + 2), 16));
        i += 2;
      }
    }
    throw new Error(`DTS parse: unexpected value at ${i}: ${JSON.stringify(text.slice(i, i + 40))}`);
  };
  const node = (name: string): DtsNode => {
    expect('{');
    const n: DtsNode = { name, properties: new Map(), children: [] };
    for (;;) {
      ws();
      if (text[i] === '}') {
        i++;
        expect(';');
        return n;
      }
      const w = word();
      ws();
      if (text[i] === '{') n.children.push(node(w));
      else if (text[i] === ';') {
        i++;
        n.properties.set(w, []);
      } else {
        expect('=');
        const pieces = [piece()];
        for (;;) {
          ws();
          if (text[i] === ',') {
            i++;
            pieces.push(piece());
          } else break;
        }
        expect(';');
        n.properties.set(w, pieces);
      }
    }
  };
  expect('/dts-v1/;');
  const memreserve: [bigint, bigint][] = [];
  for (;;) {
    ws();
    if (!text.startsWith('/memreserve/', i)) break;
    i += '/memreserve/'.length;
    const a = BigInt(word());
    const b = BigInt(word());
    expect(';');
    memreserve.push([a, b]);
  }
  expect('/');
  const root = node('');
  ws();
  if (i !== text.length) throw new Error(`DTS parse: trailing text at ${i}`);
  return { root, memreserve };
}

/** The bytes a DTS property value stands for (cells big-endian, strings NUL-terminated). */
export function dtsValueBytes(pieces: DtsPiece[]): Uint8Array {
  const out: number[] = [];
  for (const p of pieces) {
    if (p.kind === 'cells') for (const c of p.cells) out.push(c >>> 24, (c >>> 16) & 0xff, (c >>> 8) & 0xff, c & 0xff);
    else if (p.kind === 'bytes') out.push(...p.bytes);
    else {
      for (const ch of p.value) out.push(ch.charCodeAt(0));
      out.push(0);
    }
  }
  return new Uint8Array(out);
}

/** The node at `path` in parsed DTS, or undefined. */
export function dtsNode(root: DtsNode, path: string): DtsNode | undefined {
  let n: DtsNode | undefined = root;
  for (const part of path.split('/').filter((p) => p !== '')) {
    n = n.children.find((c) => c.name === part);
    if (n === undefined) return undefined;
  }
  return n;
}

/** The cells of property `name` of the node at `path` (one `<...>` piece expected). */
export function dtsCells(root: DtsNode, path: string, name: string): number[] {
  const pieces = dtsNode(root, path)?.properties.get(name);
  if (pieces === undefined) throw new Error(`no property ${path}:${name} in DTS`);
  return pieces.flatMap((p) => (p.kind === 'cells' ? p.cells : []));
}
