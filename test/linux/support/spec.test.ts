// The Linux twins read guest output to decide which host action to run (StepRunner) and what the
// guest found (value): both must hold however the console output is cut into chunks.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { consoleLines, StepRunner, value, type HostControl, type TwinRun } from './spec';

const noControl: HostControl = {
  resizeDisk: async () => {},
  balloon: async () => {},
  allowPaths: async () => {},
  revokePaths: async () => {},
  writeConsole: async () => {},
  consoleOutput: () => '',
};

const stepName = fc.stringMatching(/^[a-z][a-z0-9-]{0,15}$/);
const noise = fc.stringMatching(/^[ -~]{0,40}$/).filter((s) => !s.startsWith('KVMKIT-STEP'));

describe('StepRunner', () => {
  it('runs exactly the requested steps, in order, once each, whatever the chunking', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(noise, stepName), { maxLength: 6 }), fc.array(fc.nat(), { maxLength: 20 }), fc.boolean(), async (items, cuts, crlf) => {
        const nl = crlf ? '\r\n' : '\n';
        const text = items.map(([n, s]) => `${n}${nl}KVMKIT-STEP ${s}${nl}`).join('');
        const ran: string[] = [];
        const answers: string[] = [];
        const steps = Object.fromEntries(items.map(([, s]) => [s, () => void ran.push(s)]));
        const runner = new StepRunner(steps, noControl, (a) => answers.push(a));
        const points = [...new Set(cuts.map((c) => c % (text.length + 1)))].sort((a, b) => a - b);
        for (const p of [...points, text.length]) runner.onOutput(text.slice(0, p));
        await runner.idle();
        expect(ran).toEqual(items.map(([, s]) => s));
        expect(answers).toEqual(items.map(() => 'ok\n'));
        expect(runner.errors).toEqual([]);
      }),
      { numRuns: 2000 },
    );
  });

  it('answers fail, and records why, for an unknown step or an action that throws', async () => {
    const answers: string[] = [];
    const runner = new StepRunner({ boom: () => { throw new Error('no disk 7'); } }, noControl, (a) => answers.push(a));
    runner.onOutput('KVMKIT-STEP nosuch\nKVMKIT-STEP boom\n');
    await runner.idle();
    expect(answers).toEqual(['fail the_check_has_no_step_named_nosuch\n', 'fail no_disk_7\n']);
    expect(runner.errors).toEqual(['nosuch: the check has no step named nosuch', 'boom: no disk 7']);
  });
});

describe('value', () => {
  it('reads @KEY lines, without escapes or CRs, and only whole keys', () => {
    const lines = consoleLines('\x1b[2J\x1b[H@SIZE 42\r\n@SIZE_B 7\r\n[ 1.0] x\n@EMPTY\n');
    const run = { lines } as TwinRun;
    expect(value(run, 'SIZE')).toBe('42');
    expect(value(run, 'SIZE_B')).toBe('7');
    expect(value(run, 'EMPTY')).toBe('');
    expect(value(run, 'SIZ')).toBeUndefined();
  });
});
