/**
 * State files in the router's state dir (ipam.json is ipam/persist.ts's; this module
 * serves peer-name, targets.json, endpoints.json, weaver.pid).
 *
 * Writes are atomic: write a temporary file in the same directory, fsync it, rename
 * over the target, fsync the directory. A crash leaves either the old or the new
 * content, never a torn file; a failed write (disk full, read-only, I/O error) leaves
 * the old file as it was and removes the temporary file.
 *
 * Reads are bounded and strict: a missing file is "none yet", but a file that cannot
 * be read or parsed is an error naming the path, and the caller must refuse to start
 * rather than overwrite it (the user may still want what is in it).
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';

/** A state file could not be read, parsed or written; the message is one line naming the path and what to do. */
export class StateFileError extends Error {
  override name = 'StateFileError';
}

/** Largest state file we read (bytes); larger is refused as corrupted. */
export const MAX_STATE_FILE_BYTES = 16 << 20;

/** "ENOSPC (no space left on device)"-style text for an fs error, one line. */
export function describeFsError(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  const hint: Record<string, string> = {
    ENOSPC: 'no space left on device',
    EDQUOT: 'disk quota exceeded',
    EROFS: 'read-only file system',
    EACCES: 'permission denied',
    EPERM: 'operation not permitted',
    EIO: 'I/O error',
    ENOTDIR: 'a component of the path is not a directory',
  };
  if (e && typeof e.code === 'string') return `${e.code}${hint[e.code] ? ` (${hint[e.code]})` : ''}`;
  return String((e as Error)?.message ?? e).split('\n')[0];
}

/**
 * `mkdir -p`, one component at a time. Node's own recursive mkdir (`{ recursive: true }`,
 * Node 20) never returns for a path under a file system that answers ENOENT to every
 * mkdir, such as /proc (`WEAVE_STATE_DIR=/proc/x/weave` hung `weave launch` at 100 % CPU).
 * Existing directories are kept as they are; new ones get `mode`.
 * @param what what the directory is, for the error ("state directory", "CNI config directory")
 * @throws StateFileError `cannot create the WHAT DIR: COMPONENT: CODE (...)` naming the
 *   component that failed.
 */
export async function makeDirs(dir: string, mode: number, what: string): Promise<void> {
  const abs = path.resolve(dir);
  const missing: string[] = [];
  // Walk up to the first component that exists (bounded by the path's depth).
  for (let d = abs; ; d = path.dirname(d)) {
    try {
      const st = await fsp.stat(d);
      if (!st.isDirectory()) throw new StateFileError(`cannot create the ${what} ${abs}: ${d} is not a directory`);
      break;
    } catch (err) {
      if (err instanceof StateFileError) throw err;
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || d === path.dirname(d)) throw new StateFileError(`cannot create the ${what} ${abs}: ${d}: ${describeFsError(err)}`);
      missing.unshift(d);
    }
  }
  for (const d of missing) {
    try {
      await fsp.mkdir(d, { mode });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') continue;
      throw new StateFileError(`cannot create the ${what} ${abs}: ${d}: ${describeFsError(err)}`);
    }
  }
}

/**
 * The state directory (mode 0700 for new components), see {@link makeDirs}.
 * @throws StateFileError `cannot create the state directory DIR: ...`
 */
export function makeStateDir(dir: string, mode = 0o700): Promise<void> {
  return makeDirs(dir, mode, 'state directory');
}

/**
 * Atomically replace `file` with `data` (see the module comment).
 * @param mode permission bits of the new file (default 0600)
 * @throws StateFileError `cannot save FILE: ENOSPC (no space left on device): free space or make the state dir writable`;
 *   the old file is untouched and no temporary file is left behind.
 */
