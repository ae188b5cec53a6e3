/**
 * The router side of the `weave-net` CNI plugin: a subsystem that serves the routes
 * the plugin calls over the router's unix socket (never the TCP port):
 *
 *   POST /cni/add   {containerId, netns, ifname, subnet?, name?, hairpin?, defaultRoute?}
 *                   → {cidrs, cidrs6?, mac, hostVeth, gateway?}
 *   POST /cni/del   {containerId, ifname}              → {freed}
 *   POST /cni/check {containerId, netns, ifname}       → {cidrs}
 *   GET  /cni/timings → {adds: [[step, ms], ...][]} (the last ADDs through /cni/exec)
 *   POST /cni/exec  {argv?: ["--ipam"], env: {CNI_*: string}, stdin: string}
 *                   → the plugin's stdout bytes as the body, its exit code in the
 *                     header X-Cni-Exit (the whole plugin run in the router: what the
 *                     native `weave-net` (cni/native/weave-net.c) calls, so a pod start
 *                     costs no Node.js start-up; same code as cni/weave-net.ts, run())
 *
 * ADD records the pod as an endpoint keyed by its container id — the same table
 * `weave attach` and the Docker proxy use — so IPAM allocates once per container (a
 * repeated ADD or a router restart gets the same address back), isolation filters
 * are installed before the interface comes up, and DNS hears the pod's name.
 * Weave's own plugin (weave/plugin/net/cni.go) does the same through its router.
 */
import { existsSync } from 'node:fs';
import { ApiError, RawAnswer, optionalString } from '../router/api/server.js';
import { EXPOSE_ID, type Endpoint } from '../router/host/endpoints.js';
import { hostVethName, ipIn } from '../router/host/netdev.js';
import type { Subsystem, SubsystemContext } from '../router/daemon/subsystem.js';
import { dnsSettings } from '../dns/config.js';
import { mark, timeSteps, type Steps } from '../router/host/step-timer.js';
import { CniCode, CniError, MAX_CONF_BYTES, parseEnv, parseSubnet, routerError } from './spec.js';
import { callRouter, run, type RouterCall } from './weave-net.js';

/** Longest value of one CNI_* variable accepted by POST /cni/exec (CNI_ARGS is the long one). */
export const MAX_ENV_VALUE = 16 * 1024;

/**
 * Validate a POST /cni/exec body (from a hostile caller): `argv` at most ["--ipam"],
 * `env` only CNI_* keys with string values of at most MAX_ENV_VALUE characters (at
 * most 16 of them), `stdin` a string of at most MAX_CONF_BYTES UTF-8 bytes.
 * @throws ApiError 400 naming the first bad field
 */
export function execRequest(body: unknown): { argv: string[]; env: Record<string, string>; stdin: Buffer } {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new ApiError(400, 'the body must be a JSON object {argv, env, stdin}');
  const b = body as Record<string, unknown>;
  const argv = b.argv ?? [];
  if (!Array.isArray(argv) || argv.length > 1 || argv.some((a) => a !== '--ipam')) throw new ApiError(400, '"argv" must be [] or ["--ipam"]');
  const envRaw = b.env;
  if (typeof envRaw !== 'object' || envRaw === null || Array.isArray(envRaw)) throw new ApiError(400, '"env" must be an object of CNI_* strings');
  const keys = Object.keys(envRaw);
  if (keys.length > 16) throw new ApiError(400, '"env" has more than 16 variables');
  const env: Record<string, string> = {};
  for (const k of keys) {
    const v = (envRaw as Record<string, unknown>)[k];
    if (!/^CNI_[A-Z_]{1,32}$/.test(k)) throw new ApiError(400, `"env" may hold only CNI_* variables, not ${JSON.stringify(k.slice(0, 40))}`);
    if (typeof v !== 'string' || v.length > MAX_ENV_VALUE) throw new ApiError(400, `"env.${k}" must be a string of at most ${MAX_ENV_VALUE} characters`);
    env[k] = v;
  }
  if (typeof b.stdin !== 'string') throw new ApiError(400, '"stdin" must be a string (the network configuration)');
  if (b.stdin.length > MAX_CONF_BYTES * 2) throw new ApiError(400, `"stdin" is over ${MAX_CONF_BYTES} bytes`);
  const stdin = Buffer.from(b.stdin, 'utf8');
  // Over the limit goes to run() as it is: parseConf answers with the plugin's own error.
  return { argv: argv as string[], env, stdin: stdin.length > MAX_CONF_BYTES ? stdin.subarray(0, MAX_CONF_BYTES + 1) : stdin };
}

