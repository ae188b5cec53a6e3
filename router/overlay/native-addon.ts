/**
 * Loading of the project's native addons (`build/Release/<name>.node`, built by
 * node-gyp from binding.gyp during `npm ci`), shared by tap.ts and udp.ts.
 */
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** An error from native I/O with an errno-style `code` (EADDRINUSE, EBUSY, ENOADDON, ...). */
export class CodedError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = new.target.name;
    this.code = code;
  }
}

/** Why an addon could not be loaded; callers wrap it in their own error type (code ENOADDON). */
export class AddonMissing extends Error {
  readonly code = 'ENOADDON';
}

/** The package root: the nearest ancestor holding both package.json and binding.gyp. */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'binding.gyp')) && existsSync(join(dir, 'package.json'))) return dir;
    const up = dirname(dir);
    if (up === dir) throw new AddonMissing('cannot find the tsweave package root (binding.gyp) above ' + fileURLToPath(import.meta.url));
    dir = up;
  }
}

const loaded = new Map<string, unknown>();

/**
 * Load `build/Release/<name>.node` once. `what` names it in the error, e.g. "TAP".
 * @throws AddonMissing with a one-line message saying how to build it.
 */
export function loadAddon<T>(name: string, what: string): T {
  const hit = loaded.get(name);
  if (hit !== undefined) return hit as T;
  const root = packageRoot();
  const file = join(root, 'build', 'Release', `${name}.node`);
  if (!existsSync(file)) throw new AddonMissing(`native ${what} addon ${file} is not built: run \`npm ci\` (or \`npm run install\`) in ${root}`);
  const mod = createRequire(import.meta.url)(file) as T;
  loaded.set(name, mod);
  return mod;
}
