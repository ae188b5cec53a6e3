// Batched UDP socket for tsweave's sleeve (Linux only; IPv4 and IPv6).
//
// Why native rather than node:dgram: dgram makes one sendmsg() syscall, one
// SendWrap object and one completion callback per datagram, and one JS
// 'message' event (with a fresh Buffer and rinfo object) per received
// datagram. At ~100 k datagrams/s that per-datagram overhead is most of the
// sleeve's CPU time. Here, in the spirit of wireguard-go's conn/ package
// (batched ReceiveFunc / Send over recvmmsg(2) and sendmmsg(2)):
//   - receiving: a uv_poll handle on the main loop watches the non-blocking
//     socket; each wake-up drains up to `batch` datagrams with ONE recvmmsg()
//     into fixed slots of one preallocated slab and calls JS ONCE with
//     (slab, meta, count), meta holding per datagram
//     [offset, length, source IPv4 as uint32, source port];
//   - sending: JS packs datagrams into a slab of its own plus a table of
//     [offset, length, destination IPv4 as uint32, destination port] rows and
//     hands the whole batch over in ONE call, which becomes one sendmmsg()
//     per 1024 datagrams (UIO_MAXIOV). Sends never block and never throw for
//     I/O: a full socket buffer (EAGAIN/ENOBUFS) drops the rest of the batch,
//     EMSGSIZE drops that datagram, other errors skip it; all are counted.
// Segmentation offload (Linux ≥ 4.18 / 5.0, udp(7) UDP_SEGMENT / UDP_GRO), as
// wireguard-go and quic-go use it: consecutive table rows flagged 0x10000 in
// the port column, going to the same address and port with equal lengths
// (the last may be shorter), leave in ONE sendmsg with a UDP_SEGMENT control
// message, so the kernel builds one super-packet that crosses the IP stack
// (and veths and bridges) once and is cut into the same datagrams at the
// latest possible point. With UDP_GRO set, such super-packets (and ones a
// NIC's GRO merged) are received whole and split here into meta rows, so JS
// sees the same datagrams either way. A GSO send the kernel refuses (EIO: no
// checksum offload on the route; EINVAL: segment above the path MTU) is
// retried datagram by datagram, which reports the per-datagram errors; EIO
// turns GSO off for the socket.
// Socket options: SO_REUSEADDR only when asked (for UDP it lets a second
// socket bind the same port silently, which would hide a second router);
// SO_RCVBUFFORCE / SO_SNDBUFFORCE (falling
// back to SO_RCVBUF / SO_SNDBUF, capped by net.core.[rw]mem_max, without
// CAP_NET_ADMIN); IP_MTU_DISCOVER = IP_PMTUDISC_PROBE so every datagram
// carries DF and is never fragmented locally, while ICMP "fragmentation
// needed" does not shrink a cached path MTU (the sleeve probes each peer's
// PMTU itself, as Weave's sleeve does). See ip(7), udp(7), socket(7).
//
// JS surface (wrapped by router/overlay/udp.ts):
//   new UdpSocket({ address, port, batch, slotBytes, bufferBytes, dontFragment, reuseAddr, gso, gro })
//   sock.fd, sock.localPort, sock.slotStride
//   sock.start(onBatch(slab, meta, count), onError(code, message))
//   sock.sendBatch(slab, table, count) -> datagrams the kernel took
//   sock.send(buf, offset, length, addr, port) -> boolean
//   sock.stats() -> { recvDatagrams, recvBatches, recvTruncated, recvErrors,
//                     sendDatagrams, sendCalls, sendDropsFull, sendDropsTooBig,
//                     sendErrors, lastSendError, recvBufferBytes, sendBufferBytes,
//                     sendCoalesced, recvCoalesced, gso, gro,
//                     tapMergedFrames, tapSuperFrames, tapMergeFallbacks }
//   sock.ref(), sock.unref(), sock.close()
//   sock.addFlow(hopPeer, hopAddr, srcPeer, selfPeer, srcMac, dstMac, tapFd, vnetLen, ttlMs[, openState, key])
//   sock.clearFlows(), sock.flowStats()
//   routeMtu(addr) -> MTU of the route towards addr, 0 if none
// Flow cache (flow-cache.h): a wake-up of any number of datagrams (a GRO
// super-packet of a bulk transfer included), all plaintext FRAMES datagrams
// whose every frame matches an installed ingress flow, is written to the TAP
// here and JavaScript is not called; otherwise the batch goes to onBatch as
// always. Runs of TCP segments of one flow are written as one GSO super-frame
// (gso-merge.h, as tap.cc's writeSlab does) when the flow's TAP has a 10-byte
// virtio_net_hdr; other frames one write each. WEAVE_NO_BULK_INGRESS=1 limits
// the cache to wake-ups of kFastBatchMax datagrams (the behaviour before).
// From a hop with an encrypted flow, ENCRYPTED datagrams are opened here
// (sleeve-aead.h, the Opener's shared replay window) and their inner FRAMES
// datagram matched the same way; a datagram that does not verify, is a replay,
// carries another epoch or does not match is left untouched to JavaScript.
// Each row is opened into its own place (the same offset in a second slab), and
// the replay window is updated only once every row hit (Peek, then Accept): so
// that this is exactly what opening the rows one by one would accept, the
// counters of one hop must strictly increase within the wake-up — a duplicate
// (which Peek alone would pass twice: the window is not updated between rows)
// or an out-of-order counter sends the whole wake-up to JavaScript, whose
// Opener takes the rows one at a time and drops and counts the replay.
// Thrown errors carry a `code` (errno name, or ERR_INVALID_ARG_TYPE /
// ERR_OUT_OF_RANGE for bad arguments).
// IPv6 (issue #21): without an `address` the socket is dual-stack, AF_INET6
// bound to [::] with IPV6_V6ONLY off (IPv4 peers appear as ::ffff:a.b.c.d), or
// plain AF_INET when the kernel has no IPv6. Rows keep one uint32 address
// column: an IPv4 address, or the KEY of a registered IPv6 address,
// 1..0xffffff (0.0.0.0/8, never a valid IPv4 source or destination: the
// kernel drops such sources as martians). sock.addressKey(text) registers an
// IPv6 peer (reference counted, released with sock.releaseAddressKey(key))
// and returns its key (IPv4 text returns the address itself); a datagram from
// an unregistered IPv6 source has address 0. So the sleeve, the flow cache
// and the row format stay as they were for IPv4.

#include <napi.h>
#include <uv.h>

#include "flow-cache.h"
#include "gso-merge.h"
#include "sleeve-aead.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <string.h>
#include <sys/socket.h>
#include <stdlib.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace {

constexpr double kMaxBatch = 1024;                 // recvmmsg vlen cap (UIO_MAXIOV)
constexpr double kMaxSlot = 65536;                 // largest UDP payload + 1 spare byte
constexpr double kMinSlot = 64;
constexpr double kMaxBuffer = 256.0 * 1024 * 1024;
constexpr size_t kSendChunk = 1024;                // sendmmsg vlen cap (UIO_MAXIOV)
constexpr size_t kMetaStride = 4;                  // uint32s per datagram in meta/table
// Send-table flag in the port column: this datagram may share one UDP GSO
// send with its neighbours (same destination, equal lengths).
constexpr uint32_t kCoalesce = 0x10000;
// UDP_MAX_SEGMENTS in the kernel (include/linux/udp.h) is 64 on older kernels.
constexpr size_t kMaxSegments = 64;
// Total payload of one GSO send must stay below the 65535-byte UDP length.
constexpr size_t kMaxGsoBytes = 65507;
// Keys of registered IPv6 addresses: 1..kMaxV6Key (0.0.0.0/8 as IPv4).
constexpr uint32_t kMaxV6Key = 0xffffff;
#ifndef SOL_UDP
#define SOL_UDP 17
#endif
#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif

std::string ErrnoName(int err) {
  char buf[64];
  uv_err_name_r(-err, buf, sizeof buf);
  return buf;
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

void BytesArg(Napi::Env env, napi_value v, const char* what, uint8_t** data, size_t* len) {
  bool is = false;
  napi_is_buffer(env, v, &is);
  if (!is) ThrowType(env, std::string(what) + " must be a Buffer or Uint8Array");
  void* p = nullptr;
  if (napi_get_buffer_info(env, v, &p, len) != napi_ok) ThrowType(env, std::string(what) + " is not readable");
  *data = static_cast<uint8_t*>(p);
}

Napi::Uint32Array U32Arg(Napi::Env env, const Napi::Value& v, const char* what) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array) {
    ThrowType(env, std::string(what) + " must be a Uint32Array of [offset, length, address, port] rows");
  }
  return v.As<Napi::Uint32Array>();
}

