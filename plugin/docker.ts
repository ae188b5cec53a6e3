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
