/**
 * TAP frame rate: frames/s written to one TAP and read from another through a
 * Linux bridge — the router's own position (its TAP is a port of the weave
 * bridge). A writer process blasts frames into TAP `tswbw0` with writeSlab()
 * (256 frames per call); the bridge floods them (unknown unicast destination)
 * to TAP `tswbr0`, where a reader process receives them in batches and touches
 * each frame's destination MAC, as the router's MAC lookup would.
 *
 * The bridge forwarding runs in the writer's write() calls, so the writer is
 * normally the bottleneck and the reader keeps up with small batches; the
 * reader's capacity is therefore also given per CPU-second it used
 * (frames / (user + system time)), an estimate of its ceiling on one core.
 *
 * Everything runs inside a network namespace tsw-tapbench-<pid> created and
 * deleted here. Needs root and the built addon.
 *
 * Usage: node dist/bench/tap-bench.js [seconds=3] [frameBytes=60]
 * Prints one line per side and a JSON summary.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Tap } from '../router/overlay/tap.js';

/** A local experimental EtherType (IEEE 802 "local experimental 1") marks bench frames. */
const ETHERTYPE = 0x88b5;

function send(obj: Record<string, unknown>): void {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

/** Reader role: counts bench frames until told "stop" on stdin. */
function reader(): void {
  const tap = Tap.open('tswbr0', { batch: 256 });
  let frames = 0;
  let bytes = 0;
  let macSum = 0;
  let t0 = 0;
  let tLast = 0;
  tap.start((slab, fr, count) => {
    for (let i = 0; i < count; i++) {
      const off = fr[2 * i];
      if (slab.readUInt16BE(off + 12) !== ETHERTYPE) continue;
      if (frames === 0) t0 = performance.now();
      macSum = (macSum + slab.readUInt32BE(off + 2)) | 0;
      frames++;
      bytes += fr[2 * i + 1];
    }
    tLast = performance.now();
  });
  const cpu0 = process.cpuUsage();
  send({ ready: true });
  createInterface({ input: process.stdin }).on('line', (l) => {
    if (l.trim() !== 'stop') return;
    const cpu = process.cpuUsage(cpu0);
    const cpuSecs = (cpu.user + cpu.system) / 1e6;
    const secs = (tLast - t0) / 1000;
    const st = tap.stats();
    tap.close();
    send({ frames, bytes, secs, cpuSecs, fps: secs > 0 ? frames / secs : 0, framesPerBatch: st.readFrames / Math.max(1, st.readBatches), macSum, stats: st });
    process.exit(0);
  });
}

/** Writer role: on "go", writes for `seconds`, 256 frames per writeSlab call. */
function writer(seconds: number, size: number): void {
  const tap = Tap.open('tswbw0');
  const n = 256;
  const slab = Buffer.alloc(n * size);
  const pairs = new Uint32Array(2 * n);
  for (let i = 0; i < n; i++) {
    const o = i * size;
    // dst 02:00:5e:ff:00:01 (never learned: flooded), src 02:00:5e:ff:00:02
    slab.set([0x02, 0x00, 0x5e, 0xff, 0x00, 0x01, 0x02, 0x00, 0x5e, 0xff, 0x00, 0x02], o);
    slab.writeUInt16BE(ETHERTYPE, o + 12);
    slab.writeUInt32BE(i, o + 14);
    pairs[2 * i] = o;
    pairs[2 * i + 1] = size;
  }
  send({ ready: true });
  createInterface({ input: process.stdin }).on('line', (l) => {
    if (l.trim() !== 'go') return;
    const t0 = performance.now();
    const end = t0 + seconds * 1000;
    let written = 0;
    let calls = 0;
    for (;;) {
      written += tap.writeSlab(slab, pairs, n);
      calls++;
      if ((calls & 15) === 0 && performance.now() >= end) break;
    }
    const secs = (performance.now() - t0) / 1000;
    const st = tap.stats();
    send({ written, secs, fps: written / secs, stats: st });
    // Keep the TAP open until the reader has drained what is in flight.
    setTimeout(() => {
      tap.close();
      process.exit(0);
    }, 500);
  });
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- a child's JSON report, read field by field
function nextJson(p: ChildProcess): Promise<Record<string, any>> {
  return new Promise((resolve, reject) => {
    const rl = createInterface({ input: p.stdout! });
    const timer = setTimeout(() => reject(new Error('bench child timed out')), 30_000);
    rl.once('line', (l) => {
      clearTimeout(timer);
      rl.close();
      try {
        // eslint-disable-next-line @typescript-eslint/no-explicit-any
        resolve(JSON.parse(l) as Record<string, any>);
      } catch {
        reject(new Error(`bench child said: ${l}`));
      }
    });
    p.once('exit', (code) => reject(new Error(`bench child exited ${code}`)));
  });
}

async function main(): Promise<void> {
  const role = process.argv[2];
  if (role === '--reader') return reader();
  if (role === '--writer') return writer(Number(process.argv[3]), Number(process.argv[4]));

  const seconds = Number(process.argv[2] ?? 3);
  const size = Number(process.argv[3] ?? 60);
  if (!(seconds > 0 && seconds <= 30) || !Number.isInteger(size) || size < 60 || size > 1514) {
    throw new Error('usage: tap-bench [seconds in (0,30]] [frameBytes in 60..1514]');
  }
  if (process.getuid?.() !== 0) throw new Error('tap-bench needs root (it creates a network namespace and TAPs)');
  const ns = `tsw-tapbench-${process.pid}`;
  const self = fileURLToPath(import.meta.url);
  const kids: ChildProcess[] = [];
  const ipn = (...a: string[]): void => void execFileSync('ip', ['-n', ns, ...a]);
  execFileSync('ip', ['netns', 'add', ns]);
  try {
    const spawnRole = (...a: string[]): ChildProcess => {
      const p = spawn('ip', ['netns', 'exec', ns, process.execPath, self, ...a], { stdio: ['pipe', 'pipe', 'inherit'] });
      kids.push(p);
      return p;
    };
    const rd = spawnRole('--reader');
    await nextJson(rd);
    const wr = spawnRole('--writer', String(seconds), String(size));
    await nextJson(wr);
    ipn('link', 'add', 'br0', 'type', 'bridge');
    for (const dev of ['tswbw0', 'tswbr0']) {
      ipn('link', 'set', dev, 'master', 'br0', 'txqueuelen', '10000', 'up');
    }
    ipn('link', 'set', 'br0', 'up');
    wr.stdin!.write('go\n');
    const w = await nextJson(wr);
    await new Promise((r) => setTimeout(r, 300));
    rd.stdin!.write('stop\n');
    const r = await nextJson(rd);
    const fmt = (x: number): string => (x / 1e6).toFixed(2) + ' M frames/s';
    console.log(`write (writeSlab, ${size}-byte frames): ${fmt(w.fps)}  (${w.written} in ${w.secs.toFixed(2)} s, drops ${w.stats.writeDrops}, errors ${w.stats.writeErrors})`);
    console.log(`read  (through bridge, batched):     ${fmt(r.fps)}  (${r.frames} frames, ${r.framesPerBatch.toFixed(1)} per callback, lost ${w.written - r.frames})`);
    const readCpuFps = r.frames / Math.max(1e-6, r.cpuSecs);
    console.log(`read cost: ${(1e6 / readCpuFps).toFixed(3)} µs CPU per frame = ${fmt(readCpuFps)} per CPU-second`);
    console.log(JSON.stringify({ frameBytes: size, seconds, writeFps: Math.round(w.fps), readFps: Math.round(r.fps), readFpsPerCpuSecond: Math.round(readCpuFps), readPerBatch: Number(r.framesPerBatch.toFixed(1)), written: w.written, read: r.frames }));
  } finally {
    for (const k of kids) if (k.exitCode === null && k.signalCode === null) k.kill('SIGKILL');
    try {
      execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
    } catch {
      // already gone
    }
  }
}

main().catch((e: unknown) => {
  console.error(`tap-bench: ${e instanceof Error ? e.message : String(e)}`);
  process.exitCode = 1;
});
