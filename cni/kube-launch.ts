#!/usr/bin/env node
/**
 * weave-kube's entrypoint (the DaemonSet's container command): install the CNI
 * plugin and conflist on the node, launch the router in the foreground with the
 * cluster's nodes as peers, and every PEER_REFRESH_S seconds re-read the nodes, update
 * the router's targets and reclaim the IPAM space of nodes that left (kube-peers.ts).
 *
 * Environment (as weave-kube's): NODE_NAME (downward API, required unless KUBE_PEERS),
 * KUBE_PEERS (fixed peer list: skips the API), IPALLOC_RANGE, WEAVE_MTU, CONN_LIMIT,
 * WEAVE_PASSWORD (from a Secret; passed on through the environment, never argv),
 * CNI_CONF_DIR (/host/etc/cni/net.d), CNI_BIN_DIR (/host/opt/cni/bin),
 * WEAVE_STATE_DIR (/var/lib/weave, mounted from the node at the same path), PEER_REFRESH_S
 * (60). The plugin installed is the native one (installForNode); the fallback of sh
 * wrappers running Node.js on the node needs HOST_NODE_PATH and HOST_PLUGIN_PATH (and
 * HOST_RUNTIME_DIR to copy node and this package there).
 */
import { spawn, execFile } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { installCni } from './install.js';
import { parseKubePeers, reconcile, registerSelf, type KubeApi, type KubeNode, type PeerEntry, type RouterOps } from './kube-peers.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const WEAVE = path.join(here, '..', 'cli', 'weave.js');
const NAMESPACE = 'kube-system';
const CONFIGMAP = 'weave-net';
const ANNOTATION = 'kube-peers.weave.works/peers';
const CMD_TIMEOUT_MS = 120_000;

function log(msg: string): void {
  process.stderr.write(`${new Date().toISOString()} weave-kube: ${msg.split('\n')[0]}\n`);
}

/** `weave ARGS` → stdout; rejects with weave's one-line error. */
function weave(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [WEAVE, ...args], { timeout: CMD_TIMEOUT_MS }, (err, stdout, stderr) => {
      if (err) reject(new Error(String(stderr).trim().split('\n')[0] || err.message));
      else resolve(String(stdout));
    });
  });
}

/** The real Kubernetes API (in-cluster service account). */
async function kubeApi(): Promise<KubeApi> {
  const k8s = await import('@kubernetes/client-node');
  const kc = new k8s.KubeConfig();
  kc.loadFromCluster();
  const core = kc.makeApiClient(k8s.CoreV1Api);
  const addressOf = (n: { status?: { addresses?: Array<{ type: string; address: string }> } }): string | undefined =>
    n.status?.addresses?.find((a) => a.type === 'InternalIP')?.address ?? n.status?.addresses?.find((a) => a.type === 'ExternalIP')?.address;
  const isStatus = (err: unknown, code: number): boolean => (err as { code?: number })?.code === code;
  return {
    async listNodes(): Promise<KubeNode[]> {
      const l = await core.listNode();
      return l.items.map((n) => ({ name: n.metadata?.name ?? '', address: addressOf(n) })).filter((n) => n.name);
    },
    async getPeerList() {
      try {
        const cm = await core.readNamespacedConfigMap({ name: CONFIGMAP, namespace: NAMESPACE });
        const raw = cm.metadata?.annotations?.[ANNOTATION];
        let peers: PeerEntry[] = [];
        if (raw && raw.length < 1 << 20) {
          try {
            const j = JSON.parse(raw) as { peers?: PeerEntry[] };
            peers = (j.peers ?? []).filter((e) => typeof e?.peerName === 'string' && typeof e?.nodeName === 'string');
          } catch { log(`annotation ${ANNOTATION} of ConfigMap ${CONFIGMAP} is not JSON; starting a new list`); }
        }
        return { peers, version: cm.metadata?.resourceVersion ?? '' };
      } catch (err) {
        if (isStatus(err, 404)) return { peers: [], version: '' };
        throw err;
      }
    },
    async putPeerList(peers, version) {
      const body = { metadata: { name: CONFIGMAP, namespace: NAMESPACE, annotations: { [ANNOTATION]: JSON.stringify({ peers }) }, ...(version ? { resourceVersion: version } : {}) } };
      try {
        if (version) await core.replaceNamespacedConfigMap({ name: CONFIGMAP, namespace: NAMESPACE, body });
        else await core.createNamespacedConfigMap({ namespace: NAMESPACE, body });
        return true;
      } catch (err) {
        if (isStatus(err, 409)) return false;
        throw err;
      }
    },
  };
}

/** KUBE_PEERS mode: the peer list is fixed; nothing is reclaimed. */
function fixedApi(addresses: string[]): KubeApi {
  return {
    listNodes: async () => addresses.map((a) => ({ name: a, address: a })),
    getPeerList: async () => ({ peers: [], version: 'fixed' }),
    putPeerList: async () => true,
  };
}

