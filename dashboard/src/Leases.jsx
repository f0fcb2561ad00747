import { useState } from 'react';
import { call, duration } from './api.js';
import { usePoll } from './usePoll.js';

const SHOWN = 500;

// Leases (filtered by state and a part of address, MAC or hostname) with a release button
// (the API's DELETE, behind the token; a second click confirms).
export default function Leases() {
  const [state, setState] = useState('');
  const [q, setQ] = useState('');
  const [confirm, setConfirm] = useState(null);
  const [msg, setMsg] = useState(null);
  const path = state ? `/api/v1/leases?state=${state}` : '/api/v1/leases';
  const [{ status, body }, refresh] = usePoll(path, 2000);
  const release = async (ip) => {
    if (confirm !== ip) {
      setConfirm(ip);
      return;
    }
    setConfirm(null);
    const r = await call('DELETE', `/api/v1/leases/${ip}`);
    setMsg(r.status === 200 ? { ok: `released ${ip}` } : { error: `${ip}: ${r.body.error}` });
    refresh();
  };
  const needle = q.trim().toLowerCase();
  const rows = status === 200 ? body.filter((l) => !needle || [l.ip, l.mac, l.hostname || ''].some((f) => f.toLowerCase().includes(needle))) : [];
  return (
    <section>
      <div className="filters">
        <input id="lease-search" placeholder="address, MAC or hostname" value={q} onChange={(e) => setQ(e.target.value)} />
        <select value={state} onChange={(e) => setState(e.target.value)}>
          <option value="">every state</option>
          {['bound', 'offered', 'declined', 'expired', 'released'].map((s) => <option key={s} value={s}>{s}</option>)}
        </select>
        {status === 200 && <span className="muted">{rows.length} leases{rows.length > SHOWN ? `, the first ${SHOWN} shown` : ''}</span>}
      </div>
      {msg && <p className={msg.ok ? 'ok' : 'error'} id="lease-message">{msg.ok || msg.error}</p>}
      {status != null && status !== 200 && <p className="error">{body.error}</p>}
      <table id="leases">
        <thead>
          <tr><th>address</th><th>MAC</th><th>state</th><th>hostname</th><th>subnet</th><th className="num">expires in</th><th></th></tr>
        </thead>
        <tbody>
          {rows.slice(0, SHOWN).map((l) => (
            <tr key={l.ip} data-ip={l.ip}>
              <td>{l.ip}</td>
              <td className="mono">{l.mac}</td>
              <td>{l.state}{l.reserved ? ' (reserved)' : ''}</td>
              <td>{l.hostname || ''}</td>
              <td>{l.subnet}</td>
              <td className="num">{duration(l.expires_in * 1000)}</td>
              <td>
                {(l.state === 'bound' || l.state === 'offered') && (
                  <button className="release" onClick={() => release(l.ip)}>{confirm === l.ip ? 'confirm release' : 'release'}</button>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}
