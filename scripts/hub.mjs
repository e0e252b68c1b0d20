// A Hugging Face hub emulator for the tests: two servers on 127.0.0.1, the hub and its CDN, that
// answer as the real ones are documented and reported to:
//
// - hub  GET|HEAD /{owner}/{name}/resolve/{revision}/{path}: 302 to a signed CDN URL, with
//        X-Repo-Commit, X-Linked-Etag (the LFS SHA-256, quoted) and X-Linked-Size on the 302 only
//        (a browser's fetch follows the redirect and never sees them). 404 with X-Error-Code for
//        an unknown revision or file.
// - hub  POST /api/models/{owner}/{name}/paths-info/{revision}: JSON (or form) `paths`, answered
//        with [{ type, oid, size, path, lfs: { oid, size, pointerSize }, xetHash? }].
// - hub  GET /{owner}/{name}/raw/{revision}/{path}: the Git LFS pointer file (`oid sha256:…`).
// - cdn  GET|HEAD /{store}/{owner}/{name}/{sha256}?Expires=…&Signature=…: the bytes, with Range,
//        CORS for any origin, ETag, Accept-Ranges, Content-Range; 403 once the URL has expired.
//        Files stored on Xet answer an ETag of 64 hex digits that is NOT their SHA-256; files
//        stored on LFS answer their SHA-256 as the ETag.
//
// Every repository name resolves (tests each use their own, since they run concurrently), with
// the same files, taken from --models (the generated fixtures):
//   tiny-xet.gguf  stored on Xet (fixtures/tiny-qwen3-q8_0.gguf)
//   tiny-lfs.gguf  stored on LFS (fixtures/tiny-qwen3-q4_k_m.gguf)
// Tests steer one repository over GET /__control?repo=owner/name&… (hub origin):
//   commit=PATH:FIXTURE  a new commit on main in which PATH holds another fixture's bytes
//   expire=1             every CDN URL signed so far expires (403)
//   cut=N                the next CDN response that reaches byte N of its file drops there
//   api=0                paths-info answers 404 (the pointer file still answers)
//   raw=0                the pointer file answers 404
// and read back GET /__log?repo=owner/name: [{ server, method, path, range, status, sent, cut }].
//
//   node scripts/hub.mjs [--models fixtures]   prints "hub http://… cdn http://…"
import { createServer } from 'node:http';
import { createHash, createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
};
const root = resolve(new URL('..', import.meta.url).pathname);
const models = resolve(arg('models', join(root, 'fixtures')));
const SECRET = 'hub-emulator';

const blobs = new Map(); // sha256 → bytes
function blob(fixture) {
  const bytes = readFileSync(join(models, fixture));
  const sha = createHash('sha256').update(bytes).digest('hex');
  blobs.set(sha, bytes);
  return sha;
}
const STORED_ON = { 'tiny-xet.gguf': 'xet', 'tiny-lfs.gguf': 'lfs' };
const FIRST = { 'tiny-xet.gguf': 'tiny-qwen3-q8_0.gguf', 'tiny-lfs.gguf': 'tiny-qwen3-q4_k_m.gguf' };
const sha1 = (s) => createHash('sha1').update(s).digest('hex');
const sha256 = (s) => createHash('sha256').update(s).digest('hex');

const repos = new Map();
function repo(name) {
  if (!repos.has(name)) {
    const files = Object.fromEntries(Object.entries(FIRST).map(([path, fixture]) => [path, blob(fixture)]));
    repos.set(name, { commits: [{ id: sha1(`${name}:0`), files }], generation: 0, cut: null, api: true, raw: true, log: [] });
  }
  return repos.get(name);
}
const head = (r) => r.commits[r.commits.length - 1];
const atRevision = (r, rev) => (rev === 'main' ? head(r) : r.commits.find((c) => c.id === rev));
// The Xet CDN's ETag: 64 hex digits, stable per content, and not the SHA-256 of the bytes.
const xetEtag = (sha) => sha256(`xet-chunk-hash:${sha}`);
const pointer = (sha) => `version https://git-lfs.github.com/spec/v1\noid sha256:${sha}\nsize ${blobs.get(sha).length}\n`;

