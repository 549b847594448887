//! Recipe levers of issue 14: the class-weighted cross-entropy against PyTorch's formula
//! computed by hand, `--class-weights` resolution, and the balanced sampler's frequencies.

use burn::prelude::*;
use petal::data::{ClassList, Loader, LoaderConfig, Sample, Source};
use petal::trainer::data::class_weights;
use petal::trainer::train::{cross_entropy_loss, weighted_cross_entropy_loss};

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

#[test]
fn weighted_cross_entropy_is_pytorchs() {
    let device = Device::flex();
    let logits = [
        [2.0, 0.0, -1.0],
        [0.5, 1.5, 0.0],
        [-0.3, 0.2, 2.2],
        [1.0, 1.0, 1.0],
    ];
    let labels = [0usize, 1, 2, 1];
    let w = [1.0, 2.0, 0.5];
    let x = Tensor::<2>::from_data(
        TensorData::new(
            logits
                .iter()
                .flatten()
                .map(|&v| v as f32)
                .collect::<Vec<_>>(),
            [4, 3],
        ),
        &device,
    );
    let y = Tensor::<1, Int>::from_data(
        TensorData::new(labels.iter().map(|&l| l as i64).collect::<Vec<_>>(), [4]),
        &device,
    );
    let wt = Tensor::<1>::from_data(TensorData::new(w.map(|v| v as f32).to_vec(), [3]), &device);
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
