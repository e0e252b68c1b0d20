//! Turning logits into the next token: penalties, then top-k, top-p, min-p, temperature, draw,
//! in llama.cpp's order. Greedy when temperature is 0.

use serde::{Deserialize, Serialize};

use super::EngineError;
use crate::rng::SeededRng;

/// Sampling settings, named as in the OpenAI/DeepSeek API where one exists there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SamplingParams {
    /// 0 means greedy.
    pub temperature: f32,
    /// 0 disables.
    pub top_k: usize,
    /// 1 disables.
    pub top_p: f32,
    /// 0 disables.
    pub min_p: f32,
    /// Multiplicative penalty on tokens seen in the last `penalty_last_n` (1 disables).
    pub repetition_penalty: f32,
    /// Subtracted once from the logit of every token already generated.
    pub presence_penalty: f32,
    /// Subtracted per occurrence.
    pub frequency_penalty: f32,
    pub penalty_last_n: usize,
    /// Same seed, same prompt, same model → same text.
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 0.0,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repetition_penalty: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            penalty_last_n: 64,
            seed: 0,
        }
    }
}

impl SamplingParams {
    pub fn greedy() -> Self {
        Self {
            temperature: 0.0,
            ..Self::default()
        }
    }

    pub fn validate(&self) -> Result<(), EngineError> {
        let bad = |m: &str| Err(EngineError::BadParams(m.to_string()));
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return bad("temperature must be a finite number >= 0");
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("top_p must be in (0, 1]");
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return bad("min_p must be in [0, 1]");
        }
        if !(self.repetition_penalty.is_finite() && self.repetition_penalty > 0.0) {
            return bad("repetition_penalty must be > 0");
        }
        if !(self.presence_penalty.is_finite() && self.frequency_penalty.is_finite()) {
            return bad("penalties must be finite");
        }
        Ok(())
    }
}

/// A sampler with its own random stream.
pub struct Sampler {
    params: SamplingParams,
    rng: SeededRng,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Result<Self, EngineError> {
        params.validate()?;
        let rng = SeededRng::new(params.seed);
        Ok(Self { params, rng })
    }

    /// Picks the next token. `history` is what the penalties look at (prompt and output so far).
    pub fn sample(&mut self, logits: &mut [f32], history: &[u32]) -> u32 {
        self.pick(history).choose(logits)
    }

    /// Everything one draw needs besides the logits, its random number included, so the host
    /// and a GPU backend pick the same token from the same logits.
    pub fn pick(&mut self, history: &[u32]) -> Pick {
        let p = &self.params;
        let active =
            p.repetition_penalty != 1.0 || p.presence_penalty != 0.0 || p.frequency_penalty != 0.0;
        let mut seen = Vec::new();
        if active && p.penalty_last_n > 0 {
            let window = &history[history.len().saturating_sub(p.penalty_last_n)..];
            let mut counts: std::collections::BTreeMap<u32, u32> =
                std::collections::BTreeMap::new();
            for &t in window {
                *counts.entry(t).or_default() += 1;
            }
            seen = counts.into_iter().collect();
        }
        let r = if p.temperature > 0.0 {
            self.rng.next_f32()
        } else {
            0.0
        };
        Pick {
            params: self.params.clone(),
            seen,
            r,
        }
    }
}

impl Pick {
    /// The token this draw selects from `logits` (penalties applied to them in place).
    pub fn choose(&self, logits: &mut [f32]) -> u32 {
        let (p, pick) = (&self.params, self);
        apply_penalties(p, logits, &pick.seen);
        if p.temperature <= 0.0 {
            return argmax(logits);
        }
        let by_logit = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        let mut cand = if p.top_k > 0 && p.top_k < logits.len() {
            top_k(logits, p.top_k)
        } else {
            logits
                .iter()
                .enumerate()
                .map(|(i, &l)| (i as u32, l))
                .collect()
        };
        cand.sort_unstable_by(by_logit);
        let max = cand[0].1;
        let mut probs: Vec<f32> = cand.iter().map(|c| (c.1 - max).exp()).collect();
        let sum: f32 = probs.iter().sum();
        probs.iter_mut().for_each(|x| *x /= sum);
        // top-p: smallest prefix with mass >= top_p (always at least one token).
        if p.top_p < 1.0 {
            let mut acc = 0.0;
            let mut keep = probs.len();
            for (i, &pr) in probs.iter().enumerate() {
                acc += pr;
                if acc >= p.top_p {
                    keep = i + 1;
                    break;
                }
            }
            cand.truncate(keep);
        }
        // min-p: drop tokens below min_p times the best one's probability.
        if p.min_p > 0.0 {
            let floor = (p.min_p).ln();
            let keep = cand
                .iter()
                .take_while(|c| c.1 - max >= floor)
                .count()
                .max(1);
            cand.truncate(keep);
        }
        let inv_t = 1.0 / p.temperature;
        let weights: Vec<f32> = cand.iter().map(|c| ((c.1 - max) * inv_t).exp()).collect();
        let total: f32 = weights.iter().sum();
        let mut r = pick.r * total;
        for (c, w) in cand.iter().zip(&weights) {
            if r < *w {
                return c.0;
            }
            r -= w;
        }
        cand[cand.len() - 1].0
    }
}

/// One draw's inputs: the settings, the penalty window as (token, count) by id, and the
/// uniform random number in [0, 1) (0 when greedy).
#[derive(Debug, Clone)]
pub struct Pick {
    pub params: SamplingParams,
    pub seen: Vec<(u32, u32)>,
    pub r: f32,
}

fn apply_penalties(p: &SamplingParams, logits: &mut [f32], seen: &[(u32, u32)]) {
    for &(t, n) in seen {
        let Some(l) = logits.get_mut(t as usize) else {
            continue;
        };
        if p.repetition_penalty != 1.0 {
            *l = if *l > 0.0 {
                *l / p.repetition_penalty
            } else {
                *l * p.repetition_penalty
            };
        }
        *l -= p.presence_penalty + p.frequency_penalty * n as f32;
    }
}

/// The `k` largest logits (ties to the lower id), in one pass over the vocabulary: after the
/// first few hundred tokens almost every logit is below the k-th best and costs one compare.
fn top_k(logits: &[f32], k: usize) -> Vec<(u32, f32)> {
    // Kept sorted, best first.
    let mut best: Vec<(u32, f32)> = Vec::with_capacity(k + 1);
    for (i, &l) in logits.iter().enumerate() {
        if best.len() == k && l <= best[k - 1].1 {
            continue;
        }
        let at = best.partition_point(|&(_, b)| b >= l);
        best.insert(at, (i as u32, l));
        best.truncate(k);
    }
    best
}

/// Index of the largest logit; the lowest index wins ties, as in llama.cpp.
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}
