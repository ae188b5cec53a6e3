#!/usr/bin/env node
/**
 * The `weave-net` CNI plugin (and, with --ipam, the `weave-ipam` IPAM plugin): what a
 * container runtime (podman, containerd, CRI-O under the kubelet) executes for every
 * pod, with the network configuration on stdin and CNI_* in the environment (CNI
 * SPEC.md). It only talks to the local tsweave router over its unix socket
 * (`<stateDir>/weaver.sock`, root-only); the router does the work (cni/router-side.ts).
 *
 * Prints a result (ADD), nothing (DEL, CHECK, GC), the supported versions (VERSION),
 * or a CNI error object on stdout and exits 1. Never prints a stack trace.
 */
import http from 'node:http';
import path from 'node:path';
import {
  CniCode, CniError, buildIpamResult, buildResult, chooseSubnet, errorJson, parseConf, parseEnv, podName, routerError, versionResult,
  MAX_CONF_BYTES, type AddReply, type CniEnv, type NetConf,
} from './spec.js';
import { mark } from '../router/host/step-timer.js';

/** Each router call waits at most this long (an ADD may wait for IPAM consensus). */
const CALL_TIMEOUT_MS = 90_000;
const STDIN_TIMEOUT_MS = 10_000;

/** Read stdin, at most MAX_CONF_BYTES + 1 bytes, within STDIN_TIMEOUT_MS. */
function readStdin(): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let n = 0;
    const t = setTimeout(() => reject(new CniError(CniCode.IoFailure, `no network configuration on stdin within ${STDIN_TIMEOUT_MS / 1000} s`)), STDIN_TIMEOUT_MS);
    process.stdin.on('data', (c: Buffer) => {
      n += c.length;
      if (n > MAX_CONF_BYTES) {
        clearTimeout(t);
        process.stdin.destroy();
        resolve(Buffer.concat([...chunks, c]));
        return;
      }
      chunks.push(c);
    });
    process.stdin.on('end', () => {
      clearTimeout(t);
      resolve(Buffer.concat(chunks));
    });
    process.stdin.on('error', (err) => {
      clearTimeout(t);
      reject(new CniError(CniCode.IoFailure, `cannot read stdin: ${err.message}`));
    });
  });
}

export const NOT_RUNNING = 'tsweave router is not running on this node';

/**
 * One call to the router's API over its unix socket.
 * @returns parsed JSON, or the text of a text answer
 * @throws CniError: TryAgainLater "tsweave router is not running on this node" when
 *   nothing listens; else routerError(status, message)
 */
export function callRouter(socket: string, method: string, urlPath: string, body?: unknown): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const req = http.request({
      socketPath: socket, path: urlPath, method, timeout: CALL_TIMEOUT_MS,
      headers: data ? { 'content-type': 'application/json', 'content-length': data.length } : {},
    }, (res) => {
      const chunks: Buffer[] = [];
      let n = 0;
      res.on('data', (c: Buffer) => {
        n += c.length;
        if (n > 1 << 20) req.destroy(new CniError(CniCode.RouterFailure, 'tsweave router sent more than 1 MiB'));
        else chunks.push(c);
      });
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let j: unknown = text;
        try {
          j = text ? JSON.parse(text) : {};
        } catch { /* a text answer (IPAM routes) */ }
        const status = res.statusCode ?? 500;
        if (status >= 400) {
          const msg = typeof (j as { error?: unknown })?.error === 'string' ? (j as { error: string }).error : `answered ${status}`;
          return reject(status === 404 && urlPath.startsWith('/cni/check') ? new CniError(CniCode.UnknownContainer, msg) : routerError(status, msg));
        }
        resolve(j);
      });
    });
    req.on('timeout', () => req.destroy(new CniError(CniCode.TryAgainLater, `tsweave router did not answer ${method} ${urlPath} within ${CALL_TIMEOUT_MS / 1000} s (see its log)`)));
    req.on('error', (err: NodeJS.ErrnoException) => {
      if (err instanceof CniError) return reject(err);
      if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED') return reject(new CniError(CniCode.TryAgainLater, NOT_RUNNING, `no router listens on ${socket}: start it (weave launch) or check stateDir in the CNI conf`));
      reject(new CniError(CniCode.IoFailure, `cannot talk to the tsweave router: ${err.message}`));
    });
    if (data) req.write(data);
    req.end();
  });
}

