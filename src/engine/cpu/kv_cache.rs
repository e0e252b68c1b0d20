//! Per-layer key/value cache that grows in place and can be cut back to any length.

use candle_core::{DType, Device, Result, Tensor};

pub(super) struct LayerCache {
    k: Option<Tensor>,
    v: Option<Tensor>,
    len: usize,
}

/// Room is added in steps of this many positions, so appends copy once per step, not per token.
const GROW: usize = 256;

impl LayerCache {
    pub fn new() -> Self {
        Self {
            k: None,
            v: None,
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Appends `k`, `v` of shape (kv_heads, seq, head_dim); returns views of everything cached.
    pub fn append(&mut self, k: &Tensor, v: &Tensor, max: usize) -> Result<(Tensor, Tensor)> {
        let (heads, seq, dim) = k.dims3()?;
        let need = self.len + seq;
        let cap = self.k.as_ref().map_or(0, |t| t.dim(1).unwrap_or(0));
        if need > cap {
            let new_cap = need.div_ceil(GROW).saturating_mul(GROW).min(max.max(need));
            let grow = |old: &Option<Tensor>| -> Result<Tensor> {
                let t = Tensor::zeros((heads, new_cap, dim), DType::F32, &Device::Cpu)?;
                if let Some(old) = old {
                    if self.len > 0 {
                        t.slice_set(&old.narrow(1, 0, self.len)?.contiguous()?, 1, 0)?;
                    }
                }
                Ok(t)
            };
            self.k = Some(grow(&self.k)?);
            self.v = Some(grow(&self.v)?);
        }
        let (kc, vc) = (
            self.k.as_ref().expect("allocated above"),
            self.v.as_ref().expect("allocated above"),
        );
        kc.slice_set(&k.contiguous()?, 1, self.len)?;
        vc.slice_set(&v.contiguous()?, 1, self.len)?;
        self.len = need;
        Ok((kc.narrow(1, 0, need)?, vc.narrow(1, 0, need)?))
    }
}
