/**
 * Property tests of POST /cni/exec's input handling (cni/router-side.ts execCni, the
 * route the native plugin calls) and of the native plugin itself (cni/native/weave-net.c)
 * with hostile stdin, environment and router answers. Whatever comes in, the answer is a
 * refusal (ApiError 400, one line) or the plugin's outcome: exit 0 or 1, and with 1 a CNI
 * error JSON {code, msg} — never a throw of anything else, a hang or a crash. Next to
 * the cni-conf fuzz target (test/fuzz/targets-services.ts), which covers parseConf/parseEnv.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { ApiError, ApiServer, RawAnswer } from '../../router/api/server.js';
import { execCni } from '../../cni/router-side.js';
import { installCni } from '../../cni/install.js';
import { CniCode, CniError, MAX_CONF_BYTES, routerError } from '../../cni/spec.js';
import type { RouterCall } from '../../cni/weave-net.js';

const NATIVE = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'cni', 'native', 'weave-net');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tsweave-cni-fuzz-'));
test.after(() => fs.rmSync(tmp, { recursive: true, force: true }));
const stateDir = path.join(tmp, 'state');

/** Resolve within `ms` or fail the property (a hang is a failure, not a stuck test). */
function bounded<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<T>((_, reject) => { t = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms); })]).finally(() => clearTimeout(t));
}

/** fc.assert, with a failure report cut short (counterexamples here can be megabytes). */
async function holds<Ts extends [unknown, ...unknown[]]>(prop: fc.IAsyncPropertyWithHooks<Ts>, numRuns: number): Promise<void> {
  const d = await fc.check(prop, { numRuns });
  if (d.failed) {
    const ex = JSON.stringify(d.counterexample, (_k, v: unknown) => (typeof v === 'string' && v.length > 120 ? `${v.slice(0, 120)}…(${v.length} chars)` : v)) ?? '';
    assert.fail(`property failed (seed ${d.seed}, path ${(d as { path?: string }).path}): ${String(d.errorInstance).split('\n')[0].slice(0, 300)}; counterexample ${ex.slice(0, 1500)}`);
  }
}

/** A CNI error JSON as the spec has it: integer code, string msg, one line, no stack. */
function assertCniError(text: string, where: string): void {
  assert.ok(text.endsWith('\n') && !text.slice(0, -1).includes('\n'), `${where}: one line: ${JSON.stringify(text.slice(0, 200))}`);
  const e = JSON.parse(text) as { code?: unknown; msg?: unknown };
  assert.ok(Number.isInteger(e.code) && typeof e.msg === 'string', `${where}: CNI error JSON: ${text.slice(0, 200)}`);
  assert.ok(!/\n\s+at /.test(String(e.msg)), `${where}: no stack trace`);
}

