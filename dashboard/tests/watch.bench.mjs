// An operator watching a storm (bench/watch.sh runs it beside bench/storm-compare.sh and
// bench/dhcp-compare.sh):
//   node watch.bench.mjs URL STOP_FILE [SCREENSHOT]
// Headless Chromium (Playwright driving Debian's chromium) keeps the dashboard's storm view open
// and records, in the page, the time of each of its updates; meanwhile the first page of the
// session list (`GET /api/v1/sessions?limit=100`, the body read to its end) is fetched every
// second (as the dashboard's session tab does; WATCH_SESSIONS_MS) and `/metrics` scraped every
// 5 s (a tight Prometheus scrape interval; WATCH_METRICS_MS), each timed. Writes STOP_FILE.ready once the page
// is up, then runs until STOP_FILE exists (30 min
// at most), then prints one JSON line: each series' count, failures and p50/p99/max in ms, the
// gaps between the storm view's updates, the gaps between the daemon's storm samples, and the
// daemon's `boot` counters (sessions live and recent) at the end. Reads only: the API must
// answer reads without a token (`[api] read_open`, as quick mode's --api does).
import { chromium } from 'playwright-core';
import { existsSync, writeFileSync } from 'node:fs';

const [url, stop, shot] = process.argv.slice(2);
const LIMIT_MS = 30 * 60 * 1000;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// How often the session list's first page and /metrics are fetched (ms).
const every = { sessions: Number(process.env.WATCH_SESSIONS_MS || 1000), metrics: Number(process.env.WATCH_METRICS_MS || 5000) };

function summary(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const q = (p) => (s.length ? Math.round(s[Math.min(s.length - 1, Math.ceil(p * s.length) - 1)] * 10) / 10 : null);
  return { n: s.length, p50_ms: q(0.5), p99_ms: q(0.99), max_ms: s.length ? Math.round(s.at(-1) * 10) / 10 : null };
}

// GET `path` every `every` ms (start to start) until stopped; the times and the failures.
async function poll(path, every, state) {
  const times = [];
  let failed = 0;
  while (!state.stopped) {
    const began = performance.now();
    try {
      const r = await fetch(`${url}${path}`);
      await r.text();
      if (r.status !== 200) failed++;
    } catch {
      failed++;
    }
    times.push(performance.now() - began);
    await sleep(Math.max(0, every - (performance.now() - began)));
  }
  return { ...summary(times), failed, over_200ms: times.filter((t) => t > 200).length };
}

const gaps = (ts) => ts.slice(1).map((t, i) => t - ts[i]);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
});
const out = { errors: [], every_ms: every };
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  page.on('pageerror', (e) => out.errors.push(String(e)));
  await page.goto(`${url}/ui/#storm`);
  await page.waitForSelector('section[data-updates]', { timeout: 20000 });
  await page.evaluate(() => {
    window.__updates = [];
    const s = document.querySelector('section[data-updates]');
    new MutationObserver(() => window.__updates.push(performance.now())).observe(s, { attributes: true, attributeFilter: ['data-updates'] });
  });
  writeFileSync(`${stop}.ready`, 'ready\n');
  const state = { stopped: false };
  const polls = Promise.all([poll('/api/v1/sessions?limit=100', every.sessions, state), poll('/metrics', every.metrics, state)]);
  const until = Date.now() + LIMIT_MS;
  while (!existsSync(stop) && Date.now() < until) await sleep(100);
  state.stopped = true;
  [out.sessions_first_page, out.metrics] = await polls;
  out.storm_view_update_gaps = summary(gaps(await page.evaluate(() => window.__updates)));
  const storm = await (await fetch(`${url}/api/v1/storm`)).json();
  out.storm_sample_gaps = summary(gaps(storm.at_ms));
  out.boot = (await (await fetch(`${url}/api/v1/stats`)).json()).boot;
  if (shot) await page.screenshot({ path: shot, fullPage: true });
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
