// Loads the Portcullis component into Node: transpiles the `.wasm` with jco into
// `generated/`, then instantiates it with the imports of the `imports` world
// (wit/worlds.wit): `portcullis:auth/store` (here over sql.js), `wasi:config/store` (the
// settings), and the standard WASI interfaces from @bytecodealliance/preview2-shim.

import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';

import { transpile } from '@bytecodealliance/jco';
import { WASIShim } from '@bytecodealliance/preview2-shim/instantiation';

/** Transpiles `wasmPath` into `outDir` and returns the generated module's path. */
export async function transpileComponent(wasmPath, outDir) {
  const { files } = await transpile(readFileSync(wasmPath), {
    name: 'portcullis',
    instantiation: 'async',
    noTypescript: true,
    quiet: true,
  });
  for (const [name, bytes] of Object.entries(files)) {
    const path = join(outDir, name);
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, bytes);
  }
  return join(outDir, 'portcullis.js');
}

/**
 * Instantiates the transpiled component and returns its `portcullis:auth/api` export.
 * `settings` maps the component's setting names (`jwt_secret`, `max_sessions` … as in
 * README's settings table, without `PORTCULLIS_`, lower-case) to their values.
 */
export async function instantiate(modulePath, store, settings) {
  const { instantiate: instantiateComponent } = await import(pathToFileURL(modulePath).href);
  const dir = dirname(modulePath);
  const config = {
    get: (key) => settings[key],
    getAll: () => Object.entries(settings),
  };
  // A sandbox: the component needs no files, network, environment or arguments.
  const wasi = new WASIShim({
    sandbox: { preopens: {}, env: {}, args: ['portcullis'], enableNetwork: false },
  });
  const exports = await instantiateComponent(
    (name) => WebAssembly.compile(readFileSync(join(dir, name))),
    {
      ...wasi.getImportObject(),
      'portcullis:auth/store': store,
      'wasi:config/store': config,
    },
  );
  return exports.api;
}
