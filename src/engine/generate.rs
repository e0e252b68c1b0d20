//! The generation loop, written once above [`Backend`]: prompt-prefix reuse, sampling, streaming
//! text that never splits a UTF-8 character, stop tokens and strings, usage and timings.

use serde::{Deserialize, Serialize};
use web_time::Instant;

use super::{Backend, Constraint, EngineError, Sampler, SamplingParams};
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

/// A backend, the token sequence its KV cache holds (so the next prompt reuses the prefix), and
/// the generation in progress, if any.
pub struct Session<B> {
    backend: B,
    cached: Vec<u32>,
    run: Option<Run>,
}

impl<B: Backend> Session<B> {
    pub fn new(backend: B) -> Self {
        Self {
            backend,
            cached: Vec::new(),
            run: None,
        }
    }

    pub fn backend(&self) -> &B {
        &self.backend
    }

    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }

    /// Empties the KV cache, so the next prompt runs from its first token.
    pub fn forget(&mut self) {
        self.backend.reset();
        self.cached.clear();
    }

    /// Generates from `req.prompt` to its end; `on_text` receives each new piece of text and
    /// returns false to stop early.
    pub async fn generate(
        &mut self,
        tokenizer: &Tokenizer,
        req: &GenerateRequest,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation, EngineError> {
        self.start(req).await?;
        while let Some(piece) = self.step(tokenizer).await? {
            if !piece.is_empty() && !on_text(&piece) {
                self.abort();
                break;
            }
        }
        self.finish()
            .ok_or_else(|| EngineError::Compute("the generation ended without a result".into()))
    }

    /// Runs the prompt (reusing the cached prefix) and starts a generation, to be advanced one
    /// token at a time with [`Session::step`] so a caller can yield or abort between tokens.
    /// A generation still in progress is dropped.
    pub async fn start(&mut self, req: &GenerateRequest) -> Result<(), EngineError> {
        self.run = None;
        if req.prompt.is_empty() {
            return Err(EngineError::EmptyPrompt);
        }
        let sampler = Sampler::new(req.sampling.clone())?;
        let max_pos = self.backend.max_positions();
        if req.prompt.len() >= max_pos {
            return Err(EngineError::ContextFull {
                needed: req.prompt.len() + 1,
                max: max_pos,
            });
        }
        let start = Instant::now();
        // Reuse the longest cached prefix, keeping at least one token to run for fresh logits.
        let mut reuse = self
            .cached
            .iter()
            .zip(&req.prompt)
            .take_while(|(a, b)| a == b)
            .count();
        reuse = reuse.min(req.prompt.len() - 1);
        self.backend.truncate(reuse)?;
        self.cached.truncate(reuse);
        let fresh = &req.prompt[reuse..];
        let logits = self
            .backend
            .forward(fresh)
            .await
            .inspect_err(|_| self.cached.truncate(self.backend.cache_len()))?;
        self.cached.extend_from_slice(fresh);
        self.run = Some(Run {
            sampler,
            constraint: None,
            logits: Some(logits),
            history: req.prompt.clone(),
            out_tokens: Vec::new(),
            text: Stream::new(req.stop.clone()),
            stop_tokens: req.stop_tokens.clone(),
            finish: None,
            budget: req.max_tokens.min(max_pos - req.prompt.len()),
            prompt_len: req.prompt.len(),
            reuse,
            fresh: fresh.len(),
            start,
            prefill_ms: ms(start),
            first_token_ms: 0.0,
            decode_start: Instant::now(),
            decode_ms: 0.0,
        });
        Ok(())
    }

    /// Limits the generation in progress to what `constraint` allows, from its next token on.
    pub fn constrain(&mut self, constraint: Box<dyn Constraint>) {
        if let Some(run) = self.run.as_mut() {
            run.constraint = Some(constraint);
        }
    }

    /// Samples the next token and returns the text it settles (often empty), or None once the
    /// generation has ended (or none was started).
    pub async fn step(&mut self, tokenizer: &Tokenizer) -> Result<Option<String>, EngineError> {
        let Some(run) = self.run.as_mut() else {
            return Ok(None);
        };
        if run.finish.is_some() {
            return Ok(None);
        }
        if run.out_tokens.len() >= run.budget {
            return Ok(Some(run.end(FinishReason::Length)));
        }
        let pick = run.sampler.pick(&run.history);
        // A constrained step picks on the host from masked logits.
        let constrained = run.constraint.as_ref().is_some_and(|c| c.is_active());
        let mut choose = |logits: &mut Vec<f32>| -> Result<Option<u32>, EngineError> {
            if let Some(c) = run.constraint.as_mut().filter(|_| constrained) {
                // Built only on constrained steps: the plain path allocates nothing per token.
                let stop = [tokenizer.stop_tokens(), &run.stop_tokens[..]].concat();
                if !c.mask(logits, &stop).map_err(EngineError::Constraint)? {
                    return Ok(None);
                }
            }
            Ok(Some(pick.choose(logits)))
        };
        let token = match run.logits.take() {
            Some(mut logits) => choose(&mut logits)?,
            None => {
                // One token normally; more when a failed step left the cache behind.
                let missing = &run.history[self.cached.len().min(run.history.len())..];
                let picked = match missing {
                    [one] if !constrained => match self.backend.forward_pick(*one, &pick) {
                        Some(on_device) => Some(on_device.await.map(Some)),
                        None => None,
                    },
                    _ => None,
                };
                let token = match picked {
                    Some(token) => token,
                    None => match self.backend.forward(missing).await {
                        Ok(mut logits) => choose(&mut logits),
                        Err(e) => Err(e),
                    },
                };
                let token =
                    token.inspect_err(|_| self.cached.truncate(self.backend.cache_len()))?;
                self.cached.extend_from_slice(missing);
                token
            }
        };
        if run.out_tokens.is_empty() {
            run.first_token_ms = ms(run.start);
        }
        // Nothing allowed means the rule cannot go on: end as if a stop token came.
        let Some(token) = token else {
            return Ok(Some(run.end(FinishReason::Stop)));
        };
        if tokenizer.stop_tokens().contains(&token) || run.stop_tokens.contains(&token) {
            return Ok(Some(run.end(FinishReason::Stop)));
        }
        if let Some(c) = run.constraint.as_mut() {
            c.accept(token).map_err(EngineError::Constraint)?;
        }
        run.out_tokens.push(token);
        run.history.push(token);
        let mut piece = run.text.push(tokenizer, &run.out_tokens)?;
        if run.text.stopped {
            piece.push_str(&run.end(FinishReason::Stop));
        } else if run.out_tokens.len() == run.budget {
            piece.push_str(&run.end(FinishReason::Length));
        }
        Ok(Some(piece))
    }

    /// Ends the generation now (the caller gave up); text held back is dropped. The KV cache
    /// keeps what was computed, so the next request reuses it.
    pub fn abort(&mut self) {
        if let Some(run) = self.run.as_mut() {
            run.abort();
        }
    }

    /// Whether the generation in progress has ended (true when there is none).
    pub fn is_finished(&self) -> bool {
        self.run.as_ref().is_none_or(|r| r.finish.is_some())
    }

    /// Tokens generated so far by the generation in progress.
    pub fn tokens(&self) -> &[u32] {
        self.run.as_ref().map_or(&[], |r| &r.out_tokens)
    }

    /// The result of the generation in progress, which ends it (aborted if it had not ended).
    pub fn finish(&mut self) -> Option<Generation> {
        self.run.take().map(Run::finish)
    }
}

