import { describe, expect, it } from 'vitest';
import {
  DEFAULT_MAX_PACKET_BYTES,
  FX_OK,
  FX_PERMISSION_DENIED,
  FXP,
  PFLAG,
  SftpInspector,
  openAccess,
  type PathAccess,
  type SftpDecider,
  type SftpFileEvent,
} from '../../src/protocols/ssh/sftp.js';

// --- a small SFTP encoder/decoder ---------------------------------------------------------

type Field = number | bigint | string | Buffer;
const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
};
const u64 = (n: bigint) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(n);
  return b;
};
const str = (s: string | Buffer) => {
  const b = typeof s === 'string' ? Buffer.from(s) : s;
  return Buffer.concat([u32(b.length), b]);
};
/** numbers are uint32, bigints uint64, strings and buffers SFTP strings */
function packet(type: number, ...fields: Field[]): Buffer {
  const body = Buffer.concat(fields.map((f) => (typeof f === 'number' ? u32(f) : typeof f === 'bigint' ? u64(f) : str(f))));
  return Buffer.concat([u32(body.length + 1), Buffer.from([type]), body]);
}
const noAttrs = 0;
const init = () => packet(FXP.INIT, 3);
const version = (v = 3) => packet(FXP.VERSION, v, 'posix-rename@openssh.com', '1');
const open = (id: number, path: string, pflags: number) => packet(FXP.OPEN, id, path, pflags, noAttrs);
const handle = (id: number, h: string | Buffer) => packet(FXP.HANDLE, id, h);
const status = (id: number, code = FX_OK) => packet(FXP.STATUS, id, code, code === FX_OK ? 'Success' : 'Failure', '');
const read = (id: number, h: string | Buffer, offset: bigint, len: number) => packet(FXP.READ, id, h, offset, len);
const data = (id: number, bytes: Buffer) => packet(FXP.DATA, id, bytes);
const write = (id: number, h: string | Buffer, offset: bigint, bytes: Buffer) => packet(FXP.WRITE, id, h, offset, bytes);
const close = (id: number, h: string | Buffer) => packet(FXP.CLOSE, id, h);
const extended = (id: number, name: string, ...fields: Field[]) => packet(FXP.EXTENDED, id, name, ...fields);

function decodeStatus(b: Buffer) {
  expect(b.readUInt32BE(0)).toBe(b.length - 4);
  expect(b[4]).toBe(FXP.STATUS);
  let at = 5;
  const id = b.readUInt32BE(at);
  const code = b.readUInt32BE((at += 4));
  at += 4;
  const msgLen = b.readUInt32BE(at);
  const message = b.subarray(at + 4, at + 4 + msgLen).toString('utf8');
  at += 4 + msgLen;
  const langLen = b.readUInt32BE(at);
  expect(at + 4 + langLen).toBe(b.length);
  return { id, code, message, lang: b.subarray(at + 4).toString() };
}

// --- a session under test -----------------------------------------------------------------

interface Call { access: PathAccess; path: string; op: string }

/** Denies writes under /ro and anything under /secret; records the decider's calls and the events. */
function session(decide?: SftpDecider, opts?: { maxPacketBytes?: number }) {
  const calls: Call[] = [];
  const events: SftpFileEvent[] = [];
  const policy: SftpDecider = decide ?? ((access, path) => {
    if (path.startsWith('/secret')) return { allowed: false, message: `no access to ${path}` };
    if (access === 'write' && path.startsWith('/ro')) return { allowed: false, message: `${path} is read-only` };
    return { allowed: true };
  });
  const inspector = new SftpInspector((access, path, op) => {
    calls.push({ access, path, op });
    return policy(access, path, op);
  }, (e) => events.push(e), opts);
  // the version handshake, checked on the way
  const hello = inspector.fromClient(init());
  expect(Buffer.concat(hello.toServer)).toEqual(init());
  expect(Buffer.concat(inspector.fromServer(version()))).toEqual(version());
  /** sends client bytes; returns what went to the server and the denials */
  const send = (...chunks: Buffer[]) => {
    const toServer: Buffer[] = [];
    const toClient: Buffer[] = [];
    for (const c of chunks) {
      const r = inspector.fromClient(c);
      toServer.push(...r.toServer);
      toClient.push(...r.toClient);
    }
    return { toServer: Buffer.concat(toServer), toClient: toClient.map(decodeStatus) };
  };
  const answer = (...chunks: Buffer[]) => Buffer.concat(chunks.flatMap((c) => inspector.fromServer(c)));
  return { inspector, calls, events, send, answer };
}

