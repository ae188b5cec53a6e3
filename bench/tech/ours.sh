#!/usr/bin/env bash
# tech/ours.sh up|down [VARIANT] -- tsweave in the shared overlay benchmark
# (../shared/bench). Follows the contract in ../shared/bench/tech/ours.sh: the
# topology (namespaces, the "weave" bridge with the container veths) is already
# up; we start one router per host namespace in the foreground, attached to that
# bridge, and wait until c1 reaches c2 through it.
#
# Variants:  default = encrypted sleeve (--password)   none = plaintext sleeve
#            fastdp  = plaintext, kernel fast datapath (when available)
set -euo pipefail
. "${BENCH_DIR:?run via ../shared/bench/run.sh}/lib/common.sh"
NAME=ours; D=$(tech_dir $NAME)
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WEAVE="$ROOT/dist/cli/weave.js"

up() {
  local variant=${1:-default}
  topo_is_up || die "topology not up"
  [ -f "$WEAVE" ] || die "tsweave is not built: run npm ci in $ROOT"
  mkdir -p "$D/h1" "$D/h2"; : >"$D/pids"
  local mtu extra=() desc
  case "$variant" in
    default) mtu=1404; extra=(--no-fastdp); desc="tsweave sleeve, encrypted: Noise-authenticated control, ChaCha20-Poly1305 per datagram (OpenSSL in C on cached flows, sodium-native in JS)" ;;
    none)    mtu=1436; extra=(--no-fastdp); desc="tsweave sleeve, plaintext" ;;
    fastdp)  mtu=1410; extra=(); desc="tsweave fast datapath (kernel VXLAN programmed by the router), plaintext" ;;
    *) die "unknown variant $variant" ;;
  esac
  local pw=()
  [ "$variant" = default ] && pw=(env WEAVE_PASSWORD=bench-password-not-secret)
  start_daemon "$D" "$NS_H1" router-h1 env WEAVE_STATE_DIR="$D/h1" "${pw[@]}" "$WEAVE" launch --no-detach \
    --nickname h1 --mtu "$mtu" --ipalloc-range "" --no-proxy --log-level warn "${extra[@]}"
  start_daemon "$D" "$NS_H2" router-h2 env WEAVE_STATE_DIR="$D/h2" "${pw[@]}" "$WEAVE" launch --no-detach \
    --nickname h2 --mtu "$mtu" --ipalloc-range "" --no-proxy --log-level warn "${extra[@]}" "$H1_IP"
  set_overlay_mtu "$mtu"
  write_meta "$D" "$NAME" "$variant" L2 "$mtu" "$desc"
  local i
  for i in $(seq 1 60); do
    if WEAVE_STATE_DIR="$D/h1" node "$WEAVE" status connections 2>/dev/null | grep -q established; then break; fi
    sleep 0.5
  done
  WEAVE_STATE_DIR="$D/h1" node "$WEAVE" status connections 2>/dev/null | grep -q established || die "no established connection (see $D/*.log)"
  wait_reach 30 || die "c1 cannot reach c2 (see $D/*.log)"
}

down() {
  stop_daemons "$D"
  for ns in "${NS_H1:-}" "${NS_H2:-}"; do
    [ -n "$ns" ] && ip -n "$ns" link del vethwe-tap 2>/dev/null || true
    [ -n "$ns" ] && ip -n "$ns" link del vxlan-6784 2>/dev/null || true
  done
  # weave reset in each host namespace: removes the router's isolation filters
  # (kept after stop by design; they would drop ARP to the host for the L3 techs
  # measured after us), its links and state files. reset also deletes the
  # "weave" bridge, which here belongs to the harness's topology, so it is put
  # back exactly as topo.sh makes it (bridge up, the container veth enslaved).
  local i ns
  for i in 1 2; do
    ns=$([ $i = 1 ] && echo "${NS_H1:-}" || echo "${NS_H2:-}")
    [ -n "$ns" ] && ip netns list | grep -qw "$ns" || continue
    mkdir -p "$D/h$i"
    WEAVE_STATE_DIR="$D/h$i" timeout 60 ip netns exec "$ns" node "$WEAVE" reset --force >/dev/null 2>&1 \
      || echo "ours.sh down: weave reset in $ns failed (continuing)" >&2
    if ! ip -n "$ns" link show "$BRIDGE" >/dev/null 2>&1 && ip -n "$ns" link show "vethc$i" >/dev/null 2>&1; then
      ip -n "$ns" link add "$BRIDGE" type bridge && ip -n "$ns" link set "$BRIDGE" up \
        && ip -n "$ns" link set "vethc$i" master "$BRIDGE" up
    fi
  done
  rm -rf "$D"
  return 0
}

case "${1:-}" in up) shift; up "$@" ;; down) down ;; *) echo "usage: $0 up|down [variant]" >&2; exit 2 ;; esac
