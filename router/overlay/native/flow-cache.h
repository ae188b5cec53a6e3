// The sleeve's flow cache: forwarding decisions the TypeScript router made,
// cached in the addons so that a wake-up bringing a few frames of a known
// conversation is forwarded in C without entering JavaScript.
//
// The design follows Weave's fast datapath in spirit (the router installs
// flows in the kernel's Open vSwitch datapath on a miss, and the kernel then
// forwards matching packets by itself): every decision - learning, routing,
// isolation policy, path MTU, which peers are plaintext - stays in the
// router; the cache only remembers "frames from MAC A to MAC B leave as a
// FRAMES datagram to this address" (egress, in tap.node) and "frames from
// origin peer P, MAC A to MAC B, arriving from hop H, go to the TAP"
// (ingress, in udp.node). Anything else is a miss and goes to JavaScript as
// before, which may install a flow for next time.
//
// Rules that keep the cache from ever disagreeing with the router:
//   - a wake-up is forwarded here only if it brings at most kFastBatchMax
//     frames (TAP) or datagrams (UDP) and EVERY frame hits; otherwise the
//     whole batch goes to JavaScript (ordering between the two paths is kept,
//     since each wake-up finishes its sends before the next one starts);
//   - every flow expires kFlowTtlMs after it was installed (the router then
//     sees the next frame, refreshing its MAC cache), and the router clears
//     the whole cache whenever anything a decision depends on changes
//     (topology, routes, a peer's keys or PMTU, fastdp, a MAC moving, the
//     isolation policy);
//   - flows of encrypted peers (FlowCrypto below) seal and open in C with the
//     connection's own Sealer counter and Opener replay window (memory shared
//     with JavaScript, sleeve-aead.h), and are never used with another key
//     epoch than the one they were installed with.
// The tables are direct-mapped (a colliding install replaces the older
// flow), fixed size, and never allocate.
#ifndef TSWEAVE_FLOW_CACHE_H
#define TSWEAVE_FLOW_CACHE_H

#include <napi.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>
#include <uv.h>

#include "sleeve-aead.h"

