{
  # The TAP device addon (router/overlay/native/tap.cc): builds build/Release/tap.node;
  # the UDP addon (router/overlay/native/udp.cc) builds build/Release/udp.node;
  # the netlink addon (router/host/native/netlink.cc) builds build/Release/netlink.node;
  # weaveDNS's UDP addon (dns/native/dns-udp.cc) builds build/Release/dnsudp.node;
  # the nftables addon (router/policy/native/nft.cc) builds build/Release/nft.node;
  # the heap addon (router/daemon/native/heap.cc) builds build/Release/heap.node;
  # the lock addon (router/host/native/lock.cc) builds build/Release/lock.node.
  # node-addon-api is header-only; C++ exceptions are enabled (NAPI_CPP_EXCEPTIONS)
  # so native errors surface as JS exceptions with a `code` property.
  # Linux only: TAP devices come from /dev/net/tun.
  "targets": [
    {
      "target_name": "tap",
      "sources": ["router/overlay/native/tap.cc"],
      # libcrypto (OpenSSL EVP): encrypted egress flows seal in C (sleeve-aead.h via flow-cache.h).
      "libraries": ["-lcrypto"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "cflags_cc": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-fexceptions"]
    },
    {
      # The sleeve's batched UDP socket (router/overlay/native/udp.cc, wrapped by
      # router/udp.ts): recvmmsg/sendmmsg, builds build/Release/udp.node.
      "target_name": "udp",
      "sources": ["router/overlay/native/udp.cc"],
      # libcrypto (OpenSSL EVP, Debian libssl-dev) for ChaCha20-Poly1305 in sleeve-aead.h.
      "libraries": ["-lcrypto"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "cflags_cc": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-fexceptions"]
    },
    {
      # rtnetlink for the pod start path (router/host/native/netlink.cc, wrapped by
      # router/host/netlink.ts): a pod's veth without forking ip; builds build/Release/netlink.node.
      "target_name": "netlink",
      "sources": ["router/host/native/netlink.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "cflags_cc": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-fexceptions"]
    },
    {
      # weaveDNS's batched UDP socket (dns/native/dns-udp.cc, wrapped by dns/udp-batch.ts):
      # recvmmsg/sendmmsg for the DNS server, builds build/Release/dnsudp.node.
      "target_name": "dnsudp",
      "sources": ["dns/native/dns-udp.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "cflags_cc": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-fexceptions"]
    },
    {
      # nftables scripts without forking nft (router/policy/native/nft.cc, wrapped by
      # router/policy/bridge-filter.ts): libnftables.so.1 through dlopen; builds build/Release/nft.node.
      "target_name": "nft",
      "sources": ["router/policy/native/nft.cc"],
      "libraries": ["-ldl"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "cflags_cc": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-fexceptions"]
    },
    {
      # flock(2) for the router lock (router/host/native/lock.cc, wrapped by
      # router/host/router-lock.ts); builds build/Release/lock.node.
      "target_name": "lock",
      "sources": ["router/host/native/lock.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "cflags_cc": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-fexceptions"]
    },
    {
      # The router's malloc_trim after an idle collection and the unmapping of start-up's
      # file pages (router/daemon/native/heap.cc, wrapped by router/daemon/heap.ts);
      # builds build/Release/heap.node.
      "target_name": "heap",
      "sources": ["router/daemon/native/heap.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "cflags_cc": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-fexceptions"]
    }
  ]
}