/**
 * POST /cni/exec's work: validate the (hostile) body, run the plugin with `call` as its
 * way to the router, and make the answer: the plugin's stdout as the body, its exit
 * code (0 or 1) in X-Cni-Exit. `steps` are the step timings of the run (router/host/
 * step-timer.ts), `stderr` the plugin's notes for the router's log.
 * @throws ApiError 400 when the body is refused (execRequest); nothing else (run never throws)
 */
export async function execCni(body: unknown, stateDir: string, call?: RouterCall): Promise<{ answer: RawAnswer; steps: Steps; stderr: string }> {
  const { value: r, steps } = await timeSteps(async () => {
    const req = execRequest(body);
    mark('request');
    return run(req.argv, req.env, req.stdin, { stateDir, ...(call ? { call } : {}) });
  });
  return { answer: new RawAnswer(Buffer.from(r.stdout, 'utf8'), { 'x-cni-exit': String(r.code) }, 'application/json'), steps, stderr: r.stderr };
}

/** Validate a request body's pod identity with the plugin's own rules (the caller is hostile). */
function identity(body: unknown, command: 'ADD' | 'DEL' | 'CHECK'): { containerId: string; netns: string; ifname: string } {
  try {
    const env = parseEnv({
      CNI_COMMAND: command,
      CNI_CONTAINERID: optionalString(body, 'containerId'),
      CNI_NETNS: optionalString(body, 'netns') ?? '',
      CNI_IFNAME: optionalString(body, 'ifname'),
    });
    return { containerId: env.containerId, netns: env.netns, ifname: env.ifname };
  } catch (err) {
    if (err instanceof CniError) throw new ApiError(400, err.message.replace(/CNI_CONTAINERID/, '"containerId"').replace(/CNI_NETNS/, '"netns"').replace(/CNI_IFNAME/, '"ifname"'));
    throw err;
  }
}

function optionalBool(body: unknown, field: string): boolean | undefined {
  const v = (body as Record<string, unknown> | undefined)?.[field];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'boolean') throw new ApiError(400, `"${field}" must be true or false`);
  return v;
}

const toNum = (a: string): number => a.split('.').reduce((n, o) => n * 256 + Number(o), 0);

/** The host's `weave expose` address inside the subnet of `cidr`, if the host is exposed there. */
export function gatewayFor(cidr: string, expose: Endpoint | undefined): string | undefined {
  const [a, len] = cidr.split('/');
  const size = 2 ** (32 - Number(len));
  for (const c of expose?.cidrs ?? []) {
    const [g, glen] = c.split('/');
    if (glen === len && Math.floor(toNum(g) / size) === Math.floor(toNum(a) / size)) return g;
  }
  return undefined;
}

/** How many ADDs' step timings GET /cni/timings keeps. */
export const MAX_TIMINGS = 1000;

/** How often the router looks for pods whose network namespace is gone (see reclaimGone). */
export const RECLAIM_INTERVAL_MS = 60_000;

/**
 * The CNI endpoints (those with an `ifname`: only /cni/add records one) whose network
 * namespace file no longer exists. Pure apart from the `exists` it is given.
 */
export function goneEndpoints(list: Endpoint[], exists: (p: string) => boolean): Endpoint[] {
  return list.filter((e) => e.ifname !== undefined && e.id !== EXPOSE_ID && !!e.netns && !exists(e.netns));
}

