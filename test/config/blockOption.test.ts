import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/errors';
import { BLOCK_OPTION_KEYS, parseBlockOption, splitKeyValues } from '../../src/config';

const VALID = 'path, ro, root, sparse, direct, o_direct, block-size, block_size, id';

describe('parseBlockOption (crosvm --block)', () => {
  it('parses the issue example into VirtioBlock options', () => {
    expect(parseBlockOption('disk.img,ro,sparse=false,o_direct=true,block_size=4096,id=MYSERIALNO')).toEqual({
      path: 'disk.img', ro: true, sparse: false, directIo: true, blockSize: 4096, id: 'MYSERIALNO',
    });
  });

  it('takes the path first without a key, or as path=', () => {
    expect(parseBlockOption('disk.img')).toEqual({ path: 'disk.img' });
    expect(parseBlockOption('/var/lib/images/root.img,root')).toEqual({ path: '/var/lib/images/root.img', root: true });
    expect(parseBlockOption('path=/a/b.img,ro=false')).toEqual({ path: '/a/b.img', ro: false });
    expect(parseBlockOption('ro,path=x.img')).toEqual({ path: 'x.img', ro: true });
    expect(parseBlockOption('root,ro,path=r.img')).toEqual({ path: 'r.img', root: true, ro: true });
  });

  it('accepts bare booleans and true/false, and every alias', () => {
    expect(parseBlockOption('d.img,ro,root,sparse,direct')).toEqual({ path: 'd.img', ro: true, root: true, sparse: true, directIo: true });
    expect(parseBlockOption('d.img,ro=true,root=false,sparse=false,o_direct=false')).toEqual({ path: 'd.img', ro: true, root: false, sparse: false, directIo: false });
    expect(parseBlockOption('d.img,block-size=512')).toEqual({ path: 'd.img', blockSize: 512 });
    expect(parseBlockOption('d.img,block_size=0x1000')).toEqual({ path: 'd.img', blockSize: 4096 });
    expect(parseBlockOption('d.img,block_size=65536')).toEqual({ path: 'd.img', blockSize: 65536 });
  });

  it('reads quoted values with commas, = and escapes', () => {
    expect(parseBlockOption('path="my,disk=1.img",id="A,B"')).toEqual({ path: 'my,disk=1.img', id: 'A,B' });
    expect(parseBlockOption('"odd,name.img",ro')).toEqual({ path: 'odd,name.img', ro: true });
    expect(parseBlockOption('d.img,id="say \\"hi\\" \\\\"')).toEqual({ path: 'd.img', id: 'say "hi" \\' });
    expect(parseBlockOption('d.img,id=')).toEqual({ path: 'd.img', id: '' });
    expect(parseBlockOption('d.img,id=XXXXXXXXXXXXXXXXXXXX')).toEqual({ path: 'd.img', id: 'X'.repeat(20) });
    expect(parseBlockOption('with space.img,id=A B')).toEqual({ path: 'with space.img', id: 'A B' });
  });

  it('names an unknown key and lists the valid ones', () => {
    expect(() => parseBlockOption('d.img,foo=1')).toThrow(ConfigError);
    expect(() => parseBlockOption('d.img,foo=1')).toThrow(`foo is not a --block option (valid keys: ${VALID}), got "d.img,foo=1"`);
    expect(() => parseBlockOption('d.img,readonly')).toThrow(/^readonly is not a --block option \(valid keys: path, ro,/);
    expect(() => parseBlockOption('d.img,RO')).toThrow(/^RO is not a --block option/);
    expect(() => parseBlockOption('d.img,e.img')).toThrow(/^e\.img is not a --block option/);
    expect(() => parseBlockOption('d.img,bootindex=1')).toThrow('bootindex is a crosvm --block option that kvmkit does not support, got "d.img,bootindex=1"');
    expect(() => parseBlockOption('d.img,packed-queue')).toThrow(/crosvm --block option that kvmkit does not support/);
    expect([...BLOCK_OPTION_KEYS].join(', ')).toBe(VALID);
  });

  it('rejects every bad value with the rule it broke', () => {
    const cases: [string, string][] = [
      ['', 'path is required: the disk image file (first item of --block), got ""'],
      ['ro', 'path is required: the disk image file (first item of --block), got "ro"'],
      ['path=', 'path is required: the disk image file, got ""'],
      ['path', 'path is required: the disk image file, got ""'],
      ['d.img,ro=yes', 'ro must be true or false, got "yes"'],
      ['d.img,ro=1', 'ro must be true or false, got "1"'],
      ['d.img,root=', 'root must be true or false, got ""'],
      ['d.img,sparse=False', 'sparse must be true or false, got "False"'],
      ['d.img,direct=on', 'direct must be true or false, got "on"'],
      ['d.img,o_direct=no', 'o_direct must be true or false, got "no"'],
      ['d.img,block_size=1000', 'block_size must be a power of two >= 512, got 1000'],
      ['d.img,block-size=1000', 'block-size must be a power of two >= 512, got 1000'],
      ['d.img,block_size=256', 'block_size must be a power of two >= 512, got 256'],
      ['d.img,block_size=0', 'block_size must be a power of two >= 512, got 0'],
      ['d.img,block_size=131072', 'block_size must be at most 65536, got 131072'],
      ['d.img,block_size=4k', 'block_size must be a number (decimal or 0x hexadecimal), got "4k"'],
      ['d.img,block_size=-512', 'block_size must be a number (decimal or 0x hexadecimal), got "-512"'],
      ['d.img,block_size', 'block_size must be a number (decimal or 0x hexadecimal), got ""'],
      ['d.img,block_size=', 'block_size must be a number (decimal or 0x hexadecimal), got ""'],
      ['d.img,id=THIS_ID_IS_WAY_TOO_LONG', 'id must be at most 20 printable ASCII characters, got "THIS_ID_IS_WAY_TOO_LONG"'],
      ['d.img,id=caf\u00e9', 'id must be at most 20 printable ASCII characters, got "caf\u00e9"'],
      ['d.img,id="tab\there"', 'id must be at most 20 printable ASCII characters, got "tab\\there"'],
      ['d.img,id', 'id needs a value: id=SERIAL (at most 20 printable ASCII characters), got "d.img,id"'],
      ['d.img,ro,ro', 'ro is given twice, got "d.img,ro,ro"'],
      ['d.img,direct,o_direct=false', 'o_direct is given twice (also as direct), got "d.img,direct,o_direct=false"'],
      ['d.img,block-size=512,block_size=512', 'block_size is given twice (also as block-size), got "d.img,block-size=512,block_size=512"'],
      ['d.img,path=e.img', 'path is given twice, got "d.img,path=e.img"'],
      ['d.img,', '--block ends with a comma, got "d.img,"'],
      ['d.img,,ro', '--block has an empty item, got "d.img,,ro"'],
      [',d.img', '--block has an empty item, got ",d.img"'],
      ['d.img,=1', '--block has a value without a key, got "d.img,=1"'],
      ['d.img,id="abc', '--block has an unterminated quote, got "d.img,id=\\"abc"'],
      ['d.img,id="a"b', '--block expects "," after a quoted value at position 12, got "d.img,id=\\"a\\"b"'],
      ['d.img,id=a"b"', '--block has a quote in the middle of a value (quote the whole value), got "d.img,id=a\\"b\\""'],
      ['d.img,id="a\\nb"', '--block allows only \\" and \\\\ escapes in quotes, got "d.img,id=\\"a\\\\nb\\""'],
      ['ro,"late.img"', '--block takes a value without a key only first (as path), got "ro,\\"late.img\\""'],
    ];
    for (const [text, message] of cases) {
      let err: unknown;
      try {
        parseBlockOption(text);
      } catch (e) {
        err = e;
      }
      expect(err, text).toBeInstanceOf(ConfigError);
      expect((err as Error).message, text).toBe(message);
    }
  });

  it('splitKeyValues keeps items in order for other options to reuse', () => {
    expect(splitKeyValues('a.img,x=1,y,z="q,r"', '--opt', 'path', ['y'])).toEqual([
      { key: 'path', value: 'a.img' },
      { key: 'x', value: '1' },
      { key: 'y', value: undefined },
      { key: 'z', value: 'q,r' },
    ]);
  });
});
