// Test helper: a temp project with @flux/secrets and @flux/functions in its
// node_modules, laid out as `npm install` of the two packed tarballs lays
// them out (each package's package.json and its "files"), without npm or a
// registry. The packages are copied, not linked: Node.js resolves a
// module's requires from its real path, so a linked @flux/functions would
// not find @flux/secrets next to it. ci.sh installs the real tarballs.

import fs from 'node:fs';
import fsp from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));

/** clients/ */
const CLIENTS = path.resolve(HERE, '..', '..');

/** The package folders, by name. */
export const PACKAGES = {
  '@flux/secrets': path.join(CLIENTS, 'node'),
  '@flux/functions': path.join(CLIENTS, 'node-functions'),
};

function copyPackage(src, dest) {
  const manifest = JSON.parse(fs.readFileSync(path.join(src, 'package.json'), 'utf8'));
  fs.mkdirSync(dest, { recursive: true });
  for (const entry of ['package.json', ...manifest.files]) {
    fs.cpSync(path.join(src, entry), path.join(dest, entry), { recursive: true });
  }
}

/**
 * Makes `<dir>/node_modules/@flux/{secrets,functions}` in a fresh temp
 * folder. Returns `{ dir, load, require, cleanup }`: `load(name)` imports a
 * package as the project's code would, `require` is a require() from there.
 */
export async function installedProject() {
  const dir = await fsp.mkdtemp('/tmp/fxfn');
  for (const [name, src] of Object.entries(PACKAGES)) {
    copyPackage(src, path.join(dir, 'node_modules', ...name.split('/')));
  }
  fs.writeFileSync(path.join(dir, 'package.json'), '{ "name": "app", "private": true }\n');
  // import() resolves a bare name from the importing file: this one.
  const loader = path.join(dir, 'load.mjs');
  fs.writeFileSync(loader, 'export const load = (name) => import(name);\n');
  const { load } = await import(pathToFileURL(loader).href);
  return {
    dir,
    require: createRequire(path.join(dir, 'index.js')),
    load,
    cleanup: () => fsp.rm(dir, { recursive: true, force: true }),
  };
}
