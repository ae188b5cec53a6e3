/**
 * The native CNI plugin path: cni/weave-net.ts run() (stdin bytes + CNI_* env →
 * {code, stdout}, shared by the Node.js script and the router's POST /cni/exec), the
 * route's body check (execRequest), installCni's native layout, and the built
 * executable dist/cni/native/weave-net against a stand-in router on a unix socket in
 * a temporary directory: request shape and JSON escaping, answer pass-through, and
 * the router-down behaviours (no root, no namespaces).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from '../../cni/weave-net.js';
import { execRequest } from '../../cni/router-side.js';
import { SOCK_PATH_FILE, installCni } from '../../cni/install.js';
import { versionResult, MAX_CONF_BYTES } from '../../cni/spec.js';

const NATIVE = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'cni', 'native', 'weave-net');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tsweave-cni-native-'));
test.after(() => fs.rmSync(tmp, { recursive: true, force: true }));

const ENV = { CNI_CONTAINERID: 'c1', CNI_NETNS: '/run/netns/x', CNI_IFNAME: 'eth0', CNI_PATH: '/opt/cni/bin' };
const noRouterDir = path.join(tmp, 'no-router');
const conf = (o: Record<string, unknown> = {}): Buffer => Buffer.from(JSON.stringify({ cniVersion: '0.4.0', name: 'weave', type: 'weave-net', stateDir: noRouterDir, ...o }));

test('run: VERSION, errors as CNI JSON with the conf\'s cniVersion, router-down DEL/ADD', async () => {
  const v = await run([], { CNI_COMMAND: 'VERSION' }, Buffer.alloc(0));
  assert.deepEqual(v, { code: 0, stdout: JSON.stringify(versionResult()) + '\n', stderr: '' });
  const badEnv = await run([], { CNI_COMMAND: 'NOPE' }, conf());
  assert.equal(badEnv.code, 1);
  assert.equal(JSON.parse(badEnv.stdout).code, 4);
  const badVer = await run([], { ...ENV, CNI_COMMAND: 'ADD' }, conf({ cniVersion: '9.9.9' }));
  assert.deepEqual([badVer.code, JSON.parse(badVer.stdout).code], [1, 1]);
  const big = await run([], { ...ENV, CNI_COMMAND: 'ADD' }, Buffer.alloc(MAX_CONF_BYTES + 1, 32));
  assert.deepEqual([big.code, JSON.parse(big.stdout).code], [1, 6]);
  const add = await run([], { ...ENV, CNI_COMMAND: 'ADD' }, conf());
  assert.equal(add.code, 1);
  assert.deepEqual(JSON.parse(add.stdout), { ...JSON.parse(add.stdout), cniVersion: '0.4.0', code: 11, msg: 'tsweave router is not running on this node' });
  const del = await run([], { ...ENV, CNI_COMMAND: 'DEL' }, conf());
  assert.deepEqual([del.code, del.stdout], [0, '']);
  assert.match(del.stderr, /^weave-net: DEL c1: tsweave router is not running on this node; its address is freed/);
  const ipamDel = await run(['--ipam'], { ...ENV, CNI_COMMAND: 'DEL' }, conf());
  assert.deepEqual([ipamDel.code, JSON.parse(ipamDel.stdout).code], [1, 11]);
  const gc = await run([], { ...ENV, CNI_COMMAND: 'GC' }, conf({ cniVersion: '1.1.0' }));
  assert.deepEqual(gc, { code: 0, stdout: '', stderr: '' });
});

test('run in the router: a conf whose stateDir is another router\'s is refused (InvalidConfig)', async () => {
  const r = await run([], { ...ENV, CNI_COMMAND: 'ADD' }, conf(), { stateDir: path.join(tmp, 'other') });
  assert.equal(r.code, 1);
  const e = JSON.parse(r.stdout);
  assert.deepEqual([e.code, e.cniVersion], [7, '0.4.0']);
  assert.match(e.msg, /is not this router's/);
});

test('execRequest: only ["--ipam"], only CNI_* string env, stdin a bounded string', () => {
  const ok = execRequest({ argv: ['--ipam'], env: { CNI_COMMAND: 'ADD' }, stdin: '{"a":1}' });
  assert.deepEqual([ok.argv, ok.env, ok.stdin.toString()], [['--ipam'], { CNI_COMMAND: 'ADD' }, '{"a":1}']);
  assert.deepEqual(execRequest({ env: {}, stdin: '' }).argv, []);
  for (const bad of [null, [], 'x', { env: {}, stdin: 1 }, { argv: ['--x'], env: {}, stdin: '' }, { env: { PATH: '/bin' }, stdin: '' },
    { env: { CNI_ARGS: 3 }, stdin: '' }, { env: { CNI_ARGS: 'x'.repeat(16 * 1024 + 1) }, stdin: '' }, { env: [], stdin: '' }, { env: {}, stdin: 'x'.repeat(MAX_CONF_BYTES * 2 + 1) }]) {
    assert.throws(() => execRequest(bad), (err: Error & { status?: number }) => err.status === 400 && !err.message.includes('\n'), JSON.stringify(bad)?.slice(0, 80));
  }
  // Over the conf limit (in bytes) goes on to run(), which answers DecodeFailure.
  assert.equal(execRequest({ env: {}, stdin: 'é'.repeat(MAX_CONF_BYTES / 2 + 1) }).stdin.length, MAX_CONF_BYTES + 1);
});

/** Run the installed plugin as a runtime would: argv[0], env, stdin; bounded to 20 s. */
function exec(bin: string, env: Record<string, string>, input: string | Buffer, argv: string[] = []): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(bin, argv, { env, timeout: 20_000 });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (c: Buffer) => { stdout += c.toString(); });
    p.stderr.on('data', (c: Buffer) => { stderr += c.toString(); });
    p.on('error', reject);
    p.on('close', (code) => resolve({ code, stdout, stderr }));
    p.stdin.on('error', () => undefined);
    p.stdin.end(input);
  });
}

