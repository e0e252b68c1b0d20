//! Weights on the GPU: each block format repacked at upload into 32-bit quant words and a
//! separate scale array (one table of formats, as in candle's `k_quants.rs`), streamed from
//! the chunk store a piece at a time, and split by rows where a matrix outgrows one binding.

use super::kernels::{storage, words_bytes};
use super::{Gpu, GpuError};
use crate::engine::dense::widen;
use crate::engine::EngineError;
use crate::gguf::{GgufError, TensorType};
use crate::store::ChunkStore;

/// How a matrix sits in GPU memory; each has a `shaders/quant_<name>.wgsl`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q2K,
    Q3K,
    Q4K,
    Q5K,
    Q6K,
    Iq4Nl,
    Iq4Xs,
    Bf16,
    /// Any other type, widened to f32 at upload.
    Dense,
}

impl Format {
    pub fn of(ty: TensorType) -> Self {
        match ty {
            TensorType::Q4_0 => Format::Q4_0,
            TensorType::Q4_1 => Format::Q4_1,
            TensorType::Q5_0 => Format::Q5_0,
            TensorType::Q5_1 => Format::Q5_1,
            TensorType::Q8_0 => Format::Q8_0,
            TensorType::Q2_K => Format::Q2K,
            TensorType::Q3_K => Format::Q3K,
            TensorType::Q4_K => Format::Q4K,
            TensorType::Q5_K => Format::Q5K,
            TensorType::Q6_K => Format::Q6K,
            TensorType::IQ4_NL => Format::Iq4Nl,
            TensorType::IQ4_XS => Format::Iq4Xs,
            TensorType::BF16 => Format::Bf16,
            _ => Format::Dense,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Q4_0 => "q4_0",
            Format::Q4_1 => "q4_1",
            Format::Q5_0 => "q5_0",
            Format::Q5_1 => "q5_1",
            Format::Q8_0 => "q8_0",
            Format::Q2K => "q2_k",
            Format::Q3K => "q3_k",
            Format::Q4K => "q4_k",
            Format::Q5K => "q5_k",
            Format::Q6K => "q6_k",
            Format::Iq4Nl => "iq4_nl",
            Format::Iq4Xs => "iq4_xs",
            Format::Bf16 => "bf16",
            Format::Dense => "dense",
        }
    }

    /// The WGSL that defines `weight4` for this format: the shared prelude, the format's file,
    /// and the helpers it shares with other formats.
    pub fn shader(self) -> &'static str {
        macro_rules! decoder {
            ($($file:literal),+) => {
                concat!(
                    include_str!("../../../shaders/quant_prelude.wgsl"),
                    $(include_str!(concat!("../../../shaders/", $file))),+
                )
            };
        }
        match self {
            Format::Q4_0 => decoder!("quant_q4_0.wgsl"),
            Format::Q4_1 => decoder!("quant_q4_1.wgsl"),
            Format::Q5_0 => decoder!("quant_q5_0.wgsl"),
            Format::Q5_1 => decoder!("quant_q5_1.wgsl"),
            Format::Q8_0 => decoder!("quant_q8_0.wgsl"),
            Format::Q2K => decoder!("quant_q2_k.wgsl"),
            Format::Q3K => decoder!("quant_q3_k.wgsl"),
            Format::Q4K => decoder!("quant_q4_k.wgsl", "k_scales.wgsl"),
            Format::Q5K => decoder!("quant_q5_k.wgsl", "k_scales.wgsl"),
            Format::Q6K => decoder!("quant_q6_k.wgsl"),
            Format::Iq4Nl => decoder!("quant_iq4_nl.wgsl", "iq4_levels.wgsl"),
            Format::Iq4Xs => decoder!("quant_iq4_xs.wgsl", "iq4_levels.wgsl"),
            Format::Bf16 => decoder!("quant_bf16.wgsl"),
            Format::Dense => decoder!("quant_dense.wgsl"),
        }
    }

    /// The format's decoder with every name it declares suffixed by `_<name>`, so several
    /// formats' decoders live in one module (a fused matrix's slots); without the prelude.
    pub fn renamed_decoder(self) -> String {
        let prelude = include_str!("../../../shaders/quant_prelude.wgsl");
        let body = &self.shader()[prelude.len()..];
        let declared: Vec<&str> = body
            .lines()
            .filter_map(|l| {
                let l = l
                    .strip_prefix("fn ")
                    .or_else(|| l.strip_prefix("var<private> "))?;
                l.split(|c: char| !(c.is_alphanumeric() || c == '_')).next()
            })
            .collect();
        let suffix = format!("_{}", self.name());
        let mut out = String::with_capacity(body.len() + 256);
        let mut word = String::new();
        for c in body.chars().chain(std::iter::once('\n')) {
            if c.is_alphanumeric() || c == '_' {
                word.push(c);
                continue;
            }
            if !word.is_empty() {
                out.push_str(&word);
                if declared.contains(&word.as_str()) {
                    out.push_str(&suffix);
                }
                word.clear();
            }
            out.push(c);
        }
        out.pop();
        out
    }

    /// Values per block and quant words per block (dense: one value, one word).
    fn block(self) -> (usize, usize) {
        match self {
            Format::Q4_0 | Format::Q4_1 => (32, 4),
            Format::Q5_0 | Format::Q5_1 => (32, 5),
            Format::Q8_0 => (32, 8),
            Format::Q2K => (256, 16),
            Format::Q3K => (256, 24),
            Format::Q4K => (256, 32),
            Format::Q5K => (256, 40),
            Format::Q6K => (256, 48),
            Format::Iq4Nl => (32, 4),
            Format::Iq4Xs => (256, 32),
            Format::Bf16 => (2, 1),
            Format::Dense => (1, 1),
        }
    }

    /// Scale words for `blocks` blocks: f16 pairs for the 32-value formats (one block's `d` and
    /// `m` for those that have an offset).
    fn scale_words(self, blocks: usize) -> usize {
        match self {
            Format::Q4_0 | Format::Q5_0 | Format::Q8_0 | Format::Iq4Nl => blocks.div_ceil(2),
            Format::Q4_1 | Format::Q5_1 => blocks,
            Format::Iq4Xs => blocks * 2,
            Format::Q4K | Format::Q5K => blocks * 4,
            Format::Q2K | Format::Q3K | Format::Q6K => blocks * 5,
            Format::Bf16 | Format::Dense => 1,
        }
    }
}

