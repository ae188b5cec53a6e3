/**
 * The few Docker Engine API calls the plugin makes itself (API v1.41, dockerd 20.10):
 * GET /networks/NAME (does the network exist; which container holds an endpoint) and
 * POST /networks/create. Every call has a timeout and rejects with a one-line Error.
 */
import http from 'node:http';

const MAX_ANSWER_BYTES = 4 << 20;

/** One JSON request to dockerd at `dockerHost` (unix:///PATH or tcp://HOST:PORT). */
export function dockerJson(dockerHost: string, method: string, path: string, body: unknown, timeoutMs: number): Promise<{ status: number; json: unknown }> {
  return new Promise((resolve, reject) => {
    const opts: http.RequestOptions = { method, path, timeout: timeoutMs, headers: { 'Content-Type': 'application/json' } };
    if (dockerHost.startsWith('unix://')) opts.socketPath = dockerHost.slice(7);
    else {
      const u = new URL(dockerHost.replace(/^tcp:/, 'http:'));
      opts.host = u.hostname;
      opts.port = u.port;
    }
    const req = http.request(opts, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > MAX_ANSWER_BYTES) req.destroy(new Error(`answer larger than ${MAX_ANSWER_BYTES} bytes`));
        else chunks.push(c);
      });
      res.on('end', () => {
        let json: unknown;
        try {
          json = JSON.parse(Buffer.concat(chunks).toString('utf8') || 'null');
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode ?? 0, json });
      });
      res.on('error', (err) => reject(new Error(`Docker daemon at ${dockerHost}: ${err.message}`)));
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs / 1000} s`)));
    req.on('error', (err) => reject(new Error(`cannot reach the Docker daemon at ${dockerHost} (${err.message})`)));
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

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
