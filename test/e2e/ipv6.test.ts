/**
 * IPv6 on the overlay (issue #21) end to end, on the IPv4-underlay testbed: three hosts
 * launched with --ipalloc-range6 fd00:77::/64. h1 and h2 use the fast datapath between
 * them; h3 has --no-fastdp (plaintext sleeve) and an underlay MTU of 1400, so its sleeve
 * paths carry less than the overlay MTU (for Packet Too Big). The last test relaunches h1
 * and h3 with a password (encrypted sleeve). Groups: A = 10.32.1.0/24, B = 10.32.2.0/24;
 * every container's IPv6 address derives from its IPv4 one (fd00:77::a20:1XX).
 *
 * "Nothing arrives" is asserted with tcpdump on the target's ethwe and a control packet
 * from a legitimate sender in the same capture, never with a failed ping alone.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { Testbed, canRunE2E, must, sh, until, sleep, type Host, type Container } from './lib/testbed.js';

const need = ['nft', 'tcpdump', 'python3', 'dig'].filter((b) => !['/usr/sbin', '/usr/bin', '/sbin', '/bin'].some((d) => existsSync(`${d}/${b}`)));
const missing = canRunE2E() ?? (need.length ? `needs ${need.join(', ')} (Debian: nftables, tcpdump, python3, dnsutils; see scripts/setup.sh)` : undefined);
// Under CI a missing prerequisite is a failure, not a skip.
const skip = process.env.CI === 'true' ? undefined : missing;
if (process.env.CI === 'true' && missing) test('IPv6 e2e prerequisites', () => assert.fail(`IPv6 e2e cannot run: ${missing}`));
const run = !(process.env.CI === 'true' && missing);

const RANGE6 = 'fd00:77::/64';
const PASSWORD = 'ipv6 overlay test password';
/** The derived IPv6 addresses, written out by hand (fd00:77:: + the IPv4 address in hex). */
const G = {
  a1: 'fd00:77::a20:10b', a2: 'fd00:77::a20:10c', a3: 'fd00:77::a20:10d', a4: 'fd00:77::a20:115',
  b1: 'fd00:77::a20:20b', b2: 'fd00:77::a20:20c', b3: 'fd00:77::a20:20d',
} as const;
const LL = (g: string): string => g.replace('fd00:77::', 'fe80::');

// ---- forged frames, sent with AF_PACKET from inside a container (as in isolation.test.ts) ----
// Frames 20 ms apart: each reaches the router's TAP in a wake-up of its own, the case
// the flow cache forwards in C (a burst would go to JavaScript whole, hiding a bypass).
const SENDER_PY = [
  'import socket, sys, time',
  's = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)',
  's.bind((sys.argv[1], 0))',
  'n = 0',
  'for h in sys.argv[3:]:',
  '    for _ in range(int(sys.argv[2])):',
  '        n += s.send(bytes.fromhex(h)) > 0',
  '        time.sleep(0.02)',
  'print(n)',
].join('\n');

