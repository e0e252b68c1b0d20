//! Per-layer key/value cache that grows in place and can be cut back to any length: one row per
//! position (`n_kv × head_dim` values), so an append is a copy onto the end.

pub(super) struct LayerCache {
    pub k: Vec<f32>,
    pub v: Vec<f32>,
    /// Values per position.
    width: usize,
}

/// Room is added in steps of this many positions, so appends reallocate once per step, not per
/// token, and never hold much more than the context needs.
const GROW: usize = 256;

impl LayerCache {
    pub fn new(width: usize) -> Self {
        Self {
            k: Vec::new(),
            v: Vec::new(),
            width,
        }
    }

    pub fn len(&self) -> usize {
        self.k.len() / self.width.max(1)
    }

    pub fn truncate(&mut self, len: usize) {
        self.k.truncate(len * self.width);
        self.v.truncate(len * self.width);
    }

    /// Appends rows of keys and values (`width` values per position); at most `max` positions
    /// are ever reserved.
    pub fn append(&mut self, k: &[f32], v: &[f32], max: usize) {
        let need = self.len() + k.len() / self.width.max(1);
        if need * self.width > self.k.capacity() {
            let cap = need.div_ceil(GROW).saturating_mul(GROW).min(max.max(need));
            let more = cap * self.width - self.k.len();
            self.k.reserve_exact(more);
            self.v.reserve_exact(more);
        }
        self.k.extend_from_slice(k);
        self.v.extend_from_slice(v);
    }
}