const CNI_KEYS = ['CNI_COMMAND', 'CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME', 'CNI_ARGS', 'CNI_PATH'];
const commands = fc.oneof(fc.constantFrom('ADD', 'DEL', 'CHECK', 'VERSION', 'STATUS', 'GC', '', 'add', 'ADD\n'), fc.string({ maxLength: 12 }));
const hostileString = fc.oneof(
  fc.string({ maxLength: 40 }), fc.constantFrom('/run/netns/x', 'eth0', 'c1', '../../etc', 'a'.repeat(300), 'x\u0000y', '☃', 'K8S_POD_NAME=web-0;IgnoreUnknown=1'),
  fc.integer({ min: 0, max: 20_000 }).map((n) => 'z'.repeat(n)),
);
const cniEnv = fc.dictionary(fc.oneof(fc.constantFrom(...CNI_KEYS), fc.string({ maxLength: 10 }), fc.constantFrom('PATH', 'CNI_', 'CNI_X_Y', 'cni_command')), fc.oneof(hostileString, commands, fc.anything()), { maxKeys: 20 });
const confObject = fc.record({
  cniVersion: fc.oneof(fc.constantFrom('0.3.1', '0.4.0', '1.0.0', '1.1.0', '9.9.9'), fc.anything()),
  name: fc.oneof(fc.constant('weave'), fc.anything()),
  type: fc.oneof(fc.constant('weave-net'), fc.anything()),
  stateDir: fc.oneof(fc.constant(stateDir), fc.constant('/elsewhere'), fc.anything()),
  subnet: fc.oneof(fc.constant(undefined), fc.constantFrom('net:10.40.0.0/16', 'net:10.1.2.300/16', '10.0.0.0/8'), fc.anything()),
  hairpinMode: fc.oneof(fc.boolean(), fc.anything()),
}, { requiredKeys: ['cniVersion', 'name', 'type'] });
const stdin = fc.oneof(
  confObject.map((c) => JSON.stringify(c)),
  fc.string({ maxLength: 200 }),
  fc.integer({ min: 0, max: MAX_CONF_BYTES * 2 + 10 }).map((n) => 'x'.repeat(n)),
  fc.integer({ min: MAX_CONF_BYTES / 2 - 4, max: MAX_CONF_BYTES / 2 + 4 }).map((n) => 'é'.repeat(n)),
  fc.anything(),
);
const body = fc.oneof(
  { weight: 4, arbitrary: fc.record({ argv: fc.oneof(fc.constant([]), fc.constant(['--ipam']), fc.array(fc.string({ maxLength: 8 }), { maxLength: 3 }), fc.anything()), env: fc.oneof(cniEnv, fc.anything()), stdin }, { requiredKeys: [] }) },
  { weight: 1, arbitrary: fc.anything() },
);

/** What the router's routes may answer the plugin (a stand-in: no netns, no IPAM). */
const replies = fc.oneof(
  fc.constant({ cidrs: ['10.32.0.5/12'], mac: '02:00:00:00:00:05', hostVeth: 'vethwepl0000005' }),
  fc.constant({ cidrs: ['10.32.0.5/12'], cidrs6: ['fd00::a20:5/108'], mac: '02:00:00:00:00:05', hostVeth: 'vethwepl0000005', gateway: '10.32.0.1', dns: { nameservers: ['169.254.53.53'], search: ['weave.local'] } }),
  fc.anything(),
  fc.constantFrom('throw-api-400', 'throw-api-404', 'throw-503', 'throw-cni', 'throw-plain'),
);

function fakeCall(reply: unknown): RouterCall {
  return async (_socket, _method, urlPath) => {
    if (reply === 'throw-api-400') throw routerError(400, 'bad request');
    if (reply === 'throw-api-404') throw new CniError(CniCode.UnknownContainer, 'no such container');
    if (reply === 'throw-503') throw routerError(503, 'IPAM consensus not reached');
    if (reply === 'throw-cni') throw new CniError(CniCode.TryAgainLater, 'tsweave router is not running on this node');
    if (reply === 'throw-plain') throw new Error('something\n    at stack (x.js:1:1)');
    return urlPath.startsWith('/ip/') ? '10.32.0.9/12' : reply;
  };
}

test('execCni: any body is refused with a one-line 400 or answered with exit 0/1 and CNI JSON, never thrown, within 2 s', async () => {
  await holds(fc.asyncProperty(body, replies, async (b, reply) => {
    let out: { answer: RawAnswer } | undefined;
    try {
      out = await bounded(execCni(b, stateDir, fakeCall(reply)), 2000, 'execCni');
    } catch (err) {
      assert.ok(err instanceof ApiError, `only ApiError may come out: ${String(err)}`);
      assert.equal(err.status, 400);
      assert.ok(!err.message.includes('\n') && err.message.length < 300, err.message);
      return;
    }
    const exit = out.answer.headers['x-cni-exit'];
    assert.ok(exit === '0' || exit === '1', `x-cni-exit ${exit}`);
    const text = out.answer.body.toString('utf8');
    if (exit === '1') assertCniError(text, 'exit 1');
    else if (text) assert.equal(typeof JSON.parse(text), 'object');
  }), 400);
});

