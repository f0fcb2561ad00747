#!/usr/bin/env bash
# Side-by-side boot storm (issue 5): N machines power on at once and each does DHCP (relayed,
# through two relay agents) and then fetches a 1 MiB boot file over TFTP from the server its ACK
# names, checked by size and sha256. The same storm, from the bundled bootstorm-loadgen, against
# each stack in turn on one veth pair between two namespaces:
#
#   bootstorm          one process, DHCP + TFTP (quick mode, 2 workers, no lease journal)
#   bootstorm-fsync    the same with its lease journal at durability fsync
#   bootstorm-nosessions  bootstorm without its boot-session registry (what recording costs)
#   bootstorm-watched  bootstorm with its API and dashboard on TCP and an operator watching
#                      (bench/watch.sh: headless Chromium on the storm view, the session list's
#                      first page every second and /metrics every 5 s, each timed)
#   bootstorm-polled   the same with the dashboard's requests made by bench/poll.py (no browser:
#                      what answering a dashboard costs the server alone)
#   dnsmasq            DHCP + TFTP in one process (--tftp-max and --dhcp-lease-max raised to N,
#                      as an operator facing a storm would; its defaults are 50 and 1,000)
#   kea+tftpd-hpa      kea-dhcp4 (memfile, persist off) with next-server/boot-file-name, and
#                      tftpd-hpa (forks a process per transfer)
#
# Machines use the uefi-x64 profile: option 93 = 7, PXE retransmissions after 4, 8, 16, 32 s,
# TFTP blksize 1468 + tsize + windowsize 4 (EDK2's PcdPxeTftpWindowSize); servers without RFC
# 7440 answer without windowsize and the transfer runs lockstep, as it would with real firmware.
#
# With RETRIES=N a machine whose boot fails starts over after 1 s, up to N times, as server
# firmware with "boot retry" on does; the completion time of a stack that drops machines is then
# defined (without, the stacks that drop DHCP requests never complete the storm).
#
# Usage (as root): bench/storm-compare.sh [machines]   (default 10000)
# STACKS="bootstorm dnsmasq" to run some; LIMIT=seconds bounds each storm (default 900);
# REPORTS=dir keeps each stack's HTML report (latency plots, completions over time) there.
# Server CPU is the stack's processes' time on CPU during the storm (/proc/PID/task/*/schedstat;
# tftpd-hpa's forked children are not counted).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin:/sbin"
[ "$(id -u)" = 0 ] || { echo "needs root (network namespaces)"; exit 1; }
for t in kea-dhcp4 in.tftpd dnsmasq; do
  command -v $t >/dev/null || { echo "missing $t: apt-get install -y kea-dhcp4-server tftpd-hpa dnsmasq-base"; exit 1; }
done
N=${1:-10000}
LIMIT=${LIMIT:-900}
RETRIES=${RETRIES:-0}
STACKS=${STACKS:-"bootstorm bootstorm-fsync dnsmasq kea+tftpd-hpa"}
cargo build --release -q -p bootstorm-daemon -p bootstorm-loadgen
BIN=$PWD/target/release/bootstorm
LG=$PWD/target/release/bootstorm-loadgen
ulimit -n "$(ulimit -Hn)"

. bench/lab.sh
. bench/watch.sh
case " $STACKS " in *" bootstorm-watched "*) watch_check ;; esac
lab_up bss
ip -n "$C" addr add 198.18.0.3/16 dev "$CIF"
lg_mode "$N"
mkdir -p "$T/root"
head -c $((1 << 20)) /dev/urandom > "$T/root/boot.efi"
SHA=$(sha256sum "$T/root/boot.efi" | cut -d' ' -f1)

cat > "$T/kea.json" <<JSON
{ "Dhcp4": {
    "interfaces-config": { "interfaces": [ "$SIF" ], "dhcp-socket-type": "$KEA_SOCKET" },
    "lease-database": { "type": "memfile", "persist": false },
    "valid-lifetime": 3600,
    "next-server": "198.18.0.1",
    "boot-file-name": "boot.efi",
    "subnet4": [ { "id": 1, "subnet": "198.18.0.0/16",
                   "pools": [ { "pool": "198.18.1.0 - 198.18.255.254" } ] } ],
    "loggers": [ { "name": "kea-dhcp4", "output_options": [ { "output": "$T/kea.log" } ], "severity": "WARN" } ]
} }
JSON

