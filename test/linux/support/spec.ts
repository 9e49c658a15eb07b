/**
 * A Linux check written once and booted on two VMMs (kvmkit, and QEMU TCG as the reference):
 * the devices in a VMM-neutral form, the guest script, and the host actions the script asks for
 * mid-run. See twins.ts for how a test file uses it.
 */

/** A virtio device, in terms both VMMs can build. Order matters: PCI slots and /dev/vdX follow it. */
export type DeviceSpec =
  | {
      kind: 'blk';
      /** Raw image file. */
      path: string;
      ro?: boolean;
      /** The root disk: `root=/dev/vdX ro|rw` (kvmkit adds it itself; the QEMU twin adds the same). */
      root?: boolean;
      /** Serial (GET_ID). */
      id?: string;
      /** Logical block size. */
      blockSize?: number;
      /** DISCARD/WRITE_ZEROES punch holes in the file (kvmkit default true; QEMU `discard=unmap`). */
      sparse?: boolean;
      /** Open the image with O_DIRECT (kvmkit `directIo`; QEMU `cache.direct=on`). */
      directIo?: boolean;
    }
  | { kind: 'rng' }
  | { kind: 'console' }
  | {
      kind: 'balloon';
      /** VIRTIO_BALLOON_F_DEFLATE_ON_OOM (kvmkit default true; QEMU `deflate-on-oom`). With it Linux keeps MemTotal and MemFree drops. */
      deflateOnOom?: boolean;
    }
  | {
      kind: 'fs';
      sharedDir: string;
      tag: string;
      /** never | auto | always (QEMU's virtiofsd: none | auto | always). */
      cache?: 'never' | 'auto' | 'always';
      /**
       * Turns the path allowlist on with these paths allowed (kvmkit `allowedPaths`, plus an
       * `allowlistSocket` the host's steps use). QEMU's
       * virtiofsd has no allowlist: its twin moves the top-level entries not allowed out of the
       * share until allowed (see qemuBoot.ts), which is what the guest must see either way.
       */
      allowedPaths?: string[];
    };

/** What a step can do to the running machine, the same on both VMMs. */
export interface HostControl {
  /** Resize the `index`-th block device (0-based) to `bytes` (kvmkit `vm.resizeDisk`, QMP `block_resize`). */
  resizeDisk(index: number, bytes: number): Promise<void>;
  /** Set the balloon to take `bytes` from the guest (kvmkit `vm.balloon`; QMP `balloon` with mem - bytes). */
  balloon(bytes: number): Promise<void>;
  /** Allow `paths` on the `fs`-th virtio-fs device (0-based among them; kvmkit: AddPaths on its allowlist socket). */
  allowPaths(fs: number, paths: string[]): Promise<void>;
  /** Revoke `paths` on the `fs`-th virtio-fs device (kvmkit: RemovePaths on its allowlist socket). */
  revokePaths(fs: number, paths: string[]): Promise<void>;
  /** Type into the virtio console (hvc0). */
  writeConsole(text: string): Promise<void>;
  /** Everything the guest wrote to hvc0 so far. */
  consoleOutput(): string;
}

/** One boot's worth of checks. */
export interface LinuxCheck {
  devices: DeviceSpec[];
  /** Guest shell script, run by the fixture's init (kvmkit.runz); may call `step NAME`. */
  script: string;
  /** Extra kernel parameters (both VMMs). */
  params?: string[];
  cpus?: number;
  /** Guest RAM in MiB (default 512). */
  mem?: number;
  /**
   * Host actions for `step NAME` in the script: the guest prints `KVMKIT-STEP NAME` and waits for
   * the host's answer on the serial console; the host runs the action and answers `ok`, or
   * `fail` when it threw (the script then exits with status 70 and the error is in stepErrors).
   */
  steps?: Record<string, (ctl: HostControl) => Promise<void> | void>;
}

