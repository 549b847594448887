//! The fine-tune recipe end to end on Flex (a tiny DenseNet on a generated folder), the
//! schedule against its closed form, checkpoints, and one wgpu smoke run.

use crate::common::wgpu;
use burn::module::{Module, ModuleVisitor, Param, ParamGroup};
use burn::tensor::Tensor;
use petal::data::SyntheticFlowers;
use petal::data::augment::AugmentConfig;
use petal::trainer::checkpoint::{Checkpoint, Header};
use petal::trainer::config::Schedule;
use petal::trainer::metrics::read_metrics;
use petal::trainer::schedule::{PhaseCurve, group_factor, phase_scheduler};
use petal::trainer::{EvalOptions, FineTuneConfig, StopReason, TrainOptions};
use petal_core::densenet::DenseNetConfig;
use petal_core::{BackboneConfig, Classifier};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("petal-trainer-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// An ImageFolder of synthetic flowers (3 classes), with bad files in `train/`: a
/// zero-byte `.jpg` and a truncated JPEG (refused by the scan), a PNG with corrupt pixel
/// data (refused at batch time) and an empty class folder `4` (left out).
fn flower_folder(root: &Path, per_class_train: usize, per_class_valid: usize) {
    let f = SyntheticFlowers::new(3, 40, 7);
    let mut i = 0u64;
    for (split, n) in [("train", per_class_train), ("valid", per_class_valid)] {
        let mut count = [0usize; 3];
        while count.iter().any(|&c| c < n) {
            let (img, label) = f.sample(i);
            i += 1;
            if count[label] >= n {
                continue;
            }
            count[label] += 1;
            let dir = root.join(split).join(format!("{}", label + 1));
            std::fs::create_dir_all(&dir).unwrap();
            img.save(dir.join(format!("img{i}.png"))).unwrap();
        }
    }
    std::fs::write(root.join("train/1/empty.jpg"), b"").unwrap();
    let mut jpeg = Vec::new();
    image::RgbImage::from_pixel(40, 40, image::Rgb([200, 10, 10]))
        .write_to(
            &mut std::io::Cursor::new(&mut jpeg),
            image::ImageFormat::Jpeg,
        )
        .unwrap();
    jpeg.truncate(jpeg.len() / 2);
    std::fs::write(root.join("train/2/truncated.jpg"), jpeg).unwrap();
    let fx = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    std::fs::copy(
        fx.join("corrupt_idat.png"),
        root.join("train/2/z_corrupt.png"),
    )
    .unwrap();
    std::fs::create_dir_all(root.join("train/4")).unwrap();
}

/// File names of a run's skipped images.
fn skipped_names(out: &petal::trainer::TrainOutcome) -> Vec<String> {
    let mut names: Vec<String> = out
        .skipped
        .iter()
        .map(|(p, _)| {
            Path::new(p)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

fn tiny_config(data: &Path) -> FineTuneConfig {
    FineTuneConfig {
        data: Some(data.to_path_buf()),
        backbone: Some(BackboneConfig::DenseNet(DenseNetConfig {
            growth_rate: 4,
            block_config: vec![2, 2],
            num_init_features: 8,
            bn_size: 2,
            drop_rate: 0.0,
        })),
        hidden: vec![16],
        freeze_epochs: 1,
        epochs: 2,
        batch_size: 4,
        lr: 1e-2,
        lr_mult: 10.0,
        warmup: 0.25,
        augment: AugmentConfig {
            size: 32,
            ..AugmentConfig::default()
        },
        device: "cpu".into(),
        seed: 3,
        ..FineTuneConfig::default()
    }
}

/// Named float tensors of a model (module path → values).
fn weights(model: &Classifier) -> BTreeMap<String, Vec<f32>> {
    #[derive(Default)]
    struct W {
        path: Vec<String>,
        out: BTreeMap<String, Vec<f32>>,
    }
    impl ModuleVisitor for W {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            let v = p.val().into_data().try_to_vec::<f32>().unwrap();
            self.out.insert(self.path.join("."), v);
        }
    }
    let mut w = W::default();
    model.visit(&mut w);
    w.out
}

fn load(path: &Path) -> Classifier {
    let c = Checkpoint::read(path).unwrap();
    c.load_model(path, &burn::tensor::Device::flex()).unwrap()
}

#[test]
fn fine_tune_recipe_on_a_folder() {
    let root = tmpdir("recipe");
    let data = root.join("data");
    flower_folder(&data, 8, 4);
    let run = root.join("run");
    let config = tiny_config(&data);

    // Phase 1 in two pieces: stop after one step, then resume to the end of phase 1.
    let mut opts = TrainOptions::new(&run);
    opts.verbose = false;
    opts.stop_at_step = Some(1);
    let out = petal::trainer::train(&config, &opts).unwrap();
    assert_eq!(out.stop, StopReason::Interrupted { step: 1 });
    let after_one = weights(&load(&run.join("last.ckpt")));

    let phase1 = FineTuneConfig {
        epochs: 0,
        ..config.clone()
    };
    opts.stop_at_step = None;
    opts.resume = true;
    let out = petal::trainer::train(&phase1, &opts).unwrap();
    assert_eq!(out.stop, StopReason::Finished);
    // The scan's bad files were skipped and the empty class left out; the run went on.
    // (The file failing at batch time may lie in the batch done before the interruption.)
    let names = skipped_names(&out);
    assert!(
        names.contains(&"empty.jpg".to_string()) && names.contains(&"truncated.jpg".to_string()),
        "{:?}",
        out.skipped
    );
    assert_eq!(out.classes_left_out.len(), 1, "{:?}", out.classes_left_out);
    assert!(out.classes_left_out[0].0.ends_with("4"));
    let after_phase1 = weights(&load(&run.join("last.ckpt")));
    // Frozen: every backbone conv weight is bit-identical between step 1 and the end of
    // phase 1; the head and (train_bn) the backbone's BatchNorm γ changed.
    let mut frozen = 0;
    for (name, v) in &after_one {
        if name.starts_with("backbone.") && name.contains("conv") {
            assert_eq!(v, &after_phase1[name], "{name} changed while frozen");
            frozen += 1;
        }
    }
    assert!(frozen >= 5, "{frozen} conv tensors checked");
    assert_ne!(
        after_one["head.ConcatPool.blocks.0.fc.weight"],
        after_phase1["head.ConcatPool.blocks.0.fc.weight"]
    );
    assert_ne!(
        after_one["backbone.DenseNet.norm5.gamma"],
        after_phase1["backbone.DenseNet.norm5.gamma"]
    );

    // Phase 2: everything unfreezes and changes. Over its two epochs the file that fails
    // at batch time is named once; the run used exactly the 24 usable flowers.
    let out = petal::trainer::train(&config, &opts).unwrap();
    assert_eq!(out.stop, StopReason::Finished);
    assert_eq!(
        skipped_names(&out),
        ["empty.jpg", "truncated.jpg", "z_corrupt.png"],
        "{:?}",
        out.skipped
    );
    assert_eq!(out.images_used, (24, 12));
    let after_phase2 = weights(&load(&run.join("last.ckpt")));
    for name in [
        "backbone.DenseNet.conv0.weight",
        "backbone.DenseNet.blocks.0.layers.0.conv1.weight",
    ] {
        assert_ne!(
            after_phase1[name], after_phase2[name],
            "{name} did not train"
        );
    }

    // Loss decreases; the log has all epochs, the files exist.
    let records = read_metrics(&run).unwrap();
    assert_eq!(records.len(), 3);
    // curves.png's per-step learning rates end each epoch on the value the scheduler used.
    let bpe = records[0].step as usize;
    let per_step = petal::trainer::train::head_lr_steps(&config, 3, bpe);
    assert_eq!(per_step.len(), 3 * bpe);
    for r in &records {
        let (x, lr) = per_step[r.epoch * bpe - 1];
        assert_eq!(x, r.epoch as f64);
        assert!(
            (lr - r.lr).abs() <= 1e-9 * r.lr.abs().max(1e-12),
            "{lr} vs {}",
            r.lr
        );
    }
    // Training lowers the loss below the first epoch's. (A later epoch, not necessarily the
    // last: on 3 tiny epochs the unfrozen phase's first steps can raise it again, and the
    // test threads running beside this one perturb the dropout draws and rayon's summation
    // order, so the exact values vary from run to run.)
    let later = records[1..]
        .iter()
        .map(|r| r.train_loss)
        .fold(f64::MAX, f64::min);
    assert!(
        later < records[0].train_loss,
        "train loss {} -> best later {} ({:?})",
        records[0].train_loss,
        later,
        records
            .iter()
            .map(|r| (r.train_loss, r.valid_loss, r.valid_top1))
            .collect::<Vec<_>>()
    );
    for f in [
        "config.json",
        "classes.json",
        "metrics.csv",
        "curves.png",
        "best.ckpt",
    ] {
        assert!(run.join(f).is_file(), "{f} missing");
    }
    let classes = std::fs::read_to_string(run.join("classes.json")).unwrap();
    assert!(
        classes.contains("\"1\"") && classes.contains("\"3\""),
        "{classes}"
    );

    // Learning rates at each epoch's last step are the closed form: 3 groups, factors
    // 1/10, 1/sqrt(10), 1 (steps per epoch read from the log).
    let bpe = records[0].step as usize;
    let closed = |peak: f64, total: usize, t: usize| -> f64 {
        let w = ((0.25 * total as f64).round() as usize).min(total - 1);
        let start = peak / 25.0;
        if t < w {
            start + (peak - start) / w as f64 * t as f64
        } else {
            let x = (t - w) as f64 / (total - w) as f64;
            0.5 * peak * (1.0 + (std::f64::consts::PI * x).cos())
        }
    };
    for (r, (total, t)) in
        records
            .iter()
            .zip([(bpe, bpe - 1), (2 * bpe, bpe - 1), (2 * bpe, 2 * bpe - 1)])
    {
        for (g, lr) in r.lrs.iter().enumerate() {
            let want = closed(1e-2 * group_factor(g, 3, 10.0), total, t);
            assert!(
                (lr - want).abs() <= 1e-12 * want.max(1e-12) + 1e-15,
                "epoch {} group {g}: {lr} vs {want}",
                r.epoch
            );
        }
    }

    // The best checkpoint reloads to the metrics recorded for its epoch.
    let best = records
        .iter()
        .max_by(|a, b| {
            a.valid_top1
                .total_cmp(&b.valid_top1)
                .then(b.epoch.cmp(&a.epoch))
        })
        .unwrap();
    let report = petal::trainer::evaluate(&EvalOptions {
        worst: 3,
        ..EvalOptions::new(run.clone())
    })
    .unwrap();
    assert_eq!(report.images, 12);
    assert_eq!(report.top1, best.valid_top1);
    assert!(
        (report.loss - best.valid_loss).abs() < 1e-9,
        "{} vs {}",
        report.loss,
        best.valid_loss
    );
    assert_eq!(report.worst.len(), 3);
    assert!(run.join("confusion.csv").is_file() && run.join("confusion.png").is_file());
}

#[test]
fn scheduler_groups_follow_the_closed_form() {
    // Burn's schedulers (linear warmup → cosine, per group) against PhaseCurve::lr_at and a
    // hand-written formula.
    let device = burn::tensor::Device::flex();
    let model = petal_core::ClassifierConfig::new(
        crate::common::tiny_densenet(&[1, 1]),
        petal_core::HeadConfig::seed(),
        3,
    )
    .init(&device);
    let groups: Vec<ParamGroup> = model.layer_groups().into_iter().map(|g| g.params).collect();
    struct First(Vec<burn::module::ParamId>);
    impl ModuleVisitor for First {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            self.0.push(p.id);
        }
    }
    let mut ids = First(Vec::new());
    model.visit(&mut ids);
    let probe: Vec<_> = groups
        .iter()
        .map(|g| *ids.0.iter().find(|id| g.matches(id, None)).unwrap())
        .collect();
    for schedule in [Schedule::Cosine, Schedule::OneCycle] {
        let head = PhaseCurve::new(schedule, 4e-3, 1e-5, 40, 0.1);
        let factors: Vec<f64> = (0..3).map(|g| group_factor(g, 3, 100.0)).collect();
        let mut s = phase_scheduler(&head, &groups, &factors).unwrap();
        for t in 0..40 {
            let lrs = s.step();
            for g in 0..3 {
                let got = lrs.lr_from_param(probe[g], None);
                let want = head.scaled(factors[g]).lr_at(t);
                assert!(
                    (got - want).abs() <= 1e-12 * want,
                    "{schedule:?} t={t} g={g}: {got} vs {want}"
                );
            }
        }
    }
    // Hand-computed: warmup 4 steps from 4e-3/25; step 2 = 1.6e-4 + (4e-3 - 1.6e-4)/4·2.
    let c = PhaseCurve::new(Schedule::Cosine, 4e-3, 1e-5, 40, 0.1);
    assert!((c.lr_at(2) - 2.08e-3).abs() < 1e-15);
    assert!((c.lr_at(4) - 4e-3).abs() < 1e-15);
    // Half way through the cosine (t = 4 + 18): (4e-3 + 1e-5) / 2.
    assert!((c.lr_at(22) - 2.005e-3).abs() < 1e-15);
}

#[test]
fn checkpoint_is_atomic_and_rejects_damage() {
    let root = tmpdir("ckpt");
    let device = burn::tensor::Device::flex();
    let config = petal_core::ClassifierConfig::new(
        crate::common::tiny_densenet(&[1]),
        petal_core::HeadConfig::seed(),
        2,
    );
    let model = config.init(&device);
    let path = root.join("last.ckpt");
    let ckpt = Checkpoint::new(
        &config,
        &model,
        Default::default(),
        vec![("x".into(), vec![1, 2, 3])],
    )
    .unwrap();
    ckpt.write(&path).unwrap();
    // No temporary file is left next to it.
    let names: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("last.ckpt")]);
    let back = Checkpoint::read(&path).unwrap();
    assert_eq!(back.section("x"), Some(&[1u8, 2, 3][..]));
    assert_eq!(
        weights(&back.load_model(&path, &device).unwrap()),
        weights(&model)
    );
    // The header alone reads the same as the whole file's.
    let header = Header::read(&path).unwrap();
    assert_eq!(header.state, back.header.state);
    assert_eq!(header.sections, back.header.sections);
    // Truncation anywhere is refused with the file named (by the header-only read too
    // where the cut reaches into the header).
    let bytes = std::fs::read(&path).unwrap();
    for cut in [4, 20, bytes.len() - 1] {
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let err = Checkpoint::read(&path)
            .err()
            .expect("a damaged checkpoint is refused")
            .to_string();
        assert!(err.contains("last.ckpt"), "{err}");
        if cut < 20 {
            let err = Header::read(&path).unwrap_err().to_string();
            assert!(
                err.contains("last.ckpt") && err.contains("not a petal checkpoint"),
                "{err}"
            );
        } else if cut == 20 {
            let err = Header::read(&path).unwrap_err().to_string();
            assert!(err.contains("truncated header"), "{err}");
        }
    }
    // A checkpoint of another architecture is refused with the mismatched keys listed.
    let other = petal_core::ClassifierConfig::new(
        config.backbone.clone(),
        petal_core::HeadConfig::seed(),
        5,
    )
    .init(&device);
    Checkpoint::new(&config, &other, Default::default(), vec![])
        .unwrap()
        .write(&path)
        .unwrap();
    let err = Checkpoint::read(&path)
        .unwrap()
        .load_model(&path, &device)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("fc"), "{err}");
}

