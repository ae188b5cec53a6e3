/**
 * End-to-end test of the TAP binding (router/overlay/tap.ts + router/overlay/native/tap.cc).
 *
 * Needs root and /dev/net/tun. Everything that creates a device runs in a child
 * process (helpers/tap-child.ts) started with `ip netns exec` inside a network
 * namespace this test creates (tsw-tap-<pid>) and deletes afterwards; a TAP
 * lives in the namespace of the process that opens it and vanishes with it.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { useNetns } from './lib/netns.js';

const NS = `tsw-tap-${process.pid}`;
const CHILD = fileURLToPath(new URL('./helpers/tap-child.js', import.meta.url));

function hasCommand(cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

function skipReason(): string | undefined {
  if (process.platform !== 'linux') return 'TAP devices are Linux-only';
  if (process.getuid?.() !== 0) return 'needs root (creates a network namespace and TAP devices)';
  if (!existsSync('/dev/net/tun')) return '/dev/net/tun is missing (modprobe tun)';
  if (!hasCommand('ip')) return 'the `ip` command (iproute2) is missing';
  return undefined;
}

const skip = skipReason();
if (skip !== undefined) process.stderr.write(`tap.test: skipped: ${skip}\n`);

interface ChildResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs the child in the namespace, optionally behind a wrapper command; bounded to 15 s. */
function runChild(mode: string, wrap: string[] = []): Promise<ChildResult> {
  const t0 = Date.now();
  return new Promise((resolve) => {
    execFile(
      'ip',
      ['netns', 'exec', NS, ...wrap, process.execPath, CHILD, mode],
      { env: { ...process.env, TSW_TAP_CHILD: '1' }, timeout: 60_000, killSignal: 'SIGKILL' },
      (err, stdout, stderr) => {
        const e = err as (Error & { code?: number | string; signal?: NodeJS.Signals }) | null;
        resolve({
          code: e === null ? 0 : typeof e.code === 'number' ? e.code : null,
          signal: e?.signal ?? null,
          stdout,
          stderr,
          ms: Date.now() - t0,
        });
      },
    );
  });
}

