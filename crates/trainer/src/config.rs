//! [`FineTuneConfig`]: every setting of a fine-tune run, serialisable (saved as
//! `config.json` in the run directory, accepted as TOML via `--config FILE.toml`).

use crate::error::TrainError;
use petal_core::device::DeviceChoice;
use petal_core::head::PoolOrder;
use petal_core::weights::StateDict;
use petal_core::{BackboneConfig, HeadConfig, arch_names};
use petal_data::augment::{AugmentConfig, Pipeline};
use petal_data::mix::MixConfig;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The architecture `arch = "auto"` means without a weight file: the seed's DenseNet-161.
pub const DEFAULT_ARCH: &str = "densenet161";

/// Largest crop side: the fused augmentation's grid holds at most 65,535 workgroups of
/// 256 pixels per image.
pub const MAX_IMAGE_SIZE: usize = 4095;

/// Most images per step: the fused augmentation's grid holds at most 65,535 images.
pub const MAX_BATCH_SIZE: usize = 65_535;

/// How the backbone is unfrozen after the frozen phase.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unfreeze {
    /// Every layer group at once (fastai's `fine_tune`).
    #[default]
    All,
    /// One more layer group per epoch, from the top (ULMFiT's gradual unfreezing).
    Gradual,
}

/// Learning-rate schedule of each phase.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// Linear warmup from `lr / 25` to `lr` over `warmup` of the phase, then cosine
    /// annealing to `min_lr` (Burn's `LinearLrScheduler` then `CosineAnnealingLrScheduler`).
    #[default]
    Cosine,
    /// fastai's one-cycle: cosine up from `lr / 25` to `lr` over `warmup` (default 0.25
    /// in fastai) of the phase, then cosine down to `lr / 25e4`.
    OneCycle,
}

/// Floating-point precision of the training step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    /// 32-bit floats everywhere.
    #[default]
    F32,
    /// Half precision (wgpu adapters with `shader-f16` only).
    F16,
    /// f16 forward and backward passes, f32 master weights and AdamW state, dynamic loss
    /// scaling (PyTorch's autocast + `GradScaler`; wgpu adapters with `shader-f16` only).
    Mixed,
}

/// Data kept decoded in memory between epochs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cache {
    /// Decode every epoch.
    #[default]
    None,
    /// Keep decoded (and down-scaled) images in RAM after the first epoch.
    Ram,
    /// Decode every image once at the start (down-scaled at load) into one GPU buffer per
    /// split: a training step then uploads only its per-sample augmentation parameters.
    /// Refused, with the bytes, off the GPU or when the images do not fit.
    Device,
}

/// How training samples are drawn each epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sampler {
    /// Every image once per epoch, in a seeded random order.
    #[default]
    Shuffle,
    /// As many draws as images, with replacement, each ∝ 1 / its class's count: classes
    /// equally frequent in expectation (PyTorch's `WeightedRandomSampler`).
    Balanced,
}

/// The built-in synthetic-flowers data set (used when `data` is unset).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SyntheticConfig {
    /// Number of classes (1..=72).
    pub classes: usize,
    /// Training images.
    pub train: usize,
    /// Validation images (different samples of the same generator).
    pub valid: usize,
    /// Side of the generated images in pixels.
    pub image_size: u32,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        Self {
            classes: 10,
            train: 1000,
            valid: 300,
            image_size: 128,
        }
    }
}

