// Component tools for samples/components/build.sh, on jco's packages (no network once installed).
//   node tools.mjs embed CORE.wasm WIT-DIR WORLD OUT.wasm [ADAPTER.wasm]
//       embeds WORLD into a core module and makes it a component (with the WASI preview 1
//       adapter when given: a wasi-libc program becomes a wasi:cli/command component)
//   node tools.mjs wat SOURCE.wat OUT.wasm
//       a component (or module) from the text format
//   node tools.mjs js SOURCE.js WIT-DIR WORLD OUT.wasm
//       a JavaScript component (componentize-js: SpiderMonkey, pre-initialized)
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const [verb, input, wit, world, out, adapter] = process.argv.slice(2);
if (verb === 'embed') {
  const { componentEmbed, componentNew } = await import('@bytecodealliance/jco-transpile/wasm-tools');
  // jco's wasm-tools runs under WASI with no preopened directories by default: give it the host's.
  const transpile = dirname(fileURLToPath(import.meta.resolve('@bytecodealliance/jco-transpile/wasm-tools')));
  const nested = join(transpile, '..', 'node_modules', '@bytecodealliance', 'preview2-shim', 'dist', 'nodejs', 'filesystem.js');
  const hoisted = join(transpile, '..', '..', 'preview2-shim', 'dist', 'nodejs', 'filesystem.js');
  const shim = await import(existsSync(nested) ? nested : hoisted);
  shim._setPreopens({ '/': '/' });
  const embedded = await componentEmbed({ binary: await readFile(input), witPath: resolve(wit), world });
  const adapters = adapter ? [['wasi_snapshot_preview1', await readFile(adapter)]] : [];
  await writeFile(out, await componentNew(embedded, adapters));
} else if (verb === 'wat') {
  const { parse } = await import('@bytecodealliance/jco-transpile/wasm-tools');
  await writeFile(wit, await parse(await readFile(input, 'utf8')));
} else if (verb === 'js') {
  const { componentize } = await import('@bytecodealliance/componentize-js');
  const { component } = await componentize({ sourcePath: resolve(input), witPath: resolve(wit), worldName: world });
  await writeFile(out, component);
} else {
  console.error('usage: node tools.mjs embed|js ...');
  process.exit(2);
}