const denied = (id: number, message: string) => ({ id, code: FX_PERMISSION_DENIED, message, lang: '' });

describe('SftpInspector: decisions', () => {
  it('forwards allowed path requests byte for byte, with the access each needs', () => {
    const s = session();
    const reqs: [Buffer, PathAccess, string, string][] = [
      [packet(FXP.OPENDIR, 1, '/data'), 'read', '/data', 'opendir'],
      [packet(FXP.STAT, 2, 'rel/file'), 'read', 'rel/file', 'stat'],
      [packet(FXP.LSTAT, 3, '/data/x'), 'read', '/data/x', 'lstat'],
      [packet(FXP.REALPATH, 4, '.'), 'read', '.', 'realpath'],
      [packet(FXP.READLINK, 5, '/data/l'), 'read', '/data/l', 'readlink'],
      [packet(FXP.SETSTAT, 6, '/data/x', 4, 0o644), 'write', '/data/x', 'setstat'],
      [packet(FXP.REMOVE, 7, '/data/x'), 'write', '/data/x', 'remove'],
      [packet(FXP.MKDIR, 8, '/data/d', noAttrs), 'write', '/data/d', 'mkdir'],
      [packet(FXP.RMDIR, 9, '/data/d'), 'write', '/data/d', 'rmdir'],
      [extended(10, 'statvfs@openssh.com', '/data'), 'read', '/data', 'statvfs@openssh.com'],
      [extended(11, 'lsetstat@openssh.com', '/data/l', noAttrs), 'write', '/data/l', 'lsetstat@openssh.com'],
      [extended(12, 'expand-path@openssh.com', '~/x'), 'read', '~/x', 'expand-path@openssh.com'],
      [extended(13, 'home-directory', 'alice'), 'read', '~alice', 'home-directory'],
    ];
    for (const [req, access, path, op] of reqs) {
      const r = s.send(req);
      expect(r.toServer).toEqual(req);
      expect(r.toClient).toEqual([]);
      expect(s.calls.at(-1)).toEqual({ access, path, op });
      expect(s.events.at(-1)).toEqual({ op, path, access, allowed: true });
    }
    expect(s.calls).toHaveLength(reqs.length);
  });

  it('denies with SSH_FX_PERMISSION_DENIED for the request id, forwards nothing and goes on', () => {
    const s = session();
    const r = s.send(packet(FXP.REMOVE, 42, '/ro/file'), packet(FXP.STAT, 43, '/ro/file'));
    expect(r.toClient).toEqual([denied(42, '/ro/file is read-only')]);
    expect(r.toServer).toEqual(packet(FXP.STAT, 43, '/ro/file'));
    expect(s.events[0]).toEqual({ op: 'remove', path: '/ro/file', access: 'write', allowed: false, message: '/ro/file is read-only' });
  });

  it('encodes a UTF-8 message and an empty language tag', () => {
    const s = session(() => ({ allowed: false, message: 'interdit: déjà vu ✓' }));
    const r = s.send(packet(FXP.STAT, 0xfffffffe, '/x'));
    expect(r.toClient).toEqual([denied(0xfffffffe, 'interdit: déjà vu ✓')]);
  });

  describe('OPEN by pflags', () => {
    const cases: [string, number, PathAccess[]][] = [
      ['READ', PFLAG.READ, ['read']],
      ['WRITE|CREAT|TRUNC', PFLAG.WRITE | PFLAG.CREAT | PFLAG.TRUNC, ['write']],
      ['WRITE|APPEND', PFLAG.WRITE | PFLAG.APPEND, ['write']],
      ['READ|WRITE', PFLAG.READ | PFLAG.WRITE, ['write', 'read']],
      // without WRITE the server opens O_RDONLY: these read, and CREAT/TRUNC/APPEND still change the file
      ['none', 0, ['read']],
      ['CREAT', PFLAG.CREAT, ['write', 'read']],
      ['READ|TRUNC', PFLAG.READ | PFLAG.TRUNC, ['write', 'read']],
      ['APPEND', PFLAG.APPEND, ['write', 'read']],
    ];
    for (const [name, pflags, accesses] of cases) {
      it(`${name} decides ${accesses.join(' and ')}`, () => {
        const s = session(() => ({ allowed: true }));
        expect(s.send(open(1, '/f', pflags)).toServer).toEqual(open(1, '/f', pflags));
        expect(s.calls).toEqual(accesses.map((access) => ({ access, path: '/f', op: 'open' })));
        expect(s.events).toEqual([{ op: 'open', path: '/f', access: accesses[0], allowed: true }]);
      });
    }
    it('READ|WRITE on a read-only path is denied for the write', () => {
      const s = session();
      const r = s.send(open(7, '/ro/f', PFLAG.READ | PFLAG.WRITE));
      expect(r.toServer.length).toBe(0);
      expect(r.toClient).toEqual([denied(7, '/ro/f is read-only')]);
      expect(s.events).toEqual([{ op: 'open', path: '/ro/f', access: 'write', allowed: false, message: '/ro/f is read-only' }]);
      expect(openAccess(PFLAG.READ | PFLAG.WRITE)).toEqual({ read: true, write: true });
    });
    it('READ|WRITE with reading denied is denied for the read', () => {
      const s = session((access) => (access === 'read' ? { allowed: false, message: 'no reading' } : { allowed: true }));
      expect(s.send(open(7, '/f', PFLAG.READ | PFLAG.WRITE)).toClient).toEqual([denied(7, 'no reading')]);
      expect(s.events[0]).toMatchObject({ access: 'read', allowed: false });
    });
  });

  it('RENAME and posix-rename decide both names for write', () => {
    const s = session();
    expect(s.send(packet(FXP.RENAME, 1, '/a', '/b')).toServer).toEqual(packet(FXP.RENAME, 1, '/a', '/b'));
    expect(s.calls).toEqual([{ access: 'write', path: '/b', op: 'rename' }, { access: 'write', path: '/a', op: 'rename' }]);
    expect(s.events[0]).toEqual({ op: 'rename', path: '/a', path2: '/b', access: 'write', allowed: true });
    // moving a read-only file out is a write to its old name
    expect(s.send(extended(2, 'posix-rename@openssh.com', '/ro/a', '/tmp/a')).toClient).toEqual([denied(2, '/ro/a is read-only')]);
    expect(s.send(extended(3, 'posix-rename@openssh.com', '/tmp/a', '/ro/a')).toClient).toEqual([denied(3, '/ro/a is read-only')]);
  });

  it('hardlink: the new name is written, the old one read', () => {
    const s = session();
    const req = extended(1, 'hardlink@openssh.com', '/ro/orig', '/data/link');
    expect(s.send(req).toServer).toEqual(req);
    expect(s.calls).toEqual([
      { access: 'write', path: '/data/link', op: 'hardlink@openssh.com' },
      { access: 'read', path: '/ro/orig', op: 'hardlink@openssh.com' },
    ]);
    expect(s.send(extended(2, 'hardlink@openssh.com', '/secret/k', '/data/k')).toClient).toEqual([denied(2, 'no access to /secret/k')]);
  });

  it('SYMLINK in OpenSSH order (target, then link): link written, target read, relative target from the link directory', () => {
    const s = session();
    const req = packet(FXP.SYMLINK, 1, '../shared/f', '/data/sub/l');
    expect(s.send(req).toServer).toEqual(req);
    expect(s.calls).toEqual([
      { access: 'write', path: '/data/sub/l', op: 'symlink' },
      { access: 'read', path: '/data/sub/../shared/f', op: 'symlink' },
    ]);
    expect(s.events[0]).toEqual({ op: 'symlink', path: '/data/sub/../shared/f', path2: '/data/sub/l', access: 'write', allowed: true });
    // an absolute target as is; a link without a directory leaves a relative target relative
    s.send(packet(FXP.SYMLINK, 2, '/etc/hosts', 'l2'), packet(FXP.SYMLINK, 3, 'f', 'l3'));
    expect(s.calls.slice(2).map((c) => c.path)).toEqual(['l2', '/etc/hosts', 'l3', 'f']);
    // a link to a secret, or a link into a read-only place
    expect(s.send(packet(FXP.SYMLINK, 4, '/secret/key', '/data/k')).toClient).toEqual([denied(4, 'no access to /secret/key')]);
    expect(s.send(packet(FXP.SYMLINK, 5, '/data/f', '/ro/l')).toClient).toEqual([denied(5, '/ro/l is read-only')]);
  });

  it('extensions without a path are allowed undecided; unknown extensions and request types are denied', () => {
    const s = session();
    for (const req of [extended(1, 'limits@openssh.com'), extended(2, 'users-groups-by-id@openssh.com', Buffer.alloc(0), Buffer.alloc(0)),
      extended(3, 'fsync@openssh.com', 'h'), extended(4, 'fstatvfs@openssh.com', 'h')]) {
      expect(s.send(req).toServer).toEqual(req);
    }
    expect(s.calls).toEqual([]);
    const r = s.send(extended(5, 'exec@example.com', '/bin/sh'), packet(99, 6, '/x'));
    expect(r.toServer.length).toBe(0);
    expect(r.toClient).toEqual([
      denied(5, 'SFTP extension "exec@example.com" is not supported through interlock'),
      denied(6, 'SFTP request type 99 (id 6) is not supported through interlock'),
    ]);
    expect(s.events.map((e) => [e.op, e.allowed])).toEqual([['exec@example.com', false], ['type-99', false]]);
  });

  it('denies a path that is not valid UTF-8 or holds a NUL without asking the decider', () => {
    const s = session(() => ({ allowed: true }));
    const bad = Buffer.from([0x2f, 0xff, 0x2f, 0x78]);
    const r = s.send(packet(FXP.STAT, 1, bad), packet(FXP.REMOVE, 2, Buffer.from('/ok\0/x')));
    expect(r.toClient.map((d) => [d.id, d.code])).toEqual([[1, FX_PERMISSION_DENIED], [2, FX_PERMISSION_DENIED]]);
    expect(s.calls).toEqual([]);
  });

  it('paths are passed on as sent, relative or not', () => {
    const s = session(() => ({ allowed: true }));
    s.send(packet(FXP.STAT, 1, '../x/./y//z'), packet(FXP.REMOVE, 2, 'a b/ü'));
    expect(s.calls.map((c) => c.path)).toEqual(['../x/./y//z', 'a b/ü']);
  });
});

