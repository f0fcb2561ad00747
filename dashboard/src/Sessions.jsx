import { useState } from 'react';
import { duration, PHASES } from './api.js';
import { usePoll } from './usePoll.js';

function Timeline({ mac, onClose }) {
  const [{ status, body }] = usePoll(`/api/v1/sessions/${encodeURIComponent(mac)}`, 1000);
  if (status == null) return null;
  if (status !== 200) return <div className="detail"><p className="error">{body.error}</p></div>;
  const detail = (s) =>
    Object.entries(s)
      .filter(([k]) => !['step', 'at_ms', 'after_ms'].includes(k))
      .map(([k, v]) => `${k}=${v}`)
      .join(' ');
  return (
    <div className="detail" id="session-detail" data-mac={body.mac}>
      <h3>
        {body.mac} <span className={`badge phase-${body.phase}`}>{body.phase}</span>
        <button className="link" onClick={onClose}>close</button>
      </h3>
      <p>
        address {body.address || '–'} · rounds {body.rounds} · {duration(body.elapsed_ms)}
        {body.uuid && <> · uuid {body.uuid}</>}
        {body.iqn && <> · {body.iqn}</>}
      </p>
      {body.failure && <p className="error">{body.failure}</p>}
      <table className="timeline">
        <thead><tr><th className="num">after</th><th>step</th><th>detail</th></tr></thead>
        <tbody>
          {body.timeline.map((s, i) => (
            <tr key={i} className={`step-${s.step}`}>
              <td className="num">+{duration(s.after_ms)}</td>
              <td>{s.step}</td>
              <td>{detail(s)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {body.steps_dropped > 0 && <p className="muted">{body.steps_dropped} later steps not kept</p>}
    </div>
  );
}

// The session list (first page of 100, live first), searchable by a part of the MAC,
// address, IQN or UUID; a row opens that machine's timeline.
export default function Sessions() {
  const [q, setQ] = useState('');
  const [phase, setPhase] = useState('');
  const [failed, setFailed] = useState(false);
  const [open, setOpen] = useState(null);
  const args = new URLSearchParams({ limit: '100' });
  if (q.trim()) args.set('q', q.trim());
  if (phase) args.set('phase', phase);
  const path = `/api/v1/sessions?${args}${failed ? '&failed' : ''}`;
  const [{ status, body }] = usePoll(path, 1000);
  return (
    <section>
      <div className="filters">
        <input id="session-search" placeholder="MAC, address, IQN or UUID" value={q} onChange={(e) => setQ(e.target.value)} />
        <select id="session-phase" value={phase} onChange={(e) => setPhase(e.target.value)}>
          <option value="">every phase</option>
          {PHASES.map((p) => <option key={p} value={p}>{p}</option>)}
        </select>
        <label><input type="checkbox" checked={failed} onChange={(e) => setFailed(e.target.checked)} /> failed only</label>
        {status === 200 && <span className="muted" id="session-total">{body.total} sessions</span>}
      </div>
      {status != null && status !== 200 && <p className="error">{body.error}</p>}
      {open && <Timeline mac={open} onClose={() => setOpen(null)} />}
      {status === 200 && (
        <table id="sessions">
          <thead>
            <tr><th>MAC</th><th>address</th><th>phase</th><th className="num">rounds</th><th className="num">elapsed</th><th>failure</th></tr>
          </thead>
          <tbody>
            {body.sessions.map((s) => (
              <tr key={`${s.mac}-${s.started_ms}`} data-mac={s.mac} data-phase={s.phase} onClick={() => setOpen(s.mac)} className={s.ended ? 'ended' : ''}>
                <td className="mono">{s.mac}</td>
                <td>{s.address || '–'}</td>
                <td><span className={`badge phase-${s.phase}`}>{s.phase}</span></td>
                <td className="num">{s.rounds}</td>
                <td className="num">{duration(s.elapsed_ms)}</td>
                <td className="error">{s.failure || ''}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