namespace tsweave {

// Largest wake-up (frames from the TAP, datagrams from the socket) the cache
// forwards by itself whatever the frame sizes, under the older rules: one. It
// was chosen when the C path sent one datagram per frame (with up to 8 frames a
// wake-up, 64-byte UDP floods lost 9 % of their rate against the router's
// packer). The TAP side now takes wake-ups of any size: bulk frames (tap.cc
// kBigFrame: TCP segments, often cut from one read-offload super-frame) one per
// datagram, sealed per datagram and sent as UDP GSO runs, and runs of small
// frames to one next hop packed several to a FRAMES datagram as the router's
// packer would (so neither bulk TCP nor its ACKs enter JavaScript); the limit
// applies there only with WEAVE_NO_SMALL_PACK=1, and on the UDP side with
// WEAVE_NO_BULK_INGRESS (udp.cc).
constexpr size_t kFastBatchMax = 1;
// Most frames one datagram may carry for the ingress path.
constexpr size_t kFastFramesMax = 64;
constexpr size_t kFlowSlots = 1024;  // power of two
constexpr uint8_t kSleeveMagic = 0x54;
constexpr uint8_t kSleeveFrames = 1;
constexpr uint8_t kSleeveEncrypted = 5;
constexpr size_t kSleeveHeader = 8;   // magic, type, sender peer (6)
constexpr size_t kFrameRecord = 14;   // src peer (6), dst peer (6), length (2)
constexpr size_t kEgressTemplate = kSleeveHeader + 12;

inline uint64_t Read48(const uint8_t* p) {
  return (static_cast<uint64_t>(p[0]) << 40) | (static_cast<uint64_t>(p[1]) << 32) |
         (static_cast<uint64_t>(p[2]) << 24) | (static_cast<uint64_t>(p[3]) << 16) |
         (static_cast<uint64_t>(p[4]) << 8) | static_cast<uint64_t>(p[5]);
}

inline size_t FlowSlot(uint64_t a, uint64_t b, uint64_t c) {
  uint64_t h = (a * 0x9E3779B97F4A7C15ULL) ^ (b * 0xC2B2AE3D27D4EB4FULL) ^ (c * 0x165667B19E3779F9ULL);
  h ^= h >> 29;
  return static_cast<size_t>(h) & (kFlowSlots - 1);
}

// ---- The egress flow key ----
//
// The router's per-frame policy (router/policy/subnet-policy.ts) checks a
// captured frame's IP source and destination against its endpoint's addresses
// and isolation groups, and inspects ARP and IPv6 neighbour discovery. A flow
// keyed by MACs alone would forward, until it expires, ANY frame between the
// two MACs: a forged source address, an ARP reply or a Neighbour Advertisement
// claiming someone else's address (found by ipv6.test.ts's forged-frames case
// with the bridge rules removed: the router let a spoofed ping6 out through a
// flow a legitimate ping had installed). So a flow the router installs from a
// frame is keyed by that frame's EtherType and IP source and destination too,
// and only IPv4 and plain IPv6 (TCP, UDP, ICMPv6 other than ND) frames are
// ever cached: anything else, or another address pair, is a miss and goes to
// the router's policy. FrameKey returns the key bytes (EtherType, then source
// and destination address: 10 bytes for IPv4, 34 for IPv6), or 0 when the
// frame must not be cached.
constexpr size_t kFlowKeyMax = 34;

inline size_t FrameKey(const uint8_t* f, size_t len, uint8_t* out) {
  if (len < 14) return 0;
  const uint16_t type = static_cast<uint16_t>((f[12] << 8) | f[13]);
  if (type == 0x0800) {
    if (len < 34 || (f[14] >> 4) != 4) return 0;
    out[0] = f[12];
    out[1] = f[13];
    memcpy(out + 2, f + 26, 8);
    return 10;
  }
  if (type == 0x86DD) {
    if (len < 54 || (f[14] >> 4) != 6) return 0;
    const uint8_t nh = f[20];
    // Extension headers hide the upper layer: the router decides.
    if (nh != 6 && nh != 17 && nh != 58) return 0;
    // Router/Neighbour Solicitation/Advertisement and Redirect (RFC 4861):
    // the router checks their target and options on every one.
    if (nh == 58 && (len < 55 || (f[54] >= 133 && f[54] <= 137))) return 0;
    out[0] = f[12];
    out[1] = f[13];
    memcpy(out + 2, f + 22, 32);
    return 34;
  }
  return 0;
}

// FNV-1a over the key: the third input of FlowSlot for keyed flows.
inline uint64_t KeyHash(const uint8_t* k, size_t n) {
  uint64_t h = 1469598103934665603ULL;
  for (size_t i = 0; i < n; i++) h = (h ^ k[i]) * 1099511628211ULL;
  return h | 1;  // never 0, the unkeyed flows' slot input
}

// TAP → UDP: a captured frame src_mac → dst_mac leaves as one FRAMES datagram.
// A keyed flow (key_len > 0, the router's installs) takes only frames with
// the same FrameKey; an unkeyed one (installed without a sample frame: the
// addon's own tests) takes every frame between the two MACs.
struct EgressFlow {
  uint64_t src_mac = 0;
  uint64_t dst_mac = 0;
  uint8_t key_len = 0;
  uint8_t key[kFlowKeyMax];
  uint64_t expires_ms = 0;  // 0: empty slot
  int udp_fd = -1;
  bool conn = false;  // udp_fd is a socket connected to this flow's IPv6 next hop (tap.cc, Conn6)
  // Destination: sockaddr_in, or sockaddr_in6 (IPv6 peer, or IPv4-mapped on a
  // dual-stack socket); to_len says which.
  struct sockaddr_in6 to;
  socklen_t to_len = 0;
  uint32_t max_frame = 0;  // largest frame (Ethernet header included) the path takes
  int crypto = -1;         // FlowCrypto slot sealing this flow's datagrams, -1: plaintext
  uint32_t crypto_gen = 0; // ... and its generation when the flow was installed
  bool gso = false;        // may share UDP GSO sends with equal-sized neighbours (tap.cc)
  // Sleeve header (magic, FRAMES, sender) then the record's src and dst peer;
  // the record's 2-byte length is written per frame.
  uint8_t tmpl[kEgressTemplate];
};

// UDP → TAP: a frame in a FRAMES datagram from hop `hop_peer` at `hop_addr`,
// originated by `src_peer`, addressed to us (`self_peer`), src_mac → dst_mac.
// Keyed like EgressFlow (FrameKey of the frame the router delivered): the
// receiving router's policy (isolation by subnet, sources) is not bypassed by
// another frame between the same MACs either.
struct IngressFlow {
  uint8_t key_len = 0;
  uint8_t key[kFlowKeyMax];
  uint64_t hop_peer = 0;
  uint32_t hop_addr = 0;  // IPv4, host order
  uint64_t src_peer = 0;
  uint64_t self_peer = 0;
  uint64_t src_mac = 0;
  uint64_t dst_mac = 0;
  uint64_t expires_ms = 0;
  int tap_fd = -1;
  uint32_t vnet_len = 0;  // bytes of zeroed virtio_net_hdr to prepend (TAP opened with IFF_VNET_HDR)
  int crypto = -1;        // FlowCrypto slot whose datagrams this flow takes, -1: plaintext only
  uint32_t crypto_gen = 0;
};

// ---- Flows of encrypted peers ----
//
// One entry per peer whose datagrams the flows seal (TAP addon: the next hop's
// Sealer) or open (UDP addon: the hop's Opener). `state` is that Sealer's or
// Opener's sharedState (sleeve-aead.h): the counter, epoch and replay window
// JavaScript uses too, kept alive by a reference while the entry lives. The
// key is a copy, made at install and wiped (OPENSSL_cleanse) when the entry is
// dropped: on every clear of the cache (the router clears on re-key,
// connection change and close), when a flow finds the epoch moved on, and when
// the addon closes. A flow names its entry by slot AND generation, so a slot
// reused for another peer or key can never serve an older flow.
constexpr size_t kCryptoSlots = 64;

struct FlowCrypto {
  bool live = false;
  uint32_t gen = 0;
  uint64_t peer = 0;
  uint32_t epoch = 0;       // the key's epoch (the state's epoch when installed)
  uint8_t* state = nullptr; // sharedState bytes (8-byte aligned)
  napi_ref ref = nullptr;   // keeps the sharedState Buffer alive
  uint8_t key[sleeve_aead::kKeyBytes];
};

struct CryptoTable {
  FlowCrypto slots[kCryptoSlots];
  size_t live = 0;

