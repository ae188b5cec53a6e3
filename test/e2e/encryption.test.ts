/**
 * Encryption end to end: a network password closes the mesh and seals the data path.
 * Captures run in the underlay namespace, so we see exactly what crosses the wire.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { Testbed, canRunE2E, until, sleep, sh, type Host, type Container } from './lib/testbed.js';

const skip = canRunE2E();
const PASSWORD = 'correct horse battery staple';

/** Start tcpdump on the underlay switch; returns a function that stops it and gives the pcap bytes. */
async function capture(bed: Testbed, file: string, filter: string[]): Promise<() => Promise<Buffer>> {
  const ns = `${bed.prefix}ul`;
  // `ip netns exec` execs tcpdump, so this pid is tcpdump's own: stop exactly this one.
  const p = spawn('ip', ['netns', 'exec', ns, 'tcpdump', '-i', 'ul0', '-U', '-s', '0', '-w', file, ...filter], { stdio: 'ignore' });
  const exited = new Promise<void>((r) => p.once('exit', () => r()));
  await sleep(1500);
  return async () => {
    await sleep(1000);
    p.kill('SIGINT');
    await Promise.race([exited, sleep(5000)]);
    p.kill('SIGKILL');
    return readFileSync(file);
  };
}

/** UDP payloads in a pcap (Ethernet link type), with addresses. */
function udpPayloads(pcap: Buffer): Array<{ src: string; dst: string; dport: number; payload: Buffer }> {
  const out: Array<{ src: string; dst: string; dport: number; payload: Buffer }> = [];
  let off = 24;
  while (off + 16 <= pcap.length) {
    const incl = pcap.readUInt32LE(off + 8);
    const pkt = pcap.subarray(off + 16, off + 16 + incl);
    off += 16 + incl;
    if (pkt.length < 42 || pkt.readUInt16BE(12) !== 0x0800 || pkt[23] !== 17) continue;
    const ihl = (pkt[14] & 0x0f) * 4;
    const ipStr = (o: number): string => [...pkt.subarray(o, o + 4)].join('.');
    const udp = 14 + ihl;
    const len = pkt.readUInt16BE(udp + 4);
    out.push({ src: ipStr(26), dst: ipStr(30), dport: pkt.readUInt16BE(udp + 2), payload: pkt.subarray(udp + 8, udp + len) });
  }
  return out;
}

async function sendMarker(from: Container, to: Container, marker: string): Promise<void> {
  // A few tries: on a loaded machine the listener may not be up yet.
  let last = '';
  for (let i = 0; i < 3; i++) {
    to.host.bed.background(['ip', 'netns', 'exec', to.ns, 'nc', '-l', '-p', String(5000 + i)]);
    await sleep(500);
    const r = await sh('ip', ['netns', 'exec', from.ns, 'sh', '-c', `printf '%s' '${marker}' | nc -q 1 -w 3 ${to.ips[0]} ${5000 + i}`], { timeoutMs: 15_000 });
    if (r.code === 0) return;
    last = r.stderr;
  }
  assert.fail(`nc failed: ${last}`);
}

