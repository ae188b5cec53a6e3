/**
 * TLS for the Docker API proxy's tcp:// listeners, with the flags Weave's proxy took
 * from Docker (`--tls`, `--tlsverify`, `--tlscacert`, `--tlscert`, `--tlskey`):
 *
 *  - `--tls --tlscert F --tlskey F`: the listener speaks TLS with that certificate; any
 *    client may connect (encryption only — anyone who reaches the port is still root);
 *  - `--tlsverify --tlscacert F --tlscert F --tlskey F`: in addition, a client must
 *    present a certificate signed by that CA (mutual TLS, as dockerd's `--tlsverify`).
 *    This is the mode that makes a non-loopback `-H tcp://` address acceptable without
 *    `--proxy-insecure-tcp` (proxy.ts exposedTcpAddress).
 * Unix socket listeners stay plain (file permissions guard them). Plain HTTP sent to a
 * TLS listener fails the handshake and gets nothing.
 *
 * The files are read once, when the proxy starts (a renewed certificate needs a restart),
 * each bounded to MAX_PEM_BYTES, and checked with node:crypto before any listener opens,
 * so a wrong path or file is a one-line error at `weave launch`.
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import type tls from 'node:tls';

/** Largest certificate, key or CA bundle file read, in bytes (a bundle of a few dozen certificates fits). */
export const MAX_PEM_BYTES = 1 << 20;

/** How a TLS handshake on the proxy's tcp listener may take at most, in ms (Node's default is 120 s). */
export const TLS_HANDSHAKE_TIMEOUT_MS = 10_000;

/** The TLS settings `weave launch` passes on (paths, not contents). */
export interface ProxyTlsFiles {
  /** --tlsverify: require client certificates signed by `caFile`. */
  verify: boolean;
  /** --tlscacert: PEM CA certificate(s) trusted for client certificates (required with verify). */
  caFile?: string;
  /** --tlscert: PEM server certificate (chain). */
  certFile: string;
  /** --tlskey: PEM private key of the certificate. */
  keyFile: string;
}

/** Loaded and checked TLS settings: options for https.createServer. */
export interface ProxyTls {
  verify: boolean;
  options: tls.TlsOptions;
}

/** A TLS file that cannot be read or used; the message is one line naming the flag and path. */
export class ProxyTlsError extends Error {
  override name = 'ProxyTlsError';
}

/** First line of an error message, without trailing punctuation noise. */
function oneLine(s: string): string {
  return s.split('\n')[0]!.trim().slice(0, 200);
}

/** The path as shown in errors: control characters escaped. */
function shown(p: string): string {
  return JSON.stringify(p.slice(0, 300));
}

/**
 * Read a regular file of at most MAX_PEM_BYTES.
 * @throws ProxyTlsError "cannot read --tlscert PATH: ENOENT" (or: not a regular file, too big)
 */
function readBounded(file: string, flag: string): Buffer {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (err) {
    throw new ProxyTlsError(`cannot read ${flag} ${shown(file)}: ${(err as NodeJS.ErrnoException).code ?? oneLine((err as Error).message)}`);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new ProxyTlsError(`cannot read ${flag} ${shown(file)}: not a regular file`);
    if (st.size > MAX_PEM_BYTES) throw new ProxyTlsError(`${flag} ${shown(file)} is ${st.size} bytes, more than ${MAX_PEM_BYTES}: not a PEM file`);
    const buf = Buffer.alloc(st.size);
    let got = 0;
    while (got < buf.length) {
      const n = readSync(fd, buf, got, buf.length - got, got);
      if (n === 0) break;
      got += n;
    }
    return buf.subarray(0, got);
  } catch (err) {
    if (err instanceof ProxyTlsError) throw err;
    throw new ProxyTlsError(`cannot read ${flag} ${shown(file)}: ${(err as NodeJS.ErrnoException).code ?? oneLine((err as Error).message)}`);
  } finally {
    closeSync(fd);
  }
}

/** Parse the first PEM certificate of `pem`. @throws ProxyTlsError naming the flag */
function parseCert(pem: Buffer, flag: string, file: string): X509Certificate {
  if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new ProxyTlsError(`${flag} ${shown(file)} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`);
  try {
    return new X509Certificate(pem);
  } catch (err) {
    throw new ProxyTlsError(`${flag} ${shown(file)} is not a valid certificate: ${oneLine((err as Error).message)}`);
  }
}

/**
 * Read and check the proxy's TLS files: the certificate and key parse and belong
 * together, the CA (with verify) parses. Called once at proxy start (and by
 * `weave launch` to fail early).
 * @throws ProxyTlsError with a one-line reason
 */
export function loadProxyTls(f: ProxyTlsFiles): ProxyTls {
  if (f.verify && !f.caFile) throw new ProxyTlsError('--tlsverify needs --tlscacert: the CA that signs the client certificates allowed to use the proxy');
  const certPem = readBounded(f.certFile, '--tlscert');
  const keyPem = readBounded(f.keyFile, '--tlskey');
  const caPem = f.caFile !== undefined ? readBounded(f.caFile, '--tlscacert') : undefined;
  const cert = parseCert(certPem, '--tlscert', f.certFile);
  let key;
  try {
    key = createPrivateKey(keyPem);
  } catch (err) {
    throw new ProxyTlsError(`--tlskey ${shown(f.keyFile)} is not a usable PEM private key: ${oneLine((err as Error).message)}`);
  }
  if (!cert.checkPrivateKey(key)) throw new ProxyTlsError(`--tlskey ${shown(f.keyFile)} is not the key of --tlscert ${shown(f.certFile)}`);
  if (caPem !== undefined) parseCert(caPem, '--tlscacert', f.caFile!);
  return {
    verify: f.verify,
    options: {
      cert: certPem,
      key: keyPem,
      ...(caPem !== undefined ? { ca: caPem } : {}),
      requestCert: f.verify,
      rejectUnauthorized: f.verify,
      minVersion: 'TLSv1.2',
      handshakeTimeout: TLS_HANDSHAKE_TIMEOUT_MS,
    },
  };
}