/** The result of one boot. */
export interface TwinRun {
  vmm: 'kvmkit' | 'qemu';
  /** The kernel command line the guest got. */
  cmdline: string;
  /** Serial console lines, terminal escapes and CRs removed. */
  lines: string[];
  /** The raw serial console. */
  output: string;
  /** What the guest wrote to hvc0. */
  console: string;
  /** The script's exit status from the KVMKIT-EXIT line, if it got there. */
  exitStatus: number | undefined;
  /** The machine powered off by itself (not killed at the time limit). */
  poweredOff: boolean;
  ms: number;
  /** Steps whose host action failed, with the error. */
  stepErrors: string[];
  /** Steps the host ran, in order. */
  stepsRun: string[];
}

/** Marker of a step request (guest -> host). */
export const STEP_MARKER = 'KVMKIT-STEP';

/**
 * Shell functions every check script starts with:
 *   step NAME      ask the host to run steps[NAME] and wait for it (5 minutes at most)
 *   val KEY TEXT   print `@KEY TEXT` on a line of its own, for {@link value}
 */
export const SCRIPT_PRELUDE = `step() {
  printf '\\n${STEP_MARKER} %s\\n' "$1"
  ack=
  read -t 300 -r ack
  [ "$ack" = ok ] || { echo "KVMKIT-STEP-FAILED $1 $ack"; exit 70; }
}
val() { k="$1"; shift; printf '\\n@%s %s\\n' "$k" "$*"; }
`;

// eslint-disable-next-line no-control-regex
const ESCAPES = /\x1b(\[[0-9;?]*[A-Za-z]|.)/g;

/** Console text as lines, without terminal escapes (SeaBIOS clears the screen) or CRs. */
export function consoleLines(text: string): string[] {
  return text.replace(ESCAPES, '').split(/\r?\n/).map((l) => l.replace(/\r/g, ''));
}

/** The text of the first `@KEY text` line (from `val KEY text`), or undefined. */
export function value(run: TwinRun, key: string): string | undefined {
  const prefix = `@${key} `;
  const line = run.lines.find((l) => l.startsWith(prefix) || l === `@${key}`);
  return line === undefined ? undefined : line.slice(prefix.length).trim();
}

/** Every `@KEY text` line's text, in order. */
export function values(run: TwinRun, key: string): string[] {
  const prefix = `@${key} `;
  return run.lines.filter((l) => l.startsWith(prefix)).map((l) => l.slice(prefix.length).trim());
}

/** `value` as a number; NaN when missing. */
export function numberValue(run: TwinRun, key: string): number {
  const v = value(run, key);
  return v === undefined ? Number.NaN : Number(v);
}

/**
 * Watches console output for `KVMKIT-STEP NAME` lines and runs the steps one at a time, in order,
 * answering each through `answer` ("ok\n" or "fail ...\n").
 */
export class StepRunner {
  readonly errors: string[] = [];
  readonly ran: string[] = [];
  private seen = 0;
  private chain: Promise<void> = Promise.resolve();

  constructor(
    private readonly steps: LinuxCheck['steps'],
    private readonly ctl: HostControl,
    private readonly answer: (text: string) => void,
  ) {}

  /** Feed the whole console output so far. */
  onOutput(all: string): void {
    // Whole lines only: output arrives in chunks, and `$` would also match a name cut short.
    const re = new RegExp(`^${STEP_MARKER} (\\S+)\\r?\\n`, 'gm');
    const found = [...all.replace(ESCAPES, '').matchAll(re)].map((m) => m[1]!);
    for (; this.seen < found.length; this.seen++) {
      const name = found[this.seen]!;
      this.chain = this.chain.then(() => this.run(name));
    }
  }

  /** Resolves when every step requested so far has been answered. */
  idle(): Promise<void> {
    return this.chain;
  }

  private async run(name: string): Promise<void> {
    const action = this.steps?.[name];
    this.ran.push(name);
    try {
      if (!action) throw new Error(`the check has no step named ${name}`);
      await action(this.ctl);
      this.answer('ok\n');
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      this.errors.push(`${name}: ${msg}`);
      this.answer(`fail ${msg.replace(/\s+/g, '_').slice(0, 200)}\n`);
    }
  }
}