/// Encoded blocks (`ty`'s bytes, whole blocks) → (quant words, scale words).
pub fn repack(
    ty: TensorType,
    raw: &[u8],
    n_in: usize,
) -> Result<(Vec<u32>, Vec<u32>), EngineError> {
    let format = Format::of(ty);
    let word = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let half = |b: &[u8]| u16::from_le_bytes([b[0], b[1]]) as u32;
    let blocks = raw.chunks_exact(ty.type_size);
    let mut quants = Vec::with_capacity(blocks.len() * format.block().1);
    let mut halves = Vec::new();
    let mut scales = Vec::new();
    match format {
        Format::Q4_0 | Format::Q8_0 | Format::Iq4Nl => {
            for b in blocks {
                halves.push(half(&b[0..2]));
                quants.extend(b[2..].chunks_exact(4).map(word));
            }
        }
        Format::Q5_0 => {
            for b in blocks {
                halves.push(half(&b[0..2]));
                quants.extend(b[6..22].chunks_exact(4).map(word));
                quants.push(word(&b[2..6]));
            }
        }
        Format::Q4_1 => {
            for b in blocks {
                scales.push(half(&b[0..2]) | half(&b[2..4]) << 16);
                quants.extend(b[4..20].chunks_exact(4).map(word));
            }
        }
        Format::Q5_1 => {
            for b in blocks {
                scales.push(half(&b[0..2]) | half(&b[2..4]) << 16);
                quants.extend(b[8..24].chunks_exact(4).map(word));
                quants.push(word(&b[4..8]));
            }
        }
        Format::Q2K => {
            for b in blocks {
                quants.extend(b[16..80].chunks_exact(4).map(word));
                scales.push(word(&b[80..84]));
                scales.extend(b[0..16].chunks_exact(4).map(word));
            }
        }
        Format::Q3K => {
            for b in blocks {
                quants.extend(b[32..96].chunks_exact(4).map(word));
                quants.extend(b[0..32].chunks_exact(4).map(word));
                scales.push(half(&b[108..110]));
                let bytes = q3_k_scales(&b[96..108]).map(|s| (s - 32) as u8);
                scales.extend(bytes.chunks_exact(4).map(word));
            }
        }
        Format::Iq4Xs => {
            for b in blocks {
                quants.extend(b[8..136].chunks_exact(4).map(word));
                scales.push(word(&b[0..4]));
                scales.push(word(&b[4..8]));
            }
        }
        Format::Bf16 => {
            quants.extend(raw.chunks_exact(4).map(word));
            scales.push(0);
        }
        Format::Q4K => {
            for b in blocks {
                quants.extend(b[16..144].chunks_exact(4).map(word));
                scales.push(word(&b[0..4]));
                scales.extend(b[4..16].chunks_exact(4).map(word));
            }
        }
        Format::Q5K => {
            for b in blocks {
                quants.extend(b[48..176].chunks_exact(4).map(word));
                quants.extend(b[16..48].chunks_exact(4).map(word));
                scales.push(word(&b[0..4]));
                scales.extend(b[4..16].chunks_exact(4).map(word));
            }
        }
        Format::Q6K => {
            for b in blocks {
                quants.extend(b[0..192].chunks_exact(4).map(word));
                scales.push(half(&b[208..210]));
                scales.extend(b[192..208].chunks_exact(4).map(word));
            }
        }
        Format::Dense => {
            let values = widen(ty, raw, n_in)?;
            quants.extend(values.iter().map(|v| v.to_bits()));
            scales.push(0);
        }
    }
    for pair in halves.chunks(2) {
        scales.push(pair[0] | pair.get(1).map_or(0, |h| h << 16));
    }
    Ok((quants, scales))
}

