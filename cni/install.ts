/**
 * `weave setup-cni`: install the plugin and its network configuration where a
 * container runtime looks for them (CNI SPEC.md "Network configuration lists";
 * Weave's weave-kube wrote /etc/cni/net.d/10-weave.conflist and /opt/cni/bin/weave-net).
 *
 * The plugins installed are, by default, two copies of the native executable
 * (dist/cni/native/weave-net, built from cni/native/weave-net.c by `npm run build`),
 * `weave-net` and `weave-ipam` (the same program, told apart by its name), plus
 * `weave-net.sock-path`: one line, the absolute path of the router's unix socket
 * (`<stateDir>/weaver.sock`), which the executable reads from its own directory. The
 * executable forwards each call to the router (POST /cni/exec), which also checks the
 * conf's `stateDir` is its own. No Node.js starts per pod and no shell runs.
 *
 * Given `nodePath` or `pluginScript` (the DaemonSet's host paths), it installs instead
 * two small sh wrappers that exec that Node.js and weave-net.js by absolute,
 * single-quoted path (no variable reaches a shell unquoted): the fallback.
 * Every file is written atomically (temp + fsync + rename), so a runtime never reads
 * half a conflist or half a plugin.
 */
import fsp from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeFileAtomic } from '../router/host/state-file.js';
import { parseConf } from './spec.js';

export interface CniInstallOptions {
  /** Where the conflist goes (default /etc/cni/net.d). */
  confDir: string;
  /** Where the plugins go (default /opt/cni/bin). */
  binDir: string;
  /** The router's state directory, written into the conf as `stateDir`. */
  stateDir: string;
  /** The conflist's cniVersion (default 1.0.0; podman 4.3 writes 0.4.0 or 1.0.0). */
  cniVersion?: string;
  /** Network name (default "weave", as Weave's). */
  name?: string;
  /** Allocate pods in this subnet instead of the default one (`net:CIDR`). */
  subnet?: string;
  /** Add the `portmap` chained plugin (Weave's conflist does). Default true. */
  portmap?: boolean;
  /** Conflist file name (default 10-weave.conflist). */
  fileName?: string;
  /** Node binary and plugin script for sh wrappers instead of the native plugin (fallback). */
  nodePath?: string;
  pluginScript?: string;
  /** The native plugin to copy (default: this package's dist/cni/native/weave-net). */
  nativePlugin?: string;
}

/** The file next to the native plugin naming the router's socket (read by weave-net.c). */
export const SOCK_PATH_FILE = 'weave-net.sock-path';

/** The conflist JSON (pure). */
export function conflist(o: Pick<CniInstallOptions, 'cniVersion' | 'name' | 'subnet' | 'portmap' | 'stateDir'>): Record<string, unknown> {
  const plugin: Record<string, unknown> = { type: 'weave-net', hairpinMode: true, stateDir: o.stateDir };
  if (o.subnet) plugin.subnet = o.subnet;
  const plugins: Record<string, unknown>[] = [plugin];
  if (o.portmap ?? true) plugins.push({ type: 'portmap', capabilities: { portMappings: true }, snat: true });
  return { cniVersion: o.cniVersion ?? '1.0.0', name: o.name ?? 'weave', plugins };
}

/** Single-quote for sh: 'it'\''s'. */
export function shQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** The sh wrapper that runs the plugin (pure). */
export function wrapper(nodePath: string, script: string, extra: string[] = []): string {
  return `#!/bin/sh\n# Installed by weave setup-cni: the tsweave CNI plugin.\nexec ${[nodePath, script, ...extra].map(shQuote).join(' ')} "$@"\n`;
}

/** Write the conflist and the two plugins atomically; returns the files written. */
export async function installCni(o: CniInstallOptions): Promise<string[]> {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const script = o.pluginScript ?? path.join(here, 'weave-net.js');
  const node = o.nodePath ?? process.execPath;
  const useWrappers = o.nodePath !== undefined || o.pluginScript !== undefined;
  // Validate what goes into the conf now, with the plugin's own parser, not at the first pod.
  const conf = conflist(o);
  const first = (conf.plugins as Array<Record<string, unknown>>)[0];
  parseConf(Buffer.from(JSON.stringify({ ...first, name: conf.name, cniVersion: conf.cniVersion })));
  const files = [path.join(o.binDir, 'weave-net'), path.join(o.binDir, 'weave-ipam'), path.join(o.confDir, o.fileName ?? `10-${o.name ?? 'weave'}.conflist`)];
  if (useWrappers) {
    await writeFileAtomic(files[0], wrapper(node, script), 0o755);
    await writeFileAtomic(files[1], wrapper(node, script, ['--ipam']), 0o755);
  } else {
    const sock = path.join(path.resolve(o.stateDir), 'weaver.sock');
    // sockaddr_un's sun_path holds 107 bytes and a NUL.
    if (Buffer.byteLength(sock) > 107 || /[\r\n]/.test(sock)) throw new Error(`the router's socket path ${sock.slice(0, 200)} is too long for a unix socket (107 bytes): use a shorter state dir`);
    const bin = await fsp.readFile(o.nativePlugin ?? path.join(here, 'native', 'weave-net')).catch((err: NodeJS.ErrnoException) => {
      throw new Error(`the native CNI plugin is missing (${err.code ?? err.message}): run npm run build (needs cc)`);
    });
    const sockFile = path.join(o.binDir, SOCK_PATH_FILE);
    await writeFileAtomic(sockFile, sock + '\n', 0o644);
    await writeFileAtomic(files[0], bin, 0o755);
    await writeFileAtomic(files[1], bin, 0o755);
    files.splice(2, 0, sockFile);
  }
  await writeFileAtomic(files[files.length - 1], JSON.stringify(conf, null, 2) + '\n', 0o644);
  return files;
}
