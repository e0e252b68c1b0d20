// Every failure the package reports: a CandlelightError with a stable `code` (the codes are the
// Rust ones, `errorCodes()` lists them), converted from whatever was thrown in one place, and
// flattened in one place for postMessage, which keeps none of an Error's own fields.

/** Every failure: `code` is stable (quota_exceeded, network, integrity, unsupported_model, ...). */
export class CandlelightError extends Error {
  constructor(code, message, extra = {}) {
    super(message);
    this.name = 'CandlelightError';
    this.code = code;
    Object.assign(this, extra);
  }
}

/** Any thrown value as a CandlelightError: one from the wasm module or from another thread (see
 *  `toWire`) keeps its code and figures; an AbortError is `aborted`; anything else `internal`. */
export function toError(e) {
  if (e instanceof CandlelightError) return e;
  if (e?.name === 'CandlelightError' && e.code) {
    const { name, message, code, stack, ...extra } = e;
    return new CandlelightError(code, message, extra);
  }
  if (e?.name === 'AbortError') return aborted();
  return new CandlelightError('internal', String(e?.message ?? e));
}

/** An error as plain data that survives postMessage; `toError` turns it back. */
export function toWire(e) {
  const err = toError(e);
  const out = { name: 'CandlelightError', code: err.code, message: err.message };
  for (const [k, v] of Object.entries(err)) if (typeof v !== 'function' && typeof v !== 'object') out[k] = v;
  return out;
}

export const aborted = () => new CandlelightError('aborted', 'the request was aborted');
