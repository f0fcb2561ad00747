#!/usr/bin/env bash
# The iSCSI target against tgt (issue 15), one run, one veth pair, one backing file: libiscsi's
# iscsi-perf for 4k random reads at queue depth 32 and 1 MiB sequential reads at depth 1, and
# qemu-img bench for 4k random writes at depth 32 (`-w`, an iscsi:// URL through qemu's libiscsi
# driver), one initiator and then 8 at once (their IOPS summed), then the random reads again
# (after the writes). The backing file is read once before each target so all start from a warm
# page cache. Targets:
#
#   bootstorm          the file as a plain disk, block I/O on io_uring
#   bootstorm-pread    the same on the pread fallback ([iscsi] io = "pread")
#   bootstorm-overlay  the file as a golden image, read and written through the initiator's
#                      overlay (empty at first: reads of the golden image; after the writes,
#                      reads from both)
#   tgt                tgtd, the file as LUN 1 (its default rdwr backing store)
#
# Every initiator names itself the same (one overlay).
#
# Usage (as root): bench/iscsi-compare.sh [seconds per figure]   (default 10)
# TARGETS="bootstorm tgt" to run some. BEFORE=path/to/an/older/bootstorm adds the target
# bootstorm-before (that binary, io_uring): a change's cost side by side.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin:/sbin"
[ "$(id -u)" = 0 ] || { echo "needs root (network namespaces)"; exit 1; }
for t in tgtd iscsi-perf qemu-img; do
  command -v $t >/dev/null || { echo "missing $t: apt-get install -y tgt libiscsi-bin qemu-utils qemu-block-extra"; exit 1; }
done
SECS=${1:-10}
TARGETS=${TARGETS:-"bootstorm bootstorm-pread bootstorm-overlay tgt"}
INIT=iqn.2026-12.bench:initiator
cargo build --release -q -p bootstorm-daemon
BIN=$PWD/target/release/bootstorm
IQN=iqn.2026-12.bench.bootstorm:disk0

. bench/lab.sh
lab_up isc
# On any exit the target in the namespace is stopped its own way (tgtd ignores SIGTERM).
CUR=
trap 'stop_target "$CUR"; lab_down' EXIT
DISK=$T/disk.img
head -c $((1 << 30)) /dev/urandom > "$DISK"

start_target() {
  cat "$DISK" > /dev/null
  case $1 in
    bootstorm|bootstorm-pread|bootstorm-overlay|bootstorm-before)
      local io=io_uring extra= bin=$BIN
      [ "$1" = bootstorm-before ] && bin=${BEFORE:?BEFORE=path to the older binary}
      [ "$1" = bootstorm-pread ] && io=pread
      [ "$1" = bootstorm-overlay ] && { rm -rf "$T/overlays"; extra="overlays = \"$T/overlays\""; }
      printf '[server]\ncontrol_socket = "%s"\n[iscsi]\naddress = "198.18.0.1:3260"\nio = "%s"\n[[iscsi.target]]\nname = "%s"\nfile = "%s"\n%s\n' \
        "$T/bs.sock" "$io" "$IQN" "$DISK" "$extra" > "$T/bs.toml"
      ip netns exec "$S" "$bin" serve --config "$T/bs.toml" 2> "$T/bootstorm.log" &
      SERVER_PID=$!; LUN=0 ;;
    tgt)
      # tgtd's control socket is a path of its own here, so a tgtd of the host is untouched.
      ip netns exec "$S" tgtd -f --iscsi portal=198.18.0.1:3260 -C 77 > "$T/tgtd.log" 2>&1 &
      SERVER_PID=$!
      sleep 1
      ip netns exec "$S" tgtadm -C 77 --lld iscsi --op new --mode target --tid 1 -T "$IQN"
      ip netns exec "$S" tgtadm -C 77 --lld iscsi --op new --mode logicalunit --tid 1 --lun 1 -b "$DISK"
      ip netns exec "$S" tgtadm -C 77 --lld iscsi --op bind --mode target --tid 1 -I ALL
      LUN=1 ;;
  esac
  sleep 1
  kill -0 "$SERVER_PID" 2>/dev/null || { echo "$1 did not start"; exit 1; }
}
stop_target() {
  [ -n "$SERVER_PID" ] || return 0
  # tgtd ignores SIGTERM: it stops when told through its control socket.
  [ "$1" = tgt ] && { ip netns exec "$S" tgtadm -C 77 --op delete --mode system > /dev/null 2>&1 || true; }
  kill "$SERVER_PID" 2>/dev/null || true
  local i; for i in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=
}

