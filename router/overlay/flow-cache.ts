/**
 * The sleeve's flow cache, seen from TypeScript: the shapes the TAP and UDP addons
 * expose (router/overlay/native/flow-cache.h explains the design) and the router-side rules
 * for when a decision may be cached. Pure: no sockets, timers or files.
 *
 * A flow is a forwarding decision the router already made for one conversation
 * (source MAC → destination MAC), cached in C so that a wake-up bringing a few frames
 * of it is forwarded without entering JavaScript — the same split as Weave's fast
 * datapath, where the router installs Open vSwitch flows on a miss and the kernel
 * forwards the rest. Every decision stays here; the cache only repeats it, for at most
 * {@link FLOW_TTL_MS}, and is cleared whenever an input of a decision changes.
 * Flows of encrypted peers seal (egress) or open (ingress) in C with the peer's own
 * Sealer/Opener state (crypto/aead.ts sharedState) and a copy of its current key, which the
 * addon wipes when the flows are cleared or the key's epoch moves on.
 */
import { DatagramType, HEADER_BYTES, SLEEVE_MAGIC } from './sleeve-codec.js';
import { writeMac } from './mac-cache.js';

/**
 * How long an installed flow is used before the router must see a frame of that
 * conversation again (which refreshes its MAC cache entries), in ms. Only the MAC
 * cache's 10-minute expiry (router.ts MAC_MAX_AGE_MS) needs this refresh; every other
 * input of a decision clears the cache when it changes. Each expiry sends the next frame
 * of the conversation through JavaScript, which adds ~0.3–1 ms to that one frame: with
 * 2 s, a 100/s ping met four expiries (two flows per router) every 2 s, ~1 % of its
 * replies, which set the sleeve's ping p99 at ~3× its average [perf, issue #19].
 * 30 s keeps the refresh 20× inside the MAC expiry and makes such a frame rare.
 */
export const FLOW_TTL_MS = 30_000;
/**
 * Largest wake-up of small frames from the TAP the TAP addon forwards from the cache
 * (and, with WEAVE_NO_BULK_INGRESS=1, of datagrams the UDP addon does); mirrors
 * kFastBatchMax: one — bigger batches of small frames are load, where the router's
 * packing does better than a syscall per frame.
 */
export const FLOW_BATCH_MAX = 1;
/**
 * Frames of at least this many bytes are cached (egress) in wake-ups of any size;
 * mirrors tap.cc kBigFrame: a bulk transfer, which the TAP addon seals and sends as UDP
 * GSO runs itself, while smaller frames gain from the router's packing.
 */
export const FLOW_BULK_FRAME = 512;
/** Bytes of the egress template: sleeve header (8) + the frame record's src and dst peer (12). */
export const EGRESS_TEMPLATE_BYTES = HEADER_BYTES + 12;

/** Counters of one direction of the cache, since the device or socket opened. */
export interface FlowStats {
  /** flows installed */
  installs: number;
  /** times the router (or an error) emptied the cache */
  clears: number;
  /** wake-ups forwarded entirely from the cache */
  batches: number;
  /** frames forwarded from the cache */
  frames: number;
  /** Ethernet bytes of those frames */
  bytes: number;
  /** frames dropped because the socket or TAP queue was full */
  drops: number;
  /** frames whose send/write failed otherwise (the cache is then cleared) */
  errors: number;
  /** of `frames`, those of encrypted peers: sealed (egress) or opened (ingress) in C */
  crypto: number;
}

export const NO_FLOW_STATS: FlowStats = Object.freeze({ installs: 0, clears: 0, batches: 0, frames: 0, bytes: 0, drops: 0, errors: 0, crypto: 0 });

/**
 * The 20 bytes that start every datagram of an egress flow: sleeve header (magic,
 * FRAMES, `sender`) and the frame record's origin and destination peer (sleeve-codec.ts);
 * the addon appends the 2-byte frame length and the frame.
 */
export function egressTemplate(sender: number, origin: number, dst: number, out: Buffer = Buffer.alloc(EGRESS_TEMPLATE_BYTES)): Buffer {
  out[0] = SLEEVE_MAGIC;
  out[1] = DatagramType.FRAMES;
  writeMac(out, 2, sender);
  writeMac(out, 8, origin);
  writeMac(out, 14, dst);
  return out;
}

/** Bulk frames are cached in batches (FLOW_BULK_FRAME) unless WEAVE_NO_BULK_FLOWS=1 (the reference in benchmarks). */
export function bulkFlowsEnabled(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.WEAVE_NO_BULK_FLOWS !== '1';
}

/**
 * Ingress (UDP addon) takes whole wake-ups — GRO batches of a bulk transfer — from the cache,
 * and the router installs ingress flows from batches of any size, unless
 * WEAVE_NO_BULK_INGRESS=1 (then both are limited to FLOW_BATCH_MAX, the behaviour before;
 * the addon reads the same variable).
 */
export function bulkIngressEnabled(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.WEAVE_NO_BULK_INGRESS !== '1';
}

/** The flow cache is on unless WEAVE_NO_FLOW_CACHE=1 (an escape hatch, and the reference in benchmarks). */
export function flowCacheEnabled(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.WEAVE_NO_FLOW_CACHE !== '1';
}
