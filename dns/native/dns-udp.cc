// Batched UDP socket for weaveDNS's server (Linux; IPv4 or IPv6), wrapped by
// dns/udp-batch.ts. Builds build/Release/dnsudp.node (binding.gyp).
//
// Why: node:dgram costs, per query, one recvmsg(2) and one 'message' event with
// a fresh Buffer and address object, then per answer a send() through several
// layers of JS, a send request object and one sendmsg(2). A DNS answer from
// the memo (dns/answer.ts) costs a few microseconds, so that per-datagram
// overhead is most of a local answer. Here, as the sleeve's socket
// (router/overlay/native/udp.cc) does for frames:
//   - receiving: a uv_poll handle watches the non-blocking socket; each
//     wake-up drains up to `batch` queries with ONE recvmmsg(2) into fixed
//     slots of one preallocated slab and calls JS ONCE with
//     (slab, meta, count); meta row i (kRow uint32s) is
//       [offset, length, family (4 | 6), source port, a0, a1, a2, a3]
//     where for IPv4 a0 is the address as a host-order uint32 (a.b.c.d =
//     a*2^24 + b*2^16 + c*2^8 + d) and a1..a3 are 0, and for IPv6 a0..a3 are
//     the 16 address bytes as four host-order uint32s (big-endian words);
//   - sending: JS packs its answers into a slab of its own plus a table of
//     rows in the same format (offset, length, family, destination port,
//     address words) and hands the batch over in ONE call: one sendmmsg(2)
//     per kSendChunk answers.
// Hostile input: a query longer than the slot (MSG_TRUNC) is dropped and
// counted, never handed to JS; batch sizes and table rows are bounds-checked
// against the slab before any pointer is formed (a bad row is a RangeError,
// a programming error). Sends never block and never throw for I/O: a full
// socket buffer (EAGAIN/ENOBUFS) drops the rest of the batch, other errors
// skip that answer; all are counted in stats(). ICMP errors queued on the
// socket (ECONNREFUSED after a client went away) are counted and ignored.
// Socket options: no SO_REUSEADDR/SO_REUSEPORT (a second server on the address
// must fail with EADDRINUSE rather than silently share the queries);
// SO_RCVBUF/SO_SNDBUF as asked (forced when privileged). See socket(7),
// udp(7), recvmmsg(2), sendmmsg(2).
//
// Hand-over between threads (dns/threaded.ts): worker threads share the
// process's fd table, so a server thread can take over a socket the main thread
// bound by adopting a dup(2) of its fd (`fd` option): both descriptors name one
// socket and one receive queue, so a datagram queued while the owners change is
// read by whichever polls next — none is lost. pause()/resume() stop and restart
// the polling without closing: a paused socket still sends (late answers to
// forwarded queries go out from the address the client asked).
//
// JS surface:
//   new DnsUdpSocket({ address, port, batch = 64 (1..1024), bufferBytes = 1 MiB })
//   new DnsUdpSocket({ fd, batch })  adopt a dup of a bound UDP socket's fd
//   sock.localPort, sock.slotStride, sock.rowStride, sock.fd
//   sock.start(onBatch(slab, meta, count), onError(code, message))
//   sock.pause(), sock.resume()
//   sock.sendBatch(slab, table, count) -> answers the kernel took
//   sock.stats() -> { recvDatagrams, recvBatches, recvTruncated, recvErrors,
//                     sendDatagrams, sendCalls, sendDropsFull, sendErrors }
//   sock.ref(), sock.unref(), sock.close()
//   threadCpuNs(), setThreadRealtime(priority)   the calling thread's CPU time and
//                                     scheduling class (weaveDNS's server thread:
//                                     dns/rt-budget.ts); see their comments below
// Thrown errors carry a `code` (errno name, or ERR_INVALID_ARG_TYPE /
// ERR_OUT_OF_RANGE for bad arguments).

#include <napi.h>
#include <uv.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

