import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CONTROL_COMMANDS, encodeResponse, parseRequest } from '../../src/control/protocol';

describe('control protocol: parseRequest', () => {
  it('accepts every command in its documented shape', () => {
    expect(parseRequest('{"command":"stop"}')).toEqual({ ok: true, request: { command: 'stop' } });
    expect(parseRequest('{"command":"suspend"}')).toEqual({ ok: true, request: { command: 'suspend' } });
    expect(parseRequest('{"command":"resume"}')).toEqual({ ok: true, request: { command: 'resume' } });
    expect(parseRequest(' {"command":"status"} ')).toEqual({ ok: true, request: { command: 'status' } });
    expect(parseRequest('{"command":"balloon","bytes":67108864}')).toEqual({ ok: true, request: { command: 'balloon', bytes: 67108864 } });
    expect(parseRequest('{"command":"balloon_stats"}')).toEqual({ ok: true, request: { command: 'balloon_stats' } });
    expect(parseRequest('{"bytes":2147483648,"command":"disk_resize","index":1}')).toEqual({
      ok: true, request: { command: 'disk_resize', index: 1, bytes: 2147483648 },
    });
  });

  it.each([
    ['', /^malformed JSON/],
    ['{"command":"stop"', /^malformed JSON/],
    ['null', /must be a JSON object like \{"command":"status"\}, got null/],
    ['[1,2]', /must be a JSON object.*got \[1,2\]/],
    ['"stop"', /must be a JSON object.*got "stop"/],
    ['{}', /needs a "command" \(one of stop, suspend, resume, status, balloon, balloon_stats, disk_resize\)/],
    ['{"command":"fly"}', /^unknown command "fly"; known: stop, suspend/],
    ['{"command":7}', /^unknown command 7;/],
    ['{"command":"__proto__"}', /^unknown command "__proto__"/],
    ['{"command":"toString"}', /^unknown command "toString"/],
    ['{"command":"stop","now":true}', /^invalid stop request: .*now/],
    ['{"command":"balloon"}', /^invalid balloon request: bytes: /],
    ['{"command":"balloon","bytes":-1}', /^invalid balloon request: bytes: /],
    ['{"command":"balloon","bytes":1.5}', /^invalid balloon request: bytes: /],
    ['{"command":"balloon","bytes":"64M"}', /^invalid balloon request: bytes: /],
    ['{"command":"balloon","bytes":1e300}', /^invalid balloon request: bytes: /],
    ['{"command":"disk_resize","bytes":4096}', /^invalid disk_resize request: index: /],
    ['{"command":"disk_resize","index":"0","bytes":4096}', /^invalid disk_resize request: index: /],
    ['{"command":"disk_resize","index":0,"bytes":null}', /^invalid disk_resize request: bytes: /],
  ])('refuses %s with a message saying why', (line, re) => {
    const r = parseRequest(line);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error).toMatch(re);
  });

  it('long values are cut in error messages', () => {
    const r = parseRequest(JSON.stringify({ command: 'x'.repeat(10_000) }));
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error.length).toBeLessThan(200);
  });

  it('property: any string gives a result or an error, never a throw, and only known commands pass', () => {
    const junk = fc.oneof(
      fc.string({ maxLength: 200 }),
      fc.json({ maxDepth: 3 }),
      fc.record({ command: fc.oneof(fc.constantFrom(...CONTROL_COMMANDS), fc.string()), bytes: fc.anything(), index: fc.anything() }, { requiredKeys: ['command'] })
        .map((o) => { try { return JSON.stringify(o) ?? 'undefined'; } catch { return 'unserializable'; } }),
    );
    fc.assert(fc.property(junk, (line) => {
      const r = parseRequest(line);
      if (r.ok) {
        expect(CONTROL_COMMANDS).toContain(r.request.command);
        if ('bytes' in r.request) expect(Number.isSafeInteger(r.request.bytes) && r.request.bytes >= 0).toBe(true);
        if ('index' in r.request) expect(Number.isInteger(r.request.index) && r.request.index >= 0).toBe(true);
      } else {
        expect(typeof r.error).toBe('string');
        expect(r.error.length).toBeGreaterThan(0);
      }
    }), { numRuns: 2000 });
  });
});

describe('control protocol: encodeResponse', () => {
  it('one line per response; bigints become numbers when exact, strings otherwise', () => {
    expect(encodeResponse({ ok: true, result: { a: 1n, b: 2n ** 60n } })).toBe('{"ok":true,"result":{"a":1,"b":"1152921504606846976"}}\n');
    expect(encodeResponse({ ok: false, error: 'line\nbreak' })).toBe('{"ok":false,"error":"line\\nbreak"}\n');
  });
});
