#!/usr/bin/env bash
# The XDP fast path against the socket path and the glue stack, each figure of issue 14 in one
# run of this script (each part builds its own veth pair between two namespaces, one after the
# other; nothing else runs meanwhile):
#   1. perfdhcp at fixed rates (2,000/s and 8,000/s): server CPU per fsync-durable lease, and the
#      highest rate with <=1% drops: bootstorm on XDP, on sockets, kea-dhcp4 multi-threaded with
#      persist (bench/dhcp-compare.sh);
#   2. peak leases/s with the load generator in its AF_XDP mode (LG_MODE=xdp: the machines on
#      the wire, one worker per queue), N machines
#      (bench/loadgen-dhcp-peak.sh);
#   3. a storm of STORM machines doing DHCP + a 1 MiB boot file over TFTP, the load generator in
#      its AF_XDP mode too (bench/storm-compare.sh);
#   4. TFTP: atftp windowed, the load generator's 200 x 1 MiB, curl lockstep (blksize 1468 and
#      512, 50 clients at once) against both paths and tftpd-hpa (bench/tftp-compare.sh).
# The veth has two queues (QUEUES=2, XPS: transmit queue i from CPU i) and the load generator's
# two workers (one per queue in AF_XDP mode, one per relay in perfdhcp's parts) are pinned one
# to each CPU (LG_ARGS="--pin 0,1"), so the load spreads over both receive queues as RSS spreads
# flows on a NIC: the fast path runs a worker per queue, the socket path its two workers on one
# port, on the same wire.
# Usage (as root): bench/xdp-compare.sh [peak-machines] [storm-machines]   (default 20000 10000)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-20000}
STORM=${2:-10000}
export QUEUES=${QUEUES:-2} LG_ARGS=${LG_ARGS:-"--pin 0,1"}
echo "== 1. perfdhcp: CPU per lease"
SERVERS="bootstorm-fsync bootstorm-xdp-fsync kea-mt-persist" RATES="2000 4000 8000 10000" \
  FIXED_RATES="2000 8000" FIXED_SECS=5 bench/dhcp-compare.sh 3 | tail -6
echo "== 2. load generator: peak leases/s ($N machines)"
LG_MODE=xdp SERVERS="bootstorm-fsync bootstorm-xdp-fsync kea-mt-persist" bench/loadgen-dhcp-peak.sh "$N" | tail -6
echo "== 3. storm: $STORM machines, DHCP + 1 MiB over TFTP"
LG_MODE=xdp STACKS="bootstorm-fsync bootstorm-xdp-fsync kea+tftpd-hpa" bench/storm-compare.sh "$STORM" | tail -8
echo "== 4. TFTP"
SERVERS="bootstorm bootstorm-xdp tftpd-hpa" LOCK_SERVERS="bootstorm bootstorm-xdp tftpd-hpa" \
  bench/tftp-compare.sh | tail -16
