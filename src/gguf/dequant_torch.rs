//! De-quantisation of ggml blocks with libtorch operations, on whatever device the blocks are:
//! what a weight kept quantised (the `Quantized` layout of `Linear`) does at each forward. The
//! same float32 operations in the same order as `dequant` (and ggml), so the result is the same
//! bit for bit.

use anyhow::{bail, Result};
use tch::{Kind, Tensor};

use super::types::GgmlType;

/// Bytes `at..at + len` of each block: (blocks, len) uint8.
fn bytes(b: &Tensor, at: i64, len: i64) -> Result<Tensor> {
    Ok(b.f_narrow(1, at, len)?)
}

/// The f16 at byte `at` of each block, as float32: (blocks, 1).
fn half(b: &Tensor, at: i64) -> Result<Tensor> {
    Ok(bytes(b, at, 2)?.f_contiguous()?.f_view_dtype(Kind::Half)?.f_to_kind(Kind::Float)?)
}

/// `t >> shifts` along a new axis: `t` (…, 1, n) against shifts shaped (1…, k, 1).
fn shifted(t: &Tensor, shifts: &[i64], shape: &[i64]) -> Result<Tensor> {
    let s = Tensor::f_from_slice(shifts)?.f_to_kind(Kind::Uint8)?.f_to_device(t.device())?.f_reshape(shape)?;
    Ok(t.f_bitwise_right_shift(&s)?)
}

fn float(t: &Tensor) -> Result<Tensor> {
    Ok(t.f_to_kind(Kind::Float)?)
}

/// Low then high nibbles of 16 bytes: (blocks, 32) uint8.
fn nibbles(qs: &Tensor) -> Result<Tensor> {
    Ok(Tensor::f_cat(&[qs.f_bitwise_and(0x0F)?, qs.f_bitwise_right_shift_tensor_scalar(4)?], 1)?)
}

/// The 32 fifth bits of a block's 4-byte little-endian mask: (blocks, 32) uint8 of 0 or 1.
fn fifth_bits(qh: &Tensor, n: i64) -> Result<Tensor> {
    Ok(shifted(&qh.f_reshape([n, 4, 1])?, &[0, 1, 2, 3, 4, 5, 6, 7], &[1, 1, 8])?.f_bitwise_and(1)?.f_reshape([n, 32])?)
}

/// The six-bit scales and mins of Q4_K and Q5_K: two (blocks, 8) uint8.
fn scale_min_k4(packed: &Tensor, n: i64) -> Result<(Tensor, Tensor)> {
    let p = packed.f_reshape([n, 3, 4])?;
    let (d, m, md) = (p.f_select(1, 0)?, p.f_select(1, 1)?, p.f_select(1, 2)?);
    let sc = Tensor::f_cat(&[d.f_bitwise_and(0x3F)?, md.f_bitwise_and(0x0F)?.f_bitwise_or_tensor(&d.f_bitwise_right_shift_tensor_scalar(2)?.f_bitwise_and(0x30)?)?], 1)?;
    let mn = Tensor::f_cat(&[m.f_bitwise_and(0x3F)?, md.f_bitwise_right_shift_tensor_scalar(4)?.f_bitwise_or_tensor(&m.f_bitwise_right_shift_tensor_scalar(2)?.f_bitwise_and(0x30)?)?], 1)?;
    Ok((sc, mn))
}

