/**
 * One bounded JSON request to the Docker Engine API (unix:///PATH or tcp://HOST:PORT),
 * shared by the endpoint table (container inspect) and the Docker network plugin.
 * The answer is bounded (4 MiB) before it is parsed; every call has a timeout and
 * rejects with a one-line Error.
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
