/** Restart at boot (cli/service.ts): what launch records, how the unit quotes, bounds on the record. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { launchArgsToRecord, parseRecordedLaunch, renderUnit, systemdQuote, ServiceError } from '../../cli/service.js';

test('the password is never recorded, in either form; --no-detach is dropped', () => {
  const r = launchArgsToRecord(['--password', 's3cret', '--nickname', 'n1', '--password=other', '--no-detach', '10.0.0.2']);
  assert.deepEqual(r, { args: ['--nickname', 'n1', '10.0.0.2'], droppedPassword: true });
  assert.deepEqual(launchArgsToRecord(['--password-file', '/etc/weave.pw']), { args: ['--password-file', '/etc/weave.pw'], droppedPassword: false });
});

test('systemdQuote escapes quotes, backslashes, specifiers and variables; refuses control characters', () => {
  assert.equal(systemdQuote('a b'), '"a b"');
  assert.equal(systemdQuote('x"y\\z%h$HOME'), '"x\\"y\\\\z%%h$$HOME"');
  assert.throws(() => systemdQuote('a\nExecStartPre=/bin/evil'), ServiceError);
});

test('the unit relaunches in the foreground with the recorded arguments, after network-online and docker', () => {
  const u = renderUnit({ node: '/usr/bin/node', nodeFlags: ['--no-memory-reducer'], weaveJs: '/opt/tsweave/dist/cli/weave.js', launch: { args: ['--nickname', 'h1', '10.0.0.2'], stateDir: '/var/lib/weave' } });
  assert.match(u, /^ExecStart="\/usr\/bin\/node" "--no-memory-reducer" "\/opt\/tsweave\/dist\/cli\/weave\.js" "launch" "--no-detach" "--nickname" "h1" "10\.0\.0\.2"$/m);
  assert.match(u, /^ExecStop=.* "stop"$/m);
  assert.match(u, /^Restart=on-failure$/m);
  assert.match(u, /^After=network-online\.target docker\.service$/m);
  assert.match(u, /^Wants=network-online\.target$/m);
  assert.match(u, /^Environment="WEAVE_STATE_DIR=\/var\/lib\/weave"$/m);
  assert.doesNotMatch(u, /DOCKER_HOST/);
});

test('parseRecordedLaunch refuses what it cannot trust, saying what to do', () => {
  assert.deepEqual(parseRecordedLaunch('{"args":["a"],"stateDir":"/s"}', 'f'), { args: ['a'], stateDir: '/s', dockerHost: undefined });
  for (const bad of ['{', '[]', '{"args":[1],"stateDir":"/s"}', '{"args":[],"stateDir":"rel"}', JSON.stringify({ args: Array(300).fill('x'), stateDir: '/s' }), 'x'.repeat(70000)]) {
    assert.throws(() => parseRecordedLaunch(bad, 'f'), /^ServiceError: f is unusable \(.*\): run weave launch again/);
  }
});
