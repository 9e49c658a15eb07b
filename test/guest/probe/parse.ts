/**
 * Parser for the probe's serial output (test/guest/probe/README.md, "PROBE lines").
 *
 * Every result is one line `PROBE <first>[ <k>=<v> | <word> ...]`:
 *   PROBE hello entry=64 bootproto=0x020f boot_params=0x7000
 *      -> { key: 'hello', entry: '64', bootproto: '0x020f', boot_params: '0x7000' }
 *   PROBE e820_count=3 ram_bytes=268435456
 *      -> { key: 'e820_count', e820_count: '3', ram_bytes: '268435456' }
 *   PROBE cmdline="console=ttyS0 a=\"b c\""
 *      -> { key: 'cmdline', cmdline: 'console=ttyS0 a="b c"' }
 *   PROBE cpu apic=1 up
 *      -> { key: 'cpu', apic: '1', up: '' }
 * `key` is the name of the first word (before any `=`). Later bare words map to ''. Quoted
 * values use the escapes \\ \" and \xHH (the probe emits these for quotes, backslashes and
 * non-printable bytes). The probe never emits a field named `key` after the first word.
 */

export type ProbeRecord = Record<string, string> & { key: string };

/** Decode the body of a quoted value (without the surrounding quotes). */
function unescape(s: string): string {
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c !== '\\' || i + 1 >= s.length) {
      out += c;
      continue;
    }
    const n = s[++i];
    if (n === 'x' && /^[0-9a-fA-F]{2}$/.test(s.slice(i + 1, i + 3))) {
      out += String.fromCharCode(parseInt(s.slice(i + 1, i + 3), 16));
      i += 2;
    } else {
      out += n;
    }
  }
  return out;
}

/** Split the text after `PROBE ` into [name, value | undefined] pairs. */
function tokenize(body: string): Array<[string, string | undefined]> {
  const out: Array<[string, string | undefined]> = [];
  let i = 0;
  const n = body.length;
  while (i < n) {
    while (i < n && body[i] === ' ') i++;
    if (i >= n) break;
    let j = i;
    while (j < n && body[j] !== ' ' && body[j] !== '=') j++;
    const name = body.slice(i, j);
    if (j >= n || body[j] === ' ') {
      out.push([name, undefined]);
      i = j;
      continue;
    }
    j++; // past '='
    if (body[j] === '"') {
      let k = j + 1;
      while (k < n && body[k] !== '"') k += body[k] === '\\' ? 2 : 1;
      out.push([name, unescape(body.slice(j + 1, Math.min(k, n)))]);
      i = k + 1;
    } else {
      let k = j;
      while (k < n && body[k] !== ' ') k++;
      out.push([name, body.slice(j, k)]);
      i = k;
    }
  }
  return out;
}

/**
 * Find `PROBE ` in one line of output (it may be preceded by firmware noise such as SeaBIOS's
 * "Booting from ROM..") and return the text from `PROBE` on, or null.
 */
export function probeLineText(line: string): string | null {
  const clean = line.replace(/\r/g, '');
  const m = /(?:^|[^A-Za-z0-9_])(PROBE .*)$/.exec(clean) ?? /^(PROBE .*)$/.exec(clean);
  return m ? m[1]!.trimEnd() : null;
}

/** Parse one line; null if it is not a PROBE line. */
export function parseProbeLine(line: string): ProbeRecord | null {
  const text = probeLineText(line);
  if (text === null) return null;
  const tokens = tokenize(text.slice('PROBE '.length));
  if (tokens.length === 0) return null;
  const rec: Record<string, string> = { key: tokens[0]![0] };
  for (const [name, value] of tokens) rec[name] = value ?? '';
  return rec as ProbeRecord;
}

/** Parse all PROBE lines of a serial transcript, in order. */
export function parseProbeLines(text: string): ProbeRecord[] {
  const out: ProbeRecord[] = [];
  for (const line of text.split('\n')) {
    const r = parseProbeLine(line);
    if (r) out.push(r);
  }
  return out;
}

/** The PROBE lines (from `PROBE` on, without CR) of a serial transcript. */
export function probeLines(text: string): string[] {
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const t = probeLineText(line);
    if (t !== null) out.push(t);
  }
  return out;
}

/** FNV-1a 64 of a buffer as 16 lowercase hex digits, as the probe prints for the initrd. */
export function fnv1a64(data: Uint8Array): string {
  // two 32-bit halves: much faster than BigInt per byte
  let hi = 0xcbf29ce4 >>> 0;
  let lo = 0x84222325 >>> 0;
  for (let i = 0; i < data.length; i++) {
    lo = (lo ^ data[i]!) >>> 0;
    // (hi:lo) * 0x100000001b3 = (hi:lo) * 0x1b3 + (lo << 40)   (mod 2^64)
    const loMul = lo * 0x1b3;
    const carry = Math.floor(loMul / 0x100000000);
    const newLo = loMul >>> 0;
    hi = (Math.imul(hi, 0x1b3) + carry + ((lo << 8) >>> 0)) >>> 0;
    lo = newLo;
  }
  return hi.toString(16).padStart(8, '0') + lo.toString(16).padStart(8, '0');
}
