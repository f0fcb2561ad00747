# Sourced by the comparison scripts: a two-namespace lab on one veth pair, as in
# ../shared/TESTING.md, removed by exact name on exit (also on failure or Ctrl-C).
# Sets S, C (namespaces), SIF, CIF (interfaces; server 198.18.0.1/16, client 198.18.0.2/16),
# T (a temporary directory) and SERVER_PID (the caller's server, stopped on exit).
# $1: a short prefix for the names.
lab_up() {
  local P=$1$$
  S=${P}S C=${P}C SIF=${P}s CIF=${P}c
  T=$(mktemp -d)
  SERVER_PID=
  trap lab_down EXIT
  ip netns add "$S"; ip netns add "$C"
  ip link add "$SIF" netns "$S" type veth peer name "$CIF" netns "$C"
  ip -n "$S" addr add 198.18.0.1/16 dev "$SIF"; ip -n "$C" addr add 198.18.0.2/16 dev "$CIF"
  for ns in "$S" "$C"; do ip -n "$ns" link set lo up; done
  ip -n "$S" link set "$SIF" up; ip -n "$C" link set "$CIF" up
}

lab_down() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
  ip netns del "$C" 2>/dev/null || true
  ip netns del "$S" 2>/dev/null || true
  rm -rf "$T"
}
