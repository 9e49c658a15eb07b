/**
 * Expect-style helpers over a guest console: everything the guest printed is kept, so `waitFor`
 * finds text printed before it was called.
 * @module
 */
import { TimeoutError } from '../errors';

/** Options of {@link SerialConsole.waitFor}. */
export interface WaitForOptions {
  /** Give up after this many milliseconds (default 30 000). */
  timeoutMs?: number;
  /** Search only output printed after this offset in {@link SerialConsole.output} (default: where the previous successful waitFor ended). */
  from?: number;
}

/** The guest's serial console as seen by a test or program. */
export class SerialConsole {
  private text = '';
  private cursor = 0;
  private readonly decoder = new TextDecoder('utf-8', { fatal: false });
  private waiters = new Set<() => void>();
  private ended?: string;

  /** @internal */
  constructor(private readonly sink: (bytes: Uint8Array) => void) {}

  /** Everything the guest has printed so far. */
  get output(): string {
    return this.text;
  }

  /** Type into the guest's console. */
  write(data: string | Uint8Array): void {
    this.sink(typeof data === 'string' ? new TextEncoder().encode(data) : data);
  }

  /**
   * Resolve with the match when the console shows `pattern`; searches from where the previous
   * successful `waitFor` ended, so consecutive calls walk forward through the output.
   * Rejects with {@link TimeoutError} (quoting the last output) on timeout or when the VM ends first.
   */
  waitFor(pattern: string | RegExp, options: WaitForOptions = {}): Promise<RegExpExecArray> {
    const timeoutMs = options.timeoutMs ?? 30_000;
    const from = options.from ?? this.cursor;
    const re = typeof pattern === 'string' ? new RegExp(pattern.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')) : new RegExp(pattern.source, pattern.flags.replace('g', ''));
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        const m = re.exec(this.text.slice(from));
        if (m) {
          m.index += from;
          this.cursor = m.index + m[0].length;
          finish();
          resolve(m);
          return true;
        }
        if (this.ended !== undefined) {
          finish();
          reject(new TimeoutError(`console never showed ${re} before the VM ended (${this.ended}); last output: ${JSON.stringify(this.text.slice(-400))}`));
          return true;
        }
        return false;
      };
      const timer = setTimeout(() => {
        finish();
        reject(new TimeoutError(`console did not show ${re} within ${timeoutMs} ms; last output: ${JSON.stringify(this.text.slice(-400))}`));
      }, timeoutMs);
      const finish = (): void => {
        clearTimeout(timer);
        this.waiters.delete(waiter);
      };
      const waiter = (): void => void check();
      if (!check()) this.waiters.add(waiter);
    });
  }

  /** @internal Append guest output. */
  push(chunk: Uint8Array): void {
    this.text += this.decoder.decode(chunk, { stream: true });
    for (const w of [...this.waiters]) w();
  }

  /** @internal The VM ended: pending waits fail now instead of at their timeout. */
  end(reason: string): void {
    this.ended = reason;
    for (const w of [...this.waiters]) w();
  }
}
