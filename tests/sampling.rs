//! The sampler on hand-made logits: each filter does what its name says.

use candlelight::engine::{Sampler, SamplingParams};

fn draw_many(params: SamplingParams, logits: &[f32], n: usize) -> Vec<usize> {
    let mut s = Sampler::new(params).unwrap();
    let mut counts = vec![0; logits.len()];
    for _ in 0..n {
        counts[s.sample(&mut logits.to_vec(), &[]) as usize] += 1;
    }
    counts
}

fn free(seed: u64) -> SamplingParams {
    SamplingParams {
        temperature: 1.0,
        top_k: 0,
        top_p: 1.0,
        min_p: 0.0,
        seed,
        ..SamplingParams::default()
    }
}

#[test]
fn greedy_takes_the_largest_and_the_first_of_ties() {
    let mut s = Sampler::new(SamplingParams::greedy()).unwrap();
    assert_eq!(s.sample(&mut [0.1, 3.0, -1.0, 3.0], &[]), 1);
}

#[test]
fn temperature_one_follows_softmax() {
    let logits = [0.0f32, (2.0f32).ln(), (7.0f32).ln()]; // probabilities 0.1, 0.2, 0.7
    let c = draw_many(free(1), &logits, 20_000);
    let p: Vec<f64> = c.iter().map(|&x| x as f64 / 20_000.0).collect();
    for (got, want) in p.iter().zip([0.1, 0.2, 0.7]) {
        assert!((got - want).abs() < 0.02, "{p:?}");
    }
}

#[test]
fn top_k_top_p_and_min_p_cut_the_tail() {
    let logits = [4.0f32, 3.0, 2.0, 1.0, 0.0];
    let c = draw_many(
        SamplingParams {
            top_k: 2,
            ..free(2)
        },
        &logits,
        5000,
    );
    assert!(
        c[2..].iter().all(|&x| x == 0) && c[0] > 0 && c[1] > 0,
        "{c:?}"
    );
    // Probabilities ~0.64, 0.24, 0.09...: top_p 0.8 keeps two.
    let c = draw_many(
        SamplingParams {
            top_p: 0.8,
            ..free(3)
        },
        &logits,
        5000,
    );
    assert!(c[2..].iter().all(|&x| x == 0) && c[1] > 0, "{c:?}");
    // min_p 0.3 keeps tokens with p >= 0.3 p_max: e^-1 = 0.37 passes, e^-2 does not.
    let c = draw_many(
        SamplingParams {
            min_p: 0.3,
            ..free(4)
        },
        &logits,
        5000,
    );
    assert!(c[2..].iter().all(|&x| x == 0) && c[1] > 0, "{c:?}");
}

#[test]
fn low_temperature_sharpens() {
    let logits = [1.0f32, 0.0];
    let hot = draw_many(free(5), &logits, 4000);
    let cold = draw_many(
        SamplingParams {
            temperature: 0.2,
            ..free(5)
        },
        &logits,
        4000,
    );
    assert!(cold[0] > hot[0] && cold[0] > 3900, "{hot:?} {cold:?}");
}

#[test]
fn penalties_push_repeated_tokens_down() {
    let mut s = Sampler::new(SamplingParams {
        repetition_penalty: 2.0,
        ..SamplingParams::greedy()
    })
    .unwrap();
    // Token 0 leads by 1.0 but was just said: 3.0 / 2 = 1.5 < 2.0.
    assert_eq!(s.sample(&mut [3.0, 2.0], &[0]), 1);
    let mut s = Sampler::new(SamplingParams {
        frequency_penalty: 0.4,
        ..SamplingParams::greedy()
    })
    .unwrap();
    assert_eq!(s.sample(&mut [3.0, 2.0], &[0, 0]), 0, "0.8 off still leads");
    assert_eq!(
        s.sample(&mut [3.0, 2.0], &[0, 0, 0]),
        1,
        "1.2 off falls behind"
    );
    let mut s = Sampler::new(SamplingParams {
        presence_penalty: 1.5,
        ..SamplingParams::greedy()
    })
    .unwrap();
    assert_eq!(s.sample(&mut [3.0, 2.0], &[0, 0, 0, 0]), 1);
    assert_eq!(s.sample(&mut [3.0, 2.0], &[1]), 0);
}

#[test]
fn invalid_settings_are_rejected() {
    for p in [
        SamplingParams {
            temperature: -1.0,
            ..SamplingParams::default()
        },
        SamplingParams {
            top_p: 1.5,
            ..SamplingParams::default()
        },
        SamplingParams {
            min_p: -0.1,
            ..SamplingParams::default()
        },
        SamplingParams {
            repetition_penalty: 0.0,
            ..SamplingParams::default()
        },
        SamplingParams {
            presence_penalty: f32::INFINITY,
            ..SamplingParams::default()
        },
    ] {
        assert!(Sampler::new(p.clone()).is_err(), "{p:?}");
    }
}

#[test]
fn top_k_keeps_exactly_the_k_best_of_a_large_vocabulary() {
    // 151936 logits, a clear top 40 at scattered ids: only they are ever drawn.
    let mut logits = vec![0.0f32; 151_936];
    let top: Vec<usize> = (0..40).map(|i| (i * 3797 + 11) % logits.len()).collect();
    for (rank, &id) in top.iter().enumerate() {
        logits[id] = 10.0 - rank as f32 * 0.01;
    }
    let c = draw_many(
        SamplingParams {
            top_k: 40,
            ..free(6)
        },
        &logits,
        4000,
    );
    let drawn: Vec<usize> = c
        .iter()
        .enumerate()
        .filter(|(_, &n)| n > 0)
        .map(|(i, _)| i)
        .collect();
    assert!(
        drawn.iter().all(|i| top.contains(i)),
        "drew outside the top 40"
    );
    assert!(
        drawn.len() > 30,
        "draws spread over the top 40: {}",
        drawn.len()
    );
}
