//! Every failure that reaches JavaScript, as an `Error` named `CandlelightError` with its stable
//! `code` and the figures that explain it ([`ApiError`]'s details); the other way, a
//! `CandlelightError` (or any thrown value) read back as an [`ApiError`].

use js_sys::Reflect;
use wasm_bindgen::prelude::*;

use super::to_js;
use crate::openai::{ApiError, Detail, ErrorCode};

impl From<ApiError> for JsValue {
    fn from(e: ApiError) -> JsValue {
        let err = js_sys::Error::new(&e.message);
        err.set_name("CandlelightError");
        let _ = Reflect::set(&err, &"code".into(), &e.code.as_str().into());
        for (k, v) in e.details {
            let v = match v {
                Detail::Number(n) => JsValue::from_f64(n),
                Detail::Text(t) => JsValue::from_str(&t),
            };
            let _ = Reflect::set(&err, &k.into(), &v);
        }
        err.into()
    }
}

/// A thrown value as an [`ApiError`]: a `CandlelightError` keeps its code, message and `param`;
/// an `AbortError` is `aborted`; anything else is `internal`.
pub(super) fn from_js(e: &JsValue) -> ApiError {
    let text = |k: &str| Reflect::get(e, &k.into()).ok().and_then(|v| v.as_string());
    let message = text("message")
        .or_else(|| e.as_string())
        .unwrap_or_default();
    let code = match (text("name").as_deref(), text("code")) {
        (Some("AbortError"), _) => Some(ErrorCode::Aborted),
        (_, Some(code)) => ErrorCode::parse(&code),
        _ => None,
    };
    let err = ApiError::new(code.unwrap_or(ErrorCode::Internal), message);
    match text("param") {
        Some(p) => err.with_text("param", p),
        None => err,
    }
}

/// How a local answer that failed with `error` goes out over HTTP: `{status, body}`, the body
/// OpenAI-shaped, as a provider would answer.
#[wasm_bindgen(js_name = errorAnswer)]
pub fn error_answer(error: JsValue) -> Result<JsValue, JsValue> {
    let e = from_js(&error);
    to_js(&serde_json::json!({"status": e.status(), "body": e.body()}))
}

/// Every stable error code (what `ErrorCode` in index.d.ts lists).
#[wasm_bindgen(js_name = errorCodes)]
pub fn error_codes() -> Vec<String> {
    ErrorCode::ALL
        .iter()
        .map(|c| c.as_str().to_string())
        .collect()
}
