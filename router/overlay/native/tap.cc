// TAP device binding for tsweave's router (Linux only).
//
// A TAP device (Documentation/networking/tuntap.rst in the Linux kernel) is a
// virtual Ethernet interface whose "wire" is a file descriptor: every read()
// returns exactly one Ethernet frame the kernel transmitted on the interface,
// every write() injects exactly one frame as if received from the wire.
//
// Why native rather than fs.read(): reads on the libuv threadpool top out near
// 100 k frames/s, and a read pending on the threadpool blocks process.exit().
// Here the non-blocking fd is watched with a uv_poll handle on the main loop;
// each wake-up drains every ready frame (up to a batch limit) into one
// preallocated slab and calls JavaScript once with the whole batch. Writes are
// plain non-blocking write() calls made synchronously from JavaScript.
//
// JS surface (wrapped by router/overlay/tap.ts):
//   new Tap(name, maxFrame, batch, slabBytes, vnetHdr?)
//   tap.fd, tap.name
//   tap.start(onBatch(slab, frames, count), onError(code, message))
//   tap.write(buf, offset?, length?) -> boolean
//   tap.writeBatch(bufs, count?) -> number
//   tap.writeSlab(slab, frames, count) -> number
//   tap.stats() -> { readFrames, readBatches, readTruncated, readErrors,
//                    writeFrames, writeDrops, writeErrors, lastWriteError,
//                    vnetHdr, writeCoalesced, ..., egressGso,
//                    missGroup, missSmall, missFlow, missLong, missSeal,
//                    conn6Sockets, conn6Opened, conn6Failed, conn6Retries }
//   tap.ref(), tap.unref(), tap.close()
//   tap.addFlow(srcMac, dstMac, udpFd, addr, port, template, maxFrame, ttlMs[, sealState, key[, frame]])
//     (addr: IPv4 as uint32, or IPv6 text; the UDP socket may be dual-stack;
//     frame: the judged frame, keying the flow to its EtherType and IP addresses)
//   tap.clearFlows(), tap.flowStats()
//   setDontFragment(fd, on)
//
// Flow cache (flow-cache.h): a wake-up whose frames all match installed egress
// flows is sent here on the sleeve's UDP socket — a FRAMES datagram per bulk
// frame (>= kBigFrame bytes), consecutive small frames to one next hop packed
// into one (ForwardCached), runs of equal-sized datagrams to one hop as one UDP
// GSO sendmsg — and JavaScript is not called; otherwise the batch goes to
// onBatch as always. A flow of an encrypted peer seals each datagram first (sleeve-aead.h: ENCRYPTED outer
// header, the Sealer's shared counter), exactly as the router's Sealer would.
//
// vnetHdr (opt-in): the TAP is opened with IFF_VNET_HDR. Without readOffload
// it gets no offloads (TUNSETOFFLOAD 0), so the kernel still hands us plain,
// checksummed frames (their 10-byte virtio_net_hdr is read into scratch and
// dropped: JS sees the same frames); with readOffload (TsoInfo below) it may
// hand us partial checksums and TCP super-frames, which Drain completes and
// cuts into plain segments, so JS still sees the same frames. writeSlab may
// hand the kernel TCP super-frames: within
// one writeSlab call, consecutive IPv4/TCP or IPv6/TCP (no extension headers)
// segments of one flow with contiguous sequence numbers and identical headers
// (what Linux's TCP GRO merges, net/ipv4/tcp_offload.c, net/ipv6/tcpv6_offload.c)
// are written as ONE frame with a virtio_net_hdr saying GSO TCPV4 / TCPV6,
// gso_size = the segments' payload size and a partial checksum (the virtio spec's VIRTIO_NET_HDR_F_NEEDS_CSUM). The
// bridge and the container's veth carry it whole and the container's TCP
// takes it as one GRO'd packet; any device without TSO on the way gets it
// re-segmented into the very same segments by the kernel. Gathered with
// writev: the payloads are not copied.
// Errors thrown carry a `code` (errno name, or ERR_INVALID_ARG_TYPE /
// ERR_OUT_OF_RANGE for bad arguments).

#include <napi.h>
#include <uv.h>

#include "flow-cache.h"
#include "gso-merge.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/filter.h>
#include <linux/if_tun.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <netinet/udp.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

