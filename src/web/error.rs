//! Every failure that reaches JavaScript, as an `Error` named `CandlelightError` with a stable
//! `code` string (and the figures that explain it, where there are some).

use js_sys::Reflect;
use wasm_bindgen::JsValue;

use crate::download::DownloadError;
use crate::engine::gpu::GpuError;
use crate::engine::EngineError;
use crate::gguf::GgufError;
use crate::openai::{AnswerError, RequestError};
use crate::store::StoreError;

/// A failure with its stable code.
#[derive(Debug)]
pub struct WebError {
    pub code: &'static str,
    pub message: String,
    pub extra: Vec<(&'static str, JsValue)>,
}

impl WebError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            extra: Vec::new(),
        }
    }

    fn with(mut self, key: &'static str, value: impl Into<JsValue>) -> Self {
        self.extra.push((key, value.into()));
        self
    }
}

impl From<WebError> for JsValue {
    fn from(e: WebError) -> JsValue {
        let err = js_sys::Error::new(&e.message);
        err.set_name("CandlelightError");
        let _ = Reflect::set(&err, &"code".into(), &e.code.into());
        for (k, v) in e.extra {
            let _ = Reflect::set(&err, &k.into(), &v);
        }
        err.into()
    }
}

impl From<StoreError> for WebError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Quota(_) => WebError::new("quota_exceeded", e.to_string()),
            StoreError::CorruptChunk { index } => {
                WebError::new("integrity", e.to_string()).with("chunk", index as f64)
            }
            StoreError::MissingChunk { .. } => WebError::new("storage", e.to_string()),
            StoreError::OutOfRange { .. } => WebError::new("invalid_model", e.to_string()),
            _ => WebError::new("storage", e.to_string()),
        }
    }
}

impl From<GgufError> for WebError {
    fn from(e: GgufError) -> Self {
        match e {
            GgufError::Store(s) => s.into(),
            GgufError::UnsupportedVersion(_)
            | GgufError::UnsupportedTensorType { .. }
            | GgufError::UnknownArchitecture(_) => {
                WebError::new("unsupported_model", e.to_string())
            }
            _ => WebError::new("invalid_model", e.to_string()),
        }
    }
}

impl From<EngineError> for WebError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Gguf(g) => g.into(),
            EngineError::ContextFull { needed, max } => {
                WebError::new("context_overflow", e.to_string())
                    .with("needed", needed as f64)
                    .with("max", max as f64)
            }
            EngineError::BadParams(_) | EngineError::EmptyPrompt => {
                WebError::new("invalid_request", e.to_string())
            }
            EngineError::Tokenizer(_) | EngineError::Template(_) => {
                WebError::new("unsupported_model", e.to_string())
            }
            EngineError::Gpu(GpuError::Unavailable(_) | GpuError::Limits(_)) => {
                WebError::new("backend_unavailable", e.to_string())
            }
            EngineError::Gpu(GpuError::DeviceLost(_)) => {
                WebError::new("device_lost", e.to_string())
            }
            EngineError::Gpu(GpuError::OutOfMemory(_)) => {
                WebError::new("out_of_memory", e.to_string())
            }
            _ => WebError::new("internal", e.to_string()),
        }
    }
}

impl From<RequestError> for WebError {
    fn from(e: RequestError) -> Self {
        let param = e.param();
        let err = WebError::new("invalid_request", e.to_string());
        match param {
            Some(p) => err.with("param", p),
            None => err,
        }
    }
}

impl From<AnswerError> for WebError {
    fn from(e: AnswerError) -> Self {
        match e {
            AnswerError::Request(r) => r.into(),
            AnswerError::Engine(x) => x.into(),
        }
    }
}

impl From<DownloadError> for WebError {
    fn from(e: DownloadError) -> Self {
        let msg = e.to_string();
        match e {
            DownloadError::Network { .. }
            | DownloadError::UnknownLength { .. }
            | DownloadError::WrongLength { .. } => WebError::new("network", msg),
            DownloadError::HttpStatus { status, .. } => {
                WebError::new("network", msg).with("status", status)
            }
            DownloadError::Quota { needed, available } => WebError::new("quota_exceeded", msg)
                .with("needed", needed as f64)
                .with("available", available as f64),
            DownloadError::QuotaWrite(_) => WebError::new("quota_exceeded", msg),
            DownloadError::Integrity { .. } => WebError::new("integrity", msg),
            DownloadError::Aborted => WebError::new("aborted", msg),
            DownloadError::Storage(_) => WebError::new("storage", msg),
        }
    }
}
