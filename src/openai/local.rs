//! Answering a chat-completions request with a model on this device, one step at a time, so the
//! caller (a browser worker) can yield, stream and abort between tokens.

use super::wire::*;
use super::RequestError;
use crate::chat::{ChatTemplate, Message, ThinkSplitter};
use crate::engine::{
    ready, Backend, EngineError, FinishReason, GenerateRequest, Generation, Run, SamplingParams,
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

/// A loaded model with its tokenizer, chat template and KV cache.
pub struct LocalModel {
    id: String,
    tokenizer: Tokenizer,
    template: ChatTemplate,
    session: Session<Box<dyn Backend>>,
}

impl LocalModel {
    /// `id` is the model name reported in responses.
    pub fn new(
        id: impl Into<String>,
        file: &GgufFile,
        backend: Box<dyn Backend>,
    ) -> Result<Self, EngineError> {
        let tokenizer =
            Tokenizer::from_gguf(file).map_err(|e| EngineError::Tokenizer(e.to_string()))?;
        let template = ChatTemplate::from_gguf(file, &tokenizer)
            .map_err(|e| EngineError::Template(e.to_string()))?;
        Ok(Self {
            id: id.into(),
            tokenizer,
            template,
            session: Session::new(backend),
        })
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

    /// Swaps the backend (after the GPU was lost); a completion in progress carries on.
    pub fn replace_backend(&mut self, backend: Box<dyn Backend>) {
        self.session.replace_backend(backend);
    }

    /// [`LocalModel::start_async`] for backends that never wait.
    pub fn start(
        &mut self,
        req: ChatCompletionRequest,
        id: String,
        created: u64,
    ) -> Result<Completion, AnswerError> {
        ready(self.start_async(req, id, created))
    }

    /// Checks `req`, renders its prompt and runs it; `id` and `created` label every chunk.
    pub async fn start_async(
        &mut self,
        req: ChatCompletionRequest,
        id: String,
        created: u64,
    ) -> Result<Completion, AnswerError> {
        let (generate, in_think) = self.plan(&req)?;
        if req.cache_prompt == Some(false) {
            self.session.forget();
        }
        let run = self.session.start_async(&generate).await?;
        Ok(Completion {
            run: Some(run),
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
        })
    }

    /// The generation request for `req`, and whether its prompt leaves the model inside `<think>`.
    pub fn plan(
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

    /// [`LocalModel::step_async`] for backends that never wait.
    pub fn step(
        &mut self,
        c: &mut Completion,
    ) -> Result<Option<Vec<ChatCompletionChunk>>, EngineError> {
        ready(self.step_async(c))
    }

    /// Advances `c` by one token. Returns the chunks that step produced (often one, sometimes
    /// none), or None once the completion is over.
    pub async fn step_async(
        &mut self,
        c: &mut Completion,
    ) -> Result<Option<Vec<ChatCompletionChunk>>, EngineError> {
        if c.result.is_some() {
            if c.include_usage && !c.usage_sent {
                c.usage_sent = true;
                let mut chunk = c.chunk(Vec::new());
                chunk.usage = c.usage();
                return Ok(Some(vec![chunk]));
            }
            return Ok(None);
        }
        if c.run.is_none() {
            return Ok(None);
        }
        let mut chunks = Vec::new();
        if !c.role_sent {
            c.role_sent = true;
            let role = Delta {
                role: Some("assistant".into()),
                content: Some(String::new()),
                reasoning_content: None,
            };
            chunks.push(c.choice_chunk(role, None));
        }
        let step = match c.run.as_mut() {
            Some(run) => run.step_async(&mut self.session, &self.tokenizer).await?,
            None => None,
        };
        let (delta, done) = match step {
            Some(piece) => (c.think.push(&piece), false),
            None => (c.think.finish(), true),
        };
        if !delta.is_empty() {
            c.note_delta(&delta);
            let wire = Delta {
                role: None,
                content: (!delta.content.is_empty()).then_some(delta.content),
                reasoning_content: (!delta.reasoning.is_empty()).then_some(delta.reasoning),
            };
            chunks.push(c.choice_chunk(wire, None));
        }
        if done {
            let generation = c
                .run
                .take()
                .map(Run::finish)
                .ok_or_else(|| EngineError::Compute("completion finished twice".into()))?;
            let reason = finish_reason(generation.finish_reason);
            let mut last = c.choice_chunk(Delta::default(), Some(reason.into()));
            last.timings = Some(generation.timings);
            c.result = Some(generation);
            chunks.push(last);
        }
        Ok(Some(chunks))
    }

    /// Runs `c` to its end and returns the whole answer.
    pub fn complete(&mut self, c: &mut Completion) -> Result<ChatCompletion, EngineError> {
        while self.step(c)?.is_some() {}
        c.response()
            .ok_or_else(|| EngineError::Compute("completion ended without a result".into()))
    }
}

/// One answer in progress.
pub struct Completion {
    run: Option<Run>,
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

impl Completion {
    /// Stops generating; the KV cache keeps what was computed, so the next request reuses it.
    pub fn abort(&mut self) {
        if let Some(run) = self.run.as_mut() {
            run.abort();
        }
    }

    pub fn is_finished(&self) -> bool {
        self.result.is_some()
    }

    /// Token ids generated so far (all of them once finished).
    pub fn tokens(&self) -> &[u32] {
        match (&self.run, &self.result) {
            (Some(run), _) => run.tokens(),
            (None, Some(g)) => &g.tokens,
            (None, None) => &[],
        }
    }

    fn note_delta(&mut self, d: &crate::chat::Delta) {
        self.reasoning.push_str(&d.reasoning);
        if !d.content.is_empty() && self.reasoning_tokens.is_none() {
            self.reasoning_tokens = Some(if self.reasoning.is_empty() {
                0
            } else {
                self.tokens().len().saturating_sub(1)
            });
        }
        self.content.push_str(&d.content);
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
    pub fn response(&self) -> Option<ChatCompletion> {
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
