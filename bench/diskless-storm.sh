#!/usr/bin/env bash
# Side-by-side diskless boot storm (issue 15): N machines power on at once; each does DHCP
# (relayed, through two relay agents), fetches a 1 MiB boot file over TFTP, logs in to the iSCSI
# disk its lease's root path names (option 17) and reads its first MIB mebibytes (QD1, 128 KiB
# READ (10)s, as a booting kernel's first reads come), then logs out. The same storm, from the
# bundled bootstorm-loadgen, against each stack in turn on one veth pair:
#
#   bootstorm      one process: DHCP + TFTP + the iSCSI target, the disk a golden image with an
#                  overlay per machine (made at its login, keyed by the initiator IQN that DHCP
#                  option 203 gives each machine from its MAC)
#   dnsmasq+tgt    dnsmasq (DHCP + TFTP, --dhcp-option 17 with the root path, limits raised to
#                  N) and tgtd serving the golden image itself as LUN 1 (tgt has no overlays:
#                  every machine shares one disk)
#
# With RETRIES=N a machine whose boot fails starts over after 1 s, up to N times (firmware with
# "boot retry" on), so a stack that drops requests still completes its storm.
#
# Usage (as root): bench/diskless-storm.sh [machines] [MiB read per machine]   (default 1000 16)
# STACKS="bootstorm" to run some; LIMIT=seconds bounds each storm (default 600).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin:/sbin"
[ "$(id -u)" = 0 ] || { echo "needs root (network namespaces)"; exit 1; }
for t in dnsmasq tgtd tgtadm; do
  command -v $t >/dev/null || { echo "missing $t: apt-get install -y dnsmasq-base tgt"; exit 1; }
done
N=${1:-1000}
MIB=${2:-16}
LIMIT=${LIMIT:-600}
RETRIES=${RETRIES:-0}
STACKS=${STACKS:-"bootstorm dnsmasq+tgt"}
cargo build --release -q -p bootstorm-daemon -p bootstorm-loadgen
BIN=$PWD/target/release/bootstorm
LG=$PWD/target/release/bootstorm-loadgen
IQN=iqn.2026-12.bench.bootstorm:golden
ulimit -n "$(ulimit -Hn)"

. bench/lab.sh
lab_up dls
ip -n "$C" addr add 198.18.0.3/16 dev "$CIF"
mkdir -p "$T/root"
head -c $((1 << 20)) /dev/urandom > "$T/root/boot.efi"
SHA=$(sha256sum "$T/root/boot.efi" | cut -d' ' -f1)
head -c $(((MIB + 48) << 20)) /dev/urandom > "$T/golden.img"

cat > "$T/bootstorm.toml" <<TOML
[server]
interfaces = ["$SIF"]
workers = 2
control_socket = "$T/bs.sock"

[[subnet]]
network = "198.18.0.0/16"
server_id = "198.18.0.1"
pools = ["198.18.1.0-198.18.255.254"]

[[boot]]
file = "boot.efi"
iscsi_target = "$IQN"
initiator_iqn = "iqn.2026-12.bench.machine:{mac}"

[tftp]
root = "$T/root"

[iscsi]
address = "198.18.0.1:3260"

[[iscsi.target]]
name = "$IQN"
file = "$T/golden.img"
overlays = "$T/overlays"
TOML

