# Sourced by the comparison scripts: a two-namespace lab on one veth pair, as in
# ../shared/TESTING.md, removed by exact name on exit (also on failure or Ctrl-C).
# Sets S, C (namespaces), SIF, CIF (interfaces; server 198.18.0.1/16, client 198.18.0.2/16),
# T (a temporary directory) and SERVER_PID (the caller's server, stopped on exit).
# $1: a short prefix for the names. QUEUES (default 1): receive and transmit queues on each end of
# the veth (a multi-queue NIC: the XDP fast path runs one AF_XDP socket and worker per queue).
lab_up() {
  local P=$1$$
  S=${P}S C=${P}C SIF=${P}s CIF=${P}c
  T=$(mktemp -d)
  SERVER_PID=
  trap lab_down EXIT
  ip netns add "$S"; ip netns add "$C"
  local q=${QUEUES:-1}
  ip link add "$SIF" netns "$S" numrxqueues "$q" numtxqueues "$q" type veth \
    peer name "$CIF" netns "$C" numrxqueues "$q" numtxqueues "$q"
  ip -n "$S" addr add 198.18.0.1/16 dev "$SIF"; ip -n "$C" addr add 198.18.0.2/16 dev "$CIF"
  for ns in "$S" "$C"; do ip -n "$ns" link set lo up; done
  ip -n "$S" link set "$SIF" up; ip -n "$C" link set "$CIF" up
  # More than one queue: transmit queue i from CPU i (XPS), so a sender pinned to a CPU (the
  # load generator's --pin) always lands on one receive queue of the other end, as RSS would
  # keep a flow on one queue.
  if [ "$q" -gt 1 ]; then
    local i
    for ((i = 0; i < q; i++)); do
      ip netns exec "$C" sh -c "printf %x $((1 << i)) > /sys/class/net/$CIF/queues/tx-$i/xps_cpus"
      ip netns exec "$S" sh -c "printf %x $((1 << i)) > /sys/class/net/$SIF/queues/tx-$i/xps_cpus"
    done
  fi
}

lab_down() {
  # A caller that changed a host-wide setting for the run defines restore_neigh to put it back.
  if declare -F restore_neigh > /dev/null; then restore_neigh || true; fi
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
  ip netns del "$C" 2>/dev/null || true
  ip netns del "$S" 2>/dev/null || true
  rm -rf "$T"
}

# lg_mode N: the load generator's target flags for N machines, from LG_MODE. relay (default):
# the machines behind two relay agents (unicast DHCP to port 67, TFTP from the relays'
# addresses); xdp: its AF_XDP mode, the machines on the wire as firmware is (DHCP broadcast from
# 0.0.0.0, TFTP from each leased address, a worker per queue), Kea then on raw sockets (it
# answers clients without an address only so). The server's kernel then keeps a neighbour per
# machine: the host's table is raised for the run and put back by lab_down. Sets LG_TARGET and
# KEA_SOCKET.
lg_mode() {
  case ${LG_MODE:-relay} in
    relay) LG_TARGET="--relay 198.18.0.2,198.18.0.3" KEA_SOCKET=udp ;;
    xdp)
      LG_TARGET="--interface $CIF --xdp" KEA_SOCKET=raw
      GC3=$(sysctl -n net.ipv4.neigh.default.gc_thresh3)
      GC2=$(sysctl -n net.ipv4.neigh.default.gc_thresh2)
      sysctl -qw net.ipv4.neigh.default.gc_thresh3=$(($1 * 2 + 4096)) net.ipv4.neigh.default.gc_thresh2=$(($1 * 2 + 2048))
      restore_neigh() { sysctl -qw net.ipv4.neigh.default.gc_thresh3="$GC3" net.ipv4.neigh.default.gc_thresh2="$GC2"; } ;;
    *) echo "LG_MODE: relay or xdp"; exit 1 ;;
  esac
}
