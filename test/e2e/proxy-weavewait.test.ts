/**
 * weavewait on its own, in a network namespace of its own (no Docker):
 * it must wait until `ethwe` is up, running (peer up) and has an IPv4
 * address, then exec the command; time out with a clear message otherwise.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { defaultWeavewaitPath } from '../../proxy/proxy.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const NS = `tsw-px-ww-${process.pid}`;
const PEER_NS = `tsw-px-wp-${process.pid}`;
const WW = defaultWeavewaitPath();

function skipReason(): string | null {
  if (process.getuid?.() !== 0) return 'not root';
  if (!fs.existsSync(WW)) {
    try {
      execFileSync('sh', [path.join(ROOT, 'proxy/weavewait/build.sh'), WW], { stdio: 'pipe' });
    } catch (err) {
      return `cannot build weavewait: ${(err as Error).message}`;
    }
  }
  return null;
}
const SKIP = skipReason();

interface Result {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Run weavewait inside NS; `during` runs once it has started (e.g. to bring ethwe up). */
function weavewait(args: string[], opts: { timeout?: string; during?: (pid: number) => void | Promise<void> } = {}): Promise<Result> {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const env = { ...process.env, WEAVEWAIT_TIMEOUT: opts.timeout ?? '0.3' };
    const p = spawn('nsenter', [`--net=/var/run/netns/${NS}`, WW, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    p.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const kill = setTimeout(() => p.kill('SIGKILL'), 15_000);
    p.on('close', (code, signal) => {
      clearTimeout(kill);
      resolve({ code, signal, stdout, stderr, ms: Date.now() - t0 });
    });
    if (opts.during) void Promise.resolve(opts.during(p.pid!));
  });
}

const ip = (...args: string[]) => execFileSync('ip', args, { stdio: 'pipe' });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('weavewait', { skip: SKIP ?? false, timeout: 60_000 }, () => {
  before(() => {
    ip('netns', 'add', NS);
    ip('netns', 'add', PEER_NS);
  });
  after(() => {
    for (const n of [NS, PEER_NS]) {
      try {
        ip('netns', 'del', n);
      } catch {
        // not created
      }
    }
  });

  it('without a command: exit 127 and a usage line', async () => {
    const r = await weavewait([]);
    assert.equal(r.code, 127);
    assert.match(r.stderr, /no command to run/);
  });

  it('without ethwe: waits for the timeout, exits 1 with a clear message and never runs the command', async () => {
    const r = await weavewait(['/bin/echo', 'ran']);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /^weavewait: timed out after 0\.3s waiting for interface ethwe/);
    assert.ok(r.ms >= 280, `waited ${r.ms} ms`);
  });

  it('ethwe up with an address but its peer down (not running): still waits', async () => {
    ip('-n', NS, 'link', 'add', 'ethwe', 'type', 'veth', 'peer', 'name', 'tsw-px-wwp', 'netns', PEER_NS);
    ip('-n', NS, 'addr', 'add', '10.99.7.2/24', 'dev', 'ethwe');
    ip('-n', NS, 'link', 'set', 'ethwe', 'up');
    const r = await weavewait(['/bin/echo', 'ran']);
    assert.equal(r.code, 1, r.stderr);
    assert.equal(r.stdout, '');
  });

  it('up and running but no IPv4 address: still waits', async () => {
    ip('-n', NS, 'addr', 'flush', 'dev', 'ethwe');
    ip('-n', PEER_NS, 'link', 'set', 'tsw-px-wwp', 'up');
    const r = await weavewait(['/bin/echo', 'ran']);
    assert.equal(r.code, 1, r.stderr);
    assert.equal(r.stdout, '');
  });

  it('execs the command (PATH lookup, arguments intact) as soon as ethwe becomes ready', async () => {
    ip('-n', NS, 'link', 'set', 'ethwe', 'down');
    ip('-n', NS, 'addr', 'add', '10.99.7.2/24', 'dev', 'ethwe');
    let readyAt = 0;
    const r = await weavewait(['sh', '-c', 'echo "$0|$1"', 'a b', 'c'], {
      timeout: '10',
      during: async () => {
        await sleep(300);
        readyAt = Date.now();
        ip('-n', NS, 'link', 'set', 'ethwe', 'up');
      },
    });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'a b|c\n');
    assert.ok(readyAt > 0 && r.ms >= 300, `ran after ${r.ms} ms`);
  });

  it('a missing command: exit 127 naming it; exit status of the command is passed through', async () => {
    const r = await weavewait(['tsw-px-no-such-command'], { timeout: '5' });
    assert.equal(r.code, 127);
    assert.match(r.stderr, /cannot run tsw-px-no-such-command: No such file or directory/);
    const f = await weavewait(['sh', '-c', 'exit 7'], { timeout: '5' });
    assert.equal(f.code, 7);
  });

  it('SIGTERM while waiting ends it at once', async () => {
    ip('-n', NS, 'link', 'set', 'ethwe', 'down');
    const r = await weavewait(['/bin/echo', 'ran'], {
      timeout: '10',
      during: async (pid) => {
        await sleep(200);
        // nsenter execs weavewait in place, so the child pid is weavewait's
        process.kill(pid, 'SIGTERM');
      },
    });
    assert.equal(r.code, 143, `${r.code} ${r.signal} ${r.stderr}`);
    assert.ok(r.ms < 3000, `took ${r.ms} ms`);
    assert.equal(r.stdout, '');
  });
});
