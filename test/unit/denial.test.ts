import { describe, expect, it } from 'vitest';
import { Denials } from '../../src/protocols/postgres/denial.js';
import { errorResponse, readErrorFields } from '../../src/protocols/postgres/backend.js';
import { MessageFramer } from '../../src/protocols/postgres/framer.js';

/** the frame of an ErrorResponse as the server would send it */
function serverError(code: string, message: string) {
  const f = new MessageFramer();
  f.push(errorResponse({ severity: 'ERROR', code, message }));
  return f.next()!;
}

describe('Denials', () => {
  it('replaces a query with a call of a function that cannot exist, naming the denial', () => {
    const d = new Denials();
    const q = d.query({ message: 'interlock: no' });
    expect(q[0]).toBe(0x51);
    expect(q.toString('latin1')).toContain('SELECT pg_catalog."interlock-denial-1"()');
    const p = d.parse('stmt7', { message: 'interlock: no' });
    expect(p[0]).toBe(0x50);
    expect(p.toString('latin1')).toContain('stmt7\0SELECT pg_catalog."interlock-denial-2"()');
  });

  it('rewrites the server\'s undefined-function error for a pending denial into 42501 with our message', () => {
    const d = new Denials();
    d.query({ message: 'interlock: dangerous function', detail: 'rule p#1' });
    const out = d.rewrite(serverError('42883', 'function pg_catalog.interlock-denial-1() does not exist'))!;
    const fields = readErrorFields(out.subarray(5));
    expect(fields).toMatchObject({ S: 'ERROR', C: '42501', M: 'interlock: dangerous function', D: 'rule p#1' });
    // answered once: the same error again is the server's own business
    expect(d.rewrite(serverError('42883', 'function pg_catalog.interlock-denial-1() does not exist'))).toBeUndefined();
  });

  it('leaves every other error alone, including a look-alike for a denial that is not pending', () => {
    const d = new Denials();
    d.query({ message: 'x' });
    expect(d.rewrite(serverError('42P01', 'relation "interlock-denial-1" does not exist'))).toBeUndefined();
    expect(d.rewrite(serverError('42883', 'function interlock-denial-99() does not exist'))).toBeUndefined();
  });

  it('forgets older denials whose error never came (already aborted transaction) once a later one answers', () => {
    const d = new Denials();
    d.query({ message: 'first' });
    d.query({ message: 'second' });
    expect(readErrorFields(d.rewrite(serverError('42883', 'interlock-denial-2'))!.subarray(5)).M).toBe('second');
    expect(d.rewrite(serverError('42883', 'interlock-denial-1'))).toBeUndefined();
  });
});