const macB = (m: string): Buffer => Buffer.from(m.split(':').map((x) => parseInt(x, 16)));
/** 16 bytes of an address written as "fd00:77::a20:10b" / "fe80::a20:10b" / "ff02::1" (one "::"). */
function v6B(a: string): Buffer {
  const [l, r] = a.split('::');
  const lg = l ? l.split(':') : [];
  const rg = r ? r.split(':') : [];
  const groups = [...lg, ...Array<string>(8 - lg.length - rg.length).fill('0'), ...rg];
  const b = Buffer.alloc(16);
  groups.forEach((x, i) => b.writeUInt16BE(parseInt(x, 16), 2 * i));
  return b;
}
/** An ICMPv6 message in IPv6 in Ethernet, with a valid checksum (RFC 4443 §2.3), hop limit 255. */
function icmp6Frame(dmac: string, smac: string, src: string, dst: string, type: number, body: Buffer): string {
  const m = Buffer.concat([Buffer.from([type, 0, 0, 0]), body]);
  const len = Buffer.alloc(4);
  len.writeUInt32BE(m.length);
  const all = Buffer.concat([v6B(src), v6B(dst), len, Buffer.from([0, 0, 0, 58]), m, Buffer.alloc(m.length % 2)]);
  let s = 0;
  for (let i = 0; i < all.length; i += 2) s += all.readUInt16BE(i);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  m.writeUInt16BE(~s & 0xffff, 2);
  const ip = Buffer.alloc(40);
  ip[0] = 0x60;
  ip.writeUInt16BE(m.length, 4);
  ip[6] = 58;
  ip[7] = 255;
  v6B(src).copy(ip, 8);
  v6B(dst).copy(ip, 24);
  return Buffer.concat([macB(dmac), macB(smac), Buffer.from([0x86, 0xdd]), ip, m]).toString('hex');
}
const echo = (dmac: string, smac: string, src: string, dst: string): string => icmp6Frame(dmac, smac, src, dst, 128, Buffer.from('\u0077\u0077\u0000\u0001tsweave!', 'latin1'));
/** An unsolicited Neighbour Advertisement (override) for `target` with target link-layer address `tlla`. */
const advert = (smac: string, src: string, target: string, tlla: string): string =>
  icmp6Frame('33:33:00:00:00:01', smac, src, 'ff02::1', 136, Buffer.concat([Buffer.from([0x20, 0, 0, 0]), v6B(target), Buffer.from([2, 1]), macB(tlla)]));
const routerAdvert = (smac: string, src: string): string => icmp6Frame('33:33:00:00:00:01', smac, src, 'ff02::1', 134, Buffer.from([64, 0, 0x07, 0x08, 0, 0, 0, 0, 0, 0, 0, 0]));

async function sendRaw(c: Container, frames: string[], times = 3): Promise<number> {
  const r = await c.exec(['python3', '-c', SENDER_PY, 'ethwe', String(times), ...frames], 20_000);
  assert.equal(r.code, 0, `raw sender failed: ${r.stderr}`);
  return Number(r.stdout.trim());
}

/** tcpdump -Q in on ethwe inside a namespace, until stop(). */
class Capture {
  readonly lines: string[] = [];
  private constructor(private readonly proc: ChildProcess, readonly where: string) {}

  static async start(ns: string, procs: ChildProcess[]): Promise<Capture> {
    const p = spawn('ip', ['netns', 'exec', ns, 'tcpdump', '--immediate-mode', '-i', 'ethwe', '-Q', 'in', '-n', '-e', '-l', 'ip6'], { stdio: ['ignore', 'pipe', 'pipe'] });
    procs.push(p);
    const cap = new Capture(p, ns);
    let buf = '';
    p.stdout!.on('data', (d: Buffer) => {
      buf += d;
      const parts = buf.split('\n');
      buf = parts.pop()!;
      cap.lines.push(...parts);
    });
    let err = '';
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`tcpdump in ${ns} did not start: ${err}`)), 15_000);
      p.stderr!.on('data', (d: Buffer) => {
        err += d;
        if (/listening on/.test(err)) {
          clearTimeout(t);
          resolve();
        }
      });
      p.once('exit', () => {
        clearTimeout(t);
        reject(new Error(`tcpdump in ${ns} exited: ${err}`));
      });
    });
    return cap;
  }

  async waitFor(text: string, timeoutMs = 8000): Promise<void> {
    const end = Date.now() + timeoutMs;
    while (!this.lines.some((l) => l.includes(text))) {
      if (Date.now() > end) throw new Error(`tcpdump in ${this.where} never showed "${text}" (exit ${this.proc.exitCode}); it has:\n${this.lines.join('\n')}`);
      await sleep(50);
    }
  }

  async stop(): Promise<string[]> {
    await sleep(400);
    this.proc.kill('SIGINT');
    await Promise.race([new Promise((r) => this.proc.once('exit', r)), sleep(2000)]);
    this.proc.kill('SIGKILL');
    return this.lines;
  }
}

