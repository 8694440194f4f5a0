/**
 * A target's catalog, read as a session reads it at login, for tools that have no session
 * (`interlock policy check`): log in with the vaulted credential, run the catalog query,
 * hand its rows to a CatalogReader, leave. The rows are never parsed here.
 */
import { connect } from 'node:net';
import { serialize } from 'pg-protocol';
import type { PostgresTargetDef } from '../../config/types.js';
import { readSecret } from '../../config/targets.js';
import { UpstreamAuthenticator } from './auth.js';
import { readErrorFields } from './backend.js';
import { CATALOG_WITH_LINEAGE_SQL, CatalogReader, type Catalog } from './catalog.js';
import { MessageFramer } from './framer.js';
import { Backend } from './message-types.js';
import { serializeStartup } from './startup.js';

export interface CatalogFetchOptions {
  /** the database to read (a target that serves one database: that one) */
  database: string;
  /** connect, log in and read, at most */
  timeoutMs: number;
}

export function fetchCatalog(target: PostgresTargetDef, opts: CatalogFetchOptions): Promise<Catalog> {
  const { host, port, user } = target.upstream;
  const framer = new MessageFramer();
  const reader = new CatalogReader();
  let reading = false;
  return new Promise<Catalog>((resolve, reject) => {
    const auth = new UpstreamAuthenticator(user, readSecret(target.upstream.password)); // a secret that cannot be read rejects
    const socket = connect({ host, port });
    const fail = (why: string) => {
      socket.destroy();
      reject(new Error(why));
    };
    socket.setTimeout(opts.timeoutMs, () => fail(`no answer within ${opts.timeoutMs / 1000} s`));
    socket.on('error', (e: NodeJS.ErrnoException) => fail(e.code ?? e.message));
    socket.on('close', () => fail('the server closed the connection'));
    // the same search path a session pins: views' definitions print names relative to it
    socket.once('connect', () => socket.write(serializeStartup({ user, database: opts.database, search_path: 'public' })));
    socket.on('data', (chunk: Buffer) => {
      try {
        framer.push(chunk);
        for (let f = framer.next(); f; f = framer.next()) {
          switch (f.type) {
            case Backend.Authentication: {
              const step = auth.respond(f.payload);
              if (step.reply) socket.write(step.reply);
              break;
            }
            case Backend.ErrorResponse:
              return fail(readErrorFields(f.payload).M ?? 'the server refused');
            case Backend.DataRow:
              reader.row(f.payload);
              break;
            case Backend.CommandComplete:
              reader.resultDone();
              break;
            case Backend.ReadyForQuery:
              if (!reading) {
                reading = true;
                socket.write(serialize.query(CATALOG_WITH_LINEAGE_SQL));
                break;
              }
              resolve(reader.finish(`${target.name}\n${opts.database}`));
              socket.end(serialize.end());
              return;
            default: // ParameterStatus, BackendKeyData, RowDescription, notices
          }
        }
      } catch (e) {
        fail((e as Error).message);
      }
    });
  });
}
