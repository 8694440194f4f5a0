/**
 * The literal-free shape of a plain DML statement, so that `... WHERE aid = 1` and
 * `... WHERE aid = 2` share one analysis instead of each costing a parse.
 *
 * What a statement does (its kinds, relations and functions) does not depend on the
 * value of a literal in SELECT / INSERT / UPDATE / DELETE / WITH / VALUES / TABLE —
 * unlike EXPLAIN or COPY options, which is why only those statements are shaped.
 * Anything this small scanner is not certain about makes it give up (undefined), and
 * the caller analyses the exact text: comments, dollar quotes, backslashes in strings
 * (their meaning depends on standard_conforming_strings), prefixed strings (E'', B'',
 * X'', U&'', N''), numbers glued to letters, and set_config() calls, whose literals
 * name the setting they change.
 */

const SHAPED_FIRST_WORDS = new Set(['select', 'insert', 'update', 'delete', 'with', 'values', 'table']);
const MAX_SHAPED = 16 * 1024;

function isIdent(c: number): boolean {
  return (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || (c >= 48 && c <= 57) || c === 95 || c === 36 || c > 127;
}

function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}

/** set_config()'s literals say which setting it changes, and to what: its calls are never shaped. */
function isSetConfig(word: string): boolean {
  return word.toLowerCase() === 'set_config';
}

/** The statement starting at `i` (after blanks) is one that may be shaped, or there is none. */
function shapedStatementAt(sql: string, i: number): boolean {
  const n = sql.length;
  while (i < n && sql.charCodeAt(i) <= 32) i++;
  let j = i;
  while (j < n && isIdent(sql.charCodeAt(j))) j++;
  if (j === i) return i === n || sql.charCodeAt(i) === 59; // end of text, or an empty statement
  return SHAPED_FIRST_WORDS.has(sql.slice(i, j).toLowerCase());
}

/** `sql` with every string literal as '' and every number as 0, or undefined when unsure. */
export function literalShape(sql: string): string | undefined {
  // a NUL ends the text for the parser (and the server): the shape must not read past it either
  if (sql.length > MAX_SHAPED || sql.includes('\0')) return undefined;
  let i = 0;
  const n = sql.length;
  if (!shapedStatementAt(sql, i)) return undefined;

  let out = '';
  let copied = 0; // sql[copied, i) is still to be copied as is
  let changed = false;
  while (i < n) {
    const c = sql.charCodeAt(i);
    if (isIdent(c) && !isDigit(c) && c !== 36) { // a `$` never starts an identifier: it is $1 or a dollar quote
      const start = i;
      while (i < n && isIdent(sql.charCodeAt(i))) i++; // identifiers and keywords, copied later
      if (sql.charCodeAt(i) === 39 || sql.charCodeAt(i) === 38) return undefined; // E'', B'', U&'' …
      if (i - start === 10 && isSetConfig(sql.slice(start, i))) return undefined;
      continue;
    }
    if (c === 34) { // "quoted identifier"
      if (sql.startsWith('"set_config"', i)) return undefined;
      i++;
      for (;;) {
        if (i >= n) return undefined;
        if (sql.charCodeAt(i) === 34) {
          if (sql.charCodeAt(i + 1) === 34) i += 2;
          else break;
        } else i++;
      }
      i++;
      continue;
    }
    if (c === 39) { // 'string literal' → ''
      const start = i;
      i++;
      for (;;) {
        if (i >= n) return undefined;
        const d = sql.charCodeAt(i);
        if (d === 92) return undefined; // a backslash may or may not escape
        if (d === 39) {
          if (sql.charCodeAt(i + 1) === 39) i += 2;
          else break;
        } else i++;
      }
      i++;
      out += `${sql.slice(copied, start)}''`;
      copied = i;
      changed = true;
      continue;
    }
    if (isDigit(c)) { // number → 0
      const start = i;
      while (i < n && isDigit(sql.charCodeAt(i))) i++;
      if (sql.charCodeAt(i) === 46) { // .
        i++;
        while (i < n && isDigit(sql.charCodeAt(i))) i++;
      }
      if (sql.charCodeAt(i) === 101 || sql.charCodeAt(i) === 69) { // e / E
        i++;
        if (sql.charCodeAt(i) === 43 || sql.charCodeAt(i) === 45) i++;
        if (!isDigit(sql.charCodeAt(i))) return undefined;
        while (i < n && isDigit(sql.charCodeAt(i))) i++;
      }
      if (i < n && (isIdent(sql.charCodeAt(i)) || sql.charCodeAt(i) === 39 || sql.charCodeAt(i) === 46)) return undefined;
      out += `${sql.slice(copied, start)}0`;
      copied = i;
      changed = true;
      continue;
    }
    if (c === 36) { // $1 parameter: kept; anything else is a dollar quote
      if (!isDigit(sql.charCodeAt(i + 1))) return undefined;
      i++;
      while (i < n && isDigit(sql.charCodeAt(i))) i++;
      if (i < n && (isIdent(sql.charCodeAt(i)) || sql.charCodeAt(i) === 36)) return undefined;
      continue;
    }
    if ((c === 45 && sql.charCodeAt(i + 1) === 45) || (c === 47 && sql.charCodeAt(i + 1) === 42)) return undefined; // comments
    // every statement of a message must be one whose effect no literal changes: after
    // `select 1;`, `explain (analyze 1) delete …` runs its delete, `analyze 0` would not
    if (c === 59 && !shapedStatementAt(sql, i + 1)) return undefined;
    i++;
  }
  return changed ? out + sql.slice(copied) : sql;
}
