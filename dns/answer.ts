/**
 * weaveDNS's answers: pure functions from a query's bytes to a response's bytes (or
 * "forward this" / "drop this"), using the `dns-packet` codec (RFC 1035 message
 * format, RFC 6891 EDNS0). No sockets: the server (server.ts) does the I/O.
 *
 * What we answer (Weave's nameserver behaviour):
 *  - names under the domain (default weave.local.): A records of the live entries
 *    (shuffled per answer by the resolver's lookup), TTL `ttl` s, authoritative;
 *    another type (AAAA, MX, …) of an existing name → NOERROR with no answers; an
 *    unknown name → NXDOMAIN;
 *  - AAAA (issue #21) of entries that carry an IPv6 address (their router has
 *    --ipalloc-range6); a name with only A or only AAAA records answers the other type
 *    NOERROR-empty; ANY gets both;
 *  - PTR for `d.c.b.a.in-addr.arpa.` when an entry has that address, and for the
 *    RFC 3596 `…ip6.arpa.` name of an entry's IPv6 address;
 *  - anything else is forwarded (the caller relays the query bytes unchanged).
 * UDP responses are cut to 512 bytes, or to the query's EDNS0 size (RFC 6891 §6.2.5,
 * capped at 4096), dropping answers from the end and setting TC (RFC 1035 §4.1.1), so
 * the client retries over TCP, where up to 65535 bytes fit.
 */
import * as dnsPacket from 'dns-packet';
import type { DecodedPacket, Answer, Packet } from 'dns-packet';
import { isIpv4 } from './registry.js';
import { addressOfIp6Arpa } from '../ipam/ipv6.js';

/** What answerQuery() asks about names; the resolver applies isolation and liveness. */
export interface NameSource {
  /** The domain we are authoritative for, normalised ("weave.local."). */
  readonly domain: string;
  /** TTL of our answers, seconds. */
  readonly ttl: number;
  /** Addresses of a normalised name ("db.weave.local."), already shuffled; [] if none. */
  lookup(name: string): string[];
  /** Hostnames (normalised) for an IPv4 address; [] if none. */
  reverse(addr: string): string[];
  /** [IPv6] IPv6 addresses (RFC 5952 text) of a normalised name, shuffled; absent = none. */
  lookup6?(name: string): string[];
  /** [IPv6] Hostnames for an IPv6 address (RFC 5952 text); absent = none. */
  reverse6?(addr6: string): string[];
}

export type Rcode = 'NOERROR' | 'NXDOMAIN' | 'FORMERR' | 'NOTIMP' | 'SERVFAIL';

export type Outcome =
  | { kind: 'answer'; response: Buffer; rcode: Rcode; qtype: string; truncated: boolean }
  | { kind: 'forward'; qtype: string }
  | { kind: 'drop'; reason: 'short' | 'malformed' | 'not-a-query' | 'too-big' };

/** Largest UDP response we send (EDNS0 sizes above this are capped). */
export const MAX_UDP_RESPONSE = 4096;
/** Classic DNS UDP limit (RFC 1035 §4.2.1). */
export const CLASSIC_UDP_LIMIT = 512;
/** Largest query we decode: a query is one question (+ an OPT), far below this. */
export const MAX_QUERY_BYTES = 4096;

const RCODE: Record<Rcode, number> = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4 };

/**
 * True when the header's section counts can fit in the message: every question takes
 * at least 5 bytes (root name, type, class) and every record at least 11 (RFC 1035
 * §4.1.2–4.1.3). dns-packet loops over the counts before it notices the bytes ran out,
 * so a 60-byte packet claiming 16,000 questions cost ~100 ms of the event loop; this
 * check bounds the decoder's work by the message's length.
 */
export function countsFit(buf: Buffer): boolean {
  if (buf.length < 12) return false;
  const qd = buf.readUInt16BE(4);
  const rr = buf.readUInt16BE(6) + buf.readUInt16BE(8) + buf.readUInt16BE(10);
  return qd * 5 + rr * 11 <= buf.length - 12;
}

/** Decode a query; undefined if it does not decode (or its counts cannot fit). Never throws. */
export function decodeQuery(buf: Buffer): DecodedPacket | undefined {
  if (!countsFit(buf)) return undefined;
  try {
    return dnsPacket.decode(buf);
  } catch {
    return undefined;
  }
}

/**
 * Whether a decoded name re-encodes to what was asked, so it may be echoed in a response:
 * labels of 1–63 printable ASCII characters, at most 253 in all (RFC 1035 §2.3.4). The
 * codec decodes label bytes as UTF-8 and joins labels with dots, so a label holding a
 * non-ASCII byte, a dot or nothing printable would come back longer, split or empty —
 * a malformed question section (found by fuzzing: test/fuzz/seeds/dns-query.json).
 */