describe('encryption: password-protected mesh', { skip, timeout: 600_000 }, () => {
  const bed = new Testbed('e');
  let h1: Host, h2: Host, h3: Host, h4: Host, h5: Host;
  let c1: Container, c2: Container, c3: Container;
  const pw = { WEAVE_PASSWORD: PASSWORD };

  before(async () => {
    [h1, h2, h3, h4, h5] = await bed.up(5);
    await h1.launch(['--ipalloc-range', '', '--no-proxy'], { env: pw });
    await h2.launch(['--ipalloc-range', '', '--no-proxy', h1.ip], { env: pw });
    // h3 keeps every frame in JavaScript (no flow cache): c1 <-> c3 is then a C sealer
    // talking to a JS opener and back, on the wire.
    await h3.launch(['--ipalloc-range', '', '--no-proxy', h1.ip], { env: { ...pw, WEAVE_NO_FLOW_CACHE: '1' } });
    c1 = await h1.container('c1', ['ip:10.32.0.1/12']);
    c2 = await h2.container('c2', ['ip:10.32.0.2/12']);
    c3 = await h3.container('c3', ['ip:10.32.0.3/12']);
  });
  after(() => bed.destroy());

  test('three hosts with the same password: encrypted connections, ping and iperf3 work', async () => {
    await until('3-peer mesh', async () => (await h1.report()).Router.Connections.filter((c: { State: string }) => c.State === 'established').length === 2, 30_000);
    const st = await h1.mustWeave(['status']);
    assert.match(st, /Encryption: enabled/);
    assert.match(await h1.mustWeave(['status', 'connections']), /established .* encrypted/);
    assert.equal((await h1.report()).Router.Encryption, true);
    for (const [a, b] of [[c1, c2], [c2, c3], [c3, c1]] as const) await a.mustPing(b.ips[0], {}, `${a.name}->${b.name}`);
    bed.background(['ip', 'netns', 'exec', c2.ns, 'iperf3', '-s', '-1']);
    await sleep(500);
    const r = await c1.exec(['iperf3', '-c', c2.ips[0], '-t', '2', '-J'], 30_000);
    assert.equal(r.code, 0, r.stderr);
    const mbps = (JSON.parse(r.stdout) as { end: { sum_received: { bits_per_second: number } } }).end.sum_received.bits_per_second / 1e6;
    console.log(`encrypted iperf3 c1->c2: ${mbps.toFixed(0)} Mbit/s`);
    assert.ok(mbps > 10);
    // h2 received the bulk stream as GRO batches of sealed TCP segments: its ingress flow
    // cache opened them in C and wrote them to the TAP merged into GSO super-frames.
    const tm = (await h2.report()).Router.TapMerge as Record<string, { Frames: number; SuperFrames: number; Fallbacks: number }>;
    console.log(`h2 TAP write merge: ${JSON.stringify(tm)}`);
    assert.ok(tm.FlowCache!.SuperFrames > 0 && tm.FlowCache!.Frames > 2 * tm.FlowCache!.SuperFrames, `flow cache merged on h2: ${JSON.stringify(tm)}`);
    assert.equal(tm.FlowCache!.Fallbacks + tm.Router!.Fallbacks, 0, 'the kernel took every super-frame');
  });

  test('flow cache on encrypted connections: pings and a ping flood are sealed and opened in C, interoperating with a router without the cache', async () => {
    type Fc = { Enabled: boolean; Egress: { Frames: number; Errors: number; Sealed: number }; Ingress: { Frames: number; Errors: number; Opened: number } };
    const fc = async (h: Host): Promise<Fc> => (await h.report()).Router.FlowCache as Fc;
    const drops = async (h: Host): Promise<number> => { const d = (await h.report()).Router.Drops; return (d.auth ?? 0) + (d.replay ?? 0) + (d.malformed ?? 0); };
    const [b1, b2, b3] = [await fc(h1), await fc(h2), await fc(h3)];
    assert.equal(b1.Enabled, true);
    assert.equal(b3.Enabled, false);
    const d1 = await drops(h1), d2 = await drops(h2), d3 = await drops(h3);
    // c1 <-> c2: both routers seal and open in C. One frame per wake-up: the cache's case.
    let r = await c1.exec(['ping', '-c', '40', '-i', '0.02', '-W', '1', c2.ips[0]], 30_000);
    assert.equal(r.code, 0, r.stdout);
    assert.match(r.stdout, / 0% packet loss/);
    // A ping flood (the next request leaves as soon as the reply is in).
    r = await c1.exec(['ping', '-f', '-c', '2000', '-W', '1', c2.ips[0]], 60_000);
    const got = Number(/(\d+) received/.exec(r.stdout)?.[1] ?? 0);
    assert.ok(got >= 1900, `flood: ${r.stdout}`);
    const [a1, a2] = [await fc(h1), await fc(h2)];
    for (const [h, a, b] of [['h1', a1, b1], ['h2', a2, b2]] as const) {
      assert.ok(a.Egress.Sealed - b.Egress.Sealed >= 1000, `${h} sealed in C: ${JSON.stringify(a.Egress)} (before ${JSON.stringify(b.Egress)})`);
      assert.ok(a.Ingress.Opened - b.Ingress.Opened >= 1000, `${h} opened in C: ${JSON.stringify(a.Ingress)} (before ${JSON.stringify(b.Ingress)})`);
      assert.equal(a.Egress.Errors + a.Ingress.Errors, 0, h);
    }
    // c1 <-> c3: h1 seals and opens in C, h3 in JavaScript: one wire format.
    r = await c1.exec(['ping', '-c', '30', '-i', '0.02', '-W', '1', c3.ips[0]], 30_000);
    assert.equal(r.code, 0, r.stdout);
    assert.match(r.stdout, / 0% packet loss/);
    const c = await fc(h1);
    assert.ok(c.Egress.Sealed - a1.Egress.Sealed >= 15, `h1 sealed for h3 in C: ${JSON.stringify(c.Egress)}`);
    assert.ok(c.Ingress.Opened - a1.Ingress.Opened >= 15, `h1 opened h3's in C: ${JSON.stringify(c.Ingress)}`);
    assert.equal((await fc(h3)).Egress.Sealed, 0);
    // Nothing failed to open anywhere.
    assert.deepEqual([await drops(h1), await drops(h2), await drops(h3)], [d1, d2, d3], 'no auth/replay/malformed drops');
  });

  test('a marker sent through the overlay never appears in clear on the underlay', async () => {
    const marker = `TSWEAVE-SECRET-MARKER-${process.pid}`;
    const stop = await capture(bed, path.join(bed.dir, 'enc.pcap'), ['udp', 'port', '6783']);
    await sendMarker(c1, c2, marker);
    const pcap = await stop();
    const dgrams = udpPayloads(pcap);
    assert.ok(dgrams.length > 3, `captured ${dgrams.length} datagrams`);
    assert.equal(pcap.includes(Buffer.from(marker)), false, 'marker visible on the underlay');
    // Every data datagram between the peers is sealed (type 5 = ENCRYPTED).
    for (const d of dgrams) assert.equal(d.payload[1], 5, `datagram type ${d.payload[1]} sent in clear`);
  });

  test('a captured datagram replayed later is dropped and counted', async () => {
    const stop = await capture(bed, path.join(bed.dir, 'replay.pcap'), ['udp', 'and', 'src', 'host', h1.ip, 'and', 'dst', 'host', h2.ip]);
    await c1.mustPing(c2.ips[0]);
    const dgrams = udpPayloads(await stop()).filter((d) => d.dport === 6783 && d.payload[1] === 5);
    assert.ok(dgrams.length > 0, 'captured a sealed datagram');
    const before = (await h2.report()).Router.Drops.replay ?? 0;
    const hex = dgrams[0].payload.toString('hex');
    // Re-inject it from h1's namespace, so it comes from the right address.
    const py = `import socket;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.sendto(bytes.fromhex('${hex}'),('${h2.ip}',6783))`;
    for (let i = 0; i < 3; i++) assert.equal((await h1.exec(['python3', '-c', py])).code, 0);
    await until('replay drop counted', async () => ((await h2.report()).Router.Drops.replay ?? 0) >= before + 3, 10_000);
    // A copy with a fresh sequence number (so the replay window lets it through) and a
    // flipped ciphertext byte fails authentication instead.
    const t = Buffer.from(dgrams[dgrams.length - 1].payload);
    t[10] = 0x7f;
    t[t.length - 20] ^= 0xff;
    const authBefore = (await h2.report()).Router.Drops.auth ?? 0;
    const py2 = `import socket;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.sendto(bytes.fromhex('${t.toString('hex')}'),('${h2.ip}',6783))`;
    await h1.exec(['python3', '-c', py2]);
    await until('auth drop counted', async () => ((await h2.report()).Router.Drops.auth ?? 0) > authBefore, 10_000);
    await c1.mustPing(c2.ips[0], {}, 'traffic still flows');
  });

  test('a wrong password and no password are rejected and never join', async () => {
    await h4.launch(['--ipalloc-range', '', '--no-proxy', h1.ip], { env: { WEAVE_PASSWORD: 'wrong password' } });
    await h5.launch(['--ipalloc-range', '', '--no-proxy', h1.ip]);
    await until('rejections logged', async () => /password mismatch/.test(h1.logTail(200)) && /password mismatch/.test(h4.logTail(200)) && /password mismatch/.test(h5.logTail(200)), 30_000, 500);
    const r1 = await h1.report();
    const names = r1.Router.Peers.map((p: { NickName: string }) => p.NickName);
    assert.deepEqual(names.sort(), ['h1', 'h2', 'h3']);
    assert.equal((await h4.report()).Router.Peers.length, 1);
    assert.equal((await h5.report()).Router.Peers.length, 1);
    assert.match(h5.logTail(200), /password mismatch: the peer has a password set, we do not/);
  });

  test('the password appears nowhere: daemon argv and environment, report, state directory', async () => {
    const pid = h1.pid()!;
    assert.equal(readFileSync(`/proc/${pid}/cmdline`).includes(PASSWORD), false);
    assert.equal(readFileSync(`/proc/${pid}/environ`).includes(PASSWORD), false);
    assert.equal(JSON.stringify(await h1.report()).includes(PASSWORD), false);
    for (const f of readdirSync(h1.stateDir)) {
      const p = path.join(h1.stateDir, f);
      if (statSync(p).isFile()) assert.equal(readFileSync(p).includes(PASSWORD), false, f);
    }
  });
});

