// A small rtnetlink (rtnetlink(7)) request builder for the pod start path
// (router/host/netdev-nl.ts): it gives a network namespace its veth on the weave bridge
// with a handful of netlink messages instead of forking `nsenter` + `ip -batch` and
// `ip -batch` (two execs, ~35 ms of a CNI ADD on a quiet machine).
//
//   vethPod({ns, ifname, host, mac, mtu, v4, routes, gw, v6}) -> Promise<void>
//     in the namespace file `ns`: create veth `ifname` (MAC `mac`, MTU) whose peer
//     `host` goes to the router's namespace (down, on no bridge); add the IPv4 CIDRs;
//     with v6: IPv6 on (disable_ipv6=0, accept_ra=0, addrgenmode none); bring `ifname`
//     up; add on-link routes (scope link), the default route via `gw` (onlink), the
//     IPv6 CIDRs (nodad). The same steps, in the same order, as netdev.ts freshVeth's
//     `ip -batch` lines.
//   vethHost({host, bridge, hairpin}) -> Promise<void>
//     in the router's namespace: `host` on `bridge`, hairpin if asked, then up.
//   linkDel({host}) -> Promise<boolean>
//     in the router's namespace: `ip link del dev HOST` (RTM_DELLINK by name); false when
//     there is no such link (ENODEV), true when it was deleted (a veth's peer goes too).
//   routeIn({ns, ifname, routes}) -> Promise<void>
//     in the namespace file `ns`: `ip route replace DST dev IFNAME scope link` for each
//     IPv4 CIDR (weaveDNS's route to its address, dns/reach.ts).
//   fdbDump({dev}) -> Promise<Array<{mac, dst?, port?, self, state?}>>
//     in the router's namespace: the bridge-family neighbour table of device `dev`
//     (RTM_GETNEIGH dump, AF_BRIDGE, kept where ndm_ifindex is dev's index): what
//     `bridge -j fdb show dev DEV` prints, in the shape fastdp-path.ts parseFdbJson
//     returns (the fast datapath's periodic FDB audit, issue #20: no fork every 30 s).
//     At most 65,536 entries; rejects with code E2BIG beyond.
//   linkList() -> Promise<Array<{name, index, mac?}>>
//     in the router's namespace: every link's name, ifindex and (Ethernet links) MAC
//     (RTM_GETLINK dump), what `ip -j link show` gives as ifname/ifindex/address (the
//     fast datapath's set-up read it twice
//     per launch, a fork each: issue #20). At most 65,536 links; E2BIG beyond.
//   routeList4() -> Promise<Array<{dst, dev}>>
//     in the router's namespace: the main table's IPv4 routes through a device
//     (RTM_GETROUTE dump), as `ip -4 route show` prints "DST dev NAME" (IPAM's check of its
//     range against the host's routes at launch, without a fork: issue #20). At most
//     65,536 routes; E2BIG beyond.
//   fdbSet({dev, op, entries: [{mac, dst, port?}]}) -> Promise<void>
//     in the router's namespace: `bridge fdb append MAC dev DEV dst DST [port P]` (op
//     "append": RTM_NEWNEIGH, NLM_F_CREATE|NLM_F_APPEND) or `bridge fdb del …` (op "del":
//     RTM_DELNEIGH; an entry already gone is not an error) for each entry, in order, with
//     what iproute2 sends for those lines (AF_BRIDGE, NTF_SELF, NUD_NOARP|NUD_PERMANENT,
//     NDA_LLADDR, NDA_DST, NDA_PORT in network order): the fast datapath's flooding
//     entries (issue #20: a fork of the ~80 MB router per peer coming up or going down,
//     on every router at every join, was ~15 % of a router's CPU in a join wave).
//     At most 4,096 entries per call.
//
// Each runs on a libuv worker thread. vethPod moves that thread (only that thread: setns
// on CLONE_NEWNET is per task) into the pod's namespace and back before it returns; if
// it cannot move back, the process aborts rather than leave a pool thread that later
// resolves names or opens sockets in a pod's namespace.
//
// Errors reject with an Error whose `code` is the errno name (EEXIST, ENOENT, EINVAL,
// ...) and whose `step` is the step that failed ("create", "addr", "up", ...): the
// caller maps EEXIST/ENODEV on "create" to its idempotent slow path.
#include <napi.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_link.h>
#include <linux/if_addr.h>
#include <linux/neighbour.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <net/if.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

namespace {

// One netlink request under construction (bounded: 4 KiB is far more than any of ours).
struct Req {
  alignas(NLMSG_ALIGNTO) unsigned char buf[4096];
  size_t len = 0;
  bool overflow = false;

  nlmsghdr* hdr() { return reinterpret_cast<nlmsghdr*>(buf); }