export function writeFileAtomic(file: string, data: string | Uint8Array, mode = 0o600): Promise<void> {
  // Writes of one path run one after another, in call order: two concurrent writers
  // must neither share a temporary file nor let an older content be renamed over a
  // newer one. A failed write does not stop the next one.
  const prev = writeQueue.get(file) ?? Promise.resolve();
  const next = prev.then(() => writeOnce(file, data, mode));
  const tail = next.catch(() => undefined);
  writeQueue.set(file, tail);
  void tail.then(() => {
    if (writeQueue.get(file) === tail) writeQueue.delete(file);
  });
  return next;
}

/** Pending write chain per target path (see writeFileAtomic). */
const writeQueue = new Map<string, Promise<void>>();
/** Makes temporary names unique within this process (Date.now() alone repeats within a millisecond). */
let tmpSeq = 0;

async function writeOnce(file: string, data: string | Uint8Array, mode: number): Promise<void> {
  const dir = path.dirname(file);
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${++tmpSeq}.tmp`);
  try {
    const fh = await fsp.open(tmp, 'w', mode);
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fsp.rename(tmp, file);
    const d = await fsp.open(dir, 'r');
    try {
      await d.sync();
    } finally {
      await d.close();
    }
  } catch (err) {
    await fsp.unlink(tmp).catch(() => undefined);
    throw new StateFileError(`cannot save ${file}: ${describeFsError(err)}: free space or make the state dir writable, then retry`);
  }
}

/**
 * Read a state file as text, bounded by MAX_STATE_FILE_BYTES.
 * @returns the text, or undefined if the file does not exist
 * @throws StateFileError if it exists but cannot be read or is too large
 */
export async function readStateFile(file: string, what: string): Promise<string | undefined> {
  let fh: fsp.FileHandle;
  try {
    fh = await fsp.open(file, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new StateFileError(`cannot read ${what} ${file}: ${describeFsError(err)}`);
  }
  try {
    const st = await fh.stat();
    if (st.size > MAX_STATE_FILE_BYTES) throw new StateFileError(`${what} ${file} is corrupted (${st.size} bytes, more than ${MAX_STATE_FILE_BYTES}): move it aside or run weave reset`);
    return await fh.readFile('utf8');
  } catch (err) {
    if (err instanceof StateFileError) throw err;
    throw new StateFileError(`cannot read ${what} ${file}: ${describeFsError(err)}`);
  } finally {
    await fh.close();
  }
}

/** Most remembered targets accepted from targets.json. */
export const MAX_TARGETS = 10_000;

/**
 * Load the remembered connection targets (`weave connect`) from targets.json: a JSON
 * array of "host:port" strings, at most MAX_TARGETS, each at most 300 characters.
 * @returns the list, or [] when the file does not exist
 * @throws StateFileError `connection targets file PATH is corrupted (why): move it aside or run weave reset`; the file is left as it is
 */
/** A StateFileError factory for `what FILE is corrupted (why): move it aside or run weave reset`. */
export function corruptError(what: string, file: string): (why: string) => StateFileError {
  return (why) => new StateFileError(`${what} ${file} is corrupted (${why}): move it aside or run weave reset`);
}

/**
 * Parse state-file text that must be a JSON array of at most `max` entries.
 * @throws the error `bad(why)` builds, for invalid JSON, a non-array or too many entries
 */
export function parseJsonArray(text: string, max: number, bad: (why: string) => Error): unknown[] {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    throw bad(`not valid JSON: ${(err as Error).message}`);
  }
  if (!Array.isArray(v)) throw bad('not a JSON array');
  if (v.length > max) throw bad(`${v.length} entries, more than ${max}`);
  return v;
}

export async function loadTargets(file: string): Promise<string[]> {
  const text = await readStateFile(file, 'connection targets file');
  if (text === undefined) return [];
  const bad = corruptError('connection targets file', file);
  const v = parseJsonArray(text, MAX_TARGETS, bad);
  for (const t of v) if (typeof t !== 'string' || t.length === 0 || t.length > 300) throw bad('an entry is not a non-empty string of at most 300 characters');
  return v as string[];
}
