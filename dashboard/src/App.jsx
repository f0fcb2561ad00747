import { useState } from 'react';
import { setToken, token } from './api.js';
import { usePoll } from './usePoll.js';
import Storm from './Storm.jsx';
import Pools from './Pools.jsx';
import Sessions from './Sessions.jsx';
import Leases from './Leases.jsx';
import Reservations from './Reservations.jsx';

const TABS = { storm: Storm, pools: Pools, sessions: Sessions, leases: Leases, reservations: Reservations };

function TokenBox() {
  const [value, setValue] = useState(token());
  const [saved, setSaved] = useState(!!token());
  const save = (e) => {
    e.preventDefault();
    setToken(value.trim());
    setSaved(!!value.trim());
  };
  return (
    <form className="token" onSubmit={save}>
      <input id="token" type="password" placeholder="API token" value={value} onChange={(e) => { setValue(e.target.value); setSaved(false); }} />
      <button type="submit">{saved ? 'token set' : 'use token'}</button>
    </form>
  );
}

// The page: a header (version, token) and one tab at a time, chosen by the URL's #fragment.
export default function App() {
  const initial = location.hash.slice(1);
  const [tab, setTab] = useState(TABS[initial] ? initial : 'storm');
  const [{ body: health }] = usePoll('/api/v1/health', 10000);
  const View = TABS[tab];
  const go = (t) => {
    setTab(t);
    history.replaceState(null, '', `#${t}`);
  };
  return (
    <>
      <header>
        <h1>bootstorm</h1>
        <span className="muted">{health && health.version ? `v${health.version}` : ''}</span>
        <nav>
          {Object.keys(TABS).map((t) => (
            <button key={t} id={`tab-${t}`} className={t === tab ? 'active' : ''} onClick={() => go(t)}>{t}</button>
          ))}
        </nav>
        <TokenBox />
      </header>
      <main>
        <View />
      </main>
    </>
  );
}