/** The CNI subsystem (no report section; its pods appear in `weave ps` as endpoints). */
export function cniSubsystem(): Subsystem {
  let timer: NodeJS.Timeout | undefined;
  const timings: Steps[] = [];
  return {
    name: 'cni',
    async start(ctx: SubsystemContext) {
      const { api, endpoints, log } = ctx;
      const sync = async (): Promise<void> => endpoints.onChange?.();

      /*
       * Reclaiming pods whose DEL never reached us. A DEL that finds no router running
       * answers success (cni/weave-net.ts; the runtime then deletes the pod's network
       * namespace, and with it the veth), so the router makes good on it: at start, and
       * every RECLAIM_INTERVAL_MS after, a CNI pod whose namespace file is gone is released
       * as its DEL would have done (address freed, table entry and DNS names dropped).
       * A live pod's namespace file exists for as long as the pod (the runtime keeps it
       * mounted), so this never takes an address from a running pod. It does not see a
       * `/proc/PID/ns/net` path whose PID was reused; runtimes pass /run/netns paths.
       */
      const reclaimGone = async (when: string): Promise<void> => {
        const gone = goneEndpoints(endpoints.list(), existsSync);
        for (const e of gone) {
          await endpoints.release(e.id);
          ctx.announce('endpointDetached', { endpoint: { id: e.id, cidrs: e.cidrs, mac: '' } });
          log(`cni: pod ${e.id.slice(0, 12)}: its network namespace ${e.netns} is gone (${when}), so its DEL was missed: freed ${e.cidrs.join(' ') || 'nothing'}`);
        }
        if (gone.length) await sync();
      };
      await reclaimGone('found at start');

      // weaveDNS for the ADD result, when it runs where pods reach it (its on-link address,
      // routed in every pod) on port 53 (resolv.conf cannot name another port).
      const dnsForPods = (): { nameservers: string[]; search: string[] } | undefined => {
        if (!ctx.get('dns')) return undefined;
        try {
          const s = dnsSettings(ctx.cfg);
          return s.enabled && s.onBridge && s.port === 53 ? { nameservers: [s.address], search: [s.domain.replace(/\.$/, '')] } : undefined;
        } catch {
          return undefined;
        }
      };
      timer = setInterval(() => void reclaimGone('found by the periodic check').catch((err: Error) => log(`cni: reclaiming pods: ${err.message}`, 'warn')), RECLAIM_INTERVAL_MS);
      timer.unref();

      const add = async (body: unknown): Promise<unknown> => {
        const { containerId, netns, ifname } = identity(body, 'ADD');
        const subnetRaw = optionalString(body, 'subnet');
        let subnet: string | undefined;
        try {
          subnet = subnetRaw === undefined ? undefined : parseSubnet(subnetRaw, 'subnet');
        } catch (err) {
          throw new ApiError(400, (err as Error).message);
        }
        const name = optionalString(body, 'name');
        if (name !== undefined && !/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(name)) throw new ApiError(400, '"name" must be a DNS label (a-z, 0-9, -)');
        const hairpin = optionalBool(body, 'hairpin') ?? false;
        const defaultRoute = optionalBool(body, 'defaultRoute') ?? true;
        if (!existsSync(netns)) throw new ApiError(404, `network namespace ${netns} does not exist`);
        const prev = endpoints.list().find((e) => e.id === containerId);
        if (prev && prev.ifname !== undefined && prev.ifname !== ifname) throw new ApiError(409, `container ${containerId} already has ${prev.ifname} on weave; one interface per container`);
        if (prev && prev.netns !== netns) throw new ApiError(409, `container ${containerId} is attached in another network namespace (${prev.netns}); DEL it first`);
        // Hairpin and the default route go in with the interface (netdev.attachVeth), in the
        // same execs; the gateway is the host's exposed address in the pod's subnet, if any.
        const gatewayOf = (cidrs: string[]): string | undefined => defaultRoute && cidrs.length ? gatewayFor(cidrs[0], endpoints.list().find((x) => x.id === EXPOSE_ID)) : undefined;
        mark('checks');
        const e = await endpoints.attachNetns(containerId, netns, subnet ? [`net:${subnet}`] : [], { name, ifname, hairpin, gateway: gatewayOf });
        const hostVeth = hostVethName(containerId);
        const gateway = gatewayOf(e.cidrs);
        // routesInstalled: attachVeth put endpoints.containerRoutes (weaveDNS's) on the interface.
        ctx.announce('endpointAttached', { endpoint: e, name: e.name, routesInstalled: true });
        const dns = dnsForPods();
        // [IPv6] with --ipalloc-range6 the pod also has the derived IPv6 addresses (ipam/ipv6.ts).
        const cidrs6 = endpoints.cidrs6(e.cidrs);
        mark('announce (DNS)');
        return { cidrs: e.cidrs, ...(cidrs6.length ? { cidrs6 } : {}), mac: e.mac, hostVeth, ...(gateway ? { gateway } : {}), ...(dns ? { dns } : {}) };
      };
      api.on('POST', '/cni/add', ({ body }) => add(body));

      const del = async (body: unknown): Promise<unknown> => {
        const { containerId, ifname } = identity(body, 'DEL');
        const e = endpoints.list().find((x) => x.id === containerId);
        // DEL of an interface this container does not have on weave: nothing to do.
        if (e?.ifname !== undefined && e.ifname !== ifname) return { freed: [] };
        const cidrs = e?.cidrs ?? [];
        await endpoints.release(containerId);
        await sync();
        ctx.announce('endpointDetached', { endpoint: { id: containerId, cidrs, mac: '' } });
        return { freed: cidrs };
      };
      api.on('POST', '/cni/del', ({ body }) => del(body));

      const check = async (body: unknown): Promise<unknown> => {
        const { containerId, netns, ifname } = identity(body, 'CHECK');
        const e = endpoints.list().find((x) => x.id === containerId);
        if (!e || (e.ifname ?? 'ethwe') !== ifname) throw new ApiError(404, `container ${containerId} has no ${ifname} on weave`);
        if (e.netns !== netns) throw new ApiError(409, `container ${containerId} is attached in ${e.netns}, not ${netns}`);
        const out = await ipIn(netns, '-o', '-4', 'addr', 'show', 'dev', ifname).catch(() => {
          throw new ApiError(409, `${ifname} is missing in ${netns}`);
        });
        const have = [...out.matchAll(/inet (\S+)/g)].map((m) => m[1]);
        const missing = e.cidrs.filter((c) => !have.includes(c));
        if (missing.length) throw new ApiError(409, `${ifname} in ${netns} lacks ${missing.join(', ')}`);
        return { cidrs: e.cidrs };
      };
      api.on('POST', '/cni/check', ({ body }) => check(body));

      // run()'s calls to the three routes above, made in-process (no second HTTP request
      // over our own socket); errors become what callRouter would have made of the answer.
      // Other routes (weave-ipam's /ip, STATUS's /status) go over the socket as usual.
      const local: Record<string, (body: unknown) => Promise<unknown>> = { '/cni/add': add, '/cni/del': del, '/cni/check': check };
      const call: RouterCall = async (socket, method, urlPath, body) => {
        const route = method === 'POST' ? local[urlPath] : undefined;
        if (!route) return callRouter(socket, method, urlPath, body);
        try {
          return await route(body);
        } catch (err) {
          const status = err instanceof ApiError ? err.status : 400;
          const msg = (err as Error).message.split('\n')[0];
          throw status === 404 && urlPath === '/cni/check' ? new CniError(CniCode.UnknownContainer, msg) : routerError(status, msg);
        }
      };

      // The whole plugin, for the native weave-net, once the conf's stateDir is checked to
      // be this router's. ADDs are timed step by step (GET /cni/timings).
      api.on('POST', '/cni/exec', async ({ body }) => {
        const { answer, steps, stderr } = await execCni(body, ctx.stateDir, call);
        if (steps.some(([name]) => name === 'ipam')) {
          timings.push(steps);
          if (timings.length > MAX_TIMINGS) timings.shift();
        }
        if (stderr) log(`cni: ${stderr.trim().slice(0, 300)}`);
        return answer;
      });

      // The step timings of the last MAX_TIMINGS ADDs through /cni/exec (npm run bench:cni),
      // oldest first: [[step, ms], ...] per ADD. Unix socket only, like every /cni route.
      api.on('GET', '/cni/timings', async () => ({ adds: timings }));
    },
    async close() {
      if (timer) clearInterval(timer);
    },
  };
}