  // Drops one entry: wipes its key, releases its state (env may be null only
  // when the environment is going away, then the reference is left to it).
  void Drop(napi_env env, size_t i) {
    FlowCrypto& c = slots[i];
    if (!c.live) return;
    OPENSSL_cleanse(c.key, sizeof c.key);
    c.live = false;
    c.gen++;
    c.state = nullptr;
    if (c.ref != nullptr && env != nullptr) napi_delete_reference(env, c.ref);
    c.ref = nullptr;
    live--;
  }

  void DropAll(napi_env env) {
    if (live == 0) return;
    for (size_t i = 0; i < kCryptoSlots; i++) Drop(env, i);
  }

  // The live entry of `peer`, or -1.
  int Find(uint64_t peer) const {
    if (live == 0) return -1;
    for (size_t i = 0; i < kCryptoSlots; i++) {
      if (slots[i].live && slots[i].peer == peer) return static_cast<int>(i);
    }
    return -1;
  }

  // The entry for `peer` sealing/opening with `state` under `key` at `epoch`:
  // the existing one if identical, else a fresh one (any older entry of the
  // peer is dropped first). Returns the slot; `buf` is the state's Buffer.
  int Install(napi_env env, uint64_t peer, napi_value buf, uint8_t* state, const uint8_t* key, uint32_t epoch) {
    int at = Find(peer);
    if (at >= 0) {
      const FlowCrypto& c = slots[at];
      if (c.state == state && c.epoch == epoch && CRYPTO_memcmp(c.key, key, sizeof c.key) == 0) return at;
      Drop(env, static_cast<size_t>(at));
    }
    size_t i = 0;
    while (i < kCryptoSlots && slots[i].live) i++;
    if (i == kCryptoSlots) {
      // More encrypted next hops with flows than slots: start over (older flows miss).
      DropAll(env);
      i = 0;
    }
    FlowCrypto& c = slots[i];
    napi_ref ref = nullptr;
    if (napi_create_reference(env, buf, 1, &ref) != napi_ok) return -1;
    c.ref = ref;
    c.live = true;
    c.peer = peer;
    c.epoch = epoch;
    c.state = state;
    memcpy(c.key, key, sizeof c.key);
    live++;
    return static_cast<int>(i);
  }
};

template <class F>
struct FlowTable {
  F slots[kFlowSlots];
  size_t live = 0;  // installs since the last clear (an upper bound of live flows)
  uint64_t installs = 0;
  uint64_t clears = 0;
  void Clear() {
    if (live == 0) return;
    for (size_t i = 0; i < kFlowSlots; i++) slots[i].expires_ms = 0;
    live = 0;
    clears++;
  }
};

struct FlowCounters {
  uint64_t batches = 0;   // wake-ups forwarded entirely by the cache
  uint64_t frames = 0;
  uint64_t bytes = 0;     // Ethernet frame bytes
  uint64_t drops = 0;     // full socket/TAP queue
  uint64_t errors = 0;    // other send/write errors (the cache is cleared)
  uint64_t crypto = 0;    // frames of encrypted flows (sealed or opened here)

