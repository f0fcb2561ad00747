#!/usr/bin/env bash
# Side-by-side TFTP benchmark on one veth pair between two namespaces it creates: bootstorm,
# tftpd-hpa and dnsmasq, one after another, in the same run, driven by two clients: atftp (which
# speaks RFC 7440 windowsize; servers without it answer an OACK without the option and atftp
# falls back to lockstep, which is what the "windowsize" columns then measure for them) and the
# bundled bootstorm-loadgen in --tftp-only mode (receives with recvmmsg and UDP GRO, so it is not
# the bottleneck the way atftp's one recvfrom per datagram is).
#
#   1. one client fetching a 32 MiB file at blksize 1468 with windowsize 1, 16 and 64: MB/s;
#   2. 200 clients at once fetching a 1 MiB file (blksize 1468, windowsize 16): total seconds
#      and failures;
#   3. lockstep with curl (bootstorm and tftpd-hpa): 32 MiB at blksize 1468 and 512, and 50
#      clients fetching 1 MiB at once, medians of 3. LOCKSTEP_ONLY=1 runs only this, twice,
#      interleaved.
# dnsmasq runs with --tftp-max=1000 (its default of 50 concurrent transfers would refuse most
# of the 200) and DNS off; tftpd-hpa with -L (foreground) and its defaults.
#
# Usage (as root): bench/tftp-compare.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin:/sbin"
[ "$(id -u)" = 0 ] || { echo "needs root (network namespaces)"; exit 1; }
for t in atftp in.tftpd dnsmasq; do command -v $t >/dev/null || { echo "missing $t: apt-get install -y atftp tftpd-hpa dnsmasq-base"; exit 1; }; done
cargo build --release -q -p bootstorm-daemon -p bootstorm-loadgen
BIN=$PWD/target/release/bootstorm
LG=$PWD/target/release/bootstorm-loadgen
CLIENTS=${CLIENTS:-200}
# SERVERS: the windowed and many-client rows; LOCK_SERVERS: the curl lockstep rows. bootstorm-xdp
# is bootstorm with DHCP and TFTP on the XDP fast path (--io xdp).
SERVERS=${SERVERS:-"bootstorm tftpd-hpa dnsmasq"}
LOCK_SERVERS=${LOCK_SERVERS:-"bootstorm tftpd-hpa"}

. bench/lab.sh
lab_up bst
mkdir -p "$T/root" "$T/out"
head -c $((32 << 20)) /dev/urandom > "$T/root/big.bin"
head -c $((1 << 20)) /dev/urandom > "$T/root/one.bin"

start_server() {
  case $1 in
    bootstorm|bootstorm-xdp)
      local io=socket
      [ "$1" = bootstorm-xdp ] && io=xdp
      ip netns exec "$S" "$BIN" serve --interface "$SIF" --server-ip 198.18.0.1 --pool 198.18.1.1-198.18.1.9 \
        --tftp-root "$T/root" --workers 2 --control-socket "$T/bs.sock" --io "$io" 2> "$T/bootstorm.log" & ;;
    tftpd-hpa)
      ip netns exec "$S" in.tftpd -L -a 198.18.0.1:69 -s "$T/root" 2> "$T/tftpd.log" & ;;
    dnsmasq)
      ip netns exec "$S" dnsmasq --no-daemon --port=0 --conf-file=/dev/null --interface="$SIF" --bind-interfaces \
        --enable-tftp --tftp-root="$T/root" --tftp-max=1000 --log-facility="$T/dnsmasq.log" --pid-file="$T/dnsmasq.pid" 2> "$T/dnsmasq.err" & ;;
  esac
  SERVER_PID=$!
  sleep 1
  kill -0 "$SERVER_PID" 2>/dev/null || { echo "$1 did not start"; exit 1; }
}
stop_server() { kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=; }

