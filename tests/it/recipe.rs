//! Recipe levers of issue 14: the class-weighted cross-entropy against PyTorch's formula
//! computed by hand, `--class-weights` resolution, and the balanced sampler's frequencies.

use burn::prelude::*;
use petal::data::{ClassList, Loader, LoaderConfig, Sample, Source};
use petal::trainer::data::class_weights;
use petal::trainer::train::{cross_entropy_loss, weighted_cross_entropy_loss};

/// `[N, 3]` logits on `device`.
fn logits_tensor(rows: &[[f64; 3]], device: &Device) -> Tensor<2> {
    let v: Vec<f32> = rows.iter().flatten().map(|&v| v as f32).collect();
    Tensor::<2>::from_data(TensorData::new(v, [rows.len(), 3]), device)
}

/// PyTorch's `CrossEntropyLoss(weight=w, label_smoothing=eps)` (mean), by hand in f64.
fn torch_weighted_ce(logits: &[[f64; 3]], labels: &[usize], w: &[f64; 3], eps: f64) -> f64 {
    let (mut num, mut den) = (0.0, 0.0);
    for (z, &y) in logits.iter().zip(labels) {
        let m = z.iter().cloned().fold(f64::MIN, f64::max);
        let lse = m + z.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
        let logp: Vec<f64> = z.iter().map(|v| v - lse).collect();
        num += (1.0 - eps) * w[y] * -logp[y]
            + eps / 3.0 * (0..3).map(|c| w[c] * -logp[c]).sum::<f64>();
        den += w[y];
    }
    num / den
}

/// Four rows of logits, their labels and class weights shared by the loss tests.
const LOGITS: [[f64; 3]; 4] = [
    [2.0, 0.0, -1.0],
    [0.5, 1.5, 0.0],
    [-0.3, 0.2, 2.2],
    [1.0, 1.0, 1.0],
];
const LABELS: [usize; 4] = [0, 1, 2, 1];
const WEIGHTS: [f64; 3] = [1.0, 2.0, 0.5];

/// [`LOGITS`], [`LABELS`] and [`WEIGHTS`] as tensors on `device`.
fn case_tensors(device: &Device) -> (Tensor<2>, Tensor<1, Int>, Tensor<1>) {
    let x = logits_tensor(&LOGITS, device);
    let y = Tensor::<1, Int>::from_data(
        TensorData::new(LABELS.iter().map(|&l| l as i64).collect::<Vec<_>>(), [4]),
        device,
    );
    let w = WEIGHTS.map(|v| v as f32).to_vec();
    (
        x,
        y,
        Tensor::<1>::from_data(TensorData::new(w, [3]), device),
    )
}

#[test]
fn weighted_cross_entropy_is_pytorchs() {
    let device = Device::flex();
    let (logits, labels, w) = (LOGITS, LABELS, WEIGHTS);
    let (x, y, wt) = case_tensors(&device);
    for eps in [0.0, 0.1] {
        let got: f32 =
            weighted_cross_entropy_loss(x.clone(), y.clone(), eps, Some(&wt)).into_scalar();
        let want = torch_weighted_ce(&logits, &labels, &w, eps);
        assert!(
            (got as f64 - want).abs() < 1e-6,
            "eps {eps}: {got} vs {want}"
        );
        // Weights of 1 are the unweighted loss.
        let ones = Tensor::<1>::ones([3], &device);
        let a: f32 =
            weighted_cross_entropy_loss(x.clone(), y.clone(), eps, Some(&ones)).into_scalar();
        let b: f32 = cross_entropy_loss(x.clone(), y.clone(), eps).into_scalar();
        assert!((a - b).abs() < 1e-6, "eps {eps}: {a} vs {b}");
        let want1 = torch_weighted_ce(&logits, &labels, &[1.0; 3], eps);
        assert!((b as f64 - want1).abs() < 1e-6);
    }
}

fn classes() -> ClassList {
    ClassList {
        folders: vec!["cat".into(), "dog".into()],
        names: vec!["Cat".into(), "Dog".into()],
    }
}

