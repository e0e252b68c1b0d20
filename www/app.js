// The demo page: pick a model, watch it download and load, chat with it. UI glue only; the engine
// runs in a dedicated worker through WorkerEngine.
import { Conversations, WorkerEngine, chatThroughRouter, configureRouter, offerLocalEngine } from '/pkg/index.js';

// Files the engine reads (tests/demo_catalog_lists_only_readable_files.rs checks each entry).
const CATALOG = await fetch(new URL('catalog.json', import.meta.url)).then((r) => r.json());

const $ = (id) => document.getElementById(id);
const ui = {
  catalog: $('catalog'), customUrl: $('custom-url'), load: $('load'), file: $('file'), del: $('delete'),
  progress: $('progress'), bar: $('bar'), progressText: $('progress-text'), status: $('status'), cached: $('cached'),
  messages: $('messages'), composer: $('composer'), prompt: $('prompt'), send: $('send'), stop: $('stop'), stats: $('stats'),
  useRouter: $('use-router'), mode: $('mode'), providerUrl: $('provider-url'), providerKey: $('provider-key'),
  providerModel: $('provider-model'), saveRouter: $('save-router'), routerStatus: $('router-status'),
  conversations: $('conversations'), newChat: $('new-chat'), update: $('update'),
};
const ROUTER_SETTINGS = 'candlelight-demo-router';
const params = new URLSearchParams(location.search);
let engine = null;
let history = [];
// The conversation on screen, kept in IndexedDB after every answer (null until the first), and
// the revision this tab last loaded or saved of it.
let conversation = null;
let revision = 0;
let controller = null;
// What happened, for anyone inspecting the page (the Playwright tests read it).
window.candlelightDemo = { progress: [] };

for (const m of CATALOG) ui.catalog.add(new Option(m.name, m.url));
if (params.get('model')) ui.customUrl.value = params.get('model');

const mib = (n) => `${(n / 1048576).toFixed(1)} MiB`;
const say = (text, error = false) => {
  ui.status.textContent = text;
  ui.status.className = error ? 'error' : '';
};

async function showCached() {
  const files = await WorkerEngine.cached().catch(() => []);
  ui.cached.replaceChildren(...files.map((f) => {
    const li = document.createElement('li');
    li.textContent = `${f.complete ? '✓' : '…'} ${f.url.split('/').pop()} (${mib(f.size)})${f.verified ? ', SHA-256 verified' : ''}`;
    return li;
  }));
}

function selectedUrl() {
  return ui.customUrl.value.trim() || ui.catalog.value;
}

async function load(source) {
  engine?.unload();
  engine = null;
  setChat(false);
  ui.load.disabled = true;
  ui.progress.hidden = false;
  say('Loading…');
  const options = {
    onProgress: ({ phase, loaded, total }) => {
      window.candlelightDemo.progress.push({ phase, loaded, total });
      ui.bar.value = total ? loaded / total : 0;
      ui.progressText.textContent = phase === 'compile' ? 'compiling the GPU kernels…' : `${phase}: ${mib(loaded)} / ${mib(total)}`;
      ui.progress.dataset.phase = phase;
    },
  };
  if (params.get('chunkSize')) options.chunkSize = Number(params.get('chunkSize'));
  if (params.get('retries')) options.retries = Number(params.get('retries'));
  if (params.get('backend')) options.backend = params.get('backend');
  // Extra origins read as Hugging Face's hub (a mirror; the tests' hub emulator).
  const hubMirrors = params.getAll('hub');
  if (hubMirrors.length) options.hubMirrors = hubMirrors;
  try {
    const started = performance.now();
    engine = await WorkerEngine.load(source, options);
    const info = engine.info;
    say(`Loaded ${info.id} (${info.architecture}, ${mib(info.size)}) on the ${where(info)} in ${((performance.now() - started) / 1000).toFixed(1)} s`);
    document.body.dataset.backend = info.backend;
    document.body.dataset.loaded = info.id;
    if (ui.useRouter.checked) await offerEngine();
    setChat(true);
    if (typeof source === 'string') offerUpdate(source, hubMirrors);
  } catch (e) {
    say(`${e.code ?? 'error'}: ${e.message}`, true);
    document.body.dataset.error = e.code ?? 'error';
  } finally {
    ui.load.disabled = false;
    showCached();
  }
}

/** Asks the model's server whether it has a newer file than the stored one (nothing is
 *  downloaded; offline, nothing is said), and offers to fetch it. */
async function offerUpdate(source, hubMirrors) {
  ui.update.hidden = true;
  const check = await WorkerEngine.checkForUpdate(source, { hubMirrors }).catch(() => null);
  document.body.dataset.updateChecked = check ? String(check.updateAvailable) : 'failed';
  if (!check?.updateAvailable) return;
  ui.update.hidden = false;
  ui.update.onclick = async () => {
    ui.update.hidden = true;
    await WorkerEngine.delete(check.url);
    load(source);
  };
}