PIDS=()
TGT=
start_stack() {
  PIDS=(); TGT=
  cat "$T/golden.img" > /dev/null
  case $1 in
    bootstorm)
      rm -rf "$T/overlays"
      ip netns exec "$S" "$BIN" serve --config "$T/bootstorm.toml" 2> "$T/bootstorm.log" &
      PIDS+=($!) ;;
    dnsmasq+tgt)
      rm -f "$T/dnsmasq.leases"
      ip netns exec "$S" dnsmasq --no-daemon --port=0 --conf-file=/dev/null --interface="$SIF" --bind-interfaces \
        --dhcp-range=198.18.1.0,198.18.255.254,255.255.0.0,1h --dhcp-lease-max=$((N + 1000)) --no-ping \
        --dhcp-leasefile="$T/dnsmasq.leases" --dhcp-boot=boot.efi,,198.18.0.1 \
        --dhcp-option=17,"iscsi:198.18.0.1:::1:$IQN" \
        --enable-tftp --tftp-root="$T/root" --tftp-max=$((N + 1000)) \
        --log-facility="$T/dnsmasq.log" --pid-file="$T/dnsmasq.pid" 2> "$T/dnsmasq.err" &
      PIDS+=($!)
      ip netns exec "$S" tgtd -f --iscsi portal=198.18.0.1:3260 -C 78 > "$T/tgtd.log" 2>&1 &
      TGT=$!; PIDS+=($TGT)
      sleep 1
      ip netns exec "$S" tgtadm -C 78 --lld iscsi --op new --mode target --tid 1 -T "$IQN"
      ip netns exec "$S" tgtadm -C 78 --lld iscsi --op new --mode logicalunit --tid 1 --lun 1 -b "$T/golden.img"
      ip netns exec "$S" tgtadm -C 78 --lld iscsi --op bind --mode target --tid 1 -I ALL ;;
  esac
  SERVER_PID=
  sleep 1.5
  for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null || { echo "$1 did not start"; exit 1; }; done
}
stop_stack() {
  # tgtd ignores SIGTERM: it stops when told through its control socket.
  [ -n "$TGT" ] && { ip netns exec "$S" tgtadm -C 78 --op delete --mode system > /dev/null 2>&1 || true; }
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do
    local i; for i in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true
  done
  PIDS=(); TGT=
}
trap 'stop_stack; lab_down' EXIT

declare -A DUR RATE DHCP TFTP LOGIN IO BOOT FAILED WHY OVL
for st in $STACKS; do
  start_stack "$st"
  out=$(timeout $((LIMIT + 60)) ip netns exec "$C" "$LG" --server 198.18.0.1 --relay 198.18.0.2,198.18.0.3 \
    --clients "$N" --profile uefi-x64 --expect-size $((1 << 20)) --expect-sha256 "$SHA" \
    --iscsi-read "$MIB" --boot-retries "$RETRIES" --boot-retry-delay 1 --limit "$LIMIT" --json 2> /dev/null || true)
  OVL[$st]=-
  if [ "$st" = bootstorm ]; then
    OVL[$st]=$("$BIN" overlay list --config "$T/bootstorm.toml" --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
  fi
  stop_stack
  read -r dur rate dhcp tftp login io boot failed why < <(python3 -c 'import json,sys
try:
    r = json.loads(sys.argv[1]); p = {x["phase"]: x["p99_ms"] for x in r["phases"]}
    why = ";".join("%s=%d" % (k.replace(" ", "_"), v) for k, v in r["failures"].items()) or "-"
    print("%.2f" % r["duration_s"], "%.0f" % r["boots_per_s"], p.get("dhcp", "-"), p.get("tftp", "-"),
          p.get("iscsi-login", "-"), p.get("iscsi-io", "-"), p.get("boot", "-"), r["failed"], why)
except Exception:
    print("- - - - - - - all no_report")' "$out")
  DUR[$st]=$dur; RATE[$st]=$rate; DHCP[$st]=$dhcp; TFTP[$st]=$tftp; LOGIN[$st]=$login; IO[$st]=$io
  BOOT[$st]=$boot; FAILED[$st]=$failed; WHY[$st]=$why
  echo "$st: $N machines in $dur s ($rate boots/s), p99 dhcp $dhcp ms, tftp $tftp ms, iscsi login $login ms, iscsi io $io ms, boot $boot ms, $failed failed ($why), overlays ${OVL[$st]}"
done

echo
echo "kernel $(uname -r), $(nproc) cores, commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(date -u +%F), $MIB MiB read per machine, boot retries $RETRIES"
echo "| stack | $N machines: completion (s) | boots/s | p99 DHCP (ms) | p99 TFTP (ms) | p99 iSCSI login (ms) | p99 iSCSI read (ms) | p99 boot (ms) | failed | overlays |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
for st in $STACKS; do
  echo "| $st | ${DUR[$st]} | ${RATE[$st]} | ${DHCP[$st]} | ${TFTP[$st]} | ${LOGIN[$st]} | ${IO[$st]} | ${BOOT[$st]} | ${FAILED[$st]} ${WHY[$st]/#-/} | ${OVL[$st]} |"
done