namespace {

// Bounds on open() parameters; router/overlay/tap.ts checks the same bounds first.
constexpr double kMinFrame = 64;          // smaller cannot hold an Ethernet header + IPv4 header
constexpr double kMaxFrame = 1 << 20;     // far above the 65535-byte TAP MTU limit
constexpr double kMaxBatch = 65536;
constexpr double kMaxSlab = 256.0 * 1024 * 1024;

// TCP segment merging and the virtio_net_hdr (gso-merge.h, shared with udp.cc).
using tsweave::gso::BuildSuperHeader;
using tsweave::gso::Fold;
using tsweave::gso::kMaxMerge;
using tsweave::gso::kVnetGsoTcpv4;
using tsweave::gso::kVnetGsoTcpv6;
using tsweave::gso::kVnetNeedsCsum;
using tsweave::gso::PlanMerge;
using tsweave::gso::Rd16;
using tsweave::gso::Rd32;
using tsweave::gso::SlabFrames;
using tsweave::gso::TcpSeg;
using tsweave::gso::VnetHdr;

#ifndef SOL_UDP
#define SOL_UDP 17
#endif
#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
// Egress flow cache, batches (ForwardCached): a wake-up of several frames is
// forwarded in C only if every frame hits a flow and is at least kBigFrame
// bytes (a bulk transfer: nothing for the router's packer to gain, since two
// such frames never share a datagram) or a smaller frame right after such a
// frame (a tail: the short last segment of a TCP super-frame or the last
// fragment of a datagram, which the packer could rarely have joined to its
// bulk neighbour; WEAVE_NO_BULK_TAILS=1 sends such wake-ups to JavaScript as
// before). Consecutive small frames to one next hop (same socket, address,
// sender and sealing state) share one FRAMES datagram while their records fit
// the path, as the router's packer would put them (a wake-up of TCP ACKs: before,
// such wake-ups went to JavaScript whole, 88 % of a TCP receiver's ACKs, issue
// #19; WEAVE_NO_SMALL_PACK=1 restores that). Without tails, a TCP stream whose application writes do not
// end on segment boundaries sent whole wake-ups (hundreds of segments) through
// JavaScript: with IPv6's 20-byte smaller MSS (1304 B at MTU 1376), iperf3's
// 128 KiB writes end 672 B into a segment, so every other write left a
// sub-512-byte tail, and 0.7-1.3 % of the segments took the slow path (IPv4:
// 0.03-0.08 %), issue #21. Runs of equal-sized datagrams to one
// destination leave as one UDP GSO send (UDP_SEGMENT, udp(7)) of at most
// kGsoSegs datagrams and kGsoBytes bytes, as the sleeve's own sends do.
constexpr size_t kBigFrame = 512;
constexpr size_t kGsoSegs = 64;
constexpr size_t kGsoBytes = 65507;
// Per datagram of the flow cache: sequence header (16) + template (20) +
// length (2) + tag (16), rounded up.
constexpr size_t kEgressOverhead = 64;


// The same sum as SumWords (RFC 1071), 16 bytes at a time: the one's-complement
// sum is byte-order independent (RFC 1071 §2(B)) and congruent to the plain sum
// modulo 0xffff (2^16 ≡ 1), so native little-endian 32-bit words are added into
// four independent 64-bit accumulators (no carry chain: each takes 2^32 words
// before it could overflow, far beyond a 64 KiB frame) and folded once at the
// end; the folded result is byte-swapped once. Twice the speed of one 64-bit
// accumulator with end-around carry (measured 14 → 28 GB/s on 1400-byte frames,
// equal results on 200,000 random buffers; the checksum was 3.9 % of a plaintext
// sleeve TCP run's CPU). Returns a value to pass to Fold (<= 0x1fffe).
uint32_t SumFast(const uint8_t* p, size_t n, uint32_t sum) {
  uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
  while (n >= 16) {
    uint32_t w[4];
    memcpy(w, p, 16);
    a0 += w[0];
    a1 += w[1];
    a2 += w[2];
    a3 += w[3];
    p += 16;
    n -= 16;
  }
  uint64_t s = a0 + a1 + a2 + a3;
  while (n >= 4) {
    uint32_t w;
    memcpy(&w, p, 4);
    s += w;
    p += 4;
    n -= 4;
  }
  if (n >= 2) {
    uint16_t w;
    memcpy(&w, p, 2);
    s += w;
    p += 2;
    n -= 2;
  }
  if (n == 1) s += p[0];  // the high byte of a big-endian word is the low byte of a little-endian one
  s = (s & 0xffffffffULL) + (s >> 32);
  s = (s & 0xffffffffULL) + (s >> 32);
  uint32_t f = Fold(static_cast<uint32_t>(s));
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  f = static_cast<uint16_t>((f >> 8) | (f << 8));
#endif
  return f + sum;
}

// ---- TAP read offloads (TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6) ----
//
// With read offloads the kernel hands a TCP "super-frame" of up to 64 KiB (one
// Ethernet + IP + TCP header, a virtio_net_hdr saying GSO TCPV4/TCPV6 and the
// segment size) instead of the up to 45 segments it would have cut it into, so
// the TAP costs one read() per 64 KiB instead of one per MTU. The addon cuts it
// here into exactly the segments Linux's own GSO would have produced
// (net/ipv4/tcp_offload.c tcp_gso_segment, inet_gso_segment): same header per
// segment, sequence number advanced by the payload before it, IPv4 id + 1 per
// segment, IPv4 total length / IPv6 payload length per segment, CWR only on the
// first, FIN and PSH only on the last, IPv4 and TCP checksums computed in full.
// JavaScript, the flow cache, isolation, MSS clamping and PMTU therefore see the
// same frames as without offloads.
struct TsoInfo {
  bool v6 = false;
  size_t toff = 0;     // TCP header offset in the frame
  size_t hdr = 0;      // Ethernet + IP + TCP header bytes
  size_t mss = 0;      // payload bytes per segment (gso_size)
  size_t payload = 0;  // payload bytes of the whole super-frame
};

// Checks a GSO TCP super-frame `f[0, len)` with header `vh`; false if it is not
// one we can cut (the caller drops it and counts it).
bool ParseTso(const uint8_t* f, size_t len, uint8_t gso_type, uint16_t gso_size, uint16_t csum_start, TsoInfo* t) {
  const uint8_t kind = gso_type & 0x7f;  // without VIRTIO_NET_HDR_GSO_ECN
  if (gso_size == 0 || len < 14 + 20 + 20) return false;
  const uint16_t et = Rd16(f + 12);
  if (kind == 1 && et == 0x0800) {
    const uint8_t* ip = f + 14;
    const size_t ihl = static_cast<size_t>(ip[0] & 0x0f) * 4;
    if ((ip[0] >> 4) != 4 || ihl < 20 || ip[9] != 6 || (Rd16(ip + 6) & 0x3fff) != 0) return false;
    if (14 + ihl + 20 > len) return false;
    t->v6 = false;
    t->toff = 14 + ihl;
  } else if (kind == 4 && et == 0x86dd) {
    const uint8_t* ip = f + 14;
    if ((ip[0] >> 4) != 6) return false;
    // TCP follows the fixed header, or (extension headers) starts where the
    // kernel's partial checksum starts.
    size_t toff = ip[6] == 6 ? 14 + 40 : static_cast<size_t>(csum_start);
    if (toff < 14 + 40 || toff + 20 > len) return false;
    t->v6 = true;
    t->toff = toff;
  } else {
    return false;
  }
  const size_t thl = static_cast<size_t>(f[t->toff + 12] >> 4) * 4;
  if (thl < 20 || t->toff + thl > len) return false;
  t->hdr = t->toff + thl;
  t->mss = gso_size;
  t->payload = len - t->hdr;
  return t->payload > 0;
}

// Writes segment `k` of super-frame `f` (payload bytes [off, off + seg)) to `o`
// (room for t.hdr + seg bytes); returns its length. `last`: no more follow.
size_t WriteTsoSegment(const uint8_t* f, const TsoInfo& t, size_t off, size_t seg, uint32_t k, bool last, uint8_t* o) {
  memcpy(o, f, t.hdr);
  memcpy(o + t.hdr, f + t.hdr + off, seg);
  uint8_t* ip = o + 14;
  uint8_t* th = o + t.toff;
  const size_t tcp_len = t.hdr - t.toff + seg;
  uint32_t pseudo;
  if (!t.v6) {
    const size_t tot = t.toff - 14 + tcp_len;
    ip[2] = static_cast<uint8_t>(tot >> 8);
    ip[3] = static_cast<uint8_t>(tot);
    const uint16_t id = static_cast<uint16_t>(Rd16(f + 14 + 4) + k);
    ip[4] = static_cast<uint8_t>(id >> 8);
    ip[5] = static_cast<uint8_t>(id);
    ip[10] = ip[11] = 0;
    const uint16_t ic = static_cast<uint16_t>(~Fold(SumFast(ip, t.toff - 14, 0)));
    ip[10] = static_cast<uint8_t>(ic >> 8);
    ip[11] = static_cast<uint8_t>(ic);
    pseudo = SumFast(ip + 12, 8, 6 + static_cast<uint32_t>(tcp_len));
  } else {
    const size_t pl = t.hdr - 14 - 40 + seg;
    ip[4] = static_cast<uint8_t>(pl >> 8);
    ip[5] = static_cast<uint8_t>(pl);
    pseudo = SumFast(ip + 8, 32, 6 + static_cast<uint32_t>(tcp_len));
  }
  const uint32_t seq = Rd32(f + t.toff + 4) + static_cast<uint32_t>(off);
  th[4] = static_cast<uint8_t>(seq >> 24);
  th[5] = static_cast<uint8_t>(seq >> 16);
  th[6] = static_cast<uint8_t>(seq >> 8);
  th[7] = static_cast<uint8_t>(seq);
  if (k != 0) th[13] &= static_cast<uint8_t>(~0x80);  // CWR: first segment only
  if (!last) th[13] &= static_cast<uint8_t>(~0x09);   // FIN, PSH: last segment only
  th[16] = th[17] = 0;
  const uint16_t tc = static_cast<uint16_t>(~Fold(SumFast(th, tcp_len, pseudo)));
  th[16] = static_cast<uint8_t>(tc >> 8);
  th[17] = static_cast<uint8_t>(tc);
  return t.hdr + seg;
}

// Symbolic errno name for the `code` property, matching Node's own error codes.
std::string ErrnoName(int err) {
  switch (err) {
    case EAGAIN: return "EAGAIN";
    case EINTR: return "EINTR";
    case EIO: return "EIO";
    case EBADF: return "EBADF";
    case EBADFD: return "EBADFD";
    case EBUSY: return "EBUSY";
    case EINVAL: return "EINVAL";
    case ENOENT: return "ENOENT";
    case ENODEV: return "ENODEV";
    case ENXIO: return "ENXIO";
    case EPERM: return "EPERM";
    case EACCES: return "EACCES";
    case ENOMEM: return "ENOMEM";
    case ENOBUFS: return "ENOBUFS";
    case EMFILE: return "EMFILE";
    case ENFILE: return "ENFILE";
    case EFAULT: return "EFAULT";
    case ENOTSOCK: return "ENOTSOCK";
    case ENOPROTOOPT: return "ENOPROTOOPT";
    case EMSGSIZE: return "EMSGSIZE";
    case ENETDOWN: return "ENETDOWN";
    case EEXIST: return "EEXIST";
    default: {
      char buf[64];
      uv_err_name_r(-err, buf, sizeof buf);
      return buf;
    }
  }
}

[[noreturn]] void ThrowCode(Napi::Env env, const std::string& code, const std::string& msg) {
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("code", Napi::String::New(env, code));
  throw e;
}

[[noreturn]] void ThrowType(Napi::Env env, const std::string& msg) {
  Napi::TypeError e = Napi::TypeError::New(env, msg);
  e.Set("code", Napi::String::New(env, "ERR_INVALID_ARG_TYPE"));
  throw e;
}

[[noreturn]] void ThrowRange(Napi::Env env, const std::string& msg) {
  Napi::RangeError e = Napi::RangeError::New(env, msg);
  e.Set("code", Napi::String::New(env, "ERR_OUT_OF_RANGE"));
  throw e;
}

// An integer argument in [lo, hi]; `undefined` yields `dflt`.
double IntArg(Napi::Env env, const Napi::Value& v, const char* what, double lo, double hi, double dflt) {
  if (v.IsUndefined()) return dflt;
  if (!v.IsNumber()) ThrowType(env, std::string(what) + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= lo && d <= hi) || std::floor(d) != d) {
    ThrowRange(env, std::string(what) + " must be an integer in [" + std::to_string((long long)lo) + ", " +
                        std::to_string((long long)hi) + "], got " + v.ToString().Utf8Value());
  }
  return d;
}

// Byte view of a Buffer / Uint8Array argument (any ArrayBufferView is accepted).
void BytesArg(Napi::Env env, napi_value v, const char* what, uint8_t** data, size_t* len) {
  bool is = false;
  napi_is_buffer(env, v, &is);
  if (!is) ThrowType(env, std::string(what) + " must be a Buffer or Uint8Array");
  void* p = nullptr;
  if (napi_get_buffer_info(env, v, &p, len) != napi_ok) ThrowType(env, std::string(what) + " is not readable");
  *data = static_cast<uint8_t*>(p);
}

