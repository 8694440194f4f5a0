import { describe, it, expect } from 'vitest';
import { DETECTOR_MAP, getDetector, type DetectorName } from '../../src/masking/detectors.js';
import { partial, redact, keyedHash, makeStrategy, REDACTED } from '../../src/masking/strategies.js';
import { DETECTORS } from '../../src/config/load.js';

/** The substrings a detector finds. */
const found = (name: DetectorName, text: string) => DETECTOR_MAP[name].find(text).map(([s, e]) => text.slice(s, e));

describe('detector registry', () => {
  it('has exactly the detectors the config accepts', () => {
    expect(Object.keys(DETECTOR_MAP).sort()).toEqual([...DETECTORS].sort());
    expect(() => getDetector('nope')).toThrow(/unknown detector/);
    expect(() => getDetector('toString')).toThrow(/unknown detector/);
  });

  it('returns nothing (and the same empty result) for plain values', () => {
    for (const name of DETECTORS) {
      expect(DETECTOR_MAP[name].find('')).toEqual([]);
      expect(DETECTOR_MAP[name].find('hello world')).toEqual([]);
      expect(DETECTOR_MAP[name].find('42')).toBe(DETECTOR_MAP[name].find('43'));
    }
  });
});

describe('email', () => {
  it('finds addresses inside free text', () => {
    const text = 'call alan@example.org or m.e+tag@mail.example.co.uk.';
    expect(DETECTOR_MAP.email.find(text)).toEqual([
      [5, 21],
      [25, 51],
    ]);
    expect(found('email', '<Ada.Lovelace@Analytical-Engine.io>')).toEqual(['Ada.Lovelace@Analytical-Engine.io']);
    expect(found('email', 'jürgen@münchen.de')).toEqual(['jürgen@münchen.de']);
    expect(found('email', 'a@b.co,c@d.org')).toEqual(['a@b.co', 'c@d.org']);
  });

  it('leaves handles, bare hosts and lone @ alone', () => {
    expect(found('email', '@handle said hi')).toEqual([]);
    expect(found('email', 'root@localhost')).toEqual([]);
    expect(found('email', 'price @ 5.00')).toEqual([]);
    expect(found('email', 'x@1.2')).toEqual([]);
  });

  it('stays linear on long runs without a domain', () => {
    const text = 'a'.repeat(200_000) + '@' + '@'.repeat(10_000);
    const t0 = performance.now();
    expect(found('email', text)).toEqual([]);
    expect(performance.now() - t0).toBeLessThan(1000);
  });
});

describe('credit_card', () => {
  it('finds Luhn-valid numbers, plain or grouped', () => {
    expect(found('credit_card', 'card 4111 1111 1111 1111 exp 12/27')).toEqual(['4111 1111 1111 1111']);
    expect(found('credit_card', 'card 4111-1111-1111-1111.')).toEqual(['4111-1111-1111-1111']);
    expect(found('credit_card', '5555555555554444')).toEqual(['5555555555554444']);
    expect(found('credit_card', 'amex 3782 822463 10005')).toEqual(['3782 822463 10005']);
    expect(found('credit_card', 'diners 30569309025904')).toEqual(['30569309025904']);
    expect(found('credit_card', '4111111111111111 5555555555554444')).toEqual(['4111111111111111', '5555555555554444']);
  });

  it('rejects Luhn-invalid numbers, dates, order numbers and amounts', () => {
    expect(found('credit_card', '4111 1111 1111 1112')).toEqual([]);
    expect(found('credit_card', 'order 1234567890123 shipped 2024-01-15 10:11:12')).toEqual([]);
    expect(found('credit_card', 'ORD-9876543210987654')).toEqual([]);
    expect(found('credit_card', '2024-01-15 2024-01-16 2024-01-17 2024-01-18')).toEqual([]);
    expect(found('credit_card', '0000 0000 0000 0000')).toEqual([]);
    expect(found('credit_card', '41111111111111111111111')).toEqual([]); // too long
    expect(found('credit_card', 'x4111111111111111')).toEqual([]); // part of an identifier
    expect(found('credit_card', 'total 3.4111111111111111')).toEqual([]); // a decimal
    expect(found('credit_card', '411111111111')).toEqual([]); // too short
  });
});

