//! `petal train`, `petal eval`, `petal lr-find`.

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use petal_data::augment::Padding;
use petal_trainer::train::pin_default_device;
use petal_trainer::{
    Cache, EvalOptions, FineTuneConfig, LrFindOptions, Precision, Sampler, Schedule, Split,
    StopReason, TrainOptions, Unfreeze,
};
use std::path::PathBuf;

/// `--dataset`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum DatasetKind {
    /// The folder given by --data (ImageFolder or Oxford-102 native layout).
    Folder,
    /// The built-in synthetic flowers.
    Synthetic,
}

/// Every setting of [`FineTuneConfig`] as a flag; an unset flag keeps the value of
/// `--config FILE` (or the default).
#[derive(Args, Debug, Default)]
pub struct ConfigArgs {
    /// A TOML (or JSON) file of settings; flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Dataset folder: DIR/train/<class>/*, DIR/valid|val/<class>/*, optional DIR/test/; or
    /// Oxford-102 native (jpg/ + imagelabels.mat + setid.mat).
    #[arg(long)]
    data: Option<PathBuf>,
    /// `synthetic` (the built-in flowers, default without --data) or `folder`.
    #[arg(long, value_enum)]
    dataset: Option<DatasetKind>,
    /// Synthetic: classes (1..=72).
    #[arg(long)]
    synthetic_classes: Option<usize>,
    /// Synthetic: training images.
    #[arg(long)]
    synthetic_train: Option<usize>,
    /// Synthetic: validation images.
    #[arg(long)]
    synthetic_valid: Option<usize>,
    /// Synthetic: image side in pixels.
    #[arg(long)]
    synthetic_size: Option<u32>,
    /// Held-out fraction per class when there is no valid/ folder.
    #[arg(long)]
    valid_fraction: Option<f64>,
    /// `ram`: keep decoded images in memory after the first epoch; `device`: decode them
    /// all once into GPU memory (a step then uploads only its augmentation parameters).
    #[arg(long, value_parser = ["none", "ram", "device"])]
    cache: Option<String>,
    /// Down-scale at load so the shorter side is at most this.
    #[arg(long)]
    max_shorter_side: Option<u32>,
    /// Refuse images with more pixels (decompression-bomb guard).
    #[arg(long)]
    max_pixels: Option<u64>,
    /// Decoding threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Backbone: auto (the default: the architecture of --weights, densenet161 without
    /// them), or a torchvision preset: densenet121/161/169/201, mobilenet_v2,
    /// resnet18/34/50/101/152, resnext50_32x4d, resnext101_32x8d/64x4d,
    /// wide_resnet50_2/101_2, efficientnet_b0…b7, efficientnet_v2_s/m/l,
    /// convnext_tiny/small/base/large, mobilenet_v3_large/small. An explicit one that
    /// contradicts --weights is an error.
    #[arg(long)]
    arch: Option<String>,
    /// Pretrained torchvision weights (.pth or .safetensors) for the backbone.
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Head hidden widths, comma-separated (e.g. 1024 or 1024,512).
    #[arg(long, value_delimiter = ',')]
    hidden: Option<Vec<usize>>,
    /// Head dropout.
    #[arg(long)]
    dropout: Option<f64>,
    /// Epochs with the backbone frozen.
    #[arg(long)]
    freeze_epochs: Option<usize>,
    /// Epochs after unfreezing.
    #[arg(long)]
    epochs: Option<usize>,
    /// `all` at once, or `gradual` (one more layer group per epoch from the top).
    #[arg(long, value_parser = ["all", "gradual"])]
    unfreeze: Option<String>,
    /// Keep the frozen backbone's BatchNorm layers training (true/false).
    #[arg(long)]
    train_bn: Option<bool>,
    /// Images per step.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Peak learning rate of the head, or `auto`: run the learning-rate finder first and use
    /// its suggestion (fastai's valley; recorded in config.json as `lr_finder`).
    #[arg(long)]
    lr: Option<String>,
    /// The first layer group gets lr / lr-mult.
    #[arg(long)]
    lr_mult: Option<f64>,
    /// AdamW decoupled weight decay.
    #[arg(long)]
    wd: Option<f64>,
    /// Also decay BatchNorm and bias parameters.
    #[arg(long)]
    wd_bn_bias: bool,
    /// AdamW beta1.
    #[arg(long)]
    beta1: Option<f64>,
    /// AdamW beta2.
    #[arg(long)]
    beta2: Option<f64>,
    /// AdamW epsilon.
    #[arg(long)]
    eps: Option<f64>,
    /// Clip the global gradient norm.
    #[arg(long)]
    grad_clip: Option<f64>,
    /// Label smoothing of the cross-entropy.
    #[arg(long)]
    label_smoothing: Option<f64>,
    /// `cosine` (warmup + cosine annealing) or `one-cycle`.
    #[arg(long, value_parser = ["cosine", "one-cycle"])]
    schedule: Option<String>,
    /// Warmup fraction of each phase.
    #[arg(long)]
    warmup: Option<f64>,
    /// Final learning rate of the head.
    #[arg(long)]
    min_lr: Option<f64>,
    /// Early stopping: epochs without a better valid top-1.
    #[arg(long)]
    patience: Option<usize>,
    /// Gradient accumulation: N batches per optimizer step (effective batch N × batch-size).
    #[arg(long)]
    accum_steps: Option<usize>,
    /// Progressive resizing `START:END` (e.g. 128:224): the training crop grows linearly over
    /// the epochs; END is also the validation crop (it sets --image-size).
    #[arg(long)]
    progressive: Option<String>,
    /// `shuffle` (every image once per epoch) or `balanced` (draws ∝ 1 / class count, with
    /// replacement).
    #[arg(long, value_parser = ["shuffle", "balanced"])]
    sampler: Option<String>,
    /// Weighted cross-entropy: `auto` (n / (K · n_class)) or a JSON file (a list of K
    /// weights, or {"class name": weight}).
    #[arg(long)]
    class_weights: Option<String>,
    /// Exponential moving average of the weights with this decay, e.g. 0.999 (0 = off):
    /// validated, kept as best.ckpt and used by eval/predict/export.
    #[arg(long)]
    ema: Option<f64>,
    /// Warm the EMA decay up over the first steps, as timm's ModelEmaV3 (true/false).
    #[arg(long)]
    ema_warmup: Option<bool>,
    /// MixUp α (timm's --mixup, e.g. 0.2; 0 = off): blend each image with the batch's
    /// reverse by λ ~ Beta(α, α), in the fused augmentation; soft-target loss.
    #[arg(long)]
    mixup: Option<f64>,
    /// CutMix α (timm's --cutmix, e.g. 1.0; 0 = off): paste the partner's box.
    #[arg(long)]
    cutmix: Option<f64>,
    /// Probability that a batch is mixed (timm's --mixup-prob; default 1).
    #[arg(long)]
    mix_prob: Option<f64>,
    /// With MixUp and CutMix both on: probability of CutMix (timm's --mixup-switch-prob;
    /// default 0.5).
    #[arg(long)]
    mix_switch_prob: Option<f64>,
    /// Also write TensorBoard event files into OUT/tb (`tensorboard --logdir OUT/tb`).
    #[arg(long)]
    tensorboard: bool,
    /// Crop size.
    #[arg(long)]
    image_size: Option<usize>,
    /// Validation resize of the shorter side (default image-size·8/7).
    #[arg(long)]
    resize: Option<usize>,
    /// RandomResizedCrop minimum area.
    #[arg(long)]
    scale_min: Option<f64>,
    /// RandomResizedCrop maximum area.
    #[arg(long)]
    scale_max: Option<f64>,
    /// RandomResizedCrop minimum aspect ratio.
    #[arg(long)]
    ratio_min: Option<f64>,
    /// RandomResizedCrop maximum aspect ratio.
    #[arg(long)]
    ratio_max: Option<f64>,
    /// RandomRotation degrees (±).
    #[arg(long)]
    rotation: Option<f64>,
    /// Horizontal flip probability.
    #[arg(long)]
    flip: Option<f64>,
    /// ColorJitter brightness.
    #[arg(long)]
    brightness: Option<f64>,
    /// ColorJitter contrast.
    #[arg(long)]
    contrast: Option<f64>,
    /// ColorJitter saturation.
    #[arg(long)]
    saturation: Option<f64>,
    /// ColorJitter hue.
    #[arg(long)]
    hue: Option<f64>,
    /// Rotation padding: fill or reflect.
    #[arg(long, value_parser = ["fill", "reflect"])]
    padding: Option<String>,
    /// Seed of everything random.
    #[arg(long)]
    seed: Option<u64>,
    /// auto, cpu, wgpu, vulkan, metal, dx12.
    #[arg(long)]
    device: Option<String>,
    /// f32, f16, or mixed (f16 passes, f32 master weights and AdamW state, dynamic loss
    /// scaling as PyTorch's GradScaler; wgpu adapters with f16 only).
    #[arg(long, value_parser = ["f32", "f16", "mixed"])]
    precision: Option<String>,
    /// --precision mixed: initial loss scale (default 65536 = 2^16).
    #[arg(long)]
    loss_scale: Option<f64>,
    /// --precision mixed: clean steps before the loss scale doubles (default 2000).
    #[arg(long)]
    loss_scale_growth: Option<usize>,
    /// Batches decoded ahead.
    #[arg(long)]
    prefetch: Option<usize>,
}