describe('SftpInspector: framing', () => {
  const reqs = [packet(FXP.STAT, 1, '/a'), packet(FXP.REMOVE, 2, '/ro/x'), open(3, '/data/f', PFLAG.READ), packet(FXP.LSTAT, 4, '/b')];
  const stream = Buffer.concat(reqs);
  const expectedToServer = Buffer.concat([reqs[0], reqs[2], reqs[3]]);

  it('several packets in one chunk: allowed ones as one merged view, the denied one left out', () => {
    const s = session();
    const r = s.inspector.fromClient(stream);
    expect(Buffer.concat(r.toServer)).toEqual(expectedToServer);
    expect(r.toServer).toHaveLength(2); // [STAT] and [OPEN, LSTAT]: neighbours merged
    expect(r.toServer.every((b) => b.buffer === stream.buffer)).toBe(true); // views, not copies
    expect(r.toClient.map(decodeStatus)).toEqual([denied(2, '/ro/x is read-only')]);
  });

  it('every split point of the stream gives the same result', () => {
    for (let cut = 0; cut <= stream.length; cut++) {
      const s = session();
      const r = s.send(stream.subarray(0, cut), stream.subarray(cut));
      expect(r.toServer).toEqual(expectedToServer);
      expect(r.toClient).toEqual([denied(2, '/ro/x is read-only')]);
    }
  });

  it('one byte at a time', () => {
    const s = session();
    const r = s.send(...[...stream].map((b) => Buffer.from([b])));
    expect(r.toServer).toEqual(expectedToServer);
    expect(r.toClient).toHaveLength(1);
  });

  it('server bytes come back unchanged, cut only on packet boundaries', () => {
    const s = session(() => ({ allowed: true }));
    s.send(packet(FXP.STAT, 1, '/a'), packet(FXP.STAT, 2, '/b'));
    const replies = Buffer.concat([packet(FXP.ATTRS, 1, noAttrs), status(2, 2)]);
    const first = s.inspector.fromServer(replies.subarray(0, 7));
    expect(first).toEqual([]); // half a packet is held back
    const rest = s.inspector.fromServer(replies.subarray(7, replies.length - 3));
    expect(Buffer.concat(rest)).toEqual(packet(FXP.ATTRS, 1, noAttrs));
    expect(Buffer.concat(s.inspector.fromServer(replies.subarray(replies.length - 3)))).toEqual(status(2, 2));
  });

  it('refuses a length over the bound before its body arrives', () => {
    const s = session();
    const header = Buffer.concat([u32(DEFAULT_MAX_PACKET_BYTES + 1), Buffer.from([FXP.WRITE])]);
    expect(() => s.inspector.fromClient(header)).toThrow(/SFTP packet from the client of 262145 bytes exceeds the limit of 262144/);
    const t = session();
    expect(() => t.inspector.fromServer(header)).toThrow(/from the server .* exceeds the limit/);
  });

  it('a packet of exactly the bound passes; a smaller bound can be set', () => {
    const s = session(() => ({ allowed: true }));
    s.send(open(1, '/f', PFLAG.WRITE | PFLAG.CREAT));
    s.answer(handle(1, 'h'));
    const overhead = 1 + 4 + (4 + 1) + 8 + 4; // type, id, handle, offset, data length
    const big = write(2, 'h', 0n, Buffer.alloc(DEFAULT_MAX_PACKET_BYTES - overhead, 7));
    expect(big.length).toBe(DEFAULT_MAX_PACKET_BYTES + 4);
    expect(s.send(big).toServer.equals(big)).toBe(true);
    const small = session(undefined, { maxPacketBytes: 64 });
    expect(() => small.send(packet(FXP.STAT, 1, 'x'.repeat(100)))).toThrow(/exceeds the limit of 64/);
  });

  it('refuses truncated requests, a zero length, requests before VERSION, other versions and reused ids', () => {
    const s = session();
    expect(() => s.inspector.fromClient(Buffer.concat([u32(9), Buffer.from([FXP.STAT]), u32(1), u32(50)]))).toThrow(/malformed SFTP request/);
    expect(() => session().inspector.fromClient(u32(0))).toThrow(/empty SFTP packet/);

    const early = new SftpInspector(() => ({ allowed: true }), () => {});
    early.fromClient(init());
    expect(() => early.fromClient(packet(FXP.STAT, 1, '/'))).toThrow(/before the protocol version was agreed/);
    const v6 = new SftpInspector(() => ({ allowed: true }), () => {});
    expect(() => v6.fromServer(version(6))).toThrow(/SFTP version 6 is not supported/);

    const t = session();
    t.send(packet(FXP.STAT, 5, '/a'));
    expect(() => t.send(packet(FXP.STAT, 5, '/b'))).toThrow(/request id 5 reused/);
    t.answer(status(5));
    expect(t.send(packet(FXP.STAT, 5, '/b')).toServer.length).toBeGreaterThan(0);
  });
});