/// The values of `blocks` (uint8, whole blocks of `ty` in row-major order) as a float32 tensor of
/// `shape`.
pub fn dequantize(ty: GgmlType, blocks: &Tensor, shape: &[i64]) -> Result<Tensor> {
    let size = ty.type_size() as i64;
    let b = blocks.f_reshape([-1, size])?;
    let n = b.size()[0];
    let out = match ty {
        GgmlType::Q8_0 => float(&bytes(&b, 2, 32)?.f_contiguous()?.f_view_dtype(Kind::Int8)?)?.f_mul(&half(&b, 0)?)?,
        GgmlType::Q4_0 => half(&b, 0)?.f_mul(&float(&nibbles(&bytes(&b, 2, 16)?)?.f_to_kind(Kind::Int16)?.f_sub_scalar(8)?)?)?,
        GgmlType::Q4_1 => half(&b, 0)?.f_mul(&float(&nibbles(&bytes(&b, 4, 16)?)?)?)?.f_add(&half(&b, 2)?)?,
        GgmlType::Q5_0 => {
            let q = nibbles(&bytes(&b, 6, 16)?)?.f_bitwise_or_tensor(&fifth_bits(&bytes(&b, 2, 4)?, n)?.f_bitwise_left_shift_tensor_scalar(4)?)?;
            half(&b, 0)?.f_mul(&float(&q.f_to_kind(Kind::Int16)?.f_sub_scalar(16)?)?)?
        }
        GgmlType::Q5_1 => {
            let q = nibbles(&bytes(&b, 8, 16)?)?.f_bitwise_or_tensor(&fifth_bits(&bytes(&b, 4, 4)?, n)?.f_bitwise_left_shift_tensor_scalar(4)?)?;
            half(&b, 0)?.f_mul(&float(&q)?)?.f_add(&half(&b, 2)?)?
        }
        GgmlType::Q2K => {
            let scales = bytes(&b, 0, 16)?;
            let dl = half(&b, 80)?.f_mul(&float(&scales.f_bitwise_and(0x0F)?)?)?.f_reshape([n, 16, 1])?;
            let ml = half(&b, 82)?.f_mul(&float(&scales.f_bitwise_right_shift_tensor_scalar(4)?)?)?.f_reshape([n, 16, 1])?;
            let q = shifted(&bytes(&b, 16, 64)?.f_reshape([n, 2, 1, 32])?, &[0, 2, 4, 6], &[1, 1, 4, 1])?.f_bitwise_and(3)?;
            dl.f_mul(&float(&q.f_reshape([n, 16, 16])?)?)?.f_sub(&ml)?
        }
        GgmlType::Q3K => {
            let packed = bytes(&b, 96, 12)?;
            let low = shifted(&bytes(&packed, 0, 8)?.f_reshape([n, 1, 8])?, &[0, 4], &[1, 2, 1])?.f_reshape([n, 16])?;
            let high = shifted(&bytes(&packed, 8, 4)?.f_reshape([n, 1, 4])?, &[0, 2, 4, 6], &[1, 4, 1])?.f_reshape([n, 16])?;
            let sc = low.f_bitwise_and(0x0F)?.f_bitwise_or_tensor(&high.f_bitwise_and(3)?.f_bitwise_left_shift_tensor_scalar(4)?)?;
            let dl = half(&b, 108)?.f_mul(&float(&sc.f_to_kind(Kind::Int16)?.f_sub_scalar(32)?)?)?.f_reshape([n, 16, 1])?;
            let ql = shifted(&bytes(&b, 32, 64)?.f_reshape([n, 2, 1, 32])?, &[0, 2, 4, 6], &[1, 1, 4, 1])?.f_reshape([n, 16, 16])?.f_bitwise_and(3)?;
            let qh = shifted(&bytes(&b, 0, 32)?.f_reshape([n, 1, 1, 32])?, &[0, 1, 2, 3, 4, 5, 6, 7], &[1, 1, 8, 1])?.f_reshape([n, 16, 16])?.f_bitwise_and(1)?.f_bitwise_xor(1)?;
            let q = ql.f_to_kind(Kind::Int16)?.f_sub(&qh.f_to_kind(Kind::Int16)?.f_mul_scalar(4)?)?;
            dl.f_mul(&float(&q)?)?
        }
        GgmlType::Q4K | GgmlType::Q5K => {
            let (sc, mn) = scale_min_k4(&bytes(&b, 4, 12)?, n)?;
            let d = half(&b, 0)?.f_mul(&float(&sc)?)?.f_reshape([n, 8, 1])?;
            let dm = half(&b, 2)?.f_mul(&float(&mn)?)?.f_reshape([n, 8, 1])?;
            let qs_at = if ty == GgmlType::Q4K { 16 } else { 48 };
            let mut q = shifted(&bytes(&b, qs_at, 128)?.f_reshape([n, 4, 1, 32])?, &[0, 4], &[1, 1, 2, 1])?.f_bitwise_and(0x0F)?.f_reshape([n, 8, 32])?;
            if ty == GgmlType::Q5K {
                let qh = shifted(&bytes(&b, 16, 32)?.f_reshape([n, 1, 1, 32])?, &[0, 1, 2, 3, 4, 5, 6, 7], &[1, 1, 8, 1])?.f_bitwise_and(1)?.f_reshape([n, 8, 32])?;
                q = q.f_bitwise_or_tensor(&qh.f_bitwise_left_shift_tensor_scalar(4)?)?;
            }
            d.f_mul(&float(&q)?)?.f_sub(&dm)?
        }
        GgmlType::Q6K => {
            let scales = float(&bytes(&b, 192, 16)?.f_contiguous()?.f_view_dtype(Kind::Int8)?)?;
            let d = half(&b, 208)?.f_mul(&scales)?.f_reshape([n, 16, 1])?;
            let ql = shifted(&bytes(&b, 0, 128)?.f_reshape([n, 2, 1, 64])?, &[0, 4], &[1, 1, 2, 1])?.f_bitwise_and(0x0F)?.f_reshape([n, 8, 32])?;
            let qh = shifted(&bytes(&b, 128, 64)?.f_reshape([n, 2, 1, 32])?, &[0, 2, 4, 6], &[1, 1, 4, 1])?.f_bitwise_and(3)?.f_reshape([n, 8, 32])?;
            let q = ql.f_bitwise_or_tensor(&qh.f_bitwise_left_shift_tensor_scalar(4)?)?.f_to_kind(Kind::Int16)?.f_sub_scalar(32)?;
            d.f_mul(&float(&q.f_reshape([n, 16, 16])?)?)?
        }
        GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => bail!("{} is not a block type", ty.name()),
    };
    debug_assert_eq!(out.numel() as i64, n * ty.block_size() as i64);
    Ok(out.f_reshape(shape)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::dequant;
    use half::f16;

    #[test]
    fn equals_the_scalar_dequantisation_bit_for_bit() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        };
        let scales: [(GgmlType, &[usize]); 10] = [
            (GgmlType::Q4_0, &[0]), (GgmlType::Q4_1, &[0, 2]), (GgmlType::Q5_0, &[0]), (GgmlType::Q5_1, &[0, 2]), (GgmlType::Q8_0, &[0]),
            (GgmlType::Q2K, &[80, 82]), (GgmlType::Q3K, &[108]), (GgmlType::Q4K, &[0, 2]), (GgmlType::Q5K, &[0, 2]), (GgmlType::Q6K, &[208]),
        ];
        for (ty, at) in scales {
            let blocks = 6;
            let mut raw: Vec<u8> = (0..blocks * ty.type_size()).map(|_| next()).collect();
            for blk in raw.chunks_exact_mut(ty.type_size()) {
                for a in at {
                    let v = f16::from_f32((next() as f32 - 128.0) / 1000.0).to_le_bytes();
                    blk[*a..*a + 2].copy_from_slice(&v);
                }
            }
            let mut want = vec![0f32; blocks * ty.block_size()];
            dequant::dequantize(ty, &raw, &mut want).unwrap();
            let got = dequantize(ty, &Tensor::from_slice(&raw), &[want.len() as i64]).unwrap();
            let got = Vec::<f32>::try_from(&got).unwrap();
            let same = got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "{} differs", ty.name());
        }
    }
}
