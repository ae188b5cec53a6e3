/**
 * Shapes of `weave report` (JSON) and of the router's event stream.
 *
 * Field names follow Weave Net's `weave report` so scripts written for Weave keep
 * working where the meaning is the same (Router.Name, Router.Peers[].Connections, ...).
 * Everything here is plain data: it is what the HTTP API returns, what `/events`
 * streams, and what the metrics and the live page are computed from.
 */

export interface ReportPeerConnection {
  Name: string;
  NickName: string;
  Address: string;
  Outbound: boolean;
  Established: boolean;
}

export interface ReportPeer {
  Name: string;
  NickName: string;
  UID: number;
  Version: number;
  Connections: ReportPeerConnection[];
}

/** One local connection (or connection attempt) of this router. */
export interface ReportConnection {
  /** Remote underlay address "ip:port". */
  Address: string;
  Outbound: boolean;
  /** "connecting" | "pending" | "established" | "failed" | "retrying" */
  State: string;
  /** Free text like Weave's: "sleeve 8a:..(h2) mtu=1376" or the failure reason. */
  Info: string;
  /** Remote peer, when known. */
  Name?: string;
  NickName?: string;
  /** "sleeve" or "fastdp" once established. */
  Path?: string;
  Encrypted?: boolean;
  /** Overlay MTU usable on this connection (bytes of Ethernet payload). */
  MTU?: number;
}

export interface ReportTarget {
  Address: string;
  State: string;
  /** ms since epoch of the next attempt, when retrying. */
  NextAttempt?: number;
  LastError?: string;
  /** The host name did not resolve at the last attempt: the resolver's code (ENOTFOUND, EAI_AGAIN). */
  Unresolved?: string;
}

export interface ReportIpamEntry {
  Token: string;
  Size: number;
  Peer: string;
  Nickname: string;
  IsKnownPeer: boolean;
  Version: number;
}

export interface ReportIpam {
  Range: string;
  DefaultSubnet: string;
  Status: string;
  Entries: ReportIpamEntry[];
  PendingAllocates: number;
  Owned: Array<{ Peer: string; NickName: string; Addresses: number; Percent: number; Reachable: boolean }>;
}

export interface ReportEndpoint {
  /** Container id, "netns:PATH", "pid:N" or "weave:expose". */
  ID: string;
  MAC: string;
  CIDRs: string[];
  /** Its name (weaveDNS), when it has one. */
  Name?: string;
}

export interface Report {
  Version: string;
  Router: {
    Name: string;
    NickName: string;
    Port: number;
    Protocol: string;
    ProtocolMinVersion: number;
    ProtocolMaxVersion: number;
    Encryption: boolean;
    TrustedSubnets: string[];
    PeerDiscovery: boolean;
    ConnLimit: number;
    MTU: number;
    Peers: ReportPeer[];
    Connections: ReportConnection[];
    Targets: string[];
    TargetStates: ReportTarget[];
    UnicastRoutes: Record<string, string>;
    BroadcastRoutes: Record<string, string[]>;
    MACs: number;
    /** Frames dropped, by reason ("no-route", "mtu", "malformed", "replay", "auth", "unknown-key", "isolation", "spoof", "not-local", "tap", "loop"; "bridge-*" counted by the nftables filters). */
    Drops: Record<string, number>;
    /** Data-path counters per path ("sleeve", "fastdp"). */
    Traffic: Record<string, { FramesIn: number; FramesOut: number; BytesIn: number; BytesOut: number }>;
    /**
     * The sleeve's flow cache (router/overlay/flow-cache.ts): frames forwarded by the addons
     * from cached decisions, per direction; they are included in Traffic.sleeve.
     */
    /**
     * TCP segments written to the TAP merged into GSO super-frames (native gso-merge.h), per
     * writer: the router's own TAP writes and the ingress flow cache. Frames: segments inside
     * super-frames; SuperFrames: super-frames written; Fallbacks: super-frames the kernel refused
     * (EINVAL), after which that writer writes that IP family unmerged.
     */
    TapMerge?: Record<'Router' | 'FlowCache', { Frames: number; SuperFrames: number; Fallbacks: number }>;
    FlowCache?: { Enabled: boolean; Egress: { Installs: number; Clears: number; Frames: number; Drops: number; Errors: number; Sealed: number }; Ingress: { Installs: number; Clears: number; Frames: number; Drops: number; Errors: number; Opened: number } };
    /**
     * The data-path addons' raw counters since open (router/overlay/tap.ts TapStats, udp.ts
     * UdpStats: reads, read-offload super-frames and segments, GSO/GRO datagrams, merges,
     * drops), for diagnosis and benches; absent where there is no TAP or sleeve socket.
     */
    Addons?: { tap?: Record<string, number | boolean | string | null>; udp?: Record<string, number | boolean | string | null> };
  };
  IPAM?: ReportIpam;
  /** The HTTP API: whether --api-insecure is on, and requests refused by policy per kind (access, route, content-type, url, size). */
  API?: { Insecure: boolean; Refused: Record<string, number> };
  Endpoints: ReportEndpoint[];
  /** Whether the router can take containers now (router/api/readiness.ts); GET /status answers 503 until Ready. */
  Readiness?: { Ready: boolean; Reason: string };
}

/** Events streamed on `GET /events` after the initial snapshot. */
export type RouterEvent =
  | { type: 'snapshot'; report: Report }
  | { type: 'peer-joined'; peer: string; nickname: string }
  | { type: 'peer-left'; peer: string; nickname: string }
  | { type: 'connection'; address: string; peer?: string; nickname?: string; state: string; path?: string; mtu?: number; encrypted?: boolean; info: string }
  | { type: 'ipam'; status: string; owned: ReportIpam['Owned'] }
  | { type: 'endpoint-attached'; id: string; cidrs: string[] }
  | { type: 'endpoint-detached'; id: string; cidrs: string[] };
