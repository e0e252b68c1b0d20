//! Answering a chat-completions request with a model on this device, one step at a time, so the
//! caller (a browser worker) can yield, stream and abort between tokens.

use std::cell::OnceCell;

use super::request::{prepare, Prepared};
use super::wire::*;
use super::RequestError;
use crate::chat::{ChatTemplate, ThinkSplitter};
use crate::engine::gpu::Gpu;
use crate::engine::{Backend, EngineError, FinishReason, Generation, Placement, Session};
use crate::gguf::GgufFile;
use crate::structured::{GrammarConstraint, Grammars, OutputRule, ToolCallParser, ToolCallPiece};
use crate::tokenizer::{Tokenizer, TokenizerError};

/// Why a request could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// A model file's tokenizer and chat template, built from its header alone: a load builds them
/// while its first weight chunks are read, and a file whose tokenizer or template is bad fails
/// before any weight is read.
pub struct ModelText {
    tokenizer: Tokenizer,
    template: ChatTemplate,
}

impl ModelText {
    pub fn from_gguf(file: &GgufFile) -> Result<Self, EngineError> {
        Self::with_template(file, None)
    }

    /// As [`ModelText::from_gguf`], with `template` (Jinja) in place of the file's own chat
    /// template when given: for a file whose template is wrong or lacks tools.
    pub fn with_template(file: &GgufFile, template: Option<&str>) -> Result<Self, EngineError> {
        let tokenizer = Tokenizer::from_gguf(file).map_err(|e| match e {
            TokenizerError::Limit(_) => EngineError::ModelLimit(e.to_string()),
            _ => EngineError::Tokenizer(e.to_string()),
        })?;
        let template = match template {
            Some(source) => ChatTemplate::for_tokenizer(source, &tokenizer),
            None => ChatTemplate::from_gguf(file, &tokenizer),
        }
        .map_err(|e| match e.is_limit() {
            true => EngineError::ModelLimit(e.to_string()),
            false => EngineError::Template(e.to_string()),
        })?;
        Ok(Self {
            tokenizer,
            template,
        })
    }
}

/// A loaded model with its tokenizer, chat template and KV cache, and the answer it is giving.
pub struct LocalModel {
    id: String,
    tokenizer: Tokenizer,
    template: ChatTemplate,
    session: Session<Box<dyn Backend>>,
    answer: Option<Answer>,
    /// Built at the first request that asks for a format or tools.
    grammars: OnceCell<Result<Grammars, String>>,
}

impl LocalModel {
    /// `id` is the model name reported in responses.
    pub fn new(
        id: impl Into<String>,
        file: &GgufFile,
        backend: Box<dyn Backend>,
    ) -> Result<Self, EngineError> {
        Ok(Self::with_text(id, ModelText::from_gguf(file)?, backend))
    }

