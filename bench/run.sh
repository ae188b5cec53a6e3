#!/usr/bin/env bash
# npm run bench: tsweave side by side with kernel VXLAN, tinc (no cipher), wireguard-go
# and nebula (the userspace encrypted L3 anchors) on the
# shared harness's 2-host namespace topology, all measured in one run, then the
# ratios. Extra configs can be passed: npm run bench -- ours:none ours vxlan openvpn
# Then the IPv6 row (bench/ipv6-bench.ts: TCP-1 and ping over overlay IPv6 on an IPv4 and
# an IPv6 underlay next to the IPv4 figures of that run); BENCH_IPV6=0 leaves it out.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${SHARED_BENCH:-$ROOT/../shared/bench}
[ -x "$SHARED/run.sh" ] || { echo "bench: the shared harness is not at $SHARED (set SHARED_BENCH)" >&2; exit 1; }
export RESULTS_DIR=${RESULTS_DIR:-/tmp/tsweave-bench}
mkdir -p "$RESULTS_DIR"
configs=("$@")
[ ${#configs[@]} -gt 0 ] || configs=(ours:none ours vxlan tinc:none wggo nebula)
BENCH_TECH_DIRS="$ROOT/bench/tech" ROUNDS=${ROUNDS:-1} DURATION=${DURATION:-5} "$SHARED/run.sh" "${configs[@]}"
latest=$(ls -t "$RESULTS_DIR"/anchors-*.json | head -1)
node "$ROOT/dist/bench/ratios.js" "$latest"
if [ "${BENCH_IPV6:-1}" != 0 ]; then
  echo
  echo "IPv6 row (npm run bench:ipv6):"
  DURATION=${DURATION:-5} node "$ROOT/dist/bench/ipv6-bench.js"
fi
