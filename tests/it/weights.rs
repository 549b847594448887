//! Weight import: architecture inference, backbone-only loading, clear refusals.

use crate::common::*;
use petal::models::densenet::DenseNetConfig;
use petal::models::mobilenet_v2::MobileNetV2Config;
use petal::models::weights::{StateDict, load_classifier, load_pretrained_backbone};
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
        assert_eq!(head, HeadConfig::Linear { dropout: 0.0 });
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
    let (model, report) =
        load_pretrained_backbone(fixture("densenet_tiny_legacy.pth"), &config, &device).unwrap();
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
fn wrong_architecture_is_refused_with_the_mismatched_keys() {
    let err = load_classifier(fixture("densenet_tiny.pth"), Some("mobilenet_v2"), &flex())
        .expect_err("a DenseNet file must not load into MobileNetV2");
    let msg = err.to_string();
    assert!(matches!(err, CoreError::Mismatch { .. }), "{msg}");
    assert!(msg.contains("missing from the file"), "{msg}");
    assert!(msg.contains("unexpected in the file"), "{msg}");
    assert!(
        msg.contains("features.conv0.weight"),
        "names the unexpected torchvision key: {msg}"
    );
    assert!(msg.contains("… and"), "lists only the first few: {msg}");
}

#[test]
fn wrong_shapes_are_refused_with_the_mismatches_listed() {
    // The tiny DenseNet file into a DenseNet-121: every key exists in part, shapes differ.
    let err = load_classifier(fixture("densenet_tiny.pth"), Some("densenet121"), &flex())
        .expect_err("must be refused");
    let msg = err.to_string();
    assert!(msg.contains("shape mismatches"), "{msg}");
    assert!(
        msg.contains("features.conv0.weight: model expects [64, 3, 7, 7], file has [16, 3, 7, 7]"),
        "{msg}"
    );
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