# iscsi-perf's last "iops average N (M MB/s)".
perf() {
  timeout $((SECS + 20)) ip netns exec "$C" iscsi-perf -i "$INIT" -t "$SECS" "$@" 2>&1 | tr '\r' '\n' \
    | { grep -o 'iops average [0-9]* ([0-9]* MB/s)' || echo "iops average - (-"; } | tail -1 | awk '{print $3, substr($4, 2)}'
}
# qemu-img bench: IOPS of N requests of 4k random writes at depth 32 (bench prints the seconds).
qbench() {
  local n=$1 out secs
  out=$(timeout $((SECS * 4 + 60)) ip netns exec "$C" qemu-img bench --image-opts -w -t none -c "$n" -d 32 -s 4096 -S 4096 \
    "driver=raw,file.driver=iscsi,file.transport=tcp,file.portal=198.18.0.1,file.target=$IQN,file.lun=$LUN,file.initiator-name=$INIT" 2>&1) || true
  secs=$(echo "$out" | grep -o 'Run completed in [0-9.]* seconds' | awk '{print $4}' || true)
  [ -n "$secs" ] && python3 -c "print(round($n / $secs))" || echo "- ($out)"
}

declare -A RR SEQ WR WR8 RR2
for t in $TARGETS; do
  CUR=$t
  start_target "$t"
  url="iscsi://198.18.0.1/$IQN/$LUN"
  read -r iops mbs < <(perf -m 32 -b 8 -r "$url"); RR[$t]="$iops ($mbs MB/s)"
  read -r iops mbs < <(perf -m 1 -b 2048 "$url"); SEQ[$t]="$mbs MB/s ($iops/s)"
  WR[$t]=$(qbench $((SECS * 5000)))
  total=0
  pids=(); for i in $(seq 8); do (qbench $((SECS * 1000)) > "$T/wr8.$i") & pids+=($!); done
  for p in "${pids[@]}"; do wait "$p"; done
  for i in $(seq 8); do v=$(cat "$T/wr8.$i"); case $v in -*) total=-;; *) [ "$total" = - ] || total=$((total + v));; esac; done
  WR8[$t]=$total
  read -r iops mbs < <(perf -m 32 -b 8 -r "$url"); RR2[$t]="$iops ($mbs MB/s)"
  stop_target "$t"; CUR=
  echo "$t: 4k random read QD32 ${RR[$t]}, 1 MiB sequential read QD1 ${SEQ[$t]}, 4k random write QD32 ${WR[$t]} IOPS, 8 initiators ${WR8[$t]} IOPS, 4k random read after the writes ${RR2[$t]}"
done

echo
echo "kernel $(uname -r), $(nproc) cores, commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(date -u +%F), ${SECS}s per figure, 1 GiB backing file"
echo "| target | 4k random read QD32 (IOPS) | 1 MiB sequential read QD1 | 4k random write QD32 (IOPS) | the same, 8 initiators at once (IOPS) | 4k random read QD32 after the writes (IOPS) |"
echo "| --- | --- | --- | --- | --- | --- |"
for t in $TARGETS; do echo "| $t | ${RR[$t]} | ${SEQ[$t]} | ${WR[$t]} | ${WR8[$t]} | ${RR2[$t]} |"; done
