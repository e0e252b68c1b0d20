//! The one table of GGUF tensor types: id, name, block geometry and candle's dtype (none for
//! the formats candle does not have, which this crate decodes itself).

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
    /// candle's type; `None` for IQ4_NL and IQ4_XS, decoded by `engine::iq4`.
    pub dtype: Option<GgmlDType>,
}

macro_rules! types {
    ($($konst:ident = $id:literal, $name:literal, $block:literal, $size:literal, $dtype:expr;)*) => {
        impl TensorType {
            $(pub const $konst: TensorType = TensorType {
                id: $id, name: $name, block_size: $block, type_size: $size, dtype: $dtype,
            };)*
            const ALL: &'static [TensorType] = &[$(TensorType::$konst),*];
        }
    };
}

types! {
    F32 = 0, "F32", 1, 4, Some(GgmlDType::F32);
    F16 = 1, "F16", 1, 2, Some(GgmlDType::F16);
    Q4_0 = 2, "Q4_0", 32, 18, Some(GgmlDType::Q4_0);
    Q4_1 = 3, "Q4_1", 32, 20, Some(GgmlDType::Q4_1);
    Q5_0 = 6, "Q5_0", 32, 22, Some(GgmlDType::Q5_0);
    Q5_1 = 7, "Q5_1", 32, 24, Some(GgmlDType::Q5_1);
    Q8_0 = 8, "Q8_0", 32, 34, Some(GgmlDType::Q8_0);
    Q2_K = 10, "Q2_K", 256, 84, Some(GgmlDType::Q2K);
    Q3_K = 11, "Q3_K", 256, 110, Some(GgmlDType::Q3K);
    Q4_K = 12, "Q4_K", 256, 144, Some(GgmlDType::Q4K);
    Q5_K = 13, "Q5_K", 256, 176, Some(GgmlDType::Q5K);
    Q6_K = 14, "Q6_K", 256, 210, Some(GgmlDType::Q6K);
    IQ4_NL = 20, "IQ4_NL", 32, 18, None;
    IQ4_XS = 23, "IQ4_XS", 256, 136, None;
    BF16 = 30, "BF16", 1, 2, Some(GgmlDType::BF16);
}

impl TensorType {
    /// The loadable type with this GGUF id.
    pub fn from_id(id: u32) -> Option<TensorType> {
        Self::ALL.iter().copied().find(|t| t.id == id)
    }

    /// The loadable type named `name` as GGUF tools spell it (`Q4_0`, `q4_0`).
    pub fn from_name(name: &str) -> Option<TensorType> {
        Self::ALL
            .iter()
            .copied()
            .find(|t| t.name.eq_ignore_ascii_case(name))
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
        21 => "IQ3_S",
        22 => "IQ2_S",
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
