import { describe, it, expect } from 'vitest';
import {
  ORIGIN_SIZE,
  decodeEndpoint,
  decodeOrigin,
  encodeEndpoint,
  encodePortKey,
  encodeRedirect,
  formatEndpoint,
  readAddress,
  toIPv4,
  writeAddress,
} from '../../src/interception/layout.js';

function addr(ip: string): Buffer {
  const b = Buffer.alloc(16, 0xaa); // pre-filled so missing zeroing shows up
  writeAddress(ip, b, 0);
  return b;
}

describe('writeAddress / readAddress', () => {
  it('maps IPv4 into ::ffff:a.b.c.d', () => {
    expect([...addr('127.0.0.3')]).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 3]);
    expect(readAddress(addr('127.0.0.3'), 0)).toBe('127.0.0.3');
    expect(readAddress(addr('10.200.1.254'), 0)).toBe('10.200.1.254');
  });

  it('writes a v4-mapped literal exactly like the plain IPv4', () => {
    expect(addr('::ffff:127.0.0.3').equals(addr('127.0.0.3'))).toBe(true);
    expect(addr('::FFFF:127.0.0.3').equals(addr('127.0.0.3'))).toBe(true);
    expect(readAddress(addr('::ffff:127.0.0.3'), 0)).toBe('127.0.0.3');
  });

  it('writes IPv6 in network byte order', () => {
    expect([...addr('::1')]).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    expect([...addr('::')]).toEqual(new Array(16).fill(0));
    expect(addr('fe80::1:2').toString('hex')).toBe('fe800000000000000000000000010002');
    expect(addr('2001:db8::8a2e:370:7334').toString('hex')).toBe('20010db80000000000008a2e03707334');
    expect(addr('1:2:3:4:5:6:7:8').toString('hex')).toBe('00010002000300040005000600070008');
  });

  it('writes a dotted tail inside a non-mapped IPv6 address', () => {
    expect(addr('64:ff9b::127.0.0.3').toString('hex')).toBe('0064ff9b00000000000000007f000003');
    expect(readAddress(addr('64:ff9b::127.0.0.3'), 0)).toBe('64:ff9b::7f00:3');
  });

  it('honours the offset and leaves the surrounding bytes alone', () => {
    const b = Buffer.alloc(20, 0xee);
    writeAddress('::1', b, 2);
    expect(b.toString('hex')).toBe('eeee' + '00'.repeat(15) + '01' + 'eeee');
    expect(readAddress(b, 2)).toBe('::1');
  });

  it.each([
    ['::1', '::1'],
    ['::', '::'],
    ['fe80::1:2', 'fe80::1:2'],
    ['2001:db8::8a2e:370:7334', '2001:db8::8a2e:370:7334'],
    ['2001:0db8:0000:0000:0000:8a2e:0370:7334', '2001:db8::8a2e:370:7334'],
    ['0:0:0:0:0:0:0:1', '::1'],
    ['1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7:8'],
    ['2001:DB8::1', '2001:db8::1'],
    ['1::', '1::'],
    // a single zero group is not compressed; the first of two equal runs is
    ['1:0:2:3:4:5:6:7', '1:0:2:3:4:5:6:7'],
    ['1:0:0:2:0:0:3:4', '1::2:0:0:3:4'],
    ['1:0:0:2:0:0:0:4', '1:0:0:2::4'],
  ])('round-trips %s as %s', (input, out) => {
    expect(readAddress(addr(input), 0)).toBe(out);
  });

  it('reads 8 full groups back in order', () => {
    const b = Buffer.from('000100020003000400050006000700ff', 'hex');
    expect(readAddress(b, 0)).toBe('1:2:3:4:5:6:7:ff');
  });

  it('does not treat ::ffff alone with nonzero prefix as v4-mapped', () => {
    const b = addr('127.0.0.3');
    b[0] = 0x20;
    expect(readAddress(b, 0)).toBe('2000::ffff:7f00:3');
  });

  it('rejects what is not an IP', () => {
    expect(() => writeAddress('db.internal', Buffer.alloc(16), 0)).toThrow(/not an IP address: db.internal/);
    expect(() => writeAddress('1.2.3.256', Buffer.alloc(16), 0)).toThrow(/not an IP/);
  });
});

describe('endpoint, redirect and port key encodings', () => {
  it('encodes an endpoint as address + little-endian port + zero pad', () => {
    const b = encodeEndpoint('127.0.0.3', 5432);
    expect(b.length).toBe(20);
    expect(b.subarray(0, 16).equals(addr('127.0.0.3'))).toBe(true);
    expect([...b.subarray(16)]).toEqual([0x38, 0x15, 0, 0]); // 5432 = 0x1538
    expect(decodeEndpoint(b)).toEqual({ ip: '127.0.0.3', port: 5432 });
  });

  it('round-trips an IPv6 endpoint and overwrites a reused buffer', () => {
    const out = Buffer.alloc(20, 0xff);
    const b = encodeEndpoint('::1', 65535, out);
    expect(b).toBe(out);
    expect(b.toString('hex')).toBe('00'.repeat(15) + '01' + 'ffff' + '0000');
    expect(decodeEndpoint(encodeEndpoint('fe80::1:2', 1))).toEqual({ ip: 'fe80::1:2', port: 1 });
  });

  it('encodes a redirect as port LE, protocol, reserved zero', () => {
    expect([...encodeRedirect(15432, 1)]).toEqual([0x48, 0x3c, 1, 0]); // 15432 = 0x3c48
    expect([...encodeRedirect(22, 2)]).toEqual([22, 0, 2, 0]);
  });

  it('encodes a port key as a little-endian u32', () => {
    expect([...encodePortKey(5432)]).toEqual([0x38, 0x15, 0, 0]);
    expect([...encodePortKey(65535)]).toEqual([0xff, 0xff, 0, 0]);
  });
});