bool BoolOpt(Napi::Env env, Napi::Object o, const char* name, bool dflt) {
  Napi::Value v = o.Get(name);
  if (v.IsUndefined()) return dflt;
  if (!v.IsBoolean()) ThrowType(env, std::string(name) + " must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

// Registered IPv6 peer addresses and their uint32 keys (see the header).
class V6Keys {
 public:
  // The key of `a` (registering it, one more reference), or 0 if the table is full.
  uint32_t Acquire(const struct in6_addr& a) {
    auto it = index_.find(Key(a));
    if (it != index_.end()) {
      refs_[it->second - 1]++;
      return it->second;
    }
    uint32_t k;
    if (!free_.empty()) {
      k = free_.back();
      free_.pop_back();
      addrs_[k - 1] = a;
      refs_[k - 1] = 1;
    } else {
      if (addrs_.size() >= kMaxV6Key) return 0;
      addrs_.push_back(a);
      refs_.push_back(1);
      k = static_cast<uint32_t>(addrs_.size());
    }
    index_[Key(a)] = k;
    return k;
  }
  // One reference less; the key is freed at zero. Unknown keys are ignored.
  void Release(uint32_t k) {
    if (k == 0 || k > addrs_.size() || refs_[k - 1] == 0) return;
    if (--refs_[k - 1] != 0) return;
    index_.erase(Key(addrs_[k - 1]));
    if (last_key_ == k) last_key_ = 0;
    free_.push_back(k);
  }
  // The address of a live key, or nullptr.
  const struct in6_addr* Get(uint32_t k) const {
    if (k == 0 || k > addrs_.size() || refs_[k - 1] == 0) return nullptr;
    return &addrs_[k - 1];
  }
  // The key of a registered address, 0 if none (receive path: one compare for
  // runs from the same peer, else one hash lookup).
  uint32_t Find(const struct in6_addr& a) {
    if (last_key_ != 0 && memcmp(&addrs_[last_key_ - 1], &a, sizeof a) == 0) return last_key_;
    if (index_.empty()) return 0;
    auto it = index_.find(Key(a));
    if (it == index_.end()) return 0;
    last_key_ = it->second;
    return it->second;
  }

 private:
  struct K {
    uint64_t hi, lo;
    bool operator==(const K& o) const { return hi == o.hi && lo == o.lo; }
  };
  struct H {
    size_t operator()(const K& k) const { return static_cast<size_t>((k.hi * 0x9E3779B97F4A7C15ULL) ^ (k.lo * 0xC2B2AE3D27D4EB4FULL)); }
  };
  static K Key(const struct in6_addr& a) {
    K k;
    memcpy(&k.hi, a.s6_addr, 8);
    memcpy(&k.lo, a.s6_addr + 8, 8);
    return k;
  }
  std::vector<struct in6_addr> addrs_;
  std::vector<uint32_t> refs_;
  std::vector<uint32_t> free_;
  std::unordered_map<K, uint32_t, H> index_;
  uint32_t last_key_ = 0;
};

// Sets a buffer size, privileged variant first; returns the size the kernel reports.
int SetBuffer(int fd, int force_opt, int opt, int bytes) {
  if (setsockopt(fd, SOL_SOCKET, force_opt, &bytes, sizeof bytes) < 0) {
    (void)setsockopt(fd, SOL_SOCKET, opt, &bytes, sizeof bytes);
  }
  int got = 0;
  socklen_t gl = sizeof got;
  if (getsockopt(fd, SOL_SOCKET, opt, &got, &gl) < 0) return 0;
  return got;
}

class UdpSocket : public Napi::ObjectWrap<UdpSocket> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "UdpSocket",
                       {
                           InstanceAccessor<&UdpSocket::GetFd>("fd"),
                           InstanceAccessor<&UdpSocket::GetLocalPort>("localPort"),
                           InstanceAccessor<&UdpSocket::GetSlotStride>("slotStride"),
                           InstanceMethod<&UdpSocket::Start>("start"),
                           InstanceMethod<&UdpSocket::DrainMethod>("drain"),
                           InstanceMethod<&UdpSocket::SendBatch>("sendBatch"),
                           InstanceMethod<&UdpSocket::Send>("send"),
                           InstanceMethod<&UdpSocket::Stats>("stats"),
                           InstanceMethod<&UdpSocket::RefMethod>("ref"),
                           InstanceMethod<&UdpSocket::UnrefMethod>("unref"),
                           InstanceMethod<&UdpSocket::Close>("close"),
                           InstanceMethod<&UdpSocket::AddFlow>("addFlow"),
                           InstanceMethod<&UdpSocket::ClearFlows>("clearFlows"),
                           InstanceMethod<&UdpSocket::FlowStats>("flowStats"),
                           InstanceMethod<&UdpSocket::FastPortMethod>("fastPort"),
                           InstanceMethod<&UdpSocket::AddressKey>("addressKey"),
                           InstanceMethod<&UdpSocket::ReleaseAddressKey>("releaseAddressKey"),
                           InstanceAccessor<&UdpSocket::GetFamily>("family"),
                       });
  }

  // new UdpSocket({ address (default: [::] dual-stack, else 0.0.0.0), port, batch = 64,
  //                 slotBytes = 65536, bufferBytes = 4 MiB, dontFragment = true, reuseAddr = false })
  explicit UdpSocket(const Napi::CallbackInfo& info) : Napi::ObjectWrap<UdpSocket>(info), env_(info.Env()) {
    Napi::Env env = info.Env();
    if (!info[0].IsObject()) ThrowType(env, "UDP socket options must be an object");
    Napi::Object o = info[0].As<Napi::Object>();
    std::string address;
    Napi::Value av = o.Get("address");
    if (!av.IsUndefined()) {
      if (!av.IsString()) ThrowType(env, "address must be a string (an IPv4 or IPv6 address)");
      address = av.As<Napi::String>().Utf8Value();
    }
    Napi::Value pv = o.Get("port");
    if (pv.IsUndefined()) ThrowType(env, "port must be a number");
    port_ = static_cast<int>(IntArg(env, pv, "port", 0, 65535, 0));
    // The bind address: sockaddr_in or sockaddr_in6 in `sa`.
    struct sockaddr_in6 sa;
    memset(&sa, 0, sizeof sa);
    socklen_t salen = sizeof sa;
    bool dual = false;
    struct sockaddr_in sa4;
    memset(&sa4, 0, sizeof sa4);
    sa4.sin_family = AF_INET;
    sa4.sin_port = htons(static_cast<uint16_t>(port_));
    sa.sin6_family = AF_INET6;
    sa.sin6_port = htons(static_cast<uint16_t>(port_));
    if (address.empty()) {
      family_ = AF_INET6;
      dual = true;
      sa.sin6_addr = in6addr_any;
    } else if (inet_pton(AF_INET, address.c_str(), &sa4.sin_addr) == 1) {
      family_ = AF_INET;
    } else if (inet_pton(AF_INET6, address.c_str(), &sa.sin6_addr) == 1) {
      family_ = AF_INET6;
    } else {
      ThrowCode(env, "EINVAL", "UDP bind address '" + address + "' is not an IPv4 or IPv6 address");
    }
    if (address.empty()) address = "::";
    batch_ = static_cast<size_t>(IntArg(env, o.Get("batch"), "batch", 1, kMaxBatch, 64));
    slot_ = static_cast<size_t>(IntArg(env, o.Get("slotBytes"), "slotBytes", kMinSlot, kMaxSlot, kMaxSlot));
    int buffer = static_cast<int>(IntArg(env, o.Get("bufferBytes"), "bufferBytes", 0, kMaxBuffer, 4 << 20));
    bool df = BoolOpt(env, o, "dontFragment", true);
    bool reuse = BoolOpt(env, o, "reuseAddr", false);
    gso_ = BoolOpt(env, o, "gso", true);
    bool want_gro = BoolOpt(env, o, "gro", true);
    // Slots start on cache lines, and consecutive slots are offset by one extra
    // line so that datagrams at the same position in big power-of-two slots do
    // not all land in the same cache sets.
    stride_ = ((slot_ + 63) & ~static_cast<size_t>(63)) + 64;

    // Buffers first, so an allocation failure leaks no fd.
    Napi::Buffer<uint8_t> slab = Napi::Buffer<uint8_t>::New(env, stride_ * batch_);
    // A coalesced datagram splits into up to kMaxSegments rows.
    meta_rows_ = batch_ * kMaxSegments;
    hit_cap_ = meta_rows_ * 4;
    hits_.reset(new Hit[hit_cap_]);
    opened_.reset(new Opened[meta_rows_]);
    open_buf_.reset(new uint8_t[stride_ * batch_]);
    bulk_ingress_ = !tsweave::EnvSwitchOn("WEAVE_NO_BULK_INGRESS");
    merge6_ = !tsweave::EnvSwitchOn("WEAVE_NO_TAP_MERGE6");
    Napi::Uint32Array meta = Napi::Uint32Array::New(env, kMetaStride * meta_rows_);
    slab_data_ = slab.Data();
    meta_data_ = meta.Data();
    slab_ref_ = Napi::Persistent(slab);
    meta_ref_ = Napi::Persistent(meta);
    rmsgs_.resize(batch_);
    riov_.resize(batch_);
    raddr_.resize(batch_);
    rctrl_.resize(batch_);
    for (size_t i = 0; i < batch_; i++) {
      riov_[i].iov_base = slab_data_ + i * stride_;
      riov_[i].iov_len = slot_;
      memset(&rmsgs_[i], 0, sizeof rmsgs_[i]);
      rmsgs_[i].msg_hdr.msg_iov = &riov_[i];
      rmsgs_[i].msg_hdr.msg_iovlen = 1;
      rmsgs_[i].msg_hdr.msg_name = &raddr_[i];
    }
    smsgs_.resize(kSendChunk);
    siov_.resize(kSendChunk);
    saddr_.resize(kSendChunk);
    sctrl_.resize(kSendChunk);
    msg_row_.resize(kSendChunk);
    msg_run_.resize(kSendChunk);

    fd_ = socket(family_, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd_ < 0 && dual && (errno == EAFNOSUPPORT || errno == EPROTONOSUPPORT)) {
      // No IPv6 in this kernel: IPv4 only, as before.
      family_ = AF_INET;
      dual = false;
      address = "0.0.0.0";
      fd_ = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    }
    if (fd_ < 0) {
      int err = errno;
      ThrowCode(env, ErrnoName(err), std::string("cannot create a UDP socket: ") + strerror(err));
    }
    if (family_ == AF_INET6) {
      int v6only = dual ? 0 : 1;
      if (setsockopt(fd_, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only) < 0) {
        int err = errno;
        CloseNative();
        ThrowCode(env, ErrnoName(err), std::string("cannot set IPV6_V6ONLY on the UDP socket: ") + strerror(err));
      }
    }
    if (reuse) {
      int one = 1;
      (void)setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    }
    if (buffer > 0) {
      rcvbuf_ = SetBuffer(fd_, SO_RCVBUFFORCE, SO_RCVBUF, buffer);
      sndbuf_ = SetBuffer(fd_, SO_SNDBUFFORCE, SO_SNDBUF, buffer);
    }
    // IPv4 traffic of a dual-stack socket follows IP_MTU_DISCOVER (ipv6_setsockopt
    // hands SOL_IP options to the IPv4 side), IPv6 traffic IPV6_MTU_DISCOVER.
    int pmtu = df ? IP_PMTUDISC_PROBE : IP_PMTUDISC_DONT;
    if ((family_ == AF_INET || dual) && setsockopt(fd_, IPPROTO_IP, IP_MTU_DISCOVER, &pmtu, sizeof pmtu) < 0) {
      int err = errno;
      CloseNative();
      ThrowCode(env, ErrnoName(err), std::string("cannot set IP_MTU_DISCOVER on the UDP socket: ") + strerror(err));
    }
    int pmtu6 = df ? IPV6_PMTUDISC_PROBE : IPV6_PMTUDISC_DONT;
    if (family_ == AF_INET6 && setsockopt(fd_, IPPROTO_IPV6, IPV6_MTU_DISCOVER, &pmtu6, sizeof pmtu6) < 0) {
      int err = errno;
      CloseNative();
      ThrowCode(env, ErrnoName(err), std::string("cannot set IPV6_MTU_DISCOVER on the UDP socket: ") + strerror(err));
    }
    const struct sockaddr* bind_sa = family_ == AF_INET ? reinterpret_cast<struct sockaddr*>(&sa4) : reinterpret_cast<struct sockaddr*>(&sa);
    if (family_ == AF_INET) salen = sizeof sa4;
    if (bind(fd_, bind_sa, salen) < 0) {
      int err = errno;
      CloseNative();
      std::string p = std::to_string(port_);
      switch (err) {
        case EADDRINUSE:
          ThrowCode(env, "EADDRINUSE", "UDP port " + p + " is already in use: is another router running in this network namespace?");
        case EACCES:
          ThrowCode(env, "EACCES", "binding UDP port " + p + " needs root (CAP_NET_BIND_SERVICE)");
        case EADDRNOTAVAIL:
          ThrowCode(env, "EADDRNOTAVAIL", "cannot bind UDP port " + p + " on " + address + ": not an address of this host");
        default:
          ThrowCode(env, ErrnoName(err), "cannot bind UDP port " + p + ": " + strerror(err));
      }
    }
    // GRO needs slots that hold a whole super-packet.
    if (want_gro && slot_ >= 65536) {
      int on = 1;
      gro_ = setsockopt(fd_, SOL_UDP, UDP_GRO, &on, sizeof on) == 0;
    }
    struct sockaddr_in6 bound;  // sin_port and sin6_port share their offset
    socklen_t bl = sizeof bound;
    if (getsockname(fd_, reinterpret_cast<struct sockaddr*>(&bound), &bl) == 0) port_ = ntohs(bound.sin6_port);
    fast_port_ = new tsweave::FastPort;  // never freed: the TAP addon may hold it (flow-cache.h)
    fast_port_->fd = fd_;
    fast_port_->self = this;
    fast_port_->service = &tsweave::ServiceOnce<UdpSocket>;
    napi_add_env_cleanup_hook(env, CleanupHook, this);
    hook_added_ = true;
  }

  ~UdpSocket() override {
    CloseNative();
    if (hook_added_) napi_remove_env_cleanup_hook(env_, CleanupHook, this);
  }

 private:
  Napi::Value GetFd(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), fd_); }
  Napi::Value GetLocalPort(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), port_); }
  Napi::Value GetFamily(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), family_ == AF_INET6 ? 6 : 4); }

  // addressKey(text) -> the address column value for a peer: an IPv4 address
  // (or IPv4-mapped IPv6) as its uint32; an IPv6 address registered, as its key.
  Napi::Value AddressKey(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info[0].IsString()) ThrowType(env, "address must be a string (an IPv4 or IPv6 address)");
    std::string text = info[0].As<Napi::String>().Utf8Value();
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, text.c_str(), &a4) == 1) return Napi::Number::New(env, ntohl(a4.s_addr));
    if (inet_pton(AF_INET6, text.c_str(), &a6) != 1) ThrowCode(env, "EINVAL", "'" + text.substr(0, 64) + "' is not an IPv4 or IPv6 address");
    if (IN6_IS_ADDR_V4MAPPED(&a6)) {
      uint32_t v;
      memcpy(&v, a6.s6_addr + 12, 4);
      return Napi::Number::New(env, ntohl(v));
    }
    if (family_ != AF_INET6) ThrowCode(env, "EAFNOSUPPORT", "cannot reach IPv6 peer " + text + ": the UDP socket is IPv4 only (no IPv6 in this kernel, or bound to an IPv4 address)");
    uint32_t k = v6_.Acquire(a6);
    if (k == 0) ThrowCode(env, "ENOSPC", "too many IPv6 peer addresses");
    return Napi::Number::New(env, k);
  }

  // releaseAddressKey(key): one reference to an IPv6 key less (IPv4 values: nothing).
  Napi::Value ReleaseAddressKey(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint32_t k = static_cast<uint32_t>(IntArg(env, info[0], "key", 0, 4294967295.0, 0));
    if (k <= kMaxV6Key) v6_.Release(k);
    return env.Undefined();
  }

  // The address column value of a received source (see the header).
  uint32_t SourceKey(const struct sockaddr_in6& from, uint32_t* port) {
    if (from.sin6_family == AF_INET) {
      struct sockaddr_in v4;
      memcpy(&v4, &from, sizeof v4);
      *port = ntohs(v4.sin_port);
      return ntohl(v4.sin_addr.s_addr);
    }
    *port = ntohs(from.sin6_port);
    if (IN6_IS_ADDR_V4MAPPED(&from.sin6_addr)) {
      uint32_t v;
      memcpy(&v, from.sin6_addr.s6_addr + 12, 4);
      return ntohl(v);
    }
    return v6_.Find(from.sin6_addr);
  }

  // Fills the destination of a row (address column `key`, `port`); returns its length.
  socklen_t FillDest(uint32_t key, uint32_t port, struct sockaddr_in6* out) {
    if (family_ == AF_INET6) {
      memset(out, 0, sizeof *out);
      out->sin6_family = AF_INET6;
      out->sin6_port = htons(static_cast<uint16_t>(port & 0xffff));
      const struct in6_addr* a = key <= kMaxV6Key ? v6_.Get(key) : nullptr;
      if (a != nullptr) {
        out->sin6_addr = *a;
      } else {
        // IPv4 as ::ffff:a.b.c.d (an unknown key stays 0.0.0.x: the send fails, counted).
        out->sin6_addr.s6_addr[10] = 0xff;
        out->sin6_addr.s6_addr[11] = 0xff;
        uint32_t v = htonl(key);
        memcpy(out->sin6_addr.s6_addr + 12, &v, 4);
      }
      return sizeof *out;
    }
    struct sockaddr_in v4;
    memset(&v4, 0, sizeof v4);
    v4.sin_family = AF_INET;
    v4.sin_port = htons(static_cast<uint16_t>(port & 0xffff));
    v4.sin_addr.s_addr = htonl(key);
    memcpy(out, &v4, sizeof v4);
    return sizeof v4;
  }

  Napi::Value GetSlotStride(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(stride_));
  }

  // start(onBatch, onError, poll = true): begin polling; onBatch(slab, meta, count) per
  // wake-up. With poll false nothing watches the socket: the owner reads it with
  // drain() when it chooses (no wake-up of its own per datagram).
  Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (closed_) ThrowCode(env, "ECLOSED", "UDP socket on port " + std::to_string(port_) + " is closed");
    if (started_) ThrowCode(env, "EALREADY", "UDP socket on port " + std::to_string(port_) + " is already started");
    if (!info[0].IsFunction()) ThrowType(env, "onBatch must be a function");
    if (!info[1].IsUndefined() && !info[1].IsFunction()) ThrowType(env, "onError must be a function");
    if (!info[2].IsUndefined() && !info[2].IsBoolean()) ThrowType(env, "poll must be a boolean");
    manual_ = info[2].IsBoolean() && !info[2].As<Napi::Boolean>().Value();
    if (!manual_) StartPoll(env);
    on_batch_ = Napi::Persistent(info[0].As<Napi::Function>());
    if (info[1].IsFunction()) on_error_ = Napi::Persistent(info[1].As<Napi::Function>());
    async_ctx_.reset(new Napi::AsyncContext(env, "UdpRecv", Value()));
    Ref();
    strong_ = true;
    started_ = true;
    return env.Undefined();
  }

  // The uv_poll handle that calls OnPoll when the socket is readable (throws on failure).
  void StartPoll(Napi::Env env) {
    uv_loop_t* loop = nullptr;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr) ThrowCode(env, "EINVAL", "no libuv event loop");
    std::unique_ptr<uv_poll_t> poll(new uv_poll_t);
    int rc = uv_poll_init_socket(loop, poll.get(), fd_);
    if (rc < 0) ThrowCode(env, uv_err_name(rc), std::string("polling the UDP socket failed: ") + uv_strerror(rc));
    poll->data = this;
    rc = uv_poll_start(poll.get(), UV_READABLE, OnPoll);
    if (rc < 0) {
      uv_close(reinterpret_cast<uv_handle_t*>(poll.release()), FreePoll);
      ThrowCode(env, uv_err_name(rc), std::string("polling the UDP socket failed: ") + uv_strerror(rc));
    }
    poll_ = poll.release();
    loop_ = loop;
    if (!refed_) uv_unref(reinterpret_cast<uv_handle_t*>(poll_));
  }

  static void FreePoll(uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); }

  // drain(): for a socket started with poll false, reads what is queued now (at most 16
  // batches) and hands each batch to onBatch before returning; returns the rows read.
  // 0 after a receive failure (onError was called once) or close.
  Napi::Value DrainMethod(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!manual_) ThrowCode(env, "EINVAL", "UDP socket on port " + std::to_string(port_) + ": drain() needs start(..., poll = false)");
    size_t total = 0;
    Napi::Object keep = Value();
    for (int i = 0; i < 16 && !closed_ && !failed_; i++) {
      if (Drain(env, keep)) break;
      if (last_n_ == 0) break;
      total += last_n_;
      if (last_n_ < batch_) break;
    }
    return Napi::Number::New(env, static_cast<double>(total));
  }

  static void OnPoll(uv_poll_t* h, int status, int events) {
    UdpSocket* self = static_cast<UdpSocket*>(h->data);
    if (self == nullptr || self->closed_) return;
    Napi::Env env(self->env_);
    Napi::HandleScope scope(env);
    try {
      Napi::Object keep = self->Value();
      if (status < 0) {
        // libuv stops the handle on POLLERR; a receive names the real error.
        if (!self->Drain(env, keep) && !self->closed_) self->Fail(env, keep, -status);
        return;
      }
      if (events & UV_READABLE) self->Drain(env, keep);
      // Forwarded from the cache: wait for the next frame here (flow-cache.h).
      if (self->last_fast_ && !self->closed_ && self->fast_port_ != nullptr) tsweave::RunNested(self->fast_port_->nest, self->loop_);
    } catch (const Napi::Error& e) {
      napi_fatal_exception(env, e.Value());
    }
  }

  template <class T>
  friend int tsweave::ServiceOnce(void* p);

  // fastPort(): this socket's side of the nest, for Tap.linkFastPath().
  Napi::Value FastPortMethod(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (closed_ || fast_port_ == nullptr) ThrowCode(env, "ECLOSED", "UDP socket on port " + std::to_string(port_) + " is closed");
    return Napi::External<tsweave::FastPort>::New(env, fast_port_);
  }

  // One recvmmsg() of up to `batch` datagrams, one JS call. Returns true if
  // an error was reported (receive error, or an exception from onBatch).
  bool Drain(Napi::Env env, Napi::Object keep) {
    last_fast_ = false;
    last_n_ = 0;
    for (size_t i = 0; i < batch_; i++) {
      struct msghdr& mh = rmsgs_[i].msg_hdr;
      mh.msg_namelen = sizeof(struct sockaddr_in6);
      mh.msg_flags = 0;
      if (gro_) {
        mh.msg_control = rctrl_[i].buf;
        mh.msg_controllen = sizeof rctrl_[i].buf;
      }
    }
    int r;
    do {
      r = recvmmsg(fd_, rmsgs_.data(), static_cast<unsigned>(batch_), MSG_DONTWAIT, nullptr);
    } while (r < 0 && errno == EINTR);
    if (r < 0) {
      int err = errno;
      if (err == EAGAIN || err == EWOULDBLOCK) return false;
      // ICMP errors queued on the socket (ECONNREFUSED...) are per-datagram
      // noise for an unconnected socket: count them and keep reading.
      if (err == ECONNREFUSED || err == EHOSTUNREACH || err == ENETUNREACH || err == EMSGSIZE) {
        recv_errors_++;
        return false;
      }
      Fail(env, keep, err);
      return true;
    }
    size_t n = 0;
    for (int i = 0; i < r; i++) {
      struct msghdr& mh = rmsgs_[i].msg_hdr;
      if (mh.msg_flags & MSG_TRUNC) {
        recv_truncated_++;
        continue;
      }
      uint32_t port = 0;
      const uint32_t addr = SourceKey(raddr_[i], &port);
      const size_t base = i * stride_;
      const size_t len = rmsgs_[i].msg_len;
      size_t seg = 0;
      if (gro_) {
        for (struct cmsghdr* c = CMSG_FIRSTHDR(&mh); c != nullptr; c = CMSG_NXTHDR(&mh, c)) {
          if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) {
            int g;
            memcpy(&g, CMSG_DATA(c), sizeof g);
            if (g > 0) seg = static_cast<size_t>(g);
          }
        }
      }
      if (seg == 0 || seg >= len) seg = len;
      else recv_coalesced_ += (len + seg - 1) / seg;
      // An empty datagram is still one row; a coalesced one is one row per segment.
      size_t at = 0;
      do {
        if (n == meta_rows_) {
          recv_truncated_++;
          break;
        }
        size_t l = len - at < seg ? len - at : seg;
        uint32_t* m = meta_data_ + kMetaStride * n;
        m[0] = static_cast<uint32_t>(base + at);
        m[1] = static_cast<uint32_t>(l);
        m[2] = addr;
        m[3] = port;
        n++;
        at += l;
      } while (at < len);
    }
    if (n == 0) return false;
    recv_datagrams_ += n;
    recv_batches_++;
    last_n_ = n;
    if (ingress_.live != 0 && (bulk_ingress_ || n <= tsweave::kFastBatchMax) && ForwardCached(n)) {
      last_fast_ = true;
      return false;
    }
    napi_value args[3] = {slab_ref_.Value(), meta_ref_.Value(), Napi::Number::New(env, static_cast<double>(n))};
    try {
      on_batch_.MakeCallback(keep, 3, args, *async_ctx_);
    } catch (const Napi::Error& e) {
      napi_fatal_exception(env, e.Value());
      return true;
    }
    return false;
  }

  struct Hit {
    const uint8_t* frame;
    size_t len;
    const tsweave::IngressFlow* flow;
  };
  struct Opened {
    uint8_t* state;
    uint64_t seq;
  };
  // Hits as gso-merge.h frames.
  struct HitFrames {
    const Hit* h;
    const uint8_t* Data(size_t k) const { return h[k].frame; }
    size_t Len(size_t k) const { return h[k].len; }
  };

  // The flow cache's ingress path: if every row is a FRAMES datagram (or an
  // ENCRYPTED one that opens with its hop's flow key) whose every frame matches
  // a live flow (right hop peer and address, addressed to us), write the frames
  // to the TAP and return true; otherwise write nothing, leave the replay
  // windows untouched and return false (the batch goes to JavaScript).
  // Every row lies inside the slab (Drain built it from recvmmsg's lengths);
  // every record length is checked against its datagram before it is read.
  bool ForwardCached(size_t n) {
    if (n > meta_rows_) return false;
    const uint64_t now = tsweave::MonoMs();
    Hit* hits = hits_.get();
    size_t nh = 0;
    // Encrypted datagrams verified (Peek) but not yet taken into the replay
    // window: that happens only once every frame of the wake-up hit.
    Opened* opened = opened_.get();
    size_t no = 0;
    // Per opener state in this wake-up, the highest counter opened so far
    // (counters must strictly increase, see the header comment).
    struct Last {
      const uint8_t* state;
      uint64_t seq;
    };
    Last last[4];
    size_t nlast = 0;
    for (size_t i = 0; i < n; i++) {
      const uint32_t* m = meta_data_ + kMetaStride * i;
      const uint8_t* d = slab_data_ + m[0];
      size_t len = m[1];
      if (len < tsweave::kSleeveHeader || d[0] != tsweave::kSleeveMagic) return false;
      const uint64_t hop = tsweave::Read48(d + 2);
      int crypto = -1;
      uint32_t crypto_gen = 0;
      if (d[1] == tsweave::kSleeveEncrypted) {
        crypto = crypto_.Find(hop);
        if (crypto < 0) return false;
        tsweave::FlowCrypto& c = crypto_.slots[crypto];
        if (static_cast<uint32_t>(reinterpret_cast<const double*>(c.state)[0]) != c.epoch) {
          // The Opener moved to the next epoch: this key is done with.
          crypto_.Drop(env_, static_cast<size_t>(crypto));
          return false;
        }
        if (open_buf_ == nullptr) return false;
        // The plaintext goes to the same offset of the open slab: rows never
        // overlap in the receive slab, and a plaintext is shorter than its datagram.
        uint8_t* out = open_buf_.get() + m[0];
        uint64_t seq = 0;
        long r = sleeve_aead::Peek(c.state, c.key, d, len, out, len, &seq);
        if (r < 0) return false;  // JavaScript opens it again and counts the outcome
        size_t k = 0;
        while (k < nlast && last[k].state != c.state) k++;
        if (k < nlast) {
          if (seq <= last[k].seq) return false;  // a duplicate or reordered counter: JavaScript decides
          last[k].seq = seq;
        } else {
          if (nlast == sizeof last / sizeof last[0]) return false;
          last[nlast++] = {c.state, seq};
        }
        opened[no++] = {c.state, seq};
        crypto_gen = c.gen;
        // The inner datagram must be a FRAMES datagram from the same sender.
        d = out;
        len = static_cast<size_t>(r);
        if (len < tsweave::kSleeveHeader || d[0] != tsweave::kSleeveMagic || tsweave::Read48(d + 2) != hop) return false;
      }
      if (len < tsweave::kSleeveHeader + tsweave::kFrameRecord + 14 || d[1] != tsweave::kSleeveFrames) return false;
      size_t at = tsweave::kSleeveHeader;
      while (at < len) {
        if (len - at < tsweave::kFrameRecord || nh == hit_cap_) return false;
        const uint8_t* r = d + at;
        const size_t flen = (static_cast<size_t>(r[12]) << 8) | r[13];
        if (flen < 14 || flen > len - at - tsweave::kFrameRecord) return false;
        const uint8_t* f = r + tsweave::kFrameRecord;
        const uint64_t src_peer = tsweave::Read48(r);
        const uint64_t dst_mac = tsweave::Read48(f);
        const uint64_t src_mac = tsweave::Read48(f + 6);
        // The frame's own key first (flow-cache.h FrameKey), then an unkeyed flow.
        uint8_t key[tsweave::kFlowKeyMax];
        const size_t kl = tsweave::FrameKey(f, flen, key);
        const tsweave::IngressFlow* ep = nullptr;
        if (kl != 0) {
          const tsweave::IngressFlow& k = ingress_.slots[tsweave::FlowSlot(src_mac, dst_mac, src_peer ^ tsweave::KeyHash(key, kl))];
          if (k.key_len == kl && memcmp(k.key, key, kl) == 0 && k.src_mac == src_mac && k.dst_mac == dst_mac && k.src_peer == src_peer) ep = &k;
        }
        if (ep == nullptr) {
          ep = &ingress_.slots[tsweave::FlowSlot(src_mac, dst_mac, src_peer)];
          if (ep->key_len != 0) return false;
        }
        const tsweave::IngressFlow& e = *ep;
        if (e.expires_ms <= now || e.src_mac != src_mac || e.dst_mac != dst_mac || e.src_peer != src_peer ||
            e.hop_peer != hop || e.hop_addr != m[2] || tsweave::Read48(r + 6) != e.self_peer) {
          return false;
        }
        // A flow of an encrypted hop takes only what its current key opened, and a
        // plaintext flow only plaintext datagrams.
        if (e.crypto != crypto || (crypto >= 0 && e.crypto_gen != crypto_gen)) return false;
        hits[nh++] = {f, flen, &e};
        at += tsweave::kFrameRecord + flen;
      }
    }
    for (size_t i = 0; i < no; i++) sleeve_aead::Accept(opened[i].state, opened[i].seq);
    bool failed = false;
    size_t i = 0;
    while (i < nh) {
      const Hit& h = hits[i];
      size_t run = 1;
      tsweave::gso::TcpSeg a;
      size_t total = 0;
      uint8_t last_flags = 0;
      const HitFrames fr{hits + i};
      if (h.flow->vnet_len == sizeof(tsweave::gso::VnetHdr) && merge_) {
        // A run shares one TAP (and header size); PlanMerge checks the rest.
        size_t end = i + 1;
        while (end < nh && end - i < tsweave::gso::kMaxMerge && hits[end].flow->tap_fd == h.flow->tap_fd &&
               hits[end].flow->vnet_len == h.flow->vnet_len) {
          end++;
        }
        run = tsweave::gso::PlanMerge(fr, end - i, 0, merge6_, &a, &total, &last_flags);
      }
      if (run > 1) {
        const int err = tsweave::gso::WriteSuper(h.flow->tap_fd, fr, 0, run, a, total, last_flags);
        if (err == 0) {
          for (size_t k = i; k < i + run; k++) {
            ingress_counters_.frames++;
            ingress_counters_.bytes += hits[k].len;
            if (hits[k].flow->crypto >= 0) ingress_counters_.crypto++;
          }
          merge_counters_.frames += run;
          merge_counters_.supers++;
          i += run;
          continue;
        }
        if (err == EAGAIN) {
          ingress_counters_.drops += run;
          i += run;
          continue;
        }
        if (err != EINVAL) {
          ingress_counters_.errors += run;
          failed = true;
          i += run;
          continue;
        }
        // The kernel refused the super-frame: stop merging this family and
        // write the run one frame at a time below.
        (a.v6 ? merge6_ : merge_) = false;
        merge_counters_.fallbacks++;
      }
      for (size_t k = i; k < i + run; k++) {
        if (WriteHit(hits[k])) failed = true;
      }
      i += run;
    }
    ingress_counters_.batches++;
    if (failed) {
      ingress_.Clear();
      crypto_.DropAll(env_);
    }
    return true;
  }

  // One frame to its flow's TAP (after vnet_len zero bytes); counted. Returns
  // true for an error that must empty the cache.
  bool WriteHit(const Hit& h) {
    static const uint8_t kZeroVnet[16] = {0};
    struct iovec iov[2] = {{const_cast<uint8_t*>(kZeroVnet), h.flow->vnet_len}, {const_cast<uint8_t*>(h.frame), h.len}};
    ssize_t r;
    do {
      r = h.flow->vnet_len != 0 ? writev(h.flow->tap_fd, iov, 2) : write(h.flow->tap_fd, h.frame, h.len);
    } while (r < 0 && errno == EINTR);
    const bool failed = ingress_counters_.Count(r, h.len);
    if (r >= 0 && h.flow->crypto >= 0) ingress_counters_.crypto++;
    return failed;
  }

  // addFlow(hopPeer, hopAddr, srcPeer, selfPeer, srcMac, dstMac, tapFd, vnetLen, ttlMs[, openState, key[, frame]]):
  // frames originated by srcPeer, srcMac → dstMac (with `frame`: only those with
  // its EtherType and IP addresses, flow-cache.h FrameKey), addressed to selfPeer,
  // arriving in FRAMES datagrams sent by hopPeer from IPv4 hopAddr (uint32),
  // are written to `tapFd` (after vnetLen zero bytes of virtio_net_hdr, 0 or
  // 10) for ttlMs ms. Peers and MACs are 48-bit numbers. With openState (the
  // hop's Opener.sharedState) and key (its current 32-byte key) the flow takes
  // the frames of ENCRYPTED datagrams from the hop that open with that key in
  // its current epoch, and no plaintext ones.
  Napi::Value AddFlow(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    for (size_t i = 0; i < 9; i++) {
      if (info[i].IsUndefined()) ThrowType(env, "addFlow(hopPeer, hopAddr, srcPeer, selfPeer, srcMac, dstMac, tapFd, vnetLen, ttlMs) needs every argument");
    }
    const double k48 = 281474976710655.0;
    tsweave::IngressFlow f;
    f.hop_peer = static_cast<uint64_t>(IntArg(env, info[0], "hopPeer", 0, k48, 0));
    f.hop_addr = static_cast<uint32_t>(IntArg(env, info[1], "hopAddr", 0, 4294967295.0, 0));
    f.src_peer = static_cast<uint64_t>(IntArg(env, info[2], "srcPeer", 0, k48, 0));
    f.self_peer = static_cast<uint64_t>(IntArg(env, info[3], "selfPeer", 0, k48, 0));
    f.src_mac = static_cast<uint64_t>(IntArg(env, info[4], "srcMac", 0, k48, 0));
    f.dst_mac = static_cast<uint64_t>(IntArg(env, info[5], "dstMac", 0, k48, 0));
    f.tap_fd = static_cast<int>(IntArg(env, info[6], "tapFd", 0, 2147483647, 0));
    f.vnet_len = static_cast<uint32_t>(IntArg(env, info[7], "vnetLen", 0, 12, 0));
    double ttl = IntArg(env, info[8], "ttlMs", 1, 3600000, 0);
    uint8_t* st = nullptr;
    uint8_t* key = nullptr;
    if (!info[9].IsUndefined() || !info[10].IsUndefined()) {
      size_t stl = 0, keyl = 0;
      BytesArg(env, info[9], "openState", &st, &stl);
      BytesArg(env, info[10], "key", &key, &keyl);
      if ((reinterpret_cast<uintptr_t>(st) & 7) != 0 || !sleeve_aead::OpenStateValid(st, stl)) ThrowRange(env, "openState must be an Opener.sharedState Buffer");
      if (keyl != sleeve_aead::kKeyBytes) ThrowRange(env, "key must be 32 bytes");
    }
    // frame: the frame the router just delivered; it keys the flow (flow-cache.h
    // FrameKey), and one that must never be cached installs nothing.
    if (info.Length() > 11 && !info[11].IsUndefined()) {
      uint8_t* sample = nullptr;
      size_t sample_len = 0;
      BytesArg(env, info[11], "frame", &sample, &sample_len);
      f.key_len = static_cast<uint8_t>(tsweave::FrameKey(sample, sample_len, f.key));
      if (f.key_len == 0) return Napi::Boolean::New(env, false);
    }
    if (closed_ || loop_ == nullptr) return Napi::Boolean::New(env, false);
    if (st != nullptr) {
      const double* sd = reinterpret_cast<const double*>(st);
      f.crypto = crypto_.Install(env, f.hop_peer, info[9], st, key, static_cast<uint32_t>(sd[0]));
      if (f.crypto < 0) return Napi::Boolean::New(env, false);
      f.crypto_gen = crypto_.slots[f.crypto].gen;
    }
    f.expires_ms = tsweave::MonoMs() + static_cast<uint64_t>(ttl);
    ingress_.slots[tsweave::FlowSlot(f.src_mac, f.dst_mac, f.key_len ? f.src_peer ^ tsweave::KeyHash(f.key, f.key_len) : f.src_peer)] = f;
    ingress_.live++;
    ingress_.installs++;
    return Napi::Boolean::New(env, true);
  }

  Napi::Value ClearFlows(const Napi::CallbackInfo& info) {
    ingress_.Clear();
    crypto_.DropAll(env_);
    return info.Env().Undefined();
  }

  // flowStats() -> { installs, clears, batches, frames, bytes, drops, errors }
  Napi::Value FlowStats(const Napi::CallbackInfo& info) {
    return tsweave::FlowStatsObject(info.Env(), ingress_, ingress_counters_);
  }

  void Fail(Napi::Env env, Napi::Object keep, int err) {
    recv_errors_++;
    failed_ = true;
    if (poll_ != nullptr) uv_poll_stop(poll_);
    std::string code = ErrnoName(err);
    std::string msg = "UDP port " + std::to_string(port_) + ": receive failed: " + strerror(err) + "; receiving stopped";
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

  // Classifies a failed send of one datagram. Returns true if the rest of
  // the batch must be dropped too (the socket buffer is full).
  bool CountSendError(int err) {
    last_send_errno_ = err;
    if (err == EAGAIN || err == EWOULDBLOCK || err == ENOBUFS) return true;
    if (err == EMSGSIZE) {
      send_drops_too_big_++;
    } else {
      send_errors_++;
    }
    return false;
  }

  // One datagram with sendto(); returns true if the kernel took it.
  bool SendOne(const uint8_t* data, const uint32_t* row) {
    struct sockaddr_in6 a;
    socklen_t al = FillDest(row[2], row[3], &a);
    for (;;) {
      send_calls_++;
      ssize_t r = sendto(fd_, data + row[0], row[1], MSG_DONTWAIT, reinterpret_cast<struct sockaddr*>(&a), al);
      if (r >= 0) return true;
      if (errno != EINTR) return false;
    }
  }

  // How many rows from `i` (at most `limit`) can leave as one GSO send.
  size_t CoalesceRun(const uint32_t* t, size_t i, size_t limit) const {
    const uint32_t* first = t + kMetaStride * i;
    if (!gso_ || !(first[3] & kCoalesce) || first[1] == 0) return 1;
    const uint32_t seg = first[1];
    size_t total = seg;
    size_t run = 1;
    while (run < limit && run < kMaxSegments) {
      const uint32_t* r = t + kMetaStride * (i + run);
      if (r[3] != first[3] || r[2] != first[2] || r[1] == 0 || r[1] > seg || total + r[1] > kMaxGsoBytes) break;
      total += r[1];
      run++;
      if (r[1] < seg) break;  // only the last segment may be shorter
    }
    return run;
  }

  // Sends rows [from, to) of a checked table; returns datagrams taken.
  size_t SendRows(const uint8_t* data, const uint32_t* t, size_t from, size_t to) {
    if (fd_ < 0) {
      send_errors_ += to - from;
      last_send_errno_ = EBADF;
      return 0;
    }
    size_t sent = 0;
    size_t i = from;
    while (i < to) {
      // Build up to kSendChunk messages (each one row, or a GSO run of rows).
      size_t nm = 0;
      size_t ni = 0;
      while (i < to && nm < kSendChunk && ni < kSendChunk) {
        const uint32_t* row = t + kMetaStride * i;
        size_t run = CoalesceRun(t, i, std::min(to - i, kSendChunk - ni));
        struct sockaddr_in6& a = saddr_[nm];
        socklen_t al = FillDest(row[2], row[3], &a);
        for (size_t k = 0; k < run; k++) {
          const uint32_t* rk = t + kMetaStride * (i + k);
          siov_[ni + k].iov_base = const_cast<uint8_t*>(data) + rk[0];
          siov_[ni + k].iov_len = rk[1];
        }
        struct msghdr& mh = smsgs_[nm].msg_hdr;
        mh.msg_name = &a;
        mh.msg_namelen = al;
        mh.msg_iov = &siov_[ni];
        mh.msg_iovlen = run;
        mh.msg_flags = 0;
        if (run > 1) {
          mh.msg_control = sctrl_[nm].buf;
          mh.msg_controllen = CMSG_SPACE(sizeof(uint16_t));
          struct cmsghdr* c = CMSG_FIRSTHDR(&mh);
          c->cmsg_level = SOL_UDP;
          c->cmsg_type = UDP_SEGMENT;
          c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
          uint16_t seg = static_cast<uint16_t>(row[1]);
          memcpy(CMSG_DATA(c), &seg, sizeof seg);
        } else {
          mh.msg_control = nullptr;
          mh.msg_controllen = 0;
        }
        msg_row_[nm] = i;
        msg_run_[nm] = run;
        nm++;
        ni += run;
        i += run;
      }
      size_t k = 0;
      while (k < nm) {
        send_calls_++;
        int r = sendmmsg(fd_, smsgs_.data() + k, static_cast<unsigned>(nm - k), MSG_DONTWAIT);
        if (r > 0) {
          for (size_t m = k; m < k + static_cast<size_t>(r); m++) {
            sent += msg_run_[m];
            if (msg_run_[m] > 1) send_coalesced_ += msg_run_[m];
          }
          k += static_cast<size_t>(r);
          continue;
        }
        if (r < 0 && errno == EINTR) continue;
        int err = r < 0 ? errno : EIO;
        const size_t row0 = msg_row_[k];
        const size_t run = msg_run_[k];
        if (run > 1 && err != EAGAIN && err != EWOULDBLOCK && err != ENOBUFS) {
          // The kernel refused the GSO send as a whole: no checksum offload
          // (EIO, turn GSO off), or a segment above the path MTU (EINVAL).
          // Datagram by datagram, each gets its own verdict.
          if (err == EIO || err == ENOPROTOOPT || err == EOPNOTSUPP) gso_ = false;
          for (size_t q = row0; q < row0 + run; q++) {
            if (SendOne(data, t + kMetaStride * q)) {
              sent++;
            } else if (CountSendError(errno)) {
              send_drops_full_ += to - q;
              send_datagrams_ += sent;
              return sent;
            }
          }
          k++;
          continue;
        }
        if (CountSendError(err)) {
          send_drops_full_ += to - row0;
          send_datagrams_ += sent;
          return sent;
        }
        k++;  // skip the datagram that failed; the kernel reports it first
      }
    }
    send_datagrams_ += sent;
    return sent;
  }

  // sendBatch(slab, table: Uint32Array [off, len, addr, port]*, count) -> sent.
  // Every row is checked before anything is sent.
  Napi::Value SendBatch(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint8_t* data;
    size_t len;
    BytesArg(env, info[0], "slab", &data, &len);
    Napi::Uint32Array table = U32Arg(env, info[1], "table");
    size_t rows = table.ElementLength() / kMetaStride;
    size_t count = static_cast<size_t>(IntArg(env, info[2], "count", 0, static_cast<double>(rows), static_cast<double>(rows)));
    const uint32_t* t = table.Data();
    for (size_t i = 0; i < count; i++) {
      const uint32_t* row = t + kMetaStride * i;
      uint64_t o = row[0], l = row[1];
      if (o + l > len || l > 65507) {
        ThrowRange(env, "datagram " + std::to_string(i) + " (offset " + std::to_string(o) + ", length " + std::to_string(l) +
                            ") lies outside the " + std::to_string(len) + "-byte slab or exceeds 65507 bytes");
      }
      uint32_t port = row[3] & ~kCoalesce;
      if (port == 0 || port > 65535) {
        ThrowRange(env, "datagram " + std::to_string(i) + " has port " + std::to_string(port) + "; must be 1..65535 (optionally | 0x10000)");
      }
    }
    return Napi::Number::New(env, static_cast<double>(SendRows(data, t, 0, count)));
  }

  // send(buf, offset, length, addr, port) -> true if the kernel took it.
  Napi::Value Send(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint8_t* data;
    size_t len;
    BytesArg(env, info[0], "datagram", &data, &len);
    size_t off = static_cast<size_t>(IntArg(env, info[1], "offset", 0, static_cast<double>(len), 0));
    size_t n = static_cast<size_t>(IntArg(env, info[2], "length", 0, static_cast<double>(len - off), static_cast<double>(len - off)));
    if (n > 65507) ThrowRange(env, "datagram length " + std::to_string(n) + " exceeds 65507 bytes");
    uint32_t addr = static_cast<uint32_t>(IntArg(env, info[3], "address", 0, 4294967295.0, -1));
    if (info[3].IsUndefined()) ThrowType(env, "address must be a number (IPv4 as uint32, or an addressKey)");
    uint32_t port = static_cast<uint32_t>(IntArg(env, info[4], "port", 1, 65535, 0));
    if (info[4].IsUndefined()) ThrowType(env, "port must be a number");
    uint32_t row[4] = {static_cast<uint32_t>(off), static_cast<uint32_t>(n), addr, port};
    return Napi::Boolean::New(env, SendRows(data, row, 0, 1) == 1);
  }

  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object o = Napi::Object::New(env);
    o.Set("recvDatagrams", static_cast<double>(recv_datagrams_));
    o.Set("recvBatches", static_cast<double>(recv_batches_));
    o.Set("recvTruncated", static_cast<double>(recv_truncated_));
    o.Set("recvErrors", static_cast<double>(recv_errors_));
    o.Set("sendDatagrams", static_cast<double>(send_datagrams_));
    o.Set("sendCalls", static_cast<double>(send_calls_));
    o.Set("sendDropsFull", static_cast<double>(send_drops_full_));
    o.Set("sendDropsTooBig", static_cast<double>(send_drops_too_big_));
    o.Set("sendErrors", static_cast<double>(send_errors_));
    if (last_send_errno_ != 0) {
      o.Set("lastSendError", ErrnoName(last_send_errno_));
    } else {
      o.Set("lastSendError", env.Null());
    }
    o.Set("sendCoalesced", static_cast<double>(send_coalesced_));
    o.Set("recvCoalesced", static_cast<double>(recv_coalesced_));
    o.Set("gso", gso_);
    o.Set("gro", gro_);
    o.Set("tapMergedFrames", static_cast<double>(merge_counters_.frames));
    o.Set("tapSuperFrames", static_cast<double>(merge_counters_.supers));
    o.Set("tapMergeFallbacks", static_cast<double>(merge_counters_.fallbacks));
    o.Set("recvBufferBytes", rcvbuf_);
    o.Set("sendBufferBytes", sndbuf_);
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
    on_batch_.Reset();
    on_error_.Reset();
    if (strong_) {
      strong_ = false;
      Unref();
    }
    return info.Env().Undefined();
  }

  // OS resources only; no JS, so safe from the destructor and the cleanup hook.
  void CloseNative() {
    closed_ = true;
    ingress_.Clear();
    crypto_.DropAll(env_);
    if (fast_port_ != nullptr) {
      fast_port_->self = nullptr;
      fast_port_->fd = -1;
    }
    if (poll_ != nullptr) {
      poll_->data = nullptr;
      uv_close(reinterpret_cast<uv_handle_t*>(poll_), FreePoll);
      poll_ = nullptr;
    }
    if (fd_ >= 0) {
      close(fd_);
      fd_ = -1;
    }
  }

  static void CleanupHook(void* arg) {
    UdpSocket* self = static_cast<UdpSocket*>(arg);
    self->hook_added_ = false;
    self->CloseNative();
  }

  napi_env env_;
  int fd_ = -1;
  int port_ = 0;
  size_t batch_ = 0;
  size_t slot_ = 0;
  size_t stride_ = 0;
  int rcvbuf_ = 0;
  int sndbuf_ = 0;
  uint8_t* slab_data_ = nullptr;
  uint32_t* meta_data_ = nullptr;
  Napi::Reference<Napi::Buffer<uint8_t>> slab_ref_;
  Napi::Reference<Napi::Uint32Array> meta_ref_;
  std::vector<struct mmsghdr> rmsgs_;
  std::vector<struct iovec> riov_;
  std::vector<struct sockaddr_in6> raddr_;  // big enough for either family
  // Room for one control message: UDP_SEGMENT (u16) out, UDP_GRO (int) in.
  struct Ctrl {
    alignas(struct cmsghdr) char buf[CMSG_SPACE(sizeof(int))];
  };
  std::vector<Ctrl> rctrl_;
  std::vector<struct mmsghdr> smsgs_;
  std::vector<struct iovec> siov_;
  std::vector<struct sockaddr_in6> saddr_;
  int family_ = AF_INET;
  V6Keys v6_;
  std::vector<Ctrl> sctrl_;
  std::vector<size_t> msg_row_;
  std::vector<size_t> msg_run_;
  size_t meta_rows_ = 0;
  bool gso_ = true;
  bool gro_ = false;
  uint64_t send_coalesced_ = 0;
  uint64_t recv_coalesced_ = 0;
  Napi::FunctionReference on_batch_;
  Napi::FunctionReference on_error_;
  std::unique_ptr<Napi::AsyncContext> async_ctx_;
  uv_poll_t* poll_ = nullptr;
  bool manual_ = false;  // started with poll false: read by drain()
  bool failed_ = false;  // a receive failed: receiving stopped
  bool started_ = false;
  bool closed_ = false;
  bool refed_ = true;
  bool strong_ = false;
  bool hook_added_ = false;
  uint64_t recv_datagrams_ = 0;
  uint64_t recv_batches_ = 0;
  uint64_t recv_truncated_ = 0;
  uint64_t recv_errors_ = 0;
  uint64_t send_datagrams_ = 0;
  uint64_t send_calls_ = 0;
  uint64_t send_drops_full_ = 0;
  uint64_t send_drops_too_big_ = 0;
  uint64_t send_errors_ = 0;
  int last_send_errno_ = 0;
  uv_loop_t* loop_ = nullptr;
  tsweave::FastPort* fast_port_ = nullptr;
  bool last_fast_ = false;
  size_t last_n_ = 0;
  tsweave::FlowTable<tsweave::IngressFlow> ingress_;
  tsweave::FlowCounters ingress_counters_;
  tsweave::CryptoTable crypto_;
  // One cached wake-up (ForwardCached): its frames, the encrypted rows opened
  // and, in open_buf_ (as large as the receive slab, row i's plaintext at row
  // i's offset), their plaintexts. Allocated uninitialised, so pages never
  // written (no encrypted flows) take no memory.
  std::unique_ptr<Hit[]> hits_;
  size_t hit_cap_ = 0;
  std::unique_ptr<Opened[]> opened_;
  std::unique_ptr<uint8_t[]> open_buf_;
  // Whole wake-ups (GRO batches) in the cache; off with WEAVE_NO_BULK_INGRESS=1.
  bool bulk_ingress_ = true;
  // TCP runs written to the TAP as GSO super-frames (gso-merge.h); a family is
  // turned off when the kernel refuses one (EINVAL), IPv6 also by
  // WEAVE_NO_TAP_MERGE6=1 as in tap.cc.
  bool merge_ = true;
  bool merge6_ = true;
  tsweave::gso::MergeCounters merge_counters_;
};