macro_rules! set {
    ($c:ident, $a:ident, $($f:ident),*) => {
        $( if let Some(v) = $a.$f.clone() { $c.$f = v; } )*
    };
}

impl ConfigArgs {
    /// The configuration: `--config` (or defaults) with the flags applied.
    pub fn resolve(&self) -> Result<FineTuneConfig> {
        let mut c = match &self.config {
            Some(p) => FineTuneConfig::from_file(p)?,
            None => FineTuneConfig::default(),
        };
        let a = self;
        set!(
            c,
            a,
            valid_fraction,
            max_pixels,
            arch,
            hidden,
            dropout,
            freeze_epochs,
            epochs,
            train_bn,
            batch_size,
            lr_mult,
            wd,
            beta1,
            beta2,
            eps,
            label_smoothing,
            ema,
            ema_warmup,
            mixup,
            cutmix,
            mix_prob,
            mix_switch_prob,
            loss_scale,
            loss_scale_growth,
            accum_steps,
            warmup,
            min_lr,
            seed,
            device,
            prefetch
        );
        if let Some(d) = &a.data {
            c.data = Some(d.clone());
        }
        match a.dataset {
            Some(DatasetKind::Synthetic) => c.data = None,
            Some(DatasetKind::Folder) if c.data.is_none() => {
                bail!("--dataset folder needs --data DIR")
            }
            _ => {}
        }
        if let Some(v) = a.synthetic_classes {
            c.synthetic.classes = v;
        }
        if let Some(v) = a.synthetic_train {
            c.synthetic.train = v;
        }
        if let Some(v) = a.synthetic_valid {
            c.synthetic.valid = v;
        }
        if let Some(v) = a.synthetic_size {
            c.synthetic.image_size = v;
        }
        match a.lr.as_deref() {
            None => {}
            Some("auto") => c.lr_auto = true,
            Some(v) => {
                c.lr = v.parse().map_err(|_| {
                    anyhow::anyhow!("--lr {v}: give a number (e.g. 2e-3) or `auto`")
                })?;
                c.lr_auto = false;
            }
        }
        if let Some(v) = &a.sampler {
            c.sampler = if v == "balanced" {
                Sampler::Balanced
            } else {
                Sampler::Shuffle
            };
        }
        if a.class_weights.is_some() {
            c.class_weights = a.class_weights.clone();
        }
        if let Some(v) = &a.cache {
            c.cache = match v.as_str() {
                "ram" => Cache::Ram,
                "device" => Cache::Device,
                _ => Cache::None,
            };
        }
        if a.max_shorter_side.is_some() {
            c.max_shorter_side = a.max_shorter_side;
        }
        if a.threads.is_some() {
            c.threads = a.threads;
        }
        if a.weights.is_some() {
            c.weights = a.weights.clone();
        }
        if a.wd_bn_bias {
            c.wd_bn_bias = true;
        }
        if a.grad_clip.is_some() {
            c.grad_clip = a.grad_clip;
        }
        if a.patience.is_some() {
            c.patience = a.patience;
        }
        if a.tensorboard {
            c.tensorboard = true;
        }
        if a.resize.is_some() {
            c.resize = a.resize;
        }
        if let Some(u) = &a.unfreeze {
            c.unfreeze = if u == "gradual" {
                Unfreeze::Gradual
            } else {
                Unfreeze::All
            };
        }
        if let Some(s) = &a.schedule {
            c.schedule = if s == "one-cycle" {
                Schedule::OneCycle
            } else {
                Schedule::Cosine
            };
        }
        if let Some(p) = &a.precision {
            c.precision = match p.as_str() {
                "f16" => Precision::F16,
                "mixed" => Precision::Mixed,
                _ => Precision::F32,
            };
        }
        let aug = &mut c.augment;
        if let Some(v) = a.image_size {
            aug.size = v;
        }
        if let Some(p) = &a.progressive {
            let parse = |v: Option<&str>| v.and_then(|v| v.trim().parse::<usize>().ok());
            let mut parts = p.split(':');
            match (parse(parts.next()), parse(parts.next()), parts.next()) {
                (Some(start), Some(end), None) => {
                    c.progressive = Some((start, end));
                    aug.size = end;
                }
                _ => bail!("--progressive {p}: give START:END in pixels, e.g. 128:224"),
            }
        }
        for (dst, src) in [
            (&mut aug.scale.0, a.scale_min),
            (&mut aug.scale.1, a.scale_max),
            (&mut aug.ratio.0, a.ratio_min),
            (&mut aug.ratio.1, a.ratio_max),
            (&mut aug.rotation, a.rotation),
            (&mut aug.flip, a.flip),
            (&mut aug.brightness, a.brightness),
            (&mut aug.contrast, a.contrast),
            (&mut aug.saturation, a.saturation),
            (&mut aug.hue, a.hue),
        ] {
            if let Some(v) = src {
                *dst = v as f32;
            }
        }
        if let Some(p) = &a.padding {
            aug.padding = if p == "reflect" {
                Padding::Reflect
            } else {
                Padding::Fill([0, 0, 0])
            };
        }
        c.validate()?;
        Ok(c)
    }
}