#[test]
fn class_weights_auto_and_from_files() {
    let counts = [90, 10];
    let w = class_weights("auto", &counts, &classes()).unwrap();
    assert!(
        (w[0] - 100.0 / 180.0).abs() < 1e-6 && (w[1] - 5.0).abs() < 1e-6,
        "{w:?}"
    );
    let dir = std::env::temp_dir().join(format!("petal-cw-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    assert_eq!(
        class_weights(&file("l.json", "[1, 3.5]"), &counts, &classes()).unwrap(),
        [1.0, 3.5]
    );
    // By display or folder name; the others weigh 1.
    assert_eq!(
        class_weights(&file("o.json", r#"{"dog": 4}"#), &counts, &classes()).unwrap(),
        [1.0, 4.0]
    );
    for (name, text, needle) in [
        ("short.json", "[1]", "1 weights for 2 classes"),
        ("neg.json", "[1, -2]", "must be finite and >= 0"),
        ("zero.json", "[0, 0]", "every weight is 0"),
        ("who.json", r#"{"horse": 2}"#, "no class called `horse`"),
        ("bad.json", "[1,", "not JSON"),
    ] {
        let e = class_weights(&file(name, text), &counts, &classes())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(needle) && e.contains("--class-weights"),
            "{name}: {e}"
        );
    }
    let e = class_weights("/no/such.json", &counts, &classes())
        .unwrap_err()
        .to_string();
    assert!(e.contains("cannot read"), "{e}");
}

#[test]
fn balanced_sampler_draws_classes_equally_and_reproducibly() {
    // 90 images of class 0, 10 of class 1.
    let samples: Vec<Sample> = (0..100)
        .map(|i| Sample {
            path: format!("img{i}.png").into(),
            label: usize::from(i >= 90),
        })
        .collect();
    let loader = |balanced| {
        Loader::new(
            Source::Files(samples.clone()),
            LoaderConfig {
                balanced,
                seed: 7,
                ..LoaderConfig::default()
            },
        )
    };
    let (bal, plain) = (loader(true), loader(false));
    let (mut ones, mut draws) = (0usize, 0usize);
    for epoch in 0..40 {
        let order = bal.order(epoch);
        assert_eq!(order.len(), 100);
        assert_eq!(
            order,
            bal.order(epoch),
            "an epoch's draw is a function of the epoch"
        );
        ones += order.iter().filter(|&&i| i >= 90).count();
        draws += order.len();
        // Without it: every image exactly once.
        let mut p = plain.order(epoch);
        p.sort_unstable();
        assert_eq!(p, (0..100).collect::<Vec<_>>());
    }
    // Expected 1/2; 4000 draws give a standard deviation of 0.008.
    let f = ones as f64 / draws as f64;
    assert!((f - 0.5).abs() < 0.03, "class 1 drawn {f:.3} of the time");
    assert_ne!(bal.order(0), bal.order(1));
}

#[test]
fn progressive_sizes_per_epoch() {
    use petal::trainer::FineTuneConfig;
    let mut c = FineTuneConfig {
        freeze_epochs: 1,
        epochs: 4,
        progressive: Some((128, 224)),
        ..FineTuneConfig::default()
    };
    c.augment.size = 224;
    c.validate().unwrap();
    // 128 + 96 · e / 4, intermediate sizes on multiples of 8.
    let sizes: Vec<usize> = (0..5).map(|e| c.train_size(e)).collect();
    assert_eq!(sizes, [128, 152, 176, 200, 224]);
    // 100 → 130 over 3 epochs: 115 rounds to 112; the ends are exact.
    c.epochs = 2;
    c.progressive = Some((100, 130));
    c.augment.size = 130;
    assert_eq!(
        (0..3).map(|e| c.train_size(e)).collect::<Vec<_>>(),
        [100, 112, 130]
    );
    // Shrinking works too; one epoch trains at END.
    c.progressive = Some((130, 100));
    c.augment.size = 100;
    assert_eq!(
        (0..3).map(|e| c.train_size(e)).collect::<Vec<_>>(),
        [130, 112, 100]
    );
    c.freeze_epochs = 0;
    c.epochs = 1;
    assert_eq!(c.train_size(0), 100);
    // Without it: augment.size every epoch.
    c.progressive = None;
    assert_eq!(c.train_size(0), 100);
    // END must be the validation crop.
    c.progressive = Some((64, 96));
    let e = c.validate().unwrap_err().to_string();
    assert!(
        e.contains("--progressive") && e.contains("augment.size"),
        "{e}"
    );
}

#[test]
fn accumulating_two_half_batches_equals_one_batch_without_batchnorm() {
    use burn::module::{Module, ModuleVisitor, Param};
    use petal::data::augment::{AugmentConfig, Pipeline};
    use petal::data::{PackedBatch, SyntheticFlowers};
    use petal::models::convnext::ConvNeXtConfig;
    use petal::models::{BackboneConfig, ClassifierConfig, HeadConfig};
    use petal::trainer::FineTuneConfig;
    use petal::trainer::optim::build_optimizer;
    use petal::trainer::train::{StepContext, apply_step, forward_backward, train_step};

    // ConvNeXt (LayerNorm, no BatchNorm), no stochastic depth, no dropout: the only
    // difference between one batch of 8 and two accumulated batches of 4 is float order.
    let backbone = BackboneConfig::ConvNeXt(ConvNeXtConfig {
        dims: vec![8, 16],
        depths: vec![1, 1],
        stochastic_depth_prob: 0.0,
        layer_scale: 0.5,
    });
    let head = HeadConfig::Linear {
        dropout: 0.0,
        layer_norm: true,
        hidden: None,
    };
    let device = Device::flex().autodiff();
    let model = ClassifierConfig::new(backbone, head, 3).init(&device);
    let config = FineTuneConfig::default();
    let pipe = Pipeline::train(
        AugmentConfig {
            size: 32,
            ..AugmentConfig::default()
        },
        5,
    );
    let flowers = SyntheticFlowers::new(3, 48, 9);
    let pack = |range: std::ops::Range<usize>| {
        let mut b = PackedBatch::default();
        for i in range {
            let (img, label) = flowers.sample(i as u64);
            b.push(&img, label, i);
        }
        b
    };
    let ctx = StepContext {
        pipeline: &pipe,
        dtype: burn::tensor::DType::F32,
        device: &device,
        label_smoothing: 0.1,
        class_weights: None,
        grad_clip: Some(1.0),
    };
    let lr = 1e-2;
    let mut optim = build_optimizer(&config, &model);
    let (one, _) = train_step(
        model.clone(),
        &pack(0..8),
        0,
        &mut optim,
        lr,
        &ctx,
        &mut |_| {},
    );

    let mut optim = build_optimizer(&config, &model);
    let mut acc = burn::optim::GradientsAccumulator::new();
    for half in [0..4, 4..8] {
        let (g, _, _) = forward_backward(&model, &pack(half), 0, &ctx, 0.5, &mut |_| {});
        acc.accumulate(&model, g);
    }
    let two = apply_step(
        model.clone(),
        acc.grads(),
        &mut optim,
        lr,
        &ctx,
        &mut |_| {},
    );

    #[derive(Default)]
    struct All(Vec<Vec<f32>>);
    impl ModuleVisitor for All {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            let v = p.val().into_data().convert::<f32>().try_to_vec::<f32>();
            self.0.push(v.unwrap());
        }
    }
    let (mut a, mut b, mut before) = (All::default(), All::default(), All::default());
    one.visit(&mut a);
    two.visit(&mut b);
    model.visit(&mut before);
    let (mut worst, mut moved) = (0f32, 0usize);
    for ((x, y), z) in a.0.iter().zip(&b.0).zip(&before.0) {
        for ((x, y), z) in x.iter().zip(y).zip(z) {
            worst = worst.max((x - y).abs());
            moved += usize::from((x - z).abs() > 1e-4);
        }
    }
    println!("accumulation vs one batch: max |Δparam| {worst:e}, {moved} values moved");
    assert!(moved > 100, "the step moved the weights");
    assert!(worst < 1e-5, "accumulated step differs by {worst:e}");
}

#[test]
fn soft_target_loss_with_mixed_targets_is_timms() {
    use petal::data::mix::mixed_targets;
    use petal::trainer::train::soft_target_cross_entropy;
    let device = Device::flex();
    let logits = [[2.0f64, 0.0, -1.0], [0.5, 1.5, 0.0], [-0.3, 0.2, 2.2]];
    let labels = [0usize, 2, 1];
    let (lambda, eps) = (0.7f32, 0.1f32);
    let t = mixed_targets(&labels, 3, lambda, eps);
    // timm: SoftTargetCrossEntropy(x, mixup_target(y, K, λ, ε)), by hand in f64.
    let mut want = 0.0;
    for (i, z) in logits.iter().enumerate() {
        let lse = z.iter().map(|v| v.exp()).sum::<f64>().ln();
        for c in 0..3 {
            want -= t[i * 3 + c] as f64 * (z[c] - lse);
        }
    }
    want /= 3.0;
    let x = logits_tensor(&logits, &device);
    let tt = Tensor::<2>::from_data(TensorData::new(t, [3, 3]), &device);
    let got: f32 = soft_target_cross_entropy(x.clone(), tt).into_scalar();
    assert!((got as f64 - want).abs() < 1e-6, "{got} vs {want}");
    // λ = 1: the smoothed hard-label loss.
    let t1 = mixed_targets(&labels, 3, 1.0, eps);
    let t1 = Tensor::<2>::from_data(TensorData::new(t1, [3, 3]), &device);
    let y = Tensor::<1, Int>::from_data(TensorData::new(vec![0i64, 2, 1], [3]), &device);
    let a: f32 = soft_target_cross_entropy(x.clone(), t1).into_scalar();
    let b: f32 = cross_entropy_loss(x, y, eps as f64).into_scalar();
    assert!((a - b).abs() < 1e-6, "{a} vs {b}");
}

#[test]
fn weighted_soft_target_loss_reduces_to_pytorchs_and_mixes_by_hand() {
    use petal::data::mix::mixed_targets;
    use petal::trainer::train::weighted_soft_target_cross_entropy;
    let device = Device::flex();
    let (logits, labels, w) = (LOGITS, LABELS, WEIGHTS);
    let (x, y, wt) = case_tensors(&device);
    let targets = |lambda: f32, eps: f32| {
        let t = mixed_targets(&labels, 3, lambda, eps);
        Tensor::<2>::from_data(TensorData::new(t, [4, 3]), &device)
    };
    // λ = 1 (smoothed one-hot): PyTorch's weighted, smoothed cross-entropy.
    for eps in [0.0f32, 0.1] {
        let got: f32 = weighted_soft_target_cross_entropy(
            x.clone(),
            targets(1.0, eps),
            Some((&wt, y.clone())),
        )
        .into_scalar();
        let want = torch_weighted_ce(&logits, &labels, &w, eps as f64);
        assert!(
            (got as f64 - want).abs() < 1e-6,
            "eps {eps}: {got} vs {want}"
        );
    }
    // λ = 0.7, ε = 0.1: −Σᵢ Σ_c w_c·t_ic·log p_ic / Σᵢ w_yᵢ, by hand in f64.
    let t = mixed_targets(&labels, 3, 0.7, 0.1);
    let (mut num, mut den) = (0.0, 0.0);
    for (i, z) in logits.iter().enumerate() {
        let lse = z.iter().map(|v: &f64| v.exp()).sum::<f64>().ln();
        for c in 0..3 {
            num -= w[c] * t[i * 3 + c] as f64 * (z[c] - lse);
        }
        den += w[labels[i]];
    }
    let got: f32 = weighted_soft_target_cross_entropy(x.clone(), targets(0.7, 0.1), Some((&wt, y)))
        .into_scalar();
    assert!(
        (got as f64 - num / den).abs() < 1e-6,
        "{got} vs {}",
        num / den
    );
}

/// A step runs on whichever rayon thread is free (`on_cpu_pool`); Burn keeps a BatchNorm's
/// running-statistics update pending per thread until a sync that averages every thread's
/// pending value, so the step must commit its own updates before it returns: the plain
/// (unsynced) running mean must already be the momentum update of the batch mean.
#[test]
fn a_step_commits_batchnorm_running_statistics() {
    use petal::data::augment::{AugmentConfig, Pipeline};
    use petal::data::{PackedBatch, SyntheticFlowers};
    use petal::models::{Backbone, ClassifierConfig, HeadConfig};
    use petal::trainer::train::{StepContext, forward_backward};

    let device = Device::flex().autodiff();
    let model = ClassifierConfig::new(crate::common::tiny_densenet(&[1]), HeadConfig::seed(), 3)
        .init(&device);
    let pipe = Pipeline::train(
        AugmentConfig {
            size: 32,
            ..AugmentConfig::default()
        },
        5,
    );
    let flowers = SyntheticFlowers::new(3, 48, 9);
    let mut batch = PackedBatch::default();
    for i in 0..4 {
        let (img, label) = flowers.sample(i);
        batch.push(&img, label, i as usize);
    }
    let ctx = StepContext {
        pipeline: &pipe,
        dtype: burn::tensor::DType::F32,
        device: &device,
        label_smoothing: 0.0,
        class_weights: None,
        grad_clip: None,
    };
    let Backbone::DenseNet(d) = &model.backbone else {
        unreachable!()
    };
    let before = crate::common::values(d.norm0.running_mean.value());
    assert!(before.iter().all(|&v| v == 0.0), "fresh running mean");
    // The batch mean of norm0's input, by Burn's own ops on the same augmented batch.
    let (x, _) = pipe.apply_mixed(&batch, 0, burn::tensor::DType::F32, &device);
    let conv0 = d.conv0.forward(x.inner());
    let batch_mean =
        crate::common::values(conv0.mean_dim(0).mean_dim(2).mean_dim(3).flatten::<1>(0, 3));
    drop(forward_backward(&model, &batch, 0, &ctx, 1.0, &mut |_| {}));
    let after = crate::common::values(d.norm0.running_mean.value());
    let want: Vec<f32> = batch_mean.iter().map(|m| 0.1 * m).collect();
    crate::common::assert_close(&after, &want, 1e-5, "norm0 running mean after one step");
}