/** Where the model runs, in words: the GPU adapter, or the CPU and why. */
function where(info) {
  if (info.backend === 'gpu') return `GPU (WebGPU: ${info.adapter}${info.shaderF16 ? ', f16' : ''})`;
  return info.fallbackReason ? `CPU (${info.fallbackReason})` : 'CPU';
}

async function offerEngine() {
  if (!engine) return;
  const verdict = await offerLocalEngine(engine);
  ui.routerStatus.textContent = verdict.verdict === 'capable'
    ? `This device: about ${verdict.tokensPerS.toFixed(0)} tok/s on the ${verdict.backend}`
    : `This device is too weak for this model (${verdict.reason}); the provider answers first`;
}

// The key goes to the service worker, which keeps it sealed; this page keeps only whether
// there is one, and an empty key field means "keep it".
async function saveRouter() {
  const typed = ui.providerKey.value;
  const before = JSON.parse(localStorage.getItem(ROUTER_SETTINGS) ?? '{}');
  const settings = { use: ui.useRouter.checked, mode: ui.mode.value, url: ui.providerUrl.value.trim(), model: ui.providerModel.value.trim() };
  const name = settings.url && new URL(settings.url).hostname;
  const keys = typed ? { keys: [{ key: typed }] } : before.hasKey && before.url === settings.url ? { keepKeys: true } : { keys: [] };
  const providers = settings.url ? [{ name, baseUrl: settings.url, ...keys, models: { local: settings.model || 'deepseek-chat' } }] : [];
  let held;
  try {
    held = await configureRouter({ mode: settings.mode, providers });
  } catch (e) {
    ui.routerStatus.textContent = e.message;
    return;
  }
  settings.hasKey = (held?.providers?.[0]?.keys ?? 0) > 0;
  localStorage.setItem(ROUTER_SETTINGS, JSON.stringify(settings));
  ui.providerKey.value = '';
  ui.providerKey.placeholder = settings.hasKey ? 'kept by the router; type to replace' : 'sk-…';
  ui.routerStatus.textContent = 'Saved.';
  if (settings.use) await offerEngine();
  document.body.dataset.router = settings.use ? 'on' : 'off';
}

function restoreRouter() {
  const s = JSON.parse(localStorage.getItem(ROUTER_SETTINGS) ?? 'null');
  if (!s) return;
  ui.useRouter.checked = s.use;
  ui.mode.value = s.mode;
  ui.providerUrl.value = s.url;
  ui.providerKey.placeholder = s.hasKey ? 'kept by the router; type to replace' : 'sk-…';
  ui.providerModel.value = s.model;
}

function setChat(on) {
  ui.prompt.disabled = !on;
  ui.send.disabled = !on;
}

function bubble(role) {
  const li = document.createElement('li');
  li.className = `msg ${role}`;
  const text = document.createElement('div');
  text.className = 'text';
  li.append(text);
  ui.messages.append(li);
  return li;
}

/** Shows a kept message: its text, and an R1-style model's reasoning folded above it. */
function showMessage({ role, content, reasoning_content: reasoning }) {
  const li = bubble(role);
  li.querySelector('.text').textContent = typeof content === 'string' ? content : (content ?? []).map((p) => p.text ?? '').join('');
  if (reasoning) {
    const d = document.createElement('details');
    d.innerHTML = '<summary>Reasoning</summary><div class="reasoning"></div>';
    d.querySelector('.reasoning').textContent = reasoning;
    li.prepend(d);
  }
  li.dataset.done = '1';
}

async function showConversations() {
  const all = await Conversations.list().catch(() => []);
  ui.conversations.replaceChildren(new Option('New chat', ''), ...all.map((c) => new Option(`${c.title} (${c.messages})`, c.id)));
  ui.conversations.value = conversation ?? '';
}

/** Puts a kept conversation on screen (or a new one for ''), to continue it. */
async function openConversation(id) {
  const kept = id ? await Conversations.load(id) : null;
  conversation = kept?.id ?? null;
  revision = kept?.revision ?? 0;
  history = kept?.messages ?? [];
  ui.messages.replaceChildren();
  history.forEach(showMessage);
  document.body.dataset.conversation = conversation ?? '';
  await showConversations();
}

/** Saves the conversation on screen. When another tab has saved it since this one loaded it,
 *  this tab's version is kept as a new conversation rather than written over the other. */
async function keep() {
  const save = (id, rev) => Conversations.save({ id, revision: rev, messages: history, model: engine?.info.id });
  try {
    ({ id: conversation, revision } = await save(conversation ?? undefined, revision).catch((e) => {
      if (e.code !== 'conflict') throw e;
      say('Another tab changed this conversation; this one is kept as a new conversation.');
      return save(undefined, 0);
    }));
  } catch (e) {
    say(`${e.code}: ${e.message}`, true);
  }
  document.body.dataset.conversation = conversation ?? '';
}

