// Writes dist/SOURCES.sha256: the SHA-256 of the dashboard's sources, in the form the daemon's
// build script and the bundle test compute it (each file as its path, a NUL, its bytes, a NUL,
// in sorted path order), so a bundle older than its sources is noticed without Node.js.
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

const here = new URL('.', import.meta.url).pathname;
const files = ['index.html', 'package.json', 'package-lock.json', 'vite.config.js', 'stamp.mjs'];
const walk = (dir) => {
  for (const name of readdirSync(join(here, dir)).sort()) {
    const rel = `${dir}/${name}`;
    if (statSync(join(here, rel)).isDirectory()) walk(rel);
    else files.push(rel);
  }
};
walk('src');
files.sort();
const h = createHash('sha256');
for (const f of files) {
  h.update(f);
  h.update('\0');
  h.update(readFileSync(join(here, f)));
  h.update('\0');
}
const out = process.argv[2] || join(here, 'dist');
writeFileSync(join(out, 'SOURCES.sha256'), h.digest('hex') + '\n');
