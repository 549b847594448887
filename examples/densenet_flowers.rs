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
//! transform. With no `--image`, the built-in sample is a procedurally drawn flower.

use burn::prelude::*;
use clap::Parser;
use petal::data::{DEFAULT_MAX_PIXELS, EvalTransform, decode_rgb8};
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
    /// An image to classify; a drawn sample flower if absent.
    #[arg(long)]
    image: Option<PathBuf>,
    /// auto, cpu, wgpu, vulkan, metal, dx12.
    #[arg(long, default_value = "auto")]
    device: String,
}

/// A simple drawn flower: `petals` elliptic petals around a disc, on a green background.
fn sample_flower(size: u32, petals: u32) -> image::RgbImage {
    let c = size as f32 / 2.0;
    image::RgbImage::from_fn(size, size, |x, y| {
        let (dx, dy) = (x as f32 - c, y as f32 - c);
        let r = (dx * dx + dy * dy).sqrt() / c;
        let a = dy.atan2(dx);
        let petal_r = 0.55 + 0.35 * (petals as f32 * a / 2.0).cos().abs();
        if r < 0.18 {
            image::Rgb([230, 180, 20])
        } else if r < petal_r {
            image::Rgb([200, 40 + (60.0 * r) as u8, 120])
        } else {
            image::Rgb([40, 110 + ((x * 7 + y * 3) % 40) as u8, 45])
        }
    })
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
        None => sample_flower(320, 5),
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
            .unwrap_or_else(|| "the drawn sample flower".into()),
        t0.elapsed().as_secs_f32()
    );
    for (i, r) in top_k(&logits, 5).iter().enumerate() {
        println!("  {}. class {:>3}  {:.2}%", i + 1, r.index, 100.0 * r.prob);
    }
    Ok(())
}
