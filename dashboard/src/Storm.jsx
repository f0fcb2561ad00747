import { useEffect, useMemo, useRef, useState } from 'react';
import { call, PHASES } from './api.js';
import Plot from './Plot.jsx';

const KEEP = 600;
const LAPS = ['dhcp', 'tftp', 'iscsi_login', 'iscsi_first_read', 'boot'];

// Appends the columns of `add` to `have` (both as /api/v1/storm answers them), keeping KEEP.
function append(have, add) {
  const cat = (a, b) => a.concat(b).slice(-KEEP);
  if (!have) return add;
  const out = { ...have, at_ms: cat(have.at_ms, add.at_ms) };
  for (const k of ['started', 'loaded', 'booted', 'failures']) out[k] = cat(have[k], add[k]);
  out.phases = {};
  for (const p of PHASES) out.phases[p] = cat(have.phases[p], add.phases[p]);
  out.laps = {};
  for (const l of LAPS) {
    out.laps[l] = {};
    for (const q of ['count', 'p50_ms', 'p90_ms', 'p99_ms']) out.laps[l][q] = cat(have.laps[l][q], add.laps[l][q]);
  }
  return out;
}

const rate = (col) => col.map((v, i) => (i === 0 ? null : Math.max(0, v - col[i - 1])));
// A log axis cannot show 0: a second without laps is a gap. The daemon's clock counts
// milliseconds, so a lap under 1 ms is drawn at 1 ms.
const gap = (col) => col.map((v) => (v > 0 ? Math.max(v, 1) : null));

// The live storm: machines per phase, boots per second, lap percentiles, once a second.
export default function Storm() {
  const [series, setSeries] = useState(null);
  const [error, setError] = useState(null);
  const [updates, setUpdates] = useState(0);
  const last = useRef(null);
  useEffect(() => {
    let alive = true;
    let timer;
    // Once a second, start to start (the daemon samples once a second), the next request
    // never before the previous answer.
    const run = async () => {
      const began = performance.now();
      const q = last.current == null ? '' : `?since=${last.current}`;
      const r = await call('GET', `/api/v1/storm${q}`);
      if (!alive) return;
      if (r.status === 200) {
        setError(null);
        if (r.body.at_ms.length) {
          last.current = r.body.at_ms[r.body.at_ms.length - 1];
          setSeries((s) => append(s, r.body));
        }
        setUpdates((n) => n + 1);
      } else {
        setError(r.body.error || `HTTP ${r.status}`);
      }
      timer = setTimeout(run, Math.max(0, 1000 - (performance.now() - began)));
    };
    run();
    return () => {
      alive = false;
      clearTimeout(timer);
    };
  }, []);
  const plots = useMemo(() => {
    if (!series) return null;
    const t = series.at_ms.map((ms) => ms / 1000);
    return {
      phases: [t, ...PHASES.map((p) => series.phases[p])],
      rates: [t, rate(series.started), rate(series.loaded), rate(series.booted), rate(series.failures)],
      p50: [t, ...LAPS.map((l) => gap(series.laps[l].p50_ms))],
      p99: [t, ...LAPS.map((l) => gap(series.laps[l].p99_ms))],
    };
  }, [series]);
  const n = series ? series.at_ms.length : 0;
  const now = (col) => (n ? col[n - 1] : 0);
  return (
    <section data-updates={updates}>
      {error && <p className="error">{error}</p>}
      <div className="cards" id="phase-cards">
        {PHASES.map((p) => (
          <div className={`card phase-${p}`} key={p} data-phase={p}>
            <div className="label">{p}</div>
            <div className="value">{series ? now(series.phases[p]) : '–'}</div>
          </div>
        ))}
      </div>
      <div className="cards">
        {['started', 'loaded', 'booted', 'failures'].map((k) => (
          <div className="card total" key={k} data-total={k}>
            <div className="label">{k} (total)</div>
            <div className="value">{series ? now(series[k]) : '–'}</div>
          </div>
        ))}
        <div className="card total">
          <div className="label">started /s</div>
          <div className="value">{plots && n > 1 ? plots.rates[1][n - 1] : '–'}</div>
        </div>
      </div>
      {!series && !error && <p className="muted">waiting for the first sample…</p>}
      {plots && (
        <div className="plots">
          <Plot title="Machines per phase" series={PHASES} data={plots.phases} />
          <Plot title="Per second" series={['started', 'files loaded', 'booted', 'failures']} data={plots.rates} />
          <Plot title="Lap latency p50 (log, 1 ms resolution)" series={LAPS} data={plots.p50} log unit="ms" />
          <Plot title="Lap latency p99 (log, 1 ms resolution)" series={LAPS} data={plots.p99} log unit="ms" />
        </div>
      )}
    </section>
  );
}
