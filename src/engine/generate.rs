//! The generation loop, written once above [`Backend`]: prompt-prefix reuse, sampling, streaming
//! text that never splits a UTF-8 character, stop tokens and strings, usage and timings.

use serde::{Deserialize, Serialize};
use web_time::Instant;

use super::{Backend, EngineError, Sampler, SamplingParams};
use crate::tokenizer::Tokenizer;

/// What to generate.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct GenerateRequest {
    pub prompt: Vec<u32>,
    pub max_tokens: usize,
    pub sampling: SamplingParams,
    /// Generation ends before the first of these strings; it is not returned.
    pub stop: Vec<String>,
    /// Token ids that end generation besides the tokenizer's own end tokens.
    pub stop_tokens: Vec<u32>,
}

/// Why generation ended, as OpenAI names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    Stop,
    Length,
    /// The caller asked to stop (abort).
    Abort,
}

/// Token counts, as in the OpenAI usage object (with DeepSeek's cache-hit count).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub total_tokens: usize,
    /// Prompt tokens whose KV entries were reused from the previous request.
    pub prompt_cache_hit_tokens: usize,
}

/// Where the time went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    pub time_to_first_token_ms: f64,
    pub prefill_tokens: usize,
    pub prefill_ms: f64,
    pub prefill_tokens_per_s: f64,
    pub decode_tokens: usize,
    pub decode_ms: f64,
    pub decode_tokens_per_s: f64,
}

/// The result of one generation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Generation {
    pub text: String,
    pub tokens: Vec<u32>,
    pub finish_reason: FinishReason,
    pub usage: Usage,
    pub timings: Timings,
}

/// A backend plus the token sequence its KV cache holds, so the next prompt reuses the prefix.
pub struct Session<B> {
    backend: B,
    cached: Vec<u32>,
}

impl<B: Backend> Session<B> {
    pub fn new(backend: B) -> Self {
        Self { backend, cached: Vec::new() }
    }

    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Generates from `req.prompt`; `on_text` receives each new piece of text and returns false
    /// to stop early.
    pub fn generate(
        &mut self,
        tokenizer: &Tokenizer,
        req: &GenerateRequest,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation, EngineError> {
        if req.prompt.is_empty() {
            return Err(EngineError::EmptyPrompt);
        }
        let mut sampler = Sampler::new(req.sampling.clone())?;
        let max_pos = self.backend.max_positions();
        if req.prompt.len() >= max_pos {
            return Err(EngineError::ContextFull { needed: req.prompt.len() + 1, max: max_pos });
        }
        let start = Instant::now();
        // Reuse the longest cached prefix, keeping at least one token to run for fresh logits.
        let mut reuse = self.cached.iter().zip(&req.prompt).take_while(|(a, b)| a == b).count();
        reuse = reuse.min(req.prompt.len() - 1);
        self.backend.truncate(reuse)?;
        self.cached.truncate(reuse);
        let fresh = &req.prompt[reuse..];
        let mut logits = self.backend.prefill(fresh).inspect_err(|_| self.resync())?;
        self.cached.extend_from_slice(fresh);
        let prefill_ms = ms(start);

        let mut history = req.prompt.clone();
        let mut out_tokens = Vec::new();
        let mut text = Stream::new(&req.stop);
        let mut finish = FinishReason::Length;
        let mut first_token_ms = 0.0;
        let decode_start = Instant::now();
        let budget = req.max_tokens.min(max_pos - req.prompt.len());
        while out_tokens.len() < budget {
            let token = sampler.sample(&mut logits, &history);
            if out_tokens.is_empty() {
                first_token_ms = ms(start);
            }
            if tokenizer.stop_tokens().contains(&token) || req.stop_tokens.contains(&token) {
                finish = FinishReason::Stop;
                break;
            }
            out_tokens.push(token);
            history.push(token);
            let piece = text.push(tokenizer, &out_tokens)?;
            if !piece.is_empty() && !on_text(&piece) {
                finish = FinishReason::Abort;
                break;
            }
            if text.stopped {
                finish = FinishReason::Stop;
                break;
            }
            if out_tokens.len() == budget {
                break;
            }
            logits = self.backend.decode(token).inspect_err(|_| self.resync())?;
            self.cached.push(token);
        }
        if finish != FinishReason::Abort {
            let rest = text.finish();
            if !rest.is_empty() {
                on_text(&rest);
            }
        }
        let decode_ms = ms(decode_start);
        // The last sampled token was never run through the model: the next step starts there.
        let decode_tokens = out_tokens.len().saturating_sub(1);
        Ok(Generation {
            text: text.emitted,
            usage: Usage {
                prompt_tokens: req.prompt.len(),
                completion_tokens: out_tokens.len(),
                total_tokens: req.prompt.len() + out_tokens.len(),
                prompt_cache_hit_tokens: reuse,
            },
            timings: Timings {
                time_to_first_token_ms: first_token_ms,
                prefill_tokens: fresh.len(),
                prefill_ms,
                prefill_tokens_per_s: per_s(fresh.len(), prefill_ms),
                decode_tokens,
                decode_ms,
                decode_tokens_per_s: per_s(decode_tokens, decode_ms),
            },
            tokens: out_tokens,
            finish_reason: finish,
        })
    }

    /// After a failed step the cache is cut back by the backend; forget what we thought it held.
    fn resync(&mut self) {
        self.cached.truncate(self.backend.cache_len());
    }
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

fn per_s(n: usize, ms: f64) -> f64 {
    if ms > 0.0 {
        n as f64 * 1000.0 / ms
    } else {
        0.0
    }
}

/// Incremental detokenization with stop strings held back until they can no longer match.
struct Stream<'a> {
    stop: &'a [String],
    /// Tokens before `prefix` are settled text; decoding restarts there so merges stay right.
    prefix: usize,
    read: usize,
    full: String,
    emitted: String,
    stopped: bool,
}

impl<'a> Stream<'a> {
    fn new(stop: &'a [String]) -> Self {
        Self { stop, prefix: 0, read: 0, full: String::new(), emitted: String::new(), stopped: false }
    }

