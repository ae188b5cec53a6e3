/**
 * The plugin's socket server (plugin/server.ts) on a real unix socket in a temp
 * directory (no root): answers, error objects for bad input, bounded bodies, and it
 * keeps serving after every kind of abuse.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { listenPlugin, MAX_BODY_BYTES, oneLine } from '../../plugin/server.js';
import { PluginError } from '../../plugin/protocol.js';

function post(socketPath: string, urlPath: string, body: string, method = 'POST'): Promise<{ status: number; type: string; json: any }> { // eslint-disable-line @typescript-eslint/no-explicit-any
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath, path: urlPath, method, timeout: 5000 }, (res) => {
      let t = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (t += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type']), json: JSON.parse(t) }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('plugin socket server', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsw-plugin-'));
  const sock = path.join(dir, 'sub', 'weavemesh.sock');
  const logs: string[] = [];
  let server: { close(): Promise<void> };
  const calls: Array<[string, unknown]> = [];

  before(async () => {
    server = await listenPlugin(sock, {
      handle: async (p, b) => {
        calls.push([p, b]);
        if (p === '/Plugin.Activate') return { Implements: ['NetworkDriver'] };
        if (p === '/Boom') throw new Error('line one\nline two');
        throw new PluginError(`unknown plugin call "${p}"`);
      },
    }, (l) => logs.push(l));
  });
  after(async () => {
    await server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('answers with the plugin content type; an empty body is {}', async () => {
    const r = await post(sock, '/Plugin.Activate', '');
    assert.equal(r.status, 200);
    assert.equal(r.type, 'application/vnd.docker.plugins.v1.2+json');
    assert.deepEqual(r.json, { Implements: ['NetworkDriver'] });
    assert.deepEqual(calls.at(-1), ['/Plugin.Activate', {}]);
    assert.equal(fs.statSync(sock).mode & 0o777, 0o600);
  });

  test('malformed JSON, unknown path, wrong method, failing handler: {"Err": one line}', async () => {
    const bad = await post(sock, '/Plugin.Activate', '{"a":');
    assert.equal(bad.status, 400);
    assert.match(bad.json.Err, /malformed JSON/);
    const unknown = await post(sock, '/X.Y', '{}');
    assert.equal(unknown.status, 404);
    assert.match(unknown.json.Err, /unknown plugin call/);
    const get = await post(sock, '/Plugin.Activate', '', 'GET');
    assert.equal(get.status, 405);
    const boom = await post(sock, '/Boom', '{}');
    assert.equal(boom.status, 500);
    assert.equal(boom.json.Err, 'line one line two');
    assert.ok(logs.every((l) => !l.includes('\n')));
  });

  test('a body over the bound gets 413 and nothing reaches the handler', async () => {
    const n = calls.length;
    const r = await post(sock, '/Plugin.Activate', `{"x":"${'a'.repeat(MAX_BODY_BYTES)}"}`);
    assert.equal(r.status, 413);
    assert.equal(calls.length, n);
  });

  test('a raw connection sending garbage does not stop the server', async () => {
    await new Promise<void>((resolve) => {
      const c = net.createConnection(sock, () => c.end('\x00\x01 not http at all\r\n\r\n'));
      c.on('close', () => resolve());
      c.on('error', () => resolve());
      c.resume();
    });
    assert.equal((await post(sock, '/Plugin.Activate', '{}')).status, 200);
  });

  test('oneLine strips control characters and bounds length', () => {
    assert.equal(oneLine('a\r\n\x1b[31mb'), 'a [31mb');
    assert.equal(oneLine('x'.repeat(900)).length, 500);
    assert.equal(oneLine(''), 'internal error');
  });
});
