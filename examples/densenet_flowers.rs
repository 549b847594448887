//! The flagship example: fine-tune a DenseNet with the seed article's concat-pool head,
//! the whole recipe — a frozen-backbone epoch, unfreezing with discriminative learning
//! rates, GPU augmentation (RandomResizedCrop, RandomRotation, ColorJitter, flip), AdamW,
//! warmup + cosine — then evaluate the best checkpoint and predict with it.
//!
//! ```text
//! # no download, no GPU needed: a small DenseNet on petal's synthetic flowers
//! cargo run --release --example densenet_flowers
//! # the seed's exact recipe on Oxford-102 Flowers with torchvision's DenseNet-161 weights
//! cargo run --release --example densenet_flowers -- --data flowers/ --weights densenet161-8d451a50.pth
//! ```
//!
//! `--data` takes Oxford-102's native layout (`jpg/`, `imagelabels.mat`, `setid.mat`) or an
//! ImageFolder (`train/<class>/…`, `valid/<class>/…`, optional `cat_to_name.json`). The run
//! directory (`--out`) gets `config.json`, `classes.json`, `metrics.jsonl/.csv`,
//! `curves.png`, `best.ckpt`, `last.ckpt`. Ctrl-C stops after the current step and writes
//! `last.ckpt`; running the example again continues that run (`--fresh` starts over), as
//! `petal train --resume DIR` does. Predict with `petal predict --run DIR IMAGE…`.

use clap::Parser;
use petal::data::augment::AugmentConfig;
use petal::data::{DEFAULT_MAX_PIXELS, decode_rgb8};
use petal::models::BackboneConfig;
use petal::models::densenet::DenseNetConfig;
use petal::trainer::StopReason;
use petal::trainer::checkpoint::{Header, TrainState};
use petal::trainer::train::pin_default_device;
use petal::trainer::{Cache, EvalOptions, FineTuneConfig, SyntheticConfig, TrainOptions};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Parser, Debug)]
struct Args {
    /// Oxford-102 (native layout) or an ImageFolder; the synthetic flowers if absent.
    #[arg(long)]
    data: Option<PathBuf>,
    /// torchvision weights for --data (the seed's: densenet161-8d451a50.pth; any
    /// architecture petal knows works, inferred from the file).
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Architecture, or `auto` to infer it from --weights (DenseNet-161 without weights).
    #[arg(long, default_value = "auto")]
    arch: String,
    /// auto, cpu, wgpu, vulkan, metal, dx12.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Run directory.
    #[arg(long, default_value = "runs/densenet_flowers")]
    out: PathBuf,
    /// Epochs after unfreezing (default: the recipe's).
    #[arg(long)]
    epochs: Option<usize>,
    /// An image to classify with the trained model at the end.
    #[arg(long)]
    image: Option<PathBuf>,
    /// Start over even if --out holds an interrupted run (default: continue it).
    #[arg(long)]
    fresh: bool,
}

/// The seed's recipe on real flowers: DenseNet-161, concat-pool head 4416 → 1024 → 102
/// with dropout 0.35, 224² crops, RandomRotation(25), RandomResizedCrop(224), ColorJitter,
/// flip; three frozen epochs then ten with everything unfrozen (head lr 2e-3, the stem
/// 100× less).
fn seed_recipe(data: PathBuf, weights: Option<PathBuf>, arch: String) -> FineTuneConfig {
    FineTuneConfig {
        data: Some(data),
        weights,
        arch,
        freeze_epochs: 3,
        epochs: 10,
        batch_size: 32,
        lr: 2e-3,
        lr_mult: 100.0,
        ..FineTuneConfig::default()
    }
}