class Tap : public Napi::ObjectWrap<Tap> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "Tap",
                       {
                           InstanceAccessor<&Tap::GetFd>("fd"),
                           InstanceAccessor<&Tap::GetName>("name"),
                           InstanceMethod<&Tap::Start>("start"),
                           InstanceMethod<&Tap::Write>("write"),
                           InstanceMethod<&Tap::WriteBatch>("writeBatch"),
                           InstanceMethod<&Tap::WriteSlab>("writeSlab"),
                           InstanceMethod<&Tap::Stats>("stats"),
                           InstanceMethod<&Tap::RefMethod>("ref"),
                           InstanceMethod<&Tap::UnrefMethod>("unref"),
                           InstanceMethod<&Tap::Close>("close"),
                           InstanceMethod<&Tap::AddFlow>("addFlow"),
                           InstanceMethod<&Tap::ClearFlows>("clearFlows"),
                           InstanceMethod<&Tap::FlowStats>("flowStats"),
                           InstanceMethod<&Tap::LinkFastPath>("linkFastPath"),
                       });
  }

  // new Tap(name: string, maxFrame: number, batch: number, slabBytes: number)
  explicit Tap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Tap>(info), env_(info.Env()) {
    Napi::Env env = info.Env();
    if (!info[0].IsString()) ThrowType(env, "TAP name must be a string");
    std::string name = info[0].As<Napi::String>().Utf8Value();
    if (name.empty() || name.size() >= IFNAMSIZ) {
      ThrowCode(env, "ENAMETOOLONG", "TAP name '" + name + "' must be 1 to " + std::to_string(IFNAMSIZ - 1) + " bytes");
    }
    max_frame_ = static_cast<size_t>(IntArg(env, info[1], "maxFrame", kMinFrame, kMaxFrame, 65535 + 18));
    batch_ = static_cast<size_t>(IntArg(env, info[2], "batch", 1, kMaxBatch, 256));
    // Default slab: room for a full batch of standard 1500-MTU frames in 2 KiB
    // steps, plus one maximum frame so the last read never truncates.
    double dflt_slab = static_cast<double>(batch_) * 2048 + static_cast<double>(max_frame_) + 1;
    slab_bytes_ = static_cast<size_t>(IntArg(env, info[3], "slabBytes", static_cast<double>(max_frame_) + 1, kMaxSlab, dflt_slab));

    // Read buffers exist before the fd so an allocation failure leaks nothing.
    Napi::Buffer<uint8_t> slab = Napi::Buffer<uint8_t>::New(env, slab_bytes_);
    Napi::Uint32Array frames = Napi::Uint32Array::New(env, 2 * batch_);
    slab_data_ = slab.Data();
    frames_data_ = frames.Data();
    slab_ref_ = Napi::Persistent(slab);
    frames_ref_ = Napi::Persistent(frames);

    if (!info[4].IsUndefined()) {
      if (!info[4].IsBoolean()) ThrowType(env, "vnetHdr must be a boolean");
      vnet_ = info[4].As<Napi::Boolean>().Value();
    }
    bool want_tso = false;
    if (!info[5].IsUndefined()) {
      if (!info[5].IsBoolean()) ThrowType(env, "readOffload must be a boolean");
      want_tso = info[5].As<Napi::Boolean>().Value();
    }
    if (want_tso && !vnet_) ThrowType(env, "readOffload needs vnetHdr");
    if (want_tso) tso_buf_.resize(max_frame_ + 1);
    merge6_ = !tsweave::EnvSwitchOn("WEAVE_NO_TAP_MERGE6");
    bulk_tails_ = !tsweave::EnvSwitchOn("WEAVE_NO_BULK_TAILS");
    pack_small_ = !tsweave::EnvSwitchOn("WEAVE_NO_SMALL_PACK");
    connect6_ = !tsweave::EnvSwitchOn("WEAVE_NO_CONNECTED6");
    hits_.resize(batch_);
    dgs_.resize(batch_);
    dg_len_.resize(batch_);
    dg_off_.resize(batch_);
    // Sealed datagrams of one wake-up: its frames (at most the slab) plus overheads.
    egress_buf_.resize(slab_bytes_ + batch_ * kEgressOverhead);
    egress_iov_.resize(3 * batch_);
    fd_ = OpenTap(env, name, &name_, vnet_, want_tso, &tso_);  // throws with a one-line message
    port_ = new tsweave::FastPort;  // never freed: the UDP addon may hold it (flow-cache.h)
    port_->fd = fd_;
    port_->self = this;
    port_->service = &tsweave::ServiceOnce<Tap>;
    napi_add_env_cleanup_hook(env, CleanupHook, this);
    hook_added_ = true;
  }

  ~Tap() override {
    CloseNative();
    if (hook_added_) napi_remove_env_cleanup_hook(env_, CleanupHook, this);
  }

 private:
  // Opens /dev/net/tun and attaches it to TAP `name` (created if absent);
  // `actual` receives the name the kernel settled on.
  static int OpenTap(Napi::Env env, const std::string& name, std::string* actual, bool vnet, bool want_tso, bool* tso) {
    int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
      int err = errno;
      if (err == ENOENT || err == ENODEV || err == ENXIO) {
        ThrowCode(env, ErrnoName(err), "/dev/net/tun not found: load the tun module (modprobe tun)");
      }
      if (err == EPERM || err == EACCES) {
        ThrowCode(env, ErrnoName(err), "creating TAP " + name + " needs root (CAP_NET_ADMIN)");
      }
      ThrowCode(env, ErrnoName(err), "opening /dev/net/tun for TAP " + name + " failed: " + strerror(err));
    }
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    // IFF_NO_PI: frames carry no 4-byte packet-information prefix. No
    // IFF_VNET_HDR: frames are plain Ethernet, already checksummed/segmented.
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | (vnet ? IFF_VNET_HDR : 0);
    memcpy(ifr.ifr_name, name.data(), name.size());
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
      int err = errno;
      close(fd);
      switch (err) {
        case EPERM:
        case EACCES:
          ThrowCode(env, ErrnoName(err), "creating TAP " + name + " needs root (CAP_NET_ADMIN)");
        case EBUSY:
          ThrowCode(env, "EBUSY", "TAP " + name + " is busy: another open file (another router?) is attached to it");
        case EINVAL:
          ThrowCode(env, "EINVAL",
                    "cannot create TAP " + name + ": the name is taken by a device that is not a single-queue TAP");
        default:
          ThrowCode(env, ErrnoName(err), "creating TAP " + name + " failed: " + strerror(err));
      }
    }
    actual->assign(ifr.ifr_name, strnlen(ifr.ifr_name, IFNAMSIZ));
    if (vnet) {
      // A 10-byte header. Without read offloads the kernel keeps segmenting
      // and checksumming what it hands us; with them (want_tso) it may hand
      // us partial checksums and TCP super-frames, which Drain completes and
      // cuts (TsoInfo). A kernel refusing the offloads leaves them off.
      int hs = sizeof(VnetHdr);
      unsigned off = 0;
      if (ioctl(fd, TUNSETVNETHDRSZ, &hs) < 0 || ioctl(fd, TUNSETOFFLOAD, off) < 0) {
        int err = errno;
        close(fd);
        ThrowCode(env, ErrnoName(err), "configuring the virtio-net header of TAP " + name + " failed: " + strerror(err));
      }
      if (want_tso) {
        unsigned offl = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6;
        *tso = ioctl(fd, TUNSETOFFLOAD, offl) == 0;
      }
    }
    return fd;
  }

  Napi::Value GetFd(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), fd_); }

  Napi::Value GetName(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), name_); }

  // start(onBatch, onError): begin polling; onBatch(slab, frames, count) per wake-up.
  Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (closed_) ThrowCode(env, "ECLOSED", "TAP " + name_ + " is closed");
    if (started_) ThrowCode(env, "EALREADY", "TAP " + name_ + " is already started");
    if (!info[0].IsFunction()) ThrowType(env, "onBatch must be a function");
    if (!info[1].IsUndefined() && !info[1].IsFunction()) ThrowType(env, "onError must be a function");

    uv_loop_t* loop = nullptr;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr) {
      ThrowCode(env, "EINVAL", "no libuv event loop for TAP " + name_);
    }
    std::unique_ptr<uv_poll_t> poll(new uv_poll_t);
    int rc = uv_poll_init(loop, poll.get(), fd_);
    if (rc < 0) ThrowCode(env, uv_err_name(rc), "polling TAP " + name_ + " failed: " + uv_strerror(rc));
    poll->data = this;
    rc = uv_poll_start(poll.get(), UV_READABLE, OnPoll);
    if (rc < 0) {
      // The handle was initialised, so it must go through uv_close.
      uv_close(reinterpret_cast<uv_handle_t*>(poll.release()), FreePoll);
      ThrowCode(env, uv_err_name(rc), "polling TAP " + name_ + " failed: " + uv_strerror(rc));
    }
    poll_ = poll.release();
    loop_ = loop;
    if (!refed_) uv_unref(reinterpret_cast<uv_handle_t*>(poll_));

    on_batch_ = Napi::Persistent(info[0].As<Napi::Function>());
    if (info[1].IsFunction()) on_error_ = Napi::Persistent(info[1].As<Napi::Function>());
    async_ctx_.reset(new Napi::AsyncContext(env, "TapRead", Value()));
    // Keep the wrapper (and so this object) alive while the poll can call back.
    Ref();
    strong_ = true;
    started_ = true;
    return env.Undefined();
  }

  static void FreePoll(uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); }

  static void OnPoll(uv_poll_t* h, int status, int events) {
    Tap* self = static_cast<Tap*>(h->data);
    if (self == nullptr || self->closed_) return;
    Napi::Env env(self->env_);
    Napi::HandleScope scope(env);
    // No C++ exception may unwind into libuv's C frames.
    try {
      // A local handle keeps the wrapper alive even if JS closes it mid-callback.
      Napi::Object keep = self->Value();
      if (status < 0) {
        // libuv reports POLLERR as UV_EBADF and stops the handle. A read tells
        // the real cause (EBADFD once the interface was deleted) and delivers
        // any frame still queued; if it finds none, report what libuv saw.
        if (!self->Drain(env, keep) && !self->closed_) self->Fail(env, keep, -status, "poll");
        return;
      }
      if (events & UV_READABLE) self->Drain(env, keep);
      // Forwarded from the cache: wait for the next frame here (flow-cache.h).
      if (self->last_fast_ && !self->closed_ && self->port_ != nullptr) tsweave::RunNested(self->port_->nest, self->loop_);
    } catch (const Napi::Error& e) {
      napi_fatal_exception(env, e.Value());
    }
  }

  template <class T>
  friend int tsweave::ServiceOnce(void* p);

  // Reads up to one batch and hands it to onBatch. Returns true if an error
  // was reported: a read error (reading is then stopped) or an exception
  // thrown by onBatch (raised as an uncaught exception).
  bool Drain(Napi::Env env, Napi::Object keep) {
    last_fast_ = false;
    last_n_ = 0;
    // A super-frame cut into more segments than one batch holds continues in
    // further batches of this same wake-up (it is never left waiting for the
    // fd to become readable again).
    for (;;) {
      bool more = false;
      if (DrainOnce(env, keep, &more)) return true;
      if (!more || closed_) return false;
    }
  }

  // Emits segments of the pending super-frame into the slab while they fit.
  void EmitPending(size_t* pos, size_t* n) {
    const TsoInfo& t = tso_info_;
    while (tso_off_ < t.payload && *n < batch_) {
      const size_t seg = std::min(t.mss, t.payload - tso_off_);
      if (slab_bytes_ - *pos < t.hdr + seg) break;
      const bool last = tso_off_ + seg >= t.payload;
      const size_t l = WriteTsoSegment(tso_buf_.data(), t, tso_off_, seg, tso_k_, last, slab_data_ + *pos);
      frames_data_[2 * *n] = static_cast<uint32_t>(*pos);
      frames_data_[2 * *n + 1] = static_cast<uint32_t>(l);
      (*n)++;
      *pos += l;
      tso_off_ += seg;
      tso_k_++;
      read_segments_++;
    }
    if (tso_off_ >= t.payload) tso_pending_ = false;
  }

  // One batch: the rest of a pending super-frame, then frames read from the fd.
  // *more: a super-frame is still pending, run again.
  bool DrainOnce(Napi::Env env, Napi::Object keep, bool* more) {
    size_t pos = 0;
    size_t n = 0;
    int err = 0;
    const size_t want = max_frame_ + 1;  // one spare byte tells a frame longer than maxFrame
    // Frame 0 continues a super-frame cut in the batch before: a small one is its tail.
    first_continues_ = tso_pending_ && tso_k_ > 0;
    if (tso_pending_) EmitPending(&pos, &n);
    while (!tso_pending_ && n < batch_ && slab_bytes_ - pos >= want) {
      ssize_t r;
      VnetHdr vh;
      if (vnet_) {
        struct iovec iov[2] = {{&vh, sizeof vh}, {slab_data_ + pos, want}};
        r = readv(fd_, iov, 2);
      } else {
        r = read(fd_, slab_data_ + pos, want);
      }
      if (r < 0) {
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) err = errno;
        break;
      }
      if (r == 0) break;
      if (vnet_) {
        if (static_cast<size_t>(r) < sizeof vh || (vh.gso_type != 0 && !tso_)) {
          // No offloads were granted, so no GSO frame should come; never pass one on.
          read_truncated_++;
          continue;
        }
        r -= sizeof vh;
        if (vh.gso_type != 0) {
          // A TCP super-frame (read offloads): cut it into segments (TsoInfo).
          TsoInfo t;
          if (static_cast<size_t>(r) > max_frame_ || !ParseTso(slab_data_ + pos, static_cast<size_t>(r), vh.gso_type, vh.gso_size, vh.csum_start, &t)) {
            read_truncated_++;
            continue;
          }
          memcpy(tso_buf_.data(), slab_data_ + pos, static_cast<size_t>(r));
          tso_info_ = t;
          tso_off_ = 0;
          tso_k_ = 0;
          tso_pending_ = true;
          read_super_++;
          EmitPending(&pos, &n);
          continue;
        }
        if ((vh.flags & kVnetNeedsCsum) && static_cast<size_t>(vh.csum_start) + vh.csum_offset + 2 <= static_cast<size_t>(r)) {
          // Finish a partial checksum the kernel left to the "device".
          uint8_t* f = slab_data_ + pos;
          uint16_t c = static_cast<uint16_t>(~Fold(SumFast(f + vh.csum_start, static_cast<size_t>(r) - vh.csum_start, 0)));
          f[vh.csum_start + vh.csum_offset] = static_cast<uint8_t>(c >> 8);
          f[vh.csum_start + vh.csum_offset + 1] = static_cast<uint8_t>(c);
        }
      }
      if (static_cast<size_t>(r) > max_frame_) {
        // The kernel cut the frame at `want` bytes: a corrupt frame, dropped.
        read_truncated_++;
        continue;
      }
      frames_data_[2 * n] = static_cast<uint32_t>(pos);
      frames_data_[2 * n + 1] = static_cast<uint32_t>(r);
      n++;
      pos += static_cast<size_t>(r);
    }
    *more = tso_pending_ && err == 0;
    if (n > 0) {
      read_frames_ += n;
      read_batches_++;
      last_n_ = n;
      if (egress_.live != 0 && ForwardCached(n)) {
        last_fast_ = true;
        n = 0;
      }
    }
    if (n > 0) {
      napi_value args[3] = {slab_ref_.Value(), frames_ref_.Value(), Napi::Number::New(env, static_cast<double>(n))};
      try {
        on_batch_.MakeCallback(keep, 3, args, *async_ctx_);
      } catch (const Napi::Error& e) {
        // Same as an exception thrown by any other I/O callback: uncaughtException.
        napi_fatal_exception(env, e.Value());
        return true;
      }
    }
    if (err != 0 && !closed_) {
      Fail(env, keep, err, "read");
      return true;
    }
    return false;
  }

  // The flow cache's egress path: if every frame of this wake-up matches a
  // live flow (and, for more than kFastBatchMax frames, every one is a bulk
  // frame of at least kBigFrame bytes or the small tail right after one), send each as one FRAMES datagram —
  // sealed first for an encrypted flow — and return true; otherwise send
  // nothing and return false (the batch goes to JavaScript). Datagrams are
  // built in order; runs to one destination with equal lengths (the last may
  // be shorter) leave as one UDP GSO send when the flow allows it.
  bool ForwardCached(size_t n) {
    if (n > tsweave::kFastBatchMax && n > hits_.size()) return false;
    const uint64_t now = tsweave::MonoMs();
    for (size_t i = 0; i < n; i++) {
      const uint8_t* f = slab_data_ + frames_data_[2 * i];
      const size_t len = frames_data_[2 * i + 1];
      if (len < 14 || (f[0] & 1) != 0) return Miss(kMissGroup);  // runt, or a group address: flooded by the router
      // WEAVE_NO_SMALL_PACK=1 only (the older rule): a small frame in a multi-frame
      // wake-up only as the tail of bulk frames (the short last segment of a cut TCP
      // super-frame, the last IPv4 fragment); otherwise small frames are packed below.
      if (!pack_small_ && n > tsweave::kFastBatchMax && len < kBigFrame && (!bulk_tails_ || (i == 0 ? !first_continues_ : frames_data_[2 * i - 1] < kBigFrame))) return Miss(kMissSmall);
      const uint64_t dst = tsweave::Read48(f);
      const uint64_t src = tsweave::Read48(f + 6);
      // The frame's own key first (flow-cache.h FrameKey), then an unkeyed flow.
      uint8_t key[tsweave::kFlowKeyMax];
      const size_t kl = tsweave::FrameKey(f, len, key);
      tsweave::EgressFlow* ep = nullptr;
      if (kl != 0) {
        tsweave::EgressFlow& k = egress_.slots[tsweave::FlowSlot(src, dst, tsweave::KeyHash(key, kl))];
        if (k.expires_ms > now && k.src_mac == src && k.dst_mac == dst && k.key_len == kl && memcmp(k.key, key, kl) == 0) ep = &k;
      }
      if (ep == nullptr) {
        tsweave::EgressFlow& u = egress_.slots[tsweave::FlowSlot(src, dst, 0)];
        if (u.expires_ms <= now || u.src_mac != src || u.dst_mac != dst || u.key_len != 0) return Miss(kMissFlow);
        ep = &u;
      }
      tsweave::EgressFlow& e = *ep;
      if (len > e.max_frame) return Miss(kMissLong);
      if (e.crypto >= 0 && !SealReady(e)) return Miss(kMissSeal);
      hits_[i] = &e;
    }
    // Group the frames into datagrams, in order: a bulk frame gets its own; a small
    // one joins the datagram before it if that holds small frames to the same next
    // hop and the records still fit every one of their flows' paths.
    size_t nd = 0;
    for (size_t i = 0; i < n; i++) {
      tsweave::EgressFlow& e = *hits_[i];
      const size_t rec = tsweave::kFrameRecord + frames_data_[2 * i + 1];
      const bool small = frames_data_[2 * i + 1] < kBigFrame;
      if (pack_small_ && small && nd > 0) {
        Dg& g = dgs_[nd - 1];
        const size_t room = std::min<size_t>(g.room, tsweave::kFrameRecord + e.max_frame);
        if (g.small && SameHop(*g.flow, e) && g.bytes + rec <= room) {
          g.count++;
          g.bytes += rec;
          g.room = room;
          continue;
        }
      }
      dgs_[nd++] = Dg{&e, i, 1, rec, tsweave::kFrameRecord + e.max_frame, small};
    }
    bool failed = false;
    // Build every datagram: single plaintext frames as three iovecs (template,
    // length, frame) without copying; packed and sealed ones into egress_buf_.
    uint8_t* eb = egress_buf_.data();
    size_t eo = 0;
    for (size_t d = 0; d < nd; d++) {
      const Dg& g = dgs_[d];
      tsweave::EgressFlow& e = *g.flow;
      if (e.crypto < 0 && g.count == 1) {
        uint8_t* f = slab_data_ + frames_data_[2 * g.first];
        const size_t len = frames_data_[2 * g.first + 1];
        uint8_t* lenb = eb + eo;  // 2 bytes of length, kept in the buffer
        lenb[0] = static_cast<uint8_t>(len >> 8);
        lenb[1] = static_cast<uint8_t>(len);
        eo += 2;
        egress_iov_[3 * d] = {e.tmpl, sizeof e.tmpl};
        egress_iov_[3 * d + 1] = {lenb, 2};
        egress_iov_[3 * d + 2] = {f, len};
        dg_off_[d] = SIZE_MAX;
        dg_len_[d] = sizeof e.tmpl + 2 + len;
        continue;
      }
      // The FRAMES datagram: the sleeve header, then each frame's record (its flow's
      // origin and destination peer, length, frame). Sealed: built at offset 16 and
      // encrypted in place behind the ENCRYPTED outer header.
      uint8_t* sb = eb + eo;
      uint8_t* p = e.crypto < 0 ? sb : sb + 16;
      memcpy(p, e.tmpl, tsweave::kSleeveHeader);
      size_t pl = tsweave::kSleeveHeader;
      for (size_t k = g.first; k < g.first + g.count; k++) {
        const size_t len = frames_data_[2 * k + 1];
        memcpy(p + pl, hits_[k]->tmpl + tsweave::kSleeveHeader, tsweave::kEgressTemplate - tsweave::kSleeveHeader);
        p[pl + 12] = static_cast<uint8_t>(len >> 8);
        p[pl + 13] = static_cast<uint8_t>(len);
        memcpy(p + pl + tsweave::kFrameRecord, slab_data_ + frames_data_[2 * k], len);
        pl += tsweave::kFrameRecord + len;
      }
      if (g.count > 1) egress_packed_ += g.count;
      if (e.crypto < 0) {
        dg_off_[d] = eo;
        dg_len_[d] = pl;
        eo += pl;
        continue;
      }
      const tsweave::FlowCrypto& c = crypto_.slots[e.crypto];
      const uint8_t hdr[tsweave::kSleeveHeader] = {tsweave::kSleeveMagic, tsweave::kSleeveEncrypted, e.tmpl[2], e.tmpl[3],
                                                   e.tmpl[4], e.tmpl[5], e.tmpl[6], e.tmpl[7]};
      long sl = sleeve_aead::Seal(reinterpret_cast<double*>(c.state), c.key, hdr, p, pl, sb, egress_buf_.size() - eo);
      if (sl < 0) {  // cannot happen after SealReady; never send anything unsealed
        egress_counters_.errors += g.count;
        failed = true;
        dg_len_[d] = 0;
        continue;
      }
      dg_off_[d] = eo;
      dg_len_[d] = static_cast<size_t>(sl);
      eo += static_cast<size_t>(sl);
    }
    // Send, in order: runs of one flow destination and equal length share a GSO send.
    size_t d = 0;
    while (d < nd) {
      if (dg_len_[d] == 0) {
        d++;
        continue;
      }
      tsweave::EgressFlow& e = *dgs_[d].flow;
      size_t run = 1;
      size_t total = dg_len_[d];
      if (gso_ok_ && e.gso) {
        while (d + run < nd && run < kGsoSegs) {
          const tsweave::EgressFlow& o = *dgs_[d + run].flow;
          const size_t l = dg_len_[d + run];
          if (l == 0 || l > dg_len_[d] || total + l > kGsoBytes || o.udp_fd != e.udp_fd || !o.gso || o.to_len != e.to_len ||
              memcmp(&o.to, &e.to, e.to_len) != 0) {
            break;
          }
          total += l;
          run++;
          if (l < dg_len_[d]) break;  // only the last may be shorter
        }
      }
      if (!SendRun(d, run)) failed = true;
      d += run;
    }
    egress_counters_.batches++;
    if (failed) {
      egress_.Clear();
      crypto_.DropAll(env_);
      CloseConn6();
    }
    return true;
  }

  // Whether two egress flows' datagrams may share one: the same socket, next-hop
  // address, sender header and sealing key entry (so one seal covers both).
  static bool SameHop(const tsweave::EgressFlow& a, const tsweave::EgressFlow& b) {
    return a.udp_fd == b.udp_fd && a.to_len == b.to_len && memcmp(&a.to, &b.to, a.to_len) == 0 && a.crypto == b.crypto &&
           (a.crypto < 0 || a.crypto_gen == b.crypto_gen) && memcmp(a.tmpl, b.tmpl, tsweave::kSleeveHeader) == 0;
  }

  // Why a wake-up went to JavaScript instead (ForwardCached), counted per batch:
  // a runt or group-addressed frame, a small frame in a multi-frame wake-up, no live
  // flow for the MAC pair, a frame longer than the flow's path takes, a flow that
  // cannot seal now.
  enum MissKind { kMissGroup, kMissSmall, kMissFlow, kMissLong, kMissSeal, kMissKinds };
  bool Miss(MissKind k) {
    miss_[k]++;
    return false;
  }

  // Sends datagrams [i, i + run) (one flow destination) with one sendmsg, as a
  // GSO send when run > 1; a GSO send the kernel refuses as a whole is retried
  // datagram by datagram (and GSO is not tried again if the kernel lacks it).
  // Returns false for an error that must empty the cache.
  bool SendRun(size_t i, size_t run) {
    tsweave::EgressFlow& e = *dgs_[i].flow;
    struct iovec* iov = &egress_iov_[3 * i];
    size_t niov = 0;
    // Gather the run's iovecs contiguously at iov (sealed datagrams use one each).
    for (size_t k = 0; k < run; k++) {
      const size_t d = i + k;
      if (dg_off_[d] == SIZE_MAX) {
        if (niov != 3 * k) {
          iov[niov] = egress_iov_[3 * d];
          iov[niov + 1] = egress_iov_[3 * d + 1];
          iov[niov + 2] = egress_iov_[3 * d + 2];
        }
        niov += 3;
      } else {
        iov[niov++] = {egress_buf_.data() + dg_off_[d], dg_len_[d]};
      }
    }
    struct msghdr mh;
    memset(&mh, 0, sizeof mh);
    mh.msg_name = &e.to;
    mh.msg_namelen = e.to_len;
    mh.msg_iov = iov;
    mh.msg_iovlen = niov;
    alignas(struct cmsghdr) uint8_t ctrl[CMSG_SPACE(sizeof(uint16_t))];
    if (run > 1) {
      memset(ctrl, 0, sizeof ctrl);
      mh.msg_control = ctrl;
      mh.msg_controllen = sizeof ctrl;
      struct cmsghdr* c = CMSG_FIRSTHDR(&mh);
      c->cmsg_level = SOL_UDP;
      c->cmsg_type = UDP_SEGMENT;
      c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
      const uint16_t seg = static_cast<uint16_t>(dg_len_[i]);
      memcpy(CMSG_DATA(c), &seg, sizeof seg);
    }
    ssize_t r = SendFlow(e, &mh);
    if (r >= 0 || run == 1) {
      bool bad = false;
      for (size_t k = 0; k < run; k++) {
        if (CountDatagram(i + k, r)) bad = true;
      }
      if (r >= 0 && run > 1) egress_gso_ += run;
      return !bad;
    }
    const int err = errno;
    if (err == EAGAIN || err == EWOULDBLOCK || err == ENOBUFS) {
      for (size_t k = 0; k < run; k++) egress_counters_.drops += dgs_[i + k].count;
      return true;
    }
    if (err == EIO || err == ENOPROTOOPT || err == EOPNOTSUPP || err == EINVAL) gso_ok_ = false;
    // One by one: each datagram gets its own verdict (its iovecs were gathered above).
    bool ok = true;
    size_t at = 0;
    for (size_t k = 0; k < run; k++) {
      const size_t d = i + k;
      const size_t cnt = dg_off_[d] == SIZE_MAX ? 3 : 1;
      mh.msg_iov = iov + at;
      mh.msg_iovlen = cnt;
      mh.msg_control = nullptr;
      mh.msg_controllen = 0;
      at += cnt;
      r = SendFlow(e, &mh);
      if (CountDatagram(d, r)) ok = false;
    }
    return ok;
  }

  // sendmsg of one datagram or GSO run on flow e's socket (EINTR retried). On a
  // connected IPv6 socket (Conn6) an error that an ICMP reply to an EARLIER
  // datagram left on the socket fails this send once: it is sent again at once.
  ssize_t SendFlow(const tsweave::EgressFlow& e, struct msghdr* mh) {
    ssize_t r;
    do {
      r = sendmsg(e.udp_fd, mh, MSG_DONTWAIT);
    } while (r < 0 && errno == EINTR);
    if (r < 0 && e.conn && IcmpSocketError(errno)) {
      conn6_retries_++;
      do {
        r = sendmsg(e.udp_fd, mh, MSG_DONTWAIT);
      } while (r < 0 && errno == EINTR);
    }
    return r;
  }

  // The errors an ICMPv6 error message sets on a connected UDP socket (the
  // kernel's icmpv6_err_convert: unreachable, packet too big, parameter
  // problem, time exceeded).
  static bool IcmpSocketError(int err) {
    return err == ECONNREFUSED || err == EHOSTUNREACH || err == ENETUNREACH || err == EACCES || err == EMSGSIZE || err == EPROTO;
  }

  // ---- Connected send sockets for IPv6 next hops (Conn6) ----
  //
  // From an unconnected UDP socket the kernel looks up the route, and for IPv6
  // chooses a source address (RFC 6724), on every send; a connected socket keeps
  // its route and only checks it is still valid. For IPv6 that lookup is most
  // of what a sparse send costs more: a C probe on the 2-vCPU test VM (two
  // namespaces on a veth, 100-byte datagrams every 2 ms, session 46) measured
  // sendto() from the sleeve's kind of socket (AF_INET6 on [::]) at a median
  // 18–23 µs to an IPv6 peer, 16–18 µs to an IPv4-mapped one, and 12–14 µs from
  // a socket connected to the IPv6 peer; connecting to an IPv4-mapped peer
  // gained nothing. So an egress flow to an IPv6 next hop sends from a socket
  // connected to that hop. It cannot share the sleeve's port: a socket on our
  // port connected to [hop]:port would receive every datagram the hop sends us
  // (the kernel prefers the connected match) instead of the sleeve's socket. So
  // it has an ephemeral port, and a filter that drops whatever would reach it.
  // Receivers tell a sleeve datagram's sender by address, never by port
  // (sleeve.ts onDatagram, udp.cc ingress flows), so they see no difference;
  // a firewall that matches sleeve traffic by source port does, and
  // WEAVE_NO_CONNECTED6=1 keeps every send on the sleeve's socket. A socket
  // lives until the egress flows are cleared (clearFlows, a failed send,
  // close), after which no flow refers to it; at most kConn6Max at once, flows
  // beyond use the sleeve's socket.
  static constexpr size_t kConn6Max = 128;
  struct Conn6 {
    struct in6_addr addr;
    uint16_t port;  // network order
    int main_fd;    // the sleeve socket it stands in for
    int fd;
  };

  // The connected socket for next hop `to` of sleeve socket `main_fd`, opened
  // if needed; -1: send on main_fd (off, table full, or the socket failed).
  int Conn6Fd(int main_fd, const struct sockaddr_in6& to) {
    if (!connect6_) return -1;
    for (const Conn6& c : conn6_) {
      if (c.main_fd == main_fd && c.port == to.sin6_port && memcmp(&c.addr, &to.sin6_addr, sizeof c.addr) == 0) return c.fd;
    }
    if (conn6_.size() >= kConn6Max) return -1;
    const int fd = OpenConn6(main_fd, to);
    if (fd < 0) {
      conn6_failed_++;
      return -1;
    }
    conn6_.push_back(Conn6{to.sin6_addr, to.sin6_port, main_fd, fd});
    conn6_opened_++;
    return fd;
  }

  // A non-blocking UDP socket connected to `to`, with the sleeve socket's PMTU
  // mode and send buffer and, if that socket is bound to one address, the same
  // address; -1 on any failure.
  static int OpenConn6(int main_fd, const struct sockaddr_in6& to) {
    const int fd = socket(AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    int v = 0;
    socklen_t l = sizeof v;
    bool ok = getsockopt(main_fd, IPPROTO_IPV6, IPV6_MTU_DISCOVER, &v, &l) == 0 &&
              setsockopt(fd, IPPROTO_IPV6, IPV6_MTU_DISCOVER, &v, sizeof v) == 0;
    l = sizeof v;
    if (ok && getsockopt(main_fd, SOL_SOCKET, SO_SNDBUF, &v, &l) == 0) {
      v /= 2;  // the kernel reports twice what was set
      if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &v, sizeof v) != 0) (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof v);
    }
    // Receive nothing: a classic BPF filter of one instruction, "keep 0 bytes".
    struct sock_filter drop_all = BPF_STMT(BPF_RET | BPF_K, 0);
    struct sock_fprog prog = {1, &drop_all};
    ok = ok && setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog) == 0;
    struct sockaddr_in6 local;
    l = sizeof local;
    if (ok && getsockname(main_fd, reinterpret_cast<struct sockaddr*>(&local), &l) == 0 && local.sin6_family == AF_INET6 &&
        !IN6_IS_ADDR_UNSPECIFIED(&local.sin6_addr)) {
      local.sin6_port = 0;
      ok = bind(fd, reinterpret_cast<struct sockaddr*>(&local), sizeof local) == 0;
    }
    ok = ok && connect(fd, reinterpret_cast<const struct sockaddr*>(&to), sizeof to) == 0;
    if (!ok) {
      close(fd);
      return -1;
    }
    return fd;
  }

  // Closes every connected socket; only once no egress flow can refer to one.
  void CloseConn6() {
    for (const Conn6& c : conn6_) close(c.fd);
    conn6_.clear();
  }

  // Counts the outcome of sending datagram d (r: sendmsg's return, errno still
  // set) for each frame it carries. Returns true for an error that must empty
  // the cache.
  bool CountDatagram(size_t d, ssize_t r) {
    const Dg& g = dgs_[d];
    const int err = errno;
    bool bad = false;
    for (size_t k = g.first; k < g.first + g.count; k++) {
      errno = err;
      if (egress_counters_.Count(r, frames_data_[2 * k + 1])) bad = true;
      if (r >= 0 && hits_[k]->crypto >= 0) egress_counters_.crypto++;
    }
    return bad;
  }

  // Whether an encrypted flow may seal now: its key entry is the one it was
  // installed with, the Sealer is still at that key's epoch (a re-key drops
  // the entry: the flow misses and the router installs it again with the new
  // key) and the counter is not exhausted.
  bool SealReady(const tsweave::EgressFlow& e) {
    tsweave::FlowCrypto& c = crypto_.slots[e.crypto];
    if (!c.live || c.gen != e.crypto_gen) return false;
    const double* st = reinterpret_cast<const double*>(c.state);
    if (static_cast<uint32_t>(st[1]) != c.epoch) {
      crypto_.Drop(env_, static_cast<size_t>(e.crypto));
      return false;
    }
    return st[0] >= 0 && st[0] < sleeve_aead::kMaxSeq;
  }

  // addFlow(srcMac, dstMac, udpFd, addr, port, template, maxFrame, ttlMs[, sealState, key[, frame]]):
  // frames srcMac → dstMac (48-bit numbers) — with `frame`, only those with its
  // EtherType and IP source and destination, never ARP or IPv6 ND (flow-cache.h
  // FrameKey; returns false for a frame that must not be cached) — leave as FRAMES datagrams to
  // `addr` (IPv4 uint32, or IPv6 text) : `port` on socket `udpFd`, each made of the 20-byte
  // `template` (sleeve header, record src and dst peer), the frame's length
  // and the frame, while not longer than maxFrame bytes, for ttlMs ms. With
  // sealState (a Sealer.sharedState) and key (its 32-byte current key), each
  // datagram is sealed with them first, behind an ENCRYPTED header naming the
  // template's sender.
  Napi::Value AddFlow(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const double kMac = 281474976710655.0;
    uint64_t src = static_cast<uint64_t>(IntArg(env, info[0], "srcMac", 0, kMac, -1));
    uint64_t dst = static_cast<uint64_t>(IntArg(env, info[1], "dstMac", 0, kMac, -1));
    int fd = static_cast<int>(IntArg(env, info[2], "udpFd", 0, 2147483647, -1));
    // addr: IPv4 as uint32, or IPv6 text (issue #21).
    uint32_t addr = 0;
    struct in6_addr addr6;
    bool v6 = info[3].IsString();
    if (v6) {
      if (inet_pton(AF_INET6, info[3].As<Napi::String>().Utf8Value().c_str(), &addr6) != 1) ThrowType(env, "addr must be an IPv4 uint32 or IPv6 text");
    } else {
      addr = static_cast<uint32_t>(IntArg(env, info[3], "addr", 0, 4294967295.0, 0));
    }
    // port | 0x10000 (the sleeve's COALESCE flag): datagrams of this flow may
    // leave in UDP GSO sends (the router allows it for paths without a
    // lowered PMTU, as for its own sends).
    const uint32_t port_arg = static_cast<uint32_t>(IntArg(env, info[4], "port", 1, 0x1ffff, 0));
    const uint16_t port = static_cast<uint16_t>(port_arg & 0xffff);
    if (port == 0) ThrowRange(env, "port must be 1..65535 (optionally | 0x10000)");
    uint8_t* tmpl;
    size_t tlen;
    BytesArg(env, info[5], "template", &tmpl, &tlen);
    if (tlen != tsweave::kEgressTemplate) ThrowRange(env, "template must be " + std::to_string(tsweave::kEgressTemplate) + " bytes");
    uint32_t max_frame = static_cast<uint32_t>(IntArg(env, info[6], "maxFrame", 14, 65535, 0));
    double ttl = IntArg(env, info[7], "ttlMs", 1, 3600000, 0);
    if (info[0].IsUndefined() || info[1].IsUndefined() || info[2].IsUndefined() || info[4].IsUndefined() ||
        info[6].IsUndefined() || info[7].IsUndefined()) {
      ThrowType(env, "addFlow(srcMac, dstMac, udpFd, addr, port, template, maxFrame, ttlMs) needs every argument");
    }
    uint8_t* st = nullptr;
    uint8_t* key = nullptr;
    if (!info[8].IsUndefined() || !info[9].IsUndefined()) {
      size_t stl = 0, keyl = 0;
      BytesArg(env, info[8], "sealState", &st, &stl);
      BytesArg(env, info[9], "key", &key, &keyl);
      if (stl < sleeve_aead::kSealStateBytes || (reinterpret_cast<uintptr_t>(st) & 7) != 0) ThrowRange(env, "sealState must be a Sealer.sharedState (16 bytes, 8-byte aligned)");
      if (keyl != sleeve_aead::kKeyBytes) ThrowRange(env, "key must be 32 bytes");
    }
    // frame: a sample of the frames this flow is for (the one the router just
    // judged); it keys the flow (flow-cache.h FrameKey).
    uint8_t* sample = nullptr;
    size_t sample_len = 0;
    if (info.Length() > 10 && !info[10].IsUndefined()) BytesArg(env, info[10], "frame", &sample, &sample_len);
    if (closed_ || loop_ == nullptr) return Napi::Boolean::New(env, false);
    // The socket's family decides the address form (a dual-stack AF_INET6
    // socket takes IPv4 as ::ffff:a.b.c.d); IPv6 on an IPv4 socket: no flow.
    int domain = AF_INET;
    socklen_t dl = sizeof domain;
    if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &dl) < 0 || (v6 && domain != AF_INET6)) return Napi::Boolean::New(env, false);
    struct sockaddr_in6 to;
    socklen_t to_len;
    memset(&to, 0, sizeof to);
    if (domain == AF_INET6) {
      to.sin6_family = AF_INET6;
      to.sin6_port = htons(port);
      if (v6) {
        to.sin6_addr = addr6;
      } else {
        to.sin6_addr.s6_addr[10] = 0xff;
        to.sin6_addr.s6_addr[11] = 0xff;
        uint32_t be = htonl(addr);
        memcpy(to.sin6_addr.s6_addr + 12, &be, 4);
      }
      to_len = sizeof to;
    } else {
      struct sockaddr_in v4;
      memset(&v4, 0, sizeof v4);
      v4.sin_family = AF_INET;
      v4.sin_port = htons(port);
      v4.sin_addr.s_addr = htonl(addr);
      memcpy(&to, &v4, sizeof v4);
      to_len = sizeof v4;
    }
    int crypto = -1;
    if (st != nullptr) {
      const double* sd = reinterpret_cast<const double*>(st);
      // The key table is indexed by next hop: IPv4 address and port, or for
      // IPv6 a 64-bit FNV-1a of address and port with the top bit set (a
      // collision only makes the two hops' flows miss and reinstall).
      uint64_t dest = (static_cast<uint64_t>(v6 ? 0 : addr) << 16) | port;
      if (v6) {
        uint64_t h = 1469598103934665603ULL;
        for (int i = 0; i < 16; i++) h = (h ^ addr6.s6_addr[i]) * 1099511628211ULL;
        h = (h ^ (port & 0xff)) * 1099511628211ULL;
        h = (h ^ (port >> 8)) * 1099511628211ULL;
        dest = h | (1ULL << 63);
      }
      crypto = crypto_.Install(env, dest, info[8], st, key, static_cast<uint32_t>(sd[1]));
      if (crypto < 0) return Napi::Boolean::New(env, false);
    }
    // The sample frame's key (flow-cache.h): a frame that must not be cached
    // installs nothing; without a sample the flow is unkeyed.
    uint8_t fkey[tsweave::kFlowKeyMax];
    size_t fkl = 0;
    if (sample != nullptr) {
      fkl = tsweave::FrameKey(sample, sample_len, fkey);
      if (fkl == 0) return Napi::Boolean::New(env, false);
    }
    tsweave::EgressFlow& e = egress_.slots[tsweave::FlowSlot(src, dst, fkl ? tsweave::KeyHash(fkey, fkl) : 0)];
    e.key_len = static_cast<uint8_t>(fkl);
    if (fkl) memcpy(e.key, fkey, fkl);
    e.crypto = crypto;
    e.crypto_gen = crypto >= 0 ? crypto_.slots[crypto].gen : 0;
    e.src_mac = src;
    e.dst_mac = dst;
    e.udp_fd = fd;
    e.conn = false;
    if (v6) {
      const int cfd = Conn6Fd(fd, to);
      if (cfd >= 0) {
        e.udp_fd = cfd;
        e.conn = true;
      }
    }
    e.to = to;
    e.to_len = to_len;
    e.max_frame = max_frame;
    e.gso = (port_arg & 0x10000) != 0;
    memcpy(e.tmpl, tmpl, sizeof e.tmpl);
    e.expires_ms = tsweave::MonoMs() + static_cast<uint64_t>(ttl);
    egress_.live++;
    egress_.installs++;
    return Napi::Boolean::New(env, true);
  }

  // linkFastPath(udpPort): joins the UDP socket's FastPort (UdpSocket.fastPort())
  // and this TAP's into one nest (flow-cache.h); true if linked. Once per TAP.
  Napi::Value LinkFastPath(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info[0].IsExternal()) ThrowType(env, "linkFastPath needs the UDP socket's fastPort()");
    auto* other = info[0].As<Napi::External<tsweave::FastPort>>().Data();
    if (closed_ || loop_ == nullptr || port_ == nullptr || port_->nest != nullptr || other == nullptr || other->nest != nullptr) {
      return Napi::Boolean::New(env, false);
    }
    return Napi::Boolean::New(env, tsweave::MakeNest(port_, other, loop_) != nullptr);
  }

  Napi::Value ClearFlows(const Napi::CallbackInfo& info) {
    egress_.Clear();
    crypto_.DropAll(env_);
    CloseConn6();
    return info.Env().Undefined();
  }

  // flowStats() -> { installs, clears, batches, frames, bytes, drops, errors }
  Napi::Value FlowStats(const Napi::CallbackInfo& info) {
    return tsweave::FlowStatsObject(info.Env(), egress_, egress_counters_);
  }

  // Stops reading and reports `err` once; the owner decides whether to close.
  void Fail(Napi::Env env, Napi::Object keep, int err, const char* op) {
    read_errors_++;
    if (poll_ != nullptr) uv_poll_stop(poll_);
    std::string code = ErrnoName(err);
    std::string msg = "TAP " + name_ + ": " + op + " failed: " + strerror(err) + "; reading stopped";
    if (on_error_.IsEmpty()) {
      Napi::Error e = Napi::Error::New(env, msg);
      e.Set("code", Napi::String::New(env, code));
      napi_fatal_exception(env, e.Value());
      return;
    }
    try {
      on_error_.MakeCallback(keep, {Napi::String::New(env, code), Napi::String::New(env, msg)}, *async_ctx_);
    } catch (const Napi::Error& e) {
      napi_fatal_exception(env, e.Value());
    }
  }

  // One frame out. EAGAIN (queue full) is a drop; anything else (EIO while the
  // link is down, EINVAL for a runt) is an error. Neither throws.
  inline int WriteFrame(const uint8_t* p, size_t len) {
    if (fd_ < 0) {
      write_errors_++;
      last_write_errno_ = EBADF;
      return EBADF;
    }
    for (;;) {
      ssize_t r;
      if (vnet_) {
        static const VnetHdr kPlain = {0, 0, 0, 0, 0, 0};
        struct iovec iov[2] = {{const_cast<VnetHdr*>(&kPlain), sizeof kPlain}, {const_cast<uint8_t*>(p), len}};
        r = ::writev(fd_, iov, 2);
      } else {
        r = ::write(fd_, p, len);
      }
      if (r >= 0) {
        write_frames_++;
        return 0;
      }
      int err = errno;
      if (err == EINTR) continue;
      last_write_errno_ = err;
      if (err == EAGAIN || err == EWOULDBLOCK) {
        write_drops_++;
        return EAGAIN;
      }
      write_errors_++;
      return err;
    }
  }

  // write(buf, offset = 0, length = buf.length - offset) -> true if the kernel took it.
  Napi::Value Write(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint8_t* data;
    size_t len;
    BytesArg(env, info[0], "frame", &data, &len);
    size_t off = 0;
    if (info.Length() > 1 && !info[1].IsUndefined()) {
      off = static_cast<size_t>(IntArg(env, info[1], "offset", 0, static_cast<double>(len), 0));
    }
    size_t n = len - off;
    if (info.Length() > 2 && !info[2].IsUndefined()) {
      n = static_cast<size_t>(IntArg(env, info[2], "length", 0, static_cast<double>(len - off), 0));
    }
    return Napi::Boolean::New(env, WriteFrame(data + off, n) == 0);
  }

  // writeBatch(bufs: Buffer[], count = bufs.length) -> frames written.
  // Stops at the first EAGAIN, counting the rest as drops (the queue is full).
  Napi::Value WriteBatch(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info[0].IsArray()) ThrowType(env, "frames must be an array of Buffers");
    Napi::Array arr = info[0].As<Napi::Array>();
    uint32_t alen = arr.Length();
    uint32_t count = static_cast<uint32_t>(IntArg(env, info[1], "count", 0, alen, alen));
    uint32_t written = 0;
    for (uint32_t i = 0; i < count; i++) {
      napi_value el;
      if (napi_get_element(env, arr, i, &el) != napi_ok) ThrowType(env, "frames[" + std::to_string(i) + "] is not readable");
      uint8_t* data;
      size_t len;
      BytesArg(env, el, "each frame", &data, &len);
      int err = WriteFrame(data, len);
      if (err == 0) {
        written++;
      } else if (err == EAGAIN) {
        write_drops_ += count - i - 1;
        break;
      }
    }
    return Napi::Number::New(env, written);
  }

  // writeSlab(slab, frames: Uint32Array [off0, len0, ...], count) -> frames written.
  // Every pair is checked before anything is written.
  Napi::Value WriteSlab(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint8_t* data;
    size_t len;
    BytesArg(env, info[0], "slab", &data, &len);
    if (!info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array) {
      ThrowType(env, "frames must be a Uint32Array of [offset, length] pairs");
    }
    Napi::Uint32Array fr = info[1].As<Napi::Uint32Array>();
    size_t pairs = fr.ElementLength() / 2;
    size_t count = static_cast<size_t>(IntArg(env, info[2], "count", 0, static_cast<double>(pairs), static_cast<double>(pairs)));
    const uint32_t* f = fr.Data();
    for (size_t i = 0; i < count; i++) {
      uint64_t o = f[2 * i], l = f[2 * i + 1];
      if (o + l > len) {
        ThrowRange(env, "frame " + std::to_string(i) + " (offset " + std::to_string(o) + ", length " + std::to_string(l) +
                            ") lies outside the " + std::to_string(len) + "-byte slab");
      }
    }
    if (vnet_ && merge_) return Napi::Number::New(env, WriteMerged(data, f, count));
    uint32_t written = 0;
    for (size_t i = 0; i < count; i++) {
      int err = WriteFrame(data + f[2 * i], f[2 * i + 1]);
      if (err == 0) {
        written++;
      } else if (err == EAGAIN) {
        write_drops_ += count - i - 1;
        break;
      }
    }
    return Napi::Number::New(env, written);
  }

  // writeSlab with TCP segment merging (vnetHdr). Returns frames written,
  // each segment of a super-frame counted.
  uint32_t WriteMerged(const uint8_t* data, const uint32_t* f, size_t count) {
    const SlabFrames fr{data, f};
    uint32_t written = 0;
    size_t i = 0;
    while (i < count) {
      TcpSeg a;
      size_t total = 0;
      uint8_t last_flags = 0;
      const size_t run = PlanMerge(fr, count, i, merge6_, &a, &total, &last_flags);
      if (run == 1) {
        int err = WriteFrame(data + f[2 * i], f[2 * i + 1]);
        if (err == 0) {
          written++;
        } else if (err == EAGAIN) {
          write_drops_ += count - i - 1;
          break;
        }
        i++;
        continue;
      }
      if (fd_ < 0) {
        last_write_errno_ = EBADF;
        write_errors_ += run;
        i += run;
        continue;
      }
      int err = tsweave::gso::WriteSuper(fd_, fr, i, run, a, total, last_flags);
      if (err != 0) last_write_errno_ = err;
      if (err == 0) {
        written += static_cast<uint32_t>(run);
        write_frames_ += run;
        merge_counters_.frames += run;
        merge_counters_.supers++;
      } else if (err == EAGAIN) {
        write_drops_ += count - i;
        break;
      } else if (err == EINVAL) {
        // The kernel refused the super-frame: stop merging (this family), send
        // these one by one.
        (a.v6 ? merge6_ : merge_) = false;
        merge_counters_.fallbacks++;
        for (size_t k = i; k < i + run; k++) {
          if (WriteFrame(data + f[2 * k], f[2 * k + 1]) == 0) written++;
        }
      } else {
        write_errors_ += run;
      }
      i += run;
    }
    return written;
  }

  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object o = Napi::Object::New(env);
    o.Set("readFrames", static_cast<double>(read_frames_));
    o.Set("readBatches", static_cast<double>(read_batches_));
    o.Set("readTruncated", static_cast<double>(read_truncated_));
    o.Set("readErrors", static_cast<double>(read_errors_));
    o.Set("writeFrames", static_cast<double>(write_frames_));
    o.Set("writeDrops", static_cast<double>(write_drops_));
    o.Set("writeErrors", static_cast<double>(write_errors_));
    if (last_write_errno_ != 0) {
      o.Set("lastWriteError", ErrnoName(last_write_errno_));
    } else {
      o.Set("lastWriteError", env.Null());
    }
    o.Set("vnetHdr", vnet_);
    o.Set("writeCoalesced", static_cast<double>(merge_counters_.frames));
    o.Set("writeSuperFrames", static_cast<double>(merge_counters_.supers));
    o.Set("writeMergeFallbacks", static_cast<double>(merge_counters_.fallbacks));
    o.Set("readOffload", tso_);
    o.Set("readSuperFrames", static_cast<double>(read_super_));
    o.Set("readSegments", static_cast<double>(read_segments_));
    o.Set("egressGso", static_cast<double>(egress_gso_));
    o.Set("egressPacked", static_cast<double>(egress_packed_));
    o.Set("missGroup", static_cast<double>(miss_[kMissGroup]));
    o.Set("missSmall", static_cast<double>(miss_[kMissSmall]));
    o.Set("missFlow", static_cast<double>(miss_[kMissFlow]));
    o.Set("missLong", static_cast<double>(miss_[kMissLong]));
    o.Set("missSeal", static_cast<double>(miss_[kMissSeal]));
    o.Set("conn6Sockets", static_cast<double>(conn6_.size()));
    o.Set("conn6Opened", static_cast<double>(conn6_opened_));
    o.Set("conn6Failed", static_cast<double>(conn6_failed_));
    o.Set("conn6Retries", static_cast<double>(conn6_retries_));
    return o;
  }

  Napi::Value RefMethod(const Napi::CallbackInfo& info) {
    refed_ = true;
    if (poll_ != nullptr) uv_ref(reinterpret_cast<uv_handle_t*>(poll_));
    return info.Env().Undefined();
  }

  Napi::Value UnrefMethod(const Napi::CallbackInfo& info) {
    refed_ = false;
    if (poll_ != nullptr) uv_unref(reinterpret_cast<uv_handle_t*>(poll_));
    return info.Env().Undefined();
  }

  // close(): idempotent; safe inside onBatch/onError.
  Napi::Value Close(const Napi::CallbackInfo& info) {
    CloseNative();
    // The AsyncContext may be in use by a MakeCallback on the stack; it is
    // released with the object.
    on_batch_.Reset();
    on_error_.Reset();
    if (strong_) {
      strong_ = false;
      Unref();
    }
    return info.Env().Undefined();
  }

  // Releases the OS resources only; no JS calls, so it is safe from the
  // destructor and from the environment cleanup hook.
  void CloseNative() {
    closed_ = true;
    egress_.Clear();
    crypto_.DropAll(env_);
    CloseConn6();
    if (port_ != nullptr) {
      port_->self = nullptr;
      port_->fd = -1;
    }
    if (poll_ != nullptr) {
      poll_->data = nullptr;
      // The fd may be closed right after uv_close (libuv guarantees it stops watching).
      uv_close(reinterpret_cast<uv_handle_t*>(poll_), FreePoll);
      poll_ = nullptr;
    }
    if (fd_ >= 0) {
      close(fd_);
      fd_ = -1;
    }
  }

  static void CleanupHook(void* arg) {
    Tap* self = static_cast<Tap*>(arg);
    self->hook_added_ = false;
    self->CloseNative();
  }

  napi_env env_;
  int fd_ = -1;
  std::string name_;
  size_t max_frame_ = 0;
  size_t batch_ = 0;
  size_t slab_bytes_ = 0;
  uint8_t* slab_data_ = nullptr;
  uint32_t* frames_data_ = nullptr;
  Napi::Reference<Napi::Buffer<uint8_t>> slab_ref_;
  Napi::Reference<Napi::Uint32Array> frames_ref_;
  Napi::FunctionReference on_batch_;
  Napi::FunctionReference on_error_;
  std::unique_ptr<Napi::AsyncContext> async_ctx_;
  uv_poll_t* poll_ = nullptr;
  bool started_ = false;
  bool closed_ = false;
  bool refed_ = true;
  bool strong_ = false;
  bool hook_added_ = false;
  uint64_t read_frames_ = 0;
  uint64_t read_batches_ = 0;
  uint64_t read_truncated_ = 0;
  uint64_t read_errors_ = 0;
  uint64_t write_frames_ = 0;
  uint64_t write_drops_ = 0;
  uint64_t write_errors_ = 0;
  int last_write_errno_ = 0;
  bool vnet_ = false;
  bool merge_ = true;
  // IPv6/TCP runs merged too (TCPV6); off with WEAVE_NO_TAP_MERGE6=1.
  bool merge6_ = true;
  tsweave::gso::MergeCounters merge_counters_;
  // Read offloads (TsoInfo): granted by the kernel; the super-frame being cut.
  bool tso_ = false;
  std::vector<uint8_t> tso_buf_;
  TsoInfo tso_info_;
  size_t tso_off_ = 0;
  uint32_t tso_k_ = 0;
  bool tso_pending_ = false;
  uint64_t read_super_ = 0;
  uint64_t read_segments_ = 0;
  uv_loop_t* loop_ = nullptr;
  tsweave::FastPort* port_ = nullptr;
  bool last_fast_ = false;
  size_t last_n_ = 0;
  tsweave::FlowTable<tsweave::EgressFlow> egress_;
  tsweave::FlowCounters egress_counters_;
  tsweave::CryptoTable crypto_;
  // An encrypted flow's datagram: 16 B header + sequence, the inner datagram
  // (template, length, frame of at most 65535 B), the tag.
  // One wake-up's datagrams (ForwardCached): sealed datagrams and plaintext
  // length fields in egress_buf_, per datagram its flow, length, offset in
  // egress_buf_ (SIZE_MAX: plaintext, sent from three iovecs) and iovecs.
  std::vector<tsweave::EgressFlow*> hits_;
  // A datagram of the wake-up (ForwardCached): its flow (next hop, template,
  // sealing), frames [first, first + count), record bytes so far, the most its
  // flows' paths take, and whether it holds small frames (may take more).
  struct Dg {
    tsweave::EgressFlow* flow;
    size_t first;
    size_t count;
    size_t bytes;
    size_t room;
    bool small;
  };
  std::vector<Dg> dgs_;
  std::vector<size_t> dg_len_;
  std::vector<size_t> dg_off_;
  std::vector<uint8_t> egress_buf_;
  std::vector<struct iovec> egress_iov_;
  bool gso_ok_ = true;
  uint64_t egress_gso_ = 0;  // datagrams sent in GSO runs
  uint64_t egress_packed_ = 0;  // frames that left in FRAMES datagrams of several frames
  bool pack_small_ = true;      // WEAVE_NO_SMALL_PACK=1: small frames of multi-frame wake-ups go to JavaScript
  uint64_t miss_[kMissKinds] = {0, 0, 0, 0, 0};
  // Small tails of bulk frames may leave from the cache (off with WEAVE_NO_BULK_TAILS=1).
  bool bulk_tails_ = true;
  // Connected send sockets of IPv6 next hops (Conn6; off with WEAVE_NO_CONNECTED6=1).
  bool connect6_ = true;
  std::vector<Conn6> conn6_;
  uint64_t conn6_opened_ = 0;
  uint64_t conn6_failed_ = 0;
  uint64_t conn6_retries_ = 0;
  bool first_continues_ = false;  // this batch's frame 0 is a segment of a super-frame begun in the batch before
};