describe('iban', () => {
  it('finds valid IBANs, compact or spaced, any case', () => {
    expect(found('iban', 'pay to DE89 3704 0044 0532 0130 00 today')).toEqual(['DE89 3704 0044 0532 0130 00']);
    expect(found('iban', 'GB82WEST12345698765432')).toEqual(['GB82WEST12345698765432']);
    expect(found('iban', 'iban: FR1420041010050500013M02606;')).toEqual(['FR1420041010050500013M02606']);
    expect(found('iban', 'nl91abna0417164300')).toEqual(['nl91abna0417164300']);
  });

  it('rejects bad checksums and wrong lengths', () => {
    expect(found('iban', 'DE89 3704 0044 0532 0130 01')).toEqual([]);
    expect(found('iban', 'GB82WEST1234569876543')).toEqual([]); // one short
    expect(found('iban', 'DE89370400440532013000123')).toEqual([]); // glued to more digits
    expect(found('iban', 'AB12CDEFGHIJKLMNOP')).toEqual([]);
  });
});

describe('ssn', () => {
  it('finds issued-looking SSNs', () => {
    expect(found('ssn', 'ssn 123-45-6789.')).toEqual(['123-45-6789']);
    expect(found('ssn', '078-05-1120,219-09-9999')).toEqual(['078-05-1120', '219-09-9999']);
  });

  it('rejects never-issued areas, groups and serials, and other dashed numbers', () => {
    for (const s of ['000-12-3456', '666-12-3456', '900-12-3456', '999-12-3456', '123-00-4567', '123-45-0000']) {
      expect(found('ssn', s)).toEqual([]);
    }
    expect(found('ssn', '2024-01-15')).toEqual([]);
    expect(found('ssn', '1-123-45-6789')).toEqual([]);
    expect(found('ssn', '555-123-4567')).toEqual([]);
    expect(found('ssn', 'A123-45-6789')).toEqual([]);
  });
});

describe('phone', () => {
  it('finds international and formatted national numbers', () => {
    expect(found('phone', 'call +14155550123 now')).toEqual(['+14155550123']);
    expect(found('phone', 'London +44 20 7946 0958.')).toEqual(['+44 20 7946 0958']);
    expect(found('phone', '+1 (555) 123-4567')).toEqual(['+1 (555) 123-4567']);
    expect(found('phone', 'office (555) 123-4567')).toEqual(['(555) 123-4567']);
    expect(found('phone', '555-123-4567 or 555.123.4567')).toEqual(['555-123-4567', '555.123.4567']);
    expect(found('phone', '1-800-555-0199')).toEqual(['1-800-555-0199']);
    expect(found('phone', 'portable 06 12 34 56 78')).toEqual(['06 12 34 56 78']);
    expect(found('phone', 'tel 020 7946 0958')).toEqual(['020 7946 0958']);
  });

  it('leaves plain integers, dates, times, cards, SSNs and decimals alone', () => {
    for (const s of [
      '20240115',
      '12345678901',
      'id 4155550123',
      '2024-01-15',
      '2024-01-15 10:11:12',
      '15/01/2024',
      '01-02-2024',
      '05.11.2024 14:30',
      '4111-1111-1111-1111',
      '4111 1111 1111 1111',
      '123-45-6789',
      '3.14159265358',
      '192.168.100.100',
      '1+12345678',
      '+1234567', // 7 digits: too short
      '0-306-40615-2', // ISBN
    ]) {
      expect(found('phone', s), s).toEqual([]);
    }
  });
});

