//! `petal export`: a trained run's model as a PyTorch state dict in torchvision's names.

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use petal_core::export::{torchvision_state_dict, write_pth, write_safetensors};
use petal_core::weights::load_classifier;
use petal_trainer::checkpoint::load_checkpoint_model;
use petal_trainer::eval::read_run;
use std::collections::HashMap;
use std::path::PathBuf;

/// Export formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A safetensors state dict in torchvision's key names (`safetensors.torch.load_file` +
    /// `model.load_state_dict(sd, strict=True)`).
    Safetensors,
    /// `torch.save`'s zip format (`torch.load(path, weights_only=True)` +
    /// `model.load_state_dict(sd, strict=True)`).
    Pth,
}

/// `petal export` arguments.
#[derive(Args, Debug)]
pub struct ExportArgs {
    /// A `petal train` run directory.
    #[arg(long, required_unless_present = "weights", conflicts_with = "weights")]
    run: Option<PathBuf>,
    /// Or a state dict petal reads (`.pth`, `.safetensors`, timm's spelling): converted to
    /// torchvision's names.
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Which checkpoint of `--run`: `best` (the best validation epoch) or `last`.
    #[arg(long, default_value = "best")]
    checkpoint: String,
    /// Output format.
    #[arg(long, value_enum, default_value = "safetensors")]
    format: Format,
    /// Output file.
    #[arg(long)]
    out: PathBuf,
    /// Replace `--out` if it exists (otherwise an existing file is never overwritten).
    #[arg(long)]
    force: bool,
}

/// Runs `petal export`.
pub fn run(args: ExportArgs) -> Result<i32> {
    let ckpt_name = match args.checkpoint.as_str() {
        "best" | "best.ckpt" => "best.ckpt",
        "last" | "last.ckpt" => "last.ckpt",
        other => bail!("--checkpoint {other}: use best or last"),
    };
    if args.out.exists() && !args.force {
        bail!(
            "--out {} exists: pass --force to replace it, or choose another file",
            args.out.display()
        );
    }
    let device = burn::tensor::Device::flex();
    let (model, config, classes, source) = match (&args.run, &args.weights) {
        (Some(run), _) => {
            let (_, classes) = read_run(run)?;
            let ckpt = run.join(ckpt_name);
            let (model, config) = load_checkpoint_model(&ckpt, &device)
                .with_context(|| format!("reading {}", ckpt.display()))?;
            (model, config, Some(classes.names), ckpt)
        }
        (None, Some(weights)) => {
            let (model, config, _) = load_classifier(weights, None, &device)?;
            (model, config, None, weights.clone())
        }
        (None, None) => bail!("give --run DIR or --weights FILE"),
    };
    let tensors = torchvision_state_dict(&model, &config.backbone)?;
    let mut metadata = HashMap::from([
        ("format".to_string(), "pt".to_string()),
        ("petal.arch".to_string(), config.backbone.name()),
        (
            "petal.head".to_string(),
            serde_json::to_string(&config.head)?,
        ),
    ]);
    if let Some(names) = classes {
        metadata.insert("petal.classes".into(), serde_json::to_string(&names)?);
    }
    match args.format {
        Format::Safetensors => write_safetensors(&args.out, &tensors, metadata)?,
        // (A .pth has no metadata: the class names stay in the run's classes.json.)
        Format::Pth => write_pth(&args.out, &tensors)?,
    }
    println!(
        "wrote {} ({} tensors, {} in torchvision's names, {} classes) from {}",
        args.out.display(),
        tensors.len(),
        config.backbone.name(),
        config.num_classes,
        source.display()
    );
    Ok(0)
}
