/**
 * A stand-in for a VM's control server: a Unix socket server that records each request line and
 * answers as a test scripts it (or not at all, or with junk), for the client's tests without a VM.
 */
import { mkdtempSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A server listening on a fresh socket path. */
export interface ScriptedServer {
  path: string;
  /** Every request line received so far, parsed. */
  requests: unknown[];
}

/** A set of scripted servers, each on a fresh path in one temporary directory; `closeAll()` in afterEach. */
export class ScriptedServers {
  readonly dir = mkdtempSync(join(tmpdir(), 'kvmkit-ctl-'));
  #servers: Server[] = [];
  #n = 0;

  /** A server that answers each request line with `answer(request, socket)` (undefined: say nothing). */
  async start(answer: (request: unknown, sock: Socket) => string | undefined): Promise<ScriptedServer> {
    const path = join(this.dir, `s${this.#n++}.sock`);
    const requests: unknown[] = [];
    const server = createServer((sock) => {
      let buf = '';
      sock.setEncoding('utf8');
      sock.on('data', (d: string) => {
        buf += d;
        for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
          const req = JSON.parse(buf.slice(0, nl)) as unknown;
          buf = buf.slice(nl + 1);
          requests.push(req);
          const a = answer(req, sock);
          if (a !== undefined) sock.write(a);
        }
      });
      sock.on('error', () => undefined); // a client that gives up mid-answer (a timeout test) resets the connection
    });
    this.#servers.push(server);
    await new Promise<void>((r) => server.listen(path, r));
    return { path, requests };
  }

  /** Close every server started so far. */
  async closeAll(): Promise<void> {
    await Promise.all(this.#servers.splice(0).map((s) => new Promise((r) => s.close(r))));
  }
}
