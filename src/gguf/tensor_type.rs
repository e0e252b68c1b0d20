//! The one table of GGUF tensor types: id, name, block geometry and candle's dtype.

use candle_core::quantized::GgmlDType;

/// A GGUF tensor type this crate can load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TensorType {
    pub id: u32,
    pub name: &'static str,
    /// Elements per block.
    pub block_size: usize,
    /// Bytes per block.
    pub type_size: usize,
    pub dtype: GgmlDType,
}

macro_rules! types {
    ($($konst:ident = $id:literal, $name:literal, $block:literal, $size:literal, $dtype:ident;)*) => {
        impl TensorType {
            $(pub const $konst: TensorType = TensorType {
                id: $id, name: $name, block_size: $block, type_size: $size, dtype: GgmlDType::$dtype,
            };)*
            const ALL: &'static [TensorType] = &[$(TensorType::$konst),*];
        }
    };
}

types! {
    F32 = 0, "F32", 1, 4, F32;
    F16 = 1, "F16", 1, 2, F16;
    Q4_0 = 2, "Q4_0", 32, 18, Q4_0;
    Q4_1 = 3, "Q4_1", 32, 20, Q4_1;
    Q5_0 = 6, "Q5_0", 32, 22, Q5_0;
    Q5_1 = 7, "Q5_1", 32, 24, Q5_1;
    Q8_0 = 8, "Q8_0", 32, 34, Q8_0;
    Q2_K = 10, "Q2_K", 256, 84, Q2K;
    Q3_K = 11, "Q3_K", 256, 110, Q3K;
    Q4_K = 12, "Q4_K", 256, 144, Q4K;
    Q5_K = 13, "Q5_K", 256, 176, Q5K;
    Q6_K = 14, "Q6_K", 256, 210, Q6K;
    BF16 = 30, "BF16", 1, 2, BF16;
}

impl TensorType {
    /// The loadable type with this GGUF id.
    pub fn from_id(id: u32) -> Option<TensorType> {
        Self::ALL.iter().copied().find(|t| t.id == id)
    }

    /// Bytes needed for `elements` values, or None when they do not fill whole blocks.
    pub fn byte_size(&self, elements: u64) -> Option<u64> {
        if !elements.is_multiple_of(self.block_size as u64) {
            return None;
        }
        (elements / self.block_size as u64).checked_mul(self.type_size as u64)
    }
}

/// Name of a GGUF tensor type id we cannot load, for error messages.
pub fn unsupported_type_name(id: u32) -> &'static str {
    match id {
        9 => "Q8_1",
        15 => "Q8_K",
        16 => "IQ2_XXS",
        17 => "IQ2_XS",
        18 => "IQ3_XXS",
        19 => "IQ1_S",
        20 => "IQ4_NL",
        21 => "IQ3_S",
        22 => "IQ2_S",
        23 => "IQ4_XS",
        24 => "I8",
        25 => "I16",
        26 => "I32",
        27 => "I64",
        28 => "F64",
        29 => "IQ1_M",
        34 => "TQ1_0",
        35 => "TQ2_0",
        39 => "MXFP4",
        _ => "unknown",
    }
}
