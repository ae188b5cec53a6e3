/**
 * `weave status dns`: Weave's table, one line per live entry — hostname (without the
 * trailing dot), address, container id (12 characters for Docker ids), origin peer.
 * Pure. Every field came over gossip, so it is escaped before reaching a terminal.
 */
import type { ReportDns } from './subsystem.js';

/** Replace control and non-ASCII characters with \xNN (or \u{…}) so text is safe on a terminal. */
export function terminalSafe(s: string): string {
  return String(s).replace(/[^\x20-\x7e]/gu, (c) => {
    const n = c.codePointAt(0)!;
    return n < 256 ? `\\x${n.toString(16).padStart(2, '0')}` : `\\u{${n.toString(16)}}`;
  });
}

/** The table of live entries, sorted by hostname then address; '' when there are none. */
export function formatDns(d: ReportDns | undefined): string {
  if (!d) return '';
  const rows = d.Entries.filter((e) => e.Tombstone === 0).map((e) => {
    const id = /^[0-9a-f]{64}$/.test(e.ContainerID) ? e.ContainerID.slice(0, 12) : e.ContainerID;
    return [e.Hostname.replace(/\.$/, ''), e.Address, id, e.Origin].map(terminalSafe);
  });
  return rows.map((r) => `${r[0].padEnd(20)} ${r[1].padEnd(15)} ${r[2].padEnd(12)} ${r[3]}`).join('\n');
}
