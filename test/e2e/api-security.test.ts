/**
 * The router's API against the attacks of issue #13, on a real router in a host
 * namespace: a web page in headless Chromium (no-cors POSTs, text/plain JSON,
 * reading the report), a DNS-rebinding Host, an unprivileged local user, malformed
 * URLs; plus the CLI's refusals (bad peer addresses, --password with --no-detach,
 * a weak password, a non-loopback --api-addr, an unknown verb with -h).
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { existsSync, writeFileSync, chmodSync, statSync, readdirSync } from 'node:fs';
import { Testbed, canRunE2E, until, sh, type Host } from './lib/testbed.js';

const skip = canRunE2E();
const CI = process.env.CI === 'true';

/** Run a small Node program inside the host's namespace (optionally as `nobody`); returns its stdout. */
async function nodeIn(h: Host, code: string, asNobody = false): Promise<string> {
  const pre = asNobody ? ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'] : [];
  const r = await h.exec([...pre, process.execPath, '-e', code], 30_000);
  if (r.code !== 0) throw new Error(`node in ${h.ns} failed (${r.code}): ${r.stderr.trim()}`);
  return r.stdout.trim();
}

/** A request to the router's TCP API from inside the namespace; prints "STATUS body". */
function tcpRequest(method: string, urlPath: string, headers: Record<string, string> = {}, body = ''): string {
  return `const http=require('http');const r=http.request({host:'127.0.0.1',port:6784,method:${JSON.stringify(method)},path:${JSON.stringify(urlPath)},headers:${JSON.stringify(headers)},timeout:5000},(res)=>{let b='';res.on('data',(d)=>b+=d);res.on('end',()=>console.log(res.statusCode+' '+b.slice(0,300)))});r.on('error',(e)=>console.log('ERR '+e.code));r.on('timeout',()=>r.destroy(new Error('timeout')));r.end(${JSON.stringify(body)});`;
}