  // Counts the outcome of one send/write of a `len`-byte frame (r: its
  // return value, errno still set). Returns true for an error that must
  // empty the cache (anything but a full queue).
  bool Count(ssize_t r, size_t len) {
    if (r >= 0) {
      frames++;
      bytes += len;
      return false;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) {
      drops++;
      return false;
    }
    errors++;
    return true;
  }
};

// flowStats() for either direction: { installs, clears, batches, frames, bytes, drops, errors, crypto }.
template <class F>
inline Napi::Object FlowStatsObject(Napi::Env env, const FlowTable<F>& t, const FlowCounters& c) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("installs", static_cast<double>(t.installs));
  o.Set("clears", static_cast<double>(t.clears));
  o.Set("batches", static_cast<double>(c.batches));
  o.Set("frames", static_cast<double>(c.frames));
  o.Set("bytes", static_cast<double>(c.bytes));
  o.Set("drops", static_cast<double>(c.drops));
  o.Set("errors", static_cast<double>(c.errors));
  o.Set("crypto", static_cast<double>(c.crypto));
  return o;
}

// ---- Staying in the data path between frames ----
//
// A wake-up that libuv hands to an addon costs more than the frame: every turn
// of Node's event loop runs its timers, check and prepare handles and a
// microtask checkpoint. When a wake-up was forwarded entirely from the cache,
// the addon therefore does not return to the loop at once: it waits for the
// next frame itself (RunNested), on its own epoll set holding the TAP, the UDP
// socket and libuv's backend fd, until the next libuv timer is due (at most
// kNestMaxMs). Frames that hit the cache are forwarded there; anything else —
// a miss (handed to JavaScript, then the wait ends), any other fd of the
// process becoming ready, a signal, a timer — ends the wait and libuv carries
// on as usual. Nothing spins: the wait blocks in epoll_wait.
constexpr int kNestMaxMs = 50;

struct Nest;

// One addon's side of the nest. Allocated once per device/socket and never
// freed (a few bytes), so the other addon's pointer stays valid after close.
struct FastPort {
  int fd = -1;
  void* self = nullptr;  // nullptr once closed
  // Reads one batch: 1 forwarded from the cache, 0 nothing to read, -1 handed
  // to JavaScript or failed (stop waiting).
  int (*service)(void* self) = nullptr;
  Nest* nest = nullptr;
};

