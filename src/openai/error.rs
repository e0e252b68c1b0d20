//! Every failure as the API reports it: a stable code (a JavaScript `CandlelightError`'s
//! `code`), a message, the figures that explain it, and, where the local model answers over HTTP
//! as a provider would, its status and OpenAI-shaped error body. One table for every module's
//! errors, so the JavaScript API, the worker protocol and the router agree.

use serde_json::{json, Value};

use super::{AnswerError, RequestError};
use crate::download::DownloadError;
use crate::engine::gpu::GpuError;
use crate::engine::EngineError;
use crate::gguf::GgufError;
use crate::store::StoreError;

/// The stable codes, as JavaScript sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    QuotaExceeded,
    Network,
    Integrity,
    UnsupportedModel,
    InvalidModel,
    Aborted,
    ContextOverflow,
    InvalidRequest,
    /// A valid request asking for what the local model cannot do (tools without a tool
    /// template, several choices); a remote provider may.
    UnsupportedFeature,
    Storage,
    NotLoaded,
    BackendUnavailable,
    DeviceLost,
    OutOfMemory,
    Busy,
    Router,
    /// A caller the router does not take configuration from (a frame, a page outside its scope).
    Forbidden,
    /// An encrypted model file did not open with the key given.
    DecryptionFailed,
    /// A save made from a copy the store no longer holds (another tab saved since).
    Conflict,
    Internal,
}

impl ErrorCode {
    /// Every code; `index.d.ts`'s `ErrorCode` lists exactly these (tests/api_types.rs).
    pub const ALL: [ErrorCode; 20] = [
        Self::QuotaExceeded,
        Self::Network,
        Self::Integrity,
        Self::UnsupportedModel,
        Self::InvalidModel,
        Self::Aborted,
        Self::ContextOverflow,
        Self::InvalidRequest,
        Self::UnsupportedFeature,
        Self::Storage,
        Self::NotLoaded,
        Self::BackendUnavailable,
        Self::DeviceLost,
        Self::OutOfMemory,
        Self::Busy,
        Self::Router,
        Self::Forbidden,
        Self::DecryptionFailed,
        Self::Conflict,
        Self::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::QuotaExceeded => "quota_exceeded",
            Self::Network => "network",
            Self::Integrity => "integrity",
            Self::UnsupportedModel => "unsupported_model",
            Self::InvalidModel => "invalid_model",
            Self::Aborted => "aborted",
            Self::ContextOverflow => "context_overflow",
            Self::InvalidRequest => "invalid_request",
            Self::UnsupportedFeature => "unsupported_feature",
            Self::Storage => "storage",
            Self::NotLoaded => "not_loaded",
            Self::BackendUnavailable => "backend_unavailable",
            Self::DeviceLost => "device_lost",
            Self::OutOfMemory => "out_of_memory",
            Self::Busy => "busy",
            Self::Router => "router",
            Self::Forbidden => "forbidden",
            Self::DecryptionFailed => "decryption_failed",
            Self::Conflict => "conflict",
            Self::Internal => "internal",
        }
    }

    pub fn parse(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == code)
    }

    /// The HTTP status of a local answer that failed so: the request's own fault is a 400 (the
    /// router passes it to the client), an abort 499, anything else 503 (the router fails over).
    pub fn status(self) -> u16 {
        match self {
            Self::InvalidRequest | Self::UnsupportedFeature | Self::ContextOverflow => 400,
            Self::Aborted => 499,
            Self::Conflict => 409,
            _ => 503,
        }
    }
}

/// A detail that explains an error: a byte count, a position, a field name.
#[derive(Debug, Clone, PartialEq)]
pub enum Detail {
    Number(f64),
    Text(String),
}