// setDontFragment(fd, on): on → IP_PMTUDISC_PROBE: the kernel sets DF on every
// datagram and never fragments locally, yet ignores ICMP "fragmentation needed"
// for the socket's own path MTU (the router runs its own PMTU discovery per
// peer, as Weave's sleeve does). off → IP_PMTUDISC_DONT: no DF, the kernel may
// fragment. IPv6 sockets get the IPV6_ equivalents too (and the IPv4 option,
// best effort, for v4-mapped peers).
Napi::Value SetDontFragment(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = static_cast<int>(IntArg(env, info[0], "fd", 0, 2147483647, -1));
  if (info[0].IsUndefined()) ThrowType(env, "fd must be a number");
  if (!info[1].IsBoolean()) ThrowType(env, "on must be a boolean");
  bool on = info[1].As<Napi::Boolean>().Value();
  int domain = AF_INET;
  socklen_t dl = sizeof domain;
  if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &dl) < 0) {
    int err = errno;
    ThrowCode(env, ErrnoName(err), "setDontFragment: fd " + std::to_string(fd) + " is not a socket: " + strerror(err));
  }
  int v4 = on ? IP_PMTUDISC_PROBE : IP_PMTUDISC_DONT;
  if (domain == AF_INET6) {
    int v6 = on ? IPV6_PMTUDISC_PROBE : IPV6_PMTUDISC_DONT;
    if (setsockopt(fd, IPPROTO_IPV6, IPV6_MTU_DISCOVER, &v6, sizeof v6) < 0) {
      int err = errno;
      ThrowCode(env, ErrnoName(err), "setDontFragment: IPV6_MTU_DISCOVER on fd " + std::to_string(fd) + ": " + strerror(err));
    }
    (void)setsockopt(fd, IPPROTO_IP, IP_MTU_DISCOVER, &v4, sizeof v4);
  } else if (domain == AF_INET) {
    if (setsockopt(fd, IPPROTO_IP, IP_MTU_DISCOVER, &v4, sizeof v4) < 0) {
      int err = errno;
      ThrowCode(env, ErrnoName(err), "setDontFragment: IP_MTU_DISCOVER on fd " + std::to_string(fd) + ": " + strerror(err));
    }
  } else {
    ThrowCode(env, "EAFNOSUPPORT", "setDontFragment: fd " + std::to_string(fd) + " is not an IPv4/IPv6 socket");
  }
  return env.Undefined();
}

