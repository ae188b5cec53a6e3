/**
 * The seam the daemon composes: a subsystem (IPAM, observability, DNS, …) is a
 * small object the daemon starts in order, after the router is up, and closes in
 * reverse order. Each gets a narrow context — the router's gossip channels, the API
 * registrar, the endpoint table, the metrics registry, the logger, the launch
 * configuration — and contributes, optionally, a report section and hooks on
 * endpoint changes. No subsystem imports the daemon (router/daemon/weaver.ts), and
 * the daemon imports only the subsystems' factories, so there is no import cycle.
 *
 * Adding one (see docs/ARCHITECTURE.md, "Adding a subsystem"): write
 * `yourSubsystem(): Subsystem` in its own folder, add it to the list in
 * router/daemon/weaver.ts, and that is all.
 */
import type { Registry } from '../api/prom.js';
import type { Router, GossipChannel, GossipHandler } from '../router.js';
import type { ApiServer } from '../api/server.js';
import type { Endpoint, Endpoints } from '../host/endpoints.js';
import type { LaunchConfig } from './config.js';
import type { Log } from './log.js';
import type { Report } from '../api/report.js';

/** What a subsystem may use. Everything here outlives the subsystem. */
export interface SubsystemContext {
  /** The launch configuration (read-only). */
  readonly cfg: Readonly<LaunchConfig>;
  /** The state directory (`WEAVE_STATE_DIR`), mode 0700: where a subsystem persists. */
  readonly stateDir: string;
  /**
   * The running router: topology, routes, events ('event'; 'peer-gone' with the name of a
   * peer that left the topology; 'routes' after every coalesced topology change, once the
   * routes — and so which peers are reachable — are recomputed).
   */
  readonly router: Router;
  /** Register a gossip channel on the mesh (name unique per subsystem, e.g. 'ipam', 'dns'). */
  registerChannel(name: string, handler: GossipHandler): GossipChannel;
  /** The HTTP API: `api.on(method, pattern, handler)` adds a route (served on the API's listeners). */
  readonly api: ApiServer;
  /** The endpoint table (attached containers); a subsystem may set `endpoints.allocator`. */
  readonly endpoints: Endpoints;
  /** The Prometheus registry /metrics renders; register collectors with `registers: [ctx.metrics]`. */
  readonly metrics: Registry;
  /** The whole `weave report` (router + every subsystem's section), computed on call. */
  report(): Report;
  /** Another subsystem started earlier, by name (e.g. DNS asks for 'ipam'). */
  get<T extends Subsystem>(name: string): T | undefined;
  /** One-line structured log. */
  readonly log: Log;
  /**
   * Tell the router's event stream and every subsystem (DNS, …) that a subsystem
   * attached or detached an endpoint itself (the CNI plugin's ADD/DEL), as /attach does.
   */
  announce(what: 'endpointAttached' | 'endpointDetached', change: EndpointChange): void;
  /**
   * Announce an endpoint change this subsystem made itself (the Docker plugin's
   * Join/Leave): the same as `announce` with the plugin's verbs.
   */
  endpointChanged(what: 'attached' | 'detached', change: EndpointChange): void;
}

/** An endpoint change the daemon announces to every subsystem. */
export interface EndpointChange {
  endpoint: Endpoint;
  /** Name given at attach (`--name`/`-h`) or the container's name, when known. */
  name?: string;
  /**
   * True when the interface got `Endpoints.containerRoutes` as it was made (netdev.attachVeth),
   * so a subsystem that adds such routes itself (weaveDNS) need not.
   */
  routesInstalled?: boolean;
}

export interface Subsystem {
  /** Unique short name ('ipam', 'observability', 'dns'); also used in log lines. */
  readonly name: string;
  /** Key of this subsystem's section in `weave report` ('IPAM', 'DNS'), if it has one. */
  readonly reportKey?: string;
  /**
   * Start: register channels, routes and metrics, load state. Rejects with a one-line
   * Error if the subsystem cannot run; the daemon then stops (a subsystem that can
   * run degraded logs a warning and resolves instead).
   */
  start(ctx: SubsystemContext): Promise<void>;
  /** This subsystem's `weave report` section (plain JSON data). */
  report?(): unknown;
  /** After an endpoint was attached (or re-attached at restart). Errors are logged, not thrown to the caller. */
  endpointAttached?(change: EndpointChange): void | Promise<void>;
  /** After an endpoint was detached or its container died. */
  endpointDetached?(change: EndpointChange): void | Promise<void>;
  /**
   * Before `weave reset` removes everything: hand over what others need (IPAM space).
   * An `ApiError` thrown here refuses the reset (nothing has been removed yet); `force`
   * is `weave reset --force`.
   */
  reset?(o?: { force: boolean }): Promise<void>;
  /** Stop timers, listeners and channels. Must not throw; bounded in time. */
  close(): Promise<void>;
}
