// Conversations saved from two tabs at once. Every save names the revision it was made from, and
// the check and the write are one IndexedDB transaction: of saves made from one revision, exactly
// one is written and the others get `conflict` with the stored revision, writing nothing. Deletes
// given a revision behave alike, and a record from before revisions counts as revision 0.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launch, startServer } from './harness.mjs';

let browser;
let app;

before(async () => {
  app = await startServer();
  browser = await launch({ webgpu: false });
});

after(async () => {
  await browser?.close();
  await app?.stop();
});

/** Runs `Conversations[op](...args)` in a page: `{ ok }` or `{ code, message, revision }`. */
const call = (page, op, ...args) => page.evaluate(async ({ op, args }) => {
  const { Conversations } = await import('/pkg/index.js');
  try {
    return { ok: await Conversations[op](...args) };
  } catch (e) {
    return { code: e.code, message: e.message, revision: e.revision };
  }
}, { op, args });

const user = (text) => ({ role: 'user', content: text });

test('two tabs save one conversation: one save per revision is written, the rest get conflict', async () => {
  const context = await browser.newContext();
  const [a, b] = [await context.newPage(), await context.newPage()];
  for (const page of [a, b]) await page.goto(`${app.origin}/pkg/package.json`);

  const first = await call(a, 'save', { messages: [user('from a')] });
  assert.equal(first.ok.revision, 1);
  const { id } = first.ok;

  // Both tabs hold revision 1. Tab a saves first, then tab b saves its stale copy.
  const fromB = (await call(b, 'load', id)).ok;
  assert.equal(fromB.revision, 1);
  assert.deepEqual((await call(a, 'save', { id, revision: 1, messages: [user('from a'), user('a again')] })).ok, { id, revision: 2 });
  const stale = await call(b, 'save', { ...fromB, messages: [user('from b')] });
  assert.equal(stale.code, 'conflict', JSON.stringify(stale));
  assert.equal(stale.revision, 2, 'the conflict names the stored revision');
  const kept = (await call(b, 'load', id)).ok;
  assert.deepEqual(kept.messages.map((m) => m.content), ['from a', 'a again'], 'the stale save wrote nothing');
  assert.equal(kept.revision, 2);
  // Saving without a revision over a stored conversation is refused as well.
  assert.equal((await call(b, 'save', { id, messages: [] })).code, 'conflict');

  // Twenty rounds: both tabs save from the current revision at the same moment, each firing
  // five saves at once. Exactly one of the ten is written per round; the nine others are
  // conflicts. (Read and write in two transactions, all ten would pass the check.)
  let revision = 2;
  for (let round = 0; round < 20; round++) {
    const burst = (page, tab) => page.evaluate(async ({ id, revision, tab, round }) => {
      const { Conversations } = await import('/pkg/index.js');
      return Promise.all([0, 1, 2, 3, 4].map((n) => Conversations
        .save({ id, revision, messages: [{ role: 'user', content: `${tab}${n} round ${round}` }] })
        .then((r) => ({ text: `${tab}${n} round ${round}`, revision: r.revision }), (e) => ({ code: e.code, revision: e.revision }))));
    }, { id, revision, tab, round });
    const outcomes = (await Promise.all([burst(a, 'a'), burst(b, 'b')])).flat();
    const written = outcomes.filter((o) => o.text);
    assert.equal(written.length, 1, `round ${round}: ${JSON.stringify(outcomes)}`);
    assert.equal(written[0].revision, revision + 1);
    assert.ok(outcomes.filter((o) => !o.text).every((o) => o.code === 'conflict' && o.revision === revision + 1));
    revision += 1;
    const stored = (await call(a, 'load', id)).ok;
    assert.equal(stored.revision, revision);
    assert.equal(stored.messages[0].content, written[0].text, 'the store holds the save that was told it was written');
  }

  // Deletes: a stale revision is a conflict and deletes nothing; the current one deletes.
  const staleDelete = await call(b, 'delete', id, revision - 1);
  assert.equal(staleDelete.code, 'conflict');
  assert.ok((await call(a, 'load', id)).ok, 'still there');
  assert.equal((await call(a, 'delete', id, revision)).ok, true);
  assert.equal((await call(a, 'load', id)).ok, null);
  assert.equal((await call(a, 'delete', id)).ok, false, 'none left to delete');
  // A save from a revision of the deleted one is refused; one naming none starts it again.
  assert.equal((await call(b, 'save', { id, revision, messages: [] })).code, 'conflict');
  assert.deepEqual((await call(b, 'save', { id, messages: [user('anew')] })).ok, { id, revision: 1 });
  assert.equal((await call(a, 'delete', id, 1.5)).code, 'invalid_request');
  await context.close();
});

test('a conversation stored before revisions is revision 0, and its first save makes 1', async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${app.origin}/pkg/package.json`);
  // Open the store through the package first, so it exists with its object store.
  const { ok: { id } } = await call(page, 'save', { messages: [user('new')] });
  await page.evaluate(async () => {
    const db = await new Promise((resolve, reject) => {
      const r = indexedDB.open('candlelight-conversations');
      r.onsuccess = () => resolve(r.result);
      r.onerror = () => reject(r.error);
    });
    const old = { id: 'old', title: 'Old chat', messages: [{ role: 'user', content: 'kept from before' }], created: 5, updated: 5 };
    await new Promise((resolve, reject) => {
      const tx = db.transaction('conversations', 'readwrite');
      tx.objectStore('conversations').put(JSON.stringify(old), 'old');
      tx.oncomplete = resolve;
      tx.onerror = () => reject(tx.error);
    });
    db.close();
  });
  const old = (await call(page, 'load', 'old')).ok;
  assert.equal(old.revision, 0);
  const listed = (await call(page, 'list')).ok;
  assert.deepEqual(listed.map((c) => [c.id, c.revision]).sort(), [[id, 1], ['old', 0]].sort());
  assert.deepEqual((await call(page, 'save', { ...old, messages: [...old.messages, user('more')] })).ok, { id: 'old', revision: 1 });
  const again = (await call(page, 'load', 'old')).ok;
  assert.equal(again.created, 5, 'the creation time is kept');
  assert.equal(again.messages.length, 2);
  await context.close();
});
