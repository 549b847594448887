//! Model contracts (timm style): gradients reach every trainable parameter and no frozen
//! one, output shapes, parameter counts of the torchvision presets.

use crate::common::*;
use burn::module::Module;
use burn::optim::GradientsParams;
use burn::prelude::*;
use petal::models::convnext::ConvNeXtConfig;
use petal::models::densenet::DenseNetConfig;
use petal::models::efficientnet::{EfficientNetConfig, StageSpec};
use petal::models::layers::StochasticDepth;
use petal::models::mobilenet_v2::MobileNetV2Config;
use petal::models::mobilenet_v3::MobileNetV3Config;
use petal::models::resnet::{BlockKind, ResNetConfig};
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
    for head in [HeadConfig::seed(), HeadConfig::linear(0.0)] {
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
    for head in [HeadConfig::seed(), HeadConfig::linear(0.2)] {
        let model = tiny(head, &device).valid();
        let x = Tensor::<4>::zeros([5, 3, 48, 40], &device);
        assert_eq!(model.forward(x).dims(), [5, 3]);
    }
}

#[test]
fn torchvision_parameter_counts() {
    let device = flex();
    // torchvision's documented counts with the 1000-class linear classifier.
    // (Burn initialises parameters lazily: counting never allocates the weights.)
    let presets = [
        ("densenet121", 7_978_856),
        ("densenet161", 28_681_000),
        ("densenet169", 14_149_480),
        ("densenet201", 20_013_928),
        ("mobilenet_v2", 3_504_872),
        ("resnet18", 11_689_512),
        ("resnet34", 21_797_672),
        ("resnet50", 25_557_032),
        ("resnet101", 44_549_160),
        ("resnet152", 60_192_808),
        ("resnext50_32x4d", 25_028_904),
        ("resnext101_32x8d", 88_791_336),
        ("resnext101_64x4d", 83_455_272),
        ("wide_resnet50_2", 68_883_240),
        ("wide_resnet101_2", 126_886_696),
        ("efficientnet_b0", 5_288_548),
        ("efficientnet_b1", 7_794_184),
        ("efficientnet_b2", 9_109_994),
        ("efficientnet_b3", 12_233_232),
        ("efficientnet_b4", 19_341_616),
        ("efficientnet_b5", 30_389_784),
        ("efficientnet_b6", 43_040_704),
        ("efficientnet_b7", 66_347_960),
        ("efficientnet_v2_s", 21_458_488),
        ("efficientnet_v2_m", 54_139_356),
        ("efficientnet_v2_l", 118_515_272),
        ("convnext_tiny", 28_589_128),
        ("convnext_small", 50_223_688),
        ("convnext_base", 88_591_464),
        ("convnext_large", 197_767_336),
        ("mobilenet_v3_large", 5_483_032),
        ("mobilenet_v3_small", 2_542_856),
    ];
    assert_eq!(
        presets.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        petal::models::arch_names(),
        "every preset is counted"
    );
    for (name, want) in presets {
        let backbone = BackboneConfig::from_name(name).unwrap();
        assert_eq!(backbone.name(), name);
        let cfg = ClassifierConfig::torchvision(backbone, 1000);
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

/// A small configuration of every family (all block kinds: basic/bottleneck with groups,
/// MBConv with and without expansion, FusedMBConv with and without, ConvNeXt blocks and
/// downsampling, MobileNetV3 with SE and hard-swish).
fn tiny_backbones() -> Vec<BackboneConfig> {
    let st = |fused, e, s, c_in, c_out, layers| StageSpec {
        fused,
        expand_ratio: e,
        kernel: 3,
        stride: s,
        c_in,
        c_out,
        layers,
    };
    vec![
        BackboneConfig::DenseNet(DenseNetConfig::new(4, vec![2, 2], 8).with_bn_size(2)),
        BackboneConfig::MobileNetV2(MobileNetV2Config::new().with_width_mult(0.25)),
        BackboneConfig::ResNet(
            ResNetConfig::new(BlockKind::Basic, vec![1, 2])
                .with_stem_width(8)
                .with_widths(vec![8, 16]),
        ),
        BackboneConfig::ResNet(
            ResNetConfig::new(BlockKind::Bottleneck, vec![1, 2])
                .with_groups(2)
                .with_width_per_group(8)
                .with_stem_width(8)
                .with_widths(vec![8, 16]),
        ),
        BackboneConfig::EfficientNet(EfficientNetConfig::new(
            vec![
                st(true, 1, 1, 8, 8, 2),
                st(true, 4, 2, 8, 16, 1),
                st(false, 1, 1, 16, 16, 1),
                st(false, 4, 2, 16, 16, 2),
            ],
            32,
        )),
        BackboneConfig::ConvNeXt(ConvNeXtConfig::new(vec![8, 16], vec![1, 2])),
        BackboneConfig::MobileNetV3(MobileNetV3Config::small().with_width_mult(0.25)),
    ]
}

#[test]
fn every_family_trains_every_parameter_and_freezes_its_groups() {
    let device = flex().autodiff();
    for backbone in tiny_backbones() {
        let name = backbone.name();
        for head in [HeadConfig::seed(), backbone.torchvision_head()] {
            let model = ClassifierConfig::new(backbone.clone(), head.clone(), 3).init(&device);
            let g = grads(&model, &device);
            let seen = param_grads(&model, &g);
            let params: Vec<_> = seen.iter().filter(|p| !is_buffer(&p.path)).collect();
            assert!(params.len() > 10, "{name}");
            for p in params {
                assert!(
                    p.grad.is_some(),
                    "{name} {head:?}: no gradient for {}",
                    p.path
                );
            }
            for p in seen.iter().filter(|p| is_buffer(&p.path)) {
                assert!(!p.trainable && p.grad.is_none(), "{name}: {}", p.path);
            }

            // The first group frozen: no gradient there, gradients everywhere else.
            let groups = model.layer_groups();
            assert_eq!(groups.len(), 3, "{name}: two backbone groups and the head");
            let frozen = groups[0].params.clone();
            let n_first = groups[0].num_params(&model);
            let total: usize = groups.iter().map(|g| g.num_params(&model)).sum();
            assert_eq!(
                total,
                model.num_parameters(),
                "{name}: groups cover the model once"
            );
            assert!(n_first > 0 && groups[1].num_params(&model) > 0, "{name}");
            let model = model.freeze_group(frozen.clone());
            let g = grads(&model, &device);
            for p in param_grads(&model, &g) {
                if is_buffer(&p.path) {
                    continue;
                }
                let in_first = frozen.matches(&p.id, Some(&p.path));
                assert_eq!(p.grad.is_none(), in_first, "{name}: {}", p.path);
            }
        }
    }
}

#[test]
fn every_family_maps_an_image_to_its_feature_map() {
    let device = flex();
    for backbone in tiny_backbones() {
        let model = ClassifierConfig::new(backbone.clone(), HeadConfig::seed(), 4)
            .init(&device)
            .valid();
        let x = Tensor::<4>::zeros([2, 3, 64, 64], &device);
        let s = 64 / backbone.output_stride();
        assert_eq!(
            model.forward_features(x.clone()).dims(),
            [2, backbone.num_features(), s, s],
            "{}",
            backbone.name()
        );
        assert_eq!(model.num_features(), backbone.num_features());
        assert_eq!(model.forward(x).dims(), [2, 4]);
    }
}

#[test]
fn stochastic_depth_drops_whole_samples_in_training_only_and_is_seeded() {
    let device = flex().autodiff();
    let x = Tensor::<4>::ones([64, 2, 3, 3], &device);
    let sd = StochasticDepth::new(0.25);
    let run = |seed| {
        device.seed(seed);
        values(sd.forward(x.clone()))
    };
    let a = run(7);
    assert_eq!(a, run(7), "same seed, same mask");
    assert_ne!(a, run(8));
    let mut dropped = 0;
    for sample in a.chunks(18) {
        // Each sample is dropped or kept whole, scaled by 1 / (1 - p).
        assert!(
            sample.iter().all(|&v| v == 0.0)
                || sample.iter().all(|&v| (v - 1.0 / 0.75).abs() < 1e-6),
            "{sample:?}"
        );
        dropped += usize::from(sample[0] == 0.0);
    }
    assert!(
        (4..=30).contains(&dropped),
        "{dropped} of 64 dropped at p = 0.25"
    );
    // Evaluation (valid module, or no autodiff): the identity.
    assert_eq!(values(sd.valid().forward(x.clone())), vec![1.0; 64 * 18]);
    let plain = Tensor::<4>::ones([4, 2, 3, 3], &flex());
    assert_eq!(values(sd.forward(plain)), vec![1.0; 72]);
}

#[test]
fn unbuildable_configurations_are_refused_naming_the_field() {
    let st = StageSpec {
        fused: false,
        expand_ratio: 4,
        kernel: 3,
        stride: 3,
        c_in: 8,
        c_out: 8,
        layers: 1,
    };
    for (backbone, field) in [
        (
            BackboneConfig::DenseNet(DenseNetConfig::new(4, vec![], 8)),
            "block_config",
        ),
        (
            BackboneConfig::ResNet(ResNetConfig::new(BlockKind::Basic, vec![1, 1])),
            "2 stages",
        ),
        (
            BackboneConfig::ResNet(
                ResNetConfig::new(BlockKind::Basic, vec![2, 2, 2, 2]).with_groups(32),
            ),
            "basic blocks only support groups = 1",
        ),
        (
            BackboneConfig::EfficientNet(EfficientNetConfig::new(vec![st], 32)),
            "stride must be 1 or 2, got 3",
        ),
        (
            BackboneConfig::ConvNeXt(
                ConvNeXtConfig::new(vec![8, 16], vec![1, 1]).with_stochastic_depth_prob(1.5),
            ),
            "stochastic_depth_prob must be in [0, 1), got 1.5",
        ),
        (
            BackboneConfig::MobileNetV3(MobileNetV3Config::small().with_width_mult(0.0)),
            "width_mult must be in (0, 16], got 0",
        ),
        (
            BackboneConfig::MobileNetV2(MobileNetV2Config::new().with_width_mult(f64::NAN)),
            "width_mult",
        ),
    ] {
        let err = backbone.check().expect_err(field).to_string();
        assert!(err.contains(field), "{err}");
        assert!(err.contains("cannot be built"), "{err}");
    }
    for (name, backbone) in petal::models::backbone::presets() {
        backbone.check().unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}