describe('API security', { skip, timeout: 600_000 }, () => {
  const bed = new Testbed('as');
  let h1: Host, h2: Host;

  before(async () => {
    [h1, h2] = await bed.up(2);
    await h1.launch(['--no-proxy', '--ipalloc-range', '10.32.0.0/16', h2.ip]);
    await h2.launch(['--no-proxy', '--ipalloc-range', '10.32.0.0/16', h1.ip]);
    await until('h1-h2 established', async () => (await h1.report()).Router.Connections.some((c: { State: string }) => c.State === 'established'), 30_000);
    // GET /status answers 200 only once the router is ready (IPAM has its ring).
    await Promise.all([h1.mustWeave(['prime'], { timeoutMs: 60_000 }), h2.mustWeave(['prime'], { timeoutMs: 60_000 })]);
  });
  after(() => bed.destroy());

  const targets = async (): Promise<string[]> => (await h1.report()).Router.Targets as string[];
  const refused = async (): Promise<Record<string, number>> => (await h1.report()).API.Refused as Record<string, number>;

  test('a web page in Chromium cannot stop the router, add a peer or read the report', async () => {
    const missing = !existsSync('/usr/bin/chromium') ? 'chromium' : undefined;
    let chromium: { launchPersistentContext(dir: string, o: Record<string, unknown>): Promise<any> } | undefined; // eslint-disable-line @typescript-eslint/no-explicit-any
    try {
      const name = 'playwright-core';
      chromium = ((await import(name)) as { chromium: NonNullable<typeof chromium> }).chromium;
    } catch { /* reported below */ }
    if (missing || !chromium) {
      if (CI) assert.fail(`prerequisite missing: ${missing ?? 'playwright-core'} (scripts/setup.sh installs it)`);
      return;
    }
    const before = await targets();
    const refusedBefore = await refused();
    // The attacker's page is served from another loopback port inside h1's namespace.
    const page = `<!doctype html><script>
      window.results = (async () => {
        const out = {};
        const tryit = async (k, f) => { try { const r = await f(); out[k] = r.type === 'opaque' ? 'opaque' : r.status; } catch (e) { out[k] = 'blocked'; } };
        await tryit('stop', () => fetch('http://127.0.0.1:6784/stop', { method: 'POST', mode: 'no-cors' }));
        await tryit('connect', () => fetch('http://127.0.0.1:6784/connect', { method: 'POST', mode: 'no-cors', headers: { 'content-type': 'text/plain' }, body: JSON.stringify({ peers: ['192.168.99.77'] }) }));
        await tryit('attach', () => fetch('http://127.0.0.1:6784/attach', { method: 'POST', mode: 'no-cors', headers: { 'content-type': 'text/plain' }, body: JSON.stringify({ target: 'pid:1', specs: ['ip:8.8.8.1/8'] }) }));
        try { const r = await fetch('http://127.0.0.1:6784/report'); out.read = 'read ' + (await r.text()).length; } catch (e) { out.read = 'blocked'; }
        return out;
      })();
    </script>`;
    writeFileSync(path.join(bed.dir, 'attack.html'), page);
    bed.background(['ip', 'netns', 'exec', h1.ns, process.execPath, '-e',
      `require('http').createServer((q,s)=>{s.writeHead(200,{'content-type':'text/html'});s.end(require('fs').readFileSync(${JSON.stringify(path.join(bed.dir, 'attack.html'))}))}).listen(8000,'127.0.0.1')`]);
    await until('attack page server', async () => (await nodeIn(h1, `require('http').get('http://127.0.0.1:8000/',(r)=>console.log(r.statusCode)).on('error',()=>console.log('no'))`)) === '200', 10_000);
    const wrapper = path.join(bed.dir, 'chromium-in-h1');
    writeFileSync(wrapper, `#!/bin/sh\nexec ip netns exec ${h1.ns} /usr/bin/chromium "$@"\n`);
    chmodSync(wrapper, 0o755);
    const ctx = await chromium.launchPersistentContext(path.join(bed.dir, 'profile'), {
      executablePath: wrapper, headless: true, timeout: 30_000,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
    });
    let results: Record<string, string | number>;
    try {
      const p = await ctx.newPage();
      await p.goto('http://127.0.0.1:8000/');
      results = await p.evaluate('window.results') as Record<string, string | number>;
    } finally {
      await ctx.close();
    }
    console.log(`# page's view: ${JSON.stringify(results)}`);
    assert.equal(results.read, 'blocked', 'the page must not read the report');
    assert.equal((await h1.weave(['status'])).code, 0, 'router still running after the page\'s POST /stop');
    assert.deepEqual(await targets(), before, 'no target added');
    assert.equal((await h1.weave(['ps'])).stdout.includes('8.8.8.1'), false, 'nothing attached');
    const after = await refused();
    const delta = (k: string): number => (after[k] ?? 0) - (refusedBefore[k] ?? 0);
    assert.ok(delta('route') + delta('access') >= 4, `refusals counted: ${JSON.stringify(after)}`);
  });

  test('DNS rebinding: a foreign Host or Origin gets 403, loopback names get the report', async () => {
    assert.match(await nodeIn(h1, tcpRequest('GET', '/report', { host: 'evil.example:6784' })), /^403 .*possible DNS rebinding/);
    assert.match(await nodeIn(h1, tcpRequest('GET', '/report', { host: '127.0.0.1:6784', origin: 'http://evil.example' })), /^403 .*not same-origin/);
    assert.match(await nodeIn(h1, tcpRequest('GET', '/report', { host: '127.0.0.1:6784', origin: 'http://localhost:3000' })), /^403 /);
    assert.match(await nodeIn(h1, tcpRequest('GET', '/report', { host: 'localhost:6784' })), /^200 \{/);
    assert.match(await nodeIn(h1, tcpRequest('GET', '/status', { host: '127.0.0.1:6784', origin: 'http://127.0.0.1:6784' })), /^200 /);
    assert.match(await nodeIn(h1, `${tcpRequest('GET', '/metrics', { host: 'evil.example' }).replace('port:6784', 'port:6782')}`), /^403 /, 'metrics listener checks Host too');
    assert.ok((await refused()).access >= 4);
  });

  test('an unprivileged user reads status over TCP but cannot mutate, and cannot open the unix socket', async () => {
    assert.match(await nodeIn(h1, tcpRequest('GET', '/status'), true), /^200 \{/);
    assert.match(await nodeIn(h1, tcpRequest('POST', '/stop', { 'content-type': 'application/json' }, '{}'), true), /^403 .*unix socket/);
    assert.match(await nodeIn(h1, tcpRequest('POST', '/attach', { 'content-type': 'application/json' }, JSON.stringify({ target: 'pid:1', specs: ['ip:8.8.8.1/8'] })), true), /^403 /);
    assert.match(await nodeIn(h1, tcpRequest('GET', '/ps'), true), /^403 /, 'endpoint details only on the unix socket');
    const sock = path.join(h1.stateDir, 'weaver.sock');
    const out = await nodeIn(h1, `require('http').get({socketPath:${JSON.stringify(sock)},path:'/status'},(r)=>console.log(r.statusCode)).on('error',(e)=>console.log(e.code))`, true);
    assert.match(out, /^(EACCES|EPERM)$/);
    assert.equal((await h1.weave(['status'])).code, 0, 'router unharmed');
  });

  test('SIGUSR1 does not open the Node.js inspector (a root debugger on loopback); the router keeps running', async () => {
    const pid = h1.pid();
    assert.ok(pid, 'router pid');
    process.kill(pid, 'SIGUSR1');
    await new Promise((r) => setTimeout(r, 1000));
    const listening = (await h1.exec(['ss', '-Hltn', 'sport', '=', ':9229'])).stdout.trim();
    assert.equal(listening, '', `something listens on 9229 in h1's namespace: ${listening}`);
    assert.equal((await h1.weave(['status'])).code, 0, 'router unharmed');
    assert.match(h1.logTail(20), /SIGUSR1 ignored/);
  });

  test('state files and sockets are root-only', () => {
    const dirMode = statSync(h1.stateDir).mode & 0o777;
    assert.equal(dirMode & 0o077, 0, `state dir mode ${dirMode.toString(8)}`);
    for (const f of readdirSync(h1.stateDir)) {
      const st = statSync(path.join(h1.stateDir, f));
      assert.equal(st.uid, 0, f);
      if (f === 'weaver.pid') continue; // a pid is no secret
      assert.equal(st.mode & 0o077, 0, `${f} mode ${(st.mode & 0o777).toString(8)}`);
    }
  });

  test('a malformed %-escape is answered 400 at once, and the router keeps serving', async () => {
    const sock = path.join(h1.stateDir, 'weaver.sock');
    const t0 = Date.now();
    const out = await nodeIn(h1, `require('http').get({socketPath:${JSON.stringify(sock)},path:'/ip/%E0%A4%A',timeout:3000},(r)=>{let b='';r.on('data',(d)=>b+=d);r.on('end',()=>console.log(r.statusCode+' '+b))}).on('error',(e)=>console.log(e.code))`);
    assert.match(out, /^400 .*malformed %-escape/);
    assert.ok(Date.now() - t0 < 5000);
    assert.doesNotMatch(h1.logTail(50), /URIError|at decodeURIComponent/);
    assert.equal((await h1.weave(['status'])).code, 0);
  });

  test('the CLI refuses bad peer addresses with one line and rc 1', async () => {
    for (const bad of ['999.1.1.1', 'host:99999', '', 'a b', '1.2.3.4/24']) {
      const r = await h1.weave(['connect', bad]);
      assert.equal(r.code, 1, `connect ${JSON.stringify(bad)}: ${r.stdout}${r.stderr}`);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    }
    assert.equal((await targets()).some((t) => t.startsWith('999.')), false);
  });

  test('a host name that does not resolve now is kept as a target and flagged in status targets', async () => {
    // The test host's namespace has no route to any nameserver: the lookup fails at once.
    const r = await h1.weave(['connect', 'nosuch-peer.invalid']);
    assert.equal(r.code, 0, r.stderr);
    const line = await until('flagged target', async () => (await h1.weave(['status', 'targets'])).stdout.split('\n').find((l) => /^nosuch-peer\.invalid:6783 unresolved: E[A-Z_]+$/.test(l)), 60_000);
    assert.ok(line, (await h1.weave(['status', 'targets'])).stdout);
    assert.equal((await h1.weave(['forget', 'nosuch-peer.invalid'])).code, 0);
    assert.equal((await targets()).includes('nosuch-peer.invalid:6783'), false);
  });

  test('launch refuses --password with --no-detach, a weak password and a non-loopback API address', async () => {
    const r1 = await h2.weave(['launch', '--no-detach', '--password', 'a long enough password here']);
    assert.equal(r1.code, 1);
    assert.match(r1.stderr, /WEAVE_PASSWORD or --password-file/);
    const r2 = await h2.weave(['launch'], { env: { WEAVE_PASSWORD: 'short' } });
    assert.equal(r2.code, 1);
    assert.match(r2.stderr, /too short/);
    const r3 = await h2.weave(['launch', '--api-addr', '0.0.0.0:6784']);
    assert.equal(r3.code, 1);
    assert.match(r3.stderr, /--api-insecure/);
    // None of these touched the running router.
    assert.equal((await h2.weave(['status'])).code, 0);
  });

  test('an unknown verb is an error even with -h', async () => {
    const r = await sh(process.execPath, [path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..', 'cli', 'weave.js'), 'frobnicate', 'x', '-h', 'name']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /unknown command 'frobnicate'/);
    assert.doesNotMatch(r.stdout, /Usage:/);
  });
});
