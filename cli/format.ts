/**
 * Text layouts of `weave status [targets|connections|peers|ipam]`, rendered from
 * a Report. They mirror the layouts of Weave Net 2.x's status templates
 * (prog/weaver/http.go): right-aligned "Key: value" lines in blocks per
 * service, one line per connection with the address padded to 21 columns and
 * the state to 11, the peer tree with "   -> addr name(nick) established", and the
 * IPAM share table with the name padded to 37 columns.
 */

import type { Report, ReportConnection } from '../router/api/report.js';

/**
 * Characters that must not reach a terminal raw: C0 controls other than newline
 * and tab, DEL, C1 controls (ECMA-48 / ISO 6429 CSI, OSC … introducers), Unicode
 * line/paragraph separators and bidi embedding/override/isolate marks.
 */
const TERMINAL_UNSAFE = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/**
 * Escapes every character of TERMINAL_UNSAFE in `text` as a visible "\xNN" (below
 * U+0100) or "\u{NNNN}", keeping newlines and tabs, so text from peers (nicknames,
 * reasons, addresses) cannot move the cursor, retitle the window or forge lines.
 */
export function escapeTerminal(text: string): string {
  return text.replace(TERMINAL_UNSAFE, (c) => {
    const cp = c.codePointAt(0)!;
    return cp < 0x100 ? `\\x${cp.toString(16).padStart(2, '0')}` : `\\u{${cp.toString(16)}}`;
  });
}

/** Weave's order of connection states in the summary counts. */
const CONNECTION_STATES = ['established', 'pending', 'retrying', 'failed', 'connecting'];

const peerLabel = (name: string, nick: string | undefined): string => `${name}(${nick ?? ''})`;

/** "2 established, 1 failed" over the given keys in order; states not in `order` follow alphabetically. */
function printCounts(counts: Map<string, number>, order: string[]): string {
  const extra = [...counts.keys()].filter((k) => !order.includes(k)).sort();
  return [...order, ...extra]
    .filter((k) => counts.has(k))
    .map((k) => `${counts.get(k)} ${k}`)
    .join(', ');
}

/** Right-aligns keys to Weave's 15-column key field ("  PeerDiscovery: enabled"). */
const kv = (key: string, value: string | number): string => `${key.padStart(15)}: ${value}`;

/**
 * The `weave status` summary. Protocol shows "min..max", or one number when
 * both are equal (as Weave does). The IPAM block is omitted when the Report
 * has no IPAM; its Status line is the allocator's own status text.
 */
function formatStatusRaw(r: Report): string {
  const R = r.Router;
  const lines: string[] = [];
  lines.push(kv('Version', r.Version), '');
  lines.push(kv('Service', 'router'));
  const proto = R.ProtocolMinVersion === R.ProtocolMaxVersion ? `${R.ProtocolMaxVersion}` : `${R.ProtocolMinVersion}..${R.ProtocolMaxVersion}`;
  lines.push(kv('Protocol', `${R.Protocol} ${proto}`));
  lines.push(kv('Name', peerLabel(R.Name, R.NickName)));
  lines.push(kv('Encryption', R.Encryption ? 'enabled' : 'disabled'));
  lines.push(kv('PeerDiscovery', R.PeerDiscovery ? 'enabled' : 'disabled'));
  lines.push(kv('Targets', R.Targets.length));

  const connCounts = new Map<string, number>();
  for (const c of R.Connections) connCounts.set(c.State, (connCounts.get(c.State) ?? 0) + 1);
  const connText = printCounts(connCounts, CONNECTION_STATES);
  lines.push(kv('Connections', `${R.Connections.length}${connText ? ` (${connText})` : ''}`));

  const peerCounts = new Map<string, number>();
  for (const p of R.Peers) {
    for (const c of p.Connections) {
      const k = c.Established ? 'established' : 'pending';
      peerCounts.set(k, (peerCounts.get(k) ?? 0) + 1);
    }
  }
  const peerText = printCounts(peerCounts, ['established', 'pending']);
  lines.push(kv('Peers', `${R.Peers.length}${peerText ? ` (with ${peerText} connections)` : ''}`));
  lines.push(kv('TrustedSubnets', R.TrustedSubnets.length ? R.TrustedSubnets.join(', ') : 'none'));
  if (r.Readiness) lines.push(kv('Readiness', r.Readiness.Ready ? 'ready' : `not ready: ${r.Readiness.Reason}`));

  if (r.IPAM) {
    lines.push('', kv('Service', 'ipam'));
    lines.push(kv('Status', r.IPAM.Status));
    lines.push(kv('Range', r.IPAM.Range));
    lines.push(kv('DefaultSubnet', r.IPAM.DefaultSubnet));
  }
  return lines.join('\n') + '\n';
}

/**
 * Attributes appended after Info, Weave-style "key=value", unless Info already
 * mentions them (the router may fold them into Info itself).
 */
function connectionAttrs(c: ReportConnection): string {
  const attrs: string[] = [];
  if (c.Encrypted && !/\bencrypted\b/.test(c.Info)) attrs.push('encrypted');
  if (c.MTU !== undefined && !/\bmtu=/.test(c.Info)) attrs.push(`mtu=${c.MTU}`);
  return attrs.join(' ');
}

