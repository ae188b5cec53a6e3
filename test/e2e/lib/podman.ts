/**
 * A private podman (4.3, CNI backend) per test host: its own containers.conf, storage
 * root and runroot, CNI conf dir and plugin dir, run inside the host's network
 * namespace with `nsenter --net=…` (`ip netns exec` remounts /sys and runc then fails
 * "no cgroup mount found in mountinfo"). Images come from `podman import` of a
 * busybox-static root filesystem, so no registry is needed.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { sh, type Result } from './testbed.js';
import { BUSYBOX } from '../docker/image.js';

/** Why podman tests cannot run here, or undefined. */
export function podmanMissing(): string | undefined {
  for (const [bin, pkg] of [['podman', 'podman'], ['/usr/lib/cni/bridge', 'containernetworking-plugins'], ['/usr/lib/cni/host-local', 'containernetworking-plugins']]) {
    try {
      execFileSync('sh', ['-c', `command -v "$0"`, bin], { stdio: 'ignore' });
    } catch {
      return `needs ${bin} (apt-get install ${pkg})`;
    }
  }
  if (!fs.existsSync(BUSYBOX)) return 'needs /bin/busybox (apt-get install busybox-static)';
  return undefined;
}

export class Podman {
  readonly confDir: string;
  readonly binDir: string;
  private readonly conf: string;
  private readonly root: string;
  private readonly runroot: string;

  /**
   * @param dir a fresh directory of the test's (removed by the caller)
   * @param ns the host's network namespace name (/var/run/netns/NAME)
   */
  constructor(readonly dir: string, readonly ns: string) {
    this.confDir = path.join(dir, 'net.d');
    this.binDir = path.join(dir, 'bin');
    this.root = path.join(dir, 'root');
    this.runroot = path.join(dir, 'run');
    this.conf = path.join(dir, 'containers.conf');
    for (const d of [this.confDir, this.binDir, this.root, this.runroot]) fs.mkdirSync(d, { recursive: true });
    fs.writeFileSync(this.conf, [
      '[containers]',
      'default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]',
      '[network]',
      'network_backend = "cni"',
      `cni_plugin_dirs = [${JSON.stringify(this.binDir)}, "/usr/lib/cni"]`,
      `network_config_dir = ${JSON.stringify(this.confDir)}`,
      '[engine]',
      'cgroup_manager = "cgroupfs"',
      'events_logger = "file"',
      // Its own tmp dir (podman's default /run/libpod is shared: one instance's
      // `system reset` would wipe another's state and orphan its containers).
      `tmp_dir = ${JSON.stringify(path.join(dir, 'tmp'))}`,
      `events_logfile_path = ${JSON.stringify(path.join(dir, 'events.log'))}`,
      '',
    ].join('\n'));
    // No registry: images are imported; a short name must never be looked up remotely.
    fs.writeFileSync(path.join(dir, 'registries.conf'), 'unqualified-search-registries = []\nshort-name-mode = "disabled"\n');
  }

  /** Run `podman ARGS` in the host's network namespace. */
  run(args: string[], timeoutMs = 120_000): Promise<Result> {
    return sh('nsenter', [`--net=/var/run/netns/${this.ns}`, 'podman', '--root', this.root, '--runroot', this.runroot, '--storage-driver', 'vfs', '--cgroup-manager', 'cgroupfs', ...args], {
      env: { ...process.env, CONTAINERS_CONF: this.conf, CONTAINERS_REGISTRIES_CONF: path.join(this.dir, 'registries.conf') },
      timeoutMs,
    });
  }

  async must(args: string[], timeoutMs = 120_000): Promise<string> {
    const r = await this.run(args, timeoutMs);
    if (r.code !== 0) throw new Error(`podman ${args.join(' ')} failed (${r.code}): ${r.stderr.trim() || r.stdout.trim()}`);
    return r.stdout;
  }

  /** Import a busybox image as `tag` (applets: sh, ping, ip, sleep, cat, nc…). */
  async importBusybox(tag: string): Promise<void> {
    const rootfs = path.join(this.dir, 'rootfs');
    for (const d of ['bin', 'etc', 'tmp', 'proc', 'sys', 'dev']) fs.mkdirSync(path.join(rootfs, d), { recursive: true });
    fs.copyFileSync(BUSYBOX, path.join(rootfs, 'bin', 'busybox'));
    fs.chmodSync(path.join(rootfs, 'bin', 'busybox'), 0o755);
    for (const a of ['sh', 'ping', 'ip', 'sleep', 'cat', 'nc', 'ifconfig', 'hostname']) fs.symlinkSync('busybox', path.join(rootfs, 'bin', a));
    fs.writeFileSync(path.join(rootfs, 'etc', 'passwd'), 'root:x:0:0:root:/:/bin/sh\n');
    const tar = path.join(this.dir, 'rootfs.tar');
    execFileSync('tar', ['-C', rootfs, '-cf', tar, '.']);
    await this.must(['import', '--change', 'CMD ["/bin/sh"]', tar, tag]);
    fs.rmSync(tar, { force: true });
  }

  /**
   * Remove every container (force), then the storage (unmounts what podman mounted).
   * Whatever podman fails to remove — a container process, its netns file — is
   * killed and deleted by hand. Returns what podman complained of ('' if nothing).
   */
  async cleanup(): Promise<string> {
    const ps = await this.run(['ps', '-a', '--format', '{{.Pid}} {{.ID}}'], 30_000);
    const pids = ps.stdout.split('\n').map((l) => Number(l.split(' ')[0])).filter((n) => n > 0);
    const netnses: string[] = [];
    for (const id of ps.stdout.split('\n').map((l) => l.split(' ')[1]).filter(Boolean)) {
      const r = await this.run(['inspect', '--format', '{{.NetworkSettings.SandboxKey}}', id], 30_000);
      if (r.code === 0 && r.stdout.trim().startsWith('/run/netns/')) netnses.push(r.stdout.trim());
    }
    const rm = await this.run(['rm', '-a', '-f', '-t', '0'], 60_000);
    const reset = await this.run(['system', 'reset', '-f'], 60_000);
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch { /* gone, as it should be */ }
    }
    for (const ns of netnses) if (fs.existsSync(ns)) await sh('ip', ['netns', 'del', path.basename(ns)], { timeoutMs: 10_000 });
    return [rm, reset].filter((r) => r.code !== 0).map((r) => r.stderr.trim()).join('; ');
  }
}
