/**
 * Policy on an SFTP subsystem channel: every filesystem operation is decided by path before
 * it reaches the server, and files opened are recorded with the bytes moved each way.
 *
 * Protocol: SFTP version 3 (draft-ietf-secsh-filexfer-02), as OpenSSH's sftp, scp and
 * sftp-server speak it, with OpenSSH's extensions. Any other version ends the channel, since
 * later versions lay requests out differently.
 *
 * Stream shape:
 * - Client to server: whole packets only. An allowed packet goes on byte for byte (a view of
 *   the chunk it came in, neighbours merged into one view); a denied one is dropped and
 *   answered with SSH_FXP_STATUS / SSH_FX_PERMISSION_DENIED for its request id.
 * - Server to client: bytes are unchanged but re-chunked on packet boundaries; the tail of a
 *   packet not yet complete is held back until it is. So a denial from fromClient() can be
 *   written to the client at any moment without landing inside a server packet.
 * - Returned buffers are views into the chunks passed in: callers must not reuse those.
 *
 * Paths are reported and decided as the client sent them (relative ones are relative to the
 * login directory); the decider normalises. One exception: a relative SYMLINK target is
 * relative to the link's directory, so the link's directory is put in front (not resolved).
 */
import { ChunkQueue } from '../../util/chunk-queue.js';

export type PathAccess = 'read' | 'write';
export type SftpDecision = { allowed: true } | { allowed: false; message: string };
export interface SftpDecider {
  (access: PathAccess, path: string, op: string): SftpDecision;
}

export interface FileTransfer {
  path: string;
  direction: 'upload' | 'download';
  bytes: number;
  /** 'close' when the client closed the file; 'channel-close' when the channel ended first */
  op?: string;
}

export interface SftpFileEvent {
  /** request name ('open', 'remove', 'posix-rename@openssh.com', …), or 'close' / 'channel-close' for a transfer */
  op: string;
  path: string;
  /** the second path of rename, link, symlink (the new name) and copy-data (the destination) */
  path2?: string;
  access: PathAccess;
  allowed: boolean;
  message?: string;
  bytes?: number;
  direction?: 'upload' | 'download';
}

export interface SftpInspectorOptions {
  /** upper bound for a packet's length field (type byte and body); default 256 KiB, OpenSSH's own limit */
  maxPacketBytes?: number;
}

export const SFTP_VERSION = 3;
export const DEFAULT_MAX_PACKET_BYTES = 256 * 1024;
/** requests sent but not answered yet; a real client keeps a few dozen in flight */
const MAX_OUTSTANDING = 65536;

export const FXP = {
  INIT: 1, VERSION: 2, OPEN: 3, CLOSE: 4, READ: 5, WRITE: 6, LSTAT: 7, FSTAT: 8, SETSTAT: 9, FSETSTAT: 10,
  OPENDIR: 11, READDIR: 12, REMOVE: 13, MKDIR: 14, RMDIR: 15, REALPATH: 16, STAT: 17, RENAME: 18,
  READLINK: 19, SYMLINK: 20,
  STATUS: 101, HANDLE: 102, DATA: 103, NAME: 104, ATTRS: 105, EXTENDED: 200, EXTENDED_REPLY: 201,
} as const;

export const FX_OK = 0;
export const FX_PERMISSION_DENIED = 3;

export const PFLAG = { READ: 0x01, WRITE: 0x02, APPEND: 0x04, CREAT: 0x08, TRUNC: 0x10, EXCL: 0x20 } as const;

/** A packet the inspector cannot accept; the caller ends the channel. */
export class SftpProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SftpProtocolError';
  }
}

// --- framing ---------------------------------------------------------------------------

interface Packet {
  type: number;
  /** after the type byte (view) */
  body: Buffer;
  /** the whole packet, length field included (view), for relaying verbatim */
  raw: Buffer;
}

/** uint32 length, then that many bytes: a type byte and the body. */
class PacketFramer {
  private readonly queue = new ChunkQueue();

  constructor(private readonly maxPacketBytes: number, private readonly side: string) {}

  push(chunk: Buffer): void {
    this.queue.push(chunk);
  }

  /** The next whole packet, or null. Throws as soon as a bad length is visible, before its body is awaited. */
  next(): Packet | null {
    const q = this.queue;
    if (q.length < 4) return null;
    const len = q.contiguous(4).readUInt32BE(q.offset);
    if (len > this.maxPacketBytes) {
      throw new SftpProtocolError(`SFTP packet from the ${this.side} of ${len} bytes exceeds the limit of ${this.maxPacketBytes}`);
    }
    if (len < 1) throw new SftpProtocolError(`empty SFTP packet from the ${this.side}`);
    const total = 4 + len;
    if (q.length < total) return null;
    const raw = q.take(total);
    return { type: raw[4], body: raw.subarray(5), raw };
  }
}

