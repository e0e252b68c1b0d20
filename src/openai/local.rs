//! Answering a chat-completions request with a model on this device, one step at a time, so the
//! caller (a browser worker) can yield, stream and abort between tokens.

use super::wire::*;
use super::RequestError;
use crate::chat::{ChatTemplate, Message, ThinkSplitter};
use crate::engine::gpu::Gpu;
use crate::engine::{
    Backend, EngineError, FinishReason, GenerateRequest, Generation, Placement, SamplingParams,
    Session,
};
use crate::gguf::GgufFile;
use crate::tokenizer::Tokenizer;

/// At most this many stop strings, like the hosted APIs.
const MAX_STOPS: usize = 16;

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
        let tokenizer =
            Tokenizer::from_gguf(file).map_err(|e| EngineError::Tokenizer(e.to_string()))?;
        let template = ChatTemplate::from_gguf(file, &tokenizer)
            .map_err(|e| EngineError::Template(e.to_string()))?;
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
        let (generate, in_think) = self.prompt(&req)?;
        if req.cache_prompt == Some(false) {
            self.session.forget();
        }
        self.session.start(&generate).await?;
        self.answer = Some(Answer {
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

    /// The generation request for `req`, and whether its prompt leaves the model inside `<think>`.
    pub fn prompt(
        &self,
        req: &ChatCompletionRequest,
    ) -> Result<(GenerateRequest, bool), RequestError> {
        let bad = |param: &'static str, reason: &str| RequestError::BadParam {
            param,
            reason: reason.into(),
        };
        if req.n.is_some_and(|n| n != 1) {
            return Err(RequestError::Unsupported("n other than 1"));
        }
        if req.messages.is_empty() {
            return Err(RequestError::NoMessages);
        }
        let mut messages = Vec::with_capacity(req.messages.len());
        for (index, m) in req.messages.iter().enumerate() {
            let role = match m.role.as_str() {
                "developer" => "system",
                r @ ("system" | "user" | "assistant" | "tool") => r,
                other => {
                    return Err(RequestError::BadRole {
                        index,
                        role: other.into(),
                    })
                }
            };
            messages.push(Message::new(role, &m.content.text()?));
        }
        let in_range = |v: Option<f32>, lo: f32, hi: f32| {
            v.is_none_or(|v| v.is_finite() && v >= lo && v <= hi)
        };
        if !in_range(req.temperature, 0.0, 2.0) {
            return Err(bad("temperature", "must be between 0 and 2"));
        }
        if !req.top_p.is_none_or(|p| p > 0.0 && p <= 1.0) {
            return Err(bad("top_p", "must be greater than 0 and at most 1"));
        }
        if !in_range(req.frequency_penalty, -2.0, 2.0) {
            return Err(bad("frequency_penalty", "must be between -2 and 2"));
        }
        if !in_range(req.presence_penalty, -2.0, 2.0) {
            return Err(bad("presence_penalty", "must be between -2 and 2"));
        }
        if !in_range(req.min_p, 0.0, 1.0) {
            return Err(bad("min_p", "must be between 0 and 1"));
        }
        if !in_range(req.repetition_penalty, 0.0, 10.0) || req.repetition_penalty == Some(0.0) {
            return Err(bad(
                "repetition_penalty",
                "must be greater than 0 and at most 10",
            ));
        }
        let max_tokens = match req.max_completion_tokens.or(req.max_tokens) {
            Some(0) => return Err(bad("max_tokens", "must be at least 1")),
            Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
            None => usize::MAX,
        };
        let stop: Vec<String> = req.stop.clone().map(Stop::into_vec).unwrap_or_default();
        if stop.len() > MAX_STOPS {
            return Err(bad("stop", "holds more than 16 strings"));
        }
        let stop = stop.into_iter().filter(|s| !s.is_empty()).collect();

        // A last assistant message marked `prefix` is the start of the answer: the prompt ends
        // with its text, and generation continues it (how the router resumes a broken stream).
        let prefix = match req.messages.last() {
            Some(m) if m.role == "assistant" && m.prefix == Some(true) => {
                messages.pop();
                m.content.text()?
            }
            _ => String::new(),
        };
        let mut text =
            self.template
                .render(&messages, true)
                .map_err(|e| RequestError::BadParam {
                    param: "messages",
                    reason: e.to_string(),
                })?;
        text.push_str(&prefix);
        let in_think = text.trim_end().ends_with("<think>");
        let bos_in_text = self
            .tokenizer
            .bos()
            .and_then(|b| self.tokenizer.id_to_token(b))
            .is_some_and(|b| text.starts_with(&b));
        let prompt =
            self.tokenizer
                .encode(&text, !bos_in_text)
                .map_err(|e| RequestError::BadParam {
                    param: "messages",
                    reason: e.to_string(),
                })?;

        let defaults = SamplingParams::default();
        let sampling = SamplingParams {
            temperature: req.temperature.unwrap_or(1.0),
            top_p: req.top_p.unwrap_or(1.0),
            top_k: req.top_k.map_or(defaults.top_k, |k| k as usize),
            min_p: req.min_p.unwrap_or(defaults.min_p),
            repetition_penalty: req.repetition_penalty.unwrap_or(1.0),
            frequency_penalty: req.frequency_penalty.unwrap_or(0.0),
            presence_penalty: req.presence_penalty.unwrap_or(0.0),
            seed: req.seed.unwrap_or_else(fresh_seed),
            ..defaults
        };
        Ok((
            GenerateRequest {
                prompt,
                max_tokens,
                sampling,
                stop,
                stop_tokens: Vec::new(),
            },
            in_think,
        ))
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
                reasoning_content: None,
            };
            chunks.push(a.choice_chunk(role, None));
        }
        let (split, done) = match self.session.step(&self.tokenizer).await? {
            Some(piece) => (a.think.push(&piece), false),
            None => (a.think.finish(), true),
        };
        if !split.is_empty() {
            a.note(&split, self.session.tokens().len());
            let wire = Delta {
                role: None,
                content: (!split.content.is_empty()).then_some(split.content),
                reasoning_content: (!split.reasoning.is_empty()).then_some(split.reasoning),
            };
            chunks.push(a.choice_chunk(wire, None));
        }
        if done {
            let generation = self
                .session
                .finish()
                .ok_or_else(|| EngineError::Compute("the answer finished twice".into()))?;
            let reason = finish_reason(generation.finish_reason);
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

/// The answer in progress: what the client has been sent, and the result once it is over.
struct Answer {
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

    /// The whole answer, once finished.
    fn response(&self) -> Option<ChatCompletion> {
        let g = self.result.as_ref()?;
        let reasoning =
            (self.in_think || !self.reasoning.is_empty()).then(|| self.reasoning.clone());
        Some(ChatCompletion {
            id: self.id.clone(),
            object: "chat.completion".into(),
            created: self.created,
            model: self.model.clone(),
            choices: vec![Choice {
                index: 0,
                message: ResponseMessage {
                    role: "assistant".into(),
                    content: self.content.clone(),
                    reasoning_content: reasoning,
                },
                finish_reason: Some(finish_reason(g.finish_reason).into()),
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

/// A seed for requests that give none, so unseeded answers differ.
fn fresh_seed() -> u64 {
    let now = web_time::SystemTime::now()
        .duration_since(web_time::UNIX_EPOCH)
        .unwrap_or_default();
    now.as_nanos() as u64 ^ 0x9E37_79B9_7F4A_7C15
}
