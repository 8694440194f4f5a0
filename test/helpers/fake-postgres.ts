/**
 * A scripted PostgreSQL server for the session's limit tests: trust login, then each simple
 * Query is answered by a handler the test chooses. No real database: the tests need a server
 * that misbehaves on cue (endless rows, huge messages, silence) in ways a real one will not.
 */
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { MessageFramer } from '../../src/protocols/postgres/framer.js';

/** A backend message: type byte, length, body. */
export function message(type: string, body: Buffer = Buffer.alloc(0)): Buffer {
  const out = Buffer.allocUnsafe(5 + body.length);
  out[0] = type.charCodeAt(0);
  out.writeInt32BE(4 + body.length, 1);
  body.copy(out, 5);
  return out;
}

/** RowDescription of text columns with these names. */
export function rowDescription(names: string[]): Buffer {
  const parts = [Buffer.from([names.length >> 8, names.length & 0xff])];
  for (const n of names) {
    const meta = Buffer.alloc(18);
    meta.writeUInt32BE(25, 6); // text
    meta.writeInt16BE(-1, 10);
    parts.push(Buffer.from(`${n}\0`), meta);
  }
  return message('T', Buffer.concat(parts));
}

export function dataRow(values: (Buffer | string)[]): Buffer {
  const parts = [Buffer.from([values.length >> 8, values.length & 0xff])];
  for (const v of values) {
    const b = Buffer.isBuffer(v) ? v : Buffer.from(v);
    const len = Buffer.alloc(4);
    len.writeInt32BE(b.length, 0);
    parts.push(len, b);
  }
  return message('D', Buffer.concat(parts));
}

export const commandComplete = (tag: string) => message('C', Buffer.from(`${tag}\0`));
export const readyForQuery = () => message('Z', Buffer.from('I'));

/** Answers one Query on this server socket (text without its NUL). */
export type QueryHandler = (sql: string, server: Socket) => void;

export interface FakePostgres {
  port: number;
  /** server-side sockets, for what the test wants to see of them (closed? bytes written?) */
  sockets: Set<Socket>;
  close(): Promise<void>;
}

/** Listens on host (a 127.0.0.2x address); `onQuery` answers every Query after a trust login. */
export async function startFakePostgres(host: string, onQuery: QueryHandler): Promise<FakePostgres> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    const framer = new MessageFramer({ startup: true });
    s.on('data', (d) => {
      framer.push(d);
      for (let f = framer.next(); f; f = framer.next()) {
        if (f.type === 0) {
          framer.setStartupMode(false);
          const ok = message('R', Buffer.from([0, 0, 0, 0]));
          const key = message('K', Buffer.from([0, 0, 0, 7, 0, 0, 0, 9]));
          s.write(Buffer.concat([ok, key, readyForQuery()]));
        } else if (f.type === 0x51) {
          onQuery(f.payload.toString('utf8', 0, f.payload.length - 1), s);
        } else if (f.type === 0x58) {
          s.end();
        }
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  return {
    port: (server.address() as AddressInfo).port,
    sockets,
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

/** Accepts and never says a word: a hung upstream. */
export async function startSilentServer(host: string): Promise<FakePostgres> {
  const sockets = new Set<Socket>();
  const server = createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    s.resume(); // reads (and drops) what comes, so the peer's FIN is seen
  });
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  return {
    port: (server.address() as AddressInfo).port,
    sockets,
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