/// One generation in progress: its sampler, text state and timings.
struct Run {
    sampler: Sampler,
    /// What the output must follow, when the request asked for a format.
    constraint: Option<Box<dyn Constraint>>,
    /// The prompt's logits, until the first token is drawn from them.
    logits: Option<Vec<f32>>,
    /// Prompt and output; what the session's cache lacks of it runs on the next step.
    history: Vec<u32>,
    out_tokens: Vec<u32>,
    text: Stream,
    stop_tokens: Vec<u32>,
    finish: Option<FinishReason>,
    budget: usize,
    prompt_len: usize,
    reuse: usize,
    fresh: usize,
    start: Instant,
    prefill_ms: f64,
    first_token_ms: f64,
    decode_start: Instant,
    decode_ms: f64,
}

impl Run {
    fn abort(&mut self) {
        if self.finish.is_none() {
            self.finish = Some(FinishReason::Abort);
            self.decode_ms = ms(self.decode_start);
        }
    }

    fn end(&mut self, reason: FinishReason) -> String {
        self.finish = Some(reason);
        self.decode_ms = ms(self.decode_start);
        self.text.finish()
    }

    fn finish(mut self) -> Generation {
        self.abort();
        // The last sampled token was never run through the model: the next step starts there.
        let decode_tokens = self.out_tokens.len().saturating_sub(1);
        let decode_ms = self.decode_ms;
        Generation {
            text: std::mem::take(&mut self.text.emitted),
            usage: Usage {
                prompt_tokens: self.prompt_len,
                completion_tokens: self.out_tokens.len(),
                total_tokens: self.prompt_len + self.out_tokens.len(),
                prompt_cache_hit_tokens: self.reuse,
            },
            timings: Timings {
                time_to_first_token_ms: self.first_token_ms,
                prefill_tokens: self.fresh,
                prefill_ms: self.prefill_ms,
                prefill_tokens_per_s: per_s(self.fresh, self.prefill_ms),
                decode_tokens,
                decode_ms,
                decode_tokens_per_s: per_s(decode_tokens, decode_ms),
            },
            tokens: self.out_tokens,
            finish_reason: self.finish.unwrap_or(FinishReason::Abort),
        }
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
struct Stream {
    stop: Vec<String>,
    /// Tokens before `prefix` are settled text; decoding restarts there so merges stay right.
    prefix: usize,
    read: usize,
    full: String,
    emitted: String,
    stopped: bool,
}

impl Stream {
    fn new(stop: Vec<String>) -> Self {
        Self {
            stop,
            prefix: 0,
            read: 0,
            full: String::new(),
            emitted: String::new(),
            stopped: false,
        }
    }

    fn push(&mut self, tok: &Tokenizer, tokens: &[u32]) -> Result<String, EngineError> {
        let err = |e: crate::tokenizer::TokenizerError| EngineError::Tokenizer(e.to_string());
        let before = tok
            .decode(&tokens[self.prefix..self.read], true)
            .map_err(err)?;
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
            .filter_map(|s| {
                self.full[search_from..]
                    .find(s.as_str())
                    .map(|i| search_from + i)
            })
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
