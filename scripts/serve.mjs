// The demo and test server: www/ at /, pkg/ at /pkg/, model files at /models/ with HTTP Range,
// an ETag (each file's SHA-256, as an LFS CDN sends it; the client never takes it for a hash)
// and CORS for other origins.
// Tests steer it over GET /__control?... and read every model request back from GET /__log.
//
//   node scripts/serve.mjs [--port 8080] [--models fixtures] [--www www] [--host 127.0.0.1] [--isolate]
//
// --isolate sends COOP `same-origin` and COEP `require-corp` (and CORP `cross-origin`, so other
// isolated pages may still load these files) on every response: pages are cross-origin isolated
// (on localhost or HTTPS), and the package runs its threaded build in a WorkerEngine.
import { createServer } from 'node:http';
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, readFileSync, statSync } from 'node:fs';
import { extname, join, normalize, resolve } from 'node:path';

const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
};
const root = resolve(new URL('..', import.meta.url).pathname);
const port = Number(arg('port', process.env.PORT || 8080));
const host = arg('host', '127.0.0.1');
const dirs = { '/pkg/': join(root, 'pkg'), '/node_modules/': join(root, 'node_modules'), '/models/': resolve(arg('models', join(root, 'fixtures'))), '/': resolve(arg('www', join(root, 'www'))) };
const types = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.mjs': 'text/javascript', '.css': 'text/css',
  '.json': 'application/json', '.wasm': 'application/wasm', '.webmanifest': 'application/manifest+json',
  '.svg': 'image/svg+xml', '.png': 'image/png', '.ts': 'text/plain', '.gguf': 'application/octet-stream',
};

// Faults, set by tests: cut the connection once a response reaches a byte offset; ignore Range;
// answer every model request with 503 (the model server is "down"). Set for all requests with
// /__control, or for one model URL by its query (?cut=N,M&noRange=1&down=1), so concurrent tests
// do not share them. Each cut fires once. Per URL only: weakEtag=1 sends a resumed (ranged from
// past byte 0) response's ETag weak, as CDNs do; wrongStart=1 answers such a Range from byte 0.
const state = { cuts: [], noRange: false, down: false, log: [], fired: new Set() };
const hashes = new Map();
const sha256 = (path) => {
  const { mtimeMs, size } = statSync(path);
  const key = `${path}:${mtimeMs}:${size}`;
  if (!hashes.has(key)) hashes.set(key, createHash('sha256').update(readFileSync(path)).digest('hex'));
  return hashes.get(key);
};

function cors(res) {
  res.setHeader('Access-Control-Allow-Origin', '*');
  res.setHeader('Access-Control-Allow-Headers', 'Range, Content-Type');
  res.setHeader('Access-Control-Expose-Headers', 'Content-Range, Content-Length, ETag, X-Linked-Etag, Accept-Ranges');
}

function control(url, res) {
  const q = url.searchParams;
  if (q.has('reset')) Object.assign(state, { cuts: [], noRange: false, down: false, log: [], fired: new Set() });
  if (q.has('cut')) state.cuts = q.get('cut').split(',').filter(Boolean).map(Number).sort((a, b) => a - b);
  if (q.has('noRange')) state.noRange = q.get('noRange') === '1';
  if (q.has('down')) state.down = q.get('down') === '1';
  res.setHeader('Content-Type', 'application/json');
  res.end(JSON.stringify({ cuts: state.cuts, noRange: state.noRange, down: state.down }));
}

// A file that claims to be 1 PiB: what a download too big for the device's storage looks like.
function serveHuge(req, res) {
  const size = 2 ** 50;
  state.log.push({ url: req.url, path: new URL(req.url, 'http://x').pathname, range: req.headers.range || null, status: 206, start: 0, sent: 0, cut: false });
  res.writeHead(206, { 'Content-Range': `bytes 0-${size - 1}/${size}`, 'Content-Length': size, 'Accept-Ranges': 'bytes' });
  res.write(Buffer.alloc(4096));
  setTimeout(() => res.socket && res.socket.destroy(), 2000);
}