describe('encryption: trusted subnets carry data unencrypted', { skip, timeout: 300_000 }, () => {
  const bed = new Testbed('t');
  after(() => bed.destroy());

  test('connections show unencrypted and the marker is visible on the underlay', async () => {
    const [h1, h2] = await bed.up(2);
    const env = { WEAVE_PASSWORD: PASSWORD };
    await h1.launch(['--ipalloc-range', '', '--no-proxy', '--trusted-subnets', '192.168.99.0/24'], { env });
    await h2.launch(['--ipalloc-range', '', '--no-proxy', '--trusted-subnets', '192.168.99.0/24', h1.ip], { env });
    const c1 = await h1.container('c1', ['ip:10.32.0.1/12']);
    const c2 = await h2.container('c2', ['ip:10.32.0.2/12']);
    await until('established', async () => (await h1.mustWeave(['status', 'connections'])).includes('established'), 30_000);
    assert.match(await h1.mustWeave(['status', 'connections']), /unencrypted/);
    assert.deepEqual((await h1.report()).Router.TrustedSubnets, ['192.168.99.0/24']);
    await c1.mustPing(c2.ips[0]);
    const marker = `TSWEAVE-TRUSTED-MARKER-${process.pid}`;
    // Trusted and unencrypted, the data may take the fast datapath (UDP 6784) or the sleeve.
    const stop = await capture(bed, path.join(bed.dir, 'trusted.pcap'), ['udp', 'and', '(', 'port', '6783', 'or', 'port', '6784', ')']);
    await sendMarker(c1, c2, marker);
    assert.equal((await stop()).includes(Buffer.from(marker)), true, 'marker travels in clear within trusted subnets');
  });
});

