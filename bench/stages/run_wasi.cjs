// Runs a wasm32-wasip1 program under node's WASI: `node run_wasi.cjs PROG.wasm [ARGS...]`.
// The library links the proxy-wasm SDK, whose host imports the request loop never calls
// (they throw if it did), and whose `_initialize` export node's WASI refuses next to `_start`.
const { WASI } = require('node:wasi');
const fs = require('node:fs');
const wasi = new WASI({ version: 'preview1', args: ['program', ...process.argv.slice(3)] });
// Held for good: node 20 may collect a WASI object its program is still running (a GC in
// fd_write frees its fd table under it, and node aborts with SIGABRT and no message).
globalThis.wasiInstance = wasi;
const mod = new WebAssembly.Module(fs.readFileSync(process.argv[2]));
const imports = wasi.getImportObject();
for (const imp of WebAssembly.Module.imports(mod)) {
  imports[imp.module] ??= {};
  if (!(imp.name in imports[imp.module])) {
    imports[imp.module][imp.name] = () => { throw new Error(`unexpected import ${imp.module}.${imp.name}`); };
  }
}
const instance = new WebAssembly.Instance(mod, imports);
const { _initialize, ...others } = instance.exports;
wasi.start({ exports: others });
