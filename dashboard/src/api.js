// The daemon's API, from the page it served: same origin, JSON, the bearer token (kept in this
// browser's localStorage) on every request when one is set.

const KEY = 'bootstorm-token';

export function token() {
  return localStorage.getItem(KEY) || '';
}

export function setToken(t) {
  if (t) localStorage.setItem(KEY, t);
  else localStorage.removeItem(KEY);
}

// { status, body } of one request; body is the parsed JSON answer (or { error } when the
// answer was not JSON or nothing came back).
export async function call(method, path, body) {
  const headers = {};
  const t = token();
  if (t) headers.Authorization = `Bearer ${t}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  try {
    const r = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await r.text();
    try {
      return { status: r.status, body: JSON.parse(text) };
    } catch {
      return { status: r.status, body: { error: text || r.statusText } };
    }
  } catch (e) {
    return { status: 0, body: { error: `the daemon did not answer: ${e.message}` } };
  }
}

// Durations as the CLI writes them: 850ms, 4.2s, 59m43s, 3h02m.
export function duration(ms) {
  if (ms == null) return '';
  if (ms < 1000) return `${Math.round(ms)}ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(Math.floor(s % 60)).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}

export const PHASES = ['dhcp', 'bound', 'tftp', 'http', 'loaded', 'iscsi', 'booted', 'failed'];
