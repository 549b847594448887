//! The model zoo against torchvision: every family's fixture (small random configurations
//! with non-trivial BatchNorm / LayerNorm / layer-scale values, `scripts/make_zoo_fixtures.py`)
//! is read from `.pth` (zip and legacy) and `.safetensors` with `--arch auto`, and its
//! features and logits match PyTorch's to ≤ 1e-4 relative on Flex and wgpu (lavapipe).
//!
//! `PETAL_ZOO_DIR=DIR` points the same tests at another fixture set: the full-size presets
//! (`scripts/make_zoo_fixtures.py --full --out DIR`, not committed) are checked that way by
//! `scripts/check-zoo-full.sh`.

use crate::common::*;
use burn::module::Module;
use burn::prelude::*;
use petal::models::classifier::num_parameters;
use petal::models::weights::{StateDict, load_classifier};
use petal::models::{BackboneConfig, Classifier};
use std::path::PathBuf;

const TOL: f32 = 1e-4;

fn zoo_dir() -> PathBuf {
    std::env::var_os("PETAL_ZOO_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| fixture("zoo"))
}

fn models() -> Vec<serde_json::Value> {
    let path = zoo_dir().join("manifest.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let m: serde_json::Value = serde_json::from_str(&text).expect("zoo manifest is JSON");
    let models = m["models"].as_array().expect("`models` list").clone();
    assert!(!models.is_empty(), "{}: no models", path.display());
    models
}

fn f32_file(name: &str) -> Vec<f32> {
    std::fs::read(zoo_dir().join(name))
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn shape(v: &serde_json::Value) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect()
}

fn input(m: &serde_json::Value, device: &Device) -> Tensor<4> {
    let s = shape(&m["input_shape"]);
    let v = f32_file(m["input"].as_str().unwrap());
    Tensor::from_data(TensorData::new(v, [s[0], s[1], s[2], s[3]]), device)
}

fn load(m: &serde_json::Value, key: &str, device: &Device) -> Classifier {
    let file = zoo_dir().join(m[key].as_str().unwrap());
    let (model, config, report) =
        load_classifier(&file, None, device).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    assert!(report.applied > 0);
    assert_eq!(
        config.num_classes,
        m["num_classes"].as_u64().unwrap() as usize
    );
    model
}

/// Features and logits of `m` loaded from `key` (`pth`, `safetensors`, `pth_legacy`).
fn check(m: &serde_json::Value, key: &str, device: &Device) {
    let name = m["name"].as_str().unwrap();
    let what = format!("{name} ({key}) on {device:?}");
    let model = load(m, key, device).valid();
    let features = model.forward_features(input(m, device));
    assert_eq!(
        features.dims().to_vec(),
        shape(&m["features_shape"]),
        "{what}: feature map shape"
    );
    assert_close(
        &values(features.clone()),
        &f32_file(m["features"].as_str().unwrap()),
        TOL,
        &format!("{what} features"),
    );
    let logits = values(model.forward_head(features));
    assert_close(
        &logits,
        &f32_file(m["logits"].as_str().unwrap()),
        TOL,
        &format!("{what} logits"),
    );
}

#[test]
fn every_family_matches_pytorch_from_pth_flex() {
    for m in models() {
        check(&m, "pth", &flex());
    }
}

#[test]
fn every_family_matches_pytorch_from_safetensors_flex() {
    let with: Vec<_> = models()
        .into_iter()
        .filter(|m| m["safetensors"].is_string())
        .collect();
    let mut families: Vec<&str> = with.iter().map(|m| m["family"].as_str().unwrap()).collect();
    families.sort();
    families.dedup();
    assert_eq!(
        families.len(),
        4,
        "one safetensors file per family at least: {families:?}"
    );
    for m in &with {
        check(m, "safetensors", &flex());
    }
}

#[test]
fn legacy_pickle_files_load_flex() {
    let with_legacy: Vec<_> = models()
        .into_iter()
        .filter(|m| m["pth_legacy"].is_string())
        .collect();
    if std::env::var_os("PETAL_ZOO_DIR").is_none() {
        assert!(
            !with_legacy.is_empty(),
            "the committed fixtures have a legacy file"
        );
    }
    for m in with_legacy {
        check(&m, "pth_legacy", &flex());
    }
}

#[test]
fn every_family_matches_pytorch_wgpu() {
    let device = wgpu();
    for m in models() {
        check(&m, "pth", &device);
    }
}

#[test]
fn inferred_configuration_counts_the_parameters_pytorch_counts() {
    for m in models() {
        let name = m["name"].as_str().unwrap();
        let file = zoo_dir().join(m["pth"].as_str().unwrap());
        let sd = StateDict::read(&file).unwrap();
        let (backbone, head) = sd.infer().unwrap();
        // The full-size fixtures (`--full`: torchvision's presets, 1000 classes) are
        // recognised as their preset (the tiny ones only share some names).
        if m["num_classes"] == 1000 {
            let preset = BackboneConfig::from_name(name.trim_start_matches("timm_")).unwrap();
            assert_eq!(backbone, preset, "{name}");
            assert_eq!(backbone.name(), name.trim_start_matches("timm_"));
        }
        let family = m["family"].as_str().unwrap();
        let tag = serde_json::to_value(&backbone).unwrap()["arch"].clone();
        assert_eq!(tag, family, "{name}: family");
        assert_eq!(
            backbone.num_features(),
            m["num_features"].as_u64().unwrap() as usize,
            "{name}: num_features"
        );
        let (head, classes) = head.expect("the fixture has torchvision's classifier");
        assert_eq!(head, backbone.torchvision_head(), "{name}: head");
        let model =
            petal::models::ClassifierConfig::new(backbone.clone(), head, classes).init(&flex());
        assert_eq!(
            num_parameters(&model),
            m["num_params"].as_u64().unwrap() as usize,
            "{name}: parameters ({})",
            backbone.name()
        );
        // The configuration survives config.json.
        let json = serde_json::to_string(&backbone).unwrap();
        let back: BackboneConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, backbone, "{name}: {json}");
    }
}
