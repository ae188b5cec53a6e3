/**
 * A throwaway PKI for TLS tests, made with the `openssl` command (Debian's openssl
 * package) in a directory the test owns: a CA, a server certificate for 127.0.0.1 /
 * localhost signed by it, a client certificate signed by it, a self-signed client
 * certificate, and a client certificate signed by another CA. EC P-256 keys, valid for
 * two days. Nothing is installed anywhere.
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';

/** Paths of the PEM files makeTestCa wrote. */
export interface TestPki {
  caCert: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
  /** Self-signed, not from the CA. */
  selfSignedCert: string;
  selfSignedKey: string;
  /** Signed by another CA. */
  foreignCert: string;
  foreignKey: string;
}

/** Why the PKI cannot be made here (no openssl), or null. */
export function opensslMissing(): string | null {
  try {
    execFileSync('openssl', ['version'], { stdio: 'pipe' });
    return null;
  } catch {
    return 'openssl not found (Debian package openssl)';
  }
}

function openssl(dir: string, args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: 'pipe', timeout: 30_000 });
}

function newKeyAndCsr(dir: string, name: string, cn: string): void {
  openssl(dir, ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`]);
}

function selfSigned(dir: string, name: string, cn: string, ext: string[] = []): void {
  openssl(dir, ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.pem`, '-days', '2', '-subj', `/CN=${cn}`, ...ext]);
}

function sign(dir: string, name: string, ca: string, serial: number, extensions: string): void {
  writeFileSync(path.join(dir, `${name}.ext`), extensions);
  openssl(dir, ['x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.pem`, '-CAkey', `${ca}.key`, '-set_serial', String(serial), '-days', '2', '-out', `${name}.pem`, '-extfile', `${name}.ext`]);
}

/** Make the PKI in `dir` (which must exist and be private to the test). */
export function makeTestCa(dir: string): TestPki {
  selfSigned(dir, 'ca', 'tsweave-test-ca', ['-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  selfSigned(dir, 'other-ca', 'tsweave-other-ca', ['-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  newKeyAndCsr(dir, 'server', 'localhost');
  sign(dir, 'server', 'ca', 1, 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
  newKeyAndCsr(dir, 'client', 'tsweave-test-client');
  sign(dir, 'client', 'ca', 2, 'extendedKeyUsage=clientAuth\n');
  selfSigned(dir, 'rogue', 'tsweave-test-client');
  newKeyAndCsr(dir, 'foreign', 'tsweave-test-client');
  sign(dir, 'foreign', 'other-ca', 3, 'extendedKeyUsage=clientAuth\n');
  const p = (f: string): string => path.join(dir, f);
  return {
    caCert: p('ca.pem'), serverCert: p('server.pem'), serverKey: p('server.key'), clientCert: p('client.pem'), clientKey: p('client.key'),
    selfSignedCert: p('rogue.pem'), selfSignedKey: p('rogue.key'), foreignCert: p('foreign.pem'), foreignKey: p('foreign.key'),
  };
}
