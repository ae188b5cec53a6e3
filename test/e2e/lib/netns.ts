/**
 * A network namespace for one root-only test suite (the native addons' tests): made in
 * `before`, deleted in `after` — also when a test fails — so the machine is left as it
 * was. Call inside a describe().
 */
import { after, before } from 'node:test';
import { execFileSync } from 'node:child_process';

/** Registers before/after hooks that create namespace `name` (loopback up unless `loopbackUp` is false) and delete it. */
export function useNetns(name: string, opts: { loopbackUp?: boolean } = {}): void {
  before(() => {
    execFileSync('ip', ['netns', 'add', name]);
    if (opts.loopbackUp !== false) execFileSync('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
  });
  after(() => {
    try {
      execFileSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
    } catch { /* already gone */ }
  });
}
