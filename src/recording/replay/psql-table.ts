/**
 * Text exactly as `psql` (15, default settings: aligned format, border 1, ascii line style)
 * prints a statement's outcome, so that a replay reads like the terminal the agent had.
 * Pure: values in, strings out.
 *
 * Not reproduced: expanded (\x) and wrapped output, pager, column width limits, non-UTF-8
 * client encodings, and the display widths of characters added to Unicode after 14.0
 * (psql 15 uses Unicode 14 tables; these use the running Node's Unicode data).
 */

export interface PsqlColumn {
  name: string;
  typeOid: number;
}

/** A cell as it arrives in a text-format DataRow; null for NULL. */
export type PsqlCell = string | null;

/** One statement's outcome as the server reported it. */
export interface PsqlResult {
  /** present when a RowDescription came: the statement returned a result set (maybe empty) */
  columns?: readonly PsqlColumn[];
  rows: readonly (readonly PsqlCell[])[];
  /** the CommandComplete tag, e.g. "INSERT 0 1" */
  tag?: string;
}

// psql right-aligns these types (int2, int4, int8, oid, xid, cid, float4, float8, money, numeric, xid8)
const RIGHT_ALIGNED_TYPES = new Set([21, 23, 20, 26, 28, 29, 700, 701, 790, 1700, 5069]);

export function isRightAligned(typeOid: number): boolean {
  return RIGHT_ALIGNED_TYPES.has(typeOid);
}

/** psql prints a command's tag only for these when it also printed the rows (… RETURNING). */
const TAG_AFTER_ROWS = /^(INSERT|UPDATE|DELETE|MERGE)\b/;

/** What psql prints to stdout for one statement's result. */
export function renderPsqlResult(result: PsqlResult): string {
  if (result.columns) {
    const table = renderPsqlTable(result.columns, result.rows);
    return result.tag !== undefined && TAG_AFTER_ROWS.test(result.tag) ? table + result.tag + '\n' : table;
  }
  return result.tag !== undefined ? result.tag + '\n' : '';
}

/** The aligned table, its `(N rows)` footer and the blank line after it. */
export function renderPsqlTable(columns: readonly PsqlColumn[], rows: readonly (readonly PsqlCell[])[]): string {
  const headers = columns.map((c) => formatCell(c.name));
  const cells = rows.map((row) => columns.map((_, i) => formatCell(row[i] ?? '')));
  const widths = columns.map((_, i) => Math.max(maxWidth(headers[i]), ...cells.map((row) => maxWidth(row[i]))));
  const rightAligned = columns.map((c) => isRightAligned(c.typeOid));

  let out = '';
  if (columns.length > 0) out += headerLines(headers, widths);
  out += divider(widths) + '\n';
  for (const row of cells) out += rowLines(row, widths, rightAligned);
  out += `(${rows.length} ${rows.length === 1 ? 'row' : 'rows'})\n\n`;
  return out;
}

function headerLines(headers: CellLine[][], widths: number[]): string {
  let out = '';
  const height = Math.max(...headers.map((h) => h.length));
  for (let line = 0; line < height; line++) {
    headers.forEach((header, i) => {
      const part = header[line];
      if (part) {
        const room = widths[i] - part.width;
        out += ' ' + spaces(Math.floor(room / 2)) + part.text + spaces(Math.ceil(room / 2));
      } else {
        out += ' ' + spaces(widths[i]);
      }
      // header cells are always padded, even the last; '+' marks a name that goes on
      out += line + 1 < header.length ? '+' : ' ';
      if (i < headers.length - 1) out += '|';
    });
    out += '\n';
  }
  return out;
}

function rowLines(row: CellLine[][], widths: number[], rightAligned: boolean[]): string {
  let out = '';
  const height = Math.max(...row.map((cell) => cell.length));
  for (let line = 0; line < height; line++) {
    row.forEach((cell, i) => {
      const last = i === row.length - 1;
      const part = cell[line];
      const continues = part !== undefined && line + 1 < cell.length;
      out += ' ';
      if (!part) {
        if (!last) out += spaces(widths[i]);
      } else if (rightAligned[i]) {
        out += spaces(widths[i] - part.width) + part.text;
      } else {
        // the last column is not padded, unless a continuation mark has to line up
        out += part.text + (last && !continues ? '' : spaces(widths[i] - part.width));
      }
      if (continues) out += '+';
      else if (!last) out += ' ';
      if (!last) out += '|';
    });
    out += '\n';
  }
  return out;
}

function divider(widths: number[]): string {
  if (widths.length === 0) return '--';
  return widths.map((w) => '-'.repeat(w + 2)).join('+');
}

function maxWidth(lines: CellLine[]): number {
  return lines.reduce((max, l) => Math.max(max, l.width), 0);
}

function spaces(n: number): string {
  return n > 0 ? ' '.repeat(n) : '';
}

interface CellLine {
  text: string;
  width: number;
}

/**
 * A value as psql shows it: one entry per line (split at \n), tabs expanded to the next
 * multiple of 8 within the line, other control characters spelled out (\r, \x07, \u0085).
 */
function formatCell(value: string): CellLine[] {
  if (/^[\x20-\x7e]*$/.test(value)) return [{ text: value, width: value.length }];
  const lines: CellLine[] = [];
  let text = '';
  let width = 0;
  for (const ch of value) {
    const cp = ch.codePointAt(0)!;
    if (ch === '\n') {
      lines.push({ text, width });
      text = '';
      width = 0;
    } else if (ch === '\r') {
      text += '\\r';
      width += 2;
    } else if (ch === '\t') {
      const pad = 8 - (width % 8);
      text += ' '.repeat(pad);
      width += pad;
    } else if (cp < 0x20 || cp === 0x7f) {
      text += '\\x' + hex(cp, 2);
      width += 4;
    } else if (cp >= 0x80 && cp < 0xa0) {
      text += '\\u' + hex(cp, 4);
      width += 6;
    } else {
      text += ch;
      width += charWidth(cp, ch);
    }
  }
  lines.push({ text, width });
  return lines;
}