export function isEchoableName(name: string): boolean {
  // One pass over the characters (this runs once per query): labels between dots.
  let end = name.length;
  if (end > 0 && name.charCodeAt(end - 1) === 0x2e) end--;
  if (end === 0) return true;
  if (end > 253) return false;
  let label = 0;
  for (let i = 0; i < end; i++) {
    const c = name.charCodeAt(i);
    if (c === 0x2e) {
      if (label === 0) return false;
      label = 0;
    } else if (c < 0x20 || c > 0x7e || ++label > 63) {
      return false;
    }
  }
  return label > 0;
}

/** "5.0.32.10.in-addr.arpa" → "10.32.0.5"; undefined for anything else. */
export function reverseAddress(name: string): string | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.in-addr\.arpa\.?$/i.exec(name);
  if (!m) return undefined;
  const a = `${m[4]}.${m[3]}.${m[2]}.${m[1]}`;
  return isIpv4(a) ? a : undefined;
}

/**
 * The UDP size limit a query allows: its EDNS0 OPT record's payload size (at least 512,
 * at most MAX_UDP_RESPONSE), or 512 without OPT.
 */
export function udpLimit(q: Packet): number {
  const opt = q.additionals?.find((a) => a.type === 'OPT') as { udpPayloadSize?: number } | undefined;
  if (!opt || typeof opt.udpPayloadSize !== 'number') return CLASSIC_UDP_LIMIT;
  return Math.min(MAX_UDP_RESPONSE, Math.max(CLASSIC_UDP_LIMIT, opt.udpPayloadSize));
}

/**
 * Build a response to `q` (decoded query) with `rcode` and `answers`; encoded within
 * `limit` bytes, dropping answers from the end and setting TC when they do not fit.
 * Authoritative (AA) when `authoritative`. Echoes the question, RD, and an OPT record if
 * the query had one.
 */
export function buildResponse(q: DecodedPacket, rcode: Rcode, answers: Answer[], limit: number, authoritative = true): { response: Buffer; truncated: boolean } {
  const hadOpt = q.additionals?.some((a) => a.type === 'OPT') ?? false;
  let flags = RCODE[rcode] | dnsPacket.RECURSION_AVAILABLE;
  if (q.flag_rd) flags |= dnsPacket.RECURSION_DESIRED;
  if (authoritative) flags |= dnsPacket.AUTHORITATIVE_ANSWER;
  const pkt: Packet = {
    type: 'response', id: q.id, flags,
    // A question we could not echo faithfully is left out (RFC 1035 allows an answer without one).
    questions: (q.questions ?? []).slice(0, 1).filter((x) => isEchoableName(String(x.name))),
    answers: [...answers],
    additionals: hadOpt ? [{ type: 'OPT', name: '.', udpPayloadSize: MAX_UDP_RESPONSE, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] } as Answer] : [],
  };
  let response = dnsPacket.encode(pkt);
  let truncated = false;
  while (response.length > limit && pkt.answers!.length > 0) {
    // Cut in proportion first, then one by one (answers have near-equal sizes).
    const keep = Math.min(pkt.answers!.length - 1, Math.floor(pkt.answers!.length * limit / response.length));
    pkt.answers = pkt.answers!.slice(0, keep);
    pkt.flags = flags | dnsPacket.TRUNCATED_RESPONSE;
    truncated = true;
    response = dnsPacket.encode(pkt);
  }
  if (response.length > limit) {
    // Even the question does not fit (cannot happen for a query that fit in `limit`).
    pkt.questions = [];
    pkt.additionals = [];
    response = dnsPacket.encode(pkt);
    truncated = true;
  }
  return { response, truncated };
}

/** Most encoded answers kept by answerFor (a few hundred bytes each); the map is emptied when full. */
export const ANSWER_CACHE_MAX = 4096;
const answerCache = new Map<string, { response: Buffer; truncated: boolean }>();

/** Most decoded queries kept by decodeMemo; the map is emptied when full. */
export const DECODE_MEMO_MAX = 4096;
/** Only queries up to this size are memoised (a plain query is ~30–60 bytes; bounds the memo at ~2 MiB of keys). */
export const DECODE_MEMO_BYTES = 512;

/** What answerQuery needs of a query's bytes, apart from the id: pure in those bytes. */
interface Parsed {
  /** The decoded query, frozen (shared by every query with these bytes), or undefined when it does not decode. */
  readonly q: Readonly<DecodedPacket> | undefined;
  /** The one question's name is echoable (isEchoableName); false without exactly one question. */
  readonly echoable: boolean;
  /** UDP size limit (udpLimit). */
  readonly udpLimit: number;
}
const decodeMemo = new Map<string, Parsed>();

