/**
 * A one-shot client of kvmkit's control socket (src/control/protocol.ts: newline-delimited JSON
 * over a Unix stream socket, `{"command":"status"}` answered by `{"ok":true,"result":...}` or
 * `{"ok":false,"error":"..."}`), for the `kvmkit stop|suspend|resume|status|balloon|balloon_stats|disk
 * resize` commands: one request, its answer within a time limit, and messages for a person at a
 * shell (`no kvmkit VM listens on SOCK`). Programs keep a connection with `ControlClient`.
 * @module
 */
import { createConnection } from 'node:net';
import { KvmkitError } from '../errors';
import type { ControlRequest, ControlResponse } from '../control/protocol';

/** A control request that could not be made or that the VM refused. */
export class ControlClientError extends KvmkitError {}

/** Longest answer line accepted (a status or balloon_stats answer is far smaller). */
const MAX_LINE = 1 << 20;

/**
 * Send one request to the VM listening on `socketPath` and return its `result`.
 * @throws ControlClientError when no VM listens there (`no kvmkit VM listens on SOCK`), the VM
 *   does not answer within `timeoutMs`, the answer is malformed, or the VM refused the request
 */
export function controlRequest(socketPath: string, request: ControlRequest, { timeoutMs = 10_000 } = {}): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ path: socketPath });
    let buffer = '';
    let settled = false;
    const finish = (err: Error | undefined, value?: unknown): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      if (err) reject(err);
      else resolve(value);
    };
    const timer = setTimeout(() => finish(new ControlClientError(`no answer to ${request.command} from ${socketPath} within ${timeoutMs} ms`)), timeoutMs);
    socket.setEncoding('utf8');
    socket.on('connect', () => socket.write(`${JSON.stringify(request)}\n`));
    socket.on('error', (e: NodeJS.ErrnoException) => {
      const noVm = e.code === 'ENOENT' || e.code === 'ECONNREFUSED' || e.code === 'ENOTSOCK';
      finish(new ControlClientError(noVm ? `no kvmkit VM listens on ${socketPath} (${e.code})` : `cannot reach ${socketPath}: ${e.message}`, { cause: e }));
    });
    socket.on('data', (chunk: string) => {
      buffer += chunk;
      const nl = buffer.indexOf('\n');
      if (nl < 0) {
        if (buffer.length > MAX_LINE) finish(new ControlClientError(`the answer from ${socketPath} is longer than ${MAX_LINE} bytes without a newline`));
        return;
      }
      try {
        finish(undefined, resultOf(JSON.parse(buffer.slice(0, nl)) as unknown, request, socketPath));
      } catch (e) {
        finish(e instanceof ControlClientError ? e : new ControlClientError(`malformed answer from ${socketPath}: ${(e as Error).message}`, { cause: e }));
      }
    });
    socket.on('end', () => finish(new ControlClientError(`the VM on ${socketPath} closed the connection without answering ${request.command}`)));
  });
}

function resultOf(answer: unknown, request: ControlRequest, socketPath: string): unknown {
  if (answer === null || typeof answer !== 'object' || typeof (answer as { ok?: unknown }).ok !== 'boolean') {
    throw new ControlClientError(`malformed answer from ${socketPath}: expected {"ok": true|false, ...}, got ${JSON.stringify(answer)}`);
  }
  const a = answer as ControlResponse;
  if (!a.ok) throw new ControlClientError(`${request.command} failed: ${typeof a.error === 'string' ? a.error : JSON.stringify(a.error)}`);
  return a.result;
}
