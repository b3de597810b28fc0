#!/usr/bin/env bash
# The lab demo: bring the netns lab up, run ispmux in the appliance namespace,
# show subscribers reaching their chosen ISPs, then keep forwarding until Ctrl-C.
# Usage: scripts/demo.sh [LAB-ID]   (run as root, after `make build`)
set -euo pipefail
cd "$(dirname "$0")/.."
id=${1:-ispmux}
bin=$PWD/bin/ispmux
dir=$(mktemp -d /tmp/ispmux-demo.XXXXXX)
cfg=$dir/ispmux.toml
pid=""
cleanup() {
	[ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
	"$bin" lab down --id "$id" || true
	echo "demo: lab $id removed (logs were in $dir)"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$bin" lab up --id "$id" --config "$cfg" --state-dir "$dir/state"
"$bin" check -c "$cfg"
ip netns exec "$id-app" "$bin" run -c "$cfg" 2> >(tee "$dir/ispmux.log" >&2) &
pid=$!

# Wait until both ISP next hops are resolved.
for _ in $(seq 50); do
	if "$bin" ctl -c "$cfg" status 2>/dev/null | grep -c '"state": "reachable"' | grep -q 2; then break; fi
	sleep 0.2
done

echo
echo "== subscribers → ISP → address, and a ping to their ISP's host (198.51.100.10) =="
printf '%-4s %-18s %-6s %-12s %s\n' SUB MAC ISP ADDRESS PING
for s in s1 s2 s3; do
	mac=$(ip -n "$id-$s" -br link show eth0 | awk '{print $3}')
	addr=$(ip -n "$id-$s" -br -4 addr show eth0 | awk '{print $3}')
	isp=$(awk -v m="$mac" '$1=="mac" && $3=="\""m"\"" {f=1} f && $1=="isp" {gsub(/"/,"",$3); print $3; exit}' "$cfg")
	if ip netns exec "$id-$s" ping -c 3 -i 0.2 -W 1 -q 198.51.100.10 >/dev/null 2>&1; then r=ok; else r=FAILED; fi
	printf '%-4s %-18s %-6s %-12s %s\n' "$s" "$mac" "$isp" "$addr" "$r"
done
echo "(s1 and s3 share 100.64.0.11 at two different ISPs: the VRFs keep them apart)"
echo
echo "== counters (ispmux ctl -c $cfg status) =="
"$bin" ctl -c "$cfg" status | head -60
echo
echo "ispmux keeps forwarding; try: ip netns exec $id-s1 ping 198.51.100.10   (Ctrl-C to stop and remove the lab)"
wait "$pid"
