/**
 * k8s/weave-daemonset.yaml validated offline against the Kubernetes OpenAPI schemas
 * (kubernetes-models), plus the weave-kube properties the issue asks for.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { DaemonSet } from 'kubernetes-models/apps/v1';
import { ServiceAccount } from 'kubernetes-models/v1';
import { ClusterRole, ClusterRoleBinding, Role, RoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1';

const file = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'k8s', 'weave-daemonset.yaml');
const models: Record<string, new (d: any) => { validate(): void }> = { DaemonSet, ServiceAccount, ClusterRole, ClusterRoleBinding, Role, RoleBinding }; // eslint-disable-line @typescript-eslint/no-explicit-any

function docs(): any[] { // eslint-disable-line @typescript-eslint/no-explicit-any
  return parseAllDocuments(fs.readFileSync(file, 'utf8')).map((d) => {
    assert.deepEqual(d.errors, [], 'YAML parses');
    return d.toJS();
  });
}

test('every object of the manifest validates against its Kubernetes schema', () => {
  const all = docs();
  assert.deepEqual(all.map((d) => d.kind).sort(), ['ClusterRole', 'ClusterRoleBinding', 'DaemonSet', 'Role', 'RoleBinding', 'ServiceAccount']);
  for (const d of all) {
    const M = models[d.kind];
    assert.ok(M, `no model for ${d.kind}`);
    assert.doesNotThrow(() => new M(d).validate(), `${d.kind} ${d.metadata?.name} is schema-valid`);
  }
  // The schema check is real: a broken DaemonSet fails it.
  const ds = all.find((d) => d.kind === 'DaemonSet');
  assert.throws(() => new DaemonSet({ ...ds, spec: { ...ds.spec, template: { ...ds.spec.template, spec: { ...ds.spec.template.spec, hostNetwork: 'yes' } } } }).validate());
});

test('the DaemonSet is weave-kube shaped: host network, capabilities, volumes, env, probe, tolerations', () => {
  const ds = docs().find((d) => d.kind === 'DaemonSet');
  const pod = ds.spec.template.spec;
  assert.equal(pod.hostNetwork, true);
  assert.equal(pod.serviceAccountName, 'weave-net');
  assert.ok(pod.tolerations.some((t: any) => t.operator === 'Exists' && t.effect === 'NoSchedule')); // eslint-disable-line @typescript-eslint/no-explicit-any
  const c = pod.containers[0];
  for (const cap of ['NET_ADMIN', 'SYS_ADMIN']) assert.ok(c.securityContext.capabilities.add.includes(cap), cap);
  const mounts = new Map(c.volumeMounts.map((m: any) => [m.name, m.mountPath])); // eslint-disable-line @typescript-eslint/no-explicit-any
  const hostPaths = new Map(pod.volumes.map((v: any) => [v.name, v.hostPath?.path])); // eslint-disable-line @typescript-eslint/no-explicit-any
  for (const p of ['/var/lib/weave', '/opt/cni/bin', '/etc/cni/net.d', '/run/xtables.lock', '/lib/modules']) {
    assert.ok([...hostPaths.values()].includes(p), `host path ${p} is a volume`);
  }
  for (const name of hostPaths.keys()) assert.ok(mounts.has(name), `volume ${name} is mounted`);
  const env = new Map(c.env.map((e: any) => [e.name, e])); // eslint-disable-line @typescript-eslint/no-explicit-any
  for (const k of ['NODE_NAME', 'WEAVE_PASSWORD', 'IPALLOC_RANGE', 'WEAVE_MTU', 'CONN_LIMIT', 'KUBE_PEERS']) assert.ok(env.has(k), `env ${k}`);
  assert.equal((env.get('WEAVE_PASSWORD') as any).valueFrom.secretKeyRef.name, 'weave-passwd'); // eslint-disable-line @typescript-eslint/no-explicit-any
  assert.equal(c.readinessProbe.httpGet.path, '/status');
  // The plugin installed on the node is the native one: no Node.js wrapper paths, no copy
  // of node and the package to the node (cni/kube-launch.ts installForNode).
  for (const k of ['HOST_NODE_PATH', 'HOST_PLUGIN_PATH', 'HOST_RUNTIME_DIR']) assert.ok(!env.has(k), `env ${k} would install the Node.js wrappers`);
  assert.equal((env.get('WEAVE_STATE_DIR') as any).value, '/var/lib/weave'); // eslint-disable-line @typescript-eslint/no-explicit-any
  assert.equal(mounts.get('weavedb'), hostPaths.get('weavedb'), 'the state dir is at the node\'s own path, so weave-net.sock-path is right on the node');
  // The entrypoint the DaemonSet runs exists in this package.
  assert.match(c.command.join(' '), /dist\/cni\/kube-launch\.js/);
  assert.ok(fs.existsSync(path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'cni', 'kube-launch.js')));
});
