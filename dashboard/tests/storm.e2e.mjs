// The dashboard in headless Chromium (Playwright driving Debian's chromium), during a storm:
//   node storm.e2e.mjs URL TOKEN SCREENSHOT READY_FILE MACHINES
// Gives the page its token, opens the session list and writes READY_FILE (the test then starts
// the storm); watches each machine's phase until MACHINES sessions are all loaded (60 s at
// most), then the storm view's updates, one machine's timeline and a search for it, releases
// the first bound lease through the leases tab and reads the pools tab. Prints one JSON line
// of what it saw; the Rust test that runs it judges that against the API.
import { chromium } from 'playwright-core';
import { writeFileSync } from 'node:fs';

const [url, tok, shot, ready, machines] = process.argv.slice(2);
const out = { updates: [], phases: {}, released: null, errors: [] };
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
});
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  // Before the token is given, reads on TCP are refused (401) as they should be: refusals count
  // from then on, reported by the responses (console messages arrive late).
  let watching = false;
  page.on('pageerror', (e) => out.errors.push(String(e)));
  page.on('console', (m) => watching && m.type() === 'error' && !m.text().startsWith('Failed to load resource') && out.errors.push(m.text()));
  page.on('response', (r) => watching && r.status() >= 400 && out.errors.push(`${r.status()} ${r.request().method()} ${r.url()}`));
  await page.goto(`${url}/ui/`);
  await page.waitForSelector('.error', { timeout: 20000 });
  out.before_token = await page.textContent('.error');
  await page.fill('#token', tok);
  await page.click('.token button');
  await page.click('#tab-sessions');
  await page.waitForSelector('#session-total', { timeout: 20000 });
  await page.waitForTimeout(1500);
  watching = true;
  writeFileSync(ready, 'ready\n');
  // The session list during the storm: each machine's phase as the table shows it, every 200 ms.
  const until = Date.now() + 60000;
  for (;;) {
    const rows = await page.$$eval('#sessions tbody tr', (trs) => trs.map((r) => [r.dataset.mac, r.dataset.phase]));
    for (const [mac, phase] of rows) {
      const seen = (out.phases[mac] ||= []);
      if (seen.at(-1) !== phase) seen.push(phase);
    }
    const done = rows.length >= Number(machines) && rows.every(([, p]) => p === 'loaded');
    if (done || Date.now() > until) break;
    await page.waitForTimeout(200);
  }
  // The storm view: its update counter for 4 s.
  await page.click('#tab-storm');
  const stormEnd = Date.now() + 4000;
  while (Date.now() < stormEnd) {
    const n = Number(await page.getAttribute('section[data-updates]', 'data-updates'));
    if (out.updates.at(-1)?.[1] !== n) out.updates.push([Date.now(), n]);
    await page.waitForTimeout(200);
  }
  out.started = await page.textContent('[data-total="started"] .value');
  await page.screenshot({ path: shot.replace(/\.png$/, '-storm.png'), fullPage: true });
  // One machine's timeline, then a search for it.
  await page.click('#tab-sessions');
  await page.waitForSelector('#sessions tbody tr', { timeout: 10000 });
  const first = await page.getAttribute('#sessions tbody tr', 'data-mac');
  await page.click(`#sessions tbody tr[data-mac="${first}"]`);
  await page.waitForSelector(`#session-detail[data-mac="${first}"] .timeline tbody tr`, { timeout: 10000 });
  out.timeline = await page.$$eval('#session-detail .timeline tbody tr td:nth-child(2)', (tds) => tds.map((t) => t.textContent));
  await page.fill('#session-search', first.slice(-5));
  await page.waitForFunction((m) => {
    const rows = [...document.querySelectorAll('#sessions tbody tr')];
    return rows.length > 0 && rows.every((r) => r.dataset.mac.includes(m));
  }, first.slice(-5), { timeout: 10000 });
  out.searched = await page.$$eval('#sessions tbody tr', (trs) => trs.map((r) => r.dataset.mac));
  await page.screenshot({ path: shot, fullPage: true });
  // Release the first bound lease (release, then confirm).
  await page.click('#tab-leases');
  await page.selectOption('section select', 'bound');
  const button = await page.waitForSelector('#leases tbody tr button.release', { timeout: 10000 });
  const [ip, mac] = await button.evaluate((b) => [b.closest('tr').dataset.ip, b.closest('tr').children[1].textContent]);
  await page.click(`#leases tr[data-ip="${ip}"] button.release`);
  await page.click(`#leases tr[data-ip="${ip}"] button.release`);
  await page.waitForSelector('#lease-message', { timeout: 10000 });
  out.release_message = await page.textContent('#lease-message');
  out.released = ip;
  out.released_mac = mac;
  await page.click('#tab-pools');
  await page.waitForSelector('#pools tbody tr', { timeout: 10000 });
  out.pools = await page.$$eval('#pools tbody tr td', (tds) => tds.map((t) => t.textContent));
  await page.screenshot({ path: shot.replace(/\.png$/, '-pools.png'), fullPage: true });
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