test('execCni: a valid ADD with a good router reply gives a spec result; a bad reply a CNI error', async () => {
  const env = { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c1', CNI_NETNS: '/run/netns/x', CNI_IFNAME: 'eth0', CNI_PATH: '/opt/cni/bin' };
  const b = { argv: [], env, stdin: JSON.stringify({ cniVersion: '1.0.0', name: 'weave', type: 'weave-net', stateDir }) };
  const good = await execCni(b, stateDir, fakeCall({ cidrs: ['10.32.0.5/12'], mac: '02:00:00:00:00:05', hostVeth: 'vethwepl0000005' }));
  assert.equal(good.answer.headers['x-cni-exit'], '0');
  const r = JSON.parse(good.answer.body.toString()) as { cniVersion: string; ips: Array<{ address: string }> };
  assert.deepEqual([r.cniVersion, r.ips[0].address], ['1.0.0', '10.32.0.5/12']);
  for (const bad of [null, 'text', { cidrs: 'x' }, 'throw-plain']) {
    const e = await execCni(b, stateDir, fakeCall(bad));
    assert.equal(e.answer.headers['x-cni-exit'], '1', JSON.stringify(bad));
    assertCniError(e.answer.body.toString(), JSON.stringify(bad));
  }
});

/** One raw HTTP request over a unix socket; resolves with status and body text. */
function rawRequest(socketPath: string, headers: Record<string, string>, data: Buffer): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath, agent: false, path: '/cni/exec', method: 'POST', headers: { ...headers, 'content-length': String(data.length) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', reject);
    req.on('socket', (s) => s.on('error', () => undefined)); // a refused big body: EPIPE after the answer
    req.end(data);
  });
}

test('POST /cni/exec over the API server: hostile bytes and content types always get a JSON answer, the server stays up', async () => {
  const server = new ApiServer(() => undefined);
  server.on('POST', '/cni/exec', async ({ body: b }) => (await execCni(b, stateDir, fakeCall({ cidrs: ['10.32.0.5/12'], mac: '02:00:00:00:00:05', hostVeth: 'v' }))).answer);
  server.ready = true;
  const sock = path.join(tmp, 'api.sock');
  await server.listenUnix(sock);
  try {
    const payload = fc.oneof(
      fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)),
      body.map((b) => Buffer.from(JSON.stringify(b) ?? 'null')),
      fc.integer({ min: 0, max: (1 << 20) + 100 }).map((n) => Buffer.alloc(n, 0x7b)),
    );
    const type = fc.constantFrom('application/json', 'text/plain', 'application/json; charset=utf-8', 'application/jsonx');
    await holds(fc.asyncProperty(payload, type, async (data, ct) => {
      const r = await bounded(rawRequest(sock, { 'content-type': ct }, data).catch((err: NodeJS.ErrnoException) => {
        // A body over the limit may be cut off by the server before it is all sent.
        if (data.length > 1 << 20 && (err.code === 'EPIPE' || err.code === 'ECONNRESET')) return { status: 413, text: '{"error":"cut"}' };
        throw err;
      }), 5000, 'request');
      assert.ok([200, 400, 413, 415].includes(r.status), `status ${r.status}: ${r.text.slice(0, 200)}`);
      const j = JSON.parse(r.text) as Record<string, unknown>;
      if (r.status !== 200) assert.equal(typeof j.error, 'string');
    }), 60);
    // Still serving after all that.
    const ok = await rawRequest(sock, { 'content-type': 'application/json' }, Buffer.from(JSON.stringify({ env: { CNI_COMMAND: 'VERSION' }, stdin: '' })));
    assert.equal(ok.status, 200);
  } finally {
    await server.close();
  }
});

/** Run the native plugin with env and stdin; bounded. */
function execNative(bin: string, env: Record<string, string>, input: Buffer): Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(bin, [], { env, timeout: 20_000 });
    let stdout = '';
    p.stdout.on('data', (c: Buffer) => { stdout += c.toString('latin1'); });
    p.on('error', reject);
    p.on('close', (code, signal) => resolve({ code, signal, stdout }));
    p.stdin.on('error', () => undefined);
    p.stdin.end(input);
  });
}

