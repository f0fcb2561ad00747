import { useState } from 'react';
import { call } from './api.js';
import { usePoll } from './usePoll.js';

// Reservations: the config file's and the API's; add one, remove an API one (token needed).
export default function Reservations() {
  const [{ status, body }, refresh] = usePoll('/api/v1/reservations', 5000);
  const [form, setForm] = useState({ address: '', mac: '', hostname: '' });
  const [msg, setMsg] = useState(null);
  const answer = (r, ok) => {
    setMsg(r.status === 200 ? { ok } : { error: r.body.error });
    refresh();
  };
  const add = async (e) => {
    e.preventDefault();
    const r = { address: form.address.trim() };
    if (form.mac.trim()) r.mac = form.mac.trim();
    if (form.hostname.trim()) r.hostname = form.hostname.trim();
    answer(await call('POST', '/api/v1/reservations', r), `reserved ${r.address}`);
  };
  const remove = async (ip) => answer(await call('DELETE', `/api/v1/reservations/${ip}`), `removed ${ip}`);
  const field = (k) => <input placeholder={k} value={form[k]} onChange={(e) => setForm({ ...form, [k]: e.target.value })} />;
  return (
    <section>
      <form className="filters" onSubmit={add} id="reservation-form">
        {field('address')}
        {field('mac')}
        {field('hostname')}
        <button type="submit">add reservation</button>
      </form>
      {msg && <p className={msg.ok ? 'ok' : 'error'}>{msg.ok || msg.error}</p>}
      {status != null && status !== 200 && <p className="error">{body.error}</p>}
      {status === 200 && (
        <table id="reservations">
          <thead><tr><th>address</th><th>MAC</th><th>client id</th><th>hostname</th><th>source</th><th></th></tr></thead>
          <tbody>
            {body.map((r) => (
              <tr key={r.address} data-ip={r.address}>
                <td>{r.address}</td>
                <td className="mono">{r.mac || ''}</td>
                <td className="mono">{r.client_id || ''}</td>
                <td>{r.hostname || ''}</td>
                <td>{r.source}</td>
                <td>{r.source === 'api' && <button onClick={() => remove(r.address)}>remove</button>}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
