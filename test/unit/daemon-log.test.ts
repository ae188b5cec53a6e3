/**
 * The daemon's log (router/daemon/log.ts): pino writing one JSON object per line
 * with the shape weaver.log always had, level filtering, Weave's "warning" alias.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { makeLogger, parseLogLevel } from '../../router/daemon/log.js';

function sink(): { stream: Writable; lines: () => Array<Record<string, unknown>> } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(c: Buffer, _e, cb) {
      chunks.push(c.toString('utf8'));
      cb();
    },
  });
  return { stream, lines: () => chunks.join('').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>) };
}

test('each line is {level, time, msg} with a label level and an ISO time, nothing else', () => {
  const s = sink();
  const log = makeLogger('info', s.stream);
  log('router started');
  log('slow', 'warn');
  const [a, b] = s.lines();
  assert.deepEqual(Object.keys(a).sort(), ['level', 'msg', 'time']);
  assert.equal(a.level, 'info');
  assert.equal(a.msg, 'router started');
  assert.match(String(a.time), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  assert.equal(b.level, 'warn');
});

test('levels below the chosen one are dropped; "warning" is warn', () => {
  const s = sink();
  const log = makeLogger('warning', s.stream);
  log('d', 'debug');
  log('i');
  log('w', 'warning');
  log('e', 'error');
  assert.deepEqual(s.lines().map((l) => [l.level, l.msg]), [['warn', 'w'], ['error', 'e']]);
});

test('a message with quotes, newlines and control characters stays one JSON line', () => {
  const s = sink();
  makeLogger('debug', s.stream)('peer "x"\nforged line\x1b[2J');
  const l = s.lines();
  assert.equal(l.length, 1);
  assert.equal(l[0].msg, 'peer "x"\nforged line\x1b[2J');
});

test('parseLogLevel accepts Weave\'s levels and names the choices otherwise', () => {
  assert.equal(parseLogLevel('debug'), 'debug');
  assert.equal(parseLogLevel('warning'), 'warn');
  assert.throws(() => parseLogLevel('verbose'), /invalid log level "verbose": want debug, info, warn or error/);
});
