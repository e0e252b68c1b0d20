//! Weights as plain f32 values: what both backends do with a tensor type they have no kernel
//! for (f32, f16 and bf16 tables; on the GPU, any block format without a WGSL decoder), and the
//! reference values every kernel test compares with.

use candle_core::quantized::GgmlDType;
use half::f16;

use crate::gguf::TensorType;

/// Any tensor type as f32 values; block formats go through candle's dequantization, as rows of
/// `n_in` values.
pub fn widen(ty: TensorType, raw: &[u8], n_in: usize) -> candle_core::Result<Vec<f32>> {
    let Some(dtype) = ty.dtype else {
        let mut out = vec![0f32; raw.len() / ty.type_size * ty.block_size];
        super::iq4::dequantize(ty, raw, &mut out);
        return Ok(out);
    };
    Ok(match dtype {
        GgmlDType::F32 => raw
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        GgmlDType::F16 => raw
            .chunks_exact(2)
            .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        GgmlDType::BF16 => raw
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        dtype => {
            let rows = raw.len() / ty.type_size * ty.block_size / n_in.max(1);
            let q = candle_core::quantized::ggml_file::qtensor_from_ggml(
                dtype,
                raw,
                vec![rows, n_in],
                &candle_core::Device::Cpu,
            )?;
            q.dequantize(&candle_core::Device::Cpu)?
                .flatten_all()?
                .to_vec1::<f32>()?
        }
    })
}

/// `w` (`n` rows of `k`) quantized to `ty` (by candle, or by `iq4` for the IQ4 formats), and the
/// dequantization of those bytes: the weights a kernel reads and the values its reference uses.
#[cfg(test)]
pub(crate) fn quantized(w: Vec<f32>, n: usize, k: usize, ty: TensorType) -> (Vec<u8>, Vec<f32>) {
    use candle_core::{Device, Tensor};
    let bytes = match ty.dtype {
        None => super::iq4::quantize(ty, &w),
        Some(dtype) => candle_core::quantized::QTensor::quantize(
            &Tensor::from_vec(w, (n, k), &Device::Cpu).unwrap(),
            dtype,
        )
        .unwrap()
        .data()
        .unwrap()
        .into_owned(),
    };
    let values = widen(ty, &bytes, k).unwrap();
    (bytes, values)
}
