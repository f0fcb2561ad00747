#!/usr/bin/env bash
# Side-by-side DHCP benchmark: perfdhcp (Kea's load generator) drives the 4-way exchange against
# bootstorm, kea-dhcp4 (memfile, persist off: bootstorm has no persistence yet either) and dnsmasq,
# one after another, in the same run, on the same veth pair between two namespaces it creates.
#
# For each server it reports:
#   - the highest offered rate (from RATES) at which both exchanges lose at most 1%, with the rate
#     perfdhcp actually achieved there;
#   - server CPU time per lease at each of FIXED_RATES (250/s is one every server sustains): CPU
#     is read from outside, summing /proc/PID/task/*/schedstat (nanoseconds on CPU) before and
#     after the run, and divided by the ACKs perfdhcp received.
# perfdhcp plays a relay (giaddr = its address 198.18.0.2) and sends to the server's address, as
# relays do; Kea in UDP socket mode only answers relayed traffic sent that way. dnsmasq runs with
# --no-ping (by default it pings every address before offering it, which caps it near one offer
# per 3 s per client) and --dhcp-lease-max raised from its default of 1,000.
# perfdhcp itself tops out near 10,000 exchanges/s on the 2-core machine, so beyond that CPU per
# lease is the figure that separates servers.
#
# SERVERS picks the servers (default "bootstorm kea dnsmasq"); also bootstorm-fsync,
# bootstorm-write, bootstorm-none (leases journaled with that durability), bootstorm-fsync-nodelay
# (fsync with commit_delay = 0 instead of the default 5 ms), bootstorm-fsync-nocoalesce (fsync with
# rx_coalesce = 0 instead of the default 1 ms) and kea-persist (memfile with persist on);
# bench/lease-compare.sh runs those six; bootstorm-nosessions runs without boot sessions, and
# bootstorm-watched with its API and dashboard on TCP and an operator watching each run
# (bench/watch.sh: headless Chromium on the storm view, the session list's first page every
# second, /metrics every 5 s, each timed; the server's CPU then includes answering them);
# bootstorm-polled is the same without the browser (bench/poll.py makes the dashboard's requests
# at its intervals and draws nothing: what answering a dashboard costs the server alone), and
# bootstorm-noise is the control for it: bootstorm without sessions beside the same poller, which
# asks a stand-in on the API's port instead of the server (what the poller costs the machine). A
# bootstorm variant with xdp- after "bootstorm-"
# (bootstorm-xdp-fsync, bootstorm-xdp-none, ...) serves on the XDP fast path (--io xdp); kea-mt
# and kea-mt-persist run Kea with multi-threading on (2 threads, as many as cores).
#
# PIN=1 puts the server on CPU 1 and perfdhcp and the watcher (with its Chromium) on CPU 0, for
# every server of the run alike: the server's CPU per lease is then its own, not inflated by a
# browser sharing its core and caches (an operator's browser runs on their own machine). Off by
# default: it halves the cores a multi-threaded server (kea-mt) has.
# A server named more than once in SERVERS runs once per naming, interleaved as named; the summary
# then gives each one's median CPU per lease over its rounds (this machine is noisy).
#
# Usage (as root): bench/dhcp-compare.sh [seconds-per-rate]   e.g. bench/dhcp-compare.sh 5
# Servers run with their defaults otherwise; each logs every lease at its default level to a file.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-5}
RATES=${RATES:-"250 500 1000 2000 4000 6000 8000 10000 12000"}
FIXED_RATES=${FIXED_RATES:-"250 2000"}
FIXED_SECS=${FIXED_SECS:-10}
SERVERS=${SERVERS:-"bootstorm kea dnsmasq"}
# perfdhcp sends to this address as a relay would (giaddr = its own); PERF_TARGET= (empty) has it
# broadcast from 0.0.0.0:68 as clients on the link do (bootstorm and dnsmasq; Kea in UDP socket
# mode answers relayed traffic only).
PERF_TARGET=${PERF_TARGET-198.18.0.1}
REF=${SERVERS%% *}  # ratios are against the first
SRV_CPU= CLI_CPU=
if [ -n "${PIN:-}" ]; then
  [ "$(nproc)" -ge 2 ] || { echo "PIN=1 needs 2 cores"; exit 1; }
  SRV_CPU="taskset -c 1" CLI_CPU="taskset -c 0"
