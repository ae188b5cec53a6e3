/**
 * Test images without a registry: `docker import` of a root filesystem made
 * from the static busybox binary (Debian's busybox-static), one applet
 * symlink per command the tests need.
 */
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** Where Debian's busybox-static installs its binary. */
export const BUSYBOX = '/bin/busybox';

/** Whether /bin/busybox exists and is statically linked (so it runs in an empty image). */
export function busyboxStaticAvailable(): string | null {
  if (!fs.existsSync(BUSYBOX)) return 'busybox-static not installed (/bin/busybox missing)';
  const head = fs.readFileSync(BUSYBOX).subarray(0, 4096);
  // A dynamic executable names its loader in PT_INTERP; a static one has none.
  if (head.includes(Buffer.from('ld-linux'))) return '/bin/busybox is dynamically linked (install busybox-static)';
  return null;
}

/**
 * A host executable and the shared objects `ldd` names for it (paths as on the host),
 * e.g. to put the host's glibc `ping` in a test image: busybox is static and has no NSS,
 * so only a dynamic glibc program resolves names through resolv.conf the way
 * applications do. @throws Error when ldd fails.
 */
export function withLibraries(binary: string): string[] {
  const out = execFileSync('ldd', [binary], { encoding: 'utf8' });
  const libs = [...out.matchAll(/(\/\S+\.so[.\d]*)/g)].map((m) => m[1]);
  return [binary, ...new Set(libs)];
}

/**
 * Build an image from busybox and import it as `tag`.
 * @param applets symlinks to create in /bin (e.g. `['sh','ip','cat']`); `sh` decides whether the image has a shell.
 * @param changes Dockerfile instructions for `docker import --change` (e.g. `'ENTRYPOINT ["/bin/ip"]'`).
 * @param dockerHost the daemon (or proxy) to import through.
 * @param hostFiles host files copied to the same paths in the image (see withLibraries).
 * @throws Error with docker's stderr when the import fails.
 */
export async function importBusyboxImage(opts: { dockerHost: string; tag: string; applets: string[]; changes?: string[]; env?: NodeJS.ProcessEnv; hostFiles?: string[] }): Promise<void> {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tsw-px-rootfs-'));
  try {
    for (const d of ['bin', 'etc', 'tmp', 'proc', 'sys', 'dev']) fs.mkdirSync(path.join(root, d));
    fs.copyFileSync(BUSYBOX, path.join(root, 'bin', 'busybox'));
    fs.chmodSync(path.join(root, 'bin', 'busybox'), 0o755);
    for (const a of opts.applets) fs.symlinkSync('busybox', path.join(root, 'bin', a));
    fs.writeFileSync(path.join(root, 'etc', 'passwd'), 'root:x:0:0:root:/:/bin/sh\n');
    // Host files (withLibraries) at their own paths; glibc then resolves by files, then DNS.
    for (const f of opts.hostFiles ?? []) {
      const to = path.join(root, f);
      fs.mkdirSync(path.dirname(to), { recursive: true });
      fs.copyFileSync(f, to);
      fs.chmodSync(to, fs.statSync(f).mode & 0o755);
    }
    if (opts.hostFiles?.length) fs.writeFileSync(path.join(root, 'etc', 'nsswitch.conf'), 'hosts: files dns\n');
    const tarball = path.join(root, '..', `${path.basename(root)}.tar`);
    execFileSync('tar', ['-C', root, '-cf', tarball, '.']);
    try {
      const args = ['-H', opts.dockerHost, 'import'];
      for (const c of opts.changes ?? []) args.push('--change', c);
      args.push(tarball, opts.tag);
      await new Promise<void>((resolve, reject) => {
        const p = spawn('docker', args, { stdio: ['ignore', 'pipe', 'pipe'], env: opts.env ?? process.env });
        let err = '';
        p.stderr.on('data', (c: Buffer) => (err += c.toString()));
        p.stdout.resume();
        const t = setTimeout(() => p.kill('SIGKILL'), 60_000);
        p.on('close', (code) => {
          clearTimeout(t);
          if (code === 0) resolve();
          else reject(new Error(`docker import ${opts.tag} failed (${code}): ${err.trim()}`));
        });
      });
    } finally {
      fs.rmSync(tarball, { force: true });
    }
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
}
