/**
 * A minimal QMP client (QEMU Machine Protocol, JSON lines over a Unix socket): the greeting,
 * `qmp_capabilities`, then commands matched to their answers by `id`. Events are ignored.
 */
import { createConnection, type Socket } from 'node:net';

/** An `{"error": …}` answer. */
export class QmpError extends Error {
  constructor(command: string, klass: string, desc: string) {
    super(`QMP ${command} failed: ${klass}: ${desc}`);
    this.name = 'QmpError';
  }
}

type Pending = { command: string; resolve: (v: unknown) => void; reject: (e: Error) => void };

export class Qmp {
  private buffer = '';
  private nextId = 1;
  private readonly pending = new Map<string, Pending>();
  private greeted: Promise<void>;

  private constructor(private readonly socket: Socket) {
    let greet!: () => void;
    this.greeted = new Promise((r) => (greet = r));
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => {
      this.buffer += d;
      let nl: number;
      while ((nl = this.buffer.indexOf('\n')) >= 0) {
        const line = this.buffer.slice(0, nl).trim();
        this.buffer = this.buffer.slice(nl + 1);
        if (!line) continue;
        const msg = JSON.parse(line) as { QMP?: unknown; id?: string; return?: unknown; error?: { class: string; desc: string } };
        if (msg.QMP) greet();
        else if (msg.id !== undefined) {
          const p = this.pending.get(msg.id);
          this.pending.delete(msg.id);
          if (!p) continue;
          if (msg.error) p.reject(new QmpError(p.command, msg.error.class, msg.error.desc));
          else p.resolve(msg.return);
        }
      }
    });
    socket.on('close', () => {
      for (const p of this.pending.values()) p.reject(new Error(`QMP socket closed before ${p.command} answered`));
      this.pending.clear();
    });
  }

  /** Connects (retrying while QEMU creates the socket) and negotiates capabilities. */
  static async connect(path: string, timeoutMs = 10_000): Promise<Qmp> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      try {
        const socket = await new Promise<Socket>((resolve, reject) => {
          const s = createConnection(path, () => resolve(s));
          s.once('error', reject);
        });
        const qmp = new Qmp(socket);
        await qmp.greeted;
        await qmp.execute('qmp_capabilities');
        return qmp;
      } catch (e) {
        if (Date.now() > until) throw new Error(`cannot connect to QMP at ${path}: ${(e as Error).message}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  }

  /** Runs one command; resolves with its `return` value. */
  execute(command: string, args?: Record<string, unknown>): Promise<unknown> {
    const id = String(this.nextId++);
    return new Promise((resolve, reject) => {
      this.pending.set(id, { command, resolve, reject });
      this.socket.write(`${JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}), id })}\n`);
    });
  }

  close(): void {
    this.socket.destroy();
  }
}
