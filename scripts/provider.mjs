// An OpenAI-compatible provider on 127.0.0.1 that answers as DeepSeek's API does (SSE chunks,
// usage, reasoning_content for deepseek-reasoner, 401 for an unknown key, `prefix` assistant
// messages continued), with faults injected on command for the router tests.
//
//   node scripts/provider.mjs --port 0 --name p1 [--keys sk-a,sk-b] [--words 8]
//
// POST /__faults {"faults": ["429", "503busy", "hang", "stall:2", "cut:2", "malformed", "errorevent:2",
// "nodone", "401", "400echo", "none"]} queues faults; each request takes the next one ("none": a
// plain answer). GET /__log lists the requests seen.
import { createServer } from 'node:http';

const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
};
const name = arg('name', 'provider');
const keys = arg('keys', '') ? arg('keys').split(',') : null;
const words = Number(arg('words', 8));
const faults = [];
const log = [];

function cors(res) {
  res.setHeader('Access-Control-Allow-Origin', '*');
  res.setHeader('Access-Control-Allow-Headers', 'Authorization, Content-Type');
  res.setHeader('Access-Control-Allow-Methods', 'GET, POST, OPTIONS');
  res.setHeader('Access-Control-Expose-Headers', 'Retry-After');
}

const json = (res, status, body, headers = {}) => {
  res.writeHead(status, { 'Content-Type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
};

const chunk = (id, delta, finish = null) => ({
  id, object: 'chat.completion.chunk', created: 1700000000, model: `${name}-model`,
  choices: [{ index: 0, delta, finish_reason: finish, logprobs: null }],
});

async function readBody(req) {
  let text = '';
  for await (const piece of req) text += piece;
  return text;
}

const server = createServer(async (req, res) => {
  cors(res);
  if (req.method === 'OPTIONS') return res.writeHead(204).end();
  const url = new URL(req.url, 'http://x');
  if (url.pathname === '/__log') return json(res, 200, log);
  if (url.pathname === '/__faults') {
    faults.push(...JSON.parse(await readBody(req)).faults);
    return json(res, 200, { queued: faults.length });
  }
  if (url.pathname !== '/v1/chat/completions' || req.method !== 'POST') return json(res, 404, { error: { message: 'not found', type: 'invalid_request_error' } });
  const body = JSON.parse(await readBody(req));
  const auth = (req.headers.authorization ?? '').replace(/^Bearer /, '');
  // A refused key is refused before any queued fault is taken.
  const refused = keys && !keys.includes(auth);
  const fault = refused ? null : faults.shift() ?? null;
  log.push({ body, auth, fault, at: Date.now() });
  if (fault === '401' || refused) {
    return json(res, 401, { error: { message: 'Authentication Fails (no such user)', type: 'authentication_error', code: 'invalid_request_error' } });
  }
  if (fault === '429') return json(res, 429, { error: { message: 'Rate limit reached', type: 'rate_limit_error' } }, { 'Retry-After': '1' });
  if (fault === '503busy') return json(res, 503, { error: { message: 'Server busy, please try again later.', type: 'server_error' } });
  if (fault === 'hang') return; // never answers
  // A redirect elsewhere (?to=URL): the router must not follow it with the key.
  if (fault?.startsWith('redirect=')) {
    res.writeHead(307, { location: fault.slice('redirect='.length) });
    return res.end();
  }
  // A proxy that echoes the Authorization header in its error: the router must not pass it on.
  if (fault === '400echo') return json(res, 400, { error: { message: `Bad request with Authorization ${req.headers.authorization}`, type: 'invalid_request_error', param: 'messages' } });
  const last = body.messages?.at(-1);
  // Offered tools and not answering a tool's result: a call, as OpenAI makes one (id, type and
  // name first, then the arguments in pieces; finish_reason tool_calls).
  if (body.tools?.length && body.tool_choice !== 'none' && last?.role !== 'tool') {
    const id = `${name}-${log.length}`;
    const call = { id: `call_${name}_${log.length}`, type: 'function',
      function: { name: body.tool_choice?.function?.name ?? body.tools[0].function.name, arguments: JSON.stringify({ from: name }) } };
    if (!body.stream) {
      return json(res, 200, { id, object: 'chat.completion', created: 1700000000, model: `${name}-model`,
        choices: [{ index: 0, message: { role: 'assistant', content: null, tool_calls: [call] }, finish_reason: 'tool_calls' }],
        usage: { prompt_tokens: 10, completion_tokens: 5, total_tokens: 15 } });
    }
    res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
    const args = call.function.arguments;
    const half = args.length >> 1;
    for (const delta of [
      { role: 'assistant', content: null, tool_calls: [{ index: 0, ...call, function: { name: call.function.name, arguments: '' } }] },
      { tool_calls: [{ index: 0, function: { arguments: args.slice(0, half) } }] },
      { tool_calls: [{ index: 0, function: { arguments: args.slice(half) } }] },
    ]) res.write(`data: ${JSON.stringify(chunk(id, delta))}\n\n`);
    res.write(`data: ${JSON.stringify(chunk(id, {}, 'tool_calls'))}\n\n`);
    return res.end('data: [DONE]\n\n');
  }
  // The answer: words w0 w1 … continuing any assistant prefix the request carries.
  const prefix = last?.role === 'assistant' && last.prefix ? last.content : '';
  const start = prefix.split(' ').filter(Boolean).length;
  const budget = Math.min(body.max_tokens ?? words, words - start);
  const pieces = Array.from({ length: Math.max(budget, 0) }, (_, i) => `w${start + i} `);
  const reasoning = body.model === 'deepseek-reasoner';
  const usage = { prompt_tokens: 10, completion_tokens: pieces.length, total_tokens: 10 + pieces.length, prompt_cache_hit_tokens: 0 };
  const id = `${name}-${log.length}`;
  if (!body.stream) {
    return json(res, 200, {
      id, object: 'chat.completion', created: 1700000000, model: `${name}-model`,
      choices: [{ index: 0, message: { role: 'assistant', content: pieces.join(''), ...(reasoning ? { reasoning_content: 'thinking' } : {}) }, finish_reason: 'stop' }],
      usage,
    });
  }
  res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
  const send = (v) => res.write(`data: ${typeof v === 'string' ? v : JSON.stringify(v)}\n\n`);
  const [kind, at] = (fault ?? '').split(':');
  send(chunk(id, { role: 'assistant', content: '' }));
  if (reasoning) send(chunk(id, { reasoning_content: 'thinking' }));
  for (let i = 0; i < pieces.length; i++) {
    if (kind === 'stall' && i === Number(at)) return; // silent from here on
    // The connection drops mid-body, a moment after the last chunk, so the chunks sent are read
    // (a fetch body that errors drops the pieces its reader has not taken yet).
    if (kind === 'cut' && i === Number(at)) return setTimeout(() => res.destroy(), 100);
    if (kind === 'malformed' && i === Number(at ?? 0)) {
      send('{"choices": [{"delta": {"content": "w');
      return res.end();
    }
    // An error event mid-stream, as DeepSeek sends when it gives up on an answer under load.
    if (kind === 'errorevent' && i === Number(at)) {
      send({ error: { message: 'Server busy, please try again later.', type: 'server_error' } });
      return res.end();
    }
    send(chunk(id, { content: pieces[i] }));
    await new Promise((r) => setTimeout(r, 5));
  }
  send(chunk(id, {}, 'stop'));
  if (body.stream_options?.include_usage) send({ ...chunk(id, {}), choices: [], usage });
  // Some servers end the stream after the last chunk without the [DONE] line.
  res.end(kind === 'nodone' ? '' : 'data: [DONE]\n\n');
});

server.listen(Number(arg('port', 0)), '127.0.0.1', () => console.log(`provider ${name} on http://127.0.0.1:${server.address().port}`));
