//! Rotary position embedding, normal and NeoX, from the shared angle table: queries rotated
//! into their own buffer, keys rotated straight into the KV cache with the values beside them.

use super::{with_step, Binding, Kernel};

pub enum Rope {
    Queries,
    /// Keys (rotated) and values into the cache.
    Store,
}

impl Kernel for Rope {
    fn key(&self) -> String {
        self.entry().into()
    }

    fn source(&self) -> String {
        with_step(include_str!("../../../../shaders/rope.wgsl"))
    }

    fn entry(&self) -> &'static str {
        match self {
            Rope::Queries => "rope_q",
            Rope::Store => "store_kv",
        }
    }

    fn bindings(&self) -> &'static [Binding] {
        use Binding::*;
        match self {
            Rope::Queries => &[Read, ReadWrite, Read, Uniform, Uniform],
            Rope::Store => &[Read, ReadWrite, Read, Uniform, Uniform, Read, ReadWrite],
        }
    }

    fn class(&self) -> &'static str {
        "rope"
    }
}

/// The `RopeParams` uniform (`shaders/rope.wgsl`).
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct RopeParams {
    pub heads: u32,
    pub head_dim: u32,
    /// 1: NeoX layout, pairs (j, j + head_dim/2); 0: pairs (2j, 2j+1).
    pub neox: u32,
    /// Positions the cache holds room for.
    pub capacity: u32,
}

impl RopeParams {
    pub fn new(heads: usize, head_dim: usize, neox: bool, capacity: usize) -> Self {
        Self {
            heads: heads as u32,
            head_dim: head_dim as u32,
            neox: neox as u32,
            capacity: capacity as u32,
        }
    }
}

/// The angle table as (cos, sin) pairs for positions 0..capacity.
pub fn table(head_dim: usize, theta: f64, factors: Option<&[f32]>, capacity: usize) -> Vec<f32> {
    let (cos, sin) = crate::engine::rope::tables(head_dim, theta, factors, 0, capacity);
    cos.iter().zip(&sin).flat_map(|(c, s)| [*c, *s]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::gpu::kernels::testing::{self, assert_close, random};
    use crate::engine::gpu::kernels::{
        bytes_f32, f32_bytes, storage, storage_init, uniform, Groups, Op, Pool, Step,
    };
    use candle_core::{Device, Tensor};

    /// Both layouts against candle_nn's rope / rope_i at positions 5.., for queries and for
    /// keys written into the cache (values copied beside them). Tolerance 1e-6 of max(|v|, 1).
    async fn rope_matches_candle() {
        let gpu = testing::gpu().await;
        let pool = Pool::new(&gpu.device);
        let (heads, hd, seq, start, cap) = (3usize, 64usize, 4u32, 5u32, 16usize);
        let n = seq as usize * heads * hd;
        let x = random(3, n, 1.0);
        let v = random(4, n, 1.0);
        let tab = table(hd, 10000.0, None, cap);
        let (cos, sin) =
            crate::engine::rope::tables(hd, 10000.0, None, start as usize, seq as usize);
        let cos = Tensor::from_vec(cos, (seq as usize, hd / 2), &Device::Cpu).unwrap();
        let sin = Tensor::from_vec(sin, (seq as usize, hd / 2), &Device::Cpu).unwrap();
        // (seq, heads, hd) -> (1, heads, seq, hd)
        let xt = Tensor::from_vec(x.clone(), (seq as usize, heads, hd), &Device::Cpu)
            .unwrap()
            .transpose(0, 1)
            .unwrap()
            .contiguous()
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        for neox in [false, true] {
            let r = match neox {
                true => candle_nn::rotary_emb::rope(&xt, &cos, &sin),
                false => candle_nn::rotary_emb::rope_i(&xt, &cos, &sin),
            }
            .unwrap()
            .squeeze(0)
            .unwrap(); // (heads, seq, hd)
            let expect_q = r
                .transpose(0, 1)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            let xb = storage_init(&gpu.device, &f32_bytes(&x), "x");
            let vb = storage_init(&gpu.device, &f32_bytes(&v), "v");
            let tb = storage_init(&gpu.device, &f32_bytes(&tab), "table");
            let (pb, step) = (
                uniform(&gpu.device, &RopeParams::new(heads, hd, neox, cap)),
                uniform(&gpu.device, &Step { seq, start }),
            );
            let q = storage(&gpu.device, (n * 4) as u64, "q");
            let groups = Groups::TokensInZ([(hd as u32 / 2).div_ceil(32), heads as u32]);
            let op = Op::new(&pool, &Rope::Queries, &[&xb, &q, &tb, &pb, &step], groups);
            let got = bytes_f32(&testing::run(&gpu, &[op], seq, &q).await);
            let scale = vec![1f32; n];
            assert_close(
                &got,
                &expect_q,
                &scale,
                1e-6,
                &format!("queries, neox {neox}"),
            );

            let kc = storage(&gpu.device, (heads * cap * hd * 4) as u64, "k cache");
            let vc = storage(&gpu.device, (heads * cap * hd * 4) as u64, "v cache");
            let op = Op::new(
                &pool,
                &Rope::Store,
                &[&xb, &kc, &tb, &pb, &step, &vb, &vc],
                groups,
            );
            let k_got = bytes_f32(&testing::run(&gpu, &[op], seq, &kc).await);
            let v_got = bytes_f32(&testing::run(&gpu, &[], seq, &vc).await);
            let rk = r.flatten_all().unwrap().to_vec1::<f32>().unwrap(); // (heads, seq, hd)
            for h in 0..heads {
                for i in 0..seq as usize {
                    let at = (h * cap + start as usize + i) * hd;
                    let from = (i * heads + h) * hd;
                    let kw = &rk[(h * seq as usize + i) * hd..][..hd];
                    assert_close(
                        &k_got[at..at + hd],
                        kw,
                        &scale[..hd],
                        1e-6,
                        &format!("cached key h{h} t{i}, neox {neox}"),
                    );
                    assert_eq!(
                        &v_got[at..at + hd],
                        &v[from..from + hd],
                        "cached value h{h} t{i}"
                    );
                }
            }
        }
    }
    testing::both!(rope_matches_candle);
}