describe('jwt', () => {
  const header = Buffer.from('{"alg":"HS256","typ":"JWT"}').toString('base64url');
  const payload = Buffer.from('{"sub":"1234567890","name":"Alan"}').toString('base64url');
  const token = `${header}.${payload}.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c`;

  it('finds tokens whose header is JSON with alg', () => {
    expect(found('jwt', `Authorization: Bearer ${token}`)).toEqual([token]);
    expect(found('jwt', `${header}.${payload}.`)).toEqual([`${header}.${payload}.`]); // alg none, no signature
  });

  it('rejects JWT-looking strings whose header is not JSON or has no alg', () => {
    const notJson = Buffer.from('{"alg":"HS256"').toString('base64url');
    expect(found('jwt', `${notJson}.${payload}.abc`)).toEqual([]);
    const noAlg = Buffer.from('{"typ":"JWT"}').toString('base64url');
    expect(found('jwt', `${noAlg}.${payload}.abc`)).toEqual([]);
    expect(found('jwt', 'eyJhbGciOiJIUzI1NiI.only-two')).toEqual([]);
    expect(found('jwt', 'www.example.com')).toEqual([]);
  });
});

describe('aws_key', () => {
  const secret = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY';
  it('finds access key ids anywhere and secrets next to their label', () => {
    expect(found('aws_key', 'key=AKIAIOSFODNN7EXAMPLE;')).toEqual(['AKIAIOSFODNN7EXAMPLE']);
    expect(found('aws_key', 'ASIAY34FZKBOKMUTVV7A')).toEqual(['ASIAY34FZKBOKMUTVV7A']);
    expect(found('aws_key', `aws_secret_access_key = ${secret}`)).toEqual([secret]);
    expect(found('aws_key', `AWS_SECRET_ACCESS_KEY=${secret}\n`)).toEqual([secret]);
    expect(found('aws_key', `{"AccessKeyId":"ASIAY34FZKBOKMUTVV7A","SecretAccessKey": "${secret}"}`)).toEqual([
      'ASIAY34FZKBOKMUTVV7A',
      secret,
    ]);
  });

  it('leaves unlabelled 40-character strings and near-miss ids alone', () => {
    expect(found('aws_key', `token ${secret}`)).toEqual([]);
    expect(found('aws_key', 'AKIAIOSFODNN7EXAMPL')).toEqual([]); // 15 after the prefix
    expect(found('aws_key', 'XAKIAIOSFODNN7EXAMPLE')).toEqual([]);
    expect(found('aws_key', 'ABCDIOSFODNN7EXAMPLE')).toEqual([]);
  });
});

describe('gcp_key', () => {
  const apiKey = 'AIza' + 'SyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe'.slice(0, 35);
  it('finds API keys and service-account private_key_id values', () => {
    expect(apiKey).toHaveLength(39);
    expect(found('gcp_key', `?key=${apiKey}&x=1`)).toEqual([apiKey]);
    const id = 'a1b2c3d4e5f60718293a4b5c6d7e8f9012345678';
    const sa = `{"type": "service_account", "private_key_id": "${id}", "client_email": "x@y.iam.gserviceaccount.com"}`;
    expect(found('gcp_key', sa)).toEqual([id]);
    expect(found('gcp_key', JSON.stringify(sa))).toEqual([id]); // the same JSON, escaped inside a string
  });

  it('rejects short or glued keys', () => {
    expect(found('gcp_key', apiKey.slice(0, 38))).toEqual([]);
    expect(found('gcp_key', apiKey + 'x')).toEqual([]);
  });
});

describe('azure_key', () => {
  const key = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';
  it('finds account keys and SAS signatures', () => {
    const conn = `DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=${key};EndpointSuffix=core.windows.net`;
    expect(found('azure_key', conn)).toEqual([key]);
    const sas = 'sv=2020-08-04&ss=b&srt=sco&sp=rl&se=2030-01-01&sig=abcdEFGH1234ijklMNOP%2Bxyz%3D';
    expect(found('azure_key', `BlobEndpoint=https://a.blob.core.windows.net/;SharedAccessSignature=${sas}`)).toEqual([sas]);
    expect(found('azure_key', `https://a.blob.core.windows.net/c/f.txt?sv=2020-08-04&sig=abcdEFGH1234ijklMNOP%2Bxyz%3D`)).toEqual([
      'abcdEFGH1234ijklMNOP%2Bxyz%3D',
    ]);
  });

  it('leaves placeholders alone', () => {
    expect(found('azure_key', 'AccountKey=<your-key>;')).toEqual([]);
    expect(found('azure_key', 'signature=abcdefghijklmnopqrstuvwxyz')).toEqual([]);
  });
});