/// Q3_K's 16 sub-block scales (6 bits, biased by 32) from their 12-byte packing: low nibbles in
/// bytes 0..8, the high bit pairs in bytes 8..12, as ggml's `dequantize_row_q3_K` reads them.
fn q3_k_scales(packed: &[u8]) -> [i32; 16] {
    std::array::from_fn(|i| {
        let low = (packed[i % 8] >> (4 * (i / 8))) & 15;
        let high = (packed[8 + i % 4] >> (2 * (i / 4))) & 3;
        (low | high << 4) as i32
    })
}

/// Rows `row0 .. row0 + rows` of a matrix, in buffers of their own.
pub struct Part {
    pub row0: usize,
    pub rows: usize,
    pub quants: wgpu::Buffer,
    pub scales: wgpu::Buffer,
}

/// Where one source matrix sits in a matrix of several (Q, K and V; gate and up) fused into
/// one pair of buffers, so one dispatch computes them all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Slot {
    pub format: Format,
    /// Its first row among the fused matrix's rows.
    pub start: usize,
    /// The row its data starts at in the shared buffers, counted in its own format's rows.
    pub base: usize,
}

/// A weight matrix of `n_out` rows of `n_in` values on the GPU.
pub struct GpuMatrix {
    pub format: Format,
    pub n_in: usize,
    pub n_out: usize,
    pub parts: Vec<Part>,
    /// One slot for a matrix of one source; several for a fused one.
    pub slots: Vec<Slot>,
}

/// Source bytes read and repacked at a time: the wasm heap holds one piece, never a matrix.
const PIECE_BYTES: usize = 4 << 20;

impl GpuMatrix {
    /// Rows per part so that no part's quant buffer exceeds `max_binding` bytes (an even count,
    /// so f16 scale pairs never straddle two parts).
    pub fn rows_per_part(format: Format, n_in: usize, n_out: usize, max_binding: u64) -> usize {
        let fit = (max_binding / Self::row_bytes(format, n_in).max(1)) as usize;
        if fit >= n_out {
            n_out
        } else {
            (fit & !1).max(2)
        }
    }

    /// Quant bytes of one row on the GPU.
    pub fn row_bytes(format: Format, n_in: usize) -> u64 {
        let (values, words) = format.block();
        (n_in / values * words * 4) as u64
    }

    /// Reads `n_out` rows of `n_in` values of type `ty` from `offset` in `store`, a piece at a time.
    #[allow(clippy::too_many_arguments)]
    pub async fn upload<S: ChunkStore>(
        gpu: &Gpu,
        store: &S,
        offset: u64,
        ty: TensorType,
        n_in: usize,
        n_out: usize,
        on_bytes: &mut dyn FnMut(u64),
    ) -> Result<Self, EngineError> {
        let format = Format::of(ty);
        let (values, words) = format.block();
        let src_row = n_in / ty.block_size * ty.type_size;
        let per_part = Self::rows_per_part(format, n_in, n_out, gpu.caps.max_binding);
        let piece_rows = (PIECE_BYTES / src_row.max(1)).clamp(2, per_part.max(2)) & !1;
        let mut parts = Vec::new();
        let mut raw = Vec::new();
        for row0 in (0..n_out).step_by(per_part) {
            let rows = per_part.min(n_out - row0);
            let blocks = rows * n_in / values;
            let quant_bytes = (blocks * words * 4) as u64;
            if quant_bytes > gpu.caps.max_binding {
                return Err(GpuError::Limits(format!(
                    "one row of {n_in} values needs {quant_bytes} bytes, over the binding limit"
                ))
                .into());
            }
            let quants = storage(&gpu.device, quant_bytes, "weights");
            let scales = storage(
                &gpu.device,
                (format.scale_words(blocks) * 4) as u64,
                "scales",
            );
            let mut at = 0;
            while at < rows {
                let n = piece_rows.min(rows - at);
                raw.resize(n * src_row, 0);
                store
                    .read_at(offset + ((row0 + at) * src_row) as u64, &mut raw)
                    .await
                    .map_err(GgufError::from)?;
                let (q, s) = repack(ty, &raw, n_in)?;
                let first_block = at * n_in / values;
                gpu.queue
                    .write_buffer(&quants, (first_block * words * 4) as u64, &words_bytes(&q));
                let scale_at = match format {
                    Format::Dense | Format::Bf16 => 0,
                    _ => format.scale_words(first_block) * 4,
                };
                gpu.queue
                    .write_buffer(&scales, scale_at as u64, &words_bytes(&s));
                on_bytes(raw.len() as u64);
                at += n;
            }
            parts.push(Part {
                row0,
                rows,
                quants,
                scales,
            });
        }
        gpu.check()?;
        Ok(Self {
            format,
            n_in,
            n_out,
            parts,
            slots: vec![Slot {
                format,
                start: 0,
                base: 0,
            }],
        })
    }