fetch() { # file window out; bounded in time like every load loop here
  timeout 120 ip netns exec "$C" atftp --option "blksize 1468" --option "windowsize $2" -g -r "$1" -l "$3" 198.18.0.1 >/dev/null 2>&1
}

# bootstorm-loadgen: N machines fetch FILE with windowsize W; prints "p50_ms duration_s failed".
lg() { # clients file window size
  timeout 150 ip netns exec "$C" "$LG" ${LG_ARGS:-} --server 198.18.0.1 --relay 198.18.0.2 --tftp-only "$2" \
    --clients "$1" --windowsize "$3" --blksize 1468 --expect-size "$4" --limit 120 --json 2> /dev/null |
    python3 -c 'import json,sys; r=json.load(sys.stdin); t=[p for p in r["phases"] if p["phase"]=="tftp"]; print(t[0]["p50_ms"] if t else 0, r["duration_s"], r["failed"])' ||
    echo "0 0 all"
}

# Lockstep, as every legacy PXE ROM and much UEFI firmware fetches: curl (one block per ACK, no
# windowsize), 3 runs each, the median: a 32 MiB file at blksize 1468 and at 512 (MB/s), and
# LOCKSTEP_CLIENTS (50) curls fetching the 1 MiB file at once (s until the last is done).
LOCKSTEP_CLIENTS=${LOCKSTEP_CLIENTS:-50}
curl_get() { # file blksize out
  timeout 120 ip netns exec "$C" curl -s --tftp-blksize "$2" -o "$3" "tftp://198.18.0.1/$1"
}
median3() { printf '%s\n' "$@" | sort -g | sed -n 2p; }
declare -A LOCK
lockstep() { # server
  local srv=$1 bs runs s e
  for bs in 1468 512; do
    runs=()
    for _ in 1 2 3; do
      rm -f "$T/out/big"
      s=$(date +%s.%N)
      if curl_get big.bin "$bs" "$T/out/big" && cmp -s "$T/root/big.bin" "$T/out/big"; then
        e=$(date +%s.%N)
        runs+=("$(awk -v s="$s" -v e="$e" 'BEGIN {printf "%.1f", 32*1.048576/(e-s)}')")
      else
        runs+=(0)
      fi
    done
    LOCK[$srv,$bs]=$(median3 "${runs[@]}")
  done
  runs=()
  for _ in 1 2 3; do
    rm -f "$T"/out/l.*
    local pids=() fails=0
    s=$(date +%s.%N)
    for i in $(seq 1 "$LOCKSTEP_CLIENTS"); do curl_get one.bin 1468 "$T/out/l.$i" & pids+=($!); done
    wait "${pids[@]}" || true
    e=$(date +%s.%N)
    for i in $(seq 1 "$LOCKSTEP_CLIENTS"); do cmp -s "$T/root/one.bin" "$T/out/l.$i" || fails=$((fails + 1)); done
    if [ "$fails" = 0 ]; then runs+=("$(awk -v s="$s" -v e="$e" 'BEGIN {printf "%.2f", e-s}')"); else runs+=(999); fi
  done
  LOCK[$srv,many]=$(median3 "${runs[@]}")
  echo "$srv lockstep (curl): blksize 1468 ${LOCK[$srv,1468]} MB/s, 512 ${LOCK[$srv,512]} MB/s, $LOCKSTEP_CLIENTS x 1 MiB ${LOCK[$srv,many]} s"
}
if [ -n "${LOCKSTEP_ONLY:-}" ]; then
  # Interleaved, twice: bootstorm, tftpd-hpa, bootstorm, tftpd-hpa.
  for round in 1 2; do
    for srv in $LOCK_SERVERS; do
      start_server $srv; lockstep $srv; stop_server
      for k in 1468 512 many; do LOCK[$srv,$k,$round]=${LOCK[$srv,$k]}; done
    done
  done
  echo
  echo "kernel $(uname -r), $(nproc) cores, commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(date -u +%F)"
  echo "| server | round | curl lockstep 32 MiB blksize 1468 (MB/s) | blksize 512 (MB/s) | $LOCKSTEP_CLIENTS x 1 MiB at once (s) |"
  echo "| --- | --- | --- | --- | --- |"
  for round in 1 2; do
    for srv in $LOCK_SERVERS; do
      echo "| $srv | $round | ${LOCK[$srv,1468,$round]} | ${LOCK[$srv,512,$round]} | ${LOCK[$srv,many,$round]} |"
    done
  done
  exit 0