describe('encryption: IPv6 trusted underlay subnets (IPv6-only underlay)', { skip, timeout: 300_000 }, () => {
  const bed = new Testbed('t6');
  after(() => bed.destroy());

  test('peers inside the trusted IPv6 subnets connect unencrypted; a peer outside them stays encrypted', async () => {
    // h1 fd00:77::1, h2 fd00:77::2 trusted (two /128s); h3 fd00:77::3 not.
    const [h1, h2, h3] = await bed.up(3, { underlay: 'ipv6' });
    const env = { WEAVE_PASSWORD: PASSWORD };
    const trusted = 'fd00:77::1/128,fd00:77::2/128';
    const args = ['--ipalloc-range', '', '--no-proxy', '--no-fastdp', '--trusted-subnets', trusted];
    await h1.launch(args, { env });
    await h2.launch([...args, h1.ip], { env });
    await h3.launch([...args, h1.ip], { env });
    type Conn = { State: string; Encrypted?: boolean; NickName?: string };
    const conns = async (h: Host): Promise<Conn[]> => ((await h.report()).Router.Connections as Conn[]).filter((x) => x.State === 'established');
    await until('full mesh over the IPv6 underlay', async () => (await conns(h1)).length === 2 && (await conns(h2)).length === 2 && (await conns(h3)).length === 2, 90_000);
    assert.deepEqual((await h1.report()).Router.TrustedSubnets, ['fd00:77::1/128', 'fd00:77::2/128']);
    const enc = async (h: Host, peer: string): Promise<boolean | undefined> => (await conns(h)).find((x) => x.NickName === peer)?.Encrypted;
    assert.equal(await enc(h1, 'h2'), false, 'h1-h2 (both trusted) unencrypted');
    assert.equal(await enc(h2, 'h1'), false, 'h2-h1 (both trusted) unencrypted');
    assert.equal(await enc(h1, 'h3'), true, 'h1-h3 (h3 not trusted) encrypted');
    assert.equal(await enc(h3, 'h1'), true, 'h3-h1 encrypted');
    assert.equal(await enc(h2, 'h3'), true, 'h2-h3 encrypted');
    // Data: the marker is seen on the underlay between trusted peers only.
    const c1 = await h1.container('c1', ['ip:10.32.0.1/12']);
    const c2 = await h2.container('c2', ['ip:10.32.0.2/12']);
    const c3 = await h3.container('c3', ['ip:10.32.0.3/12']);
    await c1.mustPing(c2.ips[0], { tries: 10 });
    await c1.mustPing(c3.ips[0], { tries: 10 });
    const m12 = `TSWEAVE-T6-12-${process.pid}`;
    const m13 = `TSWEAVE-T6-13-${process.pid}`;
    const stop = await capture(bed, path.join(bed.dir, 'trusted6.pcap'), ['udp', 'and', '(', 'port', '6783', 'or', 'port', '6784', ')']);
    await sendMarker(c1, c2, m12);
    await sendMarker(c1, c3, m13);
    const pcap = await stop();
    assert.equal(pcap.includes(Buffer.from(m12)), true, 'h1 -> h2 in clear (trusted IPv6 subnet)');
    assert.equal(pcap.includes(Buffer.from(m13)), false, 'h1 -> h3 encrypted (h3 outside the trusted subnets)');
  });
});