test('native plugin: installed layout, VERSION, router down (ADD, DEL, weave-ipam DEL, STATUS), stdin bound', async () => {
  assert.ok(fs.existsSync(NATIVE), `the native plugin is not built (${NATIVE}): npm run build`);
  const bin = path.join(tmp, 'bin-down');
  fs.mkdirSync(bin);
  const files = await installCni({ confDir: tmp, binDir: bin, stateDir: noRouterDir, portmap: false, fileName: 'down.conflist' });
  assert.deepEqual(files.map((f) => path.basename(f)), ['weave-net', 'weave-ipam', SOCK_PATH_FILE, 'down.conflist']);
  assert.equal(fs.readFileSync(path.join(bin, SOCK_PATH_FILE), 'utf8'), path.join(noRouterDir, 'weaver.sock') + '\n');
  const net = path.join(bin, 'weave-net');
  const ver = await exec(net, { CNI_COMMAND: 'VERSION' }, '');
  assert.deepEqual([ver.code, ver.stdout], [0, JSON.stringify(versionResult()) + '\n']);
  const add = await exec(net, { ...ENV, CNI_COMMAND: 'ADD' }, conf());
  assert.equal(add.code, 1);
  const e = JSON.parse(add.stdout);
  assert.deepEqual([e.cniVersion, e.code, e.msg], ['1.0.0', 11, 'tsweave router is not running on this node']);
  assert.ok(e.details.includes(path.join(noRouterDir, 'weaver.sock')));
  const del = await exec(net, { ...ENV, CNI_COMMAND: 'DEL' }, conf());
  assert.deepEqual([del.code, del.stdout], [0, '']);
  assert.match(del.stderr, /^weave-net: DEL c1: tsweave router is not running on this node; its address is freed when the router starts/);
  const ipamDel = await exec(path.join(bin, 'weave-ipam'), { ...ENV, CNI_COMMAND: 'DEL' }, conf());
  assert.deepEqual([ipamDel.code, JSON.parse(ipamDel.stdout).code], [1, 11]);
  const st = await exec(net, { CNI_COMMAND: 'STATUS' }, conf({ cniVersion: '1.1.0' }));
  assert.deepEqual([st.code, JSON.parse(st.stdout).code], [1, 50]);
  const big = await exec(net, { ...ENV, CNI_COMMAND: 'ADD' }, Buffer.alloc(MAX_CONF_BYTES + 1, 32));
  assert.deepEqual([big.code, JSON.parse(big.stdout).code], [1, 6]);
});

test('native plugin: POST /cni/exec request (CNI_* only, escaped stdin) and the answer passed through', async () => {
  assert.ok(fs.existsSync(NATIVE), `the native plugin is not built (${NATIVE}): npm run build`);
  const dir = path.join(tmp, 'fake');
  const bin = path.join(dir, 'bin');
  fs.mkdirSync(bin, { recursive: true });
  await installCni({ confDir: dir, binDir: bin, stateDir: dir, portmap: false });
  const seen: Array<{ url?: string; method?: string; type?: string; body: string }> = [];
  let answer = { status: 200, exit: '0', body: '{"cniVersion":"1.0.0","ips":[]}\n' };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      seen.push({ url: req.url, method: req.method, type: req.headers['content-type'], body: Buffer.concat(chunks).toString('utf8') });
      res.writeHead(answer.status, { 'x-cni-exit': answer.exit, 'content-type': 'application/json' });
      res.end(answer.body);
    });
  });
  await new Promise<void>((r) => server.listen(path.join(dir, 'weaver.sock'), r));
  try {
    const text = JSON.stringify({ cniVersion: '1.0.0', name: 'we"ird\\', type: 'weave-net', x: 'tab\there\u0001\u007f é ☃' }) + '\n\u0000\r';
    const r = await exec(path.join(bin, 'weave-net'), { ...ENV, CNI_COMMAND: 'ADD', CNI_ARGS: 'K8S_POD_NAME="a\\b"', PATH: '/usr/bin', WEAVE_X: '1' }, text);
    assert.deepEqual([r.code, r.stdout, r.stderr], [0, answer.body, '']);
    assert.equal(seen.length, 1);
    assert.deepEqual([seen[0].method, seen[0].url, seen[0].type], ['POST', '/cni/exec', 'application/json']);
    const req = JSON.parse(seen[0].body);
    assert.deepEqual(req, { argv: [], env: { ...ENV, CNI_COMMAND: 'ADD', CNI_ARGS: 'K8S_POD_NAME="a\\b"' }, stdin: text });
    assert.doesNotThrow(() => execRequest(req));
    answer = { status: 200, exit: '1', body: '{"cniVersion":"0.4.0","code":7,"msg":"bad"}\n' };
    const ipam = await exec(path.join(bin, 'weave-ipam'), { ...ENV, CNI_COMMAND: 'DEL' }, '{}');
    assert.deepEqual([ipam.code, ipam.stdout], [1, answer.body]);
    assert.deepEqual(JSON.parse(seen[1].body).argv, ['--ipam']);
    answer = { status: 503, exit: '', body: '{"error":"the router is starting: try again in a moment"}' };
    const starting = await exec(path.join(bin, 'weave-net'), { ...ENV, CNI_COMMAND: 'ADD' }, '{}');
    const e = JSON.parse(starting.stdout);
    assert.deepEqual([starting.code, e.code], [1, 11]);
    assert.match(e.details, /the router is starting/);
  } finally {
    await new Promise<void>((r) => server.close(() => r()));
  }
});
