//! `petal`: fine-tune and run image classifiers on any GPU (or the CPU).

mod augment_preview;
mod bench;
mod export;
mod predict;
mod report;
mod train;

use anyhow::Result;
use clap::{Parser, Subcommand};
use petal_core::device::{DeviceChoice, list_adapters, select_device};

/// petal: GPU-native fine-tuning of image classifiers (Burn + wgpu).
#[derive(Parser, Debug)]
#[command(name = "petal", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List the compute devices found and which one `--device auto` picks.
    Info,
    /// Classify images with a torchvision / petal state dict.
    Predict(predict::PredictArgs),
    /// Fine-tune a classifier (frozen phase, unfreeze, discriminative LRs, AdamW, cosine).
    Train(train::TrainArgs),
    /// Evaluate a trained run: loss, top-1/5, per-class accuracy, confusion matrix.
    Eval(train::EvalArgs),
    /// Learning-rate finder (exponential sweep, fastai's valley suggestion).
    LrFind(train::LrFindArgs),
    /// Benchmarks (ratios measured in one run on one device).
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// A PNG grid of original vs augmented samples, with the drawn parameters printed.
    AugmentPreview(augment_preview::AugmentPreviewArgs),
    /// Export a trained run's model: ONNX, or a PyTorch state dict in torchvision's names
    /// (safetensors or .pth).
    Export(export::ExportArgs),
    /// One self-contained HTML page about a run: config, data, curves, confusion matrix,
    /// per-class accuracy, worst predictions, augmentation preview.
    Report(report::ReportArgs),
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info => info(),
        Command::Predict(args) => predict::run(args),
        Command::Train(args) => train::run_train(args),
        Command::Eval(args) => train::run_eval(args),
        Command::LrFind(args) => train::run_lr_find(args),
        Command::Bench(cmd) => bench::run(cmd),
        Command::AugmentPreview(args) => augment_preview::run(args),
        Command::Report(args) => report::run(args),
        Command::Export(args) => export::run(args),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    }
}

/// Refuses `value` outside `min..=max`, naming the flag and the range (so no user input
/// reaches an assert further down).
pub(crate) fn check_range(flag: &str, value: usize, min: usize, max: usize) -> Result<()> {
    if !(min..=max).contains(&value) {
        anyhow::bail!("--{flag} {value} is out of range: allowed {min}..={max}");
    }
    Ok(())
}

fn info() -> Result<i32> {
    println!("petal {}", env!("CARGO_PKG_VERSION"));
    let adapters = list_adapters();
    println!("wgpu adapters:");
    if adapters.is_empty() {
        println!("  (none: no Vulkan / Metal / DX12 driver found)");
    }
    for (i, a) in adapters.iter().enumerate() {
        println!(
            "  [{i}] {} — {}, {}{}",
            a.name,
            a.backend,
            a.device_type,
            if a.driver.is_empty() {
                String::new()
            } else {
                format!(", driver {}", a.driver)
            }
        );
    }
    println!(
        "cpu:\n  Flex (Burn's CPU backend), {} threads",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    let auto = select_device(DeviceChoice::Auto)?;
    println!("--device auto picks: {}", auto.description);
    if let Some(n) = auto.notice {
        println!("{n}");
    }
    Ok(0)
}