/// A failure with its stable code.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub details: Vec<(&'static str, Detail)>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            details: Vec::new(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }

    pub fn with_number(mut self, key: &'static str, value: f64) -> Self {
        self.details.push((key, Detail::Number(value)));
        self
    }

    pub fn with_text(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.details.push((key, Detail::Text(value.into())));
        self
    }

    /// The request field at fault, for `invalid_request`.
    pub fn param(&self) -> Option<&str> {
        self.details.iter().find_map(|(k, v)| match (k, v) {
            (&"param", Detail::Text(p)) => Some(p.as_str()),
            _ => None,
        })
    }

    pub fn status(&self) -> u16 {
        self.code.status()
    }

    /// The OpenAI-shaped body of an answer that failed so.
    pub fn body(&self) -> Value {
        let kind = match self.code {
            ErrorCode::InvalidRequest
            | ErrorCode::UnsupportedFeature
            | ErrorCode::ContextOverflow => "invalid_request_error",
            _ => "server_error",
        };
        json!({"error": {
            "message": self.message,
            "type": kind,
            "param": self.param(),
            "code": self.code.as_str(),
        }})
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for ApiError {}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let code = match e {
            StoreError::Quota(_) => ErrorCode::QuotaExceeded,
            StoreError::CorruptChunk { .. } => ErrorCode::Integrity,
            StoreError::OutOfRange { .. } | StoreError::NotSealed(_) => ErrorCode::InvalidModel,
            StoreError::Decryption { .. } => ErrorCode::DecryptionFailed,
            _ => ErrorCode::Storage,
        };
        let err = ApiError::new(code, e.to_string());
        match e {
            StoreError::CorruptChunk { index } => err.with_number("chunk", index as f64),
            _ => err,
        }
    }
}

impl From<GgufError> for ApiError {
    fn from(e: GgufError) -> Self {
        match e {
            GgufError::Store(s) => s.into(),
            GgufError::UnsupportedVersion(_)
            | GgufError::UnsupportedTensorType { .. }
            | GgufError::UnknownArchitecture(_) => {
                ApiError::new(ErrorCode::UnsupportedModel, e.to_string())
            }
            _ => ApiError::new(ErrorCode::InvalidModel, e.to_string()),
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        let message = e.to_string();
        match e {
            EngineError::Gguf(g) => g.into(),
            EngineError::ContextFull { needed, max } => {
                ApiError::new(ErrorCode::ContextOverflow, message)
                    .with_number("needed", needed as f64)
                    .with_number("max", max as f64)
            }
            EngineError::BadParams(_) | EngineError::EmptyPrompt => ApiError::invalid(message),
            EngineError::ModelLimit(_) => ApiError::new(ErrorCode::InvalidModel, message),
            EngineError::Tokenizer(_) | EngineError::Template(_) => {
                ApiError::new(ErrorCode::UnsupportedModel, message)
            }
            EngineError::ChunkKeepsFailing { index } => {
                ApiError::new(ErrorCode::Integrity, message).with_number("chunk", index as f64)
            }
            EngineError::Gpu(GpuError::Unavailable(_) | GpuError::Limits(_)) => {
                ApiError::new(ErrorCode::BackendUnavailable, message)
            }
            EngineError::Gpu(GpuError::DeviceLost(_)) => {
                ApiError::new(ErrorCode::DeviceLost, message)
            }
            EngineError::Gpu(GpuError::OutOfMemory(_)) => {
                ApiError::new(ErrorCode::OutOfMemory, message)
            }
            _ => ApiError::internal(message),
        }
    }
}

impl From<RequestError> for ApiError {
    fn from(e: RequestError) -> Self {
        let code = match e {
            RequestError::Unsupported { .. } => ErrorCode::UnsupportedFeature,
            RequestError::ModelLimit(_) => ErrorCode::InvalidModel,
            _ => ErrorCode::InvalidRequest,
        };
        let err = ApiError::new(code, e.to_string());
        match e.param() {
            Some(p) => err.with_text("param", p),
            None => err,
        }
    }
}

impl From<AnswerError> for ApiError {
    fn from(e: AnswerError) -> Self {
        match e {
            AnswerError::Request(r) => r.into(),
            AnswerError::Engine(x) => x.into(),
        }
    }
}

impl From<DownloadError> for ApiError {
    fn from(e: DownloadError) -> Self {
        let message = e.to_string();
        match e {
            DownloadError::Network { .. }
            | DownloadError::UnknownLength { .. }
            | DownloadError::WrongLength { .. }
            | DownloadError::WrongRange { .. } => ApiError::new(ErrorCode::Network, message),
            DownloadError::HttpStatus { status, .. } => {
                ApiError::new(ErrorCode::Network, message).with_number("status", status as f64)
            }
            DownloadError::Quota { needed, available } => {
                ApiError::new(ErrorCode::QuotaExceeded, message)
                    .with_number("needed", needed as f64)
                    .with_number("available", available as f64)
            }
            DownloadError::QuotaWrite(_) => ApiError::new(ErrorCode::QuotaExceeded, message),
            DownloadError::Integrity { .. } => ApiError::new(ErrorCode::Integrity, message),
            DownloadError::Aborted => ApiError::new(ErrorCode::Aborted, message),
            DownloadError::Storage(_) => ApiError::new(ErrorCode::Storage, message),
        }
    }
}
