//! Weight import: architecture inference, backbone-only loading, clear refusals.

use crate::common::*;
use petal::models::densenet::DenseNetConfig;
use petal::models::mobilenet_v2::MobileNetV2Config;
use petal::models::weights::{
    HeadPolicy, StateDict, load_classifier, load_pretrained_backbone, load_state_dict,
};
use petal::models::{BackboneConfig, ClassifierConfig, CoreError, HeadConfig};

#[test]
fn infers_densenet_config_from_both_formats() {
    let m = manifest_entry("densenet_tiny");
    let blocks: Vec<usize> = m["block_config"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let want = DenseNetConfig::new(
        m["growth_rate"].as_u64().unwrap() as usize,
        blocks,
        m["num_init_features"].as_u64().unwrap() as usize,
    )
    .with_bn_size(m["bn_size"].as_u64().unwrap() as usize);
    for file in ["densenet_tiny.pth", "densenet_tiny_legacy.pth"] {
        let sd = StateDict::read(fixture(file)).unwrap();
        let (backbone, head) = sd.infer().unwrap();
        assert_eq!(backbone, BackboneConfig::DenseNet(want.clone()), "{file}");
        let (head, classes) = head.unwrap();
        assert_eq!(head, HeadConfig::linear(0.0));
        assert_eq!(classes, m["num_classes"].as_u64().unwrap() as usize);
        // Legacy `norm.1` keys come out in the modern spelling, without num_batches_tracked.
        assert!(
            sd.keys()
                .any(|k| k == "features.denseblock1.denselayer1.norm1.weight")
        );
        assert!(
            !sd.keys()
                .any(|k| k.contains("num_batches_tracked") || k.contains("norm.1"))
        );
    }
}

#[test]
fn infers_mobilenet_width_and_seed_head() {
    let sd = StateDict::read(fixture("mobilenet_v2_w025_legacy.pth")).unwrap();
    let (backbone, head) = sd.infer().unwrap();
    assert_eq!(
        backbone,
        BackboneConfig::MobileNetV2(MobileNetV2Config::new().with_width_mult(0.25))
    );
    assert_eq!(head.unwrap().1, 10);

    let sd = StateDict::read(fixture("densenet_tiny_seedhead.pth")).unwrap();
    let (_, head) = sd.infer().unwrap();
    let (head, classes) = head.unwrap();
    assert!(matches!(head, HeadConfig::ConcatPool { ref hidden, .. } if hidden == &vec![32]));
    assert_eq!(classes, 5);
}

#[test]
fn backbone_only_load_keeps_a_fresh_head_and_exact_features() {
    let device = flex();
    let backbone = StateDict::read(fixture("densenet_tiny.pth"))
        .unwrap()
        .infer()
        .unwrap()
        .0;
    // The seed's head on 7 new classes; the file's 10-class linear classifier is ignored.
    let config = ClassifierConfig::new(backbone, HeadConfig::seed(), 7);
    let sd = StateDict::read(fixture("densenet_tiny_legacy.pth")).unwrap();
    let (model, report) = load_pretrained_backbone(&sd, &config, &device).unwrap();
    assert!(report.head_fresh);
    assert_eq!(
        report.head_ignored, 2,
        "classifier.weight and classifier.bias"
    );
    assert_eq!(model.num_classes(), 7);
    let model = burn::module::Module::valid(&model);
    let f = values(model.forward_features(tensor4("densenet_tiny_input", &device)));
    let (_, want) = f32s("densenet_tiny_features");
    assert_close(&f, &want, 1e-4, "features after backbone-only load");
    let [n, c] = model
        .forward(tensor4("densenet_tiny_input", &device))
        .dims();
    assert_eq!((n, c), (2, 7));
}

#[test]
fn an_explicit_arch_that_contradicts_the_file_names_both() {
    for (file, arch, found) in [
        ("densenet_tiny.pth", "mobilenet_v2", "densenet(k=8"),
        (
            "mobilenet_v2_w025.pth",
            "densenet161",
            "mobilenet_v2(width=0.25)",
        ),
    ] {
        let err = load_classifier(fixture(file), Some(arch), &flex())
            .expect_err("a contradicting --arch must be refused");
        let msg = err.to_string();
        assert!(matches!(err, CoreError::ArchContradicts { .. }), "{msg}");
        assert!(msg.contains(&format!("--arch {arch} contradicts")), "{msg}");
        assert!(msg.contains(file), "{msg}");
        assert!(msg.contains(&format!("which hold {found}")), "{msg}");
    }
    // `auto` and the matching name both load.
    let sd = StateDict::read(fixture("mobilenet_v2_w025.pth")).unwrap();
    let want = BackboneConfig::MobileNetV2(MobileNetV2Config::new().with_width_mult(0.25));
    assert_eq!(sd.backbone_for(None).unwrap(), want);
    assert_eq!(sd.backbone_for(Some("auto")).unwrap(), want);
    let err = sd.backbone_for(Some("resnet51")).unwrap_err();
    assert!(
        err.to_string().contains("unknown architecture `resnet51`"),
        "{err}"
    );
}

#[test]
fn a_mismatch_report_names_keys_as_torchvision_writes_them() {
    // A DenseNet file forced into a MobileNetV2 model: every key is listed in the file's
    // own (torchvision) spelling, never petal's module paths.
    let sd = StateDict::read(fixture("densenet_tiny.pth")).unwrap();
    let backbone = BackboneConfig::MobileNetV2(MobileNetV2Config::new().with_width_mult(0.25));
    let model = ClassifierConfig::torchvision(backbone.clone(), 10).init(&flex());
    let Err(err) = load_state_dict(model, &backbone, &sd, HeadPolicy::Load) else {
        panic!("a DenseNet file must not load into MobileNetV2");
    };
    let msg = err.to_string();
    assert!(matches!(err, CoreError::Mismatch { .. }), "{msg}");
    assert!(msg.contains("missing from the file"), "{msg}");
    assert!(msg.contains("unexpected in the file"), "{msg}");
    // Missing (MobileNetV2's torchvision names, BatchNorm `weight`, not petal's `gamma`).
    assert!(msg.contains("features.0.0.weight"), "{msg}");
    assert!(msg.contains("features.0.1.weight"), "{msg}");
    // Unexpected (the DenseNet file's names).
    assert!(msg.contains("features.conv0.weight"), "{msg}");
    assert!(
        !msg.contains("backbone.") && !msg.contains("gamma"),
        "{msg}"
    );
    assert!(msg.contains("… and"), "lists only the first few: {msg}");

    // Shapes: the tiny DenseNet file into a DenseNet-121.
    let d121 = BackboneConfig::from_name("densenet121").unwrap();
    let model = ClassifierConfig::torchvision(d121.clone(), 10).init(&flex());
    let Err(err) = load_state_dict(model, &d121, &sd, HeadPolicy::Load) else {
        panic!("must be refused");
    };
    let msg = err.to_string();
    assert!(msg.contains("shape mismatches"), "{msg}");
    assert!(
        msg.contains("features.conv0.weight: model expects [64, 3, 7, 7], file has [16, 3, 7, 7]"),
        "{msg}"
    );
    assert!(
        msg.contains("features.denseblock1.denselayer1.norm1.weight"),
        "a missing layer in torchvision's spelling: {msg}"
    );
}

#[test]
fn non_finite_weights_are_refused_naming_the_tensor_and_count() {
    // scripts/poison_state_dict.py: densenet_tiny.pth with 3 NaN + 1 inf in
    // features.conv0.weight and one -inf in features.norm5.running_var.
    let err = StateDict::read(fixture("densenet_tiny_nan.pth"))
        .err()
        .expect("NaN weights must be refused");
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            CoreError::NonFinite {
                count: 4,
                tensors: 2,
                ..
            }
        ),
        "{msg}"
    );
    assert!(
        msg.contains(
            "tensor `features.conv0.weight` has 4 non-finite value(s) (NaN or ±inf) among 2352 (2 tensors are affected)"
        ),
        "{msg}"
    );
    assert!(msg.contains("densenet_tiny_nan.pth"), "{msg}");
}

#[test]
fn unreadable_and_foreign_files_give_clear_errors() {
    let dir = std::env::temp_dir().join(format!("petal-weights-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let garbage = dir.join("garbage.pth");
    std::fs::write(&garbage, b"this is not a pickle").unwrap();
    let err = StateDict::read(&garbage).err().unwrap();
    assert!(matches!(err, CoreError::Read { .. }), "{err}");
    assert!(err.to_string().contains("garbage.pth"), "{err}");

    let missing = StateDict::read(dir.join("nope.pth")).err().unwrap();
    assert!(missing.to_string().contains("no such file"), "{missing}");
    std::fs::remove_dir_all(&dir).unwrap();
}
