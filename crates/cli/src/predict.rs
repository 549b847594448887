//! `petal predict`: torchvision eval preprocessing + a forward pass + top-k.

use anyhow::{Context, Result, bail};
use burn::prelude::*;
use clap::Args;
use petal_core::device::{DeviceChoice, select_device};
use petal_core::imagenet::imagenet_classes;
use petal_core::inference::top_k;
use petal_core::weights::load_classifier;
use petal_data::{DEFAULT_MAX_PIXELS, EvalTransform, decode_rgb8};
use petal_trainer::checkpoint::load_checkpoint_model;
use petal_trainer::config::MAX_IMAGE_SIZE;
use petal_trainer::data::eval_transform;
use petal_trainer::eval::read_run;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Most images per forward pass.
const MAX_PREDICT_BATCH: usize = 1024;

/// Arguments of `petal predict`.
#[derive(Args, Debug)]
pub struct PredictArgs {
    /// State dict of a torchvision model (.pth/.pt, zip or legacy pickle, or .safetensors)
    /// of any family petal builds, with torchvision's classifier or the seed's concat-pool head.
    #[arg(long, required_unless_present = "run", conflicts_with = "run")]
    weights: Option<PathBuf>,
    /// A `petal train` run directory: its best checkpoint, class names and eval transform.
    #[arg(long)]
    run: Option<PathBuf>,
    /// With --run: the checkpoint file inside it.
    #[arg(long, default_value = "best.ckpt", requires = "run")]
    checkpoint: String,
    /// Test-time augmentation: average the logits with those of the mirrored image.
    #[arg(long)]
    tta: bool,
    /// Architecture: auto (read it from the file) or a torchvision preset (densenet121,
    /// resnet50, efficientnet_b0, convnext_tiny, mobilenet_v3_large, …: see `petal train --help`).
    #[arg(long, default_value = "auto")]
    arch: String,
    /// Class names: `imagenet` (built in), or a JSON file (a list of names, or an object
    /// mapping index → name). Default: imagenet for 1000-class models, else the index.
    #[arg(long)]
    classes: Option<String>,
    /// How many classes to print per image.
    #[arg(long, default_value_t = 5)]
    topk: usize,
    /// Shorter side after resizing (torchvision `Resize`; default 256, or the run's).
    #[arg(long)]
    resize: Option<u32>,
    /// Center crop size (torchvision `CenterCrop`; default 224, or the run's).
    #[arg(long)]
    crop: Option<u32>,
    /// Print JSON: `[{"image", "top": [{"index", "label", "prob"}], "logits"?}]`.
    #[arg(long)]
    json: bool,
    /// Include the raw logits (JSON field `logits`, or a line in text mode).
    #[arg(long)]
    logits: bool,
    /// Compute device: auto, cpu, wgpu, vulkan, metal, dx12.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Images per forward pass.
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
    /// Refuse images with more pixels than this (decompression-bomb guard).
    #[arg(long, default_value_t = DEFAULT_MAX_PIXELS)]
    max_pixels: u64,
    /// Image files (JPEG, PNG, WebP, GIF, BMP).
    #[arg(required = true)]
    images: Vec<PathBuf>,
}

#[derive(Serialize)]
struct Top {
    index: usize,
    label: String,
    prob: f32,
}

#[derive(Serialize)]
struct Prediction {
    image: String,
    top: Vec<Top>,
    #[serde(skip_serializing_if = "Option::is_none")]
    logits: Option<Vec<f32>>,
}

/// Class names: from `--classes` (`imagenet` or a JSON file), else ImageNet's for a
/// 1000-class model and the indices otherwise.
pub(crate) fn load_labels(spec: Option<&str>, classes: usize) -> Result<Vec<String>> {
    let labels: Vec<String> = match spec {
        None if classes == 1000 => imagenet_classes().into_iter().map(String::from).collect(),
        None => return Ok((0..classes).map(|i| i.to_string()).collect()),
        Some("imagenet") => imagenet_classes().into_iter().map(String::from).collect(),
        Some(file) => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("--classes {file}: cannot read"))?;
            let value: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("--classes {file}: not valid JSON"))?;
            match value {
                serde_json::Value::Array(items) => items
                    .into_iter()
                    .map(|v| match v {
                        serde_json::Value::String(s) => s,
                        other => other.to_string(),
                    })
                    .collect(),
                serde_json::Value::Object(map) => {
                    let mut out = vec![String::new(); map.len()];
                    for (k, v) in map {
                        let i: usize = k.parse().with_context(|| {
                            format!("--classes {file}: key `{k}` is not a class index")
                        })?;
                        let slot = out.get_mut(i).with_context(|| {
                            format!("--classes {file}: index {i} out of range 0..{}", classes)
                        })?;
                        *slot = v
                            .as_str()
                            .map(String::from)
                            .unwrap_or_else(|| v.to_string());
                    }
                    out
                }
                _ => bail!(
                    "--classes {file}: expected a JSON list of names or an index → name object"
                ),
            }
        }
    };
    if labels.len() != classes {
        bail!(
            "--classes: {} names given but the model predicts {classes} classes",
            labels.len()
        );
    }
    Ok(labels)
}