/** Empty answerFor's cache and the decode memo (tests; nothing else needs to: their keys hold every input). */
export function clearAnswerCache(): void {
  answerCache.clear();
  decodeMemo.clear();
}

/**
 * Freeze a decoded packet in place, deeply. Byte fields (dns-packet hands out views of
 * the input, which the batched socket reuses for the next queries) are replaced by
 * copies first; typed arrays cannot be frozen, and answerQuery never reads their bytes.
 */
function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object' && !ArrayBuffer.isView(o) && !Object.isFrozen(o)) {
    const rec = o as Record<string, unknown>;
    for (const k of Object.keys(rec)) {
      const v = rec[k];
      if (ArrayBuffer.isView(v)) rec[k] = Buffer.from(new Uint8Array(v.buffer, v.byteOffset, v.byteLength)); // a copy
      else deepFreeze(v);
    }
    Object.freeze(o);
  }
  return o;
}

function parse(buf: Buffer): Parsed {
  const q = decodeQuery(buf);
  if (!q) return { q: undefined, echoable: false, udpLimit: CLASSIC_UDP_LIMIT };
  const one = q.questions?.length === 1 ? q.questions[0] : undefined;
  return { q: deepFreeze(q), echoable: one !== undefined && isEchoableName(String(one.name)), udpLimit: udpLimit(q) };
}

/**
 * parse() memoised by the query's bytes after the id (RFC 1035 §4.1.1: the id is the
 * first two bytes and nothing else in a decoded message depends on them), so a name
 * asked again costs a map lookup instead of dns-packet's decode. The returned packet
 * carries this query's own id; the memoised part is frozen, so no caller can change
 * what another query sees (a write would throw, and be counted as an internal drop).
 */
function decodeMemoised(buf: Buffer): { q: DecodedPacket | undefined; echoable: boolean; udpLimit: number } {
  if (buf.length > DECODE_MEMO_BYTES) {
    const p = parse(buf);
    return p.q ? { ...p, q: { ...p.q, id: buf.readUInt16BE(0) } } : { ...p, q: undefined };
  }
  const key = buf.toString('latin1', 2);
  let p = decodeMemo.get(key);
  if (p === undefined) {
    p = parse(buf);
    if (decodeMemo.size >= DECODE_MEMO_MAX) decodeMemo.clear();
    decodeMemo.set(key, p);
  }
  return p.q ? { q: { ...p.q, id: buf.readUInt16BE(0) }, echoable: p.echoable, udpLimit: p.udpLimit } : { q: undefined, echoable: false, udpLimit: p.udpLimit };
}

/**
 * buildResponse for a one-question query, memoised: encoding is most of a local
 * answer's cost (dns-packet's name and record encoding), and the same name is asked
 * again and again. The key holds everything the encoded bytes depend on except the
 * message id — rcode, the question exactly as asked (case included), RD, the OPT
 * record's presence, the size limit and every answer record in order (type, TTL, data;
 * each answer's name is the question's) — so a cached response is never stale: a
 * registry change or another shuffle order is another key. On a hit the cached bytes
 * are copied and the query's id written into the first two (RFC 1035 §4.1.1).
 */
function answerFor(q: DecodedPacket, rcode: Rcode, answers: Answer[], limit: number): { response: Buffer; truncated: boolean } {
  const question = q.questions![0];
  const hadOpt = q.additionals?.some((a) => a.type === 'OPT') ?? false;
  let key = `${rcode}|${question.type}|${question.class}|${q.flag_rd ? 1 : 0}|${hadOpt ? 1 : 0}|${limit}|${question.name}`;
  for (const a of answers) key += `|${a.type} ${(a as { ttl?: number }).ttl} ${String((a as { data?: unknown }).data)}`;
  const hit = answerCache.get(key);
  if (hit) {
    const response = Buffer.allocUnsafe(hit.response.length);
    hit.response.copy(response);
    response.writeUInt16BE((q.id ?? 0) & 0xffff, 0);
    return { response, truncated: hit.truncated };
  }
  const built = buildResponse(q, rcode, answers, limit);
  if (answerCache.size >= ANSWER_CACHE_MAX) answerCache.clear();
  answerCache.set(key, { response: Buffer.from(built.response), truncated: built.truncated });
  return built;
}

/** A SERVFAIL response to a query's bytes (all upstreams failed); undefined if it does not decode. */
export function servfail(query: Buffer): Buffer | undefined {
  if (query.length < 12 || query.length > MAX_QUERY_BYTES) return undefined;
  const q = decodeQuery(query);
  if (!q || q.flag_qr) return undefined;
  return buildResponse(q, 'SERVFAIL', [], CLASSIC_UDP_LIMIT, false).response;
}

