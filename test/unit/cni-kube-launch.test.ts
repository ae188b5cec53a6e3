/**
 * kube-launch's install step (what the DaemonSet puts on the node): the native plugin by
 * default, the Node.js sh wrappers only when asked for by HOST_NODE_PATH + HOST_PLUGIN_PATH.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { installForNode } from '../../cni/kube-launch.js';

const native = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'cni', 'native', 'weave-net');

function tmp(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'tsweave-kube-launch-'));
}

test('installForNode installs the native plugin (not a Node.js wrapper) and the socket path the node sees', async () => {
  const dir = tmp();
  try {
    const env = { CNI_CONF_DIR: path.join(dir, 'net.d'), CNI_BIN_DIR: path.join(dir, 'bin') };
    const files = await installForNode(env, '/var/lib/weave');
    const bin = fs.readFileSync(native);
    for (const name of ['weave-net', 'weave-ipam']) {
      const f = path.join(dir, 'bin', name);
      assert.ok(files.includes(f), `${name} reported`);
      const got = fs.readFileSync(f);
      assert.equal(got.subarray(0, 4).toString('latin1'), '\x7fELF', `${name} is an executable, not a script`);
      assert.ok(got.equals(bin), `${name} is the built native plugin`);
      assert.equal(fs.statSync(f).mode & 0o777, 0o755);
    }
    assert.equal(fs.readFileSync(path.join(dir, 'bin', 'weave-net.sock-path'), 'utf8'), '/var/lib/weave/weaver.sock\n');
    const conf = JSON.parse(fs.readFileSync(path.join(dir, 'net.d', '10-weave.conflist'), 'utf8'));
    assert.equal(conf.plugins[0].type, 'weave-net');
    assert.equal(conf.plugins[0].stateDir, '/var/lib/weave');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('installForNode falls back to sh wrappers only with both HOST_NODE_PATH and HOST_PLUGIN_PATH', async () => {
  const dir = tmp();
  try {
    const base = { CNI_CONF_DIR: path.join(dir, 'net.d'), CNI_BIN_DIR: path.join(dir, 'bin') };
    // One of the two alone: still the native plugin.
    await installForNode({ ...base, HOST_NODE_PATH: '/opt/tsweave/bin/node' }, '/var/lib/weave');
    assert.ok(fs.readFileSync(path.join(dir, 'bin', 'weave-net')).equals(fs.readFileSync(native)));
    await installForNode({ ...base, HOST_NODE_PATH: '/opt/tsweave/bin/node', HOST_PLUGIN_PATH: '/opt/tsweave/dist/cni/weave-net.js' }, '/var/lib/weave');
    const w = fs.readFileSync(path.join(dir, 'bin', 'weave-net'), 'utf8');
    assert.match(w, /^#!\/bin\/sh\n/);
    assert.match(w, /exec '\/opt\/tsweave\/bin\/node' '\/opt\/tsweave\/dist\/cni\/weave-net\.js' "\$@"/);
    assert.match(fs.readFileSync(path.join(dir, 'bin', 'weave-ipam'), 'utf8'), /'--ipam' "\$@"/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
