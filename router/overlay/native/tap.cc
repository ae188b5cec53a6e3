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
//                    vnetHdr, writeCoalesced }
//   tap.ref(), tap.unref(), tap.close()
//   tap.addFlow(srcMac, dstMac, udpFd, addr, port, template, maxFrame, ttlMs[, sealState, key])
//     (addr: IPv4 as uint32, or IPv6 text; the UDP socket may be dual-stack)
//   tap.clearFlows(), tap.flowStats()
//   setDontFragment(fd, on)
//
// Flow cache (flow-cache.h): a wake-up of at most kFastBatchMax frames that
// all match installed egress flows is sent here, one FRAMES datagram per
// frame with sendmsg() on the sleeve's UDP socket, and JavaScript is not
// called; otherwise the batch goes to onBatch as always. A flow of an
// encrypted peer seals that datagram first (sleeve-aead.h: ENCRYPTED outer
// header, the Sealer's shared counter), exactly as the router's Sealer would.
//
// vnetHdr (opt-in): the TAP is opened with IFF_VNET_HDR and no offloads
// (TUNSETOFFLOAD 0), so the kernel still hands us plain, checksummed frames
// (their 10-byte virtio_net_hdr is read into scratch and dropped: JS sees the
// same frames), while writeSlab may hand the kernel TCP super-frames: within
// one writeSlab call, consecutive IPv4/TCP segments of one flow with
// contiguous sequence numbers and identical headers (what Linux's TCP GRO
// merges, net/ipv4/tcp_offload.c) are written as ONE frame with a
// virtio_net_hdr saying GSO TCPV4, gso_size = the segments' payload size and a
// partial checksum (the virtio spec's VIRTIO_NET_HDR_F_NEEDS_CSUM). The
// bridge and the container's veth carry it whole and the container's TCP
// takes it as one GRO'd packet; any device without TSO on the way gets it
// re-segmented into the very same segments by the kernel. Gathered with
// writev: the payloads are not copied.
// Errors thrown carry a `code` (errno name, or ERR_INVALID_ARG_TYPE /
// ERR_OUT_OF_RANGE for bad arguments).

#include <napi.h>
#include <uv.h>

#include "flow-cache.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

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
// (libsodium is initialised at load, InitModule.)
constexpr uint8_t kVnetNeedsCsum = 1;  // VIRTIO_NET_HDR_F_NEEDS_CSUM
constexpr uint8_t kVnetGsoTcpv4 = 1;   // VIRTIO_NET_HDR_GSO_TCPV4
// Most segments merged into one super-frame (Linux GRO stops at 64 too).
constexpr size_t kMaxMerge = 64;

inline uint16_t Rd16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }
inline uint32_t Rd32(const uint8_t* p) {
  return (static_cast<uint32_t>(p[0]) << 24) | (static_cast<uint32_t>(p[1]) << 16) | (static_cast<uint32_t>(p[2]) << 8) | p[3];
}

// RFC 1071 one's-complement sum of 16-bit big-endian words, not folded.
uint32_t SumWords(const uint8_t* p, size_t n, uint32_t sum) {
  for (; n > 1; p += 2, n -= 2) sum += Rd16(p);
  if (n == 1) sum += static_cast<uint32_t>(p[0]) << 8;
  return sum;
}
inline uint16_t Fold(uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(sum);
}

// An IPv4/TCP segment that TCP GRO could merge: Ethernet II without VLAN,
// IPv4 without options or fragmentation, no Ethernet padding, only ACK (and
// PSH) set, some payload.
struct TcpSeg {
  const uint8_t* p;
  size_t hdr;      // Ethernet + IP + TCP header bytes
  size_t thl;      // TCP header bytes
  size_t payload;  // TCP payload bytes
  uint32_t seq;
  uint8_t flags;
};

bool ParseTcpSeg(const uint8_t* p, size_t len, TcpSeg* s) {
  if (len < 14 + 20 + 20 || p[12] != 0x08 || p[13] != 0x00) return false;
  const uint8_t* ip = p + 14;
  if (ip[0] != 0x45 || ip[9] != 6) return false;
  if (Rd16(ip + 2) != len - 14) return false;
  if ((Rd16(ip + 6) & 0x3fff) != 0) return false;
  const uint8_t* th = ip + 20;
  size_t thl = static_cast<size_t>(th[12] >> 4) * 4;
  if (thl < 20 || 14 + 20 + thl >= len) return false;
  uint8_t fl = th[13];
  if ((fl & ~0x18) != 0 || !(fl & 0x10)) return false;
  s->p = p;
  s->thl = thl;
  s->hdr = 14 + 20 + thl;
  s->payload = len - s->hdr;
  s->seq = Rd32(th + 4);
  s->flags = fl;
  return true;
}

