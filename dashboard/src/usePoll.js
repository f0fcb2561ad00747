import { useEffect, useRef, useState } from 'react';
import { call } from './api.js';

// Polls `path` every `ms` while mounted (the next request only after the previous answer, so a
// slow daemon is never asked twice at once); `path` changing restarts the poll.
export function usePoll(path, ms) {
  const [state, setState] = useState({ status: null, body: null });
  const [tick, setTick] = useState(0);
  const alive = useRef(true);
  useEffect(() => {
    alive.current = true;
    let timer;
    const run = async () => {
      const r = await call('GET', path);
      if (!alive.current) return;
      setState(r);
      timer = setTimeout(run, ms);
    };
    run();
    return () => {
      alive.current = false;
      clearTimeout(timer);
    };
  }, [path, ms, tick]);
  return [state, () => setTick((t) => t + 1)];
}
