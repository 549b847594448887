//! Logits of torchvision models (random weights, non-trivial BatchNorm statistics) loaded
//! from `.pth` files match PyTorch's to ≤ 1e-4 relative error, on Flex and on wgpu.

use crate::common::*;
use burn::prelude::*;
use petal::models::weights::load_classifier;

const TOL: f32 = 1e-4;

fn logits_match(weights: &str, input: &str, expected: &str, device: &Device) {
    let (model, _, report) = load_classifier(fixture(weights), None, device).unwrap();
    assert!(report.applied > 0);
    let x = tensor4(input, device);
    let logits = values(model.valid().forward(x));
    let (_, want) = f32s(expected);
    assert_close(&logits, &want, TOL, &format!("{weights} on {device:?}"));
}

#[test]
fn densenet_zip_logits_match_pytorch_flex() {
    logits_match(
        "densenet_tiny.pth",
        "densenet_tiny_input",
        "densenet_tiny_logits",
        &flex(),
    );
}

#[test]
fn densenet_legacy_pickle_logits_match_pytorch_flex() {
    logits_match(
        "densenet_tiny_legacy.pth",
        "densenet_tiny_input",
        "densenet_tiny_logits",
        &flex(),
    );
}

#[test]
fn mobilenet_v2_zip_logits_match_pytorch_flex() {
    logits_match(
        "mobilenet_v2_w025.pth",
        "mobilenet_v2_w025_input",
        "mobilenet_v2_w025_logits",
        &flex(),
    );
}

#[test]
fn mobilenet_v2_legacy_pickle_logits_match_pytorch_flex() {
    logits_match(
        "mobilenet_v2_w025_legacy.pth",
        "mobilenet_v2_w025_input",
        "mobilenet_v2_w025_logits",
        &flex(),
    );
}

#[test]
fn seed_concat_pool_head_logits_match_pytorch_flex() {
    logits_match(
        "densenet_tiny_seedhead.pth",
        "densenet_tiny_input",
        "densenet_tiny_seedhead_logits",
        &flex(),
    );
}

#[test]
fn densenet_features_match_pytorch_flex() {
    let device = flex();
    let (model, _, _) = load_classifier(fixture("densenet_tiny.pth"), None, &device).unwrap();
    let f = values(
        model
            .valid()
            .forward_features(tensor4("densenet_tiny_input", &device)),
    );
    let (_, want) = f32s("densenet_tiny_features");
    assert_close(&f, &want, TOL, "relu(features)");
}

#[test]
fn parity_wgpu() {
    // One test for all wgpu parity checks: the runtime, shaders and autotune results are
    // shared, and lavapipe compiles each kernel once.
    let device = wgpu();
    logits_match(
        "densenet_tiny_legacy.pth",
        "densenet_tiny_input",
        "densenet_tiny_logits",
        &device,
    );
    logits_match(
        "mobilenet_v2_w025.pth",
        "mobilenet_v2_w025_input",
        "mobilenet_v2_w025_logits",
        &device,
    );
    logits_match(
        "densenet_tiny_seedhead.pth",
        "densenet_tiny_input",
        "densenet_tiny_seedhead_logits",
        &device,
    );
}
