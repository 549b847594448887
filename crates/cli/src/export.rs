//! `petal export`: a trained run's model as ONNX (the whole classifier, for onnxruntime,
//! TensorRT, OpenVINO, a browser) or as a PyTorch state dict in torchvision's names.

use crate::predict::load_labels;
use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use petal_core::export::{torchvision_state_dict, write_pth, write_safetensors};
use petal_core::onnx::{InputNorm, classifier_to_onnx, write_onnx};
use petal_core::weights::load_classifier;
use petal_core::{Classifier, ClassifierConfig};
use petal_trainer::checkpoint::load_checkpoint_model;
use petal_trainer::eval::read_run;
use std::collections::HashMap;
use std::path::PathBuf;

/// Export formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// The whole classifier (backbone and head) as one ONNX file, opset 17, float32: input
    /// `input` `[batch, 3, S, S]` already normalised with ImageNet's mean/std, outputs
    /// `logits` and `probabilities`, the class names in the metadata (`petal.classes`).
    Onnx,
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
    /// ONNX only: the input side `S` (default: the run's `--image-size`; 224 for `--weights`).
    #[arg(long)]
    image_size: Option<usize>,
    /// Replace `--out` if it exists (otherwise an existing file is never overwritten).
    #[arg(long)]
    force: bool,
}

/// `--checkpoint best|last` (or the file names) → the run's checkpoint file.
pub(crate) fn checkpoint_file(arg: &str) -> Result<&'static str> {
    match arg {
        "best" | "best.ckpt" => Ok("best.ckpt"),
        "last" | "last.ckpt" => Ok("last.ckpt"),
        other => bail!("--checkpoint {other}: use best or last"),
    }
}

/// What is exported, read from a run's checkpoint or a weight file.
struct Source {
    model: Classifier,
    config: ClassifierConfig,
    /// The run's class names (`None` for a bare weight file).
    classes: Option<Vec<String>>,
    /// The file read.
    file: PathBuf,
    /// The run's training crop and normalisation (`None` for a bare weight file).
    input: Option<(usize, InputNorm)>,
}

/// Runs `petal export`.
pub fn run(args: ExportArgs) -> Result<i32> {
    let ckpt_name = checkpoint_file(&args.checkpoint)?;
    if args.out.exists() && !args.force {
        bail!(
            "--out {} exists: pass --force to replace it, or choose another file",
            args.out.display()
        );
    }
    if let Some(s) = args.image_size
        && !(32..=4096).contains(&s)
    {
        bail!("--image-size {s}: must be in [32, 4096]");
    }
    let device = burn::tensor::Device::flex();
    let src = match (&args.run, &args.weights) {
        (Some(run), _) => {
            let (run_config, classes) = read_run(run)?;
            let file = run.join(ckpt_name);
            let (model, config) = load_checkpoint_model(&file, &device)
                .with_context(|| format!("reading {}", file.display()))?;
            let a = &run_config.augment;
            let norm = InputNorm {
                mean: a.mean,
                std: a.std,
            };
            Source {
                model,
                config,
                classes: Some(classes.names),
                file,
                input: Some((a.size, norm)),
            }
        }
        (None, Some(weights)) => {
            let (model, config, _) = load_classifier(weights, None, &device)?;
            Source {
                model,
                config,
                classes: None,
                file: weights.clone(),
                input: None,
            }
        }
        (None, None) => bail!("give --run DIR or --weights FILE"),
    };
    match args.format {
        Format::Onnx => export_onnx(&args, src),
        Format::Safetensors | Format::Pth => export_state_dict(&args, src),
    }
}

/// `--format onnx`: the whole classifier.
fn export_onnx(args: &ExportArgs, src: Source) -> Result<i32> {
    let (run_size, norm) = match src.input {
        Some((s, n)) => (Some(s), n),
        None => (None, InputNorm::default()),
    };
    let config = &src.config;
    let size = args.image_size.or(run_size).unwrap_or(224);
    let min = config.backbone.family().output_stride();
    if size < min {
        bail!(
            "--image-size {size}: {} needs at least {min}",
            config.backbone.name()
        );
    }
    let names = match src.classes {
        Some(names) => names,
        None => load_labels(None, config.num_classes)?,
    };
    let arch = config.backbone.name();
    let head = serde_json::to_string(&config.head)?;
    let onnx = classifier_to_onnx(
        &src.model,
        &arch,
        &names,
        size,
        norm,
        &[("petal.head".into(), head)],
    )?;
    let nodes = onnx.graph.as_ref().map_or(0, |g| g.node.len());
    write_onnx(&args.out, &onnx)?;
    println!(
        "wrote {} (ONNX opset {}, {nodes} nodes, {arch}, input [batch, 3, {size}, {size}] normalised, {} classes) from {}",
        args.out.display(),
        petal_core::onnx::OPSET,
        config.num_classes,
        src.file.display()
    );
    Ok(0)
}

/// `--format safetensors|pth`: the state dict in torchvision's names.
fn export_state_dict(args: &ExportArgs, src: Source) -> Result<i32> {
    let config = &src.config;
    let tensors = torchvision_state_dict(&src.model, &config.backbone)?;
    let mut metadata = HashMap::from([
        ("format".to_string(), "pt".to_string()),
        ("petal.arch".to_string(), config.backbone.name()),
        (
            "petal.head".to_string(),
            serde_json::to_string(&config.head)?,
        ),
    ]);
    if let Some(names) = &src.classes {
        metadata.insert("petal.classes".into(), serde_json::to_string(names)?);
    }
    if args.format == Format::Pth {
        // (A .pth has no metadata: the class names stay in the run's classes.json.)
        write_pth(&args.out, &tensors)?;
    } else {
        write_safetensors(&args.out, &tensors, metadata)?;
    }
    println!(
        "wrote {} ({} tensors, {} in torchvision's names, {} classes) from {}",
        args.out.display(),
        tensors.len(),
        config.backbone.name(),
        config.num_classes,
        src.file.display()
    );
    Ok(0)
}
