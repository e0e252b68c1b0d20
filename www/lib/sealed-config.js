// The router's configuration at rest, for its service worker (or an extension's background
// worker): provider keys are never written in clear text where another script of the origin, or
// anyone reading the profile's files, would find them. The configuration is sealed with
// AES-256-GCM under a WebCrypto key generated non-extractable and kept in this worker's
// IndexedDB: its bits never leave the browser's crypto, and a fresh IV seals each save.
const DB = 'candlelight-router-sealed';
const STORE = 'sealed';

function open() {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(DB, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(STORE);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

/** Runs `op(store)` in one transaction; resolves to its request's result once committed. */
function inStore(db, mode, op) {
  return new Promise((resolve, reject) => {
    const t = db.transaction(STORE, mode);
    const req = op(t.objectStore(STORE));
    t.oncomplete = () => resolve(req.result);
    t.onerror = () => reject(t.error);
    t.onabort = () => reject(t.error);
  });
}

/** The sealing key, made at first use. `add` keeps the first of two racing workers' keys. */
async function sealingKey(db) {
  const kept = await inStore(db, 'readonly', (s) => s.get('key'));
  if (kept) return kept;
  const key = await crypto.subtle.generateKey({ name: 'AES-GCM', length: 256 }, false, ['encrypt', 'decrypt']);
  try {
    await inStore(db, 'readwrite', (s) => s.add(key, 'key'));
    return key;
  } catch {
    return inStore(db, 'readonly', (s) => s.get('key'));
  }
}

/** Seals and stores `config`. */
export async function saveConfig(config) {
  const db = await open();
  try {
    const key = await sealingKey(db);
    const iv = crypto.getRandomValues(new Uint8Array(12));
    const data = await crypto.subtle.encrypt({ name: 'AES-GCM', iv }, key, new TextEncoder().encode(JSON.stringify(config)));
    await inStore(db, 'readwrite', (s) => s.put({ iv, data }, 'config'));
  } finally {
    db.close();
  }
}

/** The stored configuration, or null when there is none or it cannot be opened (a key lost
 *  with cleared site data: the app configures the router again). */
export async function loadConfig() {
  const db = await open();
  try {
    const sealed = await inStore(db, 'readonly', (s) => s.get('config'));
    const key = sealed && (await inStore(db, 'readonly', (s) => s.get('key')));
    if (!key) return null;
    const plain = await crypto.subtle.decrypt({ name: 'AES-GCM', iv: sealed.iv }, key, sealed.data);
    return JSON.parse(new TextDecoder().decode(plain));
  } catch {
    return null;
  } finally {
    db.close();
  }
}