fi

declare -A MBS TOTAL FAIL
for srv in $SERVERS; do
  start_server $srv
  for w in 1 16 64; do
    rm -f "$T/out/big"
    s=$(date +%s.%N)
    if fetch big.bin "$w" "$T/out/big" && cmp -s "$T/root/big.bin" "$T/out/big"; then
      e=$(date +%s.%N)
      MBS[atftp,$srv,$w]=$(awk -v s="$s" -v e="$e" 'BEGIN {printf "%.1f", 32*1.048576/(e-s)}')
    else
      MBS[atftp,$srv,$w]="failed"
    fi
    read -r ms _ failed < <(lg 1 big.bin "$w" $((32 << 20)))
    if [ "$failed" = 0 ]; then
      MBS[loadgen,$srv,$w]=$(awk -v ms="$ms" 'BEGIN {printf "%.1f", 32*1.048576/(ms/1000)}')
    else
      MBS[loadgen,$srv,$w]="failed"
    fi
    echo "$srv windowsize $w: atftp ${MBS[atftp,$srv,$w]} MB/s, loadgen ${MBS[loadgen,$srv,$w]} MB/s"
  done
  rm -f "$T"/out/c.*
  s=$(date +%s.%N)
  pids=()
  for i in $(seq 1 "$CLIENTS"); do fetch one.bin 16 "$T/out/c.$i" & pids+=($!); done
  # Only the clients: a bare `wait` would wait for the server too.
  wait "${pids[@]}" || true
  e=$(date +%s.%N)
  fails=0
  for i in $(seq 1 "$CLIENTS"); do cmp -s "$T/root/one.bin" "$T/out/c.$i" || fails=$((fails + 1)); done
  TOTAL[atftp,$srv]=$(awk -v s="$s" -v e="$e" 'BEGIN {printf "%.2f", e-s}'); FAIL[atftp,$srv]=$fails
  read -r _ secs failed < <(lg "$CLIENTS" one.bin 16 $((1 << 20)))
  TOTAL[loadgen,$srv]=$secs; FAIL[loadgen,$srv]=$failed
  echo "$srv $CLIENTS x 1 MiB: atftp ${TOTAL[atftp,$srv]} s, $fails failed; loadgen $secs s, $failed failed"
  [ "$srv" = dnsmasq ] || lockstep "$srv"
  stop_server
done

echo
echo "kernel $(uname -r), $(nproc) cores, commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(date -u +%F)"
echo "| server | client | 32 MiB, windowsize 1 (MB/s) | windowsize 16 | windowsize 64 | $CLIENTS x 1 MiB at once (s) | failed |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
for cl in atftp loadgen; do
  for srv in $SERVERS; do
    echo "| $srv | $cl | ${MBS[$cl,$srv,1]} | ${MBS[$cl,$srv,16]} | ${MBS[$cl,$srv,64]} | ${TOTAL[$cl,$srv]} | ${FAIL[$cl,$srv]} |"
  done
done
echo
echo "| server | curl lockstep 32 MiB blksize 1468 (MB/s) | blksize 512 (MB/s) | $LOCKSTEP_CLIENTS x 1 MiB at once (s) |"
echo "| --- | --- | --- | --- |"
for srv in $LOCK_SERVERS; do
  echo "| $srv | ${LOCK[$srv,1468]} | ${LOCK[$srv,512]} | ${LOCK[$srv,many]} |"
done
