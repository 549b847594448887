//! `petal export`'s state dict: torchvision's key set exactly (BatchNorm's
//! `num_batches_tracked` included), read back by petal's own import to the same model.
//! (The PyTorch side — `load_state_dict(strict=True)` and PyTorch's logits — is
//! `scripts/check_export.py`.)

use crate::common::*;
use burn::module::Module;
use petal::models::export::{torchvision_state_dict, write_pth, write_safetensors};
use petal::models::weights::{StateDict, load_classifier};
use std::collections::{BTreeSet, HashMap};

fn round_trip(original: &std::path::Path) {
    let device = flex();
    let what = original.display().to_string();
    let (model, config, _) = load_classifier(original, None, &device).unwrap();
    let tensors = torchvision_state_dict(&model, &config.backbone).unwrap();

    // The keys of the original file as petal reads them (torchvision's spelling, timm's
    // renamed, without num_batches_tracked), and one num_batches_tracked per BatchNorm.
    let want: BTreeSet<String> = StateDict::read(original)
        .unwrap()
        .keys()
        .map(String::from)
        .collect();
    let (counters, keys): (Vec<&String>, Vec<&String>) = tensors
        .keys()
        .partition(|k| k.ends_with(".num_batches_tracked"));
    let keys: BTreeSet<String> = keys.into_iter().cloned().collect();
    assert_eq!(keys, want, "{what}: exported keys");
    let running_vars = keys.iter().filter(|k| k.ends_with(".running_var")).count();
    assert_eq!(counters.len(), running_vars, "{what}");

    // Written (safetensors, and .pth read by burn-store's PyTorch reader) and read back:
    // the same logits, bit for bit.
    let dir = std::env::temp_dir().join(format!("petal-export-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let stem = original.file_stem().unwrap().to_string_lossy().to_string();
    let x = burn::tensor::Tensor::<4>::random(
        [2, 3, 64, 64],
        burn::tensor::Distribution::Default,
        &device,
    );
    let want = values(model.valid().forward(x.clone()));
    for ext in ["safetensors", "pth"] {
        let out = dir.join(format!("{stem}.{ext}"));
        match ext {
            "pth" => write_pth(&out, &tensors).unwrap(),
            _ => write_safetensors(&out, &tensors, HashMap::new()).unwrap(),
        }
        let (back, back_config, _) = load_classifier(&out, None, &device).unwrap();
        assert_eq!(back_config, config, "{what} ({ext})");
        assert_eq!(
            values(back.valid().forward(x.clone())),
            want,
            "{what} ({ext})"
        );
        std::fs::remove_file(&out).unwrap();
    }
}

#[test]
fn every_family_exports_torchvision_keys_and_reads_back_exactly() {
    let zoo: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("zoo").join("manifest.json")).unwrap(),
    )
    .unwrap();
    for m in zoo["models"].as_array().unwrap() {
        round_trip(&fixture("zoo").join(m["pth"].as_str().unwrap()));
    }
    // The seed's concat-pool head (`classifier.bn0`, `classifier.fc1`, …) and the first two
    // families.
    for f in [
        "densenet_tiny_seedhead.pth",
        "densenet_tiny_legacy.pth",
        "mobilenet_v2_w025.pth",
    ] {
        round_trip(&fixture(f));
    }
}
