/**
 * Where the worker-thread scripts tsup builds (tsup.config.ts: `vcpu-worker`, `fs-worker`) are:
 * beside the running bundle (dist/), or in the package's dist/ when kvmkit runs from its sources
 * (the tests).
 * @module
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { KvmkitError } from './errors';

const found = new Map<string, string>();

/**
 * The path of the built worker script `name` (`vcpu-worker.js`).
 * @throws KvmkitError when it was not built (`npm run build`)
 */
export function builtWorkerPath(name: string, what: string): string {
  const known = found.get(name);
  if (known) return known;
  const here = typeof __filename === 'string' ? dirname(__filename) : dirname(fileURLToPath(import.meta.url));
  // dist/ when running the bundle; src/ → ../dist when running the sources (the tests)
  const candidates = [join(here, name), join(here, '..', 'dist', name)];
  const path = candidates.find((p) => existsSync(p));
  if (!path) throw new KvmkitError(`kvmkit's ${what} script is missing (looked in ${candidates.join(', ')}); run \`npm run build\``);
  found.set(name, path);
  return path;
}

/** The parent's Node.js flags a worker can take (`--input-type`, from `node -e`, is refused by workers). */
export function workerExecArgv(): string[] {
  return process.execArgv.filter((a) => !a.startsWith('--input-type'));
}