describe('decodeOrigin', () => {
  /** builds struct il_origin field by field, as the C layout in bpf/interlock.h has it */
  function origin(o: { ip: string; dstPort: number; proxyPort: number; pid: number; uid: number; protocol: number; family: number; cgroupId: bigint; comm: Buffer }): Buffer {
    const b = Buffer.alloc(ORIGIN_SIZE, 0);
    writeAddress(o.ip, b, 0);
    b.writeUInt16LE(o.dstPort, 16);
    b.writeUInt16LE(o.proxyPort, 18);
    b.writeUInt32LE(o.pid, 20);
    b.writeUInt32LE(o.uid, 24);
    b[28] = o.protocol;
    b[29] = o.family;
    b.writeUInt16LE(0xbeef, 30); // reserved: must be ignored
    b.writeBigUInt64LE(o.cgroupId, 32);
    o.comm.copy(b, 40, 0, 16);
    return b;
  }

  it('is 56 bytes', () => {
    expect(ORIGIN_SIZE).toBe(56);
  });

  it('decodes an IPv4 dial', () => {
    const comm = Buffer.alloc(16, 0xcc); // garbage after the NUL must not leak
    comm.write('psql\0', 'latin1');
    const b = origin({ ip: '127.0.0.3', dstPort: 5432, proxyPort: 15432, pid: 123456, uid: 1001, protocol: 1, family: 2, cgroupId: 0x0123456789abcdefn, comm });
    expect(decodeOrigin(b)).toEqual({
      dstIp: '127.0.0.3',
      dstPort: 5432,
      proxyPort: 15432,
      pid: 123456,
      uid: 1001,
      protocol: 1,
      family: 4,
      cgroupId: 0x0123456789abcdefn,
      comm: 'psql',
    });
  });

  it('decodes an IPv6 dial with large values and a full 16-char comm', () => {
    const b = origin({
      ip: '2001:db8::8a2e:370:7334', dstPort: 65535, proxyPort: 1, pid: 0xfffffffe, uid: 4294967294,
      protocol: 3, family: 10, cgroupId: 0xffffffffffffff01n, comm: Buffer.from('abcdefghijklmnop', 'latin1'),
    });
    const o = decodeOrigin(b);
    expect(o.dstIp).toBe('2001:db8::8a2e:370:7334');
    expect(o.family).toBe(6);
    expect(o.dstPort).toBe(65535);
    expect(o.proxyPort).toBe(1);
    expect(o.pid).toBe(0xfffffffe);
    expect(o.uid).toBe(4294967294);
    expect(o.protocol).toBe(3);
    expect(o.cgroupId).toBe(0xffffffffffffff01n);
    expect(o.comm).toBe('abcdefghijklmnop');
  });

  it('reports family 6 for a v4-mapped dial but folds the address to dotted IPv4', () => {
    const b = origin({ ip: '::ffff:10.0.0.7', dstPort: 5432, proxyPort: 15432, pid: 1, uid: 0, protocol: 1, family: 10, cgroupId: 1n, comm: Buffer.from('x\0') });
    const o = decodeOrigin(b);
    expect(o.dstIp).toBe('10.0.0.7');
    expect(o.family).toBe(6);
    expect(o.comm).toBe('x');
  });

  it('gives an empty comm when it starts with NUL', () => {
    const b = origin({ ip: '::1', dstPort: 1, proxyPort: 2, pid: 3, uid: 4, protocol: 1, family: 10, cgroupId: 5n, comm: Buffer.alloc(16) });
    expect(decodeOrigin(b).comm).toBe('');
  });
});

describe('formatEndpoint and toIPv4', () => {
  it('brackets IPv6 only', () => {
    expect(formatEndpoint('127.0.0.3', 5432)).toBe('127.0.0.3:5432');
    expect(formatEndpoint('::1', 5432)).toBe('[::1]:5432');
    expect(formatEndpoint('fe80::1:2', 80)).toBe('[fe80::1:2]:80');
  });

  it('folds v4-mapped and rejects the rest', () => {
    expect(toIPv4('127.0.0.3')).toBe('127.0.0.3');
    expect(toIPv4('::ffff:127.0.0.3')).toBe('127.0.0.3');
    expect(toIPv4('::FFFF:10.1.2.3')).toBe('10.1.2.3');
    expect(toIPv4('::1')).toBeUndefined();
    expect(toIPv4('::ffff:999.0.0.1')).toBeUndefined();
    expect(toIPv4('::fffe:127.0.0.3')).toBeUndefined();
    expect(toIPv4('64:ff9b::127.0.0.3')).toBeUndefined();
    expect(toIPv4('localhost')).toBeUndefined();
  });
});
