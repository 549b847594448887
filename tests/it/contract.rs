//! Model contracts (timm style): gradients reach every trainable parameter and no frozen
//! one, output shapes, parameter counts of the torchvision presets.

use crate::common::*;
use burn::module::Module;
use burn::optim::GradientsParams;
use burn::prelude::*;
use petal::models::densenet::DenseNetConfig;
use petal::models::{BackboneConfig, Classifier, ClassifierConfig, HeadConfig};

fn tiny(head: HeadConfig, device: &Device) -> Classifier {
    let backbone = BackboneConfig::DenseNet(DenseNetConfig::new(4, vec![2, 2], 8).with_bn_size(2));
    ClassifierConfig::new(backbone, head, 3).init(device)
}

/// Gradients of a cross-entropy-like loss, keyed by parameter.
fn grads(model: &Classifier, device: &Device) -> GradientsParams {
    let x = Tensor::<4>::random([2, 3, 32, 32], burn::tensor::Distribution::Default, device);
    let logits = model.forward(x);
    let loss = burn::tensor::activation::log_softmax(logits, 1)
        .slice([0..2, 0..1])
        .mean()
        .neg();
    GradientsParams::from_grads(loss.backward(), model)
}

#[test]
fn every_trainable_parameter_receives_a_gradient() {
    let device = flex().autodiff();
    for head in [HeadConfig::seed(), HeadConfig::Linear { dropout: 0.0 }] {
        let model = tiny(head.clone(), &device);
        let g = grads(&model, &device);
        let seen = param_grads(&model, &g);
        let params: Vec<_> = seen.iter().filter(|p| !is_buffer(&p.path)).collect();
        assert!(params.len() > 20);
        for p in params {
            assert!(
                p.trainable,
                "{head:?}: {} should require a gradient",
                p.path
            );
            assert!(p.grad.is_some(), "{head:?}: no gradient for {}", p.path);
        }
        // Running statistics are buffers: no gradient.
        for p in seen.iter().filter(|p| is_buffer(&p.path)) {
            assert!(!p.trainable && p.grad.is_none(), "{}", p.path);
        }
    }
}

#[test]
fn a_frozen_group_receives_no_gradient_and_the_others_do() {
    let device = flex().autodiff();
    let model = tiny(HeadConfig::seed(), &device);
    let groups = model.layer_groups();
    assert_eq!(
        groups.iter().map(|g| g.name.as_str()).collect::<Vec<_>>(),
        vec!["stem+block1", "block2+norm5", "head"]
    );
    let frozen = groups[0].params.clone();
    let model = model.freeze_group(frozen.clone());
    let g = grads(&model, &device);
    let mut n_frozen = 0;
    for p in param_grads(&model, &g) {
        if is_buffer(&p.path) {
            continue;
        }
        if frozen.matches(&p.id, Some(&p.path)) {
            n_frozen += 1;
            assert!(p.grad.is_none(), "frozen {} received a gradient", p.path);
        } else {
            assert!(
                p.grad.is_some(),
                "trainable {} received no gradient",
                p.path
            );
        }
    }
    assert!(n_frozen > 5, "the first group holds the stem and block 1");

    // Freezing the whole backbone leaves only the head trainable.
    let model = tiny(HeadConfig::seed(), &device).freeze_backbone();
    let g = grads(&model, &device);
    for p in param_grads(&model, &g) {
        if !is_buffer(&p.path) {
            assert_eq!(p.grad.is_some(), p.path.starts_with("head"), "{}", p.path);
        }
    }
}

#[test]
fn head_output_is_batch_by_classes() {
    let device = flex();
    for head in [HeadConfig::seed(), HeadConfig::Linear { dropout: 0.2 }] {
        let model = tiny(head, &device).valid();
        let x = Tensor::<4>::zeros([5, 3, 48, 40], &device);
        assert_eq!(model.forward(x).dims(), [5, 3]);
    }
}

#[test]
fn torchvision_parameter_counts() {
    let device = flex();
    // torchvision's documented counts with the 1000-class linear classifier.
    for (name, want) in [
        ("densenet121", 7_978_856),
        ("densenet161", 28_681_000),
        ("densenet169", 14_149_480),
        ("densenet201", 20_013_928),
        ("mobilenet_v2", 3_504_872),
    ] {
        let cfg = ClassifierConfig::torchvision(BackboneConfig::from_name(name).unwrap(), 1000);
        assert_eq!(cfg.init(&device).num_parameters(), want, "{name}");
    }
    // The seed's head on DenseNet-161: 4416 → 1024 → 102.
    let seed = ClassifierConfig::new(
        BackboneConfig::from_name("densenet161").unwrap(),
        HeadConfig::seed(),
        102,
    );
    let m = seed.init(&device);
    assert_eq!(m.num_features(), 2208);
    let head = m.num_parameters() - (28_681_000 - (2208 * 1000 + 1000));
    assert_eq!(
        head,
        2 * 4416 + 4416 * 1024 + 1024 + 2 * 1024 + 1024 * 102 + 102
    );
}

#[test]
fn tiny_fixture_parameter_count_matches_pytorch() {
    let m = manifest_entry("densenet_tiny");
    let cfg = ClassifierConfig::torchvision(
        BackboneConfig::DenseNet(DenseNetConfig::new(8, vec![2, 3, 2], 16).with_bn_size(2)),
        10,
    );
    assert_eq!(
        cfg.init(&flex()).num_parameters() as u64,
        m["num_params"].as_u64().unwrap()
    );
}