function serveModel(req, res, path) {
  const size = statSync(path).size;
  const url = new URL(req.url, 'http://x');
  const q = url.searchParams;
  const entry = { url: req.url, path: url.pathname, range: req.headers.range || null, status: 0, start: 0, sent: 0, cut: false };
  state.log.push(entry);
  const noRange = state.noRange || q.get('noRange') === '1';
  const cuts = [...state.cuts, ...(q.get('cut') || '').split(',').filter(Boolean).map(Number)]
    .filter((c) => !state.fired.has(`${req.url}#${c}`))
    .sort((a, b) => a - b);
  if (state.down || q.get('down') === '1') {
    entry.status = 503;
    res.writeHead(503, { 'Retry-After': '1' });
    return res.end('model server down');
  }
  let start = 0;
  let end = size - 1;
  const m = !noRange && /^bytes=(\d+)-(\d*)$/.exec(req.headers.range || '');
  const wrongStart = m && Number(m[1]) > 0 && q.get('wrongStart') === '1';
  if (m && !wrongStart) {
    start = Number(m[1]);
    end = m[2] ? Math.min(Number(m[2]), size - 1) : size - 1;
    if (start >= size || end < start) {
      entry.status = 416;
      res.writeHead(416, { 'Content-Range': `bytes */${size}` });
      return res.end();
    }
  }
  const weak = m && Number(m[1]) > 0 && q.get('weakEtag') === '1' ? 'W/' : '';
  const headers = { 'Content-Type': 'application/octet-stream', 'Content-Length': end - start + 1, 'Accept-Ranges': noRange ? 'none' : 'bytes', ETag: `${weak}"${sha256(path)}"`, 'Cache-Control': 'no-cache' };
  if (m) headers['Content-Range'] = `bytes ${start}-${end}/${size}`;
  entry.status = m ? 206 : 200;
  entry.start = start;
  res.writeHead(entry.status, headers);
  if (req.method === 'HEAD') return res.end();
  const cut = cuts.find((c) => c > start && c <= end);
  const stream = createReadStream(path, { start, end });
  stream.on('data', (buf) => {
    const at = start + entry.sent;
    if (cut !== undefined && at + buf.length >= cut) {
      state.fired.add(`${req.url}#${cut}`);
      entry.cut = true;
      stream.destroy();
      const keep = buf.subarray(0, cut - at);
      entry.sent += keep.length;
      // The connection drops a second after the last byte, not at once: a fetch body that
      // errors drops the pieces its reader has not taken yet, and a reader busy storing a
      // chunk would then see the cut earlier than the log says it came.
      res.write(keep, () => setTimeout(() => res.socket?.destroy(), 1000));
      return;
    }
    entry.sent += buf.length;
    if (!res.write(buf)) {
      stream.pause();
      res.once('drain', () => stream.resume());
    }
  });
  stream.on('end', () => res.end());
  stream.on('error', () => res.destroy());
}

const isolate = process.argv.includes('--isolate');

const server = createServer((req, res) => {
  cors(res);
  if (isolate) {
    res.setHeader('Cross-Origin-Opener-Policy', 'same-origin');
    res.setHeader('Cross-Origin-Embedder-Policy', 'require-corp');
    res.setHeader('Cross-Origin-Resource-Policy', 'cross-origin');
  }
  if (req.method === 'OPTIONS') return res.writeHead(204).end();
  const url = new URL(req.url, 'http://x');
  if (url.pathname === '/__control') return control(url, res);
  if (url.pathname === '/__log') {
    res.setHeader('Content-Type', 'application/json');
    return res.end(JSON.stringify(state.log));
  }
  const prefix = Object.keys(dirs).find((p) => url.pathname.startsWith(p));
  const base = dirs[prefix];
  let path = normalize(join(base, decodeURIComponent(url.pathname.slice(prefix.length))));
  if (!path.startsWith(base)) return res.writeHead(403).end();
  if (prefix === '/models/' && url.pathname.endsWith('/huge.gguf')) return serveHuge(req, res);
  if (existsSync(path) && statSync(path).isDirectory()) path = join(path, 'index.html');
  if (!existsSync(path)) return res.writeHead(404).end('not found');
  if (prefix === '/models/') return serveModel(req, res, path);
  // As a static host answers: a validator, so a revalidated file keeps what the browser cached
  // with it (V8's compiled wasm code among it).
  const { mtimeMs, size } = statSync(path);
  const etag = `W/"${size.toString(16)}-${Math.floor(mtimeMs).toString(16)}"`;
  const headers = { 'Content-Type': types[extname(path)] || 'application/octet-stream', 'Cache-Control': 'no-cache', ETag: etag };
  if (req.headers['if-none-match'] === etag) return res.writeHead(304, headers).end();
  res.writeHead(200, headers);
  createReadStream(path).pipe(res);
});
server.listen(port, host, () => console.log(`serving www/ on http://${host}:${port}/ (models from ${dirs['/models/']})`));
