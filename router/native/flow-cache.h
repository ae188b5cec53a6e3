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
//   - only plaintext peers get flows (sealing stays in JavaScript).
// The tables are direct-mapped (a colliding install replaces the older
// flow), fixed size, and never allocate.
#ifndef TSWEAVE_FLOW_CACHE_H
#define TSWEAVE_FLOW_CACHE_H

#include <netinet/in.h>
#include <stdint.h>
#include <string.h>

namespace tsweave {

// Largest wake-up (frames from the TAP, datagrams from the socket) the cache
// forwards by itself: one. A wake-up with several frames is load, where the
// router's packing of several frames per datagram, UDP GSO and TCP segment
// merging on TAP writes do better than one syscall per frame (measured: with
// up to 8, 64-byte UDP floods lost 9 % of their rate, TCP 3 %); a single frame
// is the case where the router has nothing to batch and only adds latency.
constexpr size_t kFastBatchMax = 1;
// Most frames one datagram may carry for the ingress path.
constexpr size_t kFastFramesMax = 64;
constexpr size_t kFlowSlots = 1024;  // power of two
constexpr uint8_t kSleeveMagic = 0x54;
constexpr uint8_t kSleeveFrames = 1;
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

// TAP → UDP: a captured frame src_mac → dst_mac leaves as one FRAMES datagram.
struct EgressFlow {
  uint64_t src_mac = 0;
  uint64_t dst_mac = 0;
  uint64_t expires_ms = 0;  // 0: empty slot
  int udp_fd = -1;
  struct sockaddr_in to;
  uint32_t max_frame = 0;  // largest frame (Ethernet header included) the path takes
  // Sleeve header (magic, FRAMES, sender) then the record's src and dst peer;
  // the record's 2-byte length is written per frame.
  uint8_t tmpl[kEgressTemplate];
};

// UDP → TAP: a frame in a FRAMES datagram from hop `hop_peer` at `hop_addr`,
// originated by `src_peer`, addressed to us (`self_peer`), src_mac → dst_mac.
struct IngressFlow {
  uint64_t hop_peer = 0;
  uint32_t hop_addr = 0;  // IPv4, host order
  uint64_t src_peer = 0;
  uint64_t self_peer = 0;
  uint64_t src_mac = 0;
  uint64_t dst_mac = 0;
  uint64_t expires_ms = 0;
  int tap_fd = -1;
  uint32_t vnet_len = 0;  // bytes of zeroed virtio_net_hdr to prepend (TAP opened with IFF_VNET_HDR)
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
};

}  // namespace tsweave

#endif
