// The router bundle (scripts/bundle.mjs, dist/bundle/): module-relative paths must resolve
// as they did from each module's own file (the DNS worker, weavewait, the package root
// the addons are found from, createRequire).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
type Transform = (src: string, file: string, outDir: string) => string | undefined;

async function transform(): Promise<Transform> {
  const mod = (await import(pathToFileURL(path.join(root, 'scripts', 'bundle.mjs')).href)) as { originalPathsSource: Transform };
  return mod.originalPathsSource;
}

/** Evaluate `expr` the way the bundle's banner would, for a bundle at `bundleFile`. */
function evalInBundle(expr: string, bundleFile: string): unknown {
  const bundleUrl = pathToFileURL(bundleFile).href;
  const tswUrl = (rel: string): string => new URL(rel, bundleUrl).href;
  const tswPath = (rel: string): string => fileURLToPath(new URL(rel, bundleUrl));
  return new Function('__tswUrl', '__tswPath', `return (${expr});`)(tswUrl, tswPath);
}

test('import.meta.url becomes the original file\'s URL, computed from the bundle\'s own location', async () => {
  const f = await transform();
  const file = '/srv/tsweave/dist/dns/threaded.js';
  const out = f("const w = new URL('./server-worker.js', import.meta.url);", file, '/srv/tsweave/dist/bundle');
  assert.ok(out !== undefined);
  assert.equal(out.includes('import.meta'), false);
  const expr = /new URL\('\.\/server-worker\.js', (.*)\);/.exec(out)![1];
  assert.equal(evalInBundle(expr, '/srv/tsweave/dist/bundle/weaver.js'), pathToFileURL(file).href);
  // The tree moved after the build: still the original file, in its new place.
  assert.equal(evalInBundle(expr, '/opt/moved/dist/bundle/weaver.js'), 'file:///opt/moved/dist/dns/threaded.js');
});

test('a CommonJS module gets its own __dirname and __filename; modules that declare them, or use neither, are left alone', async () => {
  const f = await transform();
  const file = '/srv/tsweave/node_modules/pino/lib/transport.js';
  const out = f("module.exports = () => require('path').join(__dirname, 'worker.js');", file, '/srv/tsweave/dist/bundle');
  assert.ok(out !== undefined);
  const decl = /^var __filename = (.*), __dirname = (.*);\n/.exec(out);
  assert.ok(decl, out);
  assert.equal(evalInBundle(decl[1], '/srv/tsweave/dist/bundle/weaver.js'), file);
  assert.equal(evalInBundle(decl[2], '/srv/tsweave/dist/bundle/weaver.js'), '/srv/tsweave/node_modules/pino/lib');
  assert.equal(f("const __dirname = path.dirname(fileURLToPath(x)); use(__dirname);", '/x/a.js', '/x/dist/bundle'), undefined);
  assert.equal(f('export const a = 1;', '/x/a.js', '/x/dist/bundle'), undefined);
});

test('the built bundle: import.meta.url appears only in the banner of each file', () => {
  const dir = path.join(root, 'dist', 'bundle');
  assert.ok(existsSync(path.join(dir, 'weaver.js')), `${dir}/weaver.js is missing: run \`npm run build\``);
  const files = readdirSync(dir).filter((n) => n.endsWith('.js'));
  assert.ok(files.length >= 2, `expected the entry and its chunks in ${dir}, found ${files.join(', ')}`);
  for (const n of files) {
    const lines = readFileSync(path.join(dir, n), 'utf8').split('\n');
    const at = lines.flatMap((l, i) => (l.includes('import.meta.url') ? [i] : []));
    // Banner: createRequire, __tswUrl and __tswPath (the first lines of every output file).
    assert.deepEqual(at.length, 3, `${n}: import.meta.url on lines ${at.map((i) => i + 1).join(', ')}`);
    assert.ok(at.every((i) => i < 8), `${n}: a module's import.meta.url was not rewritten (line ${at.map((i) => i + 1).join(', ')})`);
  }
});