const srcMacOf = (line: string): string | undefined => /^\S+ ([0-9a-f:]{17}) >/.exec(line)?.[1];

async function macOf(ns: string): Promise<string> {
  const out = await must('ip', ['-n', ns, '-o', 'link', 'show', 'dev', 'ethwe']);
  return /link\/ether ([0-9a-f:]{17})/.exec(out)![1];
}

/** Drop counters of a host's bridge rules by reason (all our tables). */
async function nftDrops(h: Host): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const fam of ['bridge', 'ip6']) {
    const text = (await h.exec(['nft', 'list', 'table', fam, 'tsweave'])).stdout;
    for (const m of text.matchAll(/counter packets (\d+) bytes \d+ drop comment "(\w+)"/g)) out[m[2]] = (out[m[2]] ?? 0) + Number(m[1]);
    // The ports' chains count into the bridge table's named counters (`counter spoof { packets N bytes M }`).
    for (const m of text.matchAll(/counter (\w+) \{\s*packets (\d+) bytes \d+\s*\}/g)) out[m[1]] = (out[m[1]] ?? 0) + Number(m[2]);
  }
  return out;
}

describe('IPv6 overlay: dual-stack containers, isolation, PMTU, DNS', { skip, timeout: 420_000 }, () => {
  if (!run) return;
  const bed = new Testbed('v6');
  const procs: ChildProcess[] = [];
  let h1: Host, h2: Host, h3: Host;
  const c: Record<string, Container> = {};
  const mac: Record<string, string> = {};
  const common = ['--ipalloc-range', '', '--ipalloc-range6', RANGE6, '--no-proxy'];
  const established = async (h: Host): Promise<Array<{ State: string; Path?: string; Encrypted?: boolean; NickName?: string }>> =>
    (await h.report()).Router.Connections.filter((x: { State: string }) => x.State === 'established');

  before(async () => {
    [h1, h2, h3] = await bed.up(3);
    // h3's underlay carries 1400 bytes: its sleeve paths take less than the overlay MTU (1376 + headers).
    await must('ip', ['-n', h3.ns, 'link', 'set', 'eth0', 'mtu', '1400']);
    await h1.launch(common);
    await h2.launch([...common, h1.ip]);
    await h3.launch([...common, '--no-fastdp', h1.ip, h2.ip]);
    const add = async (h: Host, name: string, spec: string): Promise<void> => {
      c[name] = await h.container(name, [spec]);
      mac[name] = await macOf(c[name].ns);
    };
    await add(h1, 'a1', 'ip:10.32.1.11/24');
    await add(h1, 'b1', 'ip:10.32.2.11/24');
    await add(h1, 'a4', 'ip:10.32.1.21/24');
    // The IPv6 form of a spec is accepted when it is the derived one.
    await add(h2, 'a2', `ip:${G.a2}/120`);
    await add(h2, 'b2', 'ip:10.32.2.12/24');
    await add(h3, 'a3', 'ip:10.32.1.13/24');
    await add(h3, 'b3', 'ip:10.32.2.13/24');
    await until('full mesh', async () => (await Promise.all([h1, h2, h3].map(established))).every((l) => l.length === 2), 60_000);
  });
  after(async () => {
    for (const p of procs) p.kill('SIGKILL');
    await bed.destroy();
  });

  test('containers are dual-stack at once (derived global /120, fe80::IPv4 link-local, no DAD wait); weave ps shows both; bad IPv6 specs are one line', async () => {
    assert.deepEqual(c.a2.ips, ['10.32.1.12'], 'ip:fd00:77::a20:10c/120 is 10.32.1.12/24');
    const addrs = (await c.a1.exec(['ip', '-o', '-6', 'addr', 'show', 'dev', 'ethwe'])).stdout;
    assert.match(addrs, new RegExp(`inet6 ${G.a1}/120 `));
    assert.match(addrs, new RegExp(`inet6 ${LL(G.a1)}/64 `));
    assert.equal(addrs.trim().split('\n').length, 2, `only the derived addresses (no EUI-64 link-local):\n${addrs}`);
    assert.doesNotMatch(addrs, /tentative|dadfailed/);
    const ps = await h1.mustWeave(['ps']);
    assert.match(ps, new RegExp(`^netns:/var/run/netns/${c.a1.ns} ${mac.a1} 10\\.32\\.1\\.11/24 ${G.a1}/120$`, 'm'));
    const bad = await h1.weave(['attach', 'ip:fd00:78::a20:10b/120', `netns:/var/run/netns/${c.a1.ns}`]);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /not of the form fd00:77::<IPv4>/);
    assert.equal(bad.stderr.trim().split('\n').length, 1, bad.stderr);
  });

  test('ping6 within a group across hosts: fast datapath (h1-h2) and plaintext sleeve (h3); global and link-local', async () => {
    await until('h1-h2 on fastdp', async () => (await established(h1)).some((x) => x.NickName === 'h2' && x.Path === 'fastdp'), 20_000);
    assert.ok((await established(h3)).every((x) => x.Path === 'sleeve' && !x.Encrypted));
    await c.a1.mustPing(G.a2, { tries: 10 }, 'a1 -> a2 (fastdp)');
    await c.a1.mustPing(G.a3, { tries: 10 }, 'a1 -> a3 (sleeve)');
    await c.a3.mustPing(G.a2, { tries: 10 }, 'a3 -> a2 (sleeve)');
    await c.b1.mustPing(G.b3, { tries: 10 }, 'b1 -> b3 (sleeve)');
    await c.a1.mustPing(`${LL(G.a2)}%ethwe`, { tries: 10 }, 'a1 -> a2 link-local');
    await c.a3.mustPing(`${LL(G.a1)}%ethwe`, { tries: 10 }, 'a3 -> a1 link-local');
    await c.a1.mustPing(G.a4, { tries: 5 }, 'a1 -> a4 (same host)');
  });

  test('a 24 MiB IPv6 TCP stream over the plaintext sleeve arrives byte for byte (written to the TAP merged: TCPV6)', async () => {
    const bytes = 24 << 20;
    // Deterministic payload, the same formula in the sender and here.
    const gen = 'const b=Buffer.alloc(1<<20);const fill=(k)=>{for(let i=0;i<b.length;i++)b[i]=Math.imul(k*1048576+i,-1640531535)>>>24;return b;};';
    const server = `const h=require('crypto').createHash('sha256');let n=0;const srv=require('net').createServer((s)=>{s.on('data',(d)=>{h.update(d);n+=d.length;});s.on('end',()=>{process.stdout.write(n+' '+h.digest('hex')+'\\n');srv.close();});});srv.listen(7000,'${G.a3}');setTimeout(()=>process.exit(3),90000).unref();`;
    const client = `${gen}const net=require('net');const go=(t)=>{const s=net.connect(7000,'${G.a3}');s.on('error',()=>{if(t>0)setTimeout(()=>go(t-1),200);else process.exit(2);});s.on('connect',async()=>{for(let k=0;k<${bytes >> 20};k++){if(!s.write(Buffer.from(fill(k))))await new Promise((r)=>s.once('drain',r));}s.end();});};go(50);`;
    const recv = sh('ip', ['netns', 'exec', c.a3.ns, process.execPath, '-e', server], { timeoutMs: 100_000 });
    const send = await sh('ip', ['netns', 'exec', c.a1.ns, process.execPath, '-e', client], { timeoutMs: 100_000 });
    assert.equal(send.code, 0, `sender: ${send.stderr}`);
    const r = await recv;
    assert.equal(r.code, 0, `receiver: ${r.stderr}`);
    const want = createHash('sha256');
    const b = Buffer.alloc(1 << 20);
    for (let k = 0; k < bytes >> 20; k++) {
      for (let i = 0; i < b.length; i++) b[i] = Math.imul(k * 1048576 + i, -1640531535) >>> 24;
      want.update(b);
    }
    assert.equal(r.stdout.trim(), `${bytes} ${want.digest('hex')}`, 'a1 -> a3 over the sleeve: every byte, in order');
  });

  test('across groups nothing arrives (global and link-local, same host and other hosts); drops counted', async () => {
    const caps = await Promise.all([c.b1, c.b2, c.b3].map((x) => Capture.start(x.ns, procs)));
    const drops0 = (await h1.report()).Router.Drops.isolation ?? 0;
    const nft0 = await nftDrops(h1);
    await c.a1.exec(['ip', '-6', 'route', 'replace', 'fd00:77::a20:200/120', 'dev', 'ethwe']);
    for (const y of ['b1', 'b2', 'b3'] as const) {
      for (const dst of [G[y], LL(G[y])]) {
        const to = dst.startsWith('fe80') ? `${dst}%ethwe` : dst;
        const first = await c.a1.exec(['ping', '-c', '1', '-W', '1', to], 10_000);
        await c.a1.exec(['ip', '-6', 'neigh', 'replace', dst, 'lladdr', mac[y], 'dev', 'ethwe', 'nud', 'permanent']);
        const again = await c.a1.exec(['ping', '-c', '1', '-W', '1', to], 10_000);
        assert.ok(first.code !== 0 && again.code !== 0, `a1 -> ${y} ${dst} answered`);
      }
    }
    // Controls: a legitimate sender of group B into every capture.
    for (const [i, y] of (['b1', 'b2', 'b3'] as const).entries()) {
      const from = y === 'b3' ? c.b1 : c.b3;
      await from.mustPing(G[y], { tries: 5 }, `control -> ${y}`);
      await caps[i].waitFor(`> ${G[y]}: ICMP6, echo request`);
    }
    const lines = await Promise.all(caps.map((x) => x.stop()));
    for (const [i, y] of (['b1', 'b2', 'b3'] as const).entries()) {
      const bad = lines[i].filter((l) => l.includes(G.a1) || l.includes(LL(G.a1)) || srcMacOf(l) === mac.a1);
      assert.deepEqual(bad, [], `${y} received IPv6 from a1 (group A)`);
    }
    const drops1 = (await h1.report()).Router.Drops.isolation ?? 0;
    const nft1 = await nftDrops(h1);
    assert.ok(drops1 > drops0, `h1 router isolation drops ${drops0} -> ${drops1}`);
    assert.ok((nft1.isolation ?? 0) > (nft0.isolation ?? 0), `h1 bridge isolation drops ${JSON.stringify(nft0)} -> ${JSON.stringify(nft1)}`);
  });

  test('forged IPv6 sources, advertisements for others\' addresses and RAs reach nobody: the bridge drops them (counted), and with the rules removed the router does', async () => {
    const targets = ['a2', 'b2', 'a3', 'b1'] as const;
    const caps = await Promise.all(targets.map((y) => Capture.start(c[y].ns, procs)));
    const nft0 = await nftDrops(h1);
    const frames = [
      echo(mac.a2, mac.a1, G.a3, G.a2), // another member's address (same group)
      echo(mac.b2, mac.a1, G.b1, G.b2), // another group's address
      echo(mac.b1, mac.a1, LL(G.b2), LL(G.b1)), // another group's link-local, same host
      advert(mac.a1, LL(G.a1), G.b2, mac.a1), // "b2's address is at a1"
      advert(mac.a1, LL(G.a1), G.a2, mac.a1), // "a2's address is at a1"
      routerAdvert(mac.a1, LL(G.a1)),
    ];
    assert.equal(await sendRaw(c.a1, frames), frames.length * 3);
    const forged = (l: string): boolean => srcMacOf(l) === mac.a1 && (/router advertisement|tgt is fd00:77::a20:(20c|10c)/.test(l) || [`${G.a3} >`, `${G.b1} >`, `${LL(G.b2)} >`].some((s) => l.includes(s)));
    // Controls into every capture.
    for (const [i, y] of targets.entries()) {
      const from = y.startsWith('a') ? c.a4 : c.b3;
      await from.mustPing(G[y], { tries: 5 }, `control -> ${y}`);
      await caps[i].waitFor(`> ${G[y]}: ICMP6, echo request`);
    }
    const lines = await Promise.all(caps.map((x) => x.stop()));
    for (const [i, y] of targets.entries()) assert.deepEqual(lines[i].filter(forged), [], `${y} received forged frames`);
    const nft1 = await nftDrops(h1);
    assert.ok((nft1.spoof ?? 0) - (nft0.spoof ?? 0) >= frames.length * 3, `h1 bridge spoof drops ${JSON.stringify(nft0)} -> ${JSON.stringify(nft1)}`);

    // The router alone (h3, sleeve): remove h3's kernel rules, forge from a3.
    const caps2 = await Promise.all(['a2', 'b2', 'b3'].map((y) => Capture.start(c[y].ns, procs)));
    // Legitimate a3 → a2 traffic first (global and link-local): the router caches those
    // flows (30 s); the forged frames between the same MACs must still be judged.
    await c.a3.mustPing(G.a2, { tries: 3 }, 'a3 -> a2 (installs a flow)');
    await caps2[0].waitFor(`${G.a3} > ${G.a2}`);
    const spoof0 = (await h3.report()).Router.Drops.spoof ?? 0;
    for (const fam of ['bridge', 'ip', 'arp', 'ip6']) await must('ip', ['netns', 'exec', h3.ns, 'nft', 'delete', 'table', fam, 'tsweave']);
    try {
      const sent = await sendRaw(c.a3, [echo(mac.a2, mac.a3, G.a1, G.a2), advert(mac.a3, LL(G.a3), G.b2, mac.a3), echo(mac.b3, mac.a3, G.b1, G.b3)], 3);
      assert.equal(sent, 9);
      // Negative control: with no rules the same-host forged frame does arrive.
      await caps2[2].waitFor(`${G.b1} > ${G.b3}: ICMP6, echo request`).catch((err: Error) => assert.fail(`negative control: ${err.message}`));
    } finally {
      await h3.mustWeave(['hide']); // any API call re-syncs the rules
    }
    await c.a4.mustPing(G.a2, { tries: 5 }, 'control a4 -> a2');
    await caps2[0].waitFor(`${G.a4} > ${G.a2}`);
    await c.b1.mustPing(G.b2, { tries: 5 }, 'control b1 -> b2');
    await caps2[1].waitFor(`${G.b1} > ${G.b2}`);
    const [la2, lb2] = await Promise.all(caps2.map((x) => x.stop()));
    const forged3 = (l: string): boolean => srcMacOf(l) === mac.a3 && (l.includes(`${G.a1} >`) || l.includes(`${G.b1} >`) || /tgt is fd00:77::a20:20c/.test(l));
    assert.deepEqual([...la2, ...lb2].filter(forged3), [], 'h3\'s router let a forged frame out');
    const spoof1 = (await h3.report()).Router.Drops.spoof ?? 0;
    assert.ok(spoof1 - spoof0 >= 6, `h3 router spoof drops ${spoof0} -> ${spoof1}`);
  });

  test('PMTU: a 1,400-byte ping6 over a path that carries less gets ICMPv6 Packet Too Big from the router, then succeeds', async () => {
    const maxFrame = (await established(h3)).find((x) => x.NickName === 'h1') as { MTU?: number } | undefined;
    const mtu0 = (await h3.report()).Router.Drops.mtu ?? 0;
    const cap = await Capture.start(c.a3.ns, procs);
    const first = await c.a3.exec(['ping', '-c', '1', '-W', '2', '-s', '1400', G.a1], 15_000);
    await cap.waitFor(`${G.a1} > ${G.a3}: ICMP6, packet too big, mtu 1`).catch((err: Error) => assert.fail(`no Packet Too Big (path ${JSON.stringify(maxFrame)}; ping said ${first.stdout}${first.stderr}): ${err.message}`));
    await cap.stop();
    const route = (await c.a3.exec(['ip', '-6', 'route', 'get', G.a1])).stdout;
    assert.match(route, /mtu 1[23]\d\d/, `a3 learnt the path MTU from it: ${route}`);
    assert.ok(((await h3.report()).Router.Drops.mtu ?? 0) > mtu0, 'the oversize frame was counted');
    // The reply may meet the same limit on h1 once (a1 learns too), so a few tries.
    assert.ok(await c.a3.ping(G.a1, { size: 1400, tries: 6, timeoutS: 2 }), 'then the 1,400-byte ping succeeds (fragmented by the sender)');
  });

  test('weaveDNS: AAAA and ip6.arpa PTR (isolated like A), weave dns-lookup prints both families', async () => {
    await h1.mustWeave(['dns-add', '10.32.1.11', `netns:/var/run/netns/${c.a1.ns}`, '-h', 'web6.weave.local']);
    await until('h2 knows web6', async () => {
      const r = await h2.weave(['dns-lookup', 'web6']);
      return r.code === 0 && r.stdout.split('\n').includes('10.32.1.11') && r.stdout.split('\n').includes(G.a1);
    }, 20_000);
    const dig = async (x: Container, args: string[]): Promise<string> => (await x.exec(['dig', '@169.254.53.53', '+time=2', '+tries=2', ...args], 20_000)).stdout;
    assert.match(await dig(c.a2, ['+short', 'AAAA', 'web6.weave.local']), new RegExp(`^${G.a1}$`, 'm'));
    assert.match(await dig(c.a2, ['+short', '-x', G.a1]), /^web6\.weave\.local\.$/m);
    assert.match(await dig(c.b2, ['AAAA', 'web6.weave.local']), /status: NXDOMAIN/, 'group B does not learn group A\'s address');
  });

  test('weave expose gives the host its derived IPv6 on the bridge: it reaches its exposed group (local, fastdp, sleeve), not another group; hide takes it away', async () => {
    const H = 'fd00:77::a20:164'; // 10.32.1.100
    const hostPing = async (to: string, tries: number): Promise<boolean> => {
      for (let i = 0; i < tries; i++) if ((await sh('ip', ['netns', 'exec', h1.ns, 'ping', '-c', '1', '-W', '1', to], { timeoutMs: 15_000 })).code === 0) return true;
      return false;
    };
    assert.equal((await h1.mustWeave(['expose', 'ip:10.32.1.100/24'])).trim(), `10.32.1.100 ${H}`, 'with range6 expose prints both addresses');
    const addrs = (await sh('ip', ['-n', h1.ns, '-o', '-6', 'addr', 'show', 'dev', 'weave'])).stdout;
    assert.match(addrs, new RegExp(`inet6 ${H}/120 `), addrs);
    assert.match(addrs, new RegExp(`inet6 ${LL(H)}/64 `), addrs);
    assert.equal(addrs.trim().split('\n').length, 2, `only the derived addresses (no EUI-64 link-local):\n${addrs}`);
    assert.doesNotMatch(addrs, /tentative|dadfailed/);
    assert.ok(await hostPing(G.a1, 10), 'h1 (exposed) -> a1 on its own bridge');
    assert.ok(await hostPing(G.a2, 10), 'h1 (exposed) -> a2 over the fast datapath');
    await c.a3.mustPing(H, { tries: 10 }, 'a3 (sleeve) -> exposed h1');
    // Another group: give the host a route so only isolation can stop it.
    await must('ip', ['-n', h1.ns, '-6', 'route', 'add', 'fd00:77::a20:200/120', 'dev', 'weave']);
    try {
      assert.equal(await hostPing(G.b1, 2), false, 'h1 exposed in A must not reach b1');
      assert.equal(await hostPing(G.b2, 2), false, 'h1 exposed in A must not reach b2');
    } finally {
      await must('ip', ['-n', h1.ns, '-6', 'route', 'del', 'fd00:77::a20:200/120', 'dev', 'weave']);
    }
    assert.equal((await h1.mustWeave(['hide', 'ip:10.32.1.100/24'])).trim(), `10.32.1.100 ${H}`);
    assert.doesNotMatch((await sh('ip', ['-n', h1.ns, '-o', '-6', 'addr', 'show', 'dev', 'weave'])).stdout, /inet6/);
  });

  test('with the router stopped the bridge filters still hold for IPv6; encrypted sleeve carries IPv6', async () => {
    for (const h of [h1, h2, h3]) await h.mustWeave(['stop']);
    const cap = await Capture.start(c.b1.ns, procs);
    const nft0 = await nftDrops(h1);
    await c.a1.mustPing(G.a4, { tries: 5 }, 'a1 -> a4 with no router (same host, same group)');
    await c.a1.mustPing(`${LL(G.a4)}%ethwe`, { tries: 5 }, 'a1 -> a4 link-local with no router');
    assert.equal((await c.a1.exec(['ping', '-c', '2', '-i', '0.2', '-W', '1', G.b1], 10_000)).code === 0, false, 'a1 -> b1 with no router');
    assert.equal(await sendRaw(c.a1, [echo(mac.b1, mac.a1, G.a4, G.b1)], 3), 3);
    const lines = await cap.stop();
    assert.deepEqual(lines.filter((l) => srcMacOf(l) === mac.a1 || l.includes(G.a1) || l.includes(G.a4)), [], 'b1 heard group A with the router stopped');
    const nft1 = await nftDrops(h1);
    assert.ok((nft1.spoof ?? 0) - (nft0.spoof ?? 0) >= 3 && (nft1.isolation ?? 0) > (nft0.isolation ?? 0), `${JSON.stringify(nft0)} -> ${JSON.stringify(nft1)}`);

    const pw = { env: { WEAVE_PASSWORD: PASSWORD } };
    await h1.launch(common, pw);
    await h3.launch([...common, h1.ip], pw);
    await until('h1-h3 encrypted', async () => (await established(h1)).some((x) => x.NickName === 'h3' && x.Encrypted === true && x.Path === 'sleeve'), 60_000);
    await c.a1.mustPing(G.a3, { tries: 15 }, 'a1 -> a3 (encrypted sleeve)');
    await c.a3.mustPing(`${LL(G.a1)}%ethwe`, { tries: 10 }, 'a3 -> a1 link-local (encrypted sleeve)');
    await c.b3.mustPing(G.b1, { tries: 10 }, 'b3 -> b1 (encrypted sleeve)');
  });

  test('a peer with another --ipalloc-range6 is refused with one line naming both prefixes', async () => {
    await h3.mustWeave(['stop']);
    await h3.launch(['--ipalloc-range', '', '--ipalloc-range6', 'fd00:99::/64', '--no-proxy', h1.ip], { env: { WEAVE_PASSWORD: PASSWORD } });
    const re = /IPv6 range mismatch: peer \S+\((h1|h3)\) uses --ipalloc-range6 fd00:(77|99)::\/64, we use fd00:(77|99)::\/64; relaunch one of them with the same --ipalloc-range6/;
    await until('range6 mismatch logged', async () => re.test(h3.logTail(100) + h1.logTail(100)), 60_000, 500);
    assert.ok(!(await established(h1)).some((x) => x.NickName === 'h3'), 'h3 never joins h1');
  });
});