/// Arguments of `petal train`.
#[derive(Args, Debug)]
pub struct TrainArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Run directory (default: runs/<arch>-<unix time>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue the run in this directory from its `last.ckpt` (its config.json is used;
    /// other settings flags are refused).
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Stop (writing `last.ckpt`, as Ctrl-C does) after this many steps.
    #[arg(long, hide = true)]
    stop_at_step: Option<u64>,
}

/// Runs `petal train`.
pub fn run_train(args: TrainArgs) -> Result<i32> {
    let (config, out, resume) = match &args.resume {
        Some(run) => {
            let c = FineTuneConfig::from_file(run.join("config.json"))
                .with_context(|| format!("--resume {}: not a run directory", run.display()))?;
            (c, run.clone(), true)
        }
        None => {
            let c = args.config.resolve()?;
            let out = args.out.clone().unwrap_or_else(|| {
                let t = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                PathBuf::from("runs").join(format!("{}-{t}", c.arch))
            });
            if out.join("last.ckpt").exists() {
                bail!(
                    "--out {} already holds a run (last.ckpt): continue it with --resume {0}, or choose another --out",
                    out.display()
                );
            }
            (c, out, false)
        }
    };
    // SAFETY: `main` started no thread yet (the Ctrl-C handler's comes next).
    unsafe { pin_default_device(&config)? };
    let mut opts = TrainOptions::new(out);
    opts.resume = resume;
    opts.stop_at_step = args.stop_at_step;
    opts.stop_on_ctrl_c();
    let outcome = petal_trainer::train(&config, &opts)?;
    if let StopReason::Interrupted { .. } = outcome.stop {
        return Ok(130);
    }
    if let Some(last) = outcome.records.last() {
        println!(
            "final: valid top-1 {:.2}% top-5 {:.2}% (run: {})",
            100.0 * last.valid_top1,
            100.0 * last.valid_top5,
            outcome.run_dir.display()
        );
    }
    Ok(0)
}

/// Arguments of `petal eval`.
#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Run directory written by `petal train`.
    #[arg(long)]
    run: PathBuf,
    /// Evaluate on this folder instead of the run's data.
    #[arg(long)]
    data: Option<PathBuf>,
    /// `valid` or `test`.
    #[arg(long, default_value = "valid", value_parser = ["valid", "test"])]
    split: String,
    /// Checkpoint file inside the run.
    #[arg(long, default_value = "best.ckpt")]
    checkpoint: String,
    /// How many of the worst predictions to list.
    #[arg(long, default_value_t = 10)]
    worst: usize,
    /// Average with the mirrored image.
    #[arg(long)]
    tta: bool,
    /// Device override.
    #[arg(long)]
    device: Option<String>,
    /// Batch size override.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `petal eval`.
pub fn run_eval(args: EvalArgs) -> Result<i32> {
    let r = petal_trainer::evaluate(&EvalOptions {
        run: args.run,
        data: args.data,
        split: if args.split == "test" {
            Split::Test
        } else {
            Split::Valid
        },
        checkpoint: args.checkpoint,
        worst: args.worst,
        tta: args.tta,
        device: args.device,
        batch_size: args.batch_size,
        thumbnails: 0,
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(0);
    }
    println!(
        "{} ({} images, {}): loss {:.4}  top-1 {:.2}%  top-5 {:.2}%",
        r.split,
        r.images,
        r.checkpoint,
        r.loss,
        100.0 * r.top1,
        100.0 * r.top5
    );
    println!("per class:");
    for c in &r.per_class {
        match c.accuracy {
            Some(a) => println!(
                "  {:<32} {:>7.2}%  ({} images)",
                c.class,
                100.0 * a,
                c.count
            ),
            None => println!("  {:<32}     n/a  (0 images)", c.class),
        }
    }
    println!("worst predictions:");
    for m in &r.worst {
        println!(
            "  {}  true {} ({:.1}%)  predicted {} ({:.1}%)  loss {:.3}",
            m.file,
            m.label,
            100.0 * m.label_probability,
            m.predicted,
            100.0 * m.probability,
            m.loss
        );
    }
    println!(
        "confusion: {} and {}",
        r.confusion_csv.display(),
        r.confusion_png.display()
    );
    if r.skipped > 0 {
        println!(
            "{} unreadable image(s) skipped (each named above)",
            r.skipped
        );
    }
    Ok(0)
}

/// Arguments of `petal lr-find`.
#[derive(Args, Debug)]
pub struct LrFindArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// First learning rate.
    #[arg(long, default_value_t = 1e-7)]
    start_lr: f64,
    /// Last learning rate.
    #[arg(long, default_value_t = 10.0)]
    end_lr: f64,
    /// Most steps.
    #[arg(long, default_value_t = 100)]
    steps: usize,
    /// Where lr_find.png / .csv / .json go.
    #[arg(long, default_value = ".")]
    out: PathBuf,
}

/// Runs `petal lr-find`.
pub fn run_lr_find(args: LrFindArgs) -> Result<i32> {
    let config = args.config.resolve()?;
    let r = petal_trainer::lr_find(
        &config,
        &LrFindOptions {
            start: args.start_lr,
            end: args.end_lr,
            steps: args.steps,
            out: args.out.clone(),
        },
    )?;
    println!(
        "{} steps from {:.1e} to {:.1e}{}; suggested lr (valley): {:.2e}",
        r.lrs.len(),
        r.lrs.first().copied().unwrap_or(0.0),
        r.lrs.last().copied().unwrap_or(0.0),
        if r.diverged {
            " (stopped: loss diverged)"
        } else {
            ""
        },
        r.suggestion
    );
    println!("plot: {}", args.out.join("lr_find.png").display());
    Ok(0)
}
