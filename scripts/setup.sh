#!/usr/bin/env bash
# Install what tsweave needs on Debian 12 (as root) and build it.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
  iproute2 iputils-ping iperf3 iptables nftables tcpdump netcat-openbsd util-linux procps psmisc kmod \
  python3 make g++ gcc libc6-dev docker.io busybox-static chromium dnsutils dnsmasq-base dnsperf systemd \
  libssl-dev pkg-config wireguard-go wireguard-tools nebula >/dev/null
# Bench anchors (npm run bench): tinc 1.0 (no cipher) and OpenVPN, the latency goals of #19.
# Only their binaries are used, inside the bench's namespaces (their Debian services have no
# configuration here, so they start no tunnel).
apt-get install -y -qq --no-install-recommends tinc openvpn >/dev/null
# CNI (issue #15): podman with its CNI backend drives the weave-net plugin in test/e2e/cni.test.ts.
apt-get install -y -qq --no-install-recommends podman containernetworking-plugins >/dev/null
# IPv6 bench (issue #21): `npm run bench:ipv6` pings all compared targets interleaved with fping.
apt-get install -y -qq --no-install-recommends fping >/dev/null
# Soak (issue #16): `npm run soak` draws its PNG with gnuplot (pngcairo).
apt-get install -y -qq --no-install-recommends gnuplot-nox >/dev/null
command -v node >/dev/null || { echo "setup: Node.js 20 or newer is needed (node not found)" >&2; exit 1; }
cd "$(dirname "$0")/.."
npm ci --no-audit --no-fund