/**
 * Decide what to do with one query. Pure; never throws, whatever the bytes.
 *
 * @param query the DNS message bytes (UDP payload, or a TCP message without its length prefix)
 * @param names the name source (registry lookups with isolation applied)
 * @param transport 'udp' limits the response to 512 B / the EDNS0 size; 'tcp' to 65535 B
 * @returns an answer to send, 'forward' (relay the bytes upstream), or 'drop' with a reason
 */
export function answerQuery(query: Buffer, names: NameSource, transport: 'udp' | 'tcp'): Outcome {
  if (query.length < 12) return { kind: 'drop', reason: 'short' };
  if (query.length > MAX_QUERY_BYTES) return { kind: 'drop', reason: 'too-big' };
  const parsed = decodeMemoised(query);
  const q = parsed.q;
  if (!q) return { kind: 'drop', reason: 'malformed' };
  if (q.flag_qr) return { kind: 'drop', reason: 'not-a-query' };
  const limit = transport === 'udp' ? parsed.udpLimit : 65535;
  const opcode = (q as { opcode?: string }).opcode;
  if (opcode !== 'QUERY') return { kind: 'answer', rcode: 'NOTIMP', qtype: 'NONE', ...buildResponse(q, 'NOTIMP', [], limit, false) };
  if (q.questions?.length !== 1) return { kind: 'answer', rcode: 'FORMERR', qtype: 'NONE', ...buildResponse(q, 'FORMERR', [], limit, false) };
  const question = q.questions[0];
  if (!parsed.echoable) return { kind: 'drop', reason: 'malformed' };
  const qtype = String(question.type);
  const qname = String(question.name).toLowerCase().replace(/\.$/, '') + '.';
  if (question.class !== 'IN') return { kind: 'forward', qtype };

  const domain = names.domain;
  if (qname === domain || qname.endsWith('.' + domain)) {
    const addrs = qname === domain ? [] : names.lookup(qname);
    const addrs6 = qname === domain ? [] : names.lookup6?.(qname) ?? [];
    if (!addrs.length && !addrs6.length) return { kind: 'answer', rcode: 'NXDOMAIN', qtype, ...answerFor(q, 'NXDOMAIN', [], limit) };
    const answers: Answer[] = [
      ...(qtype === 'A' || qtype === 'ANY' ? addrs.map((a): Answer => ({ type: 'A', class: 'IN', name: question.name, ttl: names.ttl, data: a })) : []),
      ...(qtype === 'AAAA' || qtype === 'ANY' ? addrs6.map((a): Answer => ({ type: 'AAAA', class: 'IN', name: question.name, ttl: names.ttl, data: a })) : []),
    ];
    return { kind: 'answer', rcode: 'NOERROR', qtype, ...answerFor(q, 'NOERROR', answers, limit) };
  }
  // A single-label name ("db.") that is a name in our domain is answered as if qualified
  // (db.weave.local.): resolvers that try the bare name first — Docker's embedded DNS
  // writes ndots:0, and musl then never applies the search list — reach us that way.
  // Single labels we do not know are forwarded as before.
  if (qname.length > 1 && qname.indexOf('.') === qname.length - 1) {
    const addrs = names.lookup(qname + domain);
    if (addrs.length) {
      const addrs6 = names.lookup6?.(qname + domain) ?? [];
      const answers: Answer[] = [
        ...(qtype === 'A' || qtype === 'ANY' ? addrs.map((a): Answer => ({ type: 'A', class: 'IN', name: question.name, ttl: names.ttl, data: a })) : []),
        ...(qtype === 'AAAA' || qtype === 'ANY' ? addrs6.map((a): Answer => ({ type: 'AAAA', class: 'IN', name: question.name, ttl: names.ttl, data: a })) : []),
      ];
      return { kind: 'answer', rcode: 'NOERROR', qtype, ...answerFor(q, 'NOERROR', answers, limit) };
    }
  }
  if (qtype === 'PTR') {
    const addr = reverseAddress(qname);
    const addr6 = addr ? undefined : addressOfIp6Arpa(qname);
    const hosts = addr ? names.reverse(addr) : addr6 ? names.reverse6?.(addr6) ?? [] : [];
    if (hosts.length) {
      const answers: Answer[] = hosts.map((h) => ({ type: 'PTR', class: 'IN', name: question.name, ttl: names.ttl, data: h.replace(/\.$/, '') }));
      return { kind: 'answer', rcode: 'NOERROR', qtype, ...answerFor(q, 'NOERROR', answers, limit) };
    }
  }
  return { kind: 'forward', qtype };
}