describe('SftpInspector: handles and transfers', () => {
  it('counts a download: bytes of DATA replies to READs on the handle, reported at the CLOSE reply', () => {
    const s = session();
    s.send(open(1, '/data/big.bin', PFLAG.READ));
    s.answer(handle(1, 'H1'));
    const reads = [read(2, 'H1', 0n, 32768), read(3, 'H1', 32768n, 32768), read(4, 'H1', 65536n, 32768)];
    const fwd = s.send(...reads);
    expect(fwd.toServer).toEqual(Buffer.concat(reads)); // handle requests go on undecided
    s.answer(data(2, Buffer.alloc(32768)), data(3, Buffer.alloc(1000)), status(4, 1 /* EOF */));
    s.send(close(5, 'H1'));
    expect(s.events.filter((e) => e.op === 'close')).toEqual([]); // not until the server answers
    s.answer(status(5));
    expect(s.events.at(-1)).toEqual({ op: 'close', path: '/data/big.bin', access: 'read', allowed: true, bytes: 33768, direction: 'download' });
    expect(s.inspector.transfers).toEqual([{ path: '/data/big.bin', direction: 'download', bytes: 33768, op: 'close' }]);
    expect(s.calls).toEqual([{ access: 'read', path: '/data/big.bin', op: 'open' }]);
  });

  it('counts an upload: bytes of WRITEs the server acknowledged', () => {
    const s = session();
    s.send(open(10, 'up/new.txt', PFLAG.WRITE | PFLAG.CREAT | PFLAG.TRUNC));
    const h = Buffer.from([0, 0, 0, 0]); // handles are opaque bytes
    s.answer(handle(10, h));
    s.send(write(11, h, 0n, Buffer.alloc(100)), write(12, h, 100n, Buffer.alloc(50)),
      write(13, h, 150n, Buffer.alloc(7)));
    s.answer(status(11), status(12), status(13, 4 /* failure */));
    // another file's handle on the way does not mix in
    s.send(open(14, '/data/other', PFLAG.READ));
    s.answer(handle(14, 'X'));
    s.send(close(15, h));
    s.answer(status(15));
    expect(s.inspector.transfers).toEqual([{ path: 'up/new.txt', direction: 'upload', bytes: 150, op: 'close' }]);
    expect(s.events.at(-1)).toEqual({ op: 'close', path: 'up/new.txt', access: 'write', allowed: true, bytes: 150, direction: 'upload' });
  });

  it('an empty upload is still reported; directories are not', () => {
    const s = session();
    s.send(open(1, '/data/empty', PFLAG.WRITE | PFLAG.CREAT), packet(FXP.OPENDIR, 2, '/data'));
    s.answer(handle(1, 'a'), handle(2, 'd'));
    s.send(packet(FXP.READDIR, 3, 'd'), close(4, 'a'), close(5, 'd'));
    s.answer(packet(FXP.NAME, 3, 0), status(4), status(5));
    expect(s.inspector.transfers).toEqual([{ path: '/data/empty', direction: 'upload', bytes: 0, op: 'close' }]);
  });

  it('a file opened READ|WRITE reports each direction that moved bytes', () => {
    const s = session();
    s.send(open(1, '/data/rw', PFLAG.READ | PFLAG.WRITE));
    s.answer(handle(1, 'h'));
    s.send(read(2, 'h', 0n, 10), write(3, 'h', 10n, Buffer.alloc(4)));
    s.answer(data(2, Buffer.alloc(10)), status(3));
    s.send(close(4, 'h'));
    s.answer(status(4));
    expect(s.inspector.transfers.map((t) => [t.direction, t.bytes])).toEqual([['upload', 4], ['download', 10]]);
  });

  it('a failed OPEN leaves no handle; a handle string handed out again is a new file', () => {
    const s = session();
    s.send(open(1, '/data/missing', PFLAG.READ));
    s.answer(status(1, 2 /* no such file */));
    s.send(open(2, '/data/a', PFLAG.READ));
    s.answer(handle(2, '0'));
    s.send(read(3, '0', 0n, 5), close(4, '0'));
    s.answer(data(3, Buffer.alloc(5)), status(4));
    s.send(open(5, '/data/b', PFLAG.READ));
    s.answer(handle(5, '0'));
    s.send(read(6, '0', 0n, 5));
    s.answer(data(6, Buffer.alloc(2)));
    s.inspector.close();
    expect(s.inspector.transfers).toEqual([
      { path: '/data/a', direction: 'download', bytes: 5, op: 'close' },
      { path: '/data/b', direction: 'download', bytes: 2, op: 'channel-close' },
    ]);
    s.inspector.close(); // twice is harmless
    expect(s.inspector.transfers).toHaveLength(2);
  });

  it('FSETSTAT: allowed on a handle opened for write, decided for write otherwise, denied on an unknown handle', () => {
    const s = session();
    s.send(open(1, '/data/w', PFLAG.WRITE | PFLAG.CREAT), open(2, '/ro/r', PFLAG.READ), open(3, '/data/r', PFLAG.READ));
    s.answer(handle(1, 'w'), handle(2, 'ro'), handle(3, 'r'));
    s.calls.length = 0;
    const chmod = (id: number, h: string) => packet(FXP.FSETSTAT, id, h, 4, 0o777);
    expect(s.send(chmod(4, 'w')).toServer).toEqual(chmod(4, 'w'));
    expect(s.calls).toEqual([]);
    expect(s.send(chmod(5, 'ro')).toClient).toEqual([denied(5, '/ro/r is read-only')]);
    expect(s.send(chmod(6, 'r')).toServer).toEqual(chmod(6, 'r'));
    expect(s.calls).toEqual([{ access: 'write', path: '/ro/r', op: 'fsetstat' }, { access: 'write', path: '/data/r', op: 'fsetstat' }]);
    expect(s.send(chmod(7, 'nope')).toClient).toEqual([denied(7, 'fsetstat on a handle interlock did not see opened')]);
  });

  it('copy-data is allowed (its handles were decided at OPEN) and reported with both paths', () => {
    const s = session();
    s.send(open(1, '/data/src', PFLAG.READ), open(2, '/data/dst', PFLAG.WRITE | PFLAG.CREAT));
    s.answer(handle(1, 's'), handle(2, 'd'));
    const req = extended(3, 'copy-data', 's', 0n, 0n, 'd', 0n);
    expect(s.send(req).toServer).toEqual(req);
    expect(s.events.at(-1)).toEqual({ op: 'copy-data', path: '/data/src', path2: '/data/dst', access: 'write', allowed: true });
  });
});
