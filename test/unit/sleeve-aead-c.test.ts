/**
 * The C AEAD (router/overlay/native/sleeve-aead.h, OpenSSL EVP ChaCha20-Poly1305)
 * tested directly: test/native/sleeve-aead-test.cc is compiled against the header
 * and libcrypto and run. It checks the RFC 8439 section 2.8.2 vector (seal, open,
 * in place), rejection of every tampered tag/AAD/nonce bit (with the output wiped),
 * the sleeve wire format and counters, and the per-thread key-context cache with
 * more keys than slots. A missing compiler or libcrypto fails the test (it is what
 * the addons are built with).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');

test('sleeve-aead.h: RFC 8439 vector, tampering rejected, wire format, key-context cache (C self-test)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sleeve-aead-'));
  try {
    const bin = join(dir, 'sleeve-aead-test');
    const cxx = process.env.CXX ?? 'g++';
    await run(cxx, ['-std=c++17', '-O2', '-Wall', '-Wextra', '-Werror', '-I', join(ROOT, 'router/overlay/native'),
      join(ROOT, 'test/native/sleeve-aead-test.cc'), '-o', bin, '-lcrypto'], { timeout: 120_000 }).catch((e: Error) => {
      throw new Error(`cannot build the C AEAD self-test with ${cxx} and -lcrypto (needs g++ and libssl-dev): ${e.message.split('\n')[0]}`);
    });
    const { stdout } = await run(bin, [], { timeout: 60_000 });
    const m = /^ok (\d+)$/m.exec(stdout);
    assert.ok(m, `self-test output: ${stdout}`);
    assert.ok(Number(m[1]) > 500, `only ${m[1]} checks ran`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
