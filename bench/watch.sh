# Sourced by storm-compare.sh and dhcp-compare.sh: an operator watching the run, for the stacks
# named bootstorm-watched (bootstorm with its boot sessions, its API and dashboard on TCP in the
# server's namespace, 127.0.0.1:$WATCH_PORT, reads open). dashboard/tests/watch.bench.mjs runs
# in that namespace: headless Chromium with the dashboard's storm view open, the session list's
# first page fetched every second (WATCH_SESSIONS_MS=1000, as the dashboard's session tab polls)
# and /metrics scraped every 5 s (WATCH_METRICS_MS=5000), all timed. Needs chromium
# and `npm ci --prefix dashboard` (playwright-core). A LABEL ending in -polled runs bench/poll.py
# instead: the same requests at the same intervals (and the storm view's), no browser; one ending
# in -noise runs that poller against a stand-in (bench/poll.py --stand-in), not the server. Uses
# T and S from lab.sh.
WATCH_PORT=${WATCH_PORT:-8099}
WATCH_PID=
STANDIN_PID=

watch_check() {
  [ -d dashboard/node_modules/playwright-core ] || { echo "the watcher needs: npm ci --prefix dashboard"; exit 1; }
  command -v chromium > /dev/null || { echo "the watcher needs: apt-get install -y chromium"; exit 1; }
}

# watch_start LABEL: starts the watcher and waits (30 s at most) until its page is up.
watch_start() {
  rm -f "$T/watch.stop" "$T/watch.stop.ready"
  case $1 in
    *-noise)
      ip netns exec "$S" ${WATCH_CPU:-} python3 bench/poll.py --stand-in "$WATCH_PORT" 2> "$T/standin.err" &
      STANDIN_PID=$!
      ip netns exec "$S" ${WATCH_CPU:-} python3 bench/poll.py "http://127.0.0.1:$WATCH_PORT" "$T/watch.stop" \
        > "$T/watch-$1.json" 2> "$T/watch-$1.err" & ;;
    *-polled)
      ip netns exec "$S" ${WATCH_CPU:-} python3 bench/poll.py "http://127.0.0.1:$WATCH_PORT" "$T/watch.stop" \
        > "$T/watch-$1.json" 2> "$T/watch-$1.err" & ;;
    *)
      ip netns exec "$S" ${WATCH_CPU:-} node dashboard/tests/watch.bench.mjs "http://127.0.0.1:$WATCH_PORT" "$T/watch.stop" \
        ${REPORTS:+"$REPORTS/watch-$1.png"} > "$T/watch-$1.json" 2> "$T/watch-$1.err" & ;;
  esac
  WATCH_PID=$!
  local i
  for ((i = 0; i < 300; i++)); do
    [ -e "$T/watch.stop.ready" ] && return 0
    kill -0 "$WATCH_PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "the watcher did not start:"; tail -20 "$T/watch-$1.err"; exit 1
}

# watch_stop LABEL: stops the watcher (60 s at most) and prints what it saw on one line.
watch_stop() {
  [ -n "$WATCH_PID" ] || return 0
  touch "$T/watch.stop"
  local i
  for ((i = 0; i < 600; i++)); do kill -0 "$WATCH_PID" 2>/dev/null || break; sleep 0.1; done
  kill "$WATCH_PID" 2>/dev/null || true
  wait "$WATCH_PID" 2>/dev/null || true
  WATCH_PID=
  if [ -n "$STANDIN_PID" ]; then kill "$STANDIN_PID" 2>/dev/null || true; wait "$STANDIN_PID" 2>/dev/null || true; STANDIN_PID=; fi
  python3 -c 'import json, sys
try:
    w = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
except Exception as e:
    print("watch %s: no result (%s)" % (sys.argv[2], e)); sys.exit(0)
f = lambda s: "%s/%s/%s ms" % (s["p50_ms"], s["p99_ms"], s["max_ms"])
s, m, g, k, b = w["sessions_first_page"], w["metrics"], w["storm_view_update_gaps"], w["storm_sample_gaps"], w.get("boot") or {}
print("watch %s (sessions every %s ms, metrics every %s ms): sessions first page p50/p99/max %s (%d requests, %d failed, %d over 200 ms); storm view updates %d, gaps %s; "
      "daemon samples gaps %s; /metrics %s (%d scrapes, %d failed); sessions live %s recent %s; page errors %d"
      % (sys.argv[2], w["every_ms"]["sessions"], w["every_ms"]["metrics"], f(s), s["n"], s["failed"], s["over_200ms"], g["n"] + 1, f(g), f(k), f(m), m["n"], m["failed"],
         b.get("live"), b.get("recent"), len(w["errors"])))' "$T/watch-$1.json" "$1"
}