/** Appends a view, merged with the previous one when they are neighbours in memory (fewer writes). */
function appendView(out: Buffer[], view: Buffer): void {
  const last = out[out.length - 1];
  if (last && last.buffer === view.buffer && last.byteOffset + last.length === view.byteOffset) {
    out[out.length - 1] = Buffer.from(last.buffer, last.byteOffset, last.length + view.length);
  } else out.push(view);
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Reads the fields of one packet body; running past its end is a protocol error. */
class FieldReader {
  private at = 0;
  constructor(private readonly buf: Buffer, private readonly what: string) {}

  u32(): number {
    this.need(4);
    const v = this.buf.readUInt32BE(this.at);
    this.at += 4;
    return v;
  }

  skip(n: number): void {
    this.need(n);
    this.at += n;
  }

  bytes(): Buffer {
    const len = this.u32();
    this.need(len);
    const v = this.buf.subarray(this.at, this.at + len);
    this.at += len;
    return v;
  }

  /** A path or name: text, and whether it is what the server will see (valid UTF-8, no NUL). */
  text(): { text: string; valid: boolean } {
    const b = this.bytes();
    try {
      return { text: utf8.decode(b), valid: !b.includes(0) };
    } catch {
      return { text: b.toString('utf8'), valid: false };
    }
  }

  private need(n: number): void {
    if (this.at + n > this.buf.length) throw new SftpProtocolError(`malformed SFTP ${this.what}: truncated`);
  }
}

// --- replies the inspector writes -------------------------------------------------------

function sftpString(s: string | Buffer): Buffer {
  const b = typeof s === 'string' ? Buffer.from(s, 'utf8') : s;
  const len = Buffer.alloc(4);
  len.writeUInt32BE(b.length);
  return Buffer.concat([len, b]);
}

/** SSH_FXP_STATUS: id, code, message, empty language tag. */
export function statusPacket(id: number, code: number, message: string): Buffer {
  const fixed = Buffer.alloc(8);
  fixed.writeUInt32BE(id, 0);
  fixed.writeUInt32BE(code, 4);
  const body = Buffer.concat([fixed, sftpString(message), sftpString('')]);
  const head = Buffer.alloc(5);
  head.writeUInt32BE(1 + body.length, 0);
  head[4] = FXP.STATUS;
  return Buffer.concat([head, body]);
}

// --- what each request needs ---------------------------------------------------------------

interface PathCheck {
  access: PathAccess;
  path: string;
  valid: boolean;
}

/** A request that is decided: its checks in order (the first denial wins) and how it is reported. */
interface Plan {
  op: string;
  checks: PathCheck[];
  /** the access reported when every check passes */
  access: PathAccess;
  path: string;
  path2?: string;
  /** a refusal decided without the decider (unknown request, unknown handle) */
  refuse?: string;
}

interface OpenFile {
  path: string;
  dir: boolean;
  read: boolean;
  /** opened with write access, so that access was decided and allowed */
  write: boolean;
  bytesRead: number;
  bytesWritten: number;
}

/** What a reply means to the inspector, by the id of the request it answers. */
type Pending =
  | { kind: 'open'; path: string; read: boolean; write: boolean; dir: boolean }
  | { kind: 'read'; handle: string }
  | { kind: 'write'; handle: string; bytes: number }
  | { kind: 'close'; handle: string }
  | { kind: 'other' };

/** Path-based requests with one path: the access they need. */
const ONE_PATH: Partial<Record<number, { op: string; access: PathAccess }>> = {
  [FXP.OPENDIR]: { op: 'opendir', access: 'read' },
  [FXP.STAT]: { op: 'stat', access: 'read' },
  [FXP.LSTAT]: { op: 'lstat', access: 'read' },
  [FXP.REALPATH]: { op: 'realpath', access: 'read' },
  [FXP.READLINK]: { op: 'readlink', access: 'read' },
  [FXP.SETSTAT]: { op: 'setstat', access: 'write' },
  [FXP.REMOVE]: { op: 'remove', access: 'write' },
  [FXP.MKDIR]: { op: 'mkdir', access: 'write' },
  [FXP.RMDIR]: { op: 'rmdir', access: 'write' },
};

/** Requests on a handle: their OPEN/OPENDIR was decided. FSETSTAT is not here (see fsetstat()). */
const ON_HANDLE = new Set<number>([FXP.CLOSE, FXP.READ, FXP.WRITE, FXP.FSTAT, FXP.READDIR]);

/** Extensions with no path to decide: on a handle, or about the server itself. */
const EXTENSIONS_WITHOUT_PATH = new Set(['fsync@openssh.com', 'fstatvfs@openssh.com', 'limits@openssh.com', 'users-groups-by-id@openssh.com']);

const handleKey = (h: Buffer) => h.toString('hex');

export class SftpInspector {
  private readonly fromClientFramer: PacketFramer;
  private readonly fromServerFramer: PacketFramer;
  private versionAgreed = false;
  private readonly pending = new Map<number, Pending>();
  private readonly handles = new Map<string, OpenFile>();
  private readonly finished: FileTransfer[] = [];
  private closed = false;

  constructor(
    private readonly decide: SftpDecider,
    private readonly onFileEvent: (e: SftpFileEvent) => void,
    opts: SftpInspectorOptions = {},
  ) {
    const max = opts.maxPacketBytes ?? DEFAULT_MAX_PACKET_BYTES;
    this.fromClientFramer = new PacketFramer(max, 'client');
    this.fromServerFramer = new PacketFramer(max, 'server');
  }

  /** Transfers of files closed so far (and, after close(), of those left open). */
  get transfers(): readonly FileTransfer[] {
    return this.finished;
  }

  /** Client → server bytes: whole allowed packets to forward, and denials to send straight back to the client. */
  fromClient(chunk: Buffer): { toServer: Buffer[]; toClient: Buffer[] } {
    const toServer: Buffer[] = [];
    const toClient: Buffer[] = [];
    this.fromClientFramer.push(chunk);
    for (let p = this.fromClientFramer.next(); p; p = this.fromClientFramer.next()) {
      const denial = this.request(p);
      if (denial) toClient.push(denial);
      else appendView(toServer, p.raw);
    }
    return { toServer, toClient };
  }

  /** Server → client bytes, unchanged but cut on packet boundaries (a partial packet waits for its rest). */
  fromServer(chunk: Buffer): Buffer[] {
    const out: Buffer[] = [];
    this.fromServerFramer.push(chunk);
    for (let p = this.fromServerFramer.next(); p; p = this.fromServerFramer.next()) {
      this.reply(p);
      appendView(out, p.raw);
    }
    return out;
  }

  /** The channel closed: files still open are reported with what moved so far. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const [key, file] of this.handles) this.finish(key, file, 'channel-close');
    this.pending.clear();
  }

  // --- client requests ---------------------------------------------------------------

  /** Forwards (returns undefined) or returns the denial to send back. */
  private request(p: Packet): Buffer | undefined {
    if (p.type === FXP.INIT) return undefined; // the server answers with the version it speaks
    // a client waits for VERSION before its first request; until then the layout is unknown
    if (!this.versionAgreed) throw new SftpProtocolError(`SFTP request type ${p.type} before the protocol version was agreed`);
    const r = new FieldReader(p.body, `request type ${p.type}`);
    const id = r.u32();
    if (this.pending.has(id)) throw new SftpProtocolError(`SFTP request id ${id} reused while still outstanding`);

    const plan = this.plan(p.type, r, id);
    if (plan) {
      const refusal = this.judge(plan);
      if (refusal !== undefined) return statusPacket(id, FX_PERMISSION_DENIED, refusal);
    }
    if (this.pending.size >= MAX_OUTSTANDING) throw new SftpProtocolError(`more than ${MAX_OUTSTANDING} SFTP requests outstanding`);
    this.pending.set(id, this.track(p.type, p.body) ?? { kind: 'other' });
    return undefined;
  }

  /** What to decide for a request; undefined when nothing is (handle-based requests). */
  private plan(type: number, r: FieldReader, id: number): Plan | undefined {
    const one = ONE_PATH[type];
    if (one) return this.onePath(one.op, one.access, r);
    switch (type) {
      case FXP.OPEN:
        return this.openPlan(r);
      case FXP.RENAME:
        return this.twoPaths('rename', r, 'write', 'write');
      case FXP.SYMLINK:
        return this.symlinkPlan(r);
      case FXP.FSETSTAT:
        return this.fsetstatPlan(r);
      case FXP.EXTENDED:
        return this.extendedPlan(r);
    }
    if (ON_HANDLE.has(type)) return undefined;
    return { op: `type-${type}`, checks: [], access: 'write', path: '', refuse: `SFTP request type ${type} (id ${id}) is not supported through interlock` };
  }

  private onePath(op: string, access: PathAccess, r: FieldReader): Plan {
    const path = r.text();
    return { op, access, path: path.text, checks: [{ access, path: path.text, valid: path.valid }] };
  }

  /** Old name, then new name; the event reports them in that order. */
  private twoPaths(op: string, r: FieldReader, oldAccess: PathAccess, newAccess: PathAccess): Plan {
    const from = r.text();
    const to = r.text();
    return {
      op, access: 'write', path: from.text, path2: to.text,
      // the new name first: it is the one written
      checks: [{ access: newAccess, path: to.text, valid: to.valid }, { access: oldAccess, path: from.text, valid: from.valid }],
    };
  }

  /**
   * OPEN: filename, pflags, attrs. The server opens O_RDONLY unless WRITE is set, so a request
   * without READ and WRITE still reads; APPEND, CREAT and TRUNC change the file. Write is
   * decided first and reported when both are needed.
   */
  private openPlan(r: FieldReader): Plan {
    const path = r.text();
    const pflags = r.u32();
    const { read, write } = openAccess(pflags);
    const checks: PathCheck[] = [];
    if (write) checks.push({ access: 'write', path: path.text, valid: path.valid });
    if (read) checks.push({ access: 'read', path: path.text, valid: path.valid });
    return { op: 'open', access: write ? 'write' : 'read', path: path.text, checks };
  }

  /**
   * SYMLINK: OpenSSH's client and server put the target first and the new link second, the
   * reverse of the draft's (linkpath, targetpath); what they do is what reaches the disk, so
   * that order is read. The link's location is written, the target read; a relative target is
   * taken from the link's directory.
   */
  private symlinkPlan(r: FieldReader): Plan {
    const target = r.text();
    const link = r.text();
    const targetPath = target.text.startsWith('/') ? target.text : link.text.slice(0, link.text.lastIndexOf('/') + 1) + target.text;
    return {
      op: 'symlink', access: 'write', path: targetPath, path2: link.text,
      checks: [{ access: 'write', path: link.text, valid: link.valid }, { access: 'read', path: targetPath, valid: target.valid }],
    };
  }

  /**
   * FSETSTAT changes a file through a handle, and fchmod, fchown and futimes work on a file
   * opened only for reading: unless write was allowed at OPEN, write is decided now.
   */
  private fsetstatPlan(r: FieldReader): Plan {
    const file = this.handles.get(handleKey(r.bytes()));
    if (!file) return { op: 'fsetstat', checks: [], access: 'write', path: '', refuse: 'fsetstat on a handle interlock did not see opened' };
    return { op: 'fsetstat', access: 'write', path: file.path, checks: file.write ? [] : [{ access: 'write', path: file.path, valid: true }] };
  }

  /** EXTENDED: by name; a name not known here is refused, since its arguments cannot be decided. */
  private extendedPlan(r: FieldReader): Plan | undefined {
    const name = r.text().text;
    switch (name) {
      case 'posix-rename@openssh.com':
        return this.twoPaths(name, r, 'write', 'write');
      case 'hardlink@openssh.com':
        return this.twoPaths(name, r, 'read', 'write');
      case 'statvfs@openssh.com':
      case 'expand-path@openssh.com':
        return this.onePath(name, 'read', r);
      case 'lsetstat@openssh.com':
        return this.onePath(name, 'write', r);
      case 'home-directory': {
        // the argument is a user name; "~user" is the path it stands for
        const user = r.text();
        const path = `~${user.text}`;
        return { op: name, access: 'read', path, checks: [{ access: 'read', path, valid: user.valid }] };
      }
      case 'copy-data': {
        // both handles were decided at OPEN (source read, destination write); reported, not decided
        const from = this.handles.get(handleKey(r.bytes()));
        r.skip(16);
        const to = this.handles.get(handleKey(r.bytes()));
        return { op: name, checks: [], access: 'write', path: from?.path ?? '', path2: to?.path ?? '' };
      }
    }
    if (EXTENSIONS_WITHOUT_PATH.has(name)) return undefined;
    return { op: name, checks: [], access: 'write', path: '', refuse: `SFTP extension "${name}" is not supported through interlock` };
  }

  /** Runs a plan's checks and reports it; returns the refusal message, if refused. */
  private judge(plan: Plan): string | undefined {
    let refusal: { access: PathAccess; message: string } | undefined;
    if (plan.refuse !== undefined) refusal = { access: plan.access, message: plan.refuse };
    for (const c of plan.checks) {
      if (refusal) break;
      if (!c.valid) {
        refusal = { access: c.access, message: `path ${JSON.stringify(c.path)} is not valid UTF-8 or holds a NUL byte` };
        break;
      }
      const d = this.decide(c.access, c.path, plan.op);
      if (!d.allowed) refusal = { access: c.access, message: d.message };
    }
    this.onFileEvent({
      op: plan.op,
      path: plan.path,
      ...(plan.path2 !== undefined ? { path2: plan.path2 } : {}),
      access: refusal?.access ?? plan.access,
      allowed: !refusal,
      ...(refusal ? { message: refusal.message } : {}),
    });
    return refusal?.message;
  }

  /** What the reply to a forwarded request will tell (handles, byte counts), by request id. */
  private track(type: number, body: Buffer): Pending | undefined {
    const r = new FieldReader(body, `request type ${type}`);
    r.skip(4); // id
    switch (type) {
      case FXP.OPEN: {
        const path = r.text().text;
        return { kind: 'open', path, ...openAccess(r.u32()), dir: false };
      }
      case FXP.OPENDIR:
        return { kind: 'open', path: r.text().text, read: true, write: false, dir: true };
      case FXP.READ:
        return { kind: 'read', handle: handleKey(r.bytes()) };
      case FXP.WRITE: {
        const handle = handleKey(r.bytes());
        r.skip(8); // offset
        return { kind: 'write', handle, bytes: r.bytes().length };
      }
      case FXP.CLOSE:
        return { kind: 'close', handle: handleKey(r.bytes()) };
    }
    return undefined;
  }

  // --- server replies ----------------------------------------------------------------

  private reply(p: Packet): void {
    if (!this.versionAgreed) {
      if (p.type !== FXP.VERSION) throw new SftpProtocolError(`SFTP server sent type ${p.type} before VERSION`);
      const version = new FieldReader(p.body, 'VERSION').u32();
      if (version !== SFTP_VERSION) throw new SftpProtocolError(`SFTP version ${version} is not supported through interlock (only ${SFTP_VERSION})`);
      this.versionAgreed = true;
      return;
    }
    const r = new FieldReader(p.body, `reply type ${p.type}`);
    const id = r.u32();
    const pending = this.pending.get(id);
    if (!pending) return;
    this.pending.delete(id);
    switch (pending.kind) {
      case 'open':
        if (p.type === FXP.HANDLE) this.opened(handleKey(r.bytes()), pending);
        break;
      case 'read': {
        const file = this.handles.get(pending.handle);
        if (file && p.type === FXP.DATA) file.bytesRead += r.bytes().length;
        break;
      }
      case 'write': {
        const file = this.handles.get(pending.handle);
        if (file && p.type === FXP.STATUS && r.u32() === FX_OK) file.bytesWritten += pending.bytes;
        break;
      }
      case 'close': {
        // the server lets go of the handle whatever the status, and may hand the same string out again
        const file = this.handles.get(pending.handle);
        if (file) this.finish(pending.handle, file, 'close');
        break;
      }
    }
  }

  private opened(key: string, o: { path: string; read: boolean; write: boolean; dir: boolean }): void {
    const stale = this.handles.get(key);
    if (stale) this.finish(key, stale, 'close');
    this.handles.set(key, { path: o.path, dir: o.dir, read: o.read, write: o.write, bytesRead: 0, bytesWritten: 0 });
  }

  /** Reports a file's transfer: an upload if it was opened for writing or written, a download if it was read. */
  private finish(key: string, file: OpenFile, op: string): void {
    this.handles.delete(key);
    if (file.dir) return;
    const transfers: FileTransfer[] = [];
    if (file.write || file.bytesWritten > 0) transfers.push({ path: file.path, direction: 'upload', bytes: file.bytesWritten, op });
    if ((file.read && !file.write) || file.bytesRead > 0) transfers.push({ path: file.path, direction: 'download', bytes: file.bytesRead, op });
    for (const t of transfers) {
      this.finished.push(t);
      this.onFileEvent({ op, path: t.path, access: t.direction === 'upload' ? 'write' : 'read', allowed: true, bytes: t.bytes, direction: t.direction });
    }
  }
}

/** The access an OPEN's pflags need, as OpenSSH's server maps them to open(2) flags. */
export function openAccess(pflags: number): { read: boolean; write: boolean } {
  const write = (pflags & (PFLAG.WRITE | PFLAG.APPEND | PFLAG.CREAT | PFLAG.TRUNC)) !== 0;
  const read = (pflags & PFLAG.READ) !== 0 || (pflags & PFLAG.WRITE) === 0;
  return { read, write };
}
