#!/usr/bin/env bash
# DHCP peak rate with the bundled load generator (issue 4 and 5): a storm of N machines doing
# DISCOVER/OFFER/REQUEST/ACK only, through two relay agents, against bootstorm with its journal
# at durability fsync (default 5 ms commit delay), write and none, and against Kea's memfile with
# persist on; one run, one veth pair. perfdhcp tops out near 10,000 exchanges/s here; the load
# generator batches its receives and sends, so it goes past that.
#
# Usage (as root): bench/loadgen-dhcp-peak.sh [machines]   (default 20000)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin:/sbin"
[ "$(id -u)" = 0 ] || { echo "needs root (network namespaces)"; exit 1; }
command -v kea-dhcp4 >/dev/null || { echo "missing kea-dhcp4: apt-get install -y kea-dhcp4-server"; exit 1; }
N=${1:-20000}
cargo build --release -q -p bootstorm-daemon -p bootstorm-loadgen
BIN=$PWD/target/release/bootstorm
LG=$PWD/target/release/bootstorm-loadgen

. bench/lab.sh
lab_up bsk
ip -n "$C" addr add 198.18.0.3/16 dev "$CIF"
lg_mode "$N"

cat > "$T/kea.json" <<JSON
{ "Dhcp4": {
    "interfaces-config": { "interfaces": [ "$SIF" ], "dhcp-socket-type": "$KEA_SOCKET" },
    "lease-database": { "type": "memfile", "persist": true, "name": "$T/kea-leases4.csv", "lfc-interval": 3600 },
    "valid-lifetime": 3600,
    "subnet4": [ { "id": 1, "subnet": "198.18.0.0/16",
                   "pools": [ { "pool": "198.18.1.0 - 198.18.255.254" } ] } ],
    "loggers": [ { "name": "kea-dhcp4", "output_options": [ { "output": "$T/kea.log" } ], "severity": "WARN" } ]
} }
JSON

start_server() {
  case $1 in
    bootstorm-*)
      # bootstorm-DURABILITY, or bootstorm-xdp-DURABILITY on the XDP fast path.
      local dur=${1#bootstorm-} io=socket
      case $dur in xdp-*) dur=${dur#xdp-} io=xdp ;; esac
      rm -rf "$T/leases"
      ip netns exec "$S" "$BIN" serve --interface "$SIF" --server-ip 198.18.0.1 --pool 198.18.1.0-198.18.255.254 \
        --workers 2 --control-socket "$T/bs.sock" --lease-dir "$T/leases" --durability "$dur" --io "$io" \
        2> "$T/bootstorm.log" & ;;
    kea-persist)
      rm -f "$T"/kea-leases4.csv*
      KEA_LOCKFILE_DIR=$T KEA_PIDFILE_DIR=$T ip netns exec "$S" kea-dhcp4 -c "$T/kea.json" > "$T/kea.out" 2>&1 & ;;
    kea-mt-persist)
      rm -f "$T"/kea-leases4.csv*
      sed -e 's|"valid-lifetime": 3600,|"valid-lifetime": 3600, "multi-threading": { "enable-multi-threading": true, "thread-pool-size": 2, "packet-queue-size": 64 },|' \
        "$T/kea.json" > "$T/kea-mt.json"
      KEA_LOCKFILE_DIR=$T KEA_PIDFILE_DIR=$T ip netns exec "$S" kea-dhcp4 -c "$T/kea-mt.json" > "$T/kea.out" 2>&1 & ;;
  esac
  SERVER_PID=$!
  sleep 1.5
  kill -0 "$SERVER_PID" 2>/dev/null || { echo "$1 did not start"; exit 1; }
}
stop_server() { kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=; }

declare -A RATE P99 FAILED
SERVERS=${SERVERS:-"bootstorm-fsync bootstorm-write bootstorm-none kea-persist"}
for srv in $SERVERS; do
  start_server "$srv"
  out=$(timeout 200 ip netns exec "$C" "$LG" ${LG_ARGS:-} --server 198.18.0.1 $LG_TARGET --clients "$N" \
    --fetch none --profile ipxe --limit 150 --json 2> /dev/null || true)
  stop_server
  read -r rate p99 failed < <(python3 -c 'import json,sys
try:
    r = json.loads(sys.argv[1]); d = [p for p in r["phases"] if p["phase"] == "dhcp"][0]
    print("%.0f" % r["boots_per_s"], d["p99_ms"], r["failed"])
except Exception:
    print("- - all")' "$out")
  RATE[$srv]=$rate; P99[$srv]=$p99; FAILED[$srv]=$failed
  echo "$srv: $N machines, $rate leases/s, DHCP p99 $p99 ms, $failed failed"
done

echo
echo "kernel $(uname -r), $(nproc) cores, commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(date -u +%F)"
echo "| server | $N machines at once: leases/s | DHCP p99 (ms) | failed |"
echo "| --- | --- | --- | --- |"
for srv in $SERVERS; do echo "| $srv | ${RATE[$srv]} | ${P99[$srv]} | ${FAILED[$srv]} |"; done