fi
WATCH_CPU=$CLI_CPU
export PATH="$PATH:/usr/sbin:/sbin"
[ "$(id -u)" = 0 ] || { echo "needs root (network namespaces)"; exit 1; }
for t in perfdhcp kea-dhcp4 dnsmasq; do command -v $t >/dev/null || { echo "missing $t: apt-get install -y kea-admin kea-dhcp4-server dnsmasq-base"; exit 1; }; done
cargo build --release -q -p bootstorm-daemon
BIN=$PWD/target/release/bootstorm

. bench/lab.sh
. bench/watch.sh
case " $SERVERS " in *" bootstorm-watched "*) watch_check ;; esac
lab_up bsc
trap 'watch_stop x > /dev/null; lab_down' EXIT

cat > "$T/kea.json" <<JSON
{ "Dhcp4": {
    "interfaces-config": { "interfaces": [ "$SIF" ], "dhcp-socket-type": "udp" },
    "lease-database": { "type": "memfile", "persist": false, "lfc-interval": 0 },
    "valid-lifetime": 3600,
    "subnet4": [ { "id": 1, "subnet": "198.18.0.0/16",
                   "pools": [ { "pool": "198.18.1.0 - 198.18.255.254" } ],
                   "option-data": [ { "name": "routers", "data": "198.18.0.1" } ] } ],
    "loggers": [ { "name": "kea-dhcp4", "output_options": [ { "output": "$T/kea.log" } ], "severity": "INFO" } ]
} }
JSON
sed -e "s|\"persist\": false, \"lfc-interval\": 0|\"persist\": true, \"name\": \"$T/kea-leases4.csv\", \"lfc-interval\": 3600|" \
  "$T/kea.json" > "$T/kea-persist.json"
for f in kea kea-persist; do
  sed -e 's|"valid-lifetime": 3600,|"valid-lifetime": 3600, "multi-threading": { "enable-multi-threading": true, "thread-pool-size": 2, "packet-queue-size": 64 },|' \
    "$T/$f.json" > "$T/${f/kea/kea-mt}.json"
done

