//! The flagship example: DenseNet-161 with the seed article's concat-pool head for
//! Oxford-102 Flowers.
//!
//! ```text
//! cargo run --release --example densenet_flowers                       # built-in sample
//! cargo run --release --example densenet_flowers -- --weights densenet161-8d451a50.pth --image rose.jpg
//! ```
//!
//! Until the trainer lands (it will run the whole fine-tune here), the example builds the
//! seed's model — DenseNet-161 backbone (torchvision weights if `--weights` is given),
//! `cat(avg, max) 4416 → BN → Dropout 0.35 → 1024 → ReLU → BN → Dropout 0.35 → 102` —
//! prints its summary and layer groups, and runs a prediction through torchvision's eval
//! transform. With no `--image`, the built-in sample is one of petal's synthetic flowers
//! (`petal::data::SyntheticFlowers`, drawn procedurally: no download).

use burn::prelude::*;
use clap::Parser;
use petal::data::{DEFAULT_MAX_PIXELS, EvalTransform, SyntheticFlowers, decode_rgb8};
use petal::models::device::{DeviceChoice, select_device};
use petal::models::inference::top_k;
use petal::models::weights::load_pretrained_backbone;
use petal::models::{BackboneConfig, ClassifierConfig, HeadConfig};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Parser, Debug)]
struct Args {
    /// torchvision DenseNet-161 weights (densenet161-8d451a50.pth); random init if absent.
    #[arg(long)]
    weights: Option<PathBuf>,
    /// An image to classify; a synthetic flower if absent.
    #[arg(long)]
    image: Option<PathBuf>,
    /// auto, cpu, wgpu, vulkan, metal, dx12.
    #[arg(long, default_value = "auto")]
    device: String,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let selected = select_device(args.device.parse::<DeviceChoice>()?)?;
    if let Some(n) = &selected.notice {
        eprintln!("{n}");
    }
    println!("device: {}", selected.description);
    let device = selected.device;

    let config = ClassifierConfig::new(
        BackboneConfig::from_name("densenet161")?,
        HeadConfig::seed(),
        102,
    );
    let t0 = Instant::now();
    let model = match &args.weights {
        Some(path) => {
            let (model, report) = load_pretrained_backbone(path, &config, &device)?;
            println!(
                "loaded {} backbone tensors from {} (their 1000-class classifier left out: {} tensors); head freshly initialised",
                report.applied,
                path.display(),
                report.head_ignored
            );
            model
        }
        None => {
            println!("no --weights: backbone randomly initialised (torchvision's init)");
            config.init(&device)
        }
    };
    println!("built in {:.1} s", t0.elapsed().as_secs_f32());
    println!(
        "\nmodel: {} + concat-pool head, {} classes",
        config.backbone.name(),
        config.num_classes
    );
    println!(
        "  feature channels: {} (head input {} = avg ‖ max)",
        model.num_features(),
        2 * model.num_features()
    );
    println!("  parameters: {}", model.num_parameters());
    println!("  layer groups (freeze / discriminative LR units):");
    for g in model.layer_groups() {
        println!(
            "    - {:<24} {:>11} parameters",
            g.name,
            g.num_params(&model)
        );
    }

    let img = match &args.image {
        Some(p) => decode_rgb8(p, DEFAULT_MAX_PIXELS)?,
        None => SyntheticFlowers::new(10, 320, 0).sample(3).0,
    };
    let transform = EvalTransform::default();
    let x = Tensor::<4>::from_data(
        TensorData::new(transform.apply(&img), [1, 3, 224, 224]),
        &device,
    );
    let t0 = Instant::now();
    let logits: Vec<f32> = model
        .valid()
        .forward(x)
        .into_data()
        .try_to_vec_as::<f32>()?;
    println!(
        "\nprediction for {} ({:.2} s forward; the head is untrained, so the classes are arbitrary):",
        args.image
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "a synthetic flower".into()),
        t0.elapsed().as_secs_f32()
    );
    for (i, r) in top_k(&logits, 5).iter().enumerate() {
        println!("  {}. class {:>3}  {:.2}%", i + 1, r.index, 100.0 * r.prob);
    }
    Ok(())
}