async function send(text) {
  history.push({ role: 'user', content: text });
  bubble('user').querySelector('.text').textContent = text;
  const reply = bubble('assistant');
  const out = reply.querySelector('.text');
  let thinking = null;
  let content = '';
  controller = new AbortController();
  ui.send.hidden = true;
  ui.stop.hidden = false;
  ui.prompt.disabled = true;
  const started = performance.now();
  let firstToken = 0;
  try {
    const request = {
      messages: history, stream: true, stream_options: { include_usage: true },
      max_tokens: Number(params.get('max_tokens') || 256), temperature: Number(params.get('temperature') ?? 0.7),
    };
    const stream = ui.useRouter.checked
      ? await chatThroughRouter({ model: 'local', ...request }, { signal: controller.signal })
      : await engine.chat.completions.create({ ...request, signal: controller.signal });
    let chunks = 0;
    for await (const chunk of stream) {
      reply.dataset.chunks = ++chunks;
      const choice = chunk.choices[0];
      if (chunk.usage) reply.dataset.completionTokens = chunk.usage.completion_tokens;
      if (!choice) continue;
      const { content: piece, reasoning_content: thought } = choice.delta;
      if ((piece || thought) && !firstToken) firstToken = performance.now() - started;
      if (thought) {
        if (!thinking) {
          thinking = document.createElement('details');
          thinking.open = true;
          thinking.innerHTML = '<summary>Reasoning</summary><div class="reasoning"></div>';
          reply.prepend(thinking);
        }
        thinking.querySelector('.reasoning').textContent += thought;
      }
      if (piece) {
        content += piece;
        out.textContent = content;
      }
      if (choice.finish_reason) {
        reply.dataset.finish = choice.finish_reason;
        const t = chunk.timings;
        if (t) ui.stats.textContent = `time to first token ${Math.round(firstToken)} ms · prefill ${t.prefill_tokens_per_s.toFixed(1)} tok/s · decode ${t.decode_tokens_per_s.toFixed(1)} tok/s · ${engine?.info.backend.toUpperCase() ?? ""}`;
        if (engine) document.body.dataset.backend = engine.info.backend;
        if (stream.route) {
          ui.stats.textContent = `answered by ${stream.route} · time to first token ${Math.round(firstToken)} ms`;
          document.body.dataset.route = stream.route;
        }
      }
    }
    if (thinking) thinking.open = false;
  } catch (e) {
    reply.dataset.finish = e.code === 'aborted' ? 'aborted' : 'error';
    if (e.code !== 'aborted') say(`${e.code}: ${e.message}`, true);
  } finally {
    const reasoning = thinking?.querySelector('.reasoning').textContent;
    history.push({ role: 'assistant', content, ...(reasoning ? { reasoning_content: reasoning } : {}) });
    await keep();
    showConversations();
    reply.dataset.done = '1';
    controller = null;
    ui.send.hidden = false;
    ui.stop.hidden = true;
    ui.prompt.disabled = false;
    ui.prompt.focus();
  }
}

ui.load.addEventListener('click', () => load(selectedUrl()));
ui.file.addEventListener('change', () => ui.file.files[0] && load(ui.file.files[0]));
ui.del.addEventListener('click', async () => {
  const url = new URL(selectedUrl(), location.href).href;
  const gone = await WorkerEngine.delete(url);
  say(gone ? `Deleted ${url.split('/').pop()}` : 'That model was not cached');
  showCached();
});
ui.stop.addEventListener('click', () => controller?.abort());
ui.saveRouter.addEventListener('click', () => saveRouter().catch((e) => { ui.routerStatus.textContent = e.message; }));
ui.useRouter.addEventListener('change', () => {
  setChat(Boolean(engine) || ui.useRouter.checked);
  saveRouter().catch((e) => { ui.routerStatus.textContent = e.message; });
});
restoreRouter();
ui.composer.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const text = ui.prompt.value.trim();
  if (!text || !(engine || ui.useRouter.checked) || controller) return;
  ui.prompt.value = '';
  send(text);
});
ui.prompt.addEventListener('keydown', (ev) => {
  if (ev.key === 'Enter' && !ev.shiftKey) {
    ev.preventDefault();
    ui.composer.requestSubmit();
  }
});

ui.conversations.addEventListener('change', () => openConversation(ui.conversations.value));
ui.newChat.addEventListener('click', () => openConversation(''));

showCached();
// A reload resumes the last conversation (or the one named by ?conversation=).
Conversations.list()
  .then((all) => openConversation(params.get('conversation') ?? all[0]?.id ?? ''))
  .catch((e) => say(`conversations: ${e.message}`, true));
if (params.has('autoload')) load(selectedUrl());

// The service worker keeps the app shell for offline use and serves /v1/* through the router.
// `?sw=0` leaves it out (tests of the page alone).
if ('serviceWorker' in navigator && params.get('sw') !== '0') {
  navigator.serviceWorker.register('sw.js', { type: 'module' }).catch((e) => console.warn('service worker not registered:', e.message));
}
