/**
 * Persistence of IPAM state: the ring, this peer's allocations and its Paxos claims.
 *
 * The allocator sees only the `Persistence` interface; FilePersistence stores one JSON file
 * in the state directory, replaced atomically (write a temporary file, fsync it, rename over
 * the old one, fsync the directory) so a crash leaves either the old or the new state. A file
 * that cannot be read back is never overwritten: the router must refuse to start, because
 * starting a fresh ring over lost allocations would hand out addresses twice.
 */
import { open, readFile, rename, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { RingPlain } from './ring.js';
import type { PaxosKnowledge } from './consensus.js';

/** What the allocator saves. Addresses are "a.b.c.d/len" text so the file is readable. */
export interface PersistedIpam {
  version: 1;
  /** Peer name that owns this state; a different peer must not adopt it. */
  peer: string;
  /** The IPAM range, "10.32.0.0/12". */
  range: string;
  ring: RingPlain | null;
  allocations: Array<{ owner: string; addr: string }>;
  paxos: PaxosKnowledge | null;
}

/** Where the allocator keeps its state. save() must be durable when its promise resolves. */
export interface Persistence {
  load(): Promise<PersistedIpam | undefined>;
  save(state: PersistedIpam): Promise<void>;
}

/** The persisted state cannot be used (corrupted, or belongs to another peer or range). */
export class IpamPersistenceError extends Error {
  override name = 'IpamPersistenceError';
}

/**
 * Shape-check parsed data as PersistedIpam (ring and paxos contents are checked by their owners).
 * @throws Error with a short reason.
 */
export function validatePersisted(x: unknown): PersistedIpam {
  if (typeof x !== 'object' || x === null || Array.isArray(x)) throw new Error('not an object');
  const o = x as Record<string, unknown>;
  if (o.version !== 1) throw new Error(`unknown version ${JSON.stringify(o.version)}`);
  if (typeof o.peer !== 'string' || o.peer.length === 0) throw new Error('missing peer name');
  if (typeof o.range !== 'string') throw new Error('missing range');
  if (o.ring !== null && (typeof o.ring !== 'object' || Array.isArray(o.ring))) throw new Error('bad ring');
  if (o.paxos !== null && o.paxos !== undefined && (typeof o.paxos !== 'object' || Array.isArray(o.paxos))) throw new Error('bad paxos');
  if (!Array.isArray(o.allocations)) throw new Error('bad allocations');
  for (const a of o.allocations) {
    if (typeof a !== 'object' || a === null || typeof (a as Record<string, unknown>).owner !== 'string' || typeof (a as Record<string, unknown>).addr !== 'string') {
      throw new Error('bad allocation entry');
    }
  }
  return {
    version: 1,
    peer: o.peer,
    range: o.range,
    ring: (o.ring as RingPlain | null) ?? null,
    allocations: (o.allocations as Array<{ owner: string; addr: string }>).map((a) => ({ owner: a.owner, addr: a.addr })),
    paxos: (o.paxos as PaxosKnowledge | null | undefined) ?? null,
  };
}

/** IPAM state in one JSON file, e.g. $WEAVE_STATE_DIR/ipam.json. */
export class FilePersistence implements Persistence {
  private corrupt: string | undefined;

  constructor(readonly path: string) {}

  /**
   * Read the state; undefined if the file does not exist.
   * @throws IpamPersistenceError `IPAM data in /path is corrupted (reason): move it aside or run weave reset`;
   *   the file is left untouched and later save() calls are refused.
   */
  async load(): Promise<PersistedIpam | undefined> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new IpamPersistenceError(`cannot read IPAM data in ${this.path}: ${(e as Error).message}`);
    }
    try {
      return validatePersisted(JSON.parse(text));
    } catch (e) {
      const reason = e instanceof SyntaxError ? `not valid JSON: ${e.message}` : (e as Error).message;
      this.corrupt = reason;
      throw this.corruptError(reason);
    }
  }

  private corruptError(reason: string): IpamPersistenceError {
    return new IpamPersistenceError(`IPAM data in ${this.path} is corrupted (${reason}): move it aside or run weave reset`);
  }

  /** Mark the file as unusable (e.g. the allocator found its ring invalid) so it is never overwritten. */
  markCorrupt(reason: string): IpamPersistenceError {
    this.corrupt = reason;
    return this.corruptError(reason);
  }

  /**
   * Atomically replace the file with `state`: write `path.tmp`, fsync, rename, fsync the directory.
   * @throws IpamPersistenceError if the existing file was found corrupted (we never overwrite it), or on I/O errors.
   */
  async save(state: PersistedIpam): Promise<void> {
    if (this.corrupt !== undefined) throw this.corruptError(this.corrupt);
    const tmp = `${this.path}.tmp`;
    const data = JSON.stringify(state);
    try {
      const fh = await open(tmp, 'w', 0o600);
      try {
        await fh.writeFile(data, 'utf8');
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(tmp, this.path);
      const dir = await open(dirname(this.path), 'r');
      try {
        await dir.sync();
      } finally {
        await dir.close();
      }
    } catch (e) {
      // Never leave a half-written temporary file behind (the old file is untouched).
      await unlink(tmp).catch(() => undefined);
      const code = (e as NodeJS.ErrnoException).code;
      const m = String((e as Error).message ?? e).split('\n')[0];
      throw new IpamPersistenceError(`cannot save IPAM data to ${this.path}: ${code && !m.startsWith(code) ? `${code}: ` : ''}${m}: free space or make the state dir writable, then retry`);
    }
  }

  /** Delete the file (for `weave reset`, after handing our space over). Missing file is fine. */
  async remove(): Promise<void> {
    try {
      await unlink(this.path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
  }
}

/** In-memory persistence for tests and simulations: keeps a deep copy of the last saved state. */
export class MemoryPersistence implements Persistence {
  private data: string | undefined;
  saves = 0;

  constructor(initial?: PersistedIpam) {
    if (initial) this.data = JSON.stringify(initial);
  }

  async load(): Promise<PersistedIpam | undefined> {
    return this.data === undefined ? undefined : validatePersisted(JSON.parse(this.data));
  }

  async save(state: PersistedIpam): Promise<void> {
    this.data = JSON.stringify(state);
    this.saves++;
  }

  /** The last saved state (a copy), for inspection in tests. */
  peek(): PersistedIpam | undefined {
    return this.data === undefined ? undefined : (JSON.parse(this.data) as PersistedIpam);
  }
}
