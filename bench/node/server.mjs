// The Node.js peer for bench/run.sh http: serves GET /hello by instantiating the same
// hello.wasm per request (precompiled once as a WebAssembly.Module), with a minimal WASI
// whose stdout is an in-memory buffer - the same shape of work the Outpost gateway does.
import http from 'node:http';
import fs from 'node:fs';

const [wasmPath, port] = [process.argv[2], Number(process.argv[3])];
const module = new WebAssembly.Module(fs.readFileSync(wasmPath));
const enc = new TextEncoder();

class Exit extends Error {}

function run(env) {
  const envBytes = Object.entries(env).map(([k, v]) => enc.encode(`${k}=${v}\0`));
  const out = [];
  let memory;
  const view = () => new DataView(memory.buffer);
  const wasi = {
    environ_sizes_get(countPtr, sizePtr) {
      view().setUint32(countPtr, envBytes.length, true);
      view().setUint32(sizePtr, envBytes.reduce((n, b) => n + b.length, 0), true);
      return 0;
    },
    environ_get(ptrs, buf) {
      const bytes = new Uint8Array(memory.buffer);
      envBytes.forEach((b, i) => { view().setUint32(ptrs + i * 4, buf, true); bytes.set(b, buf); buf += b.length; });
      return 0;
    },
    fd_write(fd, iovs, len, nwritten) {
      let n = 0;
      for (let i = 0; i < len; i++) {
        const p = view().getUint32(iovs + i * 8, true), l = view().getUint32(iovs + i * 8 + 4, true);
        if (fd === 1) out.push(Buffer.from(new Uint8Array(memory.buffer, p, l)));
        n += l;
      }
      view().setUint32(nwritten, n, true);
      return 0;
    },
    fd_fdstat_get(fd, buf) { new Uint8Array(memory.buffer, buf, 24).fill(0); view().setUint8(buf, 2); return 0; },
    fd_seek() { return 70; },
    fd_close() { return 0; },
    proc_exit(code) { throw new Exit(String(code)); },
  };
  const instance = new WebAssembly.Instance(module, { wasi_snapshot_preview1: wasi });
  memory = instance.exports.memory;
  try { instance.exports._start(); } catch (e) { if (!(e instanceof Exit)) throw e; }
  const text = Buffer.concat(out);
  const split = text.indexOf('\n\n');
  return text.subarray(split + 2);
}

http.createServer((req, res) => {
  if (!req.url.startsWith('/hello')) { res.statusCode = 404; res.end(); return; }
  const body = run({ OUTPOST_NODE_NAME: 'edge-1', GREETING: 'hello', REQUEST_METHOD: req.method, PATH_INFO: '', SCRIPT_NAME: '/hello' });
  res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': body.length });
  res.end(body);
}).listen(port, '127.0.0.1', () => console.log(`node: http://127.0.0.1:${port}`));