// routeMtu(addr: uint32 | IPv6 text) -> the MTU the kernel would use towards
// IPv4 `addr` or the IPv6 address (egress device or route MTU, IP_MTU /
// IPV6_MTU on a connected socket, ip(7), ipv6(7)); 0 if there is no route.
// Connecting a UDP socket sends nothing.
Napi::Value RouteMtu(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info[0].IsString()) {
    std::string text = info[0].As<Napi::String>().Utf8Value();
    struct sockaddr_in6 a6;
    memset(&a6, 0, sizeof a6);
    a6.sin6_family = AF_INET6;
    a6.sin6_port = htons(9);
    if (inet_pton(AF_INET6, text.c_str(), &a6.sin6_addr) != 1) ThrowType(env, "address must be a number (IPv4 as uint32) or IPv6 text");
    int fd6 = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd6 < 0) return Napi::Number::New(env, 0);
    int mtu6 = 0;
    socklen_t ml6 = sizeof mtu6;
    if (connect(fd6, reinterpret_cast<struct sockaddr*>(&a6), sizeof a6) < 0 || getsockopt(fd6, IPPROTO_IPV6, IPV6_MTU, &mtu6, &ml6) < 0) mtu6 = 0;
    close(fd6);
    return Napi::Number::New(env, mtu6);
  }
  if (info[0].IsUndefined()) ThrowType(env, "address must be a number (IPv4 as uint32) or IPv6 text");
  uint32_t addr = static_cast<uint32_t>(IntArg(env, info[0], "address", 0, 4294967295.0, 0));
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Napi::Number::New(env, 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons(9);
  a.sin_addr.s_addr = htonl(addr);
  int mtu = 0;
  socklen_t ml = sizeof mtu;
  if (connect(fd, reinterpret_cast<struct sockaddr*>(&a), sizeof a) < 0 || getsockopt(fd, IPPROTO_IP, IP_MTU, &mtu, &ml) < 0) mtu = 0;
  close(fd);
  return Napi::Number::New(env, mtu);
}

