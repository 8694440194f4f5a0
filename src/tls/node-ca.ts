/**
 * The node CA: it signs the serving certificates agents see for TLS targets (the
 * Kubernetes API), so agents trust interlock for exactly the targets it intercepts.
 * Created on first start: the certificate 0644 (agents need it), the key 0600.
 * Serving keys and certificates are made in memory at start and cached.
 */
import { X509Certificate, generateKeyPairSync, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { readPrivateFile } from '../util/private-file.js';
import { isIP } from 'node:net';
import { dirname } from 'node:path';
import forge from 'node-forge';

export interface ServingCert {
  cert: string;
  key: string;
}

const CA_YEARS = 10;
const SERVING_DAYS = 90;

export class NodeCa {
  private readonly issued = new Map<string, ServingCert>();

  private constructor(readonly certPem: string, private readonly key: forge.pki.rsa.PrivateKey, private readonly cert: forge.pki.Certificate) {}

  /** Loads the CA, creating it when both files are absent. */
  static load(certFile: string, keyFile: string, opts: { create: boolean }): NodeCa {
    if (!existsSync(certFile) && !existsSync(keyFile) && opts.create) create(certFile, keyFile);
    const key = readPrivateFile(keyFile, 'the node CA key');
    if (!key) throw new Error(`cannot read the node CA key ${keyFile}: ENOENT`);
    const keyPem = key.toString('utf8');
    const certPem = readFileSync(certFile, 'utf8');
    new X509Certificate(certPem); // a clear error now rather than at the first handshake
    return new NodeCa(certPem, forge.pki.privateKeyFromPem(keyPem), forge.pki.certificateFromPem(certPem));
  }

  /** A serving certificate for these DNS names and IP addresses (cached per set). */
  serving(names: string[]): ServingCert {
    const key = [...new Set(names)].sort().join(',');
    let c = this.issued.get(key);
    if (!c) {
      c = this.issue([...new Set(names)]);
      this.issued.set(key, c);
    }
    return c;
  }

  private issue(names: string[]): ServingCert {
    const pair = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const cert = forge.pki.createCertificate();
    cert.publicKey = forge.pki.publicKeyFromPem(pair.publicKey.export({ type: 'spki', format: 'pem' }).toString());
    cert.serialNumber = `01${randomBytes(15).toString('hex')}`;
    cert.validity.notBefore = new Date(Date.now() - 5 * 60_000); // tolerate a little clock skew
    cert.validity.notAfter = new Date(Date.now() + SERVING_DAYS * 86_400_000);
    cert.setSubject([{ name: 'commonName', value: names[0] ?? 'interlock' }]);
    cert.setIssuer(this.cert.subject.attributes);
    cert.setExtensions([
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
      { name: 'extKeyUsage', serverAuth: true },
      { name: 'subjectAltName', altNames: names.map((n) => (isIP(n) ? { type: 7, ip: n } : { type: 2, value: n })) },
    ]);
    cert.sign(this.key, forge.md.sha256.create());
    return { cert: forge.pki.certificateToPem(cert), key: pair.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() };
  }
}

function create(certFile: string, keyFile: string): void {
  const pair = generateKeyPairSync('rsa', { modulusLength: 3072 });
  const key = forge.pki.privateKeyFromPem(pair.privateKey.export({ type: 'pkcs1', format: 'pem' }).toString());
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.publicKeyFromPem(pair.publicKey.export({ type: 'spki', format: 'pem' }).toString());
  cert.serialNumber = `01${randomBytes(15).toString('hex')}`;
  cert.validity.notBefore = new Date(Date.now() - 5 * 60_000);
  cert.validity.notAfter = new Date(Date.now() + CA_YEARS * 365 * 86_400_000);
  const subject = [{ name: 'commonName', value: 'interlock node CA' }, { name: 'organizationName', value: 'interlock' }];
  cert.setSubject(subject);
  cert.setIssuer(subject);
  cert.setExtensions([
    { name: 'basicConstraints', cA: true, pathLenConstraint: 0, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    { name: 'subjectKeyIdentifier' },
  ]);
  cert.sign(key, forge.md.sha256.create());
  mkdirSync(dirname(keyFile), { recursive: true, mode: 0o700 });
  mkdirSync(dirname(certFile), { recursive: true, mode: 0o755 });
  writeFileSync(keyFile, pair.privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600, flag: 'wx' });
  writeFileSync(certFile, forge.pki.certificateToPem(cert), { mode: 0o644, flag: 'wx' });
}