PIDS=()
start_stack() {
  PIDS=()
  case $1 in
    bootstorm|bootstorm-fsync|bootstorm-xdp|bootstorm-xdp-fsync|bootstorm-nosessions|bootstorm-watched|bootstorm-polled)
      local journal=() io=socket
      case $1 in *-nosessions) journal=(--no-boot-sessions) ;; *-watched|*-polled) journal=(--api "127.0.0.1:$WATCH_PORT") ;; esac
      case $1 in *-fsync) rm -rf "$T/leases"; journal=(--lease-dir "$T/leases" --durability fsync) ;; esac
      case $1 in bootstorm-xdp*) io=xdp ;; esac
      ip netns exec "$S" "$BIN" serve --interface "$SIF" --server-ip 198.18.0.1 --pool 198.18.1.0-198.18.255.254 \
        --boot-file boot.efi --tftp-root "$T/root" --workers 2 --control-socket "$T/bs.sock" "${journal[@]}" \
        --io "$io" 2> "$T/bootstorm.log" &
      PIDS+=($!) ;;
    dnsmasq)
      rm -f "$T/dnsmasq.leases"
      ip netns exec "$S" dnsmasq --no-daemon --port=0 --conf-file=/dev/null --interface="$SIF" --bind-interfaces \
        --dhcp-range=198.18.1.0,198.18.255.254,255.255.0.0,1h --dhcp-lease-max=$((N + 1000)) --no-ping \
        --dhcp-leasefile="$T/dnsmasq.leases" --dhcp-boot=boot.efi,,198.18.0.1 \
        --enable-tftp --tftp-root="$T/root" --tftp-max=$((N + 1000)) \
        --log-facility="$T/dnsmasq.log" --pid-file="$T/dnsmasq.pid" 2> "$T/dnsmasq.err" &
      PIDS+=($!) ;;
    kea+tftpd-hpa)
      KEA_LOCKFILE_DIR=$T KEA_PIDFILE_DIR=$T ip netns exec "$S" kea-dhcp4 -c "$T/kea.json" > "$T/kea.out" 2>&1 &
      PIDS+=($!)
      ip netns exec "$S" in.tftpd -L -a 198.18.0.1:69 -s "$T/root" 2> "$T/tftpd.log" &
      PIDS+=($!) ;;
  esac
  SERVER_PID="${PIDS[*]}"
  sleep 1.5
  for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null || { echo "$1 did not start"; exit 1; }; done
}
stop_stack() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  PIDS=(); SERVER_PID=
}
# lab_down stops SERVER_PID (one PID); stop every process of the stack instead.
trap 'watch_stop x > /dev/null; stop_stack; lab_down' EXIT

declare -A DUR RATE DHCP TFTP BOOT FAILED WHY RETRIED RSS WATCH CPU
# CPU time (ns) of the stack's processes so far, from /proc/PID/task/*/schedstat.
cpu_ns() { local p; for p in "${PIDS[@]}"; do cat /proc/"$p"/task/*/schedstat 2>/dev/null; done | awk '{s+=$1} END {print s+0}'; }
for st in $STACKS; do
  start_stack "$st"
  case $st in bootstorm-watched|bootstorm-polled) watch_start "$st" ;; esac
  cpu0=$(cpu_ns)
  out=$(timeout $((LIMIT + 60)) ip netns exec "$C" "$LG" ${LG_ARGS:-} --server 198.18.0.1 $LG_TARGET \
    --clients "$N" --profile uefi-x64 --expect-size $((1 << 20)) --expect-sha256 "$SHA" \
    --boot-retries "$RETRIES" --boot-retry-delay 1 --limit "$LIMIT" --json --html "$T/report-$st.html" 2> /dev/null || true)
  CPU[$st]=$(awk -v b="$cpu0" -v a="$(cpu_ns)" 'BEGIN {printf "%.2f", (a - b) / 1e9}')
  case $st in bootstorm-watched|bootstorm-polled) WATCH[$st]=$(watch_stop "$st") ;; esac
  # The first process's peak resident memory (for the bootstorm stacks, the whole server).
  RSS[$st]=$(awk '/^VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/${PIDS[0]}/status" 2>/dev/null || echo -)
  stop_stack
  if [ -n "${REPORTS:-}" ]; then
    mkdir -p "$REPORTS"; cp -f "$T/report-$st.html" "$REPORTS/storm-$N-$st.html" 2>/dev/null || true
  fi
  read -r dur rate dhcp tftp boot failed why retried < <(python3 -c 'import json,sys
try:
    r = json.loads(sys.argv[1]); p = {x["phase"]: x["p99_ms"] for x in r["phases"]}
    why = ";".join("%s=%d" % (k.replace(" ", "_"), v) for k, v in r["failures"].items()) or "-"
    print("%.2f" % r["duration_s"], "%.0f" % r["boots_per_s"], p.get("dhcp", "-"), p.get("tftp", "-"),
          p.get("boot", "-"), r["failed"], why, sum(r.get("retried", {}).values()))
except Exception:
    print("- - - - - all no_report -")' "$out")
  DUR[$st]=$dur; RATE[$st]=$rate; DHCP[$st]=$dhcp; TFTP[$st]=$tftp; BOOT[$st]=$boot; FAILED[$st]=$failed; WHY[$st]=$why; RETRIED[$st]=$retried
  echo "$st: $N machines in $dur s ($rate boots/s), p99 dhcp $dhcp ms, tftp $tftp ms, boot $boot ms, $failed failed ($why), $retried boots started over, server CPU ${CPU[$st]} s, peak RSS ${RSS[$st]} MiB"
  [ -z "${WATCH[$st]:-}" ] || echo "${WATCH[$st]}"
done

echo
echo "kernel $(uname -r), $(nproc) cores, commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(date -u +%F)"
echo "boot retries: $RETRIES"
echo "| stack | $N machines: completion (s) | boots/s | p99 DHCP (ms) | p99 TFTP (ms) | p99 boot (ms) | failed | boots started over | server CPU (s) | peak RSS of the first process (MiB) |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
for st in $STACKS; do
  echo "| $st | ${DUR[$st]} | ${RATE[$st]} | ${DHCP[$st]} | ${TFTP[$st]} | ${BOOT[$st]} | ${FAILED[$st]} ${WHY[$st]/#-/} | ${RETRIED[$st]} | ${CPU[$st]} | ${RSS[$st]} |"
done
