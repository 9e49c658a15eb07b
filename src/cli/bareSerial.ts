/**
 * `kvmkit run --serial KERNEL`: `--serial` takes optional crosvm parameters (`--serial type=sink`),
 * and a bare `--serial` right before the kernel must not swallow the kernel as its parameters.
 * @module
 */

/** Whether `arg` reads as `--serial` parameters: `key=value` items or a bare serial type first. */
function looksLikeSerialParams(arg: string): boolean {
  const first = arg.split(',')[0]!;
  return arg.includes('=') || first === 'stdout' || first === 'file' || first === 'sink';
}

/**
 * `argv` with every bare `--serial` that is followed by something other than serial parameters
 * written as `--serial=` (the bare switch), so the next argument stays a positional one.
 */
export function bareSerialBeforeKernel(argv: readonly string[]): string[] {
  return argv.map((a, i) => (a === '--serial' && i + 1 < argv.length && !argv[i + 1]!.startsWith('-') && !looksLikeSerialParams(argv[i + 1]!) ? '--serial=' : a));
}
