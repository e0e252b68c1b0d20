//! The SSE decoder for JavaScript readers of `/v1/chat/completions` streams (the package's
//! `chatThroughRouter`): the same bounded decoder the router reads providers with.

use wasm_bindgen::prelude::*;

use crate::openai::sse::{SseDecoder, SseEvent};
use crate::openai::{ApiError, ErrorCode};

/// Server-sent events from bytes as they arrive, split anywhere.
#[wasm_bindgen(js_name = SseDecoder)]
#[derive(Default)]
pub struct SseDecoderCore(SseDecoder);

fn data(events: Vec<SseEvent>) -> Vec<JsValue> {
    events
        .into_iter()
        .map(|e| match e {
            SseEvent::Data(text) => JsValue::from_str(&text),
            SseEvent::Done => JsValue::NULL,
        })
        .collect()
}

#[wasm_bindgen(js_class = SseDecoder)]
impl SseDecoderCore {
    #[wasm_bindgen(constructor)]
    pub fn new() -> SseDecoderCore {
        SseDecoderCore::default()
    }

    /// The events `bytes` complete: each event's data (a JSON text), or null for `[DONE]`.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<JsValue>, JsValue> {
        let events = self
            .0
            .push(bytes)
            .map_err(|e| ApiError::new(ErrorCode::Router, e.to_string()))?;
        Ok(data(events))
    }

    /// The stream ended: an event not closed by a blank line still counts.
    pub fn finish(&mut self) -> Result<Vec<JsValue>, JsValue> {
        let events = self
            .0
            .finish()
            .map_err(|e| ApiError::new(ErrorCode::Router, e.to_string()))?;
        Ok(data(events))
    }
}