/// Every setting of a fine-tune. Defaults are the seed article's recipe (DenseNet-161,
/// concat-pool head 1024 / 0.35, 224² crops, RandomRotation 25, RandomResizedCrop,
/// ColorJitter) with fastai's `fine_tune` schedule (one frozen epoch, then everything
/// unfrozen with discriminative learning rates).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FineTuneConfig {
    // ---- data ----
    /// Dataset folder (ImageFolder or Oxford-102 native layout); unset = synthetic flowers.
    pub data: Option<PathBuf>,
    /// The synthetic data set's shape (when `data` is unset).
    pub synthetic: SyntheticConfig,
    /// Fraction of each class held out for validation when the folder has no `valid/`.
    pub valid_fraction: f64,
    /// Decoded-image cache.
    pub cache: Cache,
    /// Down-scale images at load so the shorter side is at most this many pixels.
    pub max_shorter_side: Option<u32>,
    /// Decompression-bomb guard (pixels).
    pub max_pixels: u64,
    /// Decoding threads (unset: all cores).
    pub threads: Option<usize>,

    // ---- model ----
    /// Backbone preset (any of [`petal_core::arch_names`]: `densenet121`, `resnet50`,
    /// `efficientnet_b0`, `convnext_tiny`, `mobilenet_v3_large`, …), or `auto` (default):
    /// the architecture of `weights`, or [`DEFAULT_ARCH`] without weights. An explicit name
    /// that contradicts `weights` is an error naming both.
    pub arch: String,
    /// A custom backbone (overrides `arch`; TOML/JSON only).
    pub backbone: Option<BackboneConfig>,
    /// Pretrained backbone weights (a torchvision `.pth`); unset = random init.
    pub weights: Option<PathBuf>,
    /// Hidden widths of the concat-pool head.
    pub hidden: Vec<usize>,
    /// Dropout of each head block.
    pub dropout: f64,

    // ---- recipe ----
    /// Epochs with the backbone frozen (phase 1).
    pub freeze_epochs: usize,
    /// Epochs after unfreezing (phase 2).
    pub epochs: usize,
    /// How phase 2 unfreezes.
    pub unfreeze: Unfreeze,
    /// Keep the backbone's BatchNorm layers trainable while it is frozen (fastai's `train_bn`).
    pub train_bn: bool,
    /// Images per step.
    pub batch_size: usize,
    /// Peak learning rate of the head (and of every group in phase 1).
    pub lr: f64,
    /// The first layer group gets `lr / lr_mult`; groups between are geometric (fastai's `slice`).
    pub lr_mult: f64,
    /// Decoupled weight decay (AdamW).
    pub wd: f64,
    /// Apply weight decay to BatchNorm and bias parameters too.
    pub wd_bn_bias: bool,
    /// AdamW β₁.
    pub beta1: f64,
    /// AdamW β₂.
    pub beta2: f64,
    /// AdamW ε.
    pub eps: f64,
    /// Clip the global gradient norm to this value.
    pub grad_clip: Option<f64>,
    /// Label smoothing ε of the cross-entropy.
    pub label_smoothing: f64,
    /// Learning-rate schedule of each phase.
    pub schedule: Schedule,
    /// Warmup fraction of each phase's steps.
    pub warmup: f64,
    /// Final learning rate of the head's cosine (other groups scaled alike).
    pub min_lr: f64,
    /// Stop after this many epochs without a better validation top-1.
    pub patience: Option<usize>,
    /// Gradient accumulation (`--accum-steps N`): N batches of `batch_size` per optimizer
    /// step, the gradient of their mean (as one batch of N·batch_size, BatchNorm statistics
    /// aside); the schedule counts optimizer steps.
    pub accum_steps: usize,
    /// `--lr auto`: run the learning-rate finder (fastai's `valley`, the phase-1 model) before
    /// training and use its suggestion as `lr`.
    pub lr_auto: bool,
    /// The finder's suggestion when `lr_auto` chose `lr` (recorded in `config.json`).
    pub lr_finder: Option<f64>,
    /// fastai's progressive resizing (`--progressive START:END`, TOML `progressive = [S, E]`):
    /// the training crop grows linearly from START in the first epoch to END in the last
    /// (rounded to a multiple of 8 between them); END must be `augment.size`, the validation
    /// crop (`--progressive` sets it).
    pub progressive: Option<(usize, usize)>,
    /// How training samples are drawn (`--sampler shuffle|balanced`).
    pub sampler: Sampler,
    /// Weighted cross-entropy (`--class-weights`): `auto` (`n / (K · n_c)`, scikit-learn's
    /// "balanced") or a JSON file — a list of K weights in label order, or an object from
    /// class name to weight (classes left out weigh 1). PyTorch's `weight=` semantics: the
    /// batch loss is normalised by the sum of its samples' weights. Validation loss stays
    /// unweighted.
    pub class_weights: Option<String>,
    /// Exponential moving average of the weights and BatchNorm statistics, updated after
    /// every optimizer step with this decay (timm's `ModelEmaV3`; 0 = off). Validation,
    /// `best.ckpt`, `eval`, `predict --run` and `export` use the average (`--ema`).
    pub ema: f64,
    /// Warm the EMA decay up as timm's `use_warmup` (`1 − (1 + t)^(−2/3)`, capped at `ema`),
    /// so early averages are not dominated by the initial weights (`--ema-warmup`).
    pub ema_warmup: bool,
    /// MixUp's `α` (`--mixup`, timm's `mixup_alpha`; 0 = off): a mixed batch blends each
    /// image with the batch's reverse by `λ ~ Beta(α, α)`, inside the fused augmentation.
    pub mixup: f64,
    /// CutMix's `α` (`--cutmix`, timm's `cutmix_alpha`; 0 = off): the partner's box of area
    /// `≈ (1 − λ)·S²` pasted in, `λ` corrected to the pasted area.
    pub cutmix: f64,
    /// Probability that a batch is mixed when MixUp or CutMix is on (`--mix-prob`, timm's
    /// `mixup_prob`).
    pub mix_prob: f64,
    /// With both on, probability of CutMix instead of MixUp (`--mix-switch-prob`, timm's
    /// `mixup_switch_prob`).
    pub mix_switch_prob: f64,
    /// Also write TensorBoard event files under `<out>/tb/`: per-step train loss and each
    /// group's learning rate, per-epoch validation loss/top-1/top-5, train loss/top-1 and
    /// images/s, and the configuration as text (`--tensorboard`).
    pub tensorboard: bool,

    // ---- augmentation ----
    /// Training augmentation; its `size` is also the validation center crop, its
    /// `mean`/`std` the normalisation everywhere (`[augment]` in TOML).
    pub augment: AugmentConfig,
    /// Validation resize of the shorter side (unset: `augment.size · 8 / 7`, 256 for 224).
    pub resize: Option<usize>,

    // ---- run ----
    /// Seed of everything random (init, split, order, augmentation, dropout).
    pub seed: u64,
    /// `auto`, `cpu`, `wgpu`, `vulkan`, `metal`, `dx12`.
    pub device: String,
    /// Step precision.
    pub precision: Precision,
    /// `--precision mixed`: the initial loss scale (`GradScaler`'s `init_scale`, 2^16).
    pub loss_scale: f64,
    /// `--precision mixed`: clean steps before the loss scale doubles (`GradScaler`'s
    /// `growth_interval`, 2000).
    pub loss_scale_growth: usize,
    /// Batches decoded ahead.
    pub prefetch: usize,
}