// aeadSeal(sealState, key, header, plain, pStart, pEnd, out) -> datagram length,
// or -1 (counter exhausted: re-key first) / -2 (out too small). Seals
// plain[pStart, pEnd) into out[0, ..) with the shared seal state (sleeve-aead.h);
// plain may be out itself with the plaintext at offset 16. Throws TypeError /
// RangeError for wrong argument shapes (programming errors).
Napi::Value AeadSeal(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint8_t *st, *key, *hdr, *plain, *out;
  size_t stl, keyl, hdrl, plainl, outl;
  BytesArg(env, info[0], "seal state", &st, &stl);
  BytesArg(env, info[1], "key", &key, &keyl);
  BytesArg(env, info[2], "header", &hdr, &hdrl);
  BytesArg(env, info[3], "plaintext", &plain, &plainl);
  size_t ps = static_cast<size_t>(IntArg(env, info[4], "pStart", 0, static_cast<double>(plainl), 0));
  size_t pe = static_cast<size_t>(IntArg(env, info[5], "pEnd", static_cast<double>(ps), static_cast<double>(plainl), static_cast<double>(plainl)));
  BytesArg(env, info[6], "out", &out, &outl);
  if (stl < sleeve_aead::kSealStateBytes || (reinterpret_cast<uintptr_t>(st) & 7) != 0) ThrowRange(env, "seal state must be an 8-byte aligned Buffer of 16 bytes (Sealer.sharedState)");
  if (keyl != sleeve_aead::kKeyBytes) ThrowRange(env, "key must be 32 bytes");
  if (hdrl < sleeve_aead::kHeaderBytes) ThrowRange(env, "header must be 8 bytes");
  const uint8_t* p = plain + ps;
  size_t n = pe - ps;
  if (p != out + 16 && p < out + outl && p + n > out) ThrowRange(env, "plaintext overlaps out other than at offset 16");
  long r = sleeve_aead::Seal(reinterpret_cast<double*>(st), key, hdr, p, n, out, outl);
  return Napi::Number::New(env, static_cast<double>(r));
}

