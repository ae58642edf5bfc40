//! Quantisation of float32 rows to ggml blocks, following ggml's reference `quantize_row_*_ref`
//! (ggml-quants.c): Q8_0, Q4_0, Q5_0 (scale from the largest magnitude), and the k-quants Q4_K
//! (scales and mins fitted per 32 values by `make_qkx2_quants`) and Q6_K (scales fitted per 16
//! values by `make_qx_quants`), which llama.cpp's q4_k_m mixes. F32, F16 and BF16 are plain
//! conversions (F16 and BF16 round to nearest even).

use anyhow::{bail, Result};
use half::{bf16, f16};

use super::types::{GgmlType, QK_K};

/// The bytes of `x` (whole rows of `ty`'s blocks) in `ty`.
pub fn quantize(ty: GgmlType, x: &[f32]) -> Result<Vec<u8>> {
    let block = ty.block_size();
    if x.len() % block != 0 {
        bail!("{} values are not whole {} blocks of {block}", x.len(), ty.name());
    }
    let mut out = vec![0u8; x.len() / block * ty.type_size()];
    let blocks = x.chunks_exact(block).zip(out.chunks_exact_mut(ty.type_size()));
    match ty {
        GgmlType::F32 => blocks.for_each(|(x, o)| o.copy_from_slice(&x[0].to_le_bytes())),
        GgmlType::F16 => blocks.for_each(|(x, o)| o.copy_from_slice(&f16::from_f32(x[0]).to_le_bytes())),
        GgmlType::BF16 => blocks.for_each(|(x, o)| o.copy_from_slice(&bf16::from_f32(x[0]).to_le_bytes())),
        GgmlType::Q8_0 => blocks.for_each(|(x, o)| q8_0(x, o)),
        GgmlType::Q4_0 => blocks.for_each(|(x, o)| q4_0(x, o)),
        GgmlType::Q5_0 => blocks.for_each(|(x, o)| q5_0(x, o)),
        GgmlType::Q4K => blocks.for_each(|(x, o)| q4_k(x, o)),
        GgmlType::Q6K => blocks.for_each(|(x, o)| q6_k(x, o)),
        other => bail!("writing {} is not supported (F32, F16, BF16, Q8_0, Q4_0, Q5_0, Q4_K and Q6_K are)", other.name()),
    }
    Ok(out)
}

fn put_half(o: &mut [u8], at: usize, v: f32) {
    o[at..at + 2].copy_from_slice(&f16::from_f32(v).to_le_bytes());
}

fn half(o: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([o[at], o[at + 1]]).to_f32()
}

/// ggml's `nearest_int`: round half to even through the float32 mantissa trick (|v| < 2²²).
fn nearest_int(v: f32) -> i32 {
    let bits = (v + 12582912.0f32).to_bits() as i32;
    (bits & 0x007f_ffff) - 0x0040_0000
}

/// The value of largest magnitude (the first of equals), and that magnitude.
fn signed_max(x: &[f32]) -> (f32, f32) {
    let (mut amax, mut max) = (0f32, 0f32);
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    (max, amax)
}