impl Default for FineTuneConfig {
    fn default() -> Self {
        Self {
            data: None,
            synthetic: SyntheticConfig::default(),
            valid_fraction: 0.2,
            cache: Cache::None,
            max_shorter_side: None,
            max_pixels: petal_data::DEFAULT_MAX_PIXELS,
            threads: None,
            arch: "auto".into(),
            backbone: None,
            weights: None,
            hidden: vec![1024],
            dropout: 0.35,
            freeze_epochs: 1,
            epochs: 5,
            unfreeze: Unfreeze::All,
            train_bn: true,
            batch_size: 32,
            lr: 2e-3,
            lr_mult: 100.0,
            wd: 0.01,
            wd_bn_bias: false,
            beta1: 0.9,
            beta2: 0.99,
            eps: 1e-5,
            tensorboard: false,
            grad_clip: None,
            label_smoothing: 0.0,
            schedule: Schedule::Cosine,
            warmup: 0.1,
            min_lr: 0.0,
            patience: None,
            accum_steps: 1,
            lr_auto: false,
            lr_finder: None,
            progressive: None,
            sampler: Sampler::Shuffle,
            class_weights: None,
            ema: 0.0,
            ema_warmup: true,
            mixup: 0.0,
            cutmix: 0.0,
            mix_prob: 1.0,
            mix_switch_prob: 0.5,
            augment: AugmentConfig::default(),
            resize: None,
            seed: 42,
            device: "auto".into(),
            precision: Precision::F32,
            loss_scale: 65_536.0,
            loss_scale_growth: 2000,
            prefetch: 2,
        }
    }
}

