/**
 * [issue #20, memory] What the router's metrics and sorting code must not drag in:
 * router/api/prom.ts gives prom-client's very classes without the package index's push
 * gateway (https, tls, zlib), cluster aggregator and OpenTelemetry, and the router's sorted
 * listings compare code units, not localeCompare (ICU collation data, and a locale-dependent
 * order).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import * as promIndex from 'prom-client';
import { Counter, Gauge, Registry } from '../../router/api/prom.js';
import { TargetTable } from '../../router/mesh/connection-maker.js';
import { DnsRegistry } from '../../dns/registry.js';

test('router/api/prom.ts exports the classes of prom-client\'s index, and they work', async () => {
  assert.equal(Registry, promIndex.Registry);
  assert.equal(Counter, promIndex.Counter);
  assert.equal(Gauge, promIndex.Gauge);
  const r = new Registry();
  const c = new Counter({ name: 'probe_total', help: 'a probe', labelNames: ['kind'], registers: [r] });
  const g = new Gauge({ name: 'probe_level', help: 'a level', registers: [r] });
  c.inc({ kind: 'a' }, 2);
  g.set(7);
  const text = await r.metrics();
  assert.match(text, /^probe_total\{kind="a"\} 2$/m);
  assert.match(text, /^probe_level 7$/m);
});

test('the router\'s metrics, observability and DNS modules load no https, tls, zlib, cluster or OpenTelemetry', () => {
  const mods = ['../../router/api/metrics.js', '../../router/api/observability.js', '../../dns/subsystem.js']
    .map((m) => new URL(m, import.meta.url).href);
  const script = `for (const m of ${JSON.stringify(mods)}) await import(m);
const { createRequire } = await import('node:module');
const cjs = Object.keys(createRequire(import.meta.url).cache);
console.log(JSON.stringify({ builtins: process.moduleLoadList, cjs }));`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 30_000, cwd: fileURLToPath(new URL('.', import.meta.url)) });
  assert.equal(r.status, 0, `importing the modules failed: ${r.stderr}`);
  const { builtins, cjs } = JSON.parse(r.stdout) as { builtins: string[]; cjs: string[] };
  // The probe itself must see what it looks for: the metric classes' own files are loaded.
  assert.ok(cjs.some((f) => f.includes('/prom-client/lib/counter.js')), 'prom-client/lib/counter.js loaded');
  for (const b of ['https', 'tls', 'zlib', 'cluster']) assert.ok(!builtins.includes(`NativeModule ${b}`), `node:${b} was loaded`);
  assert.deepEqual(cjs.filter((f) => /opentelemetry|prom-client\/(index|lib\/pushgateway|lib\/cluster)\.js/.test(f)), []);
});

test('connection targets and DNS entries are listed in code-unit order', () => {
  const t = new TargetTable(6783);
  for (const a of ['10.0.0.12:6783', '10.0.0.1:6783', '10.0.0.9:6783']) t.add(a, true, 0);
  // Code units: '1' < '2' < ':' ('.'=0x2e, '0'–'9'=0x30–0x39, ':'=0x3a); ICU collation
  // would put "10.0.0.1:" first (punctuation before digits).
  assert.deepEqual(t.list().map((x) => x.address), ['10.0.0.12:6783', '10.0.0.1:6783', '10.0.0.9:6783']);
  const reg = new DnsRegistry('02:00:00:00:00:01', () => 1_000);
  reg.add('c1', '10.32.0.2', 'db.weave.local.');
  reg.add('c2', '10.32.0.10', 'db.weave.local.');
  reg.add('c3', '10.32.0.1', 'api.weave.local.');
  assert.deepEqual(reg.all().map((e) => `${e.hostname} ${e.addr}`), ['api.weave.local. 10.32.0.1', 'db.weave.local. 10.32.0.10', 'db.weave.local. 10.32.0.2']);
});