// Same flow and the same headers apart from sequence number, IP id/length/
// checksum, TCP checksum and PSH: MACs, TOS, DF, TTL, addresses, ports, ack,
// window and every option byte (timestamps included), as Linux GRO requires.
bool SameHeaders(const TcpSeg& a, const TcpSeg& b) {
  if (a.thl != b.thl || memcmp(a.p, b.p, 12) != 0) return false;
  const uint8_t* ia = a.p + 14;
  const uint8_t* ib = b.p + 14;
  if (ia[1] != ib[1] || (ia[6] & 0x40) != (ib[6] & 0x40) || ia[8] != ib[8] || memcmp(ia + 12, ib + 12, 8) != 0) return false;
  const uint8_t* ta = ia + 20;
  const uint8_t* tb = ib + 20;
  return memcmp(ta, tb, 4) == 0 && memcmp(ta + 8, tb + 8, 4) == 0 && memcmp(ta + 14, tb + 14, 2) == 0 &&
         memcmp(ta + 20, tb + 20, a.thl - 20) == 0;
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
    fd_ = OpenTap(env, name, &name_, vnet_);  // throws with a one-line message
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
  static int OpenTap(Napi::Env env, const std::string& name, std::string* actual, bool vnet) {
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
      // A 10-byte header, and no offloads towards us: the kernel keeps
      // segmenting and checksumming what it hands us.
      int hs = sizeof(VnetHdr);
      unsigned off = 0;
      if (ioctl(fd, TUNSETVNETHDRSZ, &hs) < 0 || ioctl(fd, TUNSETOFFLOAD, off) < 0) {
        int err = errno;
        close(fd);
        ThrowCode(env, ErrnoName(err), "configuring the virtio-net header of TAP " + name + " failed: " + strerror(err));
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
    size_t pos = 0;
    size_t n = 0;
    int err = 0;
    const size_t want = max_frame_ + 1;  // one spare byte tells a frame longer than maxFrame
    while (n < batch_ && slab_bytes_ - pos >= want) {
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
        if (static_cast<size_t>(r) < sizeof vh || vh.gso_type != 0) {
          // No offloads were granted, so no GSO frame should come; never pass one on.
          read_truncated_++;
          continue;
        }
        r -= sizeof vh;
        if ((vh.flags & kVnetNeedsCsum) && static_cast<size_t>(vh.csum_start) + vh.csum_offset + 2 <= static_cast<size_t>(r)) {
          // Finish a partial checksum the kernel left to the "device".
          uint8_t* f = slab_data_ + pos;
          uint16_t c = static_cast<uint16_t>(~Fold(SumWords(f + vh.csum_start, static_cast<size_t>(r) - vh.csum_start, 0)));
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
    if (n > 0) {
      read_frames_ += n;
      read_batches_++;
      last_n_ = n;
      if (n <= tsweave::kFastBatchMax && egress_.live != 0 && ForwardCached(n)) {
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
  // live flow, send each as one FRAMES datagram and return true; otherwise
  // send nothing and return false (the batch goes to JavaScript).
  bool ForwardCached(size_t n) {
    const uint64_t now = tsweave::MonoMs();
    tsweave::EgressFlow* hit[tsweave::kFastBatchMax];
    for (size_t i = 0; i < n; i++) {
      const uint8_t* f = slab_data_ + frames_data_[2 * i];
      const size_t len = frames_data_[2 * i + 1];
      if (len < 14 || (f[0] & 1) != 0) return false;  // runt, or a group address: flooded by the router
      const uint64_t dst = tsweave::Read48(f);
      const uint64_t src = tsweave::Read48(f + 6);
      tsweave::EgressFlow& e = egress_.slots[tsweave::FlowSlot(src, dst, 0)];
      if (e.expires_ms <= now || e.src_mac != src || e.dst_mac != dst || len > e.max_frame) return false;
      if (e.crypto >= 0 && !SealReady(e)) return false;
      hit[i] = &e;
    }
    bool failed = false;
    for (size_t i = 0; i < n; i++) {
      tsweave::EgressFlow& e = *hit[i];
      uint8_t* f = slab_data_ + frames_data_[2 * i];
      const size_t len = frames_data_[2 * i + 1];
      uint8_t lenb[2] = {static_cast<uint8_t>(len >> 8), static_cast<uint8_t>(len)};
      struct iovec iov[3] = {{e.tmpl, sizeof e.tmpl}, {lenb, 2}, {f, len}};
      struct msghdr mh;
      memset(&mh, 0, sizeof mh);
      mh.msg_name = &e.to;
      mh.msg_namelen = e.to_len;
      mh.msg_iov = iov;
      mh.msg_iovlen = 3;
      if (e.crypto >= 0) {
        // Sealed: the inner FRAMES datagram is built at offset 16 of the seal
        // buffer and encrypted in place behind the ENCRYPTED outer header.
        const tsweave::FlowCrypto& c = crypto_.slots[e.crypto];
        uint8_t* sb = seal_buf_.data();
        uint8_t* p = sb + 16;
        memcpy(p, e.tmpl, sizeof e.tmpl);
        memcpy(p + sizeof e.tmpl, lenb, 2);
        memcpy(p + sizeof e.tmpl + 2, f, len);
        const uint8_t hdr[tsweave::kSleeveHeader] = {tsweave::kSleeveMagic, tsweave::kSleeveEncrypted, e.tmpl[2], e.tmpl[3],
                                                     e.tmpl[4], e.tmpl[5], e.tmpl[6], e.tmpl[7]};
        long sl = sleeve_aead::Seal(reinterpret_cast<double*>(c.state), c.key, hdr, p, sizeof e.tmpl + 2 + len, sb, seal_buf_.size());
        if (sl < 0) {  // cannot happen after SealReady; never send anything unsealed
          egress_counters_.errors++;
          failed = true;
          continue;
        }
        iov[0] = {sb, static_cast<size_t>(sl)};
        mh.msg_iovlen = 1;
      }
      ssize_t r;
      do {
        r = sendmsg(e.udp_fd, &mh, MSG_DONTWAIT);
      } while (r < 0 && errno == EINTR);
      // EMSGSIZE (the path shrank) or worse: let the router see what follows.
      if (egress_counters_.Count(r, len)) failed = true;
      if (r >= 0 && e.crypto >= 0) egress_counters_.crypto++;
    }
    egress_counters_.batches++;
    if (failed) {
      egress_.Clear();
      crypto_.DropAll(env_);
    }
    return true;
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

  // addFlow(srcMac, dstMac, udpFd, addr, port, template, maxFrame, ttlMs[, sealState, key]):
  // frames srcMac → dstMac (48-bit numbers) leave as FRAMES datagrams to
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
    uint16_t port = static_cast<uint16_t>(IntArg(env, info[4], "port", 1, 65535, 0));
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
    tsweave::EgressFlow& e = egress_.slots[tsweave::FlowSlot(src, dst, 0)];
    e.crypto = crypto;
    e.crypto_gen = crypto >= 0 ? crypto_.slots[crypto].gen : 0;
    e.src_mac = src;
    e.dst_mac = dst;
    e.udp_fd = fd;
    e.to = to;
    e.to_len = to_len;
    e.max_frame = max_frame;
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
    uint32_t written = 0;
    size_t i = 0;
    while (i < count) {
      TcpSeg a, b;
      size_t run = 1;
      size_t total = 0;
      uint8_t last_flags = 0;
      if (i + 1 < count && ParseTcpSeg(data + f[2 * i], f[2 * i + 1], &a) && !(a.flags & 0x08)) {
        total = a.payload;
        last_flags = a.flags;
        uint32_t next = a.seq + static_cast<uint32_t>(a.payload);
        while (i + run < count && run < kMaxMerge) {
          const size_t j = i + run;
          if (!ParseTcpSeg(data + f[2 * j], f[2 * j + 1], &b) || !SameHeaders(a, b) || b.seq != next || b.payload > a.payload ||
              20 + a.thl + total + b.payload > 65535) {
            break;
          }
          total += b.payload;
          next += static_cast<uint32_t>(b.payload);
          last_flags = b.flags;
          run++;
          if (b.payload < a.payload || (b.flags & 0x08)) break;  // a short or pushed segment ends the run
        }
      }
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
      int err = WriteSuper(data, f, i, run, a, total, last_flags);
      if (err == 0) {
        written += static_cast<uint32_t>(run);
        write_frames_ += run;
        write_coalesced_ += run;
      } else if (err == EAGAIN) {
        write_drops_ += count - i;
        break;
      } else if (err == EINVAL) {
        // The kernel refused the super-frame: stop merging, send these one by one.
        merge_ = false;
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

  // Writes segments [i, i+run) as one GSO frame: the first segment's headers
  // with the total length, PSH of the last, a fresh IPv4 checksum and the TCP
  // pseudo-header sum as partial checksum; payloads gathered in place.
  int WriteSuper(const uint8_t* data, const uint32_t* f, size_t i, size_t run, const TcpSeg& a, size_t total, uint8_t last_flags) {
    uint8_t* h = merge_hdr_;
    memcpy(h, a.p, a.hdr);
    uint8_t* ip = h + 14;
    const size_t ip_len = 20 + a.thl + total;
    ip[2] = static_cast<uint8_t>(ip_len >> 8);
    ip[3] = static_cast<uint8_t>(ip_len);
    ip[10] = ip[11] = 0;
    uint16_t ic = static_cast<uint16_t>(~Fold(SumWords(ip, 20, 0)));
    ip[10] = static_cast<uint8_t>(ic >> 8);
    ip[11] = static_cast<uint8_t>(ic);
    uint8_t* th = ip + 20;
    th[13] = last_flags;
    const size_t tcp_len = a.thl + total;
    uint16_t pc = Fold(SumWords(ip + 12, 8, 6 + static_cast<uint32_t>(tcp_len)));
    th[16] = static_cast<uint8_t>(pc >> 8);
    th[17] = static_cast<uint8_t>(pc);
    VnetHdr vh;
    vh.flags = kVnetNeedsCsum;
    vh.gso_type = kVnetGsoTcpv4;
    vh.hdr_len = static_cast<uint16_t>(a.hdr);
    vh.gso_size = static_cast<uint16_t>(a.payload);
    vh.csum_start = 14 + 20;
    vh.csum_offset = 16;
    struct iovec iov[2 + kMaxMerge];
    iov[0] = {&vh, sizeof vh};
    iov[1] = {h, a.hdr};
    for (size_t k = 0; k < run; k++) {
      const uint8_t* p = data + f[2 * (i + k)];
      iov[2 + k] = {const_cast<uint8_t*>(p + a.hdr), f[2 * (i + k) + 1] - a.hdr};
    }
    if (fd_ < 0) {
      last_write_errno_ = EBADF;
      return EBADF;
    }
    for (;;) {
      ssize_t r = ::writev(fd_, iov, static_cast<int>(2 + run));
      if (r >= 0) return 0;
      int err = errno;
      if (err == EINTR) continue;
      last_write_errno_ = err;
      return err == EWOULDBLOCK ? EAGAIN : err;
    }
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
    o.Set("writeCoalesced", static_cast<double>(write_coalesced_));
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
  uint64_t write_coalesced_ = 0;
  uint8_t merge_hdr_[14 + 60 + 60];
  uv_loop_t* loop_ = nullptr;
  tsweave::FastPort* port_ = nullptr;
  bool last_fast_ = false;
  size_t last_n_ = 0;
  tsweave::FlowTable<tsweave::EgressFlow> egress_;
  tsweave::FlowCounters egress_counters_;
  tsweave::CryptoTable crypto_;
  // An encrypted flow's datagram: 16 B header + sequence, the inner datagram
  // (template, length, frame of at most 65535 B), the tag.
  std::vector<uint8_t> seal_buf_ = std::vector<uint8_t>(16 + tsweave::kEgressTemplate + 2 + 65535 + 16);
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

Napi::Object InitModule(Napi::Env env, Napi::Object exports) {
  if (!sleeve_aead::Init()) ThrowCode(env, "ESODIUM", "libsodium failed to initialise (sodium_init)");
  exports.Set("Tap", Tap::Init(env));
  exports.Set("setDontFragment", Napi::Function::New(env, SetDontFragment, "setDontFragment"));
  exports.Set("defaultMaxFrame", Napi::Number::New(env, 65535 + 18));
  return exports;
}

}  // namespace

NODE_API_MODULE(tap, InitModule)
