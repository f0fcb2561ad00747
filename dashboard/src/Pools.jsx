import { usePoll } from './usePoll.js';

// Each subnet's pools: size, bound, offered, declined, free, as numbers and as a bar.
export default function Pools() {
  const [{ status, body }] = usePoll('/api/v1/pools', 2000);
  if (status == null) return <p className="muted">loading…</p>;
  if (status !== 200) return <p className="error">{body.error}</p>;
  return (
    <table id="pools">
      <thead>
        <tr>
          <th>subnet</th><th>pools</th><th className="num">size</th><th className="num">bound</th>
          <th className="num">offered</th><th className="num">declined</th><th className="num">free</th><th>use</th>
        </tr>
      </thead>
      <tbody>
        {body.map((p) => {
          const pct = (n) => (p.size ? (100 * n) / p.size : 0);
          return (
            <tr key={p.subnet} data-subnet={p.subnet}>
              <td>{p.subnet}</td>
              <td>{p.pools.join(', ')}</td>
              <td className="num">{p.size}</td>
              <td className="num">{p.bound}</td>
              <td className="num">{p.offered}</td>
              <td className="num">{p.declined}</td>
              <td className="num">{p.free}</td>
              <td>
                <div className="bar" title={`${pct(p.bound).toFixed(1)}% bound`}>
                  <span className="bound" style={{ width: `${pct(p.bound)}%` }} />
                  <span className="offered" style={{ width: `${pct(p.offered)}%` }} />
                  <span className="declined" style={{ width: `${pct(p.declined)}%` }} />
                </div>
                {pct(p.bound + p.offered + p.declined).toFixed(1)}%
              </td>
            </tr>
          );
        })}
      </tbody>
    </table>
  );
}