// segmentTso(frame, gsoType, gsoSize, csumStart) -> Buffer[]: cuts a TCP
// super-frame exactly as a read with read offloads does (TsoInfo), for tests.
// Throws ERR_OUT_OF_RANGE for a frame that is not a super-frame we cut.
Napi::Value SegmentTso(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint8_t* f;
  size_t len;
  BytesArg(env, info[0], "frame", &f, &len);
  const uint8_t type = static_cast<uint8_t>(IntArg(env, info[1], "gsoType", 0, 255, 1));
  const uint16_t size = static_cast<uint16_t>(IntArg(env, info[2], "gsoSize", 0, 65535, 0));
  const uint16_t cs = static_cast<uint16_t>(IntArg(env, info[3], "csumStart", 0, 65535, 0));
  TsoInfo t;
  if (len > 65535 + 18 || !ParseTso(f, len, type, size, cs, &t)) ThrowRange(env, "not a TCP super-frame that can be cut");
  Napi::Array out = Napi::Array::New(env);
  uint32_t k = 0;
  for (size_t off = 0; off < t.payload; off += t.mss, k++) {
    const size_t seg = std::min(t.mss, t.payload - off);
    Napi::Buffer<uint8_t> b = Napi::Buffer<uint8_t>::New(env, t.hdr + seg);
    WriteTsoSegment(f, t, off, seg, k, off + seg >= t.payload, b.Data());
    out.Set(k, b);
  }
  return out;
}

