//! petal's fused AdamW (one pass per parameter on Flex) against Burn's `AdamW` made of stock
//! tensor ops (the oracle), a hand-computed step, and state compatibility both ways; global
//! gradient-norm clipping against the norm computed on the host.

use burn::nn::{Linear, LinearConfig};
use burn::optim::{AdamW, AdamWConfig, AdamWState, GradientsParams, ModuleOptimizer, Optimizer};
use burn::tensor::{Device, Distribution, Tensor, TensorData};
use petal::trainer::adamw::FusedAdamW;
use petal::trainer::optim::clip_grad_norm;

fn flex() -> Device {
    Device::flex()
}

fn values<const D: usize>(t: &Tensor<D>) -> Vec<f32> {
    crate::common::values(t.clone())
}

/// Largest |a − b| / max(1, |b|).
fn max_rel(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() / y.abs().max(1.0))
        .fold(0.0, f32::max)
}

fn stock(beta_1: f32, beta_2: f32, eps: f32, wd: f32) -> AdamW {
    AdamWConfig::new()
        .with_beta_1(beta_1)
        .with_beta_2(beta_2)
        .with_epsilon(eps)
        .with_weight_decay(wd)
        .build()
}

fn check_against_stock<const D: usize>(shape: [usize; D], wd: f32) {
    let device = flex();
    let (b1, b2, eps) = (0.9, 0.99, 1e-6);
    let fused = FusedAdamW::new(b1, b2, eps, wd);
    let reference = stock(b1, b2, eps, wd);
    let mut p_f = Tensor::<D>::random(shape, Distribution::Normal(0.0, 1.0), &device);
    assert!(fused.fuses(&p_f), "the fused path must run on Flex f32");
    let mut p_s = Tensor::<D>::from_data(p_f.clone().into_data(), &device);
    let (mut s_f, mut s_s): (Option<AdamWState<D>>, Option<AdamWState<D>>) = (None, None);
    for (step, lr) in [1e-3, 5e-3, 2e-2, 1e-4].into_iter().enumerate() {
        let g = Tensor::<D>::random(shape, Distribution::Normal(0.0, 0.5 + step as f64), &device);
        let g_copy = Tensor::<D>::from_data(g.clone().into_data(), &device);
        (p_f, s_f) = fused.step(lr, p_f, g, s_f);
        (p_s, s_s) = reference.step(lr, p_s, g_copy, s_s);
        let (f, s) = (s_f.as_ref().unwrap(), s_s.as_ref().unwrap());
        assert_eq!(f.momentum.time, s.momentum.time, "step counter");
        let err = [
            max_rel(&values(&p_f), &values(&p_s)),
            max_rel(&values(&f.momentum.moment_1), &values(&s.momentum.moment_1)),
            max_rel(&values(&f.momentum.moment_2), &values(&s.momentum.moment_2)),
        ];
        assert!(
            err.iter().all(|e| *e <= 1e-6),
            "shape {shape:?}, wd {wd}, step {}: relative error (param, m, v) {err:?} > 1e-6",
            step + 1
        );
    }
}

#[test]
fn fused_adamw_matches_burn_adamw() {
    // Below one rayon chunk (sequential), several chunks with a ragged tail, a conv weight.
    for wd in [0.0, 0.05] {
        check_against_stock([7], wd);
        check_against_stock([40_003], wd);
        check_against_stock([64, 32, 3, 3], wd);
    }
}

#[test]
fn fused_adamw_first_step_by_hand() {
    // θ = 1, g = 0.5, lr = 0.1, λ = 0.01, β = (0.9, 0.999), ε = 1e-8:
    // m = 0.05, v = 0.00025, m̂ = 0.5, v̂ = 0.25, Δ = 0.5 / (0.5 + 1e-8) ≈ 1 − 2e-8,
    // θ' = 1·(1 − 0.1·0.01) − 0.1·Δ = 0.899.
    let device = flex();
    let opt = FusedAdamW::new(0.9, 0.999, 1e-8, 0.01);
    let p = Tensor::<1>::from_data(TensorData::from([1.0f32, -2.0]), &device);
    let g = Tensor::<1>::from_data(TensorData::from([0.5f32, 0.0]), &device);
    let (p, s) = opt.step(0.1, p, g, None);
    let p = values(&p);
    assert!((p[0] - 0.899).abs() < 1e-6, "θ' = {}", p[0]);
    // Zero gradient: only the decay acts, θ' = −2·(1 − 0.001).
    assert!((p[1] + 1.998).abs() < 1e-6, "θ' = {}", p[1]);
    let s = s.unwrap();
    assert_eq!(s.momentum.time, 1);
    let m = values(&s.momentum.moment_1);
    let v = values(&s.momentum.moment_2);
    // 0.05 and 0.00025, with β as f32 (1 − 0.999f32 = 0.00100004…).
    let (m_want, v_want) = (0.5 * (1.0 - 0.9f32), 0.25 * (1.0 - 0.999f32));
    assert!((m[0] - m_want).abs() <= 1e-6 * m_want, "m = {}", m[0]);
    assert!((v[0] - v_want).abs() <= 1e-6 * v_want, "v = {}", v[0]);
    assert!((m_want - 0.05).abs() < 1e-7 && (v_want - 0.00025).abs() < 2e-8);
}