function cors(res, expose) {
  res.setHeader('Access-Control-Allow-Origin', '*');
  res.setHeader('Access-Control-Allow-Headers', 'Range, Content-Type, Authorization');
  res.setHeader('Access-Control-Expose-Headers', expose);
}

const json = (res, status, body, headers = {}) => {
  res.writeHead(status, { 'Content-Type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
};

async function body(req) {
  const parts = [];
  for await (const p of req) parts.push(p);
  return Buffer.concat(parts).toString();
}

let cdnOrigin = '';
const sign = (path, expires, generation) => createHmac('sha256', SECRET).update(`${path}|${expires}|${generation}`).digest('hex').slice(0, 32);

const hub = createServer(async (req, res) => {
  cors(res, 'X-Repo-Commit, X-Linked-Etag, X-Linked-Size, X-Error-Code, ETag, Content-Length');
  if (req.method === 'OPTIONS') return res.writeHead(204).end();
  const url = new URL(req.url, 'http://x');
  const q = url.searchParams;
  if (url.pathname === '/__control') {
    const r = repo(q.get('repo'));
    if (q.has('commit')) {
      const [path, fixture] = q.get('commit').split(':');
      const files = { ...head(r).files, [path]: blob(fixture) };
      r.commits.push({ id: sha1(`${q.get('repo')}:${r.commits.length}`), files });
    }
    if (q.has('expire')) r.generation += 1;
    if (q.has('cut')) r.cut = Number(q.get('cut'));
    if (q.has('api')) r.api = q.get('api') === '1';
    if (q.has('raw')) r.raw = q.get('raw') === '1';
    return json(res, 200, { commit: head(r).id, files: head(r).files, generation: r.generation });
  }
  if (url.pathname === '/__log') return json(res, 200, repo(q.get('repo')).log);

  const api = /^\/api\/models\/([^/]+\/[^/]+)\/paths-info\/([^/]+)$/.exec(url.pathname);
  if (api && req.method === 'POST') {
    const r = repo(decodeURIComponent(api[1]));
    const text = await body(req);
    const entry = { server: 'hub', method: 'POST', path: url.pathname, status: 200 };
    r.log.push(entry);
    const commit = atRevision(r, decodeURIComponent(api[2]));
    if (!r.api || !commit) {
      entry.status = 404;
      return json(res, 404, { error: 'Not Found' }, { 'X-Error-Code': commit ? 'RepoNotFound' : 'RevisionNotFound' });
    }
    let paths;
    let expand = false;
    if ((req.headers['content-type'] || '').startsWith('application/json')) {
      const parsed = JSON.parse(text || '{}');
      paths = [parsed.paths ?? []].flat();
      expand = Boolean(parsed.expand);
    } else {
      const form = new URLSearchParams(text);
      paths = form.getAll('paths');
      expand = form.get('expand') === 'true';
    }
    const answer = paths.filter((p) => commit.files[p]).map((p) => {
      const sha = commit.files[p];
      const size = blobs.get(sha).length;
      const info = { type: 'file', oid: sha1(pointer(sha)), size, lfs: { oid: sha, size, pointerSize: pointer(sha).length }, path: p };
      if (STORED_ON[p] === 'xet') info.xetHash = xetEtag(sha);
      if (expand) info.lastCommit = { id: commit.id, title: 'Upload', date: '2026-12-01T00:00:00.000Z' };
      return info;
    });
    return json(res, 200, answer);
  }

  const m = /^\/([^/]+\/[^/]+)\/(resolve|raw)\/([^/]+)\/(.+)$/.exec(url.pathname);
  if (!m || !['GET', 'HEAD'].includes(req.method)) return json(res, 404, { error: 'Not Found' });
  const [, name, kind, rev, path] = m.map(decodeURIComponent);
  const r = repo(name);
  const entry = { server: 'hub', method: req.method, path: url.pathname, range: req.headers.range || null };
  r.log.push(entry);
  const commit = atRevision(r, rev);
  const sha = commit?.files[path];
  if (!sha) {
    entry.status = 404;
    return json(res, 404, { error: 'Entry not found' }, { 'X-Error-Code': commit ? 'EntryNotFound' : 'RevisionNotFound' });
  }
  if (kind === 'raw') {
    entry.status = r.raw ? 200 : 404;
    if (!r.raw) return json(res, 404, { error: 'Entry not found' });
    res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8', ETag: `"${sha1(pointer(sha))}"` });
    return res.end(req.method === 'HEAD' ? undefined : pointer(sha));
  }
  const cdnPath = `/${STORED_ON[path]}/${name}/${sha}`;
  const expires = Math.floor(Date.now() / 1000) + 3600;
  const location = `${cdnOrigin}${cdnPath}?Expires=${expires}&g=${r.generation}&Signature=${sign(cdnPath, expires, r.generation)}`;
  entry.status = 302;
  entry.location = location;
  res.writeHead(302, {
    Location: location,
    'X-Repo-Commit': commit.id,
    'X-Linked-Etag': `"${sha}"`,
    'X-Linked-Size': String(blobs.get(sha).length),
    ETag: `"${sha}"`,
    'Content-Length': 0,
  });
  res.end();
});

const cdn = createServer((req, res) => {
  cors(res, 'Content-Range, Content-Length, ETag, Accept-Ranges');
  if (req.method === 'OPTIONS') return res.writeHead(204).end();
  const url = new URL(req.url, 'http://x');
  const m = /^\/(xet|lfs)\/([^/]+\/[^/]+)\/([0-9a-f]{64})$/.exec(url.pathname);
  if (!m) return res.writeHead(404).end();
  const [, store, name, sha] = m;
  const r = repo(decodeURIComponent(name));
  const entry = { server: 'cdn', method: req.method, path: url.pathname, range: req.headers.range || null, generation: Number(url.searchParams.get('g')), sent: 0, cut: false };
  r.log.push(entry);
  const q = url.searchParams;
  const valid = q.get('Signature') === sign(url.pathname, q.get('Expires'), q.get('g'))
    && Number(q.get('Expires')) > Date.now() / 1000 && Number(q.get('g')) === r.generation;
  if (!valid) {
    entry.status = 403;
    res.writeHead(403, { 'Content-Type': 'application/xml' });
    return res.end('<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>');
  }
  const bytes = blobs.get(sha);
  const size = bytes.length;
  let [start, end] = [0, size - 1];
  const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range || '');
  if (range) {
    start = Number(range[1]);
    end = range[2] ? Math.min(Number(range[2]), size - 1) : size - 1;
    if (start >= size || end < start) {
      entry.status = 416;
      return res.writeHead(416, { 'Content-Range': `bytes */${size}` }).end();
    }
  }
  entry.status = range ? 206 : 200;
  const headers = {
    'Content-Type': 'binary/octet-stream',
    'Content-Length': end - start + 1,
    'Accept-Ranges': 'bytes',
    ETag: `"${store === 'xet' ? xetEtag(sha) : sha}"`,
    'Cache-Control': 'public, max-age=604800, immutable',
  };
  if (range) headers['Content-Range'] = `bytes ${start}-${end}/${size}`;
  res.writeHead(entry.status, headers);
  if (req.method === 'HEAD') return res.end();
  const cut = r.cut !== null && r.cut > start && r.cut <= end ? r.cut : null;
  if (cut === null) {
    entry.sent = end - start + 1;
    return res.end(bytes.subarray(start, end + 1));
  }
  r.cut = null;
  entry.cut = true;
  entry.sent = cut - start;
  // The connection drops a second after the last byte, so the reader takes what was sent first
  // (a fetch body that errors drops the pieces not yet read).
  res.write(bytes.subarray(start, cut), () => setTimeout(() => res.socket?.destroy(), 1000));
});

await new Promise((ok) => cdn.listen(0, '127.0.0.1', ok));
cdnOrigin = `http://127.0.0.1:${cdn.address().port}`;
await new Promise((ok) => hub.listen(Number(arg('port', 0)), '127.0.0.1', ok));
console.log(`hub http://127.0.0.1:${hub.address().port} cdn ${cdnOrigin}`);
