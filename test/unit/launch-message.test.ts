/**
 * The message `weave launch` sends on the stdin of the router it started ahead of its
 * checks (cli/weave.ts prestartRouter → router/daemon/config.ts parseLaunchMessage).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseLaunchMessage } from '../../router/daemon/config.js';

test('an empty message means the launch was abandoned', () => {
  assert.equal(parseLaunchMessage(''), undefined);
});

test('config and password come through as sent', () => {
  const m = parseLaunchMessage(JSON.stringify({ config: { stateDir: '/tmp/x', port: 6783 }, password: 'pw' }));
  assert.deepEqual(m, { config: { stateDir: '/tmp/x', port: 6783 }, password: 'pw' });
});

test('anything else is refused with one line that says how to start the router', () => {
  for (const bad of ['{', 'null', '[]', '"x"', '{"config":{}}', '{"config":[],"password":""}', '{"config":null,"password":""}', '{"config":{},"password":1}']) {
    assert.throws(() => parseLaunchMessage(bad), (err: Error) => /^the launch message on stdin is not .*: start the router with `weave launch`$/.test(err.message) && !err.message.includes('\n'), bad);
  }
});
