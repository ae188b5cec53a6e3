#!/bin/bash
# npm run bench:filter — what the bridge filters (router/policy/bridge-filter.ts) cost per
# frame, IPv4 against IPv6 (issue #21: IPv6 within 5 % of IPv4).
#
# Per ruleset, one host namespace with a bridge "weave" and two container namespaces on
# veths named like the router's (vethwepl1/2, ethwe), with IPv4 10.32.0.1-2/24 and the
# IPv6 addresses --ipalloc-range6 fd10:32::/64 derives from them; neighbours are static,
# so no ARP or ND runs while measuring. Rulesets: "this" (renderRuleset of this build's
# dist, the two ports and range6, exactly what the router installs for them), "none" (no
# rules: the kernel's own IPv4/IPv6 cost, the anchor), and, with OLD_ROOT=<another
# checkout with a built dist>, "old" (that build's rules: a before/after in one run).
#
# Measure: iperf3 UDP (client pinned to CPU 0, server to CPU 1: unpinned runs on this
# 2-vCPU VM spread 0.56-1.42 per round), 64-byte payloads, unlimited rate, T seconds, received packets per
# second, c1 -> c2 over the bridge, per ruleset and family, ROUNDS rounds; each round
# runs every combination once (the hosts share the machine, so a round's figures are
# comparable, and the per-round IPv6/IPv4 ratio pairs them). Prints per combination the
# median pps and per ruleset the median per-round IPv6/IPv4 ratio.
#
# Root. Namespaces are prefixed tsbfp- and all removed on exit (also on failure/Ctrl-C).
# Traffic never leaves them. Needs iperf3, nft, python3.
# Environment: ROUNDS (default 7), T (seconds per run, default 3), OLD_ROOT.
set -u
cd "$(dirname "$0")/.."
P=tsbfp
ROUNDS=${ROUNDS:-7}
T=${T:-3}
WORK=$(mktemp -d /tmp/tsbfp.XXXXXX)
cleanup() {
  for n in $(ip netns list | awk '{print $1}' | grep "^$P-"); do
    ip netns pids "$n" 2>/dev/null | xargs -r kill 2>/dev/null
    ip netns del "$n"
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
for cmd in iperf3 nft python3; do command -v $cmd >/dev/null || { echo "bench:filter: $cmd is missing (scripts/setup.sh installs it)"; exit 1; }; done
[ -f dist/router/policy/bridge-filter.js ] || { echo "bench:filter: no dist; run npm run build"; exit 1; }
if ip netns list | grep -q "^$P-"; then echo "bench:filter: namespaces $P-* exist (another run?); remove them first"; exit 1; fi

# The ruleset a router of the build at $1 installs for the two ports.
gen() {
  node --input-type=module -e '
const root = process.argv[1];
const bf = await import(`${root}/dist/router/policy/bridge-filter.js`);
const v6 = await import(`${root}/dist/ipam/ipv6.js`);
const ports = [1, 2].map((i) => ({ port: `vethwepl${i}`, mac: `0a:58:00:00:00:0${i}`, cidrs: [`10.32.0.${i}/24`] }));
process.stdout.write(bf.renderRuleset(ports, [], "weave", undefined, v6.parseRange6("fd10:32::/64")).script);
' "$1"
}
SETS="this none"
gen "$PWD" > "$WORK/this.nft" || exit 1
: > "$WORK/none.nft"
if [ -n "${OLD_ROOT:-}" ]; then gen "$OLD_ROOT" > "$WORK/old.nft" || exit 1; SETS="old this none"; fi

for s in $SETS; do
  H=$P-$s
  ip netns add "$H" || exit 1
  ip -n "$H" link set lo up
  ip -n "$H" link add weave type bridge && ip -n "$H" link set weave up || exit 1
  for i in 1 2; do
    C=$P-$s-c$i
    ip netns add "$C" || exit 1
    ip link add vethwepl$i netns "$H" type veth peer name ethwe netns "$C" || exit 1
    ip netns exec "$C" sysctl -qw net.ipv6.conf.ethwe.addr_gen_mode=1
    ip -n "$C" link set ethwe address 0a:58:00:00:00:0$i
    ip -n "$C" link set lo up && ip -n "$C" link set ethwe up
    ip -n "$C" addr add 10.32.0.$i/24 dev ethwe
    ip -n "$C" addr add fd10:32::a20:$i/64 dev ethwe nodad
    ip -n "$H" link set vethwepl$i master weave up
  done
  for i in 1 2; do j=$((3 - i))
    ip -n "$P-$s-c$i" neigh add fd10:32::a20:$j lladdr 0a:58:00:00:00:0$j dev ethwe nud permanent
    ip -n "$P-$s-c$i" neigh add 10.32.0.$j lladdr 0a:58:00:00:00:0$j dev ethwe nud permanent
  done
  [ -s "$WORK/$s.nft" ] && { ip netns exec "$H" nft -f "$WORK/$s.nft" || { echo "bench:filter: nft refused the $s ruleset"; exit 1; }; }
  for t in 10.32.0.2 fd10:32::a20:2; do
    ip netns exec "$P-$s-c1" ping -c 2 -i 0.2 -W 1 $t >/dev/null || { echo "bench:filter: $s: $t does not answer"; exit 1; }
  done
done

: > "$WORK/pps"
for r in $(seq 1 "$ROUNDS"); do
  for s in $SETS; do for t in 10.32.0.2 fd10:32::a20:2; do
    ip netns exec "$P-$s-c2" timeout $((T + 15)) taskset -c 1 iperf3 -s -1 >/dev/null 2>&1 &
    sleep 0.3
    pps=$(ip netns exec "$P-$s-c1" timeout $((T + 10)) taskset -c 0 iperf3 -c $t -u -b 0 -l 64 -t "$T" -J 2>/dev/null |
      python3 -c 'import json,sys; s=json.load(sys.stdin)["end"]["sum"]; print(round(s["packets"]*(1-s["lost_percent"]/100)/s["seconds"]))' 2>/dev/null)
    wait
    [ -n "$pps" ] || { echo "bench:filter: iperf3 $s $t gave no result"; exit 1; }
    echo "$r $s $t $pps" >> "$WORK/pps"
  done; done
  echo "round $r/$ROUNDS done (load $(cut -d' ' -f1 /proc/loadavg))"
done

python3 - "$WORK/pps" "$ROUNDS" "$T" <<'PY'
import statistics as st, sys
rows = [l.split() for l in open(sys.argv[1])]
pps, ratio = {}, {}
for r, s, t, v in rows:
    pps.setdefault((s, t), []).append(int(v))
by = {(r, s, t): int(v) for r, s, t, v in rows}
for r, s, t, v in rows:
    if ':' in t:
        ratio.setdefault(s, []).append(int(v) / by[(r, s, '10.32.0.2')])
print(f'\n# bridge filter cost: 64-byte UDP over one bridge, received pps, {sys.argv[2]} rounds x {sys.argv[3]} s\n')
print('| ruleset | IPv4 pps (median) | IPv6 pps (median) | IPv6/IPv4, per round (median, min-max) |')
print('|---|---|---|---|')
for s in [x for x in ('old', 'this', 'none') if x in ratio]:
    q = ratio[s]
    print(f'| {s} | {st.median(pps[(s, "10.32.0.2")]):.0f} | {st.median(pps[(s, "fd10:32::a20:2")]):.0f} | {st.median(q):.3f} ({min(q):.3f}-{max(q):.3f}) |')
print('\n"none" is the kernel alone (no rules): the IPv6/IPv4 ratio the rules cannot beat.')
PY
