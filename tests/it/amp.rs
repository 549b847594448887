//! `--precision mixed` on a wgpu adapter (lavapipe in CI): the f16 pass's unscaled gradients
//! against the f32 pass's on the same batch, the master weights and BatchNorm buffers staying
//! f32, and an overflowing loss scale skipping the step (weights untouched, scale halved) as
//! `GradScaler` does. (The scaler's rules by hand: `petal_trainer::amp`'s unit test; a whole
//! mixed run resumed exactly: the CLI tests.)

use crate::common::*;
use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::DType;
use petal::data::PackedBatch;
use petal::data::augment::{AugmentConfig, Pipeline};
use petal::models::head::PoolOrder;
use petal::models::{Classifier, ClassifierConfig, HeadConfig};
use petal::trainer::FineTuneConfig;
use petal::trainer::amp::{LossScaler, half_copy, train_step_mixed, unscale, widen_grads};
use petal::trainer::optim::build_optimizer;
use petal::trainer::train::{StepContext, forward_backward};
use std::collections::BTreeMap;

/// Every float tensor (parameters and buffers) by id: dtype and values.
#[derive(Default)]
struct Values(BTreeMap<ParamId, (DType, Vec<f32>)>);
impl ModuleVisitor for Values {
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        let t = p.val();
        let dtype = t.dtype();
        let v = t
            .cast(DType::F32)
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap();
        self.0.insert(p.id, (dtype, v));
    }
}

fn snapshot(m: &impl Module) -> BTreeMap<ParamId, (DType, Vec<f32>)> {
    let mut v = Values::default();
    m.visit(&mut v);
    v.0
}

/// Gradients by parameter id, as f32.
fn grad_values(model: &Classifier, grads: &GradientsParams) -> BTreeMap<ParamId, Vec<f32>> {
    param_grads(model, grads)
        .into_iter()
        .filter_map(|p| Some((p.id, p.grad?)))
        .collect()
}

/// A tiny DenseNet with the concat-pool head, no dropout (the f16 and f32 passes then see the
/// same function).
fn tiny(device: &Device) -> Classifier {
    let config = ClassifierConfig::new(
        tiny_densenet(&[2, 2]),
        HeadConfig::ConcatPool {
            hidden: vec![16],
            dropout: vec![0.0],
            pool_order: PoolOrder::AvgMax,
        },
        3,
    );
    device.seed(5);
    config.init(device)
}

fn images(n: usize) -> PackedBatch {
    let mut b = PackedBatch::default();
    for i in 0..n {
        let img = image::RgbImage::from_fn(40, 36, |x, y| {
            image::Rgb([
                (x * 6 + i as u32 * 40) as u8,
                (y * 7) as u8,
                ((x + y) * 3 + 20 * i as u32) as u8,
            ])
        });
        b.push(&img, i % 3, i);
    }
    b
}