// mergeTcp(slab, frames: Uint32Array [off0, len0, ...], count) -> Buffer[]: what
// writeSlab with vnetHdr writes to the TAP, for tests: each element is one
// write, the 10-byte virtio_net_hdr (native byte order) followed by the frame
// (a merged super-frame, or an unmerged frame with an all-zero header).
// Throws ERR_OUT_OF_RANGE for a pair outside the slab.
Napi::Value MergeTcp(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint8_t* data;
  size_t len;
  BytesArg(env, info[0], "slab", &data, &len);
  if (!info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array) {
    ThrowType(env, "frames must be a Uint32Array of [offset, length] pairs");
  }
  Napi::Uint32Array fr = info[1].As<Napi::Uint32Array>();
  const size_t pairs = fr.ElementLength() / 2;
  const size_t count = static_cast<size_t>(IntArg(env, info[2], "count", 0, static_cast<double>(pairs), static_cast<double>(pairs)));
  const uint32_t* f = fr.Data();
  for (size_t i = 0; i < count; i++) {
    if (static_cast<uint64_t>(f[2 * i]) + f[2 * i + 1] > len) ThrowRange(env, "frame " + std::to_string(i) + " lies outside the slab");
  }
  Napi::Array out = Napi::Array::New(env);
  uint32_t n = 0;
  for (size_t i = 0; i < count;) {
    TcpSeg a;
    size_t total = 0;
    uint8_t last_flags = 0;
    const size_t run = PlanMerge(SlabFrames{data, f}, count, i, true, &a, &total, &last_flags);
    if (run == 1) {
      Napi::Buffer<uint8_t> b = Napi::Buffer<uint8_t>::New(env, sizeof(VnetHdr) + f[2 * i + 1]);
      memset(b.Data(), 0, sizeof(VnetHdr));
      memcpy(b.Data() + sizeof(VnetHdr), data + f[2 * i], f[2 * i + 1]);
      out.Set(n++, b);
      i++;
      continue;
    }
    VnetHdr vh;
    Napi::Buffer<uint8_t> b = Napi::Buffer<uint8_t>::New(env, sizeof(VnetHdr) + a.hdr + total);
    BuildSuperHeader(a, total, last_flags, b.Data() + sizeof(VnetHdr), &vh);
    memcpy(b.Data(), &vh, sizeof vh);
    size_t o = sizeof(VnetHdr) + a.hdr;
    for (size_t k = i; k < i + run; k++) {
      const size_t pl = f[2 * k + 1] - a.hdr;
      memcpy(b.Data() + o, data + f[2 * k] + a.hdr, pl);
      o += pl;
    }
    out.Set(n++, b);
    i += run;
  }
  return out;
}

Napi::Object InitModule(Napi::Env env, Napi::Object exports) {
  if (!sleeve_aead::Init()) ThrowCode(env, "ECRYPTO", "OpenSSL ChaCha20-Poly1305 is unavailable or failed its self-check (libcrypto)");
  exports.Set("Tap", Tap::Init(env));
  exports.Set("setDontFragment", Napi::Function::New(env, SetDontFragment, "setDontFragment"));
  exports.Set("segmentTso", Napi::Function::New(env, SegmentTso, "segmentTso"));
  exports.Set("mergeTcp", Napi::Function::New(env, MergeTcp, "mergeTcp"));
  exports.Set("defaultMaxFrame", Napi::Number::New(env, 65535 + 18));
  return exports;
}

}  // namespace

NODE_API_MODULE(tap, InitModule)
