/**
 * A private Docker daemon for end-to-end tests: its own data root, exec root,
 * pid file and socket under a fresh temp directory, no iptables and no bridge
 * (so it never touches the machine's firewall or interfaces), optionally
 * inside a named network namespace. `nsenter --net=` is used rather than
 * `ip netns exec`, which remounts /sys and makes dockerd fail.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';

/** A running private dockerd. */
export interface Dockerd {
  /** The temp directory holding everything of this daemon. */
  dir: string;
  /** The socket path and its `unix://` form. */
  socket: string;
  host: string;
  /** The network namespace it runs in (a name under /var/run/netns), or null for the caller's. */
  netns: string | null;
  /** Stop the daemon (SIGTERM, then SIGKILL) but keep its state, e.g. to test a daemon restart. */
  stop(): Promise<void>;
  /** Start it again on the same state and socket. */
  start(): Promise<void>;
  /** Stop it, kill anything left that it started, unmount and delete its directory. */
  destroy(): Promise<void>;
  /** The last lines of its log, for failure messages. */
  logTail(lines?: number): string;
}

/** Whether this machine can run the dockerd tests (root, dockerd, containerd, runc, docker CLI). */
export function dockerdAvailable(): string | null {
  if (process.getuid?.() !== 0) return 'not root';
  for (const bin of ['dockerd', 'containerd', 'runc', 'docker', 'nsenter']) {
    try {
      execFileSync('sh', ['-c', `command -v ${bin}`], { stdio: 'ignore' });
    } catch {
      return `${bin} not installed`;
    }
  }
  return null;
}

function ping(socket: string, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.request({ socketPath: socket, path: '/_ping', method: 'GET', timeout: timeoutMs }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => {
      req.destroy();
      resolve(false);
    });
    req.end();
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Pids of processes whose command line mentions `needle` (our daemon's containerd and shims). */
function pidsMentioning(needle: string): number[] {
  const out: number[] = [];
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e) || Number(e) === process.pid) continue;
    try {
      const cmd = fs.readFileSync(`/proc/${e}/cmdline`, 'utf8');
      if (cmd.includes(needle)) out.push(Number(e));
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

/** Mount points under `dir`, deepest first. */
function mountsUnder(dir: string): string[] {
  const text = fs.readFileSync('/proc/self/mountinfo', 'utf8');
  const pts = text
    .split('\n')
    .map((l) => l.split(' ')[4])
    .filter((p): p is string => typeof p === 'string' && (p === dir || p.startsWith(`${dir}/`)));
  return [...new Set(pts)].sort((a, b) => b.length - a.length);
}

/**
 * Start a private dockerd.
 * @param name a short tag for the temp dir (prefixed `tsw-px-`).
 * @param netns run inside this named network namespace (it must exist).
 * @param pluginDir give this daemon a private /run/docker/plugins: it runs in its own mount
 *   namespace (`unshare --mount --propagation private`) where this directory is bind-mounted
 *   there, so several test daemons each find their own host's plugin sockets. The mount
 *   namespace, and the mount, go away with the daemon and its children.
 * @throws Error when the socket does not answer `/_ping` within `timeoutMs`, with the log's tail.
 */
export async function startDockerd(opts: { name: string; netns?: string; timeoutMs?: number; pluginDir?: string }): Promise<Dockerd> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `tsw-px-${opts.name}-`));
  const socket = path.join(dir, 'docker.sock');
  const logFile = path.join(dir, 'dockerd.log');
  const timeoutMs = opts.timeoutMs ?? 30_000;
  let child: ChildProcess | null = null;
  let exited: Promise<void> = Promise.resolve();

  const args = [
    '--data-root', path.join(dir, 'data'),
    '--exec-root', path.join(dir, 'exec'),
    '--pidfile', path.join(dir, 'dockerd.pid'),
    '-H', `unix://${socket}`,
    '--iptables=false', '--ip6tables=false', '--bridge=none', '--ip-forward=false', '--ip-masq=false',
    '--userland-proxy=false', '--storage-driver=overlay2', '--log-level=warn',
    // busybox `sleep` as PID 1 ignores SIGTERM: do not wait 10 s per container on shutdown
    '--shutdown-timeout=2',
  ];

  const d: Dockerd = {
    dir,
    socket,
    host: `unix://${socket}`,
    netns: opts.netns ?? null,
    logTail(lines = 20) {
      try {
        return fs.readFileSync(logFile, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
      } catch {
        return '(no log)';
      }
    },
    async start() {
      const fd = fs.openSync(logFile, 'a');
      let [cmd, argv] = opts.netns ? ['nsenter', [`--net=/var/run/netns/${opts.netns}`, 'dockerd', ...args]] : ['dockerd', args];
      if (opts.pluginDir) {
        // Paths reach the shell only as positional parameters, never as script text.
        fs.mkdirSync('/run/docker/plugins', { recursive: true, mode: 0o700 });
        argv = ['--mount', '--propagation', 'private', '--', 'sh', '-c', 'mount --bind "$1" /run/docker/plugins && shift && exec "$@"', 'sh', opts.pluginDir, cmd as string, ...(argv as string[])];
        cmd = 'unshare';
      }
      const c = spawn(cmd, argv as string[], { stdio: ['ignore', fd, fd] });
      fs.closeSync(fd);
      child = c;
      let gone = false;
      exited = new Promise((r) => c.once('exit', () => {
        gone = true;
        r();
      }));
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline) {
        if (gone) throw new Error(`dockerd exited during start-up; log:\n${d.logTail()}`);
        if (await ping(socket, 1000)) return;
        await sleep(100);
      }
      await d.stop();
      throw new Error(`dockerd did not answer on ${socket} within ${timeoutMs} ms; log:\n${d.logTail()}`);
    },
    async stop() {
      const c = child;
      child = null;
      if (!c || c.exitCode !== null || c.signalCode !== null) return;
      c.kill('SIGTERM');
      let timer: NodeJS.Timeout | undefined;
      const killed = await Promise.race([
        exited.then(() => true),
        new Promise<boolean>((r) => (timer = setTimeout(() => r(false), 20_000))),
      ]);
      clearTimeout(timer);
      if (!killed) {
        c.kill('SIGKILL');
        await exited;
      }
    },
    async destroy() {
      await d.stop();
      // containerd and shims it left behind mention our directory on their command lines.
      for (let round = 0; round < 3; round++) {
        const pids = pidsMentioning(dir);
        if (pids.length === 0) break;
        for (const p of pids) {
          try {
            process.kill(p, 'SIGKILL');
          } catch {
            // already gone
          }
        }
        await sleep(200);
      }
      for (const m of mountsUnder(dir)) {
        try {
          execFileSync('umount', ['-l', m], { stdio: 'ignore' });
        } catch {
          // not mounted any more
        }
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    await d.start();
  } catch (err) {
    await d.destroy().catch(() => {});
    throw err;
  }
  return d;
}