  Req(uint16_t type, uint16_t flags) {
    memset(buf, 0, sizeof buf);
    len = NLMSG_HDRLEN;
    hdr()->nlmsg_type = type;
    hdr()->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | flags;
  }
  void* put(const void* data, size_t n) {
    size_t at = NLMSG_ALIGN(len);
    if (at + n > sizeof buf) {
      overflow = true;
      return buf;
    }
    if (data) memcpy(buf + at, data, n);
    len = at + n;
    return buf + at;
  }
  rtattr* attr(uint16_t type, const void* data, size_t n) {
    size_t at = NLMSG_ALIGN(len);
    if (at + RTA_LENGTH(n) > sizeof buf) {
      overflow = true;
      return reinterpret_cast<rtattr*>(buf);
    }
    rtattr* a = reinterpret_cast<rtattr*>(buf + at);
    a->rta_type = type;
    a->rta_len = RTA_LENGTH(n);
    if (n) memcpy(RTA_DATA(a), data, n);
    len = at + RTA_ALIGN(a->rta_len);
    return a;
  }
  rtattr* nest(uint16_t type) { return attr(type | NLA_F_NESTED, nullptr, 0); }
  void end(rtattr* a) {
    if (!overflow) a->rta_len = static_cast<unsigned short>(buf + len - reinterpret_cast<unsigned char*>(a));
  }
  void u32(uint16_t type, uint32_t v) { attr(type, &v, sizeof v); }
  void u8(uint16_t type, uint8_t v) { attr(type, &v, sizeof v); }
  void str(uint16_t type, const std::string& s) { attr(type, s.c_str(), s.size() + 1); }
};

// A netlink route socket; send one request and wait for its ACK. Returns 0 or an errno.
struct Nl {
  int fd = -1;
  uint32_t seq = 1;
  ~Nl() {
    if (fd >= 0) close(fd);
  }
  int open() {
    fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (fd < 0) return errno;
    sockaddr_nl sa{};
    sa.nl_family = AF_NETLINK;
    if (bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) < 0) return errno;
    // A reply never waits forever (rtnl is a global lock; a wedged kernel must not wedge the pool).
    timeval tv{10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return 0;
  }
  int talk(Req& r) {
    if (r.overflow) return EMSGSIZE;
    r.hdr()->nlmsg_len = static_cast<uint32_t>(r.len);
    r.hdr()->nlmsg_seq = ++seq;
    sockaddr_nl to{};
    to.nl_family = AF_NETLINK;
    if (sendto(fd, r.buf, r.len, 0, reinterpret_cast<sockaddr*>(&to), sizeof to) < 0) return errno;
    alignas(NLMSG_ALIGNTO) unsigned char in[8192];
    for (;;) {
      ssize_t n = recv(fd, in, sizeof in, 0);
      if (n < 0) {
        if (errno == EINTR) continue;
        return errno == EAGAIN ? ETIMEDOUT : errno;
      }
      int left = static_cast<int>(n);
      for (nlmsghdr* h = reinterpret_cast<nlmsghdr*>(in); NLMSG_OK(h, left); h = NLMSG_NEXT(h, left)) {
        if (h->nlmsg_seq != seq) continue;
        if (h->nlmsg_type == NLMSG_ERROR) {
          if (h->nlmsg_len < NLMSG_LENGTH(sizeof(nlmsgerr))) return EPROTO;
          const nlmsgerr* e = static_cast<const nlmsgerr*>(NLMSG_DATA(h));
          return -e->error;
        }
      }
    }
  }
};

// "a.b.c.d/len" or "x::y/len" -> family, bytes, prefix length. False when malformed.
bool ParseCidr(const std::string& s, int family, unsigned char out[16], int* len) {
  size_t slash = s.find('/');
  if (slash == std::string::npos || slash > 45) return false;
  std::string a = s.substr(0, slash), l = s.substr(slash + 1);
  if (l.empty() || l.size() > 3 || l.find_first_not_of("0123456789") != std::string::npos) return false;
  *len = atoi(l.c_str());
  if (*len > (family == AF_INET ? 32 : 128)) return false;
  return inet_pton(family, a.c_str(), out) == 1;
}

bool ValidName(const std::string& s) {
  if (s.empty() || s.size() >= IFNAMSIZ) return false;
  for (char c : s)
    if (!(isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-')) return false;
  return true;
}

struct Cidr {
  unsigned char addr[16];
  int len;
};

// Add (replace) an address: `ip addr replace CIDR dev IF [nodad]`.
int AddAddr(Nl& nl, int family, int index, const Cidr& c, bool nodad) {
  Req r(RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE);
  ifaddrmsg* m = static_cast<ifaddrmsg*>(r.put(nullptr, sizeof(ifaddrmsg)));
  m->ifa_family = static_cast<unsigned char>(family);
  m->ifa_prefixlen = static_cast<unsigned char>(c.len);
  m->ifa_flags = nodad ? IFA_F_NODAD : 0;
  // Scope as ip(8) picks it: link for fe80::/10, host for loopback, else global.
  m->ifa_scope = (family == AF_INET6 && c.addr[0] == 0xfe && (c.addr[1] & 0xc0) == 0x80) ? RT_SCOPE_LINK : RT_SCOPE_UNIVERSE;
  m->ifa_index = static_cast<uint32_t>(index);
  size_t n = family == AF_INET ? 4 : 16;
  r.attr(IFA_LOCAL, c.addr, n);
  r.attr(IFA_ADDRESS, c.addr, n);
  if (nodad) r.u32(IFA_FLAGS, IFA_F_NODAD);
  return nl.talk(r);
}

// RTM_NEWLINK on an existing link: flags (mask `change`), and optionally its master.
int SetLink(Nl& nl, int index, unsigned flags, unsigned change, int master = 0) {
  Req r(RTM_NEWLINK, 0);
  ifinfomsg* m = static_cast<ifinfomsg*>(r.put(nullptr, sizeof(ifinfomsg)));
  m->ifi_family = AF_UNSPEC;
  m->ifi_index = index;
  m->ifi_flags = flags;
  m->ifi_change = change;
  if (master) r.u32(IFLA_MASTER, static_cast<uint32_t>(master));
  return nl.talk(r);
}

// ip route replace DST dev IF scope link (IPv4, main table).
int LinkRoute(Nl& nl, int index, const Cidr& c) {
  Req r(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE);
  rtmsg* m = static_cast<rtmsg*>(r.put(nullptr, sizeof(rtmsg)));
  m->rtm_family = AF_INET;
  m->rtm_dst_len = static_cast<unsigned char>(c.len);
  m->rtm_table = RT_TABLE_MAIN;
  m->rtm_protocol = RTPROT_BOOT;
  m->rtm_scope = RT_SCOPE_LINK;
  m->rtm_type = RTN_UNICAST;
  r.attr(RTA_DST, c.addr, 4);
  r.u32(RTA_OIF, static_cast<uint32_t>(index));
  return nl.talk(r);
}

int WriteProc(const std::string& path, const char* v) {
  int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  ssize_t n = write(fd, v, strlen(v));
  int err = n < 0 ? errno : 0;
  close(fd);
  return err;
}

const char* ErrName(int e) {
  switch (e) {
    case EEXIST: return "EEXIST";
    case ENOENT: return "ENOENT";
    case ENODEV: return "ENODEV";
    case EINVAL: return "EINVAL";
    case EPERM: return "EPERM";
    case EACCES: return "EACCES";
    case EBUSY: return "EBUSY";
    case ENOMEM: return "ENOMEM";
    case ENOBUFS: return "ENOBUFS";
    case ETIMEDOUT: return "ETIMEDOUT";
    case EMSGSIZE: return "EMSGSIZE";
    case ENETUNREACH: return "ENETUNREACH";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    case EADDRNOTAVAIL: return "EADDRNOTAVAIL";
    default: return "EIO";
  }
}

struct PodArgs {
  std::string ns, ifname, host;
  unsigned char mac[6];
  uint32_t mtu = 0;
  std::vector<Cidr> v4, routes, v6;
  bool hasGw = false;
  unsigned char gw[4];
};

class Worker : public Napi::AsyncWorker {
 public:
  Worker(Napi::Env env) : Napi::AsyncWorker(env), deferred(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise::Deferred deferred;
  int err = 0;
  std::string step;

  void OnOK() override {
    if (!err) {
      deferred.Resolve(Env().Undefined());
      return;
    }
    Napi::Error e = Napi::Error::New(Env(), "netlink " + step + ": " + strerror(err));
    e.Set("code", Napi::String::New(Env(), ErrName(err)));
    e.Set("step", Napi::String::New(Env(), step));
    deferred.Reject(e.Value());
  }
  void OnError(const Napi::Error& e) override { deferred.Reject(e.Value()); }
  void Execute() override {}
 protected:
  // Resolves with an array of objects, `fill(object, item)` setting each one's fields (the dumps).
  template <typename T, typename F>
  void ResolveArray(const std::vector<T>& items, F fill) {
    Napi::Env env = Env();
    Napi::Array a = Napi::Array::New(env, items.size());
    for (size_t i = 0; i < items.size(); i++) {
      Napi::Object o = Napi::Object::New(env);
      fill(o, items[i]);
      a.Set(static_cast<uint32_t>(i), o);
    }
    deferred.Resolve(a);
  }
  int fail(const char* s, int e) {
    step = s;
    err = e;
    return e;
  }
};

// A worker whose work runs inside the network namespace file `ns` (this pool thread only).
class NsWorker : public Worker {
 public:
  NsWorker(Napi::Env env, std::string ns) : Worker(env), ns(std::move(ns)) {}
  std::string ns;

  void Execute() override {
    int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (self < 0) {
      fail("open own namespace", errno);
      return;
    }
    int target = open(ns.c_str(), O_RDONLY | O_CLOEXEC);
    if (target < 0) {
      fail("open namespace", errno);
      close(self);
      return;
    }
    if (setns(target, CLONE_NEWNET) < 0) {
      fail("enter namespace", errno);
    } else {
      InNamespace(self);
      if (setns(self, CLONE_NEWNET) < 0) abort();  // see the header: never leave a pool thread there
    }
    close(target);
    close(self);
  }

 protected:
  // `self` is an fd of the router's namespace (for moving a veth peer there).
  virtual int InNamespace(int self) = 0;
};

class PodWorker : public NsWorker {
 public:
  PodWorker(Napi::Env env, PodArgs a) : NsWorker(env, a.ns), a(std::move(a)) {}
  PodArgs a;

 protected:
  int InNamespace(int self) override {
    Nl nl;
    if (int e = nl.open()) return fail("socket", e);
    {
      // ip link add name IF address MAC mtu M type veth peer name HOST mtu M netns <router>
      Req r(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
      ifinfomsg* m = static_cast<ifinfomsg*>(r.put(nullptr, sizeof(ifinfomsg)));
      m->ifi_family = AF_UNSPEC;
      r.str(IFLA_IFNAME, a.ifname);
      r.attr(IFLA_ADDRESS, a.mac, 6);
      r.u32(IFLA_MTU, a.mtu);
      rtattr* info = r.nest(IFLA_LINKINFO);
      r.str(IFLA_INFO_KIND, "veth");
      rtattr* data = r.nest(IFLA_INFO_DATA);
      rtattr* peer = r.nest(VETH_INFO_PEER);
      ifinfomsg* pm = static_cast<ifinfomsg*>(r.put(nullptr, sizeof(ifinfomsg)));
      pm->ifi_family = AF_UNSPEC;
      r.str(IFLA_IFNAME, a.host);
      r.u32(IFLA_MTU, a.mtu);
      r.u32(IFLA_NET_NS_FD, static_cast<uint32_t>(self));
      r.end(peer);
      r.end(data);
      r.end(info);
      if (int e = nl.talk(r)) return fail("create", e);
    }
    int index = static_cast<int>(if_nametoindex(a.ifname.c_str()));
    if (!index) return fail("find the new interface", errno ? errno : ENODEV);
    for (const Cidr& c : a.v4)
      if (int e = AddAddr(nl, AF_INET, index, c, false)) return fail("addr", e);
    if (!a.v6.empty()) {
      // [IPv6] on for the interface, no RAs, and no kernel-made link-local: in before it
      // first comes up (netdev.ts ipv6Sysctls + addrgenmode none).
      std::string base = "/proc/sys/net/ipv6/conf/" + a.ifname + "/";
      if (int e = WriteProc(base + "disable_ipv6", "0")) return fail("ipv6 sysctl", e);
      if (int e = WriteProc(base + "accept_ra", "0")) return fail("ipv6 sysctl", e);
      Req r(RTM_NEWLINK, 0);
      ifinfomsg* m = static_cast<ifinfomsg*>(r.put(nullptr, sizeof(ifinfomsg)));
      m->ifi_family = AF_UNSPEC;
      m->ifi_index = index;
      rtattr* spec = r.nest(IFLA_AF_SPEC);
      rtattr* in6 = r.nest(AF_INET6);
      r.u8(IFLA_INET6_ADDR_GEN_MODE, IN6_ADDR_GEN_MODE_NONE);
      r.end(in6);
      r.end(spec);
      if (int e = nl.talk(r)) return fail("addrgenmode", e);
    }
    if (int e = SetLink(nl, index, IFF_UP, IFF_UP)) return fail("up", e);
    for (const Cidr& c : a.routes)
      if (int e = LinkRoute(nl, index, c)) return fail("route", e);
    if (a.hasGw) {
      // ip route replace default via GW dev IF onlink
      Req r(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE);
      rtmsg* m = static_cast<rtmsg*>(r.put(nullptr, sizeof(rtmsg)));
      m->rtm_family = AF_INET;
      m->rtm_table = RT_TABLE_MAIN;
      m->rtm_protocol = RTPROT_BOOT;
      m->rtm_scope = RT_SCOPE_UNIVERSE;
      m->rtm_type = RTN_UNICAST;
      m->rtm_flags = RTNH_F_ONLINK;
      r.attr(RTA_GATEWAY, a.gw, 4);
      r.u32(RTA_OIF, static_cast<uint32_t>(index));
      if (int e = nl.talk(r)) return fail("default route", e);
    }
    for (const Cidr& c : a.v6)
      if (int e = AddAddr(nl, AF_INET6, index, c, true)) return fail("ipv6 addr", e);
    return 0;
  }
};

class HostWorker : public Worker {
 public:
  HostWorker(Napi::Env env, std::string host, std::string bridge, bool hairpin)
      : Worker(env), host(std::move(host)), bridge(std::move(bridge)), hairpin(hairpin) {}
  std::string host, bridge;
  bool hairpin;

  void Execute() override {
    Nl nl;
    if (int e = nl.open()) return void(fail("socket", e));
    int index = static_cast<int>(if_nametoindex(host.c_str()));
    if (!index) return void(fail("find the host end", errno ? errno : ENODEV));
    int master = static_cast<int>(if_nametoindex(bridge.c_str()));
    if (!master) return void(fail("find the bridge", errno ? errno : ENODEV));
    // ip link set dev HOST master BRIDGE
    if (int e = SetLink(nl, index, 0, 0, master)) return void(fail("master", e));
    if (hairpin) {
      // ip link set dev HOST type bridge_slave hairpin on
      Req r(RTM_NEWLINK, 0);
      ifinfomsg* m = static_cast<ifinfomsg*>(r.put(nullptr, sizeof(ifinfomsg)));
      m->ifi_family = AF_UNSPEC;
      m->ifi_index = index;
      rtattr* info = r.nest(IFLA_LINKINFO);
      r.str(IFLA_INFO_SLAVE_KIND, "bridge");
      rtattr* data = r.nest(IFLA_INFO_SLAVE_DATA);
      r.u8(IFLA_BRPORT_MODE, 1);
      r.end(data);
      r.end(info);
      if (int e = nl.talk(r)) return void(fail("hairpin", e));
    }
    if (int e = SetLink(nl, index, IFF_UP, IFF_UP)) return void(fail("up", e));
  }
};

class RouteWorker : public NsWorker {
 public:
  RouteWorker(Napi::Env env, std::string ns, std::string ifname, std::vector<Cidr> routes)
      : NsWorker(env, std::move(ns)), ifname(std::move(ifname)), routes(std::move(routes)) {}
  std::string ifname;
  std::vector<Cidr> routes;

 protected:
  int InNamespace(int) override {
    Nl nl;
    if (int e = nl.open()) return fail("socket", e);
    int index = static_cast<int>(if_nametoindex(ifname.c_str()));
    if (!index) return fail("find the interface", errno ? errno : ENODEV);
    for (const Cidr& c : routes)
      if (int e = LinkRoute(nl, index, c)) return fail("route", e);
    return 0;
  }
};

class DelWorker : public Worker {
 public:
  DelWorker(Napi::Env env, std::string host) : Worker(env), host(std::move(host)) {}
  std::string host;
  bool absent = false;

  void Execute() override {
    Nl nl;
    if (int e = nl.open()) return void(fail("socket", e));
    // ip link del dev HOST
    Req r(RTM_DELLINK, 0);
    ifinfomsg* m = static_cast<ifinfomsg*>(r.put(nullptr, sizeof(ifinfomsg)));
    m->ifi_family = AF_UNSPEC;
    r.str(IFLA_IFNAME, host);
    int e = nl.talk(r);
    if (e == ENODEV) absent = true;
    else if (e) fail("delete", e);
  }
  void OnOK() override {
    if (!err) return void(deferred.Resolve(Napi::Boolean::New(Env(), !absent)));
    Worker::OnOK();
  }
};

// One bridge FDB entry as parseFdbJson (router/overlay/fastdp-path.ts) gives it.
// Sends dump request `r` on `nl` and calls `each` for every message of the reply until
// NLMSG_DONE. Returns 0 or an errno (ETIMEDOUT after the socket's 10 s, EPROTO for a
// truncated reply, or what `each` returns when it stops the dump).
template <typename F>
int Dump(Nl& nl, Req& r, F each) {
  r.hdr()->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  r.hdr()->nlmsg_len = static_cast<uint32_t>(r.len);
  r.hdr()->nlmsg_seq = ++nl.seq;
  sockaddr_nl to{};
  to.nl_family = AF_NETLINK;
  if (sendto(nl.fd, r.buf, r.len, 0, reinterpret_cast<sockaddr*>(&to), sizeof to) < 0) return errno;
  alignas(NLMSG_ALIGNTO) static thread_local unsigned char in[65536];
  for (;;) {
    ssize_t n = recv(nl.fd, in, sizeof in, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno == EAGAIN ? ETIMEDOUT : errno;
    }
    if (n == 0) return EPROTO;
    int left = static_cast<int>(n);
    for (nlmsghdr* h = reinterpret_cast<nlmsghdr*>(in); NLMSG_OK(h, left); h = NLMSG_NEXT(h, left)) {
      if (h->nlmsg_seq != nl.seq) continue;
      if (h->nlmsg_type == NLMSG_DONE) return 0;
      if (h->nlmsg_type == NLMSG_ERROR) {
        if (h->nlmsg_len < NLMSG_LENGTH(sizeof(nlmsgerr))) return EPROTO;
        int e = -static_cast<const nlmsgerr*>(NLMSG_DATA(h))->error;
        if (e) return e;
        continue;
      }
      if (int e = each(h)) return e;
    }
  }
}

struct FdbEntry {
  std::string mac, dst, state;
  int port = -1;
  bool self = false;
};

class FdbWorker : public Worker {
 public:
  FdbWorker(Napi::Env env, std::string dev) : Worker(env), dev(std::move(dev)) {}
  std::string dev;
  std::vector<FdbEntry> out;
  static constexpr size_t kMaxEntries = 65536;

  void Execute() override {
    unsigned index = if_nametoindex(dev.c_str());
    if (!index) return void(fail("find the device", errno ? errno : ENODEV));
    Nl nl;
    if (int e = nl.open()) return void(fail("socket", e));
    Req r(RTM_GETNEIGH, NLM_F_DUMP);
    ndmsg* m = static_cast<ndmsg*>(r.put(nullptr, sizeof(ndmsg)));
    m->ndm_family = AF_BRIDGE;
    if (int e = Dump(nl, r, [&](nlmsghdr* h) { return Entry(h, index); })) fail(out.size() >= kMaxEntries ? "dump (over 65536 entries)" : "dump", e);
  }

  // One RTM_NEWNEIGH of the dump: kept if it is dev's. Returns E2BIG past kMaxEntries.
  int Entry(nlmsghdr* h, unsigned index) {
    if (h->nlmsg_type != RTM_NEWNEIGH || h->nlmsg_len < NLMSG_LENGTH(sizeof(ndmsg))) return 0;
    const ndmsg* nd = static_cast<const ndmsg*>(NLMSG_DATA(h));
    if (nd->ndm_family != AF_BRIDGE || static_cast<unsigned>(nd->ndm_ifindex) != index) return 0;
    if (out.size() >= kMaxEntries) return E2BIG;
    FdbEntry e;
    bool master = false;
    int alen = static_cast<int>(h->nlmsg_len - NLMSG_LENGTH(sizeof(ndmsg)));
    for (rtattr* a = reinterpret_cast<rtattr*>(reinterpret_cast<char*>(NLMSG_DATA(h)) + NLMSG_ALIGN(sizeof(ndmsg))); RTA_OK(a, alen); a = RTA_NEXT(a, alen)) {
      const unsigned char* d = static_cast<const unsigned char*>(RTA_DATA(a));
      size_t dl = RTA_PAYLOAD(a);
      char txt[INET6_ADDRSTRLEN];
      switch (a->rta_type) {
        case NDA_LLADDR:
          if (dl == 6) {
            snprintf(txt, sizeof txt, "%02x:%02x:%02x:%02x:%02x:%02x", d[0], d[1], d[2], d[3], d[4], d[5]);
            e.mac = txt;
          }
          break;
        case NDA_DST:
          if ((dl == 4 && inet_ntop(AF_INET, d, txt, sizeof txt)) || (dl == 16 && inet_ntop(AF_INET6, d, txt, sizeof txt))) e.dst = txt;
          break;
        case NDA_PORT:
          if (dl == 2) e.port = (d[0] << 8) | d[1];
          break;
        case NDA_MASTER:
          master = true;
          break;
      }
    }
    if (e.mac.empty()) return 0;
    // As iproute2 names the state, and as parseFdbJson decides "self".
    if (nd->ndm_state & NUD_PERMANENT) e.state = "permanent";
    else if (nd->ndm_state & NUD_NOARP) e.state = "static";
    e.self = (nd->ndm_flags & NTF_SELF) || (!master && !e.dst.empty());
    out.push_back(std::move(e));
    return 0;
  }
  void OnOK() override {
    if (err) return Worker::OnOK();
    ResolveArray(out, [](Napi::Object& o, const FdbEntry& e) {
      o.Set("mac", e.mac);
      if (!e.dst.empty()) o.Set("dst", e.dst);
      if (e.port >= 0) o.Set("port", e.port);
      o.Set("self", e.self);
      if (!e.state.empty()) o.Set("state", e.state);
    });
  }
};

// linkList: every link of the router's namespace (RTM_GETLINK dump): name, ifindex, MAC.
class LinkListWorker : public Worker {
 public:
  explicit LinkListWorker(Napi::Env env) : Worker(env) {}
  struct Link {
    std::string name, mac;
    int index;
  };
  std::vector<Link> out;
  static constexpr size_t kMaxLinks = 65536;

  void Execute() override {
    Nl nl;
    if (int e = nl.open()) return void(fail("socket", e));
    Req r(RTM_GETLINK, NLM_F_DUMP);
    ifinfomsg* m = static_cast<ifinfomsg*>(r.put(nullptr, sizeof(ifinfomsg)));
    m->ifi_family = AF_UNSPEC;
    int e = Dump(nl, r, [&](nlmsghdr* h) {
      if (h->nlmsg_type != RTM_NEWLINK || h->nlmsg_len < NLMSG_LENGTH(sizeof(ifinfomsg))) return 0;
      if (out.size() >= kMaxLinks) return E2BIG;
      const ifinfomsg* ifi = static_cast<const ifinfomsg*>(NLMSG_DATA(h));
      int alen = static_cast<int>(h->nlmsg_len - NLMSG_LENGTH(sizeof(ifinfomsg)));
      Link l{"", "", ifi->ifi_index};
      for (rtattr* a = IFLA_RTA(ifi); RTA_OK(a, alen); a = RTA_NEXT(a, alen)) {
        if (a->rta_type == IFLA_IFNAME) {
          // The kernel's names are NUL-terminated and under IFNAMSIZ; never read past the attribute.
          const char* d = static_cast<const char*>(RTA_DATA(a));
          l.name.assign(d, strnlen(d, std::min<size_t>(RTA_PAYLOAD(a), IFNAMSIZ)));
        } else if (a->rta_type == IFLA_ADDRESS && RTA_PAYLOAD(a) == 6) {
          const unsigned char* d = static_cast<const unsigned char*>(RTA_DATA(a));
          char txt[18];
          snprintf(txt, sizeof txt, "%02x:%02x:%02x:%02x:%02x:%02x", d[0], d[1], d[2], d[3], d[4], d[5]);
          l.mac = txt;
        }
      }
      if (!l.name.empty()) out.push_back(std::move(l));
      return 0;
    });
    if (e) fail(e == E2BIG ? "dump (over 65536 links)" : "dump", e);
  }
  void OnOK() override {
    if (err) return Worker::OnOK();
    ResolveArray(out, [](Napi::Object& o, const Link& l) {
      o.Set("name", l.name);
      o.Set("index", l.index);
      if (!l.mac.empty()) o.Set("mac", l.mac);
    });
  }
};

// routeList4: the main table's IPv4 routes that name a device (RTM_GETROUTE dump), as
// `ip -4 route show` prints "DST dev NAME": destination CIDR and device name.
class RouteListWorker : public Worker {
 public:
  explicit RouteListWorker(Napi::Env env) : Worker(env) {}
  std::vector<std::pair<std::string, std::string>> out;
  static constexpr size_t kMaxRoutes = 65536;

  void Execute() override {
    Nl nl;
    if (int e = nl.open()) return void(fail("socket", e));
    Req r(RTM_GETROUTE, NLM_F_DUMP);
    rtmsg* m = static_cast<rtmsg*>(r.put(nullptr, sizeof(rtmsg)));
    m->rtm_family = AF_INET;
    int e = Dump(nl, r, [&](nlmsghdr* h) {
      if (h->nlmsg_type != RTM_NEWROUTE || h->nlmsg_len < NLMSG_LENGTH(sizeof(rtmsg))) return 0;
      const rtmsg* rt = static_cast<const rtmsg*>(NLMSG_DATA(h));
      if (rt->rtm_family != AF_INET || rt->rtm_dst_len > 32) return 0;
      uint32_t table = rt->rtm_table;
      unsigned char dst[4] = {0, 0, 0, 0};
      int oif = 0;
      int alen = static_cast<int>(h->nlmsg_len - NLMSG_LENGTH(sizeof(rtmsg)));
      for (rtattr* a = RTM_RTA(rt); RTA_OK(a, alen); a = RTA_NEXT(a, alen)) {
        if (a->rta_type == RTA_TABLE && RTA_PAYLOAD(a) == 4) memcpy(&table, RTA_DATA(a), 4);
        else if (a->rta_type == RTA_DST && RTA_PAYLOAD(a) == 4) memcpy(dst, RTA_DATA(a), 4);
        else if (a->rta_type == RTA_OIF && RTA_PAYLOAD(a) == 4) memcpy(&oif, RTA_DATA(a), 4);
      }
      if (table != RT_TABLE_MAIN || oif <= 0) return 0;
      char name[IF_NAMESIZE];
      if (!if_indextoname(static_cast<unsigned>(oif), name)) return 0;
      if (out.size() >= kMaxRoutes) return E2BIG;
      char txt[INET_ADDRSTRLEN + 4];
      snprintf(txt, sizeof txt, "%u.%u.%u.%u/%u", dst[0], dst[1], dst[2], dst[3], rt->rtm_dst_len);
      out.emplace_back(txt, name);
      return 0;
    });
    if (e) fail(e == E2BIG ? "dump (over 65536 routes)" : "dump", e);
  }
  void OnOK() override {
    if (err) return Worker::OnOK();
    ResolveArray(out, [](Napi::Object& o, const std::pair<std::string, std::string>& r) {
      o.Set("dst", r.first);
      o.Set("dev", r.second);
    });
  }
};

struct FdbChange {
  unsigned char mac[6];
  unsigned char dst[16];
  int family;  // AF_INET or AF_INET6
  int port;    // -1: none
};

class FdbSetWorker : public Worker {
 public:
  FdbSetWorker(Napi::Env env, std::string dev, bool del, std::vector<FdbChange> entries)
      : Worker(env), dev(std::move(dev)), del(del), entries(std::move(entries)) {}
  std::string dev;
  bool del;
  std::vector<FdbChange> entries;

  void Execute() override {
    unsigned index = if_nametoindex(dev.c_str());
    if (!index) return void(fail("find the device", errno ? errno : ENODEV));
    Nl nl;
    if (int e = nl.open()) return void(fail("socket", e));
    for (const FdbChange& c : entries) {
      Req r(del ? RTM_DELNEIGH : RTM_NEWNEIGH, del ? 0 : (NLM_F_CREATE | NLM_F_APPEND));
      ndmsg* m = static_cast<ndmsg*>(r.put(nullptr, sizeof(ndmsg)));
      m->ndm_family = AF_BRIDGE;
      m->ndm_ifindex = static_cast<int>(index);
      m->ndm_flags = NTF_SELF;
      m->ndm_state = NUD_NOARP | NUD_PERMANENT;
      r.attr(NDA_LLADDR, c.mac, 6);
      r.attr(NDA_DST, c.dst, c.family == AF_INET ? 4 : 16);
      if (c.port >= 0) {
        uint16_t p = htons(static_cast<uint16_t>(c.port));
        r.attr(NDA_PORT, &p, sizeof p);
      }
      int e = nl.talk(r);
      if (del && e == ENOENT) continue;
      if (e) return void(fail(del ? "fdb del" : "fdb append", e));
    }
  }
};

// Queue a worker (N-API deletes it when done) and hand back its promise.
Napi::Value Start(Worker* w) {
  Napi::Promise p = w->deferred.Promise();
  w->Queue();
  return p;
}

Napi::Error ArgError(Napi::Env env, const std::string& msg) {
  Napi::Error e = Napi::TypeError::New(env, msg);
  e.Set("code", Napi::String::New(env, "EINVAL"));
  return e;
}

std::string Str(Napi::Object o, const char* k, bool name) {
  Napi::Value v = o.Get(k);
  if (!v.IsString()) throw ArgError(o.Env(), std::string("netlink: \"") + k + "\" must be a string");
  std::string s = v.As<Napi::String>().Utf8Value();
  if (name ? !ValidName(s) : (s.empty() || s.size() > 4096 || s[0] != '/' || s.find('\0') != std::string::npos))
    throw ArgError(o.Env(), std::string("netlink: bad \"") + k + "\"");
  return s;
}

std::vector<Cidr> Cidrs(Napi::Object o, const char* k, int family) {
  std::vector<Cidr> out;
  Napi::Value v = o.Get(k);
  if (v.IsUndefined()) return out;
  if (!v.IsArray()) throw ArgError(o.Env(), std::string("netlink: \"") + k + "\" must be an array");
  Napi::Array arr = v.As<Napi::Array>();
  if (arr.Length() > 64) throw ArgError(o.Env(), std::string("netlink: too many \"") + k + "\"");
  for (uint32_t i = 0; i < arr.Length(); i++) {
    Napi::Value x = arr.Get(i);
    Cidr c{};
    if (!x.IsString() || !ParseCidr(x.As<Napi::String>().Utf8Value(), family, c.addr, &c.len))
      throw ArgError(o.Env(), std::string("netlink: bad address in \"") + k + "\"");
    out.push_back(c);
  }
  return out;
}

Napi::Value VethPod(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject()) throw ArgError(env, "netlink: vethPod takes an options object");
  Napi::Object o = info[0].As<Napi::Object>();
  PodArgs a;
  a.ns = Str(o, "ns", false);
  a.ifname = Str(o, "ifname", true);
  a.host = Str(o, "host", true);
  Napi::Value mac = o.Get("mac");
  if (!mac.IsBuffer() || mac.As<Napi::Buffer<unsigned char>>().Length() != 6) throw ArgError(env, "netlink: \"mac\" must be a 6-byte Buffer");
  memcpy(a.mac, mac.As<Napi::Buffer<unsigned char>>().Data(), 6);
  Napi::Value mtu = o.Get("mtu");
  if (!mtu.IsNumber()) throw ArgError(env, "netlink: \"mtu\" must be a number");
  int64_t m = mtu.As<Napi::Number>().Int64Value();
  if (m < 68 || m > 65535) throw ArgError(env, "netlink: \"mtu\" out of range");
  a.mtu = static_cast<uint32_t>(m);
  a.v4 = Cidrs(o, "v4", AF_INET);
  a.routes = Cidrs(o, "routes", AF_INET);
  a.v6 = Cidrs(o, "v6", AF_INET6);
  Napi::Value gw = o.Get("gw");
  if (!gw.IsUndefined()) {
    if (!gw.IsString() || inet_pton(AF_INET, gw.As<Napi::String>().Utf8Value().c_str(), a.gw) != 1) throw ArgError(env, "netlink: bad \"gw\"");
    a.hasGw = true;
  }
  return Start(new PodWorker(env, std::move(a)));
}

Napi::Value VethHost(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject()) throw ArgError(env, "netlink: vethHost takes an options object");
  Napi::Object o = info[0].As<Napi::Object>();
  std::string host = Str(o, "host", true), bridge = Str(o, "bridge", true);
  bool hairpin = o.Get("hairpin").ToBoolean().Value();
  return Start(new HostWorker(env, std::move(host), std::move(bridge), hairpin));
}

Napi::Value LinkDel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject()) throw ArgError(env, "netlink: linkDel takes an options object");
  return Start(new DelWorker(env, Str(info[0].As<Napi::Object>(), "host", true)));
}

Napi::Value RouteIn(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject()) throw ArgError(env, "netlink: routeIn takes an options object");
  Napi::Object o = info[0].As<Napi::Object>();
  std::string ns = Str(o, "ns", false), ifname = Str(o, "ifname", true);
  return Start(new RouteWorker(env, std::move(ns), std::move(ifname), Cidrs(o, "routes", AF_INET)));
}