describe('private_key', () => {
  const pem = '-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA7bq\n+abc/def==\n-----END RSA PRIVATE KEY-----';
  it('finds the whole PEM block', () => {
    expect(found('private_key', `key:\n${pem}\nbye`)).toEqual([pem]);
    const escaped = JSON.stringify(pem).slice(1, -1); // literal \n sequences, as in service-account JSON
    expect(found('private_key', `"private_key": "${escaped}\\n"`)).toEqual([escaped]);
    const openssh = '-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaA==\n-----END OPENSSH PRIVATE KEY-----';
    expect(found('private_key', openssh)).toEqual([openssh]);
  });

  it('masks a truncated block to the end, and ignores public material', () => {
    expect(found('private_key', 'x -----BEGIN PRIVATE KEY-----\nMIIEvQIBADAN')).toEqual(['-----BEGIN PRIVATE KEY-----\nMIIEvQIBADAN']);
    expect(found('private_key', '-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----')).toEqual([]);
    expect(found('private_key', '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----')).toEqual([]);
  });
});

describe('strategies', () => {
  it('redact replaces everything', () => {
    expect(redact('anything')).toBe(REDACTED);
    expect(REDACTED).toBe('[redacted]');
  });

  it('partial keeps separators and the last 4 characters', () => {
    expect(partial('4111-1111-1111-1111')).toBe('****-****-****-1111');
    expect(partial('(555) 123-4567')).toBe('(***) ***-4567');
    expect(partial('alan@example.org')).toBe('****@*******.org');
    expect(partial('123-45-6789')).toBe('***-**-6789');
    expect(partial('abcd')).toBe('****');
    expect(partial('a-b')).toBe('***');
    expect(partial('!@a.io')).toBe('!@*.*o'); // at most half the letters/digits survive
    expect(partial('ab-c')).toBe('****');
    expect(partial('a-b-c')).toBe('*-*-c');
    expect(partial('')).toBe('');
    expect(partial('jürgen@münchen.de')).toBe('******@******n.de'); // one '*' per character
    expect(partial('日本語テキスト')).toBe('****キスト'); // 7 letters: 3 kept
    expect(partial('a😀b😀c😀d')).toBe('*😀*😀c😀d'); // emoji are neither letters nor digits
  });

  it('hash is keyed, stable and short', () => {
    const h = keyedHash('k1');
    expect(h('alan@example.org')).toMatch(/^h:[0-9a-f]{16}$/);
    expect(h('alan@example.org')).toBe(h('alan@example.org'));
    expect(h('alan@example.org')).not.toBe(h('alan@example.com'));
    expect(keyedHash('k2')('alan@example.org')).not.toBe(h('alan@example.org'));
    expect(keyedHash(Buffer.from('k1'))('x')).toBe(h('x'));
    expect(() => keyedHash('')).toThrow(/non-empty key/);
    expect(() => makeStrategy('hash')).toThrow(/no hash key/);
    expect(makeStrategy('partial')).toBe(partial);
  });
});

describe('cards inside rows, arrays and lists', () => {
  it('finds a card between the commas of a whole-row value, an array or a CSV line', () => {
    expect(found('credit_card', '(1,"Ada Lovelace",078-05-1120,4111111111111111,vip)')).toEqual(['4111111111111111']);
    expect(found('credit_card', '{4111111111111111,5500005555555559}')).toEqual(['4111111111111111', '5500005555555559']);
    expect(found('credit_card', '3,340000000000009,none')).toEqual(['340000000000009']);
  });
});