namespace {

constexpr double kMaxBatch = 1024;          // recvmmsg vlen cap (UIO_MAXIOV)
constexpr size_t kSlot = 4096 + 1;          // largest query we take (MAX_QUERY_BYTES) + 1 spare byte
constexpr double kMaxBuffer = 64.0 * 1024 * 1024;
constexpr size_t kSendChunk = 256;          // answers per sendmmsg
constexpr size_t kRow = 8;                  // uint32s per meta / table row

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
  if (!(d >= lo && d <= hi) || d != static_cast<double>(static_cast<long long>(d))) {
    ThrowRange(env, std::string(what) + " must be an integer in " + std::to_string(static_cast<long long>(lo)) + ".." + std::to_string(static_cast<long long>(hi)));
  }
  return d;
}

int SetBuffer(int fd, int force_opt, int opt, int bytes) {
  if (setsockopt(fd, SOL_SOCKET, force_opt, &bytes, sizeof bytes) < 0) (void)setsockopt(fd, SOL_SOCKET, opt, &bytes, sizeof bytes);
  int got = 0;
  socklen_t gl = sizeof got;
  if (getsockopt(fd, SOL_SOCKET, opt, &got, &gl) < 0) return 0;
  return got;
}

class DnsUdpSocket : public Napi::ObjectWrap<DnsUdpSocket> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "DnsUdpSocket",
                       {
                           InstanceAccessor<&DnsUdpSocket::GetLocalPort>("localPort"),
                           InstanceAccessor<&DnsUdpSocket::GetSlotStride>("slotStride"),
                           InstanceAccessor<&DnsUdpSocket::GetRowStride>("rowStride"),
                           InstanceAccessor<&DnsUdpSocket::GetFd>("fd"),
                           InstanceMethod<&DnsUdpSocket::Pause>("pause"),
                           InstanceMethod<&DnsUdpSocket::Resume>("resume"),
                           InstanceMethod<&DnsUdpSocket::Start>("start"),
                           InstanceMethod<&DnsUdpSocket::SendBatch>("sendBatch"),
                           InstanceMethod<&DnsUdpSocket::Stats>("stats"),
                           InstanceMethod<&DnsUdpSocket::RefMethod>("ref"),
                           InstanceMethod<&DnsUdpSocket::UnrefMethod>("unref"),
                           InstanceMethod<&DnsUdpSocket::Close>("close"),
                       });
  }

  explicit DnsUdpSocket(const Napi::CallbackInfo& info) : Napi::ObjectWrap<DnsUdpSocket>(info), env_(info.Env()) {
    Napi::Env env = info.Env();
    if (!info[0].IsObject()) ThrowType(env, "DNS UDP socket options must be an object");
    Napi::Object o = info[0].As<Napi::Object>();
    batch_ = static_cast<size_t>(IntArg(env, o.Get("batch"), "batch", 1, kMaxBatch, 64));
    int adopt = static_cast<int>(IntArg(env, o.Get("fd"), "fd", 0, 1 << 30, -1));
    std::string address;
    int buffer = 0;
    struct sockaddr_in6 sa6;
    memset(&sa6, 0, sizeof sa6);
    struct sockaddr_in sa4;
    memset(&sa4, 0, sizeof sa4);
    if (adopt < 0) {
      Napi::Value av = o.Get("address");
      if (!av.IsString()) ThrowType(env, "address must be a string (an IPv4 or IPv6 address)");
      address = av.As<Napi::String>().Utf8Value();
      Napi::Value pv = o.Get("port");
      if (pv.IsUndefined()) ThrowType(env, "port must be a number");
      port_ = static_cast<int>(IntArg(env, pv, "port", 0, 65535, 0));
      buffer = static_cast<int>(IntArg(env, o.Get("bufferBytes"), "bufferBytes", 0, kMaxBuffer, 1 << 20));
      sa6.sin6_family = AF_INET6;
      sa6.sin6_port = htons(static_cast<uint16_t>(port_));
      sa4.sin_family = AF_INET;
      sa4.sin_port = htons(static_cast<uint16_t>(port_));
      if (inet_pton(AF_INET, address.c_str(), &sa4.sin_addr) == 1) {
        family_ = AF_INET;
      } else if (inet_pton(AF_INET6, address.c_str(), &sa6.sin6_addr) == 1) {
        family_ = AF_INET6;
      } else {
        ThrowCode(env, "EINVAL", "DNS bind address '" + address.substr(0, 64) + "' is not an IPv4 or IPv6 address");
      }
    }
    // Slots start on cache lines.
    stride_ = (kSlot + 63) & ~static_cast<size_t>(63);

    // Buffers first, so an allocation failure leaks no fd.
    Napi::Buffer<uint8_t> slab = Napi::Buffer<uint8_t>::New(env, stride_ * batch_);
    Napi::Uint32Array meta = Napi::Uint32Array::New(env, kRow * batch_);
    slab_data_ = slab.Data();
    meta_data_ = meta.Data();
    slab_ref_ = Napi::Persistent(slab);
    meta_ref_ = Napi::Persistent(meta);
    rmsgs_.resize(batch_);
    riov_.resize(batch_);
    raddr_.resize(batch_);
    for (size_t i = 0; i < batch_; i++) {
      riov_[i].iov_base = slab_data_ + i * stride_;
      riov_[i].iov_len = kSlot;
      memset(&rmsgs_[i], 0, sizeof rmsgs_[i]);
      rmsgs_[i].msg_hdr.msg_iov = &riov_[i];
      rmsgs_[i].msg_hdr.msg_iovlen = 1;
      rmsgs_[i].msg_hdr.msg_name = &raddr_[i];
    }
    smsgs_.resize(kSendChunk);
    siov_.resize(kSendChunk);
    saddr_.resize(kSendChunk);

    if (adopt >= 0) {
      AdoptFd(env, adopt);
      napi_add_env_cleanup_hook(env, CleanupHook, this);
      hook_added_ = true;
      return;
    }
    fd_ = socket(family_, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd_ < 0) {
      int err = errno;
      ThrowCode(env, ErrnoName(err), std::string("cannot create a UDP socket: ") + strerror(err));
    }
    if (family_ == AF_INET6) {
      int one = 1;
      (void)setsockopt(fd_, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    }
    if (buffer > 0) {
      rcvbuf_ = SetBuffer(fd_, SO_RCVBUFFORCE, SO_RCVBUF, buffer);
      sndbuf_ = SetBuffer(fd_, SO_SNDBUFFORCE, SO_SNDBUF, buffer);
    }
    const struct sockaddr* bsa = family_ == AF_INET ? reinterpret_cast<struct sockaddr*>(&sa4) : reinterpret_cast<struct sockaddr*>(&sa6);
    socklen_t bl = family_ == AF_INET ? sizeof sa4 : sizeof sa6;
    if (bind(fd_, bsa, bl) < 0) {
      int err = errno;
      CloseNative();
      std::string where = address + ":" + std::to_string(port_);
      switch (err) {
        case EADDRINUSE:
          ThrowCode(env, "EADDRINUSE", "udp " + where + " is already in use");
        case EACCES:
          ThrowCode(env, "EACCES", "binding udp " + where + " needs root (CAP_NET_BIND_SERVICE)");
        case EADDRNOTAVAIL:
          ThrowCode(env, "EADDRNOTAVAIL", "cannot bind udp " + where + ": not an address of this host");
        default:
          ThrowCode(env, ErrnoName(err), "cannot bind udp " + where + ": " + strerror(err));
      }
    }
    struct sockaddr_in6 bound;  // sin_port and sin6_port share their offset
    socklen_t gl = sizeof bound;
    if (getsockname(fd_, reinterpret_cast<struct sockaddr*>(&bound), &gl) == 0) port_ = ntohs(bound.sin6_port);
    napi_add_env_cleanup_hook(env, CleanupHook, this);
    hook_added_ = true;
  }

  // Take a dup of `fd` after checking that it is a bound IPv4/IPv6 datagram
  // socket; family and port come from getsockname(2). Throws with a code.
  void AdoptFd(Napi::Env env, int fd) {
    int type = 0;
    socklen_t tl = sizeof type;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) < 0) {
      int err = errno;
      ThrowCode(env, ErrnoName(err), std::string("cannot adopt fd ") + std::to_string(fd) + ": " + strerror(err));
    }
    if (type != SOCK_DGRAM) ThrowCode(env, "EINVAL", "cannot adopt fd " + std::to_string(fd) + ": not a datagram socket");
    struct sockaddr_in6 bound;
    memset(&bound, 0, sizeof bound);
    socklen_t gl = sizeof bound;
    if (getsockname(fd, reinterpret_cast<struct sockaddr*>(&bound), &gl) < 0 || (bound.sin6_family != AF_INET && bound.sin6_family != AF_INET6)) {
      ThrowCode(env, "EINVAL", "cannot adopt fd " + std::to_string(fd) + ": not an IPv4 or IPv6 socket");
    }
    family_ = bound.sin6_family;
    port_ = ntohs(bound.sin6_port);  // sin_port and sin6_port share their offset
    if (port_ == 0) ThrowCode(env, "EINVAL", "cannot adopt fd " + std::to_string(fd) + ": the socket is not bound");
    fd_ = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    if (fd_ < 0) {
      int err = errno;
      ThrowCode(env, ErrnoName(err), std::string("cannot dup fd ") + std::to_string(fd) + ": " + strerror(err));
    }
    int fl = fcntl(fd_, F_GETFL);
    if (fl < 0 || !(fl & O_NONBLOCK)) {
      // One open file description: O_NONBLOCK is shared, and the owner set it.
      close(fd_);
      fd_ = -1;
      ThrowCode(env, "EINVAL", "cannot adopt fd " + std::to_string(fd) + ": the socket is blocking");
    }
  }

  ~DnsUdpSocket() override {
    CloseNative();
    if (hook_added_) napi_remove_env_cleanup_hook(env_, CleanupHook, this);
  }

 private:
  Napi::Value GetLocalPort(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), port_); }
  Napi::Value GetSlotStride(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), static_cast<double>(stride_)); }
  Napi::Value GetRowStride(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), static_cast<double>(kRow)); }
  Napi::Value GetFd(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), fd_); }

  // pause(): stop reading (the socket stays open and still sends). Idempotent.
  Napi::Value Pause(const Napi::CallbackInfo& info) {
    if (poll_ != nullptr && !paused_) uv_poll_stop(poll_);
    paused_ = true;
    return info.Env().Undefined();
  }

  // resume(): read again after pause(). Throws if the socket is closed or not started.
  Napi::Value Resume(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (closed_) ThrowCode(env, "ECLOSED", "DNS UDP socket is closed");
    if (poll_ == nullptr) ThrowCode(env, "EINVAL", "DNS UDP socket is not started");
    if (paused_) {
      int rc = uv_poll_start(poll_, UV_READABLE, OnPoll);
      if (rc < 0) ThrowCode(env, uv_err_name(rc), std::string("polling the DNS UDP socket failed: ") + uv_strerror(rc));
      paused_ = false;
    }
    return env.Undefined();
  }

  // start(onBatch, onError): begin polling; onBatch(slab, meta, count) per wake-up.
  Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (closed_) ThrowCode(env, "ECLOSED", "DNS UDP socket is closed");
    if (started_) ThrowCode(env, "EALREADY", "DNS UDP socket is already started");
    if (!info[0].IsFunction()) ThrowType(env, "onBatch must be a function");
    if (!info[1].IsUndefined() && !info[1].IsFunction()) ThrowType(env, "onError must be a function");
    uv_loop_t* loop = nullptr;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr) ThrowCode(env, "EINVAL", "no libuv event loop");
    std::unique_ptr<uv_poll_t> poll(new uv_poll_t);
    int rc = uv_poll_init_socket(loop, poll.get(), fd_);
    if (rc < 0) ThrowCode(env, uv_err_name(rc), std::string("polling the DNS UDP socket failed: ") + uv_strerror(rc));
    poll->data = this;
    rc = paused_ ? 0 : uv_poll_start(poll.get(), UV_READABLE, OnPoll);
    if (rc < 0) {
      uv_close(reinterpret_cast<uv_handle_t*>(poll.release()), FreePoll);
      ThrowCode(env, uv_err_name(rc), std::string("polling the DNS UDP socket failed: ") + uv_strerror(rc));
    }
    poll_ = poll.release();
    if (!refed_) uv_unref(reinterpret_cast<uv_handle_t*>(poll_));
    on_batch_ = Napi::Persistent(info[0].As<Napi::Function>());
    if (info[1].IsFunction()) on_error_ = Napi::Persistent(info[1].As<Napi::Function>());
    async_ctx_.reset(new Napi::AsyncContext(env, "DnsUdpRecv", Value()));
    Ref();
    strong_ = true;
    started_ = true;
    return env.Undefined();
  }

  static void FreePoll(uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); }

  static void OnPoll(uv_poll_t* h, int status, int events) {
    DnsUdpSocket* self = static_cast<DnsUdpSocket*>(h->data);
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
    } catch (const Napi::Error& e) {
      napi_fatal_exception(env, e.Value());
    }
  }

  // One recvmmsg() of up to `batch` queries, one JS call. Returns true if an
  // error was reported (receive error, or an exception from onBatch).
  bool Drain(Napi::Env env, Napi::Object keep) {
    for (size_t i = 0; i < batch_; i++) {
      rmsgs_[i].msg_hdr.msg_namelen = sizeof(struct sockaddr_in6);
      rmsgs_[i].msg_hdr.msg_flags = 0;
    }
    int r;
    do {
      r = recvmmsg(fd_, rmsgs_.data(), static_cast<unsigned>(batch_), MSG_DONTWAIT, nullptr);
    } while (r < 0 && errno == EINTR);
    if (r < 0) {
      int err = errno;
      if (err == EAGAIN || err == EWOULDBLOCK) return false;
      if (err == ECONNREFUSED || err == EHOSTUNREACH || err == ENETUNREACH || err == EMSGSIZE) {
        recv_errors_++;
        return false;
      }
      Fail(env, keep, err);
      return true;
    }
    size_t n = 0;
    for (int i = 0; i < r; i++) {
      const struct msghdr& mh = rmsgs_[i].msg_hdr;
      if ((mh.msg_flags & MSG_TRUNC) || rmsgs_[i].msg_len >= kSlot) {
        recv_truncated_++;
        continue;
      }
      uint32_t* m = meta_data_ + kRow * n;
      m[0] = static_cast<uint32_t>(i * stride_);
      m[1] = static_cast<uint32_t>(rmsgs_[i].msg_len);
      const struct sockaddr_in6& from = raddr_[i];
      if (from.sin6_family == AF_INET) {
        struct sockaddr_in v4;
        memcpy(&v4, &from, sizeof v4);
        m[2] = 4;
        m[3] = ntohs(v4.sin_port);
        m[4] = ntohl(v4.sin_addr.s_addr);
        m[5] = m[6] = m[7] = 0;
      } else {
        m[2] = 6;
        m[3] = ntohs(from.sin6_port);
        for (int w = 0; w < 4; w++) {
          uint32_t v;
          memcpy(&v, from.sin6_addr.s6_addr + 4 * w, 4);
          m[4 + w] = ntohl(v);
        }
      }
      n++;
    }
    if (n == 0) return false;
    recv_datagrams_ += n;
    recv_batches_++;
    napi_value args[3] = {slab_ref_.Value(), meta_ref_.Value(), Napi::Number::New(env, static_cast<double>(n))};
    try {
      on_batch_.MakeCallback(keep, 3, args, *async_ctx_);
    } catch (const Napi::Error& e) {
      napi_fatal_exception(env, e.Value());
      return true;
    }
    return false;
  }

  void Fail(Napi::Env env, Napi::Object keep, int err) {
    recv_errors_++;
    if (poll_ != nullptr) uv_poll_stop(poll_);
    std::string code = ErrnoName(err);
    std::string msg = "DNS UDP port " + std::to_string(port_) + ": receive failed: " + strerror(err) + "; receiving stopped";
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

  // The destination of a table row; false if the row's family does not match the socket.
  bool FillDest(const uint32_t* row, struct sockaddr_in6* out, socklen_t* len) const {
    memset(out, 0, sizeof *out);
    const uint16_t port = htons(static_cast<uint16_t>(row[3] & 0xffff));
    if (family_ == AF_INET) {
      if (row[2] != 4) return false;
      struct sockaddr_in v4;
      memset(&v4, 0, sizeof v4);
      v4.sin_family = AF_INET;
      v4.sin_port = port;
      v4.sin_addr.s_addr = htonl(row[4]);
      memcpy(out, &v4, sizeof v4);
      *len = sizeof v4;
      return true;
    }
    if (row[2] != 6) return false;
    out->sin6_family = AF_INET6;
    out->sin6_port = port;
    for (int w = 0; w < 4; w++) {
      uint32_t v = htonl(row[4 + w]);
      memcpy(out->sin6_addr.s6_addr + 4 * w, &v, 4);
    }
    *len = sizeof *out;
    return true;
  }

  // sendBatch(slab, table, count) -> answers the kernel took. Row i of `table`:
  // [offset, length, family, port, a0, a1, a2, a3], slab[offset, offset+length)
  // sent to that address. Bad rows (out of the slab, length 0 or > 65507) are a
  // RangeError before anything is sent.
  Napi::Value SendBatch(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info[0].IsTypedArray() && !info[0].IsBuffer()) ThrowType(env, "slab must be a Buffer or Uint8Array");
    Napi::TypedArray st = info[0].As<Napi::TypedArray>();
    if (st.TypedArrayType() != napi_uint8_array) ThrowType(env, "slab must be a Buffer or Uint8Array");
    Napi::Uint8Array slab = info[0].As<Napi::Uint8Array>();
    if (!info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array) ThrowType(env, "table must be a Uint32Array");
    Napi::Uint32Array table = info[1].As<Napi::Uint32Array>();
    const size_t rows = table.ElementLength() / kRow;
    const size_t count = static_cast<size_t>(IntArg(env, info[2], "count", 0, static_cast<double>(rows), 0));
    const uint8_t* data = slab.Data();
    const size_t slen = slab.ElementLength();
    const uint32_t* t = table.Data();
    for (size_t i = 0; i < count; i++) {
      const uint32_t* row = t + kRow * i;
      if (row[1] == 0 || row[1] > 65507 || row[0] > slen || row[1] > slen - row[0]) ThrowRange(env, "table row " + std::to_string(i) + " is outside the slab");
    }
    if (closed_ || fd_ < 0) {
      send_errors_ += count;
      return Napi::Number::New(env, 0);
    }
    size_t sent = 0;
    size_t i = 0;
    while (i < count) {
      size_t nm = 0;
      for (; i < count && nm < kSendChunk; i++) {
        const uint32_t* row = t + kRow * i;
        socklen_t al = 0;
        if (!FillDest(row, &saddr_[nm], &al)) {
          send_errors_++;
          continue;
        }
        siov_[nm].iov_base = const_cast<uint8_t*>(data + row[0]);
        siov_[nm].iov_len = row[1];
        memset(&smsgs_[nm], 0, sizeof smsgs_[nm]);
        smsgs_[nm].msg_hdr.msg_iov = &siov_[nm];
        smsgs_[nm].msg_hdr.msg_iovlen = 1;
        smsgs_[nm].msg_hdr.msg_name = &saddr_[nm];
        smsgs_[nm].msg_hdr.msg_namelen = al;
        nm++;
      }
      size_t k = 0;
      while (k < nm) {
        send_calls_++;
        int r = sendmmsg(fd_, smsgs_.data() + k, static_cast<unsigned>(nm - k), MSG_DONTWAIT);
        if (r > 0) {
          k += static_cast<size_t>(r);
          sent += static_cast<size_t>(r);
          continue;
        }
        int err = errno;
        if (r < 0 && err == EINTR) continue;
        if (r < 0 && (err == EAGAIN || err == EWOULDBLOCK || err == ENOBUFS)) {
          // The socket buffer is full: drop the rest of this batch (UDP may).
          send_drops_full_ += (nm - k) + (count - i);
          send_datagrams_ += sent;
          return Napi::Number::New(env, static_cast<double>(sent));
        }
        // The message at k failed for itself (no route, firewall...): skip it.
        send_errors_++;
        k++;
      }
    }
    send_datagrams_ += sent;
    return Napi::Number::New(env, static_cast<double>(sent));
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
    o.Set("sendErrors", static_cast<double>(send_errors_));
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
    DnsUdpSocket* self = static_cast<DnsUdpSocket*>(arg);
    self->hook_added_ = false;
    self->CloseNative();
  }

  napi_env env_;
  int fd_ = -1;
  int family_ = AF_INET;
  int port_ = 0;
  size_t batch_ = 0;
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
  std::vector<struct mmsghdr> smsgs_;
  std::vector<struct iovec> siov_;
  std::vector<struct sockaddr_in6> saddr_;
  Napi::FunctionReference on_batch_;
  Napi::FunctionReference on_error_;
  std::unique_ptr<Napi::AsyncContext> async_ctx_;
  uv_poll_t* poll_ = nullptr;
  bool started_ = false;
  bool paused_ = false;
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
  uint64_t send_errors_ = 0;
};

