/**
 * prom-client's `Registry`, `Counter` and `Gauge`, loaded from their own files rather
 * than from the package's index: the same classes (the index re-exports exactly these
 * modules), without what the index loads besides them and the router never uses — the
 * push gateway (node's https, tls and zlib), the cluster aggregator (node's cluster) and
 * the default process metrics (@opentelemetry/api). [scale, issue #20] The index costs a bare
 * node process 5.0 MiB RSS more than these three files; with code-unit sorting instead of
 * localeCompare, an idle router of 30 is 3.3 MiB smaller (docs/ARCHITECTURE.md, the memory
 * policy under "Pauses").
 * Router code imports the metric classes from here, never from 'prom-client'.
 */
import RegistryClass from 'prom-client/lib/registry.js';
import CounterClass from 'prom-client/lib/counter.js';
import GaugeClass from 'prom-client/lib/gauge.js';

export const Registry = RegistryClass;
export type Registry = import('prom-client').Registry;
export const Counter = CounterClass;
export type Counter<T extends string = string> = import('prom-client').Counter<T>;
export const Gauge = GaugeClass;
export type Gauge<T extends string = string> = import('prom-client').Gauge<T>;
