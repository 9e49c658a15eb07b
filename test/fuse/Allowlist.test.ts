/**
 * The Allowlist model on its own (crosvm's dynamic path allowlist rules): visibility, writability,
 * listing filters, atomic allow/revoke, path validation.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Allowlist, AllowlistError, parseAllowlistPath } from '../../src/fuse/Allowlist';

const p = (path: string): string[] => parseAllowlistPath(path);

describe('Allowlist', () => {
  it('an empty allowlist shows only the root, empty', () => {
    const a = new Allowlist();
    expect(a.isVisible([])).toBe(true);
    expect(a.isWritable([])).toBe(false);
    expect(a.isVisible(p('/a'))).toBe(false);
    expect(a.listingFilter([])).toEqual({ kind: 'only', names: new Set() });
  });

  it('allowed paths and their descendants are visible and writable; ancestors only traversable', () => {
    const a = new Allowlist(['/a/b']);
    expect(a.isVisible([])).toBe(true);
    expect(a.isVisible(p('/a'))).toBe(true);
    expect(a.isWritable(p('/a'))).toBe(false);
    expect(a.isVisible(p('/a/b'))).toBe(true);
    expect(a.isWritable(p('/a/b'))).toBe(true);
    expect(a.isWritable(p('/a/b/c/d'))).toBe(true);
    expect(a.isVisible(p('/a/x'))).toBe(false);
    expect(a.isVisible(p('/b'))).toBe(false);
    expect(a.listingFilter([])).toEqual({ kind: 'only', names: new Set(['a']) });
    expect(a.listingFilter(p('/a'))).toEqual({ kind: 'only', names: new Set(['b']) });
    expect(a.listingFilter(p('/a/b'))).toEqual({ kind: 'all' });
    expect(a.listingFilter(p('/a/b/c'))).toEqual({ kind: 'all' });
    expect(a.listingFilter(p('/z'))).toEqual({ kind: 'none' });
  });

  it('allowing / shows everything', () => {
    const a = new Allowlist(['/']);
    expect(a.isWritable(p('/any/thing'))).toBe(true);
    expect(a.listingFilter([])).toEqual({ kind: 'all' });
  });

  it('revoking a path keeps allowed paths below it, and their ancestors traversable (crosvm scenario 2)', () => {
    const a = new Allowlist(['/a/b', '/a/b/c']);
    a.revoke(['/a/b']);
    expect(a.isVisible(p('/a/b'))).toBe(true);
    expect(a.isWritable(p('/a/b'))).toBe(false);
    expect(a.isVisible(p('/a/b/d'))).toBe(false);
    expect(a.isWritable(p('/a/b/c/e'))).toBe(true);
    a.revoke(['/a/b/c']);
    expect(a.isVisible(p('/a'))).toBe(false);
    expect(a.paths()).toEqual([]);
  });

  it('is atomic: one bad path in a command changes nothing', () => {
    const a = new Allowlist(['/keep']);
    expect(() => a.allow(['/new', 'relative'])).toThrow(AllowlistError);
    expect(() => a.allow(['/new', '/x/../y'])).toThrow(/'\.\.'/);
    expect(a.paths()).toEqual(['/keep']);
    expect(() => a.revoke(['/keep', '/never-added'])).toThrow(/not in the allowlist/);
    expect(a.paths()).toEqual(['/keep']);
    expect(() => a.allow('not an array' as unknown as string[])).toThrow(AllowlistError);
    expect(() => a.allow([42 as unknown as string])).toThrow(AllowlistError);
  });

  it('normalises . and empty components, refuses NUL, and round-trips UTF-8 names', () => {
    expect(p('/a//./b/')).toEqual(['a', 'b']);
    expect(p('/')).toEqual([]);
    expect(() => p('/a\0b')).toThrow(AllowlistError);
    const a = new Allowlist(['/dossier/été']);
    expect(a.paths()).toEqual(['/dossier/été']);
    expect(a.isVisible(['dossier', Buffer.from('été', 'utf8').toString('latin1')])).toBe(true);
  });

  it('matches a reference model on random allow/revoke sequences', () => {
    const comp = fc.constantFrom('a', 'b', 'c');
    const path = fc.array(comp, { minLength: 0, maxLength: 3 });
    const op = fc.record({ add: fc.boolean(), path });
    fc.assert(
      fc.property(fc.array(op, { maxLength: 30 }), fc.array(path, { minLength: 1, maxLength: 10 }), (ops, probes) => {
        const a = new Allowlist();
        const model = new Set<string>();
        for (const o of ops) {
          const s = '/' + o.path.join('/');
          if (o.add) {
            a.allow([s]);
            model.add(o.path.join('/'));
          } else if (model.has(o.path.join('/'))) {
            a.revoke([s]);
            model.delete(o.path.join('/'));
          } else {
            expect(() => a.revoke([s])).toThrow(AllowlistError);
          }
        }
        for (const q of probes) {
          const allowedAbove = [...model].some((m) => m === '' || q.join('/') === m || q.join('/').startsWith(m + '/'));
          const leadsTo = [...model].some((m) => m.split('/').slice(0, q.length).join('/') === q.join('/') && m.split('/').length > q.length);
          expect(a.isWritable(q)).toBe(allowedAbove);
          expect(a.isVisible(q)).toBe(allowedAbove || leadsTo || q.length === 0);
        }
      }),
      { numRuns: 500 },
    );
  });
});
