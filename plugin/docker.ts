/**
 * The few Docker Engine API calls the plugin makes itself (API v1.41, dockerd 20.10):
 * GET /networks/NAME (does the network exist; which container holds an endpoint) and
 * POST /networks/create. Every call has a timeout and rejects with a one-line Error.
 */

export { dockerJson } from '../router/host/docker-api.js';
import { dockerJson } from '../router/host/docker-api.js';

/** Docker's message from an error answer ({"message": …}), one line. */
export function dockerMessage(json: unknown): string {
  const m = (json as { message?: unknown } | null)?.message;
  return typeof m === 'string' ? m.replace(/\s+/g, ' ').slice(0, 300) : 'no message';
}

/**
 * The name of the container holding `endpointId` on network `networkId`, from
 * GET /networks/ID (its `Containers` map); undefined while Docker has not recorded it.
 */
export async function containerNameOfEndpoint(dockerHost: string, networkId: string, endpointId: string): Promise<string | undefined> {
  const r = await dockerJson(dockerHost, 'GET', `/networks/${encodeURIComponent(networkId)}`, undefined, 5000);
  if (r.status !== 200) return undefined;
  const containers = (r.json as { Containers?: Record<string, { Name?: unknown; EndpointID?: unknown }> } | null)?.Containers ?? {};
  for (const c of Object.values(containers)) {
    if (c && c.EndpointID === endpointId && typeof c.Name === 'string') return c.Name;
  }
  return undefined;
}

/**
 * The process id of the running container holding `endpointId` on `networkId`
 * (GET /networks/ID, then GET /containers/ID/json's State.Pid); undefined while Docker
 * has not recorded the endpoint or the container has no process yet. Its network
 * namespace is /proc/PID/ns/net, reachable from any mount namespace (Join's
 * SandboxKey is a bind mount that a router in another mount namespace may not see).
 */
export async function containerPidOfEndpoint(dockerHost: string, networkId: string, endpointId: string): Promise<number | undefined> {
  const r = await dockerJson(dockerHost, 'GET', `/networks/${encodeURIComponent(networkId)}`, undefined, 5000);
  if (r.status !== 200) return undefined;
  const containers = (r.json as { Containers?: Record<string, { EndpointID?: unknown }> } | null)?.Containers ?? {};
  const id = Object.entries(containers).find(([, c]) => c && c.EndpointID === endpointId)?.[0];
  if (!id || !/^[0-9a-f]{12,64}$/.test(id)) return undefined;
  const c = await dockerJson(dockerHost, 'GET', `/containers/${id}/json`, undefined, 5000);
  const pid = (c.json as { State?: { Pid?: unknown } } | null)?.State?.Pid;
  return c.status === 200 && typeof pid === 'number' && Number.isSafeInteger(pid) && pid > 1 ? pid : undefined;
}