test('native plugin: hostile stdin, environment and router answers give exit 0/1 with the router\'s bytes or a CNI error, never a crash', async () => {
  assert.ok(fs.existsSync(NATIVE), `the native plugin is not built (${NATIVE}): npm run build`);
  const dir = path.join(tmp, 'native');
  const bin = path.join(dir, 'bin');
  fs.mkdirSync(bin, { recursive: true });
  await installCni({ confDir: dir, binDir: bin, stateDir: dir, portmap: false });
  // The stand-in router answers what the current case says, raw (status line and all).
  let answer = Buffer.alloc(0);
  const srv = net.createServer((s) => {
    let seen = Buffer.alloc(0);
    s.on('error', () => undefined);
    s.on('data', (c: Buffer) => {
      seen = Buffer.concat([seen, c]);
      const headEnd = seen.indexOf('\r\n\r\n');
      if (headEnd < 0) return;
      const len = Number(/content-length: *(\d+)/i.exec(seen.subarray(0, headEnd).toString('latin1'))?.[1] ?? 0);
      if (seen.length - headEnd - 4 < len) return;
      s.end(answer);
    });
  });
  await new Promise<void>((r) => srv.listen(path.join(dir, 'weaver.sock'), r));
  try {
    const okBody = '{"cniVersion":"1.0.0","ips":[]}\n';
    const answers = fc.oneof(
      fc.constantFrom(0, 1).map((x) => ({ raw: `HTTP/1.1 200 OK\r\nX-Cni-Exit: ${x}\r\nContent-Type: application/json\r\n\r\n${okBody}`, passes: x })),
      fc.constantFrom(
        'HTTP/1.1 200 OK\r\n\r\n{}', 'HTTP/1.1 503 Busy\r\nX-Cni-Exit: 0\r\n\r\n{"error":"starting"}', 'garbage', '', 'HTTP/1.1 200 OK\r\nX-Cni-Exit: 7\r\n\r\nx',
        'HTTP/1.1 200 OK\r\nX-Cni-Exit: 0', 'HTTP/9 x\r\n\r\n', `HTTP/1.1 400 Bad\r\n\r\n${'"\\'.repeat(2000)}`,
      ).map((raw) => ({ raw, passes: -1 })),
      fc.uint8Array({ maxLength: 200 }).map((a) => ({ raw: Buffer.from(a).toString('latin1'), passes: -1 })),
      // Over the plugin's answer bound (1 MiB and some head room): refused, not passed on.
      fc.constant({ raw: `HTTP/1.1 200 OK\r\nX-Cni-Exit: 0\r\n\r\n${'a'.repeat(2 << 20)}`, passes: -1 }),
    );
    const envs = fc.dictionary(fc.oneof(fc.constantFrom(...CNI_KEYS), fc.constantFrom('CNI_X', 'PATH', 'HOME')), fc.oneof(fc.string({ maxLength: 30 }), fc.integer({ min: 0, max: 17_000 }).map((n) => 'v'.repeat(n))), { maxKeys: 8 })
      .map((e) => ({ ...e, CNI_COMMAND: e.CNI_COMMAND === 'VERSION' ? 'ADD' : e.CNI_COMMAND ?? 'ADD' }));
    const input = fc.oneof(fc.uint8Array({ maxLength: 2000 }).map((a) => Buffer.from(a)), fc.integer({ min: 0, max: MAX_CONF_BYTES + 100 }).map((n) => Buffer.alloc(n, 0x22)));
    await holds(fc.asyncProperty(answers, envs, input, async (a, env, data) => {
      answer = Buffer.from(a.raw, 'latin1');
      const r = await execNative(path.join(bin, 'weave-net'), env, data);
      assert.equal(r.signal, null, 'no crash or timeout kill');
      assert.ok(r.code === 0 || r.code === 1, `exit ${r.code}`);
      const body = a.raw.slice(a.raw.indexOf('\r\n\r\n') + 4);
      if (r.stdout === body && a.passes === r.code) return; // the router's answer passed through
      assert.equal(r.code, 1, `exit 0 only with the router's answer: ${JSON.stringify(r.stdout.slice(0, 100))}`);
      assertCniError(r.stdout, 'native');
    }), 80);
  } finally {
    await new Promise<void>((r) => srv.close(() => r()));
  }
});
