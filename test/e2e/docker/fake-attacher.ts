/**
 * A stand-in for the router's attacher in proxy tests: it gives a container
 * an `ethwe` veth end with an address (no bridge, no IPAM) and records every
 * call, so tests can check what the proxy asked for and when.
 *
 * The veth is created inside the container's namespace and its peer is sent
 * to `hostNetns` (the test dockerd's namespace), so nothing lands in the
 * machine's root namespace. `ethwe` is brought up last, as the real attacher must.
 */
import { execFile } from 'node:child_process';
import type { ProxyAttacher } from '../../../proxy/types.js';

export type AttacherCall =
  | { op: 'attach'; id: string; pid: number; specs: string[]; at: number; cidrs: string[] }
  | { op: 'release'; id: string; at: number };

function run(cmd: string, args: string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = execFile(cmd, args, { timeout: 10_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(' ')}: ${stderr.trim() || err.message}`));
      else resolve(stdout);
    });
    p.stdin?.on('error', () => {}); // the command may exit before reading; its exit status tells
    if (input !== undefined) p.stdin?.end(input);
  });
}

function ipToInt(ip: string): number {
  return ip.split('.').reduce((a, o) => a * 256 + Number(o), 0);
}
function intToIp(n: number): string {
  return [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join('.');
}

/** Fake attacher; `calls` lists attach/release calls in order. */
export class FakeAttacher implements ProxyAttacher {
  readonly calls: AttacherCall[] = [];
  /** Addresses handed out, by container id (kept across re-attach, as IPAM does). */
  readonly addresses = new Map<string, string[]>();
  /** Make the next attach calls fail with this message (tests of the error path). */
  failWith: string | null = null;
  private next = 2;
  private link = 0;

  constructor(private readonly hostNetns: string, private readonly defaultSubnet = '10.99.0.0/16') {}

  private pick(spec: string): string {
    if (spec === 'net:default') spec = `net:${this.defaultSubnet}`;
    if (spec.startsWith('ip:')) return spec.slice(3);
    if (!spec.startsWith('net:')) return spec;
    const [base, len] = spec.slice(4).split('/');
    return `${intToIp(ipToInt(base) + this.next++)}/${len}`;
  }

  private readonly locks = new Map<string, Promise<unknown>>();

  /**
   * Calls for one container are serialized: two proxies on one daemon (or an
   * event and a start racing) may ask at once, and the real attacher must cope too.
   */
  attach(containerId: string, pid: number, specs: string[]): Promise<string[]> {
    const prev = this.locks.get(containerId) ?? Promise.resolve();
    const next = prev.catch(() => {}).then(() => this.attachNow(containerId, pid, specs));
    this.locks.set(containerId, next);
    void next.finally(() => {
      if (this.locks.get(containerId) === next) this.locks.delete(containerId);
    }).catch(() => {});
    return next;
  }

  private async attachNow(containerId: string, pid: number, specs: string[]): Promise<string[]> {
    const at = Date.now();
    if (this.failWith !== null) {
      this.calls.push({ op: 'attach', id: containerId, pid, specs: [...specs], at, cidrs: [] });
      throw new Error(this.failWith);
    }
    let cidrs = this.addresses.get(containerId);
    if (!cidrs) {
      cidrs = (specs.length === 0 ? [`net:${this.defaultSubnet}`] : specs).map((s) => this.pick(s));
      this.addresses.set(containerId, cidrs);
    }
    this.calls.push({ op: 'attach', id: containerId, pid, specs: [...specs], at, cidrs });
    const ns = `--net=/proc/${pid}/ns/net`;
    const existing = await run('nsenter', [ns, 'ip', '-o', 'link', 'show']);
    if (/\d+: ethwe[@:]/.test(existing)) return cidrs;
    // unique across test processes sharing a namespace; at most 15 characters
    const peer = `tsw-px-${(process.pid % 46656).toString(36)}${(this.link++).toString(36)}`;
    await run('nsenter', [ns, 'ip', 'link', 'add', 'ethwe', 'type', 'veth', 'peer', 'name', peer, 'netns', this.hostNetns]);
    await run('ip', ['-n', this.hostNetns, 'link', 'set', peer, 'up']);
    const batch = cidrs.map((c) => `addr add ${c} dev ethwe`).join('\n') + '\nlink set ethwe up\n';
    await run('nsenter', [ns, 'ip', '-batch', '-'], batch);
    return cidrs;
  }

  async release(containerId: string): Promise<void> {
    this.calls.push({ op: 'release', id: containerId, at: Date.now() });
    this.addresses.delete(containerId);
  }

  attachesOf(id: string): Extract<AttacherCall, { op: 'attach' }>[] {
    return this.calls.filter((c): c is Extract<AttacherCall, { op: 'attach' }> => c.op === 'attach' && c.id === id);
  }
  releasesOf(id: string): number {
    return this.calls.filter((c) => c.op === 'release' && c.id === id).length;
  }
}
