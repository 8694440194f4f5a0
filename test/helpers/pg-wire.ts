/** PostgreSQL wire messages built by hand, for tests that feed decoders exact bytes. */
export function message(type: string, ...parts: Buffer[]): Buffer {
  const body = Buffer.concat(parts);
  const head = Buffer.alloc(5);
  head.write(type, 0, 'latin1');
  head.writeInt32BE(4 + body.length, 1);
  return Buffer.concat([head, body]);
}
export const cstr = (s: string) => Buffer.from(s + '\0', 'utf8');
export const int16 = (n: number) => Buffer.from([(n >> 8) & 0xff, n & 0xff]);
export const int32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
};
