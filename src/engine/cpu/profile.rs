//! Where a CPU step's time goes, when asked for (`CpuBackend::set_profiling`): wall time summed
//! per part of the forward pass. Off by default; on, each part costs two clock reads (on wasm,
//! `performance.now()`, which browsers coarsen to 5 µs in cross-origin isolated pages and 100 µs
//! elsewhere: read the wasm figures over many steps).

use web_time::Instant;

/// A part of the forward pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// Matrix products, the activation quantization before them included, the head excluded.
    Matmul,
    /// RoPE, the KV-cache append, scores, softmax and the weighted sum of V.
    Attention,
    /// RMSNorms (and Qwen3's q/k norms).
    Norms,
    /// Biases, SiLU·mul, residual adds, the embedding lookup, reshapes.
    Other,
    /// The output projection to the vocabulary.
    Head,
}

pub const PARTS: [Part; 5] = [
    Part::Matmul,
    Part::Attention,
    Part::Norms,
    Part::Other,
    Part::Head,
];

/// Seconds per part, summed over the steps since the last reset.
#[derive(Clone, Debug, Default)]
pub struct StepProfile {
    pub seconds: [f64; 5],
    pub steps: usize,
}

impl StepProfile {
    /// `{"matmulMs":…, "attentionMs":…, "normsMs":…, "otherMs":…, "headMs":…, "steps":n}`:
    /// milliseconds per step.
    pub fn to_json(&self) -> String {
        let per = |s: f64| s * 1e3 / self.steps.max(1) as f64;
        let parts: Vec<String> = PARTS
            .iter()
            .zip(&self.seconds)
            .map(|(p, s)| format!("\"{}Ms\":{:.3}", format!("{p:?}").to_lowercase(), per(*s)))
            .collect();
        format!("{{{},\"steps\":{}}}", parts.join(","), self.steps)
    }
}

/// The running clock of one step: `lap(part)` charges the time since the last lap to `part`.
pub(super) struct Clock<'a> {
    profile: Option<&'a mut StepProfile>,
    last: Option<Instant>,
}

impl<'a> Clock<'a> {
    pub fn start(mut profile: Option<&'a mut StepProfile>) -> Self {
        if let Some(p) = profile.as_deref_mut() {
            p.steps += 1;
        }
        let last = profile.as_ref().map(|_| Instant::now());
        Self { profile, last }
    }

    pub fn lap(&mut self, part: Part) {
        if let (Some(p), Some(last)) = (self.profile.as_deref_mut(), self.last) {
            let now = Instant::now();
            p.seconds[part as usize] += (now - last).as_secs_f64();
            self.last = Some(now);
        }
    }
}
