// The popup: asks the background service worker's router (fetch /v1/chat/completions, as any app
// would) and shows the streamed answer and the route that gave it; settings choose the local
// model and a remote provider.
import { chatThroughRouter, configureRouter } from './pkg/index.js';

const $ = (id) => document.getElementById(id);
const SETTINGS = 'router';

/** Host permission for an origin the extension does not hold yet (asked on a click). */
async function allow(url) {
  const origins = [`${new URL(url).origin}/*`];
  return (await chrome.permissions.contains({ origins })) || chrome.permissions.request({ origins });
}

async function ask(e) {
  e.preventDefault();
  $('send').disabled = true;
  $('answer').textContent = $('reasoning').textContent = $('route').textContent = '';
  $('answer').className = '';
  $('reasoning').hidden = true;
  try {
    const stream = await chatThroughRouter({ model: 'default', messages: [{ role: 'user', content: $('prompt').value }] });
    $('route').textContent = `answered by ${stream.route}`;
    $('route').dataset.route = stream.route;
    for await (const chunk of stream) {
      const delta = chunk.choices?.[0]?.delta ?? {};
      if (delta.reasoning_content) {
        $('reasoning').hidden = false;
        $('reasoning').textContent += delta.reasoning_content;
      }
      if (delta.content) $('answer').textContent += delta.content;
    }
    document.body.dataset.answered = 'yes';
  } catch (err) {
    $('answer').textContent = err.message;
    $('answer').className = 'error';
  } finally {
    $('send').disabled = false;
  }
}

async function useModel() {
  const url = $('model-url').value.trim();
  if (!url) return;
  if (!(await allow(url))) return void ($('engine').textContent = 'No permission to download from that site.');
  const r = await chrome.runtime.sendMessage({ type: 'use-model', url });
  if (r?.error) $('engine').textContent = r.error;
}

// The key goes to the background worker's router, which keeps it sealed; chrome.storage keeps
// only whether there is one, and an empty key field means "keep it".
async function save() {
  const typed = $('provider-key').value;
  const before = (await chrome.storage.local.get(SETTINGS))[SETTINGS] ?? {};
  const settings = { mode: $('mode').value, url: $('provider-url').value.trim(), model: $('provider-model').value.trim() };
  if (settings.url && !(await allow(settings.url))) return void ($('saved').textContent = 'No permission to reach that provider.');
  const keys = typed ? { keys: [{ key: typed }] } : before.hasKey && before.url === settings.url ? { keepKeys: true } : { keys: [] };
  const providers = settings.url ? [{
    name: new URL(settings.url).hostname,
    baseUrl: settings.url,
    ...keys,
    models: settings.model ? { default: settings.model } : {},
  }] : [];
  let held;
  try {
    held = await configureRouter({ mode: settings.mode, providers });
  } catch (e) {
    return void ($('saved').textContent = e.message);
  }
  settings.hasKey = (held?.providers?.[0]?.keys ?? 0) > 0;
  await chrome.storage.local.set({ [SETTINGS]: settings });
  $('provider-key').value = '';
  $('provider-key').placeholder = settings.hasKey ? 'kept by the router; type to replace' : 'sk-…';
  $('saved').textContent = 'Saved.';
}

function showEngine(engine) {
  if (!engine) return void ($('engine').textContent = 'No local model chosen.');
  $('model-url').value ||= engine.url;
  $('engine').textContent = {
    loading: `Loading: ${engine.progress ?? ''}`,
    ready: `Ready: ${engine.id} on the ${engine.backend?.toUpperCase()} (${engine.verdict})`,
    failed: `Failed: ${engine.error}`,
  }[engine.state] ?? '';
  $('engine').dataset.state = engine.state;
}

const stored = await chrome.storage.local.get([SETTINGS, 'engine']);
const s = stored[SETTINGS] ?? {};
$('mode').value = s.mode ?? 'auto';
$('provider-url').value = s.url ?? '';
$('provider-key').placeholder = s.hasKey ? 'kept by the router; type to replace' : 'sk-…';
$('provider-model').value = s.model ?? '';
showEngine(stored.engine);
// Nothing chosen yet: the settings are the first thing to see.
if (!stored.engine && !s.url) $('settings').open = true;
chrome.storage.onChanged.addListener((changes) => changes.engine && showEngine(changes.engine.newValue));
$('ask').addEventListener('submit', ask);
$('use-model').addEventListener('click', () => useModel().catch((e) => { $('engine').textContent = e.message; }));
$('save').addEventListener('click', () => save().catch((e) => { $('saved').textContent = e.message; }));