impl FineTuneConfig {
    /// Reads a TOML (`.toml`) or JSON (anything else, e.g. a run's `config.json`) file;
    /// missing fields take their defaults, unknown fields are an error naming them.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, TrainError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
        let parsed = if path.extension().is_some_and(|e| e == "toml") {
            toml::from_str(&text).map_err(|e| e.to_string())
        } else {
            serde_json::from_str(&text).map_err(|e| e.to_string())
        };
        parsed.map_err(|reason| TrainError::Config {
            what: path.display().to_string(),
            reason,
        })
    }

    /// The backbone: `backbone` if set, else the `arch` preset; `auto` takes the
    /// architecture of the weight file `weights` (already read), and is [`DEFAULT_ARCH`]
    /// without one. An explicit `arch` or `backbone` that contradicts the file is an error
    /// naming both.
    pub fn resolve_backbone(
        &self,
        weights: Option<&StateDict>,
    ) -> Result<BackboneConfig, TrainError> {
        let asked = match (&self.backbone, self.arch.as_str()) {
            (Some(b), _) => Some(b.clone()),
            (None, "auto") => None,
            (None, name) => Some(BackboneConfig::from_name(name)?),
        };
        Ok(match (weights, asked) {
            (Some(sd), asked) => sd.backbone_matching(asked)?,
            (None, Some(b)) => b,
            (None, None) => BackboneConfig::from_name(DEFAULT_ARCH)?,
        })
    }

    /// This configuration with the architecture spelled out (`arch` = the preset's name, or
    /// `backbone` = the custom configuration): what a run directory records, so that
    /// `--resume` and `eval` never need the weight file again.
    pub fn with_backbone(&self, backbone: &BackboneConfig) -> Self {
        let mut c = self.clone();
        match BackboneConfig::from_name(&backbone.name()) {
            Ok(preset) if &preset == backbone => {
                c.arch = backbone.name();
                c.backbone = None;
            }
            _ => c.backbone = Some(backbone.clone()),
        }
        c
    }

    /// The head: concat-pool with `hidden` and `dropout` (avg then max).
    pub fn head_config(&self) -> HeadConfig {
        HeadConfig::ConcatPool {
            hidden: self.hidden.clone(),
            dropout: vec![self.dropout; self.hidden.len() + 1],
            pool_order: PoolOrder::AvgMax,
        }
    }

    /// The validation resize (shorter side).
    pub fn eval_resize(&self) -> usize {
        self.resize.unwrap_or((self.augment.size * 8).div_ceil(7))
    }

    /// The training augmentation.
    pub fn augment_config(&self) -> AugmentConfig {
        self.augment.clone()
    }

    /// The training pipeline of `epoch` (0-based): the augmentation at that epoch's crop
    /// ([`train_size`](Self::train_size)) with MixUp / CutMix, seeded by `seed`.
    pub fn train_pipeline(&self, epoch: usize) -> Pipeline {
        let aug = AugmentConfig {
            size: self.train_size(epoch),
            ..self.augment_config()
        };
        Pipeline::train(aug, self.seed).with_mix(self.mix_config())
    }

    /// MixUp / CutMix settings (timm's batch mode).
    pub fn mix_config(&self) -> MixConfig {
        MixConfig {
            mixup: self.mixup,
            cutmix: self.cutmix,
            prob: self.mix_prob,
            switch_prob: self.mix_switch_prob,
        }
    }

    /// The training crop of `epoch` (0-based) of the run's `freeze_epochs + epochs`:
    /// `augment.size`, or with `progressive = (S, E)` the linear ramp from S (first epoch) to
    /// E (last), intermediate sizes rounded to a multiple of 8 (fewer distinct kernel shapes)
    /// and kept between S and E.
    pub fn train_size(&self, epoch: usize) -> usize {
        let Some((start, end)) = self.progressive else {
            return self.augment.size;
        };
        let total = self.freeze_epochs + self.epochs;
        if total <= 1 || epoch + 1 >= total {
            return end;
        }
        if epoch == 0 {
            return start;
        }
        let t = epoch as f64 / (total - 1) as f64;
        let raw = start as f64 + (end as f64 - start as f64) * t;
        let rounded = ((raw / 8.0).round() * 8.0) as usize;
        rounded.clamp(start.min(end), start.max(end))
    }

    /// Checks every setting before anything runs; an error names the flag, the config key,
    /// the value and the allowed range.
    pub fn validate(&self) -> Result<(), TrainError> {
        if let Some(backbone) = &self.backbone {
            backbone.check()?;
        }
        let mut v = Ranges::default();
        let aug = &self.augment;
        v.int(
            "batch-size",
            "batch_size",
            self.batch_size,
            1,
            MAX_BATCH_SIZE,
        );
        v.int("prefetch", "prefetch", self.prefetch, 1, 64);
        if let Some(t) = self.threads {
            v.int("threads", "threads", t, 1, 1024);
        }
        v.int(
            "max-pixels",
            "max_pixels",
            self.max_pixels as usize,
            1,
            usize::MAX,
        );
        if let Some(s) = self.max_shorter_side {
            v.int(
                "max-shorter-side",
                "max_shorter_side",
                s as usize,
                8,
                65_535,
            );
        }
        v.check(
            self.freeze_epochs + self.epochs >= 1,
            "epochs",
            "epochs",
            format!(
                "{} (with --freeze-epochs {})",
                self.epochs, self.freeze_epochs
            ),
            "freeze_epochs + epochs must be at least 1".into(),
        );
        v.real("lr", "lr", self.lr, Open(0.0), Closed(1.0));
        v.real("lr-mult", "lr_mult", self.lr_mult, Closed(1.0), Closed(1e6));
        v.real("wd", "wd", self.wd, Closed(0.0), Closed(1.0));
        v.real("beta1", "beta1", self.beta1, Closed(0.0), Open(1.0));
        v.real("beta2", "beta2", self.beta2, Closed(0.0), Open(1.0));
        v.real("eps", "eps", self.eps, Open(0.0), Closed(1.0));
        if let Some(c) = self.grad_clip {
            v.real("grad-clip", "grad_clip", c, Open(0.0), Closed(1e9));
        }
        v.real(
            "label-smoothing",
            "label_smoothing",
            self.label_smoothing,
            Closed(0.0),
            Open(1.0),
        );
        v.real("warmup", "warmup", self.warmup, Closed(0.0), Open(1.0));
        v.real("ema", "ema", self.ema, Closed(0.0), Open(1.0));
        v.real(
            "loss-scale",
            "loss_scale",
            self.loss_scale,
            Open(0.0),
            Closed(1e30),
        );
        v.int(
            "loss-scale-growth",
            "loss_scale_growth",
            self.loss_scale_growth,
            1,
            u32::MAX as usize,
        );
        v.real("mixup", "mixup", self.mixup, Closed(0.0), Closed(100.0));
        v.real("cutmix", "cutmix", self.cutmix, Closed(0.0), Closed(100.0));
        v.real(
            "mix-prob",
            "mix_prob",
            self.mix_prob,
            Closed(0.0),
            Closed(1.0),
        );
        v.real(
            "mix-switch-prob",
            "mix_switch_prob",
            self.mix_switch_prob,
            Closed(0.0),
            Closed(1.0),
        );
        v.real("min-lr", "min_lr", self.min_lr, Closed(0.0), Open(self.lr));
        if let Some(p) = self.patience {
            v.int("patience", "patience", p, 1, usize::MAX);
        }
        v.real("dropout", "dropout", self.dropout, Closed(0.0), Open(1.0));
        v.real(
            "valid-fraction",
            "valid_fraction",
            self.valid_fraction,
            Closed(0.0),
            Open(1.0),
        );
        for &h in &self.hidden {
            v.int("hidden", "hidden", h, 1, 1 << 20);
        }
        v.int("image-size", "augment.size", aug.size, 8, MAX_IMAGE_SIZE);
        v.int("accum-steps", "accum_steps", self.accum_steps, 1, 1024);
        if let Some((start, end)) = self.progressive {
            v.int("progressive", "progressive", start, 8, MAX_IMAGE_SIZE);
            v.int("progressive", "progressive", end, 8, MAX_IMAGE_SIZE);
            if end != aug.size {
                v.check(
                    false,
                    "progressive",
                    "progressive",
                    format!("{start}:{end}"),
                    format!(
                        "END must equal augment.size ({}), the validation crop (--progressive sets it; in a config file set both)",
                        aug.size
                    ),
                );
            }
        }
        v.int(
            "resize",
            "resize",
            self.eval_resize(),
            aug.size,
            8 * MAX_IMAGE_SIZE,
        );
        v.real(
            "scale-min",
            "augment.scale",
            aug.scale.0 as f64,
            Open(0.0),
            Closed(aug.scale.1 as f64),
        );
        v.real(
            "scale-max",
            "augment.scale",
            aug.scale.1 as f64,
            Open(0.0),
            Closed(1.0),
        );
        v.real(
            "ratio-min",
            "augment.ratio",
            aug.ratio.0 as f64,
            Open(0.0),
            Closed(aug.ratio.1 as f64),
        );
        v.real(
            "ratio-max",
            "augment.ratio",
            aug.ratio.1 as f64,
            Open(0.0),
            Closed(100.0),
        );
        v.real(
            "rotation",
            "augment.rotation",
            aug.rotation as f64,
            Closed(0.0),
            Closed(180.0),
        );
        v.real(
            "flip",
            "augment.flip",
            aug.flip as f64,
            Closed(0.0),
            Closed(1.0),
        );
        v.real(
            "brightness",
            "augment.brightness",
            aug.brightness as f64,
            Closed(0.0),
            Closed(100.0),
        );
        v.real(
            "contrast",
            "augment.contrast",
            aug.contrast as f64,
            Closed(0.0),
            Closed(100.0),
        );
        v.real(
            "saturation",
            "augment.saturation",
            aug.saturation as f64,
            Closed(0.0),
            Closed(100.0),
        );
        v.real(
            "hue",
            "augment.hue",
            aug.hue as f64,
            Closed(0.0),
            Closed(0.5),
        );
        for c in 0..3 {
            v.real(
                "",
                "augment.mean",
                aug.mean[c] as f64,
                Closed(-1e3),
                Closed(1e3),
            );
            v.real("", "augment.std", aug.std[c] as f64, Open(0.0), Closed(1e3));
        }
        if self.data.is_none() {
            let s = &self.synthetic;
            v.int(
                "synthetic-classes",
                "synthetic.classes",
                s.classes,
                1,
                petal_data::synthetic::MAX_CLASSES,
            );
            v.int("synthetic-train", "synthetic.train", s.train, 1, 10_000_000);
            v.int("synthetic-valid", "synthetic.valid", s.valid, 1, 10_000_000);
            v.int(
                "synthetic-size",
                "synthetic.image_size",
                s.image_size as usize,
                16,
                4096,
            );
        }
        v.check(
            self.device.parse::<DeviceChoice>().is_ok(),
            "device",
            "device",
            self.device.clone(),
            "one of auto, cpu, wgpu, vulkan, metal, dx12 (or wgpu:N)".into(),
        );
        v.check(
            self.arch == "auto" || BackboneConfig::from_name(&self.arch).is_ok(),
            "arch",
            "arch",
            self.arch.clone(),
            format!("auto or one of {}", arch_names().join(", ")),
        );
        v.finish()?;
        // The smallest crop the backbone can take: its feature map must keep ≥ 1 pixel.
        if self.arch != "auto" || self.backbone.is_some() {
            let backbone = self.resolve_backbone(None)?;
            let stride = backbone.output_stride();
            let (flag, key, smallest) = match self.progressive {
                Some((s, e)) if s.min(e) < aug.size => ("progressive", "progressive", s.min(e)),
                _ => ("image-size", "augment.size", aug.size),
            };
            if smallest < stride {
                return Err(TrainError::OutOfRange {
                    flag: Some(flag.into()),
                    key: key.into(),
                    value: smallest.to_string(),
                    allowed: format!(
                        "allowed {stride}..={MAX_IMAGE_SIZE} for {} (it downsamples by {stride})",
                        backbone.name()
                    ),
                });
            }
        }
        Ok(())
    }
}