/**
 * `weave status connections`: one line per local connection or attempt:
 * direction ("->" outbound, "<-" inbound), address padded to 21, state padded
 * to 11, Info, then attributes not already in Info.
 */
function formatConnectionsRaw(r: Report): string {
  return r.Router.Connections.map((c) => {
    const attrs = connectionAttrs(c);
    const line = `${c.Outbound ? '->' : '<-'} ${c.Address.padEnd(21)} ${c.State.padEnd(11)} ${c.Info}${attrs ? ` ${attrs}` : ''}`;
    return line.trimEnd() + '\n';
  }).join('');
}

/**
 * `weave status peers`: every known peer, then its connections indented by
 * three spaces: direction, address padded to 21, "name(nick)" padded to 37,
 * and "established" or "pending".
 */
function formatPeersRaw(r: Report): string {
  let out = '';
  for (const p of r.Router.Peers) {
    out += peerLabel(p.Name, p.NickName) + '\n';
    for (const c of p.Connections) {
      out += `   ${c.Outbound ? '->' : '<-'} ${c.Address.padEnd(21)} ${peerLabel(c.Name, c.NickName).padEnd(37)} ${c.Established ? 'established' : 'pending'}\n`;
    }
  }
  return out;
}

/**
 * `weave status targets`: one target address per line; a host name that did not
 * resolve at the last attempt is flagged "unresolved: CODE" (kept: it may resolve later).
 */
function formatTargetsRaw(r: Report): string {
  const unresolved = new Map((r.Router.TargetStates ?? []).filter((t) => t.Unresolved).map((t) => [t.Address, t.Unresolved!]));
  return r.Router.Targets.map((t) => (unresolved.has(t) ? `${t} unresolved: ${unresolved.get(t)!}\n` : `${t}\n`)).join('');
}

/** Go's "%04.1f": one decimal, zero-padded to at least 4 characters ("05.0", "33.3", "100.0"). */
function pct(p: number): string {
  const s = (Number.isFinite(p) ? p : 0).toFixed(1);
  return s.startsWith('-') ? '-' + s.slice(1).padStart(3, '0') : s.padStart(4, '0');
}

/**
 * `weave status ipam`: this peer first with its number of addresses in use,
 * then the other owners in Report order, unreachable ones marked
 * "- unreachable!". "IPs" is right-aligned in 8 columns. In-use addresses are
 * `IPAM.ActiveIPs` when the report has it, else the local endpoints' CIDRs.
 * Empty when IPAM is disabled.
 */
function formatIpamRaw(r: Report): string {
  const ipam = r.IPAM;
  if (!ipam) return '';
  const activeField = (ipam as typeof ipam & { ActiveIPs?: unknown }).ActiveIPs;
  const active = typeof activeField === 'number' ? activeField : r.Endpoints.reduce((n, e) => n + e.CIDRs.length, 0);
  const line = (name: string, nick: string, n: number, p: number, info: string): string =>
    `${peerLabel(name, nick).padEnd(37)} ${String(n).padStart(8)} IPs (${pct(p)}% of total) ${info}`.trimEnd() + '\n';
  let out = '';
  const self = ipam.Owned.find((o) => o.Peer === r.Router.Name);
  if (self) out += line(self.Peer, self.NickName, self.Addresses, self.Percent, `(${active} active)`);
  for (const o of ipam.Owned) {
    if (o.Peer === r.Router.Name) continue;
    out += line(o.Peer, o.NickName, o.Addresses, o.Percent, o.Reachable ? '' : '- unreachable!');
  }
  return out;
}

/** `weave status` summary (formatStatusRaw), with terminal controls escaped. */
export const formatStatus = (r: Report): string => escapeTerminal(formatStatusRaw(r));
/** `weave status connections` (formatConnectionsRaw), with terminal controls escaped. */
export const formatConnections = (r: Report): string => escapeTerminal(formatConnectionsRaw(r));
/** `weave status peers` (formatPeersRaw), with terminal controls escaped. */
export const formatPeers = (r: Report): string => escapeTerminal(formatPeersRaw(r));
/** `weave status targets` (formatTargetsRaw), with terminal controls escaped. */
export const formatTargets = (r: Report): string => escapeTerminal(formatTargetsRaw(r));
/** `weave status ipam` (formatIpamRaw), with terminal controls escaped. */
export const formatIpam = (r: Report): string => escapeTerminal(formatIpamRaw(r));

/**
 * The line `weave expose` / `weave hide` print: the addresses (no prefix length) the
 * host was given or lost, space-separated as Weave prints several — the IPv4 ones,
 * then, with --ipalloc-range6, their derived IPv6 ones (`cidrs6` from the router).
 * Without `cidrs6` the output is exactly the IPv4-only one. Entries that are not
 * strings are ignored; each is made terminal-safe.
 */
export function exposedLine(res: { cidrs: unknown; cidrs6?: unknown }): string {
  const strs = (x: unknown): string[] => (Array.isArray(x) ? x.filter((c): c is string => typeof c === 'string') : []);
  return [...strs(res.cidrs), ...strs(res.cidrs6)].map((c) => escapeTerminal(c.split('/')[0]!)).join(' ');
}