#[test]
fn fine_tune_smoke_wgpu() {
    // Two steps per phase on the wgpu adapter (lavapipe in CI): fused augmentation and
    // the fused concat-pool inside autodiff, AdamW, checkpoint, validation.
    drop(wgpu()); // fails (never skips) without an adapter
    let root = tmpdir("wgpu");
    let data = root.join("data");
    flower_folder(&data, 3, 2);
    let config = FineTuneConfig {
        device: "wgpu".into(),
        batch_size: 4,
        epochs: 1,
        ..tiny_config(&data)
    };
    let mut opts = TrainOptions::new(root.join("run"));
    opts.verbose = false;
    let out = petal::trainer::train(&config, &opts).unwrap();
    assert_eq!(out.records.len(), 2);
    for r in &out.records {
        assert!(
            r.train_loss.is_finite() && r.valid_loss.is_finite(),
            "{r:?}"
        );
    }
    assert!(root.join("run/best.ckpt").is_file());

    // --precision f16: parameters, activations and AdamW state in f16; the checkpoint
    // records it and reloads (widened to f32) for evaluation.
    let f16 = FineTuneConfig {
        precision: petal::trainer::Precision::F16,
        epochs: 0,
        ..config
    };
    let mut opts = TrainOptions::new(root.join("run16"));
    opts.verbose = false;
    let out = petal::trainer::train(&f16, &opts).unwrap();
    assert!(out.records[0].train_loss.is_finite(), "{:?}", out.records);
    let ckpt = Checkpoint::read(&root.join("run16/last.ckpt")).unwrap();
    assert!(ckpt.header.f16);
    // Evaluated in f32 from the f16 weights: the same images, at most one prediction moved.
    let report = petal::trainer::evaluate(&EvalOptions::new(root.join("run16"))).unwrap();
    assert_eq!(report.images, 6);
    assert!((report.top1 - out.records[0].valid_top1).abs() <= 1.0 / 6.0 + 1e-9);
}