/** How run() reaches the router: callRouter, or (inside the router) its routes in-process. */
export type RouterCall = (socket: string, method: string, urlPath: string, body?: unknown) => Promise<unknown>;

/** The state directory of a conf without `stateDir` ($WEAVE_STATE_DIR, else the router's default). */
const defaultStateDir = (): string => process.env.WEAVE_STATE_DIR || '/var/lib/weave';

function socketFor(conf: NetConf): string {
  return path.join(conf.stateDir ?? defaultStateDir(), 'weaver.sock');
}

async function netPlugin(conf: NetConf, env: CniEnv, stderr: (line: string) => void, callRouter: RouterCall): Promise<unknown> {
  const sock = socketFor(conf);
  const id = { containerId: env.containerId, netns: env.netns, ifname: env.ifname };
  switch (env.command) {
    case 'ADD': {
      const subnet = chooseSubnet(conf, env);
      const name = podName(env.args);
      const r = await callRouter(sock, 'POST', '/cni/add', { ...id, ...(subnet ? { subnet } : {}), ...(name ? { name } : {}), hairpin: conf.hairpinMode, defaultRoute: conf.defaultRoute }) as AddReply;
      if (!r || !Array.isArray(r.cidrs) || typeof r.mac !== 'string' || typeof r.hostVeth !== 'string') throw new CniError(CniCode.RouterFailure, 'tsweave router sent a malformed /cni/add answer');
      const result = buildResult(conf, env, r);
      mark('result');
      return result;
    }
    case 'DEL':
      try {
        await callRouter(sock, 'POST', '/cni/del', { containerId: env.containerId, ifname: env.ifname });
      } catch (err) {
        // No router running: success, so the runtime goes on and deletes the pod's network
        // namespace (the veth dies with it). The address is not leaked: the router, when it
        // runs again, releases every CNI pod whose namespace is gone (cni/router-side.ts,
        // reclaimGone). An error here would only make the runtime retry until it starts.
        if (err instanceof CniError && err.message === NOT_RUNNING) {
          stderr(`weave-net: DEL ${env.containerId.slice(0, 64)}: ${NOT_RUNNING}; its address is freed when the router starts and finds the pod's network namespace gone\n`);
          return undefined;
        }
        throw err;
      }
      return undefined;
    case 'CHECK':
      await callRouter(sock, 'POST', '/cni/check', id);
      return undefined;
    default:
      return undefined;
  }
}

async function ipamPlugin(conf: NetConf, env: CniEnv, callRouter: RouterCall): Promise<unknown> {
  const sock = socketFor(conf);
  const owner = encodeURIComponent(env.containerId);
  switch (env.command) {
    case 'ADD': {
      const subnet = chooseSubnet(conf, env);
      const r = await callRouter(sock, 'POST', subnet ? `/ip/${owner}/${subnet}` : `/ip/${owner}`);
      if (typeof r !== 'string' || !/^\d+\.\d+\.\d+\.\d+\/\d+$/.test(r.trim())) throw new CniError(CniCode.RouterFailure, 'tsweave router sent a malformed IPAM answer');
      return buildIpamResult(conf, [r.trim()]);
    }
    case 'DEL':
      // No router running is an error here (TryAgainLater, so the runtime retries): an
      // address given to a container id alone is in no endpoint table, and nothing else
      // would ever free it.
      await callRouter(sock, 'DELETE', `/ip/${owner}`);
      return undefined;
    case 'CHECK':
      await callRouter(sock, 'GET', `/ip/${owner}`);
      return undefined;
    default:
      return undefined;
  }
}

