// TCP segment merging for TAP writes, shared by tap.cc (writeSlab) and udp.cc
// (the ingress flow cache): consecutive IPv4/TCP or IPv6/TCP segments of one
// flow that Linux's TCP GRO would merge (net/ipv4/tcp_offload.c,
// net/ipv6/tcpv6_offload.c) are written to a TAP opened with IFF_VNET_HDR as
// ONE frame whose virtio_net_hdr says GSO TCPV4 / TCPV6, gso_size = the
// segments' payload size, with a partial checksum (the virtio spec's
// VIRTIO_NET_HDR_F_NEEDS_CSUM). The kernel carries it whole to the container
// (or re-cuts it into the very same segments for a device without TSO).
// Payloads are gathered with writev, never copied.
//
// Every function here reads only inside the frames it is given ([p, p + len)
// as the caller bounds-checked them); ParseTcpSeg checks every header length
// against the frame length before reading a field behind it.
#ifndef TSWEAVE_GSO_MERGE_H
#define TSWEAVE_GSO_MERGE_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

namespace tsweave {
namespace gso {

// virtio_net_hdr (include/uapi/linux/virtio_net.h), native byte order as tun
// uses for the legacy header on little-endian hosts.
struct VnetHdr {
  uint8_t flags;
  uint8_t gso_type;
  uint16_t hdr_len;
  uint16_t gso_size;
  uint16_t csum_start;
  uint16_t csum_offset;
};
static_assert(sizeof(VnetHdr) == 10, "virtio_net_hdr is 10 bytes");
constexpr uint8_t kVnetNeedsCsum = 1;  // VIRTIO_NET_HDR_F_NEEDS_CSUM
constexpr uint8_t kVnetGsoTcpv4 = 1;   // VIRTIO_NET_HDR_GSO_TCPV4
constexpr uint8_t kVnetGsoTcpv6 = 4;   // VIRTIO_NET_HDR_GSO_TCPV6
// Most segments merged into one super-frame (Linux GRO stops at 64 too).
constexpr size_t kMaxMerge = 64;

inline uint16_t Rd16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }
inline uint32_t Rd32(const uint8_t* p) {
  return (static_cast<uint32_t>(p[0]) << 24) | (static_cast<uint32_t>(p[1]) << 16) | (static_cast<uint32_t>(p[2]) << 8) | p[3];
}

// RFC 1071 one's-complement sum of 16-bit big-endian words, not folded.
inline uint32_t SumWords(const uint8_t* p, size_t n, uint32_t sum) {
  for (; n > 1; p += 2, n -= 2) sum += Rd16(p);
  if (n == 1) sum += static_cast<uint32_t>(p[0]) << 8;
  return sum;
}
inline uint16_t Fold(uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(sum);
}

// An IPv4/TCP or IPv6/TCP segment that TCP GRO could merge: Ethernet II
// without VLAN; IPv4 without options or fragmentation, or the fixed IPv6 header
// directly followed by TCP (no extension headers: those frames pass unmerged);
// the IP length field matching the frame exactly (no Ethernet padding, no
// jumbogram); only ACK (and PSH) set; some payload.
struct TcpSeg {
  const uint8_t* p;
  bool v6;
  size_t ipl;      // IP header bytes (20 or 40)
  size_t hdr;      // Ethernet + IP + TCP header bytes
  size_t thl;      // TCP header bytes
  size_t payload;  // TCP payload bytes
  uint32_t seq;
  uint8_t flags;
};

inline bool ParseTcpSeg(const uint8_t* p, size_t len, TcpSeg* s) {
  if (len < 14 + 20 + 20) return false;
  const uint16_t et = Rd16(p + 12);
  const uint8_t* ip = p + 14;
  size_t ipl;
  if (et == 0x0800) {
    if (ip[0] != 0x45 || ip[9] != 6) return false;
    if (Rd16(ip + 2) != len - 14) return false;
    if ((Rd16(ip + 6) & 0x3fff) != 0) return false;
    ipl = 20;
  } else if (et == 0x86dd) {
    if (len < 14 + 40 + 20 || (ip[0] >> 4) != 6 || ip[6] != 6) return false;
    if (Rd16(ip + 4) != len - 14 - 40) return false;
    ipl = 40;
  } else {
    return false;
  }
  const uint8_t* th = ip + ipl;
  size_t thl = static_cast<size_t>(th[12] >> 4) * 4;
  if (thl < 20 || 14 + ipl + thl >= len) return false;
  uint8_t fl = th[13];
  if ((fl & ~0x18) != 0 || !(fl & 0x10)) return false;
  s->p = p;
  s->v6 = ipl == 40;
  s->ipl = ipl;
  s->thl = thl;
  s->hdr = 14 + ipl + thl;
  s->payload = len - s->hdr;
  s->seq = Rd32(th + 4);
  s->flags = fl;
  return true;
}

// Same flow and the same headers apart from sequence number, IP id/length/
// checksum, TCP checksum and PSH: MACs, TOS, DF, TTL, addresses, ports, ack,
// window and every option byte (timestamps included), as Linux GRO requires.
// For IPv6: version, traffic class and flow label, next header, hop limit and
// both addresses (net/ipv6/ip6_offload.c ipv6_gro_receive compares the same).
inline bool SameHeaders(const TcpSeg& a, const TcpSeg& b) {
  if (a.v6 != b.v6 || a.thl != b.thl || memcmp(a.p, b.p, 14) != 0) return false;
  const uint8_t* ia = a.p + 14;
  const uint8_t* ib = b.p + 14;
  if (a.v6) {
    if (memcmp(ia, ib, 4) != 0 || memcmp(ia + 6, ib + 6, 34) != 0) return false;
  } else if (ia[1] != ib[1] || (ia[6] & 0x40) != (ib[6] & 0x40) || ia[8] != ib[8] || memcmp(ia + 12, ib + 12, 8) != 0) {
    return false;
  }
  const uint8_t* ta = ia + a.ipl;
  const uint8_t* tb = ib + b.ipl;
  return memcmp(ta, tb, 4) == 0 && memcmp(ta + 8, tb + 8, 4) == 0 && memcmp(ta + 14, tb + 14, 2) == 0 &&
         memcmp(ta + 20, tb + 20, a.thl - 20) == 0;
}

// How many frames from index i of `fr` (count frames, each fr.Data(k) /
// fr.Len(k), already bounds-checked by the caller) merge into one super-frame: 1 if frame i does
// not start a run. Fills `a` (the first segment), `total` (payload bytes of the
// run) and `last_flags` (TCP flags of the last segment). A run stops at
// kMaxMerge segments, at a sequence gap, a header change, a longer segment, a
// short or PSH segment (included), or where the IP length would pass 65535.
// `v6`: whether IPv6 runs may merge at all.
template <class Frames>
size_t PlanMerge(const Frames& fr, size_t count, size_t i, bool v6, TcpSeg* a, size_t* total, uint8_t* last_flags) {
  if (i + 1 >= count || !ParseTcpSeg(fr.Data(i), fr.Len(i), a) || (a->flags & 0x08) || (a->v6 && !v6)) return 1;
  size_t run = 1;
  *total = a->payload;
  *last_flags = a->flags;
  uint32_t next = a->seq + static_cast<uint32_t>(a->payload);
  TcpSeg b;
  while (i + run < count && run < kMaxMerge) {
    const size_t j = i + run;
    // (For IPv6 the 16-bit field holds only thl + payload; the bound below also
    // counts the 40-byte header, which keeps the whole frame under 64 KiB.)
    if (!ParseTcpSeg(fr.Data(j), fr.Len(j), &b) || !SameHeaders(*a, b) || b.seq != next || b.payload > a->payload ||
        a->ipl + a->thl + *total + b.payload > 65535) {
      break;
    }
    *total += b.payload;
    next += static_cast<uint32_t>(b.payload);
    *last_flags = b.flags;
    run++;
    if (b.payload < a->payload || (b.flags & 0x08)) break;  // a short or pushed segment ends the run
  }
  return run;
}

// Writes into `h` (room for a.hdr bytes) the header of the super-frame of run
// `a` carrying `total` payload bytes: the first segment's headers with the
// total length (IPv4 total length and a fresh header checksum; IPv6 payload
// length, no header checksum), the last segment's flags and, in the TCP
// checksum field, the pseudo-header sum (RFC 793 / RFC 8200 section 8.1) as the
// virtio partial checksum; fills `vh` (GSO TCPV4 or TCPV6, gso_size = the
// first segment's payload).
inline void BuildSuperHeader(const TcpSeg& a, size_t total, uint8_t last_flags, uint8_t* h, VnetHdr* vh) {
  memcpy(h, a.p, a.hdr);
  uint8_t* ip = h + 14;
  const size_t tcp_len = a.thl + total;
  uint32_t pseudo;
  if (a.v6) {
    ip[4] = static_cast<uint8_t>(tcp_len >> 8);
    ip[5] = static_cast<uint8_t>(tcp_len);
    pseudo = SumWords(ip + 8, 32, 6 + static_cast<uint32_t>(tcp_len));
  } else {
    const size_t ip_len = 20 + tcp_len;
    ip[2] = static_cast<uint8_t>(ip_len >> 8);
    ip[3] = static_cast<uint8_t>(ip_len);
    ip[10] = ip[11] = 0;
    uint16_t ic = static_cast<uint16_t>(~Fold(SumWords(ip, 20, 0)));
    ip[10] = static_cast<uint8_t>(ic >> 8);
    ip[11] = static_cast<uint8_t>(ic);
    pseudo = SumWords(ip + 12, 8, 6 + static_cast<uint32_t>(tcp_len));
  }
  uint8_t* th = ip + a.ipl;
  th[13] = last_flags;
  uint16_t pc = Fold(pseudo);
  th[16] = static_cast<uint8_t>(pc >> 8);
  th[17] = static_cast<uint8_t>(pc);
  vh->flags = kVnetNeedsCsum;
  vh->gso_type = a.v6 ? kVnetGsoTcpv6 : kVnetGsoTcpv4;
  vh->hdr_len = static_cast<uint16_t>(a.hdr);
  vh->gso_size = static_cast<uint16_t>(a.payload);
  vh->csum_start = static_cast<uint16_t>(14 + a.ipl);
  vh->csum_offset = 16;
}

// Frames as [offset, length] pairs into one slab (tap.cc writeSlab).
struct SlabFrames {
  const uint8_t* data;
  const uint32_t* f;
  const uint8_t* Data(size_t k) const { return data + f[2 * k]; }
  size_t Len(size_t k) const { return f[2 * k + 1]; }
};

// Write-merge counters, per TAP writer (tap.cc writeSlab, udp.cc flow cache).
struct MergeCounters {
  uint64_t frames = 0;     // segments written inside super-frames
  uint64_t supers = 0;     // super-frames written
  uint64_t fallbacks = 0;  // super-frames the kernel refused (EINVAL), written one by one instead
};

// Writes frames [i, i + run) of `fr` (a run PlanMerge returned, with its `a`,
// `total`, `last_flags`) to the TAP `fd` as one GSO frame: the 10-byte
// virtio_net_hdr, the super header, then each segment's payload gathered in
// place. Returns 0, or the errno (EAGAIN for a full queue, EWOULDBLOCK folded
// into it; EINVAL when the kernel refuses the super-frame).
template <class Frames>
int WriteSuper(int fd, const Frames& fr, size_t i, size_t run, const TcpSeg& a, size_t total, uint8_t last_flags) {
  if (fd < 0) return EBADF;
  if (run > kMaxMerge) return EINVAL;
  VnetHdr vh;
  uint8_t h[14 + 60 + 60];
  BuildSuperHeader(a, total, last_flags, h, &vh);
  struct iovec iov[2 + kMaxMerge];
  iov[0] = {&vh, sizeof vh};
  iov[1] = {h, a.hdr};
  for (size_t k = 0; k < run; k++) {
    iov[2 + k] = {const_cast<uint8_t*>(fr.Data(i + k) + a.hdr), fr.Len(i + k) - a.hdr};
  }
  for (;;) {
    ssize_t r = ::writev(fd, iov, static_cast<int>(2 + run));
    if (r >= 0) return 0;
    int err = errno;
    if (err == EINTR) continue;
    return err == EWOULDBLOCK ? EAGAIN : err;
  }
}

}  // namespace gso
}  // namespace tsweave

#endif