/// One step of `optim` on `model` with the gradient of `sum(model(x)²)`.
fn step_linear(optim: &mut ModuleOptimizer, model: Linear, x: &Tensor<2>, lr: f64) -> Linear {
    let loss = model.forward(x.clone()).powi_scalar(2).sum();
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    optim.step(lr, model, grads)
}

#[test]
fn fused_adamw_state_loads_in_burn_adamw_and_back() {
    let device = flex().autodiff();
    let x = Tensor::<2>::random([4, 6], Distribution::Normal(0.0, 1.0), &device);
    let model = LinearConfig::new(6, 5).init(&device);
    let make = |stock_only: bool| {
        let o = FusedAdamW::new(0.9, 0.999, 1e-8, 0.01);
        ModuleOptimizer::from(if stock_only { o.stock_only() } else { o })
    };
    // Two fused steps, then the state written as a checkpoint does.
    let mut first = make(false);
    let mut model = step_linear(&mut first, model, &x, 1e-2);
    model = step_linear(&mut first, model, &x, 1e-2);
    let bytes = first.into_bytes().unwrap();
    // Continue once with each implementation from the saved state.
    let mut fused = make(false).from_bytes(bytes.clone()).unwrap();
    let mut burn = make(true).from_bytes(bytes).unwrap();
    let a = step_linear(&mut fused, model.clone(), &x, 1e-2);
    let b = step_linear(&mut burn, model.clone(), &x, 1e-2);
    let before = values(&model.weight.val());
    let (wa, wb) = (values(&a.weight.val()), values(&b.weight.val()));
    assert!(max_rel(&wa, &wb) <= 1e-6, "fused vs Burn after reload");
    // The reloaded state was used: a fresh optimizer (step 1, no moments) moves differently.
    let fresh = step_linear(&mut make(true), model.clone(), &x, 1e-2);
    assert!(max_rel(&values(&fresh.weight.val()), &wb) > 1e-4);
    assert!(max_rel(&wa, &before) > 1e-4, "the step moved the weights");
}

/// The gradients of `model` (weight, bias) on the host.
fn linear_grads(model: &Linear, grads: &GradientsParams) -> Vec<f32> {
    let mut out = values(&grads.get::<2>(model.weight.id).unwrap());
    out.extend(values(
        &grads.get::<1>(model.bias.as_ref().unwrap().id).unwrap(),
    ));
    out
}

#[test]
fn clip_grad_norm_matches_pytorch_rule() {
    let device = flex().autodiff();
    let x = Tensor::<2>::random([4, 6], Distribution::Normal(0.0, 2.0), &device);
    let model = LinearConfig::new(6, 5).init(&device);
    let grads_of = || {
        let loss = model.forward(x.clone()).powi_scalar(2).sum();
        GradientsParams::from_grads(loss.backward(), &model)
    };
    let raw = linear_grads(&model, &grads_of());
    let norm = raw.iter().map(|g| (*g as f64).powi(2)).sum::<f64>().sqrt();
    assert!(norm > 1.0, "test gradients too small: {norm}");
    for max_norm in [norm / 4.0, 10.0 * norm] {
        let mut grads = grads_of();
        let got = clip_grad_norm(&model, &mut grads, max_norm).expect("a norm");
        let got = values(&got)[0] as f64;
        assert!((got - norm).abs() <= 1e-5 * norm, "norm {got} vs {norm}");
        // PyTorch: g · min(1, max_norm / (norm + 1e-6)).
        let coef = (max_norm / (norm + 1e-6)).min(1.0);
        let clipped = linear_grads(&model, &grads);
        for (c, r) in clipped.iter().zip(&raw) {
            let want = *r as f64 * coef;
            assert!(
                (*c as f64 - want).abs() <= 1e-6 * want.abs().max(1.0),
                "max_norm {max_norm}: {c} vs {want}"
            );
        }
    }
}