// threadCpuNs() -> CPU time of the calling thread, ns (clock_gettime(2)
// CLOCK_THREAD_CPUTIME_ID), as a double (exact below 2^53 ns, 104 days).
Napi::Value ThreadCpuNs(const Napi::CallbackInfo& info) {
  struct timespec ts;
  if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0) return Napi::Number::New(info.Env(), -1);
  return Napi::Number::New(info.Env(), static_cast<double>(ts.tv_sec) * 1e9 + static_cast<double>(ts.tv_nsec));
}

// setThreadRealtime(priority) -> '' or an errno name. Changes the scheduling class of
// the CALLING thread only (sched_setscheduler(2) with pid 0 names the caller's thread on
// Linux): priority 1..99 -> SCHED_FIFO at that priority, 0 -> SCHED_OTHER (the
// thread's nice value is kept). SCHED_RESET_ON_FORK: a process this thread might fork
// never inherits the real-time class. Fails with EPERM without CAP_SYS_NICE (or an
// RLIMIT_RTPRIO that allows it), and in a cgroup with no real-time runtime.
// Throws ERR_OUT_OF_RANGE for a priority that is not an integer 0..99.
Napi::Value SetThreadRealtime(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || info[0].IsUndefined()) ThrowType(env, "setThreadRealtime: priority must be a number");
  double p = IntArg(env, info[0], "setThreadRealtime: priority", 0, 99, 0);
  struct sched_param sp;
  memset(&sp, 0, sizeof sp);
  sp.sched_priority = static_cast<int>(p);
  int policy = (sp.sched_priority > 0 ? SCHED_FIFO : SCHED_OTHER) | SCHED_RESET_ON_FORK;
  if (sched_setscheduler(0, policy, &sp) != 0) return Napi::String::New(env, ErrnoName(errno));
  return Napi::String::New(env, "");
}

Napi::Object InitModule(Napi::Env env, Napi::Object exports) {
  exports.Set("DnsUdpSocket", DnsUdpSocket::Init(env));
  exports.Set("threadCpuNs", Napi::Function::New(env, ThreadCpuNs, "threadCpuNs"));
  exports.Set("setThreadRealtime", Napi::Function::New(env, SetThreadRealtime, "setThreadRealtime"));
  exports.Set("rowStride", Napi::Number::New(env, static_cast<double>(kRow)));
  exports.Set("maxQueryBytes", Napi::Number::New(env, static_cast<double>(kSlot - 1)));
  return exports;
}

}  // namespace

NODE_API_MODULE(dnsudp, InitModule)
