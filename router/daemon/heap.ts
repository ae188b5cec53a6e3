/**
 * Heap housekeeping for the router process. Garbage collection pauses the event loop,
 * and with it every frame the router forwards: a multi-millisecond mark-compact in the
 * middle of a ping shows up as a latency spike. Startup (loading modules, parsing
 * config, the first gossip) leaves most of the garbage the process will ever make, and
 * V8 would otherwise collect it with a full, compacting collection some seconds later,
 * when traffic may already flow. So once the router is up we collect it at once.
 *
 * The collection is requested through V8's own `gc` extension, enabled at run time
 * (`--expose-gc`) and taken from a fresh context, so the global scope is not changed.
 */
import v8 from 'node:v8';
import vm from 'node:vm';

/** A full, synchronous garbage collection; false if the engine refused to expose one. */
export function collectGarbage(): boolean {
  try {
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as unknown;
    if (typeof gc !== 'function') return false;
    (gc as () => void)();
    return true;
  } catch {
    return false;
  }
}