    fn push(&mut self, tok: &Tokenizer, tokens: &[u32]) -> Result<String, EngineError> {
        let err = |e: crate::tokenizer::TokenizerError| EngineError::Tokenizer(e.to_string());
        let before = tok.decode(&tokens[self.prefix..self.read], true).map_err(err)?;
        let now = tok.decode(&tokens[self.prefix..], true).map_err(err)?;
        // A trailing U+FFFD is half a character: wait for the rest of its bytes.
        if now.len() <= before.len() || now.ends_with('\u{FFFD}') || !now.starts_with(&before) {
            return Ok(String::new());
        }
        self.full.push_str(&now[before.len()..]);
        self.prefix = self.read;
        self.read = tokens.len();
        Ok(self.release(false))
    }

    fn finish(&mut self) -> String {
        self.release(true)
    }

    /// Moves text from `full` to `emitted`, stopping at a stop string.
    fn release(&mut self, at_end: bool) -> String {
        let done = self.emitted.len();
        let search_from = done.saturating_sub(self.stop.iter().map(String::len).max().unwrap_or(0));
        let search_from = floor_boundary(&self.full, search_from);
        let hit = self
            .stop
            .iter()
            .filter(|s| !s.is_empty())
            .filter_map(|s| self.full[search_from..].find(s.as_str()).map(|i| search_from + i))
            .min();
        let end = match hit {
            Some(i) => {
                self.stopped = true;
                i
            }
            None if at_end => self.full.len(),
            None => {
                let held = self
                    .stop
                    .iter()
                    .map(|s| crate::chat::partial_suffix(&self.full, s))
                    .max()
                    .unwrap_or(0);
                self.full.len() - held
            }
        };
        if end <= done {
            return String::new();
        }
        let piece = self.full[done..end].to_string();
        self.emitted.push_str(&piece);
        piece
    }
}

fn floor_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}