Napi::Value FdbDump(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject()) throw ArgError(env, "netlink: fdbDump takes an options object");
  return Start(new FdbWorker(env, Str(info[0].As<Napi::Object>(), "dev", true)));
}

Napi::Value FdbSet(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject()) throw ArgError(env, "netlink: fdbSet takes an options object");
  Napi::Object o = info[0].As<Napi::Object>();
  std::string dev = Str(o, "dev", true);
  Napi::Value op = o.Get("op");
  std::string ops = op.IsString() ? op.As<Napi::String>().Utf8Value() : "";
  if (ops != "append" && ops != "del") throw ArgError(env, "netlink: \"op\" must be \"append\" or \"del\"");
  Napi::Value v = o.Get("entries");
  if (!v.IsArray()) throw ArgError(env, "netlink: \"entries\" must be an array");
  Napi::Array arr = v.As<Napi::Array>();
  if (arr.Length() > 4096) throw ArgError(env, "netlink: over 4096 \"entries\"");
  std::vector<FdbChange> out;
  for (uint32_t i = 0; i < arr.Length(); i++) {
    Napi::Value x = arr.Get(i);
    if (!x.IsObject()) throw ArgError(env, "netlink: each entry must be an object");
    Napi::Object e = x.As<Napi::Object>();
    FdbChange c{};
    Napi::Value mac = e.Get("mac");
    std::string ms = mac.IsString() ? mac.As<Napi::String>().Utf8Value() : "";
    // Exactly "xx:xx:xx:xx:xx:xx", hex digits only (no sign, space or short field).
    bool macOk = ms.size() == 17;
    for (size_t k = 0; macOk && k < 17; k++) macOk = k % 3 == 2 ? ms[k] == ':' : isxdigit(static_cast<unsigned char>(ms[k])) != 0;
    if (!macOk) throw ArgError(env, "netlink: bad \"mac\" in an entry");
    for (int k = 0; k < 6; k++) c.mac[k] = static_cast<unsigned char>(strtoul(ms.substr(3 * k, 2).c_str(), nullptr, 16));
    Napi::Value dst = e.Get("dst");
    std::string ds = dst.IsString() ? dst.As<Napi::String>().Utf8Value() : "";
    if (ds.size() <= 45 && inet_pton(AF_INET, ds.c_str(), c.dst) == 1) c.family = AF_INET;
    else if (ds.size() <= 45 && inet_pton(AF_INET6, ds.c_str(), c.dst) == 1) c.family = AF_INET6;
    else throw ArgError(env, "netlink: bad \"dst\" in an entry");
    Napi::Value port = e.Get("port");
    c.port = -1;
    if (!port.IsUndefined()) {
      if (!port.IsNumber()) throw ArgError(env, "netlink: \"port\" must be a number");
      int64_t p = port.As<Napi::Number>().Int64Value();
      if (p < 1 || p > 65535 || static_cast<double>(p) != port.As<Napi::Number>().DoubleValue()) throw ArgError(env, "netlink: \"port\" out of range");
      c.port = static_cast<int>(p);
    }
    out.push_back(c);
  }
  return Start(new FdbSetWorker(env, std::move(dev), ops == "del", std::move(out)));
}

Napi::Value LinkList(const Napi::CallbackInfo& info) {
  return Start(new LinkListWorker(info.Env()));
}

Napi::Value RouteList4(const Napi::CallbackInfo& info) {
  return Start(new RouteListWorker(info.Env()));
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("routeList4", Napi::Function::New(env, RouteList4));
  exports.Set("linkList", Napi::Function::New(env, LinkList));
  exports.Set("fdbDump", Napi::Function::New(env, FdbDump));
  exports.Set("fdbSet", Napi::Function::New(env, FdbSet));
  exports.Set("vethPod", Napi::Function::New(env, VethPod));
  exports.Set("vethHost", Napi::Function::New(env, VethHost));
  exports.Set("linkDel", Napi::Function::New(env, LinkDel));
  exports.Set("routeIn", Napi::Function::New(env, RouteIn));
  return exports;
}

}  // namespace

NODE_API_MODULE(netlink, Init)
