/**
 * Globs for paths and names: `*` matches within one segment, `**` across segments,
 * `?` one character. `sep` is the segment separator ('/' for cgroups, '.' for relations).
 */
export function globToRegExp(glob: string, sep = '/'): RegExp {
  const s = escape(sep);
  let out = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i];
    if (c === '*' && glob[i + 1] === '*') {
      out += '.*';
      i++;
    } else if (c === '*') out += `[^${s}]*`;
    else if (c === '?') out += `[^${s}]`;
    else out += escape(c);
  }
  return new RegExp(`^${out}$`);
}

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&');
}
