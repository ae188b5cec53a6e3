// Bundle the router daemon (dist/router/daemon/weaver.js and everything it imports,
// node_modules included) into one ES module, dist/bundle/weaver.js, which
// `weave launch` starts. Why: a router's "load" start-up phase is node resolving, reading
// and compiling ~150 module files one by one; on a busy host (issue #20: 30 routers on
// 2 vCPUs, every join costing every router work) that phase stretched from ~0.3 s to 2 s.
// One file takes about half the CPU (measured in the commit that added this script).
//
// The bundle must behave exactly like the files it came from:
// - every `import.meta.url` is rewritten to the URL of the module's original file
//   (computed at run time from the bundle's own URL, so the tree can move), so paths
//   found relative to a module (the package root, the DNS worker, weavewait, addons
//   loaded with createRequire) resolve as before;
// - CommonJS modules that use `__dirname`/`__filename` get their original values the
//   same way;
// - `require` is node's own (createRequire), for builtins and for native addons that
//   packages load at run time (msgpackr-extract, sodium-native), which stay in
//   node_modules.
// Run by `npm run build` after tsc.
import { build } from 'esbuild';
import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const entry = path.join(root, 'dist/router/daemon/weaver.js');
const outfile = path.join(root, 'dist/bundle/weaver.js');
const outDir = path.dirname(outfile);

const banner = [
  "import { createRequire as __tswCreateRequire } from 'node:module';",
  "import { fileURLToPath as __tswFileURLToPath } from 'node:url';",
  'const require = __tswCreateRequire(import.meta.url);',
  '/** The URL of a bundled module\'s original file, from its path relative to this bundle. */',
  'const __tswUrl = (rel) => new URL(rel, import.meta.url).href;',
  'const __tswPath = (rel) => __tswFileURLToPath(new URL(rel, import.meta.url));',
].join('\n');

/**
 * What the bundle needs changed in one module's source so that it behaves as it did from
 * its own file: `import.meta.url` becomes the original file's URL and, where the module
 * uses them without declaring them (CommonJS), `__filename`/`__dirname` get the original
 * paths, both computed at run time from the bundle's URL and the path from `outDir` (the
 * bundle's directory) to `file`. Returns the new source, or undefined when nothing changes.
 * @param {string} src the module's source
 * @param {string} file the module's absolute path
 * @param {string} outDir the bundle's directory (absolute)
 * @returns {string | undefined}
 */
export function originalPathsSource(src, file, outDir) {
  /** Relative path (POSIX) from the bundle's directory to `p`, as a JS string literal. */
  const rel = (p) => JSON.stringify(path.relative(outDir, p).split(path.sep).join('/'));
  const usesMeta = src.includes('import.meta.url');
  const usesDir = /\b__(dirname|filename)\b/.test(src) && !/\b(const|let|var)\s+__(dirname|filename)\b/.test(src);
  if (!usesMeta && !usesDir) return undefined;
  let out = usesMeta ? src.replaceAll('import.meta.url', `__tswUrl(${rel(file)})`) : src;
  // In a CommonJS module this `var` is local to esbuild's module wrapper.
  if (usesDir) out = `var __filename = __tswPath(${rel(file)}), __dirname = __tswPath(${rel(path.dirname(file))});\n${out}`;
  return out;
}

async function main() {
  // Chunk names carry content hashes: drop the last build's, so no stale chunk stays.
  await rm(outDir, { recursive: true, force: true });
  const originalPaths = {
    name: 'original-paths',
    setup(b) {
      b.onLoad({ filter: /\.(c|m)?js$/ }, async (args) => {
        const contents = originalPathsSource(await readFile(args.path, 'utf8'), args.path, outDir);
        return contents === undefined ? undefined : { contents, loader: 'js' };
      });
    },
  };
  const result = await build({
    entryPoints: { weaver: entry },
    outdir: outDir,
    // Modules imported only on demand (the Noise channel, the Docker plugin) become
    // chunks of their own, parsed only when imported.
    splitting: true,
    chunkNames: 'chunk-[hash]',
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    banner: { js: banner },
    plugins: [originalPaths],
    // Native addons are loaded at run time from build/Release or node_modules.
    external: ['*.node'],
    logLevel: 'warning',
    metafile: true,
  });
  const outputs = Object.entries(result.metafile.outputs);
  const main = outputs.find(([f]) => path.resolve(f) === outfile);
  process.stdout.write(`bundle: ${path.relative(root, outfile)} (${Object.keys(result.metafile.inputs).length} modules; ${((main?.[1].bytes ?? 0) / 1024).toFixed(0)} KiB in the entry file, ${outputs.length - 1} chunks)\n`);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) await main();
