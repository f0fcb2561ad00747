#!/usr/bin/env python3
"""The dashboard's requests without the browser (bench/watch.sh runs it for the stacks named
bootstorm-polled, beside bench/storm-compare.sh and bench/dhcp-compare.sh):

    python3 bench/poll.py URL STOP_FILE

What an open dashboard asks of the daemon, at the dashboard's own intervals, over one kept-alive
HTTP/1.1 connection per series as a browser keeps them: the storm view (`GET /api/v1/storm`, then
`?since=` the newest sample it holds) every second start to start, the session list's first page
(`GET /api/v1/sessions?limit=100`) every second (WATCH_SESSIONS_MS), `/api/v1/health` every 10 s
(the page header) and `/metrics` every 5 s (WATCH_METRICS_MS), each timed. It draws nothing, so
the server's CPU per lease measured beside it is what answering a dashboard costs the server,
without a browser rendering plots on the same two cores (bootstorm-watched has that).

    python3 bench/poll.py --stand-in PORT

serves a stand-in for the API on 127.0.0.1:PORT (every GET answered 200 with `{"at_ms": []}`),
for the control stack bootstorm-noise: the same poller beside a server it does not ask anything
(bootstorm without sessions), so what the poller's own processes cost the machine shows apart
from what answering them costs the server.

Writes STOP_FILE.ready once the API answers, runs until STOP_FILE exists (30 min at most), then
prints one JSON line in the shape dashboard/tests/watch.bench.mjs prints (storm_view_update_gaps:
the gaps between storm answers that brought new samples).
"""

import http.client
import json
import math
import os
import sys
import threading
import time
import urllib.parse

LIMIT_S = 30 * 60


def summary(xs):
    s = sorted(xs)

    def q(p):
        if not s:
            return None
        return round(s[min(len(s) - 1, math.ceil(p * len(s)) - 1)], 1)

    return {"n": len(s), "p50_ms": q(0.5), "p99_ms": q(0.99), "max_ms": round(s[-1], 1) if s else None}


class Conn:
    """One kept-alive connection, reopened after a failure."""

    def __init__(self, url):
        u = urllib.parse.urlsplit(url)
        self.host, self.port = u.hostname, u.port or 80
        self.c = None

    def get(self, path):
        for attempt in (0, 1):
            try:
                if self.c is None:
                    self.c = http.client.HTTPConnection(self.host, self.port, timeout=30)
                self.c.request("GET", path)
                r = self.c.getresponse()
                return r.status, r.read()
            except (OSError, http.client.HTTPException):
                if self.c is not None:
                    self.c.close()
                self.c = None
                if attempt:
                    raise
        raise AssertionError("unreachable")


def poll(url, path_of, every_s, stopped, out, on_answer=None):
    """GETs path_of() every every_s seconds (start to start) until stopped; times and failures."""
    conn, times, failed = Conn(url), [], 0
    while not stopped.is_set():
        began = time.monotonic()
        try:
            status, body = conn.get(path_of())
            if status != 200:
                failed += 1
            elif on_answer:
                on_answer(body)
        except (OSError, http.client.HTTPException):
            failed += 1
        times.append((time.monotonic() - began) * 1000)
        stopped.wait(max(0.0, every_s - (time.monotonic() - began)))
    out.update(summary(times), failed=failed, over_200ms=sum(t > 200 for t in times))


def stand_in(port):
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            body = b'{"at_ms": []}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


def main():
    if sys.argv[1] == "--stand-in":
        stand_in(int(sys.argv[2]))
        return 0
    url, stop = sys.argv[1], sys.argv[2]
    every = {
        "sessions": int(os.environ.get("WATCH_SESSIONS_MS", "1000")),
        "metrics": int(os.environ.get("WATCH_METRICS_MS", "5000")),
    }
    first = Conn(url)
    for _ in range(200):  # 20 s at most for the API to answer
        try:
            if first.get("/api/v1/health")[0] == 200:
                break
        except (OSError, http.client.HTTPException):
            pass
        time.sleep(0.1)
    else:
        print("the API did not answer", file=sys.stderr)
        return 1
    with open(stop + ".ready", "w") as f:
        f.write("ready\n")

    stopped = threading.Event()
    last, updates = [None], []

    def storm_path():
        return "/api/v1/storm" if last[0] is None else "/api/v1/storm?since=%d" % last[0]

    def storm_answer(body):
        at = json.loads(body).get("at_ms") or []
        if at:
            last[0] = at[-1]
            updates.append(time.monotonic() * 1000)

    results = {k: {} for k in ("storm", "sessions", "metrics", "health")}
    threads = [
        threading.Thread(target=poll, args=(url, storm_path, 1.0, stopped, results["storm"], storm_answer)),
        threading.Thread(target=poll, args=(url, lambda: "/api/v1/sessions?limit=100", every["sessions"] / 1000, stopped, results["sessions"])),
        threading.Thread(target=poll, args=(url, lambda: "/metrics", every["metrics"] / 1000, stopped, results["metrics"])),
        threading.Thread(target=poll, args=(url, lambda: "/api/v1/health", 10.0, stopped, results["health"])),
    ]
    for t in threads:
        t.start()
    until = time.monotonic() + LIMIT_S
    while not os.path.exists(stop) and time.monotonic() < until:
        time.sleep(0.1)
    stopped.set()
    for t in threads:
        t.join()
    out = {"errors": [], "every_ms": every, "sessions_first_page": results["sessions"], "metrics": results["metrics"]}
    out["storm_view_update_gaps"] = summary([b - a for a, b in zip(updates, updates[1:])])
    at = json.loads(first.get("/api/v1/storm")[1]).get("at_ms") or []
    out["storm_sample_gaps"] = summary([b - a for a, b in zip(at, at[1:])])
    out["boot"] = json.loads(first.get("/api/v1/stats")[1]).get("boot")
    if results["storm"].get("failed") or results["health"].get("failed"):
        out["errors"].append("storm failed %s, health failed %s" % (results["storm"].get("failed"), results["health"].get("failed")))
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