// aeadOpen(openState, key, datagram, start, end, out) -> plaintext length, or
// an open error (-1 replay, -2 auth, -3 malformed; counted in the shared state)
// or -5 (another key epoch: hand the datagram to the JS Opener).
Napi::Value AeadOpen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint8_t *st, *key, *d, *out;
  size_t stl, keyl, dl, outl;
  BytesArg(env, info[0], "open state", &st, &stl);
  BytesArg(env, info[1], "key", &key, &keyl);
  BytesArg(env, info[2], "datagram", &d, &dl);
  size_t s0 = static_cast<size_t>(IntArg(env, info[3], "start", 0, static_cast<double>(dl), 0));
  size_t e0 = static_cast<size_t>(IntArg(env, info[4], "end", static_cast<double>(s0), static_cast<double>(dl), static_cast<double>(dl)));
  BytesArg(env, info[5], "out", &out, &outl);
  if ((reinterpret_cast<uintptr_t>(st) & 7) != 0 || !sleeve_aead::OpenStateValid(st, stl)) ThrowRange(env, "open state must be an Opener.sharedState Buffer");
  if (keyl != sleeve_aead::kKeyBytes) ThrowRange(env, "key must be 32 bytes");
  if (out < d + dl && out + outl > d) ThrowRange(env, "out must not overlap the datagram");
  long r = sleeve_aead::Open(st, key, d + s0, e0 - s0, out, outl);
  return Napi::Number::New(env, static_cast<double>(r));
}

Napi::Object InitModule(Napi::Env env, Napi::Object exports) {
  if (!sleeve_aead::Init()) ThrowCode(env, "ECRYPTO", "OpenSSL ChaCha20-Poly1305 is unavailable or failed its self-check (libcrypto)");
  exports.Set("aeadSeal", Napi::Function::New(env, AeadSeal, "aeadSeal"));
  exports.Set("aeadOpen", Napi::Function::New(env, AeadOpen, "aeadOpen"));
  exports.Set("UdpSocket", UdpSocket::Init(env));
  exports.Set("routeMtu", Napi::Function::New(env, RouteMtu, "routeMtu"));
  exports.Set("metaStride", Napi::Number::New(env, static_cast<double>(kMetaStride)));
  return exports;
}

}  // namespace

NODE_API_MODULE(udp, InitModule)