/** STATUS (1.1): the router answers and its IPAM (if any) is ready. */
async function status(conf: NetConf, callRouter: RouterCall): Promise<void> {
  let r: { IPAM?: { Status?: string } };
  try {
    r = await callRouter(socketFor(conf), 'GET', '/status') as { IPAM?: { Status?: string } };
  } catch (err) {
    throw new CniError(CniCode.PluginNotAvailable, (err as Error).message);
  }
  if (r?.IPAM && r.IPAM.Status !== 'ready') throw new CniError(CniCode.PluginNotAvailable, `tsweave IPAM is not ready: ${String(r.IPAM.Status).slice(0, 200)}`);
}

/** What one plugin run produced: the exit code and the exact stdout/stderr text. */
export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Run one CNI command (the whole plugin, minus the process): shared by the Node.js
 * script below (the fallback) and the router's `POST /cni/exec` route, which the
 * native plugin (cni/native/weave-net.c) calls with the runtime's argv, CNI_* env and
 * stdin (cni/router-side.ts).
 * @param argv plugin arguments (`--ipam` selects the IPAM plugin)
 * @param env the CNI_* environment (CNI SPEC.md "Parameters")
 * @param stdin the network configuration bytes (at most MAX_CONF_BYTES are accepted)
 * @param opts.stateDir when given, the conf's `stateDir` must name this directory
 *   (the router checks that a conf addressed to it really is for it)
 * @param opts.call how to reach the router (default callRouter over the conf's socket;
 *   the router passes its own routes, called in-process)
 * @returns exit code 0 with the result (or nothing) on stdout, or 1 with CNI error
 *   JSON on stdout; never throws
 */
export async function run(argv: string[], env: Record<string, string | undefined>, stdin: Buffer | (() => Promise<Buffer>), opts: { stateDir?: string; call?: RouterCall } = {}): Promise<RunResult> {
  const call = opts.call ?? callRouter;
  let cniVersion = '1.0.0';
  const res: RunResult = { code: 0, stdout: '', stderr: '' };
  try {
    const e = parseEnv(env);
    if (e.command === 'VERSION') {
      res.stdout = JSON.stringify(versionResult()) + '\n';
      return res;
    }
    const conf = parseConf(typeof stdin === 'function' ? await stdin() : stdin);
    cniVersion = conf.cniVersion;
    if (opts.stateDir !== undefined && path.resolve(conf.stateDir ?? defaultStateDir()) !== path.resolve(opts.stateDir)) {
      throw new CniError(CniCode.InvalidConfig, `the conf's stateDir ${JSON.stringify((conf.stateDir ?? defaultStateDir()).slice(0, 200))} is not this router's (${opts.stateDir}): fix the conflist or weave-net.sock-path next to the plugin`);
    }
    mark('decode');
    let out: unknown;
    if (e.command === 'STATUS') await status(conf, call);
    else if (e.command === 'GC') out = undefined; // Endpoints die with their netns' DEL; nothing cached here.
    else out = argv.includes('--ipam') ? await ipamPlugin(conf, e, call) : await netPlugin(conf, e, (l) => { res.stderr += l; }, call);
    if (out !== undefined) res.stdout = JSON.stringify(out) + '\n';
    mark('encode');
    return res;
  } catch (err) {
    return { code: 1, stdout: JSON.stringify(errorJson(err, cniVersion)) + '\n', stderr: res.stderr };
  }
}

/** Run one CNI command as this process (stdin, stdout, stderr); returns the exit code. */
export async function main(argv: string[], env: Record<string, string | undefined>): Promise<number> {
  const r = await run(argv, env, readStdin);
  if (r.stderr) process.stderr.write(r.stderr);
  if (r.stdout) process.stdout.write(r.stdout);
  return r.code;
}

if (process.argv[1] && /weave-net\.js$/.test(process.argv[1])) {
  main(process.argv.slice(2), process.env).then((code) => process.exit(code), (err: Error) => {
    process.stdout.write(JSON.stringify(errorJson(err)) + '\n');
    process.exit(1);
  });
}
