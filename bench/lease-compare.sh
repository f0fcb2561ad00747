#!/usr/bin/env bash
# Durable leases side by side (issue 4): perfdhcp against bootstorm with its journal at
# durability fsync (with the defaults, 5 ms commit delay and 1 ms receive coalescing, and with each of
# them off), write and none, and Kea's memfile with persist on, in one run on one veth pair.
# Same method and report as dhcp-compare.sh (highest rate with <=1% drops; server CPU per lease at
# FIXED_RATES, default 250/s and 2000/s).
#
# Usage (as root): bench/lease-compare.sh [seconds-per-rate]
set -euo pipefail
cd "$(dirname "$0")/.."
SERVERS=${SERVERS:-"bootstorm-fsync bootstorm-fsync-nodelay bootstorm-fsync-nocoalesce bootstorm-write bootstorm-none kea-persist"} exec bench/dhcp-compare.sh "$@"
