//! The fused RMSNorm, rotary embedding and SwiGLU (fused_pointwise.cpp) against the composite of
//! libtorch ops they replace, forward and backward: on shapes whose rows and widths are not
//! multiples of the loops' 16 lanes, on the strided views the models pass, with trained and
//! frozen weights, and on the dtypes that take the composite path.

use tch::{Device, Kind, Tensor};

use super::shim;

fn composite_rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Tensor {
    let h = x.to_kind(Kind::Float);
    let variance = h.pow_tensor_scalar(2).mean_dim(-1, true, None::<Kind>);
    weight * (h * (variance + eps).rsqrt()).to_kind(x.kind())
}

fn composite_rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Tensor {
    let half = x.size()[3] / 2;
    let rotated = Tensor::cat(&[x.narrow(-1, half, half).neg(), x.narrow(-1, 0, half)], -1);
    x * cos.unsqueeze(1) + rotated * sin.unsqueeze(1)
}

fn composite_swiglu(gate: &Tensor, up: &Tensor) -> Tensor {
    gate.silu() * up
}

/// `f` of copies of `inputs` (those marked in `train` requiring gradients), and their gradients
/// under an incoming gradient that depends on the output's shape alone (not on the random
/// generator, which tests running at the same time share).
fn forward_backward(inputs: &[&Tensor], train: &[bool], f: &dyn Fn(&[Tensor]) -> Tensor) -> (Tensor, Vec<Option<Tensor>>) {
    let leaves: Vec<Tensor> = inputs.iter().zip(train).map(|(t, &g)| t.detach().copy().set_requires_grad(g)).collect();
    let out = f(&leaves);
    let grad = (Tensor::arange(out.numel() as i64, (out.kind(), out.device())) * 0.7).sin().reshape(out.size()) * 2.0;
    (&out * &grad).sum(None::<Kind>).backward();
    let grads = leaves.iter().zip(train).map(|(l, &g)| if g { Some(l.grad()) } else { None }).collect();
    (out.detach(), grads)
}

fn max_abs(a: &Tensor) -> f64 {
    if a.numel() == 0 {
        return 0.0;
    }
    a.to_kind(Kind::Double).abs().max().double_value(&[])
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    max_abs(&(a.to_kind(Kind::Double) - b.to_kind(Kind::Double)))
}

/// Fused and composite agree: outputs to the bit when `exact_forward`, gradients within a few
/// float32 roundings of their size.
fn check(name: &str, inputs: &[&Tensor], train: &[bool], exact_forward: bool, fused: &dyn Fn(&[Tensor]) -> Tensor, composite: &dyn Fn(&[Tensor]) -> Tensor) {
    let (out_f, grads_f) = forward_backward(inputs, train, fused);
    let (out_c, grads_c) = forward_backward(inputs, train, composite);
    assert_eq!(out_f.size(), out_c.size(), "{name}: output shape");
    if exact_forward {
        assert!(out_f.equal(&out_c), "{name}: forward differs from the composite by {}", max_diff(&out_f, &out_c));
    } else {
        assert!(max_diff(&out_f, &out_c) <= 1e-6 * max_abs(&out_c).max(1.0), "{name}: forward differs by {}", max_diff(&out_f, &out_c));
    }
    for (i, (gf, gc)) in grads_f.iter().zip(&grads_c).enumerate() {
        if let (Some(gf), Some(gc)) = (gf, gc) {
            let tolerance = 4e-6 * max_abs(gc).max(1e-3);
            let d = max_diff(gf, gc);
            assert!(d <= tolerance, "{name}: gradient of input {i} differs by {d} (tolerance {tolerance})");
        }
    }
}

fn randn(shape: &[i64]) -> Tensor {
    Tensor::randn(shape, (Kind::Float, Device::Cpu))
}

#[test]
fn rms_norm_matches_the_composite() {
    tch::manual_seed(0);
    for (shape, train_weight) in [(vec![3, 37, 64], false), (vec![5, 21], true), (vec![2, 300, 48], true), (vec![0, 8], true)] {
        let x = randn(&shape) * 3.0;
        let w = randn(&[*shape.last().unwrap()]) + 1.0;
        let name = format!("rms_norm {shape:?} (weight trained: {train_weight})");
        check(&name, &[&x, &w], &[true, train_weight], true, &|t| shim::rms_norm(&t[0], &t[1], 1e-6).unwrap(), &|t| composite_rms_norm(&t[0], &t[1], 1e-6));
    }
    // A transposed (non-contiguous) input, and a weight alone trained.
    let x = randn(&[40, 6]);
    let w = randn(&[40]);
    let fused = |t: &[Tensor]| shim::rms_norm(&t[0].transpose(0, 1), &t[1], 1e-5).unwrap();
    let composite = |t: &[Tensor]| composite_rms_norm(&t[0].transpose(0, 1), &t[1], 1e-5);
    check("rms_norm of a transposed input", &[&x, &w], &[true, true], true, &fused, &composite);
    check("rms_norm, weight alone trained", &[&x, &w], &[false, true], true, &fused, &composite);
}

