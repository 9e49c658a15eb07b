/**
 * A probe image that has a given PROBE_TEST: the shared fixture (test/fixtures/probe.bin, built by
 * `npm test`'s set-up) when it already contains the test's name, else a fresh build into a
 * temporary directory (a direct `vitest` run after the C file was added, before the fixture was
 * rebuilt). Used by the control and resize e2e tests.
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildProbe } from '../guest/probe/qemu';
import { ensureProbe } from '../helpers/env';

const built = new Map<string, string>();

/** Path of a probe image whose `probe.test=` list knows `test`. */
export function probeWithTest(test: string): string {
  const fixture = ensureProbe();
  if (readFileSync(fixture).includes(Buffer.from(`${test}\0`))) return fixture;
  let image = built.get(test);
  if (!image) {
    image = buildProbe(mkdtempSync(join(tmpdir(), 'kvmkit-probe-')));
    built.set(test, image);
  }
  return image;
}