use Bound::{Closed, Open};

/// One end of an allowed range.
#[derive(Clone, Copy)]
enum Bound {
    Open(f64),
    Closed(f64),
}

/// Collects the first out-of-range setting.
#[derive(Default)]
struct Ranges(Option<TrainError>);

impl Ranges {
    fn check(&mut self, ok: bool, flag: &str, key: &str, value: String, allowed: String) {
        if !ok && self.0.is_none() {
            self.0 = Some(TrainError::OutOfRange {
                flag: (!flag.is_empty()).then(|| flag.to_string()),
                key: key.into(),
                value,
                allowed,
            });
        }
    }

    fn int(&mut self, flag: &str, key: &str, value: usize, min: usize, max: usize) {
        let allowed = if max == usize::MAX {
            format!("allowed at least {min}")
        } else {
            format!("allowed {min}..={max}")
        };
        self.check(
            (min..=max).contains(&value),
            flag,
            key,
            value.to_string(),
            allowed,
        );
    }

    fn real(&mut self, flag: &str, key: &str, value: f64, lo: Bound, hi: Bound) {
        let (ok_lo, l) = match lo {
            Open(a) => (value > a, format!("({a}")),
            Closed(a) => (value >= a, format!("[{a}")),
        };
        let (ok_hi, h) = match hi {
            Open(b) => (value < b, format!("{b})")),
            Closed(b) => (value <= b, format!("{b}]")),
        };
        // NaN fails both comparisons.
        self.check(
            ok_lo && ok_hi,
            flag,
            key,
            value.to_string(),
            format!("allowed {l}, {h}"),
        );
    }

    fn finish(self) -> Result<(), TrainError> {
        self.0.map_or(Ok(()), Err)
    }
}