#[test]
fn mixed_precision_gradients_match_f32_and_overflow_skips_the_step_wgpu() {
    let device = wgpu().autodiff();
    let model = tiny(&device);
    let batch = images(6);
    let pipeline = Pipeline::train(
        AugmentConfig {
            size: 32,
            ..AugmentConfig::default()
        },
        3,
    );
    let ctx = |dtype| StepContext {
        pipeline: &pipeline,
        dtype,
        device: &device,
        label_smoothing: 0.1,
        class_weights: None,
        grad_clip: None,
    };
    let (f32_ctx, f16_ctx) = (ctx(DType::F32), ctx(DType::F16));

    // f32 reference gradients.
    let (g32, m32, _) = forward_backward(&model, &batch, 0, &f32_ctx, 1.0, &mut |_| {});
    let want = grad_values(&model, &g32);
    // The f16 copy at scale 1024, widened and unscaled.
    let half = half_copy(&model);
    assert!(snapshot(&half).values().all(|(d, _)| *d == DType::F16));
    let (g16, m16, _) = forward_backward(&half, &batch, 0, &f16_ctx, 1024.0, &mut |_| {});
    let (g, found_inf) = unscale(&model, widen_grads(&half, g16), 1.0 / 1024.0);
    assert!(!found_inf);
    let got = grad_values(&model, &g);
    assert_eq!(got.len(), want.len());
    // The whole copy runs in f16 (BatchNorm too, unlike autocast, which keeps it in f32):
    // gradients agree to f16's accuracy, a few per cent per tensor, ~1 % at the head. Tensors
    // whose gradient nearly cancels (|g| below 1e-3 of the largest, e.g. a BatchNorm gamma
    // right before another BatchNorm) are only in the overall figure. A forgotten unscale
    // would be off by 1024×, a gradient mapped to the wrong parameter by ~100 %.
    let paths: BTreeMap<ParamId, String> = param_grads(&model, &g32)
        .into_iter()
        .map(|p| (p.id, p.path))
        .collect();
    let norm = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let largest = want.values().map(|w| norm(w)).fold(0.0, f64::max);
    let (mut num, mut den, mut worst) = (0f64, 0f64, (0f64, String::new()));
    for (id, w) in &want {
        let diff: Vec<f32> = got[id].iter().zip(w).map(|(a, b)| a - b).collect();
        let (n, d) = (norm(&diff), norm(w));
        num += n * n;
        den += d * d;
        if d > 1e-3 * largest && n / d > worst.0 {
            worst = (n / d, paths[id].clone());
        }
    }
    let rel = (num / den).sqrt();
    println!(
        "mixed vs f32 gradients: relative L2 error {rel:.2e} overall, worst tensor {:.2e} ({})",
        worst.0, worst.1
    );
    assert!(rel < 0.1, "relative error {rel}");
    assert!(worst.0 < 0.15, "worst tensor {worst:?}");
    let (l32, l16): (Vec<f32>, Vec<f32>) = (
        m32.into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap(),
        m16.into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap(),
    );
    assert!((l32[0] - l16[0]).abs() < 1e-2, "loss {l32:?} vs {l16:?}");

    // A whole step: the master stays f32 (weights and BatchNorm buffers); the weights move.
    let config = FineTuneConfig::default();
    let mut optim = build_optimizer(&config, &model);
    let step = |model, optim: &mut _, scaler: &mut LossScaler| {
        train_step_mixed(model, &batch, 0, optim, 1e-3, &f16_ctx, scaler, &mut |_| {}).0
    };
    let before = snapshot(&model.valid());
    // (At 2^16 this tiny model's largest weight gradient, above 1, would overflow f16: the
    // copy's weight gradients are f16 too, unlike autocast's f32 ones.)
    let mut scaler = LossScaler::new(1024.0, 2000);
    let model = step(model, &mut optim, &mut scaler);
    let after = snapshot(&model.valid());
    assert!(
        after.values().all(|(d, _)| *d == DType::F32),
        "the master stays f32"
    );
    assert_ne!(before, after, "the step moved the weights");
    assert_eq!(
        (scaler.scale, scaler.skipped, scaler.growth_tracker),
        (1024.0, 0, 1)
    );

    // A scale of 2^40 overflows f16 (max 65504; lavapipe saturates there rather than giving
    // inf, which the overflow check also catches): the step is skipped — the weights stay
    // exactly as they were (BatchNorm statistics aside, which the forward pass updates, as in
    // PyTorch) — and the scale halves.
    let mut scaler = LossScaler::new(2f64.powi(40), 2000);
    let before = snapshot(&model.valid());
    let model = step(model, &mut optim, &mut scaler);
    assert_eq!((scaler.scale, scaler.skipped), (2f64.powi(39), 1));
    let after = snapshot(&model.valid());
    let trainable: Vec<ParamId> = param_grads(&model, &GradientsParams::new())
        .into_iter()
        .filter(|p| p.trainable)
        .map(|p| p.id)
        .collect();
    assert!(!trainable.is_empty());
    for id in &trainable {
        assert_eq!(before[id], after[id], "a skipped step changed a weight");
    }
    assert!(after.values().all(|(d, _)| *d == DType::F32));
}