/// The built-in run: a small DenseNet (growth 12, blocks 4-4-4) trained from scratch on
/// synthetic flowers at 64² — the same recipe, sized to finish in minutes on two CPU cores.
fn synthetic_recipe() -> FineTuneConfig {
    FineTuneConfig {
        data: None,
        synthetic: SyntheticConfig {
            classes: 10,
            train: 3000,
            valid: 500,
            image_size: 80,
        },
        backbone: Some(BackboneConfig::DenseNet(DenseNetConfig {
            growth_rate: 12,
            block_config: vec![4, 4, 4],
            num_init_features: 24,
            bn_size: 4,
            drop_rate: 0.0,
        })),
        hidden: vec![256],
        dropout: 0.2,
        freeze_epochs: 1,
        epochs: 14,
        batch_size: 32,
        lr: 4e-3,
        lr_mult: 3.0,
        augment: AugmentConfig {
            size: 64,
            scale: (0.35, 1.0),
            ..AugmentConfig::default()
        },
        // Draw each synthetic flower once (3,500 × 80² RGB = 67 MB) instead of every epoch.
        cache: Cache::Ram,
        ..FineTuneConfig::default()
    }
}

/// The run in `out` to continue, if it was interrupted: its config and where it stopped.
fn interrupted_run(out: &Path) -> anyhow::Result<Option<(FineTuneConfig, TrainState)>> {
    let last = out.join("last.ckpt");
    if !last.exists() {
        return Ok(None);
    }
    let config = FineTuneConfig::from_file(out.join("config.json"))?;
    let state = Header::read(&last)?.state;
    let total = config.freeze_epochs + config.epochs;
    Ok((state.epoch < total).then_some((config, state)))
}

fn main() -> anyhow::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args = Args::parse();
    let mut config = match &args.data {
        Some(d) => seed_recipe(d.clone(), args.weights.clone(), args.arch.clone()),
        None => {
            if args.weights.is_some() || args.arch != "auto" {
                anyhow::bail!(
                    "--weights and --arch need --data: the built-in run trains a small DenseNet from scratch"
                );
            }
            synthetic_recipe()
        }
    };
    config.device = args.device.clone();
    if let Some(e) = args.epochs {
        config.epochs = e;
    }
    let mut opts = TrainOptions::new(&args.out);
    match interrupted_run(&args.out)? {
        Some((previous, state)) if !args.fresh => {
            println!(
                "continuing the interrupted run in {} from step {} (epoch {} of {}; --fresh starts over)",
                args.out.display(),
                state.global_step,
                state.epoch + 1,
                previous.freeze_epochs + previous.epochs
            );
            config = previous;
            opts.resume = true;
        }
        // A finished run of this example (or --fresh): replace it.
        _ if args.out.join("last.ckpt").exists() => std::fs::remove_dir_all(&args.out)?,
        _ => {}
    }
    // SAFETY: no thread started yet (the Ctrl-C handler's comes next).
    unsafe { pin_default_device(&config)? };
    opts.stop_on_ctrl_c();
    let t0 = Instant::now();
    let outcome = petal::trainer::train(&config, &opts)?;
    let minutes = t0.elapsed().as_secs_f64() / 60.0;
    if let StopReason::Interrupted { step } = outcome.stop {
        eprintln!(
            "stopped after step {step}; last.ckpt is in {0}. Continue with the same command, or \
             `petal train --resume {0}`",
            args.out.display()
        );
        std::process::exit(130);
    }

    let report = petal::trainer::evaluate(&EvalOptions {
        worst: 3,
        ..EvalOptions::new(args.out.clone())
    })?;
    println!(
        "\nbest checkpoint on the validation set: top-1 {:.2}%, top-5 {:.2}% ({} images); training took {minutes:.1} min",
        100.0 * report.top1,
        100.0 * report.top5,
        report.images
    );
    if let Some(img) = &args.image {
        decode_rgb8(img, DEFAULT_MAX_PIXELS)?;
        println!(
            "predict with: petal predict --run {} {}",
            args.out.display(),
            img.display()
        );
    }
    println!(
        "final validation top-1: {:.2}% (run directory: {})",
        100.0 * outcome.records.last().map(|r| r.valid_top1).unwrap_or(0.0),
        args.out.display()
    );
    Ok(())
}