/** Runs a JSON-reporting mode and returns its report, failing on a bad exit. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- a child's JSON report, read field by field
async function childJson(mode: string, wrap: string[] = []): Promise<Record<string, any>> {
  const r = await runChild(mode, wrap);
  assert.equal(r.signal, null, `child ${mode} was killed (hung?): ${r.stderr}`);
  assert.equal(r.code, 0, `child ${mode} exited ${r.code}: ${r.stderr}${r.stdout}`);
  const line = r.stdout.trim().split('\n').pop() ?? '';
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const rep = JSON.parse(line) as Record<string, any>;
  assert.equal(rep.ok, true, `child ${mode} failed: ${rep.error}`);
  return rep;
}

describe('TAP binding (root, netns)', { skip }, () => {
  useNetns(NS, { loopbackUp: false });

  it('carries real traffic both ways: ARP/ICMP responder answers ping, bursts arrive whole and batched', async () => {
    const r = await childJson('traffic');
    assert.equal(r.name, 'tswtap0');
    assert.equal(r.fdIsNumber, true);
    // ping 10.99.0.2: the kernel's frames were read, our replies were written and accepted.
    assert.equal(r.pingCode, 0);
    assert.equal(r.pingReceived, 5);
    assert.equal(r.bigPingReceived, 2, '8000-byte echoes through a 9000 MTU TAP');
    assert.ok(r.arpReplies >= 1);
    assert.equal(r.echoReplies, 7);
    assert.equal(r.bigEcho, 2);
    // 2000 datagrams sent in one tick: none lost, in order, several per callback.
    assert.equal(r.burstGot, 2000);
    assert.equal(r.burstInOrder, true);
    assert.ok(r.maxCount > 1, `expected batching, max batch was ${r.maxCount}`);
    assert.ok(r.maxCount <= 256, 'a batch never exceeds the batch limit');
    assert.equal(r.layoutOk, true, 'frames are contiguous, ordered and inside the slab');
    assert.equal(r.bigUdpLen, 14 + 20 + 8 + 8000, 'a jumbo frame is read whole');
    assert.equal(r.bigUdpPayloadOk, true);
    // Frames we built reached a kernel UDP socket via write, writeBatch and writeSlab.
    assert.deepEqual(r.written, [100, 100, 100]);
    assert.equal(r.kernelGot, 300);
    assert.equal(r.kernelGotAll, true);
    assert.equal(r.kernelGotBeyondCount, false, 'writeBatch honours count');
    // Link down: EIO counted, not thrown.
    assert.equal(r.writeWhileDown, false);
    assert.equal(r.downErrorsDelta, 1);
    assert.equal(r.lastWriteError, 'EIO');
    // Interface deleted: exactly one error report, then reading stops.
    assert.deepEqual(r.errorCodes, ['EBADFD']);
    assert.equal(r.errorIsTapError, true);
    assert.match(r.errorMessage, /^TAP tswtap0: read failed: .*reading stopped$/);
    assert.equal(r.stats.readErrors, 1);
    assert.ok(r.stats.readFrames >= 2000 + 7 + 1);
    assert.ok(r.stats.readBatches < r.stats.readFrames);
    assert.equal(r.stats.writeFrames, 300 + 7 + r.arpReplies);
    assert.equal(r.stats.readTruncated, 0);
    assert.equal(r.fdAfterClose, -1);
    assert.equal(r.writeAfterClose, false);
  });

  it('flow cache, IPv6 next hop: sends from a socket connected to the hop, survives ICMPv6 errors left on it, closes it with the flows; WEAVE_NO_CONNECTED6=1 turns it off', async () => {
    const r = await childJson('conn6');
    const what = JSON.stringify(r);
    assert.equal(r.installed, true);
    // Ping frames leave one per wake-up; on a loaded machine a few go two at a time to JavaScript.
    assert.ok(r.connected.length >= 17, `nearly every echo request took the cache: ${what}`);
    for (const d of r.connected) {
      assert.equal(d.address, '::1');
      assert.notEqual(d.port, r.sleevePort, 'an IPv6 hop gets its datagrams from the connected socket, not the sleeve socket');
    }
    assert.equal(new Set(r.connected.map((d: { port: number }) => d.port)).size, 1, 'one connected socket per hop');
    assert.equal(r.afterConnected.conn6Sockets, 1);
    assert.equal(r.afterConnected.conn6Opened, 1);
    assert.equal(r.afterConnected.conn6Failed, 0);
    assert.equal(r.whileGone, 0);
    // Every send while the hop was gone and the first after it came back found a port
    // unreachable left by the datagram before; each was sent again, none was lost to it
    // and the cache was never emptied.
    assert.ok(r.afterBack.stats.conn6Retries >= 5, `stale ICMPv6 errors were retried: ${what}`);
    assert.equal(r.afterBack.flows.errors, 0, `no send counted as failed: ${what}`);
    assert.equal(r.afterBack.flows.clears, 0, 'the flows were never cleared');
    assert.ok(r.back.length >= 17, `after the hop came back its datagrams arrive from the cache: ${what}`);
    assert.equal(r.afterBack.stats.conn6Opened, 1, 'the same socket carried on');
    assert.equal(r.afterClear, 0, 'clearFlows closes the connected sockets');
    // Off: the sleeve socket sends.
    assert.equal(r.offInstalled, true);
    assert.ok(r.off.length >= 8, what);
    for (const d of r.off) assert.equal(d.port, r.sleevePort, 'WEAVE_NO_CONNECTED6=1: from the sleeve socket');
    assert.equal(r.offStats.conn6Opened, 0);
  });

  it('flow cache: cached frames leave without JavaScript, and the wait between them keeps timers and other sockets on time', async () => {
    const r = await childJson('nest');
    assert.equal(r.linked, true);
    assert.equal(r.relinked, false, 'a TAP links once');
    assert.equal(r.installed, true);
    assert.equal(r.pingCode, 1, 'ping gets no replies (nothing answers), but sends all 300');
    // A wake-up that brings two frames (a timer delayed the read) goes to JavaScript whole.
    assert.equal(r.sinkDatagrams, r.flows.frames, `every frame the cache forwarded reached the sink: ${JSON.stringify(r)}`);
    // Under heavy machine load more frames arrive two per wake-up (those go to JavaScript).
    assert.ok(r.sinkIcmp >= 270, `nearly every echo request took the cache: ${JSON.stringify(r)}`);
    assert.ok(r.jsFrames <= 10 + 300 - r.flows.frames, `JavaScript saw only what the cache did not take: ${r.jsFrames}`);
    assert.ok(r.ticks >= r.elapsedMs / 5 / 2, `the 5 ms timer kept firing: ${r.ticks} ticks in ${r.elapsedMs} ms`);
    assert.ok(r.maxLateMs < 25, `timer at most 25 ms late (was ${r.maxLateMs} ms)`);
    assert.ok(r.idleCpuMs < 60, `idle wait does not spin: ${r.idleCpuMs} ms CPU in 300 ms`);
  });

  it('flow cache, encrypted next hop: frames sealed in C open with a JS Opener, counter shared, and a re-key stops the old key at once', async () => {
    const r = await childJson('sealed');
    assert.equal(r.installed, true);
    assert.equal(r.reinstalled, true);
    // Two frames in one wake-up go to JavaScript (more of them on a loaded machine).
    assert.ok(r.flows1.crypto >= 20, `echo requests sealed in C: ${JSON.stringify(r.flows1)}`);
    assert.equal(r.flows1.crypto, r.flows1.frames);
    assert.equal(r.failed, 0, `every datagram opened: ${JSON.stringify(r.openerStats)}`);
    assert.equal(r.opened, r.sinkDatagrams);
    assert.equal(r.exact, r.opened, 'each is the template, the length and the frame');
    assert.equal(r.outerOk, r.sinkDatagrams, 'ENCRYPTED outer header with the template\'s sender');
    assert.equal(r.seqAfterC, r.flows1.crypto, 'C sealed with the Sealer\'s own counter');
    assert.equal(r.seqsDistinct, true, 'no counter used twice within an epoch');
    assert.equal(r.flows2.crypto, r.flows1.crypto, 'after the re-key nothing was sealed with the old key');
    assert.ok(r.jsAfterRekey >= 20, `those frames went to JavaScript: ${r.jsAfterRekey}`);
    assert.ok(r.flows3.crypto >= r.flows2.crypto + 10, `reinstalled with the new key: ${JSON.stringify(r.flows3)}`);
    assert.equal(r.sealerEpoch, 1);
    assert.equal(r.openerEpoch, 1, 'the JS Opener followed to the new epoch');
  });

  it('flow cache, bulk frames: multi-frame wake-ups leave from C, plaintext and sealed, in order, as GSO runs', async () => {
    const r = await childJson('bulk');
    assert.equal(r.plainInstalled, true);
    assert.equal(r.sealedInstalled, true);
    // 40 pings of 7,000 bytes = 200 fragments per phase, each >= 512 bytes.
    assert.equal(r.flowsPlain.frames, 200, `every plaintext fragment left from C: ${JSON.stringify(r.flowsPlain)}`);
    assert.equal(r.jsPlain, 0, 'JavaScript saw none of them');
    assert.ok(r.flowsPlain.batches < r.flowsPlain.frames, `wake-ups of several frames were taken whole: ${JSON.stringify(r.flowsPlain)}`);
    assert.equal(r.plainDatagrams, 200);
    assert.equal(r.plainExact, 200, 'each plaintext datagram is the template, the length and the frame');
    assert.equal(r.flows.frames, 400, `every sealed fragment left from C: ${JSON.stringify(r.flows)}`);
    assert.equal(r.flows.crypto, 200);
    assert.equal(r.jsFrames, 0);
    assert.equal(r.sealedDatagrams, 200);
    assert.equal(r.failed, 0, `every datagram opened with the JS Opener: ${JSON.stringify(r.openerStats)}`);
    assert.equal(r.exact, 200);
    assert.equal(r.outOfOrder, 0, 'counters arrive in sealing order');
    assert.equal(r.seqsDistinct, true, 'no counter used twice');
    assert.equal(r.seqAfterC, 200, 'C sealed with the Sealer\'s own counter');
    assert.ok(r.egressGso > 0, `equal-sized runs left as UDP GSO sends: ${r.egressGso}`);
    // Small tails: 40 pings of 5,960 bytes = 4 bulk fragments + one 82-byte fragment each.
    assert.equal(r.tails.installed, true);
    assert.equal(r.tails.frames, 200, `every fragment, the small last ones too, left from C: ${JSON.stringify(r.tails)}`);
    assert.equal(r.tails.js, 0, 'JavaScript saw none of them');
    assert.ok(r.tails.batches < r.tails.frames, `wake-ups holding a bulk run and its tail were taken whole: ${JSON.stringify(r.tails)}`);
    assert.equal(r.tails.datagrams, 200);
  });

  it('flow cache, small frames: consecutive ones of a wake-up leave from C packed into FRAMES datagrams, plaintext and sealed, within the path', async () => {
    const r = await childJson('packed');
    // 40 pings of 1,000 bytes at MTU 300 = 160 fragments of 202-314 bytes per phase.
    for (const label of ['plain', 'sealed', 'narrow'] as const) {
      const p = r[label];
      const what = `${label}: ${JSON.stringify(p)}`;
      assert.equal(p.installed, true, what);
      assert.ok(p.code === 0 || p.code === 1, `ping ran (nothing answers, so exit 1): ${what}`);
      assert.equal(p.frames, 160, `every fragment left from C: ${what}`);
      assert.equal(p.js, 0, `JavaScript saw none of them: ${what}`);
      assert.equal(p.records, 160, `the sink got every frame: ${what}`);
      assert.equal(p.exact, 160, `each record is the template's peers, the length and the fragment: ${what}`);
      assert.equal(p.bad, 0, what);
      assert.equal(p.failed, 0, what);
      assert.ok(p.batches < p.frames, `wake-ups held several frames: ${what}`);
      assert.ok(p.packed > 0 && p.multi > 0 && p.datagrams < p.records, `frames shared datagrams: ${what}`);
    }
    assert.equal(r.sealed.crypto, 160, 'every sealed frame counted as sealed in C');
    assert.equal(r.sealed.outOfOrder, 0, 'counters arrive in sealing order');
    assert.equal(r.sealed.seqsDistinct, true, 'no counter used twice');
    assert.equal(r.seqAfterC, r.sealed.datagrams, 'one counter per packed datagram, the Sealer\'s own');
    assert.ok(r.narrow.maxLen <= 8 + 14 + 600, `no datagram over the path (header + record + 600): ${r.narrow.maxLen}`);
    assert.ok(r.plain.maxLen > 8 + 14 + 600, `with room, more frames share one: ${r.plain.maxLen}`);
  });

  it('reports clear, coded errors for bad names, busy names, bad arguments and closed taps', async () => {
    const r = await childJson('errors');
    assert.equal(r.busy.code, 'EBUSY');
    assert.equal(r.busy.name, 'TapError');
    assert.match(r.busy.message, /^TAP tswtap1 is busy/);
    assert.equal(r.notTap.code, 'EINVAL');
    assert.match(r.notTap.message, /TAP lo/);
    assert.equal(r.tooLong.code, 'ENAMETOOLONG');
    assert.match(r.tooLong.message, /16 bytes/);
    assert.equal(r.fifteenOk, null, 'a 15-byte name is fine');
    assert.equal(r.slash.code, 'EINVAL');
    assert.equal(r.empty.code, 'EINVAL');
    assert.equal(r.percent.code, 'EINVAL');
    assert.equal(r.badMaxFrame.code, 'EINVAL');
    assert.equal(r.badBatch.code, 'EINVAL');
    assert.equal(r.badSlab.code, 'EINVAL');
    assert.equal(r.startTwice.code, 'EALREADY');
    assert.equal(r.writeNotBuffer.code, 'ERR_INVALID_ARG_TYPE');
    assert.equal(r.writeBadOffset.code, 'ERR_OUT_OF_RANGE');
    assert.equal(r.writeBadLength.code, 'ERR_OUT_OF_RANGE');
    assert.equal(r.writeFracOffset.code, 'ERR_OUT_OF_RANGE');
    assert.equal(r.batchNotArray.code, 'ERR_INVALID_ARG_TYPE');
    assert.equal(r.batchBadElem.code, 'ERR_INVALID_ARG_TYPE');
    assert.equal(r.batchBadCount.code, 'ERR_OUT_OF_RANGE');
    assert.equal(r.slabOutside.code, 'ERR_OUT_OF_RANGE');
    assert.equal(r.slabNotU32.code, 'ERR_INVALID_ARG_TYPE');
    assert.equal(r.slabWroteNothing, true, 'a bad pair aborts writeSlab before any write');
    assert.equal(r.downWrite, false);
    assert.equal(r.downStats.writeErrors, 1);
    assert.equal(r.downStats.writeFrames, 0);
    assert.equal(r.downStats.lastWriteError, 'EIO');
    assert.equal(r.startAfterClose.code, 'ECLOSED');
    assert.equal(r.writeAfterClose, false);
    assert.equal(r.reopen, null, 'close() frees the name');
    // udpSocketFd / setDontFragment
    assert.equal(r.fdUnbound, null);
    assert.ok(Number.isInteger(r.fdBound) && r.fdBound > 2);
    assert.equal(r.fdClosed, null);
    assert.equal(r.dfOn, null);
    assert.equal(r.dfOff, null);
    assert.equal(r.df6, null, 'IPv6 sockets are accepted');
    assert.equal(r.dfNotSocket.code, 'ENOTSOCK');
    assert.equal(r.dfBadFd.code, 'ERR_OUT_OF_RANGE');
  });

  it('setDontFragment: DF on refuses oversize datagrams, DF off lets the kernel fragment', async () => {
    const r = await childJson('df');
    assert.equal(r.smallDf, 'ok');
    assert.equal(r.smallFrame[0], 14 + 20 + 8 + 1000);
    assert.equal(r.smallFrame[1] & 0x4000, 0x4000, 'DF bit set');
    assert.equal(r.bigDf, 'EMSGSIZE');
    assert.equal(r.bigNoDf, 'ok');
    // 3008 bytes of UDP over a 1500 MTU: 1480 + 1480 + 48 bytes of fragments.
    assert.deepEqual(r.bigFrames, [1514, 0x2000, 1514, 0x2000 | 185, 82, 370]);
  });

  it('drops and counts frames longer than maxFrame, keeps one of exactly maxFrame', async () => {
    const r = await childJson('truncate');
    assert.deepEqual(r.lens, [1518, 52]);
    assert.equal(r.readTruncated, 1);
  });

  it('close() inside onBatch is safe and lets the process exit', async () => {
    const r = await childJson('close-in-batch');
    assert.equal(r.calls, 1, 'no callback after close');
    assert.equal(r.fd, -1);
  });

  it('an exception thrown by onBatch becomes an uncaught exception', async () => {
    const r = await childJson('throw');
    assert.equal(r.caught, 'boom from onBatch');
    assert.equal(r.stats.readBatches, 1);
  });

  it('without onError, a read failure becomes an uncaught TapError', async () => {
    const r = await childJson('no-onerror');
    assert.equal(r.isTapError, true);
    assert.equal(r.code, 'EBADFD');
    assert.match(r.message, /^TAP tswtap11: read failed/);
    assert.equal(r.readErrors, 1);
  });

  it('a started TAP keeps the loop alive; unref() does not; close() and process.exit() end promptly', async () => {
    const alive = await runChild('alive');
    assert.equal(alive.code, 0, alive.stderr);
    assert.equal(alive.stdout, 'alive\n');

    const unref = await runChild('unref');
    assert.equal(unref.code, 0, unref.stderr);
    assert.equal(unref.stdout, 'started\n', 'an unref-ed TAP must not hold the process');

    const closed = await runChild('close-exit');
    assert.equal(closed.code, 0, closed.stderr);
    assert.equal(closed.stdout, 'closed\n');
    assert.ok(closed.ms < 5000, `exit after close took ${closed.ms} ms`);

    const exited = await runChild('exit-while-started');
    assert.equal(exited.signal, null, 'process.exit() with a started TAP must not hang');
    assert.equal(exited.code, 0, exited.stderr);
    assert.equal(exited.stdout, 'exiting\n');
  });

  it('explains a missing /dev/net/tun', { skip: hasCommand('unshare') ? undefined : 'unshare missing' }, async () => {
    // A private mount namespace hides /dev/net under an empty tmpfs.
    const wrap = ['unshare', '--mount', '--propagation', 'private', 'sh', '-c', 'mount -t tmpfs tmpfs /dev/net && exec "$0" "$@"'];
    const r = await childJson('open-error', wrap);
    assert.equal(r.err.code, 'ENOENT');
    assert.equal(r.err.message, '/dev/net/tun not found: load the tun module (modprobe tun)');
  });

  it('explains a missing CAP_NET_ADMIN', { skip: hasCommand('setpriv') ? undefined : 'setpriv missing' }, async () => {
    const wrap = ['setpriv', '--bounding-set', '-net_admin', '--inh-caps', '-net_admin'];
    const r = await childJson('open-error', wrap);
    assert.equal(r.err.code, 'EPERM');
    assert.equal(r.err.message, 'creating TAP tswtap6 needs root (CAP_NET_ADMIN)');
  });

  it('leaves no TAP behind once its process is gone', () => {
    const links = execFileSync('ip', ['-n', NS, '-o', 'link', 'show'], { encoding: 'utf8' });
    const names = links
      .trim()
      .split('\n')
      .map((l) => l.split(':')[1]?.trim());
    assert.deepEqual(names, ['lo']);
  });
});