function hex(n: number, digits: number): string {
  return n.toString(16).toUpperCase().padStart(digits, '0');
}

/** Terminal columns of a string as psql counts them (its control-character escapes aside). */
export function displayWidth(text: string): number {
  if (/^[\x20-\x7e]*$/.test(text)) return text.length;
  let width = 0;
  for (const ch of text) width += charWidth(ch.codePointAt(0)!, ch);
  return width;
}

const NON_SPACING = /^[\p{Mn}\p{Me}]$/u;
const EMOJI_PRESENTATION = /^\p{Emoji_Presentation}$/u;

/**
 * East Asian Wide and Fullwidth blocks (Unicode 14). Together with the emoji that default to
 * emoji presentation, these are exactly the characters psql 15 counts as two columns.
 */
const WIDE_RANGES: readonly [number, number][] = [
  [0x1100, 0x115f], [0x2329, 0x232a], [0x2e80, 0x303e], [0x3041, 0x3247], [0x3250, 0x4dbf],
  [0x4e00, 0xa4cf], [0xa960, 0xa97f], [0xac00, 0xd7a3], [0xf900, 0xfaff], [0xfe10, 0xfe19],
  [0xfe30, 0xfe6f], [0xff00, 0xff60], [0xffe0, 0xffe6], [0x16fe0, 0x18cff], [0x18d00, 0x18d08],
  [0x1aff0, 0x1b2ff], [0x1f200, 0x1f2ff], [0x20000, 0x3fffd],
];

function charWidth(cp: number, ch: string): number {
  if (cp < 0x300) return 1;
  if (NON_SPACING.test(ch)) return 0;
  if (WIDE_RANGES.some(([lo, hi]) => cp >= lo && cp <= hi)) return 2;
  // regional indicator letters are emoji but narrow
  if (cp >= 0x2000 && !(cp >= 0x1f1e6 && cp <= 0x1f1ff) && EMOJI_PRESENTATION.test(ch)) return 2;
  return 1;
}

/** What psql prints (to stderr) for an ErrorResponse, at its default verbosity and SHOW_CONTEXT. */
export function renderPsqlError(fields: Readonly<Record<string, string>>, query?: string): string {
  return renderReport(fields, query, true);
}

/** What psql prints (to stderr) for a NoticeResponse: like an error, without CONTEXT. */
export function renderPsqlNotice(fields: Readonly<Record<string, string>>, query?: string): string {
  return renderReport(fields, query, false);
}

function renderReport(f: Readonly<Record<string, string>>, query: string | undefined, withContext: boolean): string {
  let out = `${f.S ?? f.V ?? 'ERROR'}:  ${f.M ?? ''}\n`;
  if (query !== undefined && f.P) out += errorPosition(query, Number(f.P));
  else if (f.q !== undefined && f.p) out += errorPosition(f.q, Number(f.p));
  if (f.D !== undefined) out += `DETAIL:  ${f.D}\n`;
  if (f.H !== undefined) out += `HINT:  ${f.H}\n`;
  if (f.q !== undefined) out += `QUERY:  ${f.q}\n`;
  if (withContext && f.W !== undefined) out += `CONTEXT:  ${f.W}\n`;
  return out;
}

// libpq keeps the quoted query line within 60 columns, and the caret 10 columns from its end
const POSITION_LINE_COLUMNS = 60;
const POSITION_RIGHT_MARGIN = 10;

/**
 * The `LINE n:` excerpt and caret libpq adds for an error position (1-based, in characters).
 * Tabs count as one space; long lines are cut with "..." so the caret stays in view.
 */
function errorPosition(query: string, position: number): string {
  const chars = Array.from(query);
  const at = position - 1;
  if (!Number.isInteger(at) || at < 0 || at > chars.length) return '';
  // screen column where each character starts; a line break ends the excerpt
  const column: number[] = [];
  let lineNo = 1;
  let begin = 0;
  let end = -1;
  let col = 0;
  for (let i = 0; i < chars.length; i++) {
    column[i] = col;
    const ch = chars[i];
    if (ch === '\t') chars[i] = ' ';
    else if (ch === '\r' || ch === '\n') {
      if (i >= at) {
        end = i;
        break;
      }
      // \r\n counts as one line break
      if (ch === '\r' || i === 0 || chars[i - 1] !== '\r') lineNo++;
      begin = i + 1;
    }
    col += Math.max(1, displayWidth(chars[i]));
  }
  if (end < 0) {
    end = chars.length;
    column[end] = col;
  }

  let cutLeft = false;
  let cutRight = false;
  if (column[end] - column[begin] > POSITION_LINE_COLUMNS) {
    if (column[begin] + POSITION_LINE_COLUMNS >= column[at] + POSITION_RIGHT_MARGIN) {
      while (column[end] - column[begin] > POSITION_LINE_COLUMNS) end--;
      cutRight = true;
    } else {
      while (column[at] + POSITION_RIGHT_MARGIN < column[end]) {
        end--;
        cutRight = true;
      }
      while (column[end] - column[begin] > POSITION_LINE_COLUMNS) {
        begin++;
        cutLeft = true;
      }
    }
  }
  const prefix = `LINE ${lineNo}: ` + (cutLeft ? '...' : '');
  const excerpt = chars.slice(begin, end).join('');
  const caretColumn = prefix.length + column[at] - column[begin];
  return `${prefix}${excerpt}${cutRight ? '...' : ''}\n${' '.repeat(caretColumn)}^\n`;
}
