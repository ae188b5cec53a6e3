#!/usr/bin/env bash
# weaveDNS benchmark (npm run bench:dns): dnsperf against tsweave's DNS server and against
# dnsmasq serving the same names from a hosts file, in one run, in one private network
# namespace (loopback only: nothing leaves it). Measures max queries/s (dnsperf, 4 clients,
# 100 outstanding, DURATION s) and latency p50/p99 at a fixed rate (RATE q/s, per-query
# latencies from dnsperf -v), for local names and for forwarded names (ours forwarding to a
# dnsmasq upstream; the upstream asked directly as the reference). Prints a table and the
# ratios. Then (unless DATAPATH=0) bench/dns-load.ts: tsweave against dnsmasq while one
# iperf3 flow crosses the router's data path between two testbed hosts (per path, PATHS,
# default sleeve,fastdp), in A/B/A phases of DP_DURATION s (q/s, p50/p99 at RATE, the ratio),
# and the data path's throughput with no DNS load, tsweave loaded and dnsmasq loaded
# (MODES=main,thread: the router's DNS server on its main thread and on its worker thread).
# The machine may be shared: numbers are only comparable within one run; the load average
# is printed with them.
set -euo pipefail
cd "$(dirname "$0")/.."
DATAPATH=${DATAPATH:-1}
for b in dnsperf dnsmasq ip $([ "$DATAPATH" = 0 ] || echo iperf3); do command -v "$b" >/dev/null || { echo "dns-bench: needs $b (scripts/setup.sh: dnsperf dnsmasq-base iproute2)" >&2; exit 1; }; done
[ "$(id -u)" = 0 ] || { echo "dns-bench: needs root (network namespace)" >&2; exit 1; }
DURATION=${DURATION:-10}
RATE=${RATE:-2000}
NAMES=${NAMES:-100}
NS=tswdnsbench-$$
DIR=$(mktemp -d /tmp/tsweave-dns-bench.XXXXXX)
cleanup() {
  for p in $(ip netns pids "$NS" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
  ip netns del "$NS" 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT
ip netns add "$NS"
ip -n "$NS" link set lo up
OURS=127.0.0.11; REF=127.0.0.12; UP=127.0.0.13
for i in $(seq 0 $((NAMES - 1))); do
  echo "10.40.$((i >> 8)).$((i & 255)) name-$i.weave.local"
  echo "name-$i.weave.local A" >> "$DIR/local.q"
  echo "fwd-$i.fwd.example A" >> "$DIR/fwd.q"
done > "$DIR/hosts"
echo "nameserver $UP" > "$DIR/resolv.conf"
in_ns() { ip netns exec "$NS" "$@"; }
in_ns dnsmasq -k --no-resolv --no-hosts --addn-hosts="$DIR/hosts" --listen-address=$REF --bind-interfaces --pid-file= --user=root --cache-size=10000 --local-ttl=1 2>/dev/null &
in_ns dnsmasq -k --no-resolv --no-hosts --address=/fwd.example/192.0.2.7 --listen-address=$UP --bind-interfaces --pid-file= --user=root 2>/dev/null &
in_ns node --no-memory-reducer dist/bench/dns-server.js $OURS "$DIR/resolv.conf" "$NAMES" > "$DIR/ours.out" 2>&1 &
for _ in $(seq 1 50); do grep -q ready "$DIR/ours.out" 2>/dev/null && break; sleep 0.1; done
grep -q ready "$DIR/ours.out" || { echo "dns-bench: our server did not start: $(cat "$DIR/ours.out")" >&2; exit 1; }
sleep 0.5

qps() { # server queryfile → queries/s
  in_ns dnsperf -s "$1" -d "$2" -l "$DURATION" -c 4 -q 100 2>/dev/null | awk '/Queries per second/ {print $4}'
}
lat() { # server queryfile → "p50 p99" in ms at RATE q/s
  in_ns dnsperf -s "$1" -d "$2" -l 5 -Q "$RATE" -v 2>/dev/null | awk '/^> / {print $NF}' | sort -g | awk '{a[NR]=$1} END {if (NR==0) {print "- -"; exit} printf "%.3f %.3f\n", a[int(NR*0.5)+1]*1000, a[int(NR*0.99)]*1000}'
}
row() { # label server queryfile
  local q l
  q=$(qps "$2" "$3"); l=$(lat "$2" "$3")
  printf '%-34s %12s %10s %10s\n' "$1" "${q:-0}" ${l}
  echo "$1|${q:-0}|${l}" >> "$DIR/rows"
}
echo "weaveDNS benchmark: $NAMES names, dnsperf $DURATION s x 4 clients for q/s, $RATE q/s for latency; $(nproc) vCPUs, machine possibly shared; load average $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-34s %12s %10s %10s\n' "server / names" "queries/s" "p50 ms" "p99 ms"
row "dnsmasq (hosts file), local" $REF "$DIR/local.q"
row "tsweave, local" $OURS "$DIR/local.q"
row "dnsmasq upstream asked directly" $UP "$DIR/fwd.q"
row "tsweave, forwarded to upstream" $OURS "$DIR/fwd.q"
awk -F'|' '{split($3, l, " "); q[NR]=$2; p99[NR]=l[2]} END {
  if (q[1] > 0) printf "ratio local q/s tsweave/dnsmasq: %.2fx (goal >= 1.0x); tsweave local p99 %s ms (goal <= 2 ms)\n", q[2]/q[1], p99[2];
  if (q[3] > 0) printf "ratio forwarded q/s tsweave/direct upstream: %.2fx\n", q[4]/q[3] }' "$DIR/rows"
echo "load average after the DNS table: $(cut -d' ' -f1-3 /proc/loadavg)"
if [ "$DATAPATH" != 0 ]; then
  echo
  DURATION=${DP_DURATION:-5} RATE=$RATE node dist/bench/dns-load.js
  echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
fi