struct Nest {
  int epfd = -1;
  FastPort* ports[2] = {nullptr, nullptr};
  bool active = false;
};

inline uint64_t MonoMs() { return uv_hrtime() / 1000000; }

// Whether the escape hatch `name` (a WEAVE_NO_* environment variable) is set to
// "1": the addons read theirs once, when a TAP or UDP socket opens.
inline bool EnvSwitchOn(const char* name) {
  const char* v = getenv(name);
  return v != nullptr && strcmp(v, "1") == 0;
}

// FastPort::service for an addon object `T` (Tap, UdpSocket) that has env_,
// closed_, Value(), Drain(env, keep) -> error reported, and last_n_ /
// last_fast_ set by Drain. Runs on the main thread inside a libuv callback.
template <class T>
inline int ServiceOnce(void* p) {
  T* self = static_cast<T*>(p);
  if (self == nullptr || self->closed_) return -1;
  Napi::Env env(self->env_);
  Napi::HandleScope scope(env);
  try {
    Napi::Object keep = self->Value();
    if (self->Drain(env, keep) || self->closed_) return -1;
  } catch (const Napi::Error& e) {
    napi_fatal_exception(env, e.Value());
    return -1;
  }
  if (self->last_n_ == 0) return 0;
  return self->last_fast_ ? 1 : -1;
}

inline void RunNested(Nest* n, uv_loop_t* loop) {
  if (n == nullptr || n->epfd < 0 || n->active || loop == nullptr) return;
  int budget = uv_backend_timeout(loop);
  if (budget < 0 || budget > kNestMaxMs) budget = kNestMaxMs;
  if (budget == 0) return;
  n->active = true;
  const uint64_t deadline = MonoMs() + static_cast<uint64_t>(budget);
  for (;;) {
    const uint64_t now = MonoMs();
    if (now >= deadline) break;
    struct epoll_event ev[3];
    int k = epoll_wait(n->epfd, ev, 3, static_cast<int>(deadline - now));
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) break;
    bool ours = false, other = false, stop = false;
    for (int i = 0; i < k; i++) {
      const uint32_t which = ev[i].data.u32;
      if (which >= 2) {
        other = true;
        continue;
      }
      FastPort* p = n->ports[which];
      if (p == nullptr || p->self == nullptr) {
        stop = true;
        continue;
      }
      ours = true;
      if (p->service(p->self) < 0) stop = true;
    }
    if (stop || (other && !ours)) break;
  }
  n->active = false;
}

// Creates the nest of two ports (the TAP's and the UDP socket's) plus libuv's
// backend fd; returns nullptr (and leaves nothing behind) if epoll refuses.
inline Nest* MakeNest(FastPort* a, FastPort* b, uv_loop_t* loop) {
  if (a == nullptr || b == nullptr || a->fd < 0 || b->fd < 0 || loop == nullptr) return nullptr;
  int epfd = epoll_create1(EPOLL_CLOEXEC);
  if (epfd < 0) return nullptr;
  struct epoll_event e;
  memset(&e, 0, sizeof e);
  e.events = EPOLLIN;
  e.data.u32 = 0;
  bool ok = epoll_ctl(epfd, EPOLL_CTL_ADD, a->fd, &e) == 0;
  e.data.u32 = 1;
  ok = ok && epoll_ctl(epfd, EPOLL_CTL_ADD, b->fd, &e) == 0;
  e.data.u32 = 2;
  ok = ok && epoll_ctl(epfd, EPOLL_CTL_ADD, uv_backend_fd(loop), &e) == 0;
  if (!ok) {
    close(epfd);
    return nullptr;
  }
  Nest* n = new Nest;
  n->epfd = epfd;
  n->ports[0] = a;
  n->ports[1] = b;
  a->nest = n;
  b->nest = n;
  return n;
}

}  // namespace tsweave

#endif
