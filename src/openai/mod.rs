//! The OpenAI / DeepSeek chat-completions API: wire types, request checks with typed errors,
//! answering a request with a local model one chunk at a time (one request at a time per model),
//! every failure's stable code and HTTP answer, the SSE stream codec, and the saved conversation.

pub mod conversation;
mod error;
mod local;
mod request;
mod shared;
pub mod sse;
mod wire;

pub use error::{ApiError, Detail, ErrorCode};
pub use local::{AnswerError, LocalModel, ModelText};
pub use request::Prepared;
pub use shared::{SharedModel, Turn, Waiting};
pub use wire::{
    ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, ChatMessage, Choice, ChunkChoice,
    Delta, ErrorBody, ErrorDetail, FunctionCall, FunctionCallDelta, FunctionDefinition,
    FunctionName, JsonSchemaFormat, MessageContent, ResponseFormat, ResponseMessage, Stop,
    StreamOptions, Tool, ToolCall, ToolCallDelta, ToolChoice, UsageReport,
};

/// A request the API refuses, before any work is done.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RequestError {
    #[error("request body is not a valid chat-completions request: {0}")]
    Malformed(String),
    #[error("messages must hold at least one message")]
    NoMessages,
    #[error("message {index} has role {role:?}; expected system, user, assistant or tool")]
    BadRole { index: usize, role: String },
    #[error("{param} {reason}")]
    BadParam { param: &'static str, reason: String },
    /// A feature the local model cannot give; another route may.
    #[error("{param}: {reason}")]
    Unsupported { param: &'static str, reason: String },
    /// The model's chat template passed a limit set against hostile files: the model is at
    /// fault, not the request.
    #[error("model file refused: {0}")]
    ModelLimit(String),
}

impl RequestError {
    /// The request field at fault, as OpenAI's error body names it.
    pub fn param(&self) -> Option<&'static str> {
        match self {
            RequestError::NoMessages | RequestError::BadRole { .. } => Some("messages"),
            RequestError::BadParam { param, .. } | RequestError::Unsupported { param, .. } => {
                Some(param)
            }
            RequestError::Malformed(_) | RequestError::ModelLimit(_) => None,
        }
    }
}
