//! De-quantisation of ggml blocks to float32, bit for bit as ggml's reference `dequantize_row_*`
//! (and the `gguf` package's numpy port): the same float32 operations in the same order, with no
//! fused multiply-add.

use anyhow::{bail, Result};
use half::{bf16, f16};

use super::types::{GgmlType, QK_K};

fn half(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

/// Writes the `out.len()` values that `bytes` (whole blocks of `ty`) hold.
pub fn dequantize(ty: GgmlType, bytes: &[u8], out: &mut [f32]) -> Result<()> {
    let block = ty.block_size();
    let size = ty.type_size();
    if out.len() % block != 0 || bytes.len() != out.len() / block * size {
        bail!("{} bytes do not hold {} {} values", bytes.len(), out.len(), ty.name());
    }
    let blocks = bytes.chunks_exact(size).zip(out.chunks_exact_mut(block));
    match ty {
        GgmlType::F32 => blocks.for_each(|(b, o)| o[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        GgmlType::F16 => blocks.for_each(|(b, o)| o[0] = half(b, 0)),
        GgmlType::BF16 => blocks.for_each(|(b, o)| o[0] = bf16::from_le_bytes([b[0], b[1]]).to_f32()),
        GgmlType::Q4_0 => blocks.for_each(|(b, o)| q4_0(b, o)),
        GgmlType::Q4_1 => blocks.for_each(|(b, o)| q4_1(b, o)),
        GgmlType::Q5_0 => blocks.for_each(|(b, o)| q5_0(b, o)),
        GgmlType::Q5_1 => blocks.for_each(|(b, o)| q5_1(b, o)),
        GgmlType::Q8_0 => blocks.for_each(|(b, o)| q8_0(b, o)),
        GgmlType::Q2K => blocks.for_each(|(b, o)| q2_k(b, o)),
        GgmlType::Q3K => blocks.for_each(|(b, o)| q3_k(b, o)),
        GgmlType::Q4K => blocks.for_each(|(b, o)| q4_k(b, o)),
        GgmlType::Q5K => blocks.for_each(|(b, o)| q5_k(b, o)),
        GgmlType::Q6K => blocks.for_each(|(b, o)| q6_k(b, o)),
    }
    Ok(())
}

/// Block of 32: f16 scale d, then 16 bytes of 4-bit values (low nibbles are elements 0..16,
/// high nibbles 16..32); x = d·(q − 8).
fn q4_0(b: &[u8], o: &mut [f32]) {
    let d = half(b, 0);
    for l in 0..16 {
        o[l] = d * ((b[2 + l] & 0x0F) as i32 - 8) as f32;
        o[l + 16] = d * ((b[2 + l] >> 4) as i32 - 8) as f32;
    }
}

/// d, min m, 4-bit values; x = d·q + m.
fn q4_1(b: &[u8], o: &mut [f32]) {
    let (d, m) = (half(b, 0), half(b, 2));
    for l in 0..16 {
        o[l] = d * (b[4 + l] & 0x0F) as f32 + m;
        o[l + 16] = d * (b[4 + l] >> 4) as f32 + m;
    }
}

/// The fifth bit of element `i` from a block's 32-bit high-bit mask.
fn high_bit(qh: u32, i: usize) -> u8 {
    ((qh >> i) & 1) as u8
}

/// d, 32 high bits, 4-bit low parts; x = d·(q − 16).
fn q5_0(b: &[u8], o: &mut [f32]) {
    let d = half(b, 0);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    for l in 0..16 {
        let lo = (b[6 + l] & 0x0F) | (high_bit(qh, l) << 4);
        let hi = (b[6 + l] >> 4) | (high_bit(qh, l + 16) << 4);
        o[l] = d * (lo as i32 - 16) as f32;
        o[l + 16] = d * (hi as i32 - 16) as f32;
    }
}

/// d, m, 32 high bits, 4-bit low parts; x = d·q + m.
fn q5_1(b: &[u8], o: &mut [f32]) {
    let (d, m) = (half(b, 0), half(b, 2));
    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    for l in 0..16 {
        let lo = (b[8 + l] & 0x0F) | (high_bit(qh, l) << 4);
        let hi = (b[8 + l] >> 4) | (high_bit(qh, l + 16) << 4);
        o[l] = d * lo as f32 + m;
        o[l + 16] = d * hi as f32 + m;
    }
}

/// d, 32 signed bytes; x = q·d.
fn q8_0(b: &[u8], o: &mut [f32]) {
    let d = half(b, 0);
    for l in 0..32 {
        o[l] = (b[2 + l] as i8) as f32 * d;
    }
}

/// Super-block of 256: 16 bytes of 4-bit scale | 4-bit min pairs, 64 bytes of 2-bit values,
/// f16 d and dmin; x = (d·scale)·q − dmin·min, per sub-block of 16.
fn q2_k(b: &[u8], o: &mut [f32]) {
    let (scales, qs) = (&b[..16], &b[16..80]);
    let (d, dmin) = (half(b, 80), half(b, 82));
    for i in 0..QK_K {
        let (half_, shift, l) = (i / 128, (i % 128) / 32, i % 32);
        let q = (qs[half_ * 32 + l] >> (2 * shift)) & 3;
        let s = scales[i / 16];
        let dl = d * (s & 0x0F) as f32;
        let ml = dmin * (s >> 4) as f32;
        o[i] = dl * q as f32 - ml;
    }
}

/// 32 bytes of high-bit mask, 64 bytes of 2-bit low parts, 12 bytes of packed 6-bit scales, f16 d;
/// x = (d·(scale − 32))·(q − 4 when the mask bit is clear).
fn q3_k(b: &[u8], o: &mut [f32]) {
    let (hmask, qs, packed) = (&b[..32], &b[32..96], &b[96..108]);
    let d = half(b, 108);
    let mut scales = [0f32; 16];
    for (i, s) in scales.iter_mut().enumerate() {
        let low = (packed[i % 8] >> (4 * (i / 8))) & 0x0F;
        let high = (packed[8 + i % 4] >> (2 * (i / 4))) & 0x03;
        *s = ((low | (high << 4)) as i8 - 32) as f32;
    }
    for i in 0..QK_K {
        let (half_, shift, l) = (i / 128, (i % 128) / 32, i % 32);
        let low = ((qs[half_ * 32 + l] >> (2 * shift)) & 3) as i8;
        let bit = (hmask[i % 32] >> (i / 32)) & 1;
        let q = low - (((bit ^ 1) << 2) as i8);
        o[i] = (d * scales[i / 16]) * q as f32;
    }
}

/// The eight 6-bit scales and mins packed in 12 bytes (Q4_K and Q5_K).
fn scale_min_k4(packed: &[u8]) -> ([u8; 8], [u8; 8]) {
    let (mut sc, mut m) = ([0u8; 8], [0u8; 8]);
    for j in 0..4 {
        sc[j] = packed[j] & 0x3F;
        m[j] = packed[4 + j] & 0x3F;
        sc[4 + j] = (packed[8 + j] & 0x0F) | ((packed[j] >> 2) & 0x30);
        m[4 + j] = (packed[8 + j] >> 4) | ((packed[4 + j] >> 2) & 0x30);
    }
    (sc, m)
}

/// f16 d, dmin, 12 bytes of scales/mins, 128 bytes of 4-bit values in 64-element chunks (low
/// nibbles first); x = (d·scale)·q − dmin·min, per sub-block of 32.
fn q4_k(b: &[u8], o: &mut [f32]) {
    let (d, dmin) = (half(b, 0), half(b, 2));
    let (sc, m) = scale_min_k4(&b[4..16]);
    let qs = &b[16..144];
    for i in 0..QK_K {
        let (chunk, nibble, l) = (i / 64, (i % 64) / 32, i % 32);
        let q = (qs[chunk * 32 + l] >> (4 * nibble)) & 0x0F;
        let sub = i / 32;
        o[i] = (d * sc[sub] as f32) * q as f32 - dmin * m[sub] as f32;
    }
}

/// Q4_K with a fifth bit per element from 32 bytes of high bits.
fn q5_k(b: &[u8], o: &mut [f32]) {
    let (d, dmin) = (half(b, 0), half(b, 2));
    let (sc, m) = scale_min_k4(&b[4..16]);
    let (qh, qs) = (&b[16..48], &b[48..176]);
    for i in 0..QK_K {
        let (chunk, nibble, l) = (i / 64, (i % 64) / 32, i % 32);
        let low = (qs[chunk * 32 + l] >> (4 * nibble)) & 0x0F;
        let high = (qh[l] >> (i / 32)) & 1;
        let sub = i / 32;
        o[i] = (d * sc[sub] as f32) * (low | (high << 4)) as f32 - dmin * m[sub] as f32;
    }
}

/// 128 bytes of low 4 bits, 64 bytes of high 2 bits, 16 signed 8-bit scales, f16 d;
/// x = (d·scale)·(q − 32), per sub-block of 16.
fn q6_k(b: &[u8], o: &mut [f32]) {
    let (ql, qh, scales) = (&b[..128], &b[128..192], &b[192..208]);
    let d = half(b, 208);
    for i in 0..QK_K {
        let (half_, rest) = (i / 128, i % 128);
        let low = (ql[half_ * 64 + rest % 64] >> (4 * (rest / 64))) & 0x0F;
        let high = (qh[half_ * 32 + rest % 32] >> (2 * (rest / 32))) & 0x03;
        let q = (low | (high << 4)) as i8 - 32;
        o[i] = (d * (scales[i / 16] as i8) as f32) * q as f32;
    }
}