    /// The model from its file's [`ModelText`], built beforehand.
    pub fn with_text(id: impl Into<String>, text: ModelText, backend: Box<dyn Backend>) -> Self {
        Self {
            id: id.into(),
            tokenizer: text.tokenizer,
            template: text.template,
            session: Session::new(backend),
            answer: None,
            grammars: OnceCell::new(),
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    pub fn context_length(&self) -> usize {
        self.session.backend().max_positions()
    }

    /// Where the model runs now (`auto` may have moved it to the CPU).
    pub fn placement(&self) -> Placement {
        self.session.backend().placement()
    }

    /// The backend's step profile: started, stopped or read as [`Backend::profile`] says.
    pub fn profile(&mut self, on: Option<bool>) -> Option<String> {
        self.session.backend_mut().profile(on)
    }

    /// The GPU device, when the model runs on one.
    pub fn gpu(&self) -> Option<&Gpu> {
        self.session.backend().gpu()
    }

    /// Checks `req`, renders its prompt and runs it; `id` and `created` label every chunk. An
    /// answer still in progress is dropped.
    pub async fn start(
        &mut self,
        req: ChatCompletionRequest,
        id: String,
        created: u64,
    ) -> Result<(), AnswerError> {
        self.answer = None;
        let prepared = self.prompt(&req)?;
        let constraint = match &prepared.rule {
            Some((rule, param)) => Some(self.constraint(rule, param)?),
            None => None,
        };
        let in_think = prepared.in_think;
        if req.cache_prompt == Some(false) {
            self.session.forget();
        }
        self.session.start(&prepared.generate).await?;
        if let Some(c) = constraint {
            self.session.constrain(Box::new(c));
        }
        self.answer = Some(Answer {
            calls: prepared.tools.map(|_| Calls::default()),
            think: ThinkSplitter::new(in_think),
            in_think,
            id,
            created,
            model: self.id.clone(),
            include_usage: req.stream_options.is_some_and(|o| o.include_usage),
            role_sent: false,
            content: String::new(),
            reasoning: String::new(),
            reasoning_tokens: None,
            result: None,
            usage_sent: false,
        });
        Ok(())
    }

    /// Checks `req` and renders its prompt: what the model will run.
    pub fn prompt(&self, req: &ChatCompletionRequest) -> Result<Prepared, RequestError> {
        prepare(req, &self.template, &self.tokenizer)
    }

    /// The constraint `rule` compiles to; a schema that does not compile is the request's fault.
    fn constraint(
        &self,
        rule: &OutputRule,
        param: &'static str,
    ) -> Result<GrammarConstraint, RequestError> {
        let grammars = self
            .grammars
            .get_or_init(|| Grammars::new(&self.tokenizer).map_err(|e| e.to_string()));
        let grammars = grammars.as_ref().map_err(|e| RequestError::Unsupported {
            param,
            reason: e.clone(),
        })?;
        grammars
            .constraint(rule)
            .map_err(|e| RequestError::BadParam {
                param,
                reason: e.to_string(),
            })
    }

    /// Advances the answer by one token. Returns the chunks that step produced (often one,
    /// sometimes none), or None once the answer is over (or none was started).
    pub async fn step(&mut self) -> Result<Option<Vec<ChatCompletionChunk>>, EngineError> {
        let Some(a) = self.answer.as_mut() else {
            return Ok(None);
        };
        if a.result.is_some() {
            if a.include_usage && !a.usage_sent {
                a.usage_sent = true;
                let mut chunk = a.chunk(Vec::new());
                chunk.usage = a.usage();
                return Ok(Some(vec![chunk]));
            }
            return Ok(None);
        }
        let mut chunks = Vec::new();
        if !a.role_sent {
            a.role_sent = true;
            let role = Delta {
                role: Some("assistant".into()),
                content: Some(String::new()),
                ..Delta::default()
            };
            chunks.push(a.choice_chunk(role, None));
        }
        let (mut split, done) = match self.session.step(&self.tokenizer).await? {
            Some(piece) => (a.think.push(&piece), false),
            None => (a.think.finish(), true),
        };
        let mut call_deltas = Vec::new();
        if let Some(calls) = a.calls.as_mut() {
            let text = std::mem::take(&mut split.content);
            split.content = calls.push(&text, done, &a.id, &mut call_deltas);
        }
        if !split.is_empty() {
            a.note(&split, self.session.tokens().len());
            let wire = Delta {
                content: (!split.content.is_empty()).then_some(split.content),
                reasoning_content: (!split.reasoning.is_empty()).then_some(split.reasoning),
                ..Delta::default()
            };
            chunks.push(a.choice_chunk(wire, None));
        }
        if !call_deltas.is_empty() {
            let wire = Delta {
                tool_calls: Some(call_deltas),
                ..Delta::default()
            };
            chunks.push(a.choice_chunk(wire, None));
        }
        if done {
            let generation = self
                .session
                .finish()
                .ok_or_else(|| EngineError::Compute("the answer finished twice".into()))?;
            let reason = a.finish_reason(generation.finish_reason);
            let mut last = a.choice_chunk(Delta::default(), Some(reason.into()));
            last.timings = Some(generation.timings);
            a.result = Some(generation);
            chunks.push(last);
        }
        Ok(Some(chunks))
    }

    /// Runs the answer to its end and returns it whole.
    pub async fn complete(&mut self) -> Result<ChatCompletion, EngineError> {
        while self.step().await?.is_some() {}
        self.response()
            .ok_or_else(|| EngineError::Compute("the answer ended without a result".into()))
    }

    /// Stops generating; the KV cache keeps what was computed, so the next request reuses it.
    pub fn abort(&mut self) {
        self.session.abort();
    }

    /// Whether the answer in progress is over (true when none was started).
    pub fn is_finished(&self) -> bool {
        self.answer.as_ref().is_none_or(|a| a.result.is_some())
    }

    /// Token ids generated so far (all of them once finished).
    pub fn tokens(&self) -> &[u32] {
        match self.answer.as_ref().and_then(|a| a.result.as_ref()) {
            Some(g) => &g.tokens,
            None => self.session.tokens(),
        }
    }

    /// The whole answer, once finished.
    pub fn response(&self) -> Option<ChatCompletion> {
        self.answer.as_ref()?.response()
    }
}

/// The calls an answer made so far, parsed from its text.
#[derive(Default)]
struct Calls {
    parser: ToolCallParser,
    made: Vec<ToolCall>,
}

impl Calls {
    /// Takes the answer's next `text` (`done`: its last); returns the part that is content and
    /// adds the calls' pieces to `deltas`.
    fn push(
        &mut self,
        text: &str,
        done: bool,
        answer_id: &str,
        deltas: &mut Vec<ToolCallDelta>,
    ) -> String {
        let mut pieces = self.parser.push(text);
        if done {
            pieces.extend(self.parser.finish());
        }
        let mut content = String::new();
        for piece in pieces {
            match piece {
                ToolCallPiece::Content(t) => content.push_str(&t),
                ToolCallPiece::Call { index, name } => {
                    let id = call_id(answer_id, index);
                    self.made.push(ToolCall {
                        id: id.clone(),
                        kind: "function".into(),
                        function: FunctionCall {
                            name: name.clone(),
                            arguments: String::new(),
                        },
                    });
                    deltas.push(ToolCallDelta {
                        index,
                        id: Some(id),
                        kind: Some("function".into()),
                        function: FunctionCallDelta {
                            name: Some(name),
                            arguments: Some(String::new()),
                        },
                    });
                }
                ToolCallPiece::Arguments { index, text } => {
                    if let Some(call) = self.made.get_mut(index) {
                        call.function.arguments.push_str(&text);
                    }
                    deltas.push(ToolCallDelta {
                        index,
                        id: None,
                        kind: None,
                        function: FunctionCallDelta {
                            name: None,
                            arguments: Some(text),
                        },
                    });
                }
            }
        }
        content
    }
}

/// A call's id, unique within the answer and across answers (the answer's id is).
fn call_id(answer_id: &str, index: usize) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in answer_id.bytes().chain(index.to_le_bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    format!("call_{h:016x}")
}

/// The answer in progress: what the client has been sent, and the result once it is over.
struct Answer {
    /// Present when the answer may call tools.
    calls: Option<Calls>,
    think: ThinkSplitter,
    in_think: bool,
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
    role_sent: bool,
    content: String,
    reasoning: String,
    /// Tokens generated before the answer left the reasoning, once it has.
    reasoning_tokens: Option<usize>,
    result: Option<Generation>,
    usage_sent: bool,
}

impl Answer {
    /// `generated` tokens so far.
    fn note(&mut self, split: &crate::chat::Split, generated: usize) {
        self.reasoning.push_str(&split.reasoning);
        if !split.content.is_empty() && self.reasoning_tokens.is_none() {
            self.reasoning_tokens = Some(if self.reasoning.is_empty() {
                0
            } else {
                generated.saturating_sub(1)
            });
        }
        self.content.push_str(&split.content);
    }

    fn usage(&self) -> Option<UsageReport> {
        let g = self.result.as_ref()?;
        let reasoning = match self.reasoning_tokens {
            Some(n) => n,
            None if !self.reasoning.is_empty() => g.usage.completion_tokens,
            None => 0,
        };
        Some(UsageReport::new(&g.usage, reasoning))
    }

    fn chunk(&self, choices: Vec<ChunkChoice>) -> ChatCompletionChunk {
        ChatCompletionChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk".into(),
            created: self.created,
            model: self.model.clone(),
            choices,
            usage: None,
            timings: None,
        }
    }

    fn choice_chunk(&self, delta: Delta, finish_reason: Option<String>) -> ChatCompletionChunk {
        self.chunk(vec![ChunkChoice {
            index: 0,
            delta,
            finish_reason,
            logprobs: None,
        }])
    }

    /// OpenAI's reason: `tool_calls` when the answer ended after making calls.
    fn finish_reason(&self, r: FinishReason) -> &'static str {
        let called = self.calls.as_ref().is_some_and(|c| !c.made.is_empty());
        match r {
            FinishReason::Stop if called => "tool_calls",
            other => finish_reason(other),
        }
    }

    /// The whole answer, once finished.
    fn response(&self) -> Option<ChatCompletion> {
        let g = self.result.as_ref()?;
        let reasoning =
            (self.in_think || !self.reasoning.is_empty()).then(|| self.reasoning.clone());
        let tool_calls = self
            .calls
            .as_ref()
            .filter(|c| !c.made.is_empty())
            .map(|c| c.made.clone());
        Some(ChatCompletion {
            id: self.id.clone(),
            object: "chat.completion".into(),
            created: self.created,
            model: self.model.clone(),
            choices: vec![Choice {
                index: 0,
                message: ResponseMessage {
                    role: "assistant".into(),
                    content: (tool_calls.is_none() || !self.content.is_empty())
                        .then(|| self.content.clone()),
                    reasoning_content: reasoning,
                    tool_calls,
                },
                finish_reason: Some(self.finish_reason(g.finish_reason).into()),
                logprobs: None,
            }],
            usage: self.usage()?,
            timings: g.timings,
        })
    }
}

fn finish_reason(r: FinishReason) -> &'static str {
    match r {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
        FinishReason::Abort => "abort",
    }
}
