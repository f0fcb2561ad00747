import { useEffect, useRef } from 'react';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

const COLORS = ['#2563eb', '#16a34a', '#d97706', '#9333ea', '#0891b2', '#db2777', '#059669', '#dc2626'];

// An axis label: milliseconds from 1 s up as seconds (10000ms is 10s).
function label(v, unit) {
  if (v == null) return '';
  if (unit === 'ms' && v >= 1000) return `${+(v / 1000).toPrecision(3)}s`;
  return `${+v.toPrecision(3)}${unit}`;
}

// A time-series plot (uPlot): `data` is [times in seconds, ...one array per series]; `log`
// draws the y axis in powers of ten (latencies span four decades in a storm).
export default function Plot({ title, series, data, log = false, unit = '', height = 220 }) {
  const box = useRef(null);
  const plot = useRef(null);
  useEffect(() => {
    const opts = {
      title,
      width: box.current.clientWidth || 600,
      height,
      scales: { x: { time: true }, y: log ? { distr: 3, log: 10 } : { range: (u, min, max) => [0, Math.max(1, max)] } },
      axes: [{}, { values: (u, vals) => vals.map((v) => label(v, unit)), size: 60 }],
      series: [{}, ...series.map((s, i) => ({ label: s, stroke: COLORS[i % COLORS.length], width: 1.5, spanGaps: false }))],
    };
    plot.current = new uPlot(opts, data, box.current);
    const resize = () => plot.current && plot.current.setSize({ width: box.current.clientWidth || 600, height });
    window.addEventListener('resize', resize);
    return () => {
      window.removeEventListener('resize', resize);
      plot.current.destroy();
      plot.current = null;
    };
    // The plot is made once per set of series; new data goes through setData below.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [title, series.join(','), log]);
  useEffect(() => {
    if (plot.current) plot.current.setData(data);
  }, [data]);
  return <div className="plot" ref={box} data-title={title} />;
}