/**
 * Install the CNI plugin and conflist on the node (CNI_CONF_DIR, CNI_BIN_DIR: the node's
 * /etc/cni/net.d and /opt/cni/bin mounted in the pod). By default the native plugin
 * (cni/native/weave-net.c, built static: it runs on the node, outside this image, with no
 * Node.js there) as `weave-net` and `weave-ipam`, and `weave-net.sock-path` naming
 * `<stateDir>/weaver.sock`: the DaemonSet mounts the node's /var/lib/weave at the same
 * path, so that path is right on the node too. Only when both HOST_NODE_PATH and
 * HOST_PLUGIN_PATH are set (the old way, kept as a fallback) are the sh wrappers running
 * Node.js installed instead; HOST_RUNTIME_DIR then first gets this node binary and
 * package copied to it. Returns the files written.
 * @throws Error when a directory cannot be made or a file written, or the native plugin is missing
 */
export async function installForNode(env: Record<string, string | undefined>, stateDir: string): Promise<string[]> {
  const confDir = env.CNI_CONF_DIR || '/host/etc/cni/net.d';
  const binDir = env.CNI_BIN_DIR || '/host/opt/cni/bin';
  for (const d of [confDir, binDir]) await fsp.mkdir(d, { recursive: true });
  const wrappers = !!env.HOST_NODE_PATH && !!env.HOST_PLUGIN_PATH;
  if (wrappers && env.HOST_RUNTIME_DIR) {
    // The node runs the plugin through Node.js: give it this node binary and this package.
    const dst = env.HOST_RUNTIME_DIR;
    const pkg = path.join(here, '..', '..');
    await fsp.mkdir(path.join(dst, 'bin'), { recursive: true });
    await fsp.copyFile(process.execPath, path.join(dst, 'bin', '.node.tmp'));
    await fsp.chmod(path.join(dst, 'bin', '.node.tmp'), 0o755);
    await fsp.rename(path.join(dst, 'bin', '.node.tmp'), path.join(dst, 'bin', 'node'));
    for (const d of ['dist', 'node_modules', 'package.json']) await fsp.cp(path.join(pkg, d), path.join(dst, d), { recursive: true, force: true });
    log(`copied node and tsweave to ${dst}`);
  }
  const files = await installCni({ confDir, binDir, stateDir, ...(wrappers ? { nodePath: env.HOST_NODE_PATH, pluginScript: env.HOST_PLUGIN_PATH } : {}) });
  log(`installed ${files.join(', ')}${wrappers ? ' (sh wrappers running Node.js: HOST_NODE_PATH and HOST_PLUGIN_PATH are set)' : ' (native plugin)'}`);
  return files;
}

async function main(): Promise<void> {
  const env = process.env;
  const stateDir = env.WEAVE_STATE_DIR || '/var/lib/weave';
  const refreshMs = Math.max(10, Math.min(3600, Number(env.PEER_REFRESH_S) || 60)) * 1000;
  const fixed = env.KUBE_PEERS ? parseKubePeers(env.KUBE_PEERS) : undefined;
  const nodeName = env.NODE_NAME ?? '';
  if (!fixed && !nodeName) throw new Error('NODE_NAME is not set: give it from the downward API (spec.nodeName), or set KUBE_PEERS');
  await fsp.mkdir(stateDir, { recursive: true, mode: 0o700 });
  await installForNode(env, stateDir);

  const api = fixed ? fixedApi(fixed) : await kubeApi();
  const first = fixed ?? (await api.listNodes()).filter((n) => n.name !== nodeName && n.address).map((n) => n.address!);
  const args = ['launch', '--no-detach', ...(env.IPALLOC_RANGE ? ['--ipalloc-range', env.IPALLOC_RANGE] : []), ...(env.CONN_LIMIT ? ['--conn-limit', env.CONN_LIMIT] : []), ...first];
  // WEAVE_PASSWORD and WEAVE_MTU reach the router through the environment, as for `weave launch`.
  const router = spawn(process.execPath, [WEAVE, ...args], { stdio: 'inherit', env: { ...env, WEAVE_STATE_DIR: stateDir } });
  router.on('exit', (code, sig) => {
    log(`router exited (${sig ?? code}); the pod restarts`);
    process.exit(code ?? 1);
  });
  for (const s of ['SIGTERM', 'SIGINT'] as const) process.on(s, () => router.kill(s));

  const ops: RouterOps = {
    connect: async (addresses) => void (await weave(['connect', '--replace', ...addresses])),
    rmpeer: async (peer) => void (await weave(['rmpeer', peer])),
  };
  // Wait for the router's API, then record which peer runs on this node.
  let peerName = '';
  for (let i = 0; i < 120 && !peerName; i++) {
    peerName = await fsp.readFile(path.join(stateDir, 'peer-name'), 'utf8').then((s) => s.trim(), () => '');
    if (!peerName) await new Promise((r) => setTimeout(r, 1000));
  }
  if (!peerName) throw new Error(`the router wrote no peer name in ${stateDir} within 120 s: see its log above`);
  const self = { peerName, nodeName: nodeName || 'self' };
  if (!fixed) await registerSelf(api, self);
  const pass = (): void => {
    reconcile(api, ops, self, log).then((r) => {
      if (r.reclaimed.length) log(`peers now ${r.addresses.join(' ')}`);
    }, (err: Error) => log(`peer refresh failed: ${err.message}; retrying in ${refreshMs / 1000} s`));
  };
  setInterval(pass, refreshMs);
}

if (process.argv[1] && /kube-launch\.js$/.test(process.argv[1])) {
  main().catch((err: Error) => {
    log(err.message);
    process.exit(1);
  });
}