#[test]
fn rope_matches_the_composite_to_the_bit() {
    tch::manual_seed(1);
    let (b, t, heads, hd) = (3, 11, 6, 34);
    let angles = randn(&[b, t, hd]);
    for cos_batch in [b, 1] {
        let (cos, sin) = (angles.narrow(0, 0, cos_batch).cos(), angles.narrow(0, 0, cos_batch).sin());
        // As the models pass it: (B, T, heads·hd) viewed as (B, heads, T, hd).
        let x = randn(&[b, t, heads * hd]);
        let name = format!("rope with cos of batch {cos_batch}");
        let heads_of = |x: &Tensor| x.view([b, t, heads, hd]).transpose(1, 2);
        let (fused_out, fused_grads) = forward_backward(&[&x], &[true], &|l| shim::rope(&heads_of(&l[0]), &cos, &sin).unwrap());
        let (composite_out, composite_grads) = forward_backward(&[&x], &[true], &|l| composite_rope(&heads_of(&l[0]), &cos, &sin));
        assert!(fused_out.equal(&composite_out), "{name}: forward differs by {}", max_diff(&fused_out, &composite_out));
        let (gf, gc) = (fused_grads[0].as_ref().unwrap(), composite_grads[0].as_ref().unwrap());
        assert!(gf.equal(gc), "{name}: gradient differs by {}", max_diff(gf, gc));
    }
}

#[test]
fn swiglu_matches_the_composite() {
    tch::manual_seed(2);
    for shape in [vec![4, 9, 688], vec![3, 17], vec![1, 1, 1]] {
        let gate = randn(&shape) * 4.0;
        let up = randn(&shape);
        for train in [[true, true], [true, false], [false, true]] {
            let name = format!("swiglu {shape:?} trained {train:?}");
            check(&name, &[&gate, &up], &train, true, &|t| shim::swiglu(&t[0], &t[1]).unwrap(), &|t| composite_swiglu(&t[0], &t[1]));
        }
    }
    // Large and extreme gates: e^−g clamped, never inf or NaN where the composite is finite.
    let gate = Tensor::from_slice(&[-200.0f32, -88.0, -30.0, 0.0, 30.0, 88.0, 200.0]);
    let up = Tensor::ones([7], (Kind::Float, Device::Cpu));
    check("swiglu at extreme gates", &[&gate, &up], &[true, true], true, &|t| shim::swiglu(&t[0], &t[1]).unwrap(), &|t| composite_swiglu(&t[0], &t[1]));
}

#[test]
fn other_dtypes_take_the_composite() {
    tch::manual_seed(3);
    let x = randn(&[2, 5, 8]).to_kind(Kind::BFloat16);
    let w = randn(&[8]).to_kind(Kind::BFloat16);
    assert!(shim::rms_norm(&x, &w, 1e-6).unwrap().equal(&composite_rms_norm(&x, &w, 1e-6)));
    assert!(shim::swiglu(&x, &x).unwrap().equal(&composite_swiglu(&x, &x)));
    let q = randn(&[2, 3, 5, 8]).to_kind(Kind::Double);
    let (cos, sin) = (randn(&[2, 5, 8]).to_kind(Kind::Double), randn(&[2, 5, 8]).to_kind(Kind::Double));
    assert!(shim::rope(&q, &cos, &sin).unwrap().equal(&composite_rope(&q, &cos, &sin)));
}

#[test]
fn second_derivatives_are_refused() {
    let x = randn(&[4, 8]).set_requires_grad(true);
    let w = Tensor::ones([8], (Kind::Float, Device::Cpu));
    let out = shim::rms_norm(&x, &w, 1e-6).unwrap().sum(None::<Kind>);
    let err = Tensor::f_run_backward(&[out], &[&x], true, true).map(|_| ()).unwrap_err().to_string();
    assert!(err.contains("rms_norm: second derivatives"), "{err}");
}
