/**
 * Sleeve AEAD throughput: seal+open packets per second on one core for 1400-
 * and 64-byte payloads, tsweave's Sealer/Opener (sodium-native
 * ChaCha20-Poly1305) against Node's built-in AES-256-GCM doing the same work
 * (fresh cipher object per datagram, 16 bytes of AD, 12-byte counter nonce),
 * measured in the same run.
 *
 * "varying" alternates the payload length by one byte per datagram so the
 * Sealer/Opener view caches always miss (the worst case for our wrapper).
 * Also times the Noise handshake over 127.0.0.1 (in-process, both ends here).
 *
 * "native" is the same seal+open done in C (overlay/native/sleeve-aead.h, libsodium,
 * the flow caches' path) through the UDP addon, one N-API call per seal/open.
 *
 * Usage: node dist/bench/crypto-bench.js [seconds-per-measurement=0.5] [repeats=3]
 * Prints one line per case and a JSON summary; the median of the repeats is used.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import net from 'node:net';
import { AEAD_OVERHEAD, Opener, Sealer } from '../router/crypto/aead.js';
import { secureSocket } from '../router/crypto/noise.js';
import { nativeOpenCurrent, nativeSeal } from '../router/overlay/native-aead.js';

const seconds = Number(process.argv[2] ?? 0.5);
const repeats = Number(process.argv[3] ?? 3);
const BATCH = 1000;

function timeLoop(body: () => void): number {
  const deadline = process.hrtime.bigint() + BigInt(Math.round(seconds * 1e9));
  const t0 = process.hrtime.bigint();
  let n = 0;
  for (;;) {
    for (let i = 0; i < BATCH; i++) body();
    n += BATCH;
    const now = process.hrtime.bigint();
    if (now >= deadline || n >= 50_000_000) return n / (Number(now - t0) / 1e9);
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

function benchSodium(size: number, varying: boolean): number {
  const key = randomBytes(32);
  const sealer = new Sealer(key);
  const opener = new Opener(key);
  const header = Buffer.alloc(8, 7);
  const plain = randomBytes(size);
  const wire = Buffer.alloc(size + AEAD_OVERHEAD);
  const back = Buffer.alloc(size);
  let flip = 0;
  return timeLoop(() => {
    const n = varying ? size - (flip ^= 1) : size;
    const len = sealer.seal(header, plain, 0, n, wire);
    if (opener.open(wire, 0, len, back) !== n) throw new Error('open failed in benchmark');
  });
}

function benchNative(size: number): number {
  const key = randomBytes(32);
  const sealer = new Sealer(key);
  const opener = new Opener(key);
  const header = Buffer.alloc(8, 7);
  const plain = randomBytes(size);
  const wire = Buffer.alloc(size + AEAD_OVERHEAD);
  const back = Buffer.alloc(size);
  return timeLoop(() => {
    const len = nativeSeal(sealer, header, plain, 0, size, wire);
    if (nativeOpenCurrent(opener, wire, 0, len, back) !== size) throw new Error('native open failed in benchmark');
  });
}

async function handshakeMs(rounds: number): Promise<number> {
  const times: number[] = [];
  const prologue = randomBytes(32);
  for (let i = 0; i < rounds; i++) {
    const srv = net.createServer();
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const accepted = new Promise<net.Socket>((r) => srv.once('connection', r));
    const c = net.connect((srv.address() as net.AddressInfo).port, '127.0.0.1');
    await new Promise<void>((r) => c.once('connect', r));
    const s = await accepted;
    srv.close();
    const t0 = performance.now();
    const [a, b] = await Promise.all([
      secureSocket(c, { initiator: true, prologue }),
      secureSocket(s, { initiator: false, prologue }),
    ]);
    times.push(performance.now() - t0);
    a.destroy();
    b.destroy();
  }
  return median(times);
}

function benchAesGcm(size: number): number {
  const key = randomBytes(32);
  const ad = Buffer.alloc(16, 7);
  const nonce = Buffer.alloc(12);
  const plain = randomBytes(size);
  let seq = 0;
  return timeLoop(() => {
    nonce.writeUInt32BE(seq++, 8);
    const c = createCipheriv('aes-256-gcm', key, nonce);
    c.setAAD(ad);
    const ct = c.update(plain);
    c.final();
    const tag = c.getAuthTag();
    const d = createDecipheriv('aes-256-gcm', key, nonce);
    d.setAAD(ad);
    d.setAuthTag(tag);
    const pt = d.update(ct);
    d.final();
    if (pt.length !== size) throw new Error('aes-gcm failed in benchmark');
  });
}

const results: Record<string, unknown> = {};
for (const size of [1400, 64]) {
  const s: number[] = [];
  const v: number[] = [];
  const a: number[] = [];
  const nat: number[] = [];
  for (let r = 0; r < repeats; r++) {
    nat.push(benchNative(size));
    s.push(benchSodium(size, false));
    v.push(benchSodium(size, true));
    a.push(benchAesGcm(size));
  }
  const sp = median(s);
  const vp = median(v);
  const ap = median(a);
  const np = median(nat);
  results[`${size}B`] = {
    nativeChaChaPps: Math.round(np), nativeVsJs: +(np / sp).toFixed(2),
    sodiumChaChaPps: Math.round(sp), sodiumChaChaVaryingPps: Math.round(vp), nodeAesGcmPps: Math.round(ap),
    ratio: +(sp / ap).toFixed(2), ratioVarying: +(vp / ap).toFixed(2), sodiumGbitPerS: +((sp * size * 8) / 1e9).toFixed(2),
  };
  console.log(`${String(size).padStart(4)} B payload: sodium chacha20-poly1305 seal+open ${Math.round(sp).toLocaleString('en')} pkt/s ` +
    `(${((sp * size * 8) / 1e9).toFixed(2)} Gbit/s; varying length ${Math.round(vp).toLocaleString('en')}), ` +
    `node aes-256-gcm ${Math.round(ap).toLocaleString('en')} pkt/s, ratio ${(sp / ap).toFixed(2)}x (varying ${(vp / ap).toFixed(2)}x); ` +
    `native C seal+open ${Math.round(np).toLocaleString('en')} pkt/s = ${(np / sp).toFixed(2)}x the JS Sealer/Opener`);
}
const hs = await handshakeMs(20);
results.noiseHandshakeMedianMs = +hs.toFixed(2);
console.log(`noise XX handshake over 127.0.0.1: median ${hs.toFixed(2)} ms (20 handshakes)`);
console.log(JSON.stringify(results));
