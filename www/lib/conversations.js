// Conversations kept in IndexedDB (checked and stored in Rust), so a reload resumes them.
import { toError } from './errors.js';
import { glue, initWasm } from './wasm.js';

// By name: the functions of whichever build initWasm loaded.
const kept = (name) => async (...args) => {
  await initWasm();
  return glue[name](...args).catch((e) => { throw toError(e); });
};

/** Conversations kept in IndexedDB, so a reload resumes them. `save` takes
 *  `{ id?, title?, messages, model? }` and resolves to the id (made up when missing); `list` gives
 *  `{ id, title, updated, messages }` most recent first. */
export const Conversations = {
  save: kept('saveConversation'),
  list: kept('listConversations'),
  load: kept('loadConversation'),
  delete: kept('deleteConversation'),
};
