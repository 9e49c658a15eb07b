/** The built CLI (dist/cli.js, from `npm run build`), run as a child process the way a user runs it. */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { ROOT } from '../helpers/env';

/** Path of the built CLI. */
export const CLI = join(ROOT, 'dist', 'cli.js');

/** How a CLI run ended. */
export interface CliResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Run `kvmkit ARGS` to its end without blocking this process's event loop (a scripted server or a
 * VM child in this process must keep answering meanwhile, which spawnSync would prevent).
 */
export function kvmkitAsync(args: string[]): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('exit', (status) => resolve({ status, stdout, stderr }));
  });
}
