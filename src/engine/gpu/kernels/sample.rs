//! Choosing the next token on the GPU (penalties, then argmax or top-k/top-p/min-p with
//! temperature), the host sampler's exact steps, so a decode step reads back one id.

use super::{Binding, Kernel};
use crate::engine::Pick;

/// The most candidates `top_k` may keep on the GPU, and the most distinct penalized tokens.
pub const MAX_K: usize = 256;
pub const MAX_SEEN: usize = 256;

pub enum Sample {
    Penalize,
    Argmax,
    TopK,
}

impl Kernel for Sample {
    fn key(&self) -> String {
        self.entry().into()
    }

    fn source(&self) -> String {
        include_str!("../../../../shaders/sample.wgsl").into()
    }

    fn entry(&self) -> &'static str {
        match self {
            Sample::Penalize => "penalize",
            Sample::Argmax => "argmax",
            Sample::TopK => "top_k",
        }
    }

    fn bindings(&self) -> &'static [Binding] {
        use Binding::*;
        &[ReadWrite, Read, ReadWrite, Uniform]
    }

    fn class(&self) -> &'static str {
        "sample"
    }
}

/// Whether the GPU can make this draw; otherwise the logits go to the host sampler.
pub fn on_gpu(pick: &Pick, vocab: usize) -> bool {
    let p = &pick.params;
    let k_fits = p.top_k > 0 && p.top_k <= MAX_K && p.top_k < vocab;
    pick.seen.len() <= MAX_SEEN && (p.temperature <= 0.0 || k_fits)
}

/// The `PickParams` uniform (`shaders/sample.wgsl`): one draw's settings and random number.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct PickParams {
    pub vocab: u32,
    /// Distinct tokens in the penalty window.
    pub penalties: u32,
    pub top_k: u32,
    pub repetition: f32,
    pub presence: f32,
    pub frequency: f32,
    pub top_p: f32,
    pub min_p: f32,
    /// 1/temperature; 0 when greedy.
    pub inv_temp: f32,
    pub r: f32,
}

impl PickParams {
    pub fn new(pick: &Pick, vocab: usize) -> Self {
        let p = &pick.params;
        Self {
            vocab: vocab as u32,
            penalties: pick.seen.len() as u32,
            top_k: p.top_k as u32,
            repetition: p.repetition_penalty,
            presence: p.presence_penalty,
            frequency: p.frequency_penalty,
            top_p: p.top_p,
            min_p: p.min_p,
            inv_temp: if p.temperature > 0.0 {
                1.0 / p.temperature
            } else {
                0.0
            },
            r: pick.r,
        }
    }
}

/// The penalty window as the `seen` buffer holds it: (id, count) pairs.
pub fn seen_words(pick: &Pick) -> Vec<u32> {
    pick.seen.iter().flat_map(|&(t, n)| [t, n]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::gpu::kernels::testing::{self, random};
    use crate::engine::gpu::kernels::{
        f32_bytes, storage, storage_init, uniform, words_bytes, Groups, Op, Pool, Step,
    };
    use crate::engine::{Sampler, SamplingParams};

    /// For greedy and sampled settings, with and without penalties, over logits with ties: the
    /// GPU picks exactly the host sampler's token from the same logits and random number.
    async fn gpu_picks_the_host_samplers_token() {
        let gpu = testing::gpu().await;
        let pool = Pool::new(&gpu.device);
        let settings = [
            SamplingParams::greedy(),
            SamplingParams {
                temperature: 0.8,
                top_k: 40,
                top_p: 0.95,
                min_p: 0.05,
                ..SamplingParams::default()
            },
            SamplingParams {
                temperature: 1.5,
                top_k: 256,
                top_p: 1.0,
                min_p: 0.0,
                ..SamplingParams::default()
            },
            SamplingParams {
                temperature: 0.7,
                top_k: 3,
                top_p: 0.5,
                min_p: 0.0,
                repetition_penalty: 1.3,
                presence_penalty: 0.5,
                frequency_penalty: 0.2,
                ..SamplingParams::default()
            },
            SamplingParams {
                temperature: 0.0,
                repetition_penalty: 2.0,
                ..SamplingParams::default()
            },
        ];
        let mut draws = 0;
        for (vocab, round) in [(5000usize, false), (151_936, false), (3000, true)] {
            for (si, setting) in settings.iter().enumerate() {
                let mut sampler = Sampler::new(SamplingParams {
                    seed: si as u64,
                    ..setting.clone()
                })
                .unwrap();
                for trial in 0..6u64 {
                    let mut logits = random(trial * 31 + vocab as u64, vocab, 3.0);
                    if round {
                        // Ties everywhere: ids must break them the host's way.
                        logits
                            .iter_mut()
                            .for_each(|l| *l = (*l * 2.0).round() / 2.0);
                    }
                    let history: Vec<u32> = (0..80)
                        .map(|i| ((i * 7919 + trial as usize * 13) % vocab) as u32)
                        .collect();
                    let pick = sampler.pick(&history);
                    assert!(on_gpu(&pick, vocab));
                    let expect = pick.choose(&mut logits.clone());
                    let (u, mut seen) = (PickParams::new(&pick, vocab), seen_words(&pick));
                    seen.resize(seen.len().max(2), 0);
                    let lb = storage_init(&gpu.device, &f32_bytes(&logits), "logits");
                    let sb = storage_init(&gpu.device, &words_bytes(&seen), "seen");
                    let picked = storage(&gpu.device, 4, "picked");
                    let ub = uniform(&gpu.device, &u);
                    let buffers = [&lb, &sb, &picked, &ub];
                    let mut ops = vec![Op::new(
                        &pool,
                        &Sample::Penalize,
                        &buffers,
                        Groups::Fixed([(seen.len() as u32 / 2).div_ceil(64).max(1), 1, 1]),
                    )];
                    let choose = if setting.temperature > 0.0 {
                        Sample::TopK
                    } else {
                        Sample::Argmax
                    };
                    ops.push(Op::new(&pool, &choose, &buffers, Groups::Fixed([1, 1, 1])));
                    let got = testing::run(&gpu, &ops, Step { seq: 1, start: 0 }, &picked).await;
                    let got = u32::from_le_bytes([got[0], got[1], got[2], got[3]]);
                    assert_eq!(
                        got, expect,
                        "vocab {vocab} setting {si} trial {trial} ties {round}"
                    );
                    draws += 1;
                }
            }
        }
        assert_eq!(draws, 90);
    }
    testing::both!(gpu_picks_the_host_samplers_token);
}