fn q8_0(x: &[f32], o: &mut [u8]) {
    let amax = x.iter().fold(0f32, |a, v| a.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    put_half(o, 0, d);
    for (j, v) in x.iter().enumerate() {
        o[2 + j] = ((v * id).round() as i8) as u8;
    }
}

fn q4_0(x: &[f32], o: &mut [u8]) {
    let (max, _) = signed_max(x);
    let d = max / -8.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    put_half(o, 0, d);
    for j in 0..16 {
        let q0 = ((x[j] * id + 8.5) as i8).min(15) as u8;
        let q1 = ((x[j + 16] * id + 8.5) as i8).min(15) as u8;
        o[2 + j] = q0 | (q1 << 4);
    }
}

fn q5_0(x: &[f32], o: &mut [u8]) {
    let (max, _) = signed_max(x);
    let d = max / -16.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    put_half(o, 0, d);
    let mut qh = 0u32;
    for j in 0..16 {
        let q0 = ((x[j] * id + 16.5) as i8).min(31) as u8;
        let q1 = ((x[j + 16] * id + 16.5) as i8).min(31) as u8;
        o[6 + j] = (q0 & 0x0F) | ((q1 & 0x0F) << 4);
        qh |= (((q0 & 0x10) >> 4) as u32) << j;
        qh |= (((q1 & 0x10) >> 4) as u32) << (j + 16);
    }
    o[2..6].copy_from_slice(&qh.to_le_bytes());
}

/// ggml's `make_qkx2_quants`: levels 0..=nmax with a scale and a (non-positive) min fitted by
/// weighted least squares over a sweep of candidate scales. Returns (scale, −min).
#[allow(clippy::too_many_arguments)]
fn make_qkx2_quants(nmax: i32, x: &[f32], weights: &[f32], levels: &mut [u8], rmin: f32, rdelta: f32, nstep: i32) -> (f32, f32) {
    let n = x.len();
    let (mut min, mut max) = (x[0], x[0]);
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        min = min.min(x[i]);
        max = max.max(x[i]);
        sum_w += weights[i];
        sum_x += weights[i] * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        levels.iter_mut().for_each(|l| *l = 0);
        return (0.0, -min);
    }
    let mut iscale = nmax as f32 / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0f32;
    for i in 0..n {
        let l = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
        levels[i] = l as u8;
        let diff = scale * l as f32 + min - x[i];
        best_error += weights[i] * (diff * diff);
    }
    let mut aux = vec![0u8; n];
    for is in 0..=nstep {
        iscale = (rmin + rdelta * is as f32 + nmax as f32) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0f32, 0f32, 0f32);
        for i in 0..n {
            let l = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
            aux[i] = l as u8;
            let (w, lf) = (weights[i], l as f32);
            sum_l += w * lf;
            sum_l2 += w * lf * lf;
            sum_xl += w * lf * x[i];
        }
        let det = sum_w * sum_l2 - sum_l * sum_l;
        if det > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut error = 0f32;
            for i in 0..n {
                let diff = this_scale * aux[i] as f32 + this_min - x[i];
                error += weights[i] * (diff * diff);
            }
            if error < best_error {
                levels.copy_from_slice(&aux);
                best_error = error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// ggml's `make_qx_quants` with squared-value weights (`rmse_type` 1): signed levels
/// −nmax..nmax−1 (stored offset by nmax) and the best of 19 candidate scales.
fn make_qx_quants(nmax: i32, x: &[f32], levels: &mut [i8]) -> f32 {
    let (max, amax) = signed_max(x);
    if amax < 1e-15 {
        levels.iter_mut().for_each(|l| *l = 0);
        return 0.0;
    }
    let nm = nmax as f32;
    let fit = |iscale: f32| -> (f32, f32) {
        let (mut sumlx, mut suml2) = (0f32, 0f32);
        for &v in x {
            let l = nearest_int(iscale * v).clamp(-nmax, nmax - 1) as f32;
            let w = v * v;
            sumlx += w * v * l;
            suml2 += w * l * l;
        }
        (sumlx, suml2)
    };
    let mut iscale = -nm / max;
    let (sumlx, suml2) = fit(iscale);
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    let mut chosen = iscale;
    for is in -9..=9 {
        if is == 0 {
            continue;
        }
        iscale = -(nm + 0.1 * is as f32) / max;
        let (sumlx, suml2) = fit(iscale);
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            chosen = iscale;
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    for (l, &v) in levels.iter_mut().zip(x) {
        *l = (nmax + nearest_int(chosen * v).clamp(-nmax, nmax - 1)) as i8;
    }
    scale
}

fn q4_k(x: &[f32], o: &mut [u8]) {
    let mut levels = [0u8; QK_K];
    let (mut scales, mut mins) = ([0f32; 8], [0f32; 8]);
    let (mut max_scale, mut max_min) = (0f32, 0f32);
    for j in 0..8 {
        let xs = &x[32 * j..32 * j + 32];
        let sum_x2: f32 = xs.iter().fold(0.0, |a, v| a + v * v);
        let av_x = (sum_x2 / 32.0).sqrt();
        let weights: Vec<f32> = xs.iter().map(|v| av_x + v.abs()).collect();
        let (s, m) = make_qkx2_quants(15, xs, &weights, &mut levels[32 * j..32 * j + 32], -1.0, 0.1, 20);
        scales[j] = s;
        mins[j] = m;
        max_scale = max_scale.max(s);
        max_min = max_min.max(m);
    }
    let inv_scale = if max_scale > 0.0 { 63.0 / max_scale } else { 0.0 };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let packed = &mut o[4..16];
    packed.iter_mut().for_each(|b| *b = 0);
    for j in 0..8 {
        let ls = (nearest_int(inv_scale * scales[j]) as u8).min(63);
        let lm = (nearest_int(inv_min * mins[j]) as u8).min(63);
        if j < 4 {
            packed[j] = ls;
            packed[j + 4] = lm;
        } else {
            packed[j + 4] = (ls & 0x0F) | ((lm & 0x0F) << 4);
            packed[j - 4] |= (ls >> 4) << 6;
            packed[j] |= (lm >> 4) << 6;
        }
    }
    put_half(o, 0, max_scale / 63.0);
    put_half(o, 2, max_min / 63.0);
    let (d_all, dmin_all) = (half(o, 0), half(o, 2));
    for j in 0..8 {
        let (sc, m) = scale_min_k4(j, &o[4..16]);
        let d = d_all * sc as f32;
        if d == 0.0 {
            continue;
        }
        let dm = dmin_all * m as f32;
        for ii in 0..32 {
            levels[32 * j + ii] = nearest_int((x[32 * j + ii] + dm) / d).clamp(0, 15) as u8;
        }
    }
    for (c, chunk) in levels.chunks_exact(64).enumerate() {
        for l in 0..32 {
            o[16 + 32 * c + l] = chunk[l] | (chunk[l + 32] << 4);
        }
    }
}

fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

fn q6_k(x: &[f32], o: &mut [u8]) {
    let mut levels = [0i8; QK_K];
    let mut scales = [0f32; 16];
    let (mut max_scale, mut max_abs) = (0f32, 0f32);
    for ib in 0..16 {
        let s = make_qx_quants(32, &x[16 * ib..16 * ib + 16], &mut levels[16 * ib..16 * ib + 16]);
        scales[ib] = s;
        if s.abs() > max_abs {
            max_abs = s.abs();
            max_scale = s;
        }
    }
    o.iter_mut().for_each(|b| *b = 0);
    if max_abs < 1e-15 {
        return;
    }
    let iscale = -128.0 / max_scale;
    put_half(o, 208, 1.0 / iscale);
    for ib in 0..16 {
        o[192 + ib] = (nearest_int(iscale * scales[ib]).min(127) as i8) as u8;
    }
    let d_all = half(o, 208);
    let mut l_all = [0u8; QK_K];
    for j in 0..16 {
        let d = d_all * (o[192 + j] as i8) as f32;
        if d == 0.0 {
            l_all[16 * j..16 * j + 16].iter_mut().zip(&levels[16 * j..16 * j + 16]).for_each(|(a, b)| *a = *b as u8);
            continue;
        }
        for ii in 0..16 {
            l_all[16 * j + ii] = (nearest_int(x[16 * j + ii] / d).clamp(-32, 31) + 32) as u8;
        }
    }
    for h in 0..2 {
        let l = &l_all[128 * h..128 * h + 128];
        for i in 0..32 {
            let (q1, q2, q3, q4) = (l[i] & 0x0F, l[i + 32] & 0x0F, l[i + 64] & 0x0F, l[i + 96] & 0x0F);
            o[64 * h + i] = q1 | (q3 << 4);
            o[64 * h + i + 32] = q2 | (q4 << 4);
            o[128 + 32 * h + i] = (l[i] >> 4) | ((l[i + 32] >> 4) << 2) | ((l[i + 64] >> 4) << 4) | ((l[i + 96] >> 4) << 6);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::dequant::dequantize;

    fn roundtrip(ty: GgmlType, x: &[f32]) -> Vec<f32> {
        let bytes = quantize(ty, x).unwrap();
        let mut back = vec![0f32; x.len()];
        dequantize(ty, &bytes, &mut back).unwrap();
        back
    }

    #[test]
    fn quantised_values_come_back_within_each_types_step() {
        let x: Vec<f32> = (0..1024).map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * (1.0 + (i % 13) as f32 / 13.0)).collect();
        let amax = x.iter().fold(0f32, |a, v| a.max(v.abs()));
        for (ty, tolerance) in [(GgmlType::F16, 1e-3), (GgmlType::Q8_0, amax / 127.0), (GgmlType::Q6K, amax / 20.0), (GgmlType::Q5_0, amax / 15.0), (GgmlType::Q4K, amax / 7.0), (GgmlType::Q4_0, amax / 7.0)] {
            let back = roundtrip(ty, &x);
            let worst = x.iter().zip(&back).fold(0f32, |a, (u, v)| a.max((u - v).abs()));
            assert!(worst <= tolerance, "{}: worst error {worst} > {tolerance}", ty.name());
        }
        assert!(roundtrip(GgmlType::Q4K, &[0.0; 256]).iter().all(|v| *v == 0.0));
        assert!(roundtrip(GgmlType::Q6K, &[0.0; 256]).iter().all(|v| *v == 0.0));
    }

    #[test]
    fn nearest_int_rounds_half_to_even() {
        assert_eq!([nearest_int(0.5), nearest_int(1.5), nearest_int(-2.5), nearest_int(2.49)], [0, 2, -2, 2]);
    }
}