start_server() {
  case $1 in
    bootstorm)
      ip netns exec "$S" $SRV_CPU "$BIN" serve --interface "$SIF" --server-ip 198.18.0.1 --pool 198.18.1.0-198.18.255.254 \
        --router 198.18.0.1 --workers 2 --control-socket "$T/bs.sock" 2> "$T/bootstorm.log" & ;;
    bootstorm-nosessions|bootstorm-noise)
      # bootstorm without its boot-session registry ([sessions] enabled = false): what recording
      # sessions costs.
      ip netns exec "$S" $SRV_CPU "$BIN" serve --interface "$SIF" --server-ip 198.18.0.1 --pool 198.18.1.0-198.18.255.254 \
        --router 198.18.0.1 --workers 2 --control-socket "$T/bs.sock" --no-boot-sessions 2> "$T/bootstorm.log" & ;;
    bootstorm-watched|bootstorm-polled)
      ip netns exec "$S" $SRV_CPU "$BIN" serve --interface "$SIF" --server-ip 198.18.0.1 --pool 198.18.1.0-198.18.255.254 \
        --router 198.18.0.1 --workers 2 --control-socket "$T/bs.sock" --api "127.0.0.1:$WATCH_PORT" 2> "$T/bootstorm.log" & ;;
    bootstorm-*)
      # bootstorm-DURABILITY, or fsync with one default turned off.
      local dur=${1#bootstorm-} extra=
      case $dur in xdp-*) dur=${dur#xdp-} extra="--io xdp" ;; esac
      case $dur in
        fsync-nodelay) dur=fsync extra="$extra --commit-delay 0" ;;
        fsync-nocoalesce) dur=fsync extra="$extra --rx-coalesce 0" ;;
      esac
      rm -rf "$T/leases"
      ip netns exec "$S" $SRV_CPU "$BIN" serve --interface "$SIF" --server-ip 198.18.0.1 --pool 198.18.1.0-198.18.255.254 \
        --router 198.18.0.1 --workers 2 --control-socket "$T/bs.sock" \
        --lease-dir "$T/leases" --durability "$dur" $extra 2> "$T/bootstorm.log" & ;;
    kea)
      KEA_LOCKFILE_DIR=$T KEA_PIDFILE_DIR=$T ip netns exec "$S" $SRV_CPU kea-dhcp4 -c "$T/kea.json" > "$T/kea.out" 2>&1 & ;;
    kea-persist|kea-mt|kea-mt-persist)
      rm -f "$T"/kea-leases4.csv*
      KEA_LOCKFILE_DIR=$T KEA_PIDFILE_DIR=$T ip netns exec "$S" $SRV_CPU kea-dhcp4 -c "$T/$1.json" > "$T/kea.out" 2>&1 & ;;
    dnsmasq)
      ip netns exec "$S" $SRV_CPU dnsmasq --no-daemon --port=0 --conf-file=/dev/null --interface="$SIF" --bind-interfaces \
        --no-ping --dhcp-range=198.18.1.0,198.18.255.254,255.255.0.0,1h --dhcp-option=3,198.18.0.1 --dhcp-lease-max=200000 \
        --dhcp-leasefile="$T/dnsmasq.leases" --log-facility="$T/dnsmasq.log" --pid-file="$T/dnsmasq.pid" 2> "$T/dnsmasq.err" & ;;
  esac
  SERVER_PID=$!
  sleep 1.5
  kill -0 "$SERVER_PID" 2>/dev/null || { echo "$1 did not start"; cat "$T"/*.log "$T"/*.out "$T"/*.err 2>/dev/null | tail -20; exit 1; }
  case $1 in bootstorm-watched|bootstorm-polled|bootstorm-noise) watch_start "$1" ;; esac
}

stop_server() {
  watch_stop "$1"
  # The server's peak resident memory (MiB), for the fixed-rate line.
  RSS=$(awk '/^VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$SERVER_PID/status" 2>/dev/null || echo -)
  kill "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=
  rm -f "$T/dnsmasq.leases"
}

# ip netns exec execs the server, so $SERVER_PID is the server itself.
cpu_ns() { cat /proc/"$SERVER_PID"/task/*/schedstat 2>/dev/null | awk '{s+=$1} END {print s+0}'; }
# The same for bootstorm's DHCP workers alone (the rest: the API, the journal, the main loop).
# Prints "NS RUNS": their nanoseconds on CPU and how many times they were put on a CPU (schedstat's
# third field: each wakeup is one).
worker_ns() {
  local t s=0 r=0 a b c
  for t in /proc/"$SERVER_PID"/task/*; do
    case $(cat "$t/comm" 2>/dev/null) in
      dhcp-worker-*) read -r a b c < "$t/schedstat" 2>/dev/null || continue; s=$((s + a)); r=$((r + c)) ;;
    esac
  done
  echo "$s $r"
}

# perfdhcp at rate $1 for $2 seconds; prints "achieved_rate ack_drops_pct offer_drops_pct acks naks".
perf() {
  local out
  out=$(ip netns exec "$C" $CLI_CPU perfdhcp -4 -l "$CIF" -r "$1" -R 1000000 -p "$2" $PERF_TARGET 2>&1 || true)
  echo "$out" > "$T/perf.last"
  awk '
    /^Rate:/ {rate=$2}
    /Statistics for: DISCOVER-OFFER/ {sec=1} /Statistics for: REQUEST-ACK/ {sec=2}
    /drops ratio:/ {gsub("%","",$3); d[sec]=$3}
    /received packets:/ {r[sec]=$3}
    /rejected leases:/ {n[sec]=$3}
    END {printf "%s %s %s %s %s\n", rate, d[2], d[1], r[2], n[2]}' <<< "$out"
}

declare -A BEST ACH CPU ALL
for srv in $SERVERS; do
  BEST[$srv]=none; ACH[$srv]=-
  for rate in $RATES; do
    start_server $srv
    read -r achieved ackdrop offdrop acks naks < <(perf "$rate" "$SECS")
    stop_server $srv
    printf '%-9s offered %6s/s  achieved %8s/s  drops offer %8s%%  ack %8s%%  acks %7s  naks %s\n' \
      "$srv" "$rate" "$achieved" "$offdrop" "$ackdrop" "$acks" "$naks"
    if awk -v a="$ackdrop" -v o="$offdrop" 'BEGIN {exit !(a != "" && o != "" && a <= 1 && o <= 1)}'; then
      BEST[$srv]=$rate; ACH[$srv]=$achieved
    else
      break
    fi
  done
  for fr in $FIXED_RATES; do
    start_server $srv
    before=$(cpu_ns); read -r wbefore rbefore < <(worker_ns)
    read -r achieved ackdrop offdrop acks naks < <(perf "$fr" "$FIXED_SECS")
    after=$(cpu_ns); read -r wafter rafter < <(worker_ns)
    workers=$(awk -v b="$wbefore" -v a="$wafter" -v n="$acks" 'BEGIN {if (n > 0 && a > b) printf "%.1f", (a-b)/n/1000; else print "-"}')
    wruns=$(awk -v b="$rbefore" -v a="$rafter" -v n="$acks" 'BEGIN {if (n > 0 && a > b) printf "%.2f", (a-b)/n; else print "-"}')
    stop_server $srv
    cpu=$(awk -v b="$before" -v a="$after" -v n="$acks" 'BEGIN {if (n > 0) printf "%.1f", (a-b)/n/1000; else print "-"}')
    # A rate the server does not sustain (over 1% drops) gets no CPU figure: it would flatter it.
    if ! awk -v a="$ackdrop" -v o="$offdrop" 'BEGIN {exit !(a != "" && o != "" && a <= 1 && o <= 1)}'; then
      cpu="- (drops ${offdrop}%/${ackdrop}%)"
    fi
    CPU[$srv,$fr]=$cpu
    ALL[$srv,$fr]="${ALL[$srv,$fr]:-} ${cpu%% *}"
    printf '%-9s at %s/s for %ss: %s ACKs, CPU %s us/lease (DHCP workers %s, woken %s times per lease), peak RSS %s MiB\n' "$srv" "$fr" "$FIXED_SECS" "$acks" "$cpu" "$workers" "$wruns" "$RSS"
  done
done

echo
echo "kernel $(uname -r), $(nproc) cores, commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(date -u +%F)${PIN:+, server pinned to CPU 1, clients to CPU 0}"
header="| server | highest rate with <=1% drops (offered / achieved, /s) |"
sep="| --- | --- |"
for fr in $FIXED_RATES; do header="$header CPU/lease at ${fr}/s (us) | vs $REF |"; sep="$sep --- | --- |"; done
echo "$header"; echo "$sep"
# (a server run more than once shows its last round here; the medians follow)
UNIQ=$(tr ' ' '\n' <<< "$SERVERS" | awk 'NF && !seen[$0]++')
for srv in $UNIQ; do
  row="| $srv | ${BEST[$srv]} / ${ACH[$srv]} |"
  for fr in $FIXED_RATES; do
    c=${CPU[$srv,$fr]}; b=${CPU[$REF,$fr]}
    ratio=$(awk -v x="$c" -v b="$b" 'BEGIN {if (x+0 > 0 && b+0 > 0) printf "%.1fx", x/b; else print "-"}')
    row="$row $c | $ratio |"
  done
  echo "$row"
done

# Servers run more than once: each one's median CPU per lease over its rounds, against REF's.
if [ "$(wc -w <<< "$SERVERS")" -gt "$(wc -w <<< "$UNIQ")" ]; then
  med() { tr ' ' '\n' <<< "$1" | awk '$1+0 > 0' | sort -n | awk '{v[NR]=$1} END {if (NR == 0) print "-"; else if (NR % 2) print v[(NR+1)/2]; else printf "%.1f", (v[NR/2]+v[NR/2+1])/2}'; }
  echo
  echo "| server | rounds | CPU/lease per round at each rate (us) | median | vs $REF |"
  echo "| --- | --- | --- | --- | --- |"
  for srv in $UNIQ; do
    for fr in $FIXED_RATES; do
      m=$(med "${ALL[$srv,$fr]}"); b=$(med "${ALL[$REF,$fr]}")
      ratio=$(awk -v x="$m" -v b="$b" 'BEGIN {if (x+0 > 0 && b+0 > 0) printf "%+.1f%%", (x/b-1)*100; else print "-"}')
      echo "| $srv at ${fr}/s | $(wc -w <<< "${ALL[$srv,$fr]}") |${ALL[$srv,$fr]} | $m | $ratio |"
    done
  done
fi