    /// `sources` (of one width, each in one part) as one matrix of their rows in order, copied
    /// on the GPU into one pair of buffers; None where they cannot share one binding.
    pub fn fuse(gpu: &Gpu, sources: &[&GpuMatrix]) -> Option<GpuMatrix> {
        let n_in = sources.first()?.n_in;
        if sources.iter().any(|m| m.n_in != n_in || m.parts.len() != 1) {
            return None;
        }
        let (mut words, mut scale_words) = (0usize, 0usize);
        let mut placed = Vec::new();
        for m in sources {
            let f = m.format;
            let (values, per_block) = f.block();
            let blocks = n_in / values;
            let row_words = blocks * per_block;
            // The first row whose quant and scale words both start past what is placed, with
            // f16 scale pairs starting on a word.
            let mut base = words.div_ceil(row_words.max(1));
            let dense = matches!(f, Format::Dense | Format::Bf16);
            let scale_at = loop {
                let b0 = base * blocks;
                let pairs = !dense && f.scale_words(2) == 1;
                let at = if dense {
                    scale_words
                } else {
                    f.scale_words(b0)
                };
                if (pairs && b0 % 2 == 1) || at < scale_words {
                    base += 1;
                    continue;
                }
                break at;
            };
            let quant_at = base * row_words;
            words = quant_at + m.n_out * row_words;
            scale_words = scale_at + (m.parts[0].scales.size() / 4) as usize;
            placed.push((quant_at, scale_at));
        }
        if (words * 4) as u64 > gpu.caps.max_binding {
            return None;
        }
        let quants = storage(&gpu.device, (words * 4) as u64, "fused weights");
        let scales = storage(&gpu.device, (scale_words * 4) as u64, "fused scales");
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        let mut slots = Vec::new();
        let mut row = 0;
        for (m, (quant_at, scale_at)) in sources.iter().zip(&placed) {
            let p = &m.parts[0];
            enc.copy_buffer_to_buffer(
                &p.quants,
                0,
                &quants,
                (quant_at * 4) as u64,
                p.quants.size(),
            );
            enc.copy_buffer_to_buffer(
                &p.scales,
                0,
                &scales,
                (scale_at * 4) as u64,
                p.scales.size(),
            );
            let (values, per_block) = m.format.block();
            slots.push(Slot {
                format: m.format,
                start: row,
                base: quant_at / (n_in / values * per_block).max(1),
            });
            row += m.n_out;
        }
        gpu.queue.submit([enc.finish()]);
        Some(GpuMatrix {
            format: sources[0].format,
            n_in,
            n_out: row,
            parts: vec![Part {
                row0: 0,
                rows: row,
                quants,
                scales,
            }],
            slots,
        })
    }

    /// A matrix from encoded bytes already in memory (kernel tests, the bandwidth probe).
    pub async fn from_bytes(
        gpu: &Gpu,
        ty: TensorType,
        raw: &[u8],
        n_in: usize,
        n_out: usize,
    ) -> Result<Self, EngineError> {
        let store = crate::store::MemoryStore::from_bytes(raw, 1 << 20);
        Self::upload(gpu, &store, 0, ty, n_in, n_out, &mut |_| {}).await
    }

    /// Quant and scale bytes on the GPU.
    pub fn bytes(&self) -> u64 {
        self.parts
            .iter()
            .map(|p| p.quants.size() + p.scales.size())
            .sum()
    }
}