/// Runs `petal predict`; returns the exit code (1 if any image could not be read).
pub fn run(args: PredictArgs) -> Result<i32> {
    if args.topk == 0 {
        bail!("--topk 0 is out of range: allowed at least 1");
    }
    crate::check_range("batch-size", args.batch_size, 1, MAX_PREDICT_BATCH)?;
    let choice: DeviceChoice = args.device.parse()?;
    let selected = select_device(choice)?;
    if let Some(n) = &selected.notice {
        eprintln!("{n}");
    }
    log::info!("device: {}", selected.description);
    let device = selected.device;
    let (model, model_config, labels, mut transform) = match (&args.run, &args.weights) {
        (Some(run), _) => {
            let (rc, classes) = read_run(run)?;
            let ckpt = run.join(&args.checkpoint);
            let (model, mc) = load_checkpoint_model(&ckpt, &device)?;
            let labels = match args.classes.as_deref() {
                Some(spec) => load_labels(Some(spec), mc.num_classes)?,
                None => classes.names.clone(),
            };
            if labels.len() != mc.num_classes {
                bail!(
                    "{}: {} class names for a {}-class model",
                    run.join("classes.json").display(),
                    labels.len(),
                    mc.num_classes
                );
            }
            (model, mc, labels, eval_transform(&rc))
        }
        (None, Some(weights)) => {
            let (model, config, _) = load_classifier(weights, Some(&args.arch), &device)?;
            let labels = load_labels(args.classes.as_deref(), config.num_classes)?;
            (model, config, labels, EvalTransform::default())
        }
        (None, None) => bail!("give --weights FILE or --run DIR"),
    };
    if let Some(r) = args.resize {
        transform.resize = r;
    }
    if let Some(c) = args.crop {
        transform.crop = c;
    }
    let num_classes = model_config.num_classes;
    let stride = model_config.backbone.output_stride();
    let (crop, resize) = (transform.crop as usize, transform.resize as usize);
    if !(stride..=MAX_IMAGE_SIZE).contains(&crop) {
        bail!(
            "--crop {crop} is out of range: allowed {stride}..={MAX_IMAGE_SIZE} for {} (it downsamples by {stride})",
            model_config.backbone.name()
        );
    }
    if !(crop..=8 * MAX_IMAGE_SIZE).contains(&resize) {
        bail!(
            "--resize {resize} is out of range: allowed {crop}..={} (at least the crop, {crop})",
            8 * MAX_IMAGE_SIZE
        );
    }
    let model = model.valid();
    let mut failures = 0;
    let mut out = Vec::new();
    for chunk in args.images.chunks(args.batch_size) {
        let mut names = Vec::new();
        let mut batch = petal_data::PackedBatch::default();
        for path in chunk {
            match decode_rgb8(path, args.max_pixels) {
                Ok(img) => {
                    batch.push(&img, 0, names.len());
                    names.push(path.as_path());
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    failures += 1;
                }
            }
        }
        if names.is_empty() {
            continue;
        }
        // Resize + crop + normalise: one kernel pass on a GPU, the PIL-exact CPU path
        // elsewhere (the same 8-bit values).
        let x = petal_data::augment::eval_preprocess(&transform, &batch, false, &device);
        let mut logits = model.forward(x.clone());
        if args.tta {
            logits = (logits + model.forward(x.flip([3]))).div_scalar(2.0);
        }
        let logits = logits.into_data();
        let logits: Vec<f32> = logits
            .try_to_vec_as::<f32>()
            .context("reading logits back")?;
        for (i, name) in names.iter().enumerate() {
            let row = &logits[i * num_classes..(i + 1) * num_classes];
            let pred = Prediction {
                image: name.display().to_string(),
                top: top_k(row, args.topk)
                    .into_iter()
                    .map(|r| Top {
                        index: r.index,
                        label: labels[r.index].clone(),
                        prob: r.prob,
                    })
                    .collect(),
                logits: args.logits.then(|| row.to_vec()),
            };
            if !args.json {
                print_text(name, &pred);
            }
            out.push(pred);
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    if failures > 0 {
        eprintln!(
            "{failures} of {} image(s) could not be read (see above)",
            args.images.len()
        );
        return Ok(1);
    }
    Ok(0)
}

fn print_text(name: &Path, pred: &Prediction) {
    println!("{}", name.display());
    for (rank, t) in pred.top.iter().enumerate() {
        println!(
            "  {}. {:<32} {:>7.3}%  (class {})",
            rank + 1,
            t.label,
            100.0 * t.prob,
            t.index
        );
    }
    if let Some(l) = &pred.logits {
        println!(
            "  logits: [{}]",
            l.iter()
                .map(|v| format!("{v:.6}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
}
