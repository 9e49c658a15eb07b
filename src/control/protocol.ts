/**
 * The control socket protocol: newline-delimited JSON over a Unix stream socket, one response
 * line per request line, in order (README.md beside this file has the full description).
 *
 * ```text
 * → {"command":"status"}
 * ← {"ok":true,"result":{"state":"running","cpus":1,...}}
 * → {"command":"disk_resize","index":0,"bytes":2147483648}
 * ← {"ok":true,"result":{"index":0,"bytes":2147483648}}
 * → {"command":"fly"}
 * ← {"ok":false,"error":"unknown command \"fly\"; known: stop, suspend, resume, status, balloon, balloon_stats, disk_resize"}
 * ```
 * @module
 */
import { z } from 'zod';

/** Longest request line the server reads (bytes, without the newline); longer lines are answered with an error. */
export const MAX_REQUEST_LINE = 64 * 1024;

/** Every command the server knows, in the order the protocol lists them. */
export const CONTROL_COMMANDS = ['stop', 'suspend', 'resume', 'status', 'balloon', 'balloon_stats', 'disk_resize'] as const;

/** A command name. */
export type ControlCommand = (typeof CONTROL_COMMANDS)[number];

const byteCount = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);

/** zod schemas of the requests, one per command (unknown keys are refused, so typos show). */
const requestSchemas = {
  stop: z.strictObject({ command: z.literal('stop') }),
  suspend: z.strictObject({ command: z.literal('suspend') }),
  resume: z.strictObject({ command: z.literal('resume') }),
  status: z.strictObject({ command: z.literal('status') }),
  balloon: z.strictObject({ command: z.literal('balloon'), bytes: byteCount }),
  balloon_stats: z.strictObject({ command: z.literal('balloon_stats') }),
  disk_resize: z.strictObject({ command: z.literal('disk_resize'), index: z.number().int().nonnegative().max(0xffff), bytes: byteCount }),
} satisfies Record<ControlCommand, z.ZodType>;

/** A request, as sent on the socket (one JSON object per line). */
export type ControlRequest = { [C in ControlCommand]: z.infer<(typeof requestSchemas)[C]> }[ControlCommand];

/** A response line: the command's result, or why it failed. */
export type ControlResponse<T = unknown> = { ok: true; result: T } | { ok: false; error: string };

/** What {@link parseRequest} returns: the request, or the error message to answer. */
export type ParsedRequest = { ok: true; request: ControlRequest } | { ok: false; error: string };

const isCommand = (c: unknown): c is ControlCommand => typeof c === 'string' && (CONTROL_COMMANDS as readonly string[]).includes(c);

/**
 * Parse and validate one request line (without its newline). Never throws: any problem becomes
 * an error message naming what was wrong (`malformed JSON`, `unknown command "x"`, `bytes must be
 * an integer >= 0`).
 */
export function parseRequest(line: string): ParsedRequest {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch (e) {
    return { ok: false, error: `malformed JSON: ${(e as Error).message}` };
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    return { ok: false, error: `a request must be a JSON object like {"command":"status"}, got ${describe(value)}` };
  }
  const command = (value as Record<string, unknown>).command;
  if (command === undefined) return { ok: false, error: `a request needs a "command" (one of ${CONTROL_COMMANDS.join(', ')})` };
  if (!isCommand(command)) {
    return { ok: false, error: `unknown command ${describe(command)}; known: ${CONTROL_COMMANDS.join(', ')}` };
  }
  const r = requestSchemas[command].safeParse(value);
  if (r.success) return { ok: true, request: r.data as ControlRequest };
  const issues = r.error.issues.map((i) => `${i.path.length ? i.path.join('.') : command}: ${i.message}`);
  return { ok: false, error: `invalid ${command} request: ${issues.join('; ')}` };
}

/** A short, bounded description of a JSON value for error messages. */
function describe(v: unknown): string {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

/** Serialize a response as one line (with its newline). BigInts become numbers when exact, else strings. */
export function encodeResponse(response: ControlResponse): string {
  return `${JSON.stringify(response, (_k, v: unknown) => (typeof v === 'bigint' ? (v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= -BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v.toString()) : v))}\n`;
}
