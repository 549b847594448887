//! [`FineTuneConfig`]: every setting of a fine-tune run, serialisable (saved as
//! `config.json` in the run directory, accepted as TOML via `--config FILE.toml`).

use crate::error::TrainError;
use petal_core::head::PoolOrder;
use petal_core::{BackboneConfig, HeadConfig};
use petal_data::augment::AugmentConfig;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

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
    /// Backbone preset (`densenet121/161/169/201`, `mobilenet_v2`).
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
            arch: "densenet161".into(),
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
            grad_clip: None,
            label_smoothing: 0.0,
            schedule: Schedule::Cosine,
            warmup: 0.1,
            min_lr: 0.0,
            patience: None,
            augment: AugmentConfig::default(),
            resize: None,
            seed: 42,
            device: "auto".into(),
            precision: Precision::F32,
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

    /// The backbone: `backbone` if set, else the `arch` preset.
    pub fn backbone_config(&self) -> Result<BackboneConfig, TrainError> {
        match &self.backbone {
            Some(b) => Ok(b.clone()),
            None => BackboneConfig::from_name(&self.arch).map_err(TrainError::Core),
        }
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

    /// Checks ranges; the error names the field.
    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |field: &str, reason: String| {
            Err(TrainError::Config {
                what: format!("`{field}`"),
                reason,
            })
        };
        if self.batch_size == 0 {
            return bad("batch_size", "must be at least 1".into());
        }
        if self.freeze_epochs + self.epochs == 0 {
            return bad("epochs", "freeze_epochs + epochs must be at least 1".into());
        }
        if !(self.lr > 0.0 && self.lr <= 1.0) {
            return bad("lr", format!("{} is not in (0, 1]", self.lr));
        }
        if self.lr_mult < 1.0 {
            return bad("lr_mult", format!("{} must be ≥ 1", self.lr_mult));
        }
        if !(0.0..self.lr).contains(&self.min_lr) {
            return bad("min_lr", format!("{} must be in [0, lr)", self.min_lr));
        }
        if !(0.0..1.0).contains(&self.warmup) {
            return bad("warmup", format!("{} is a fraction in [0, 1)", self.warmup));
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return bad(
                "label_smoothing",
                format!("{} must be in [0, 1)", self.label_smoothing),
            );
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad("dropout", format!("{} must be in [0, 1)", self.dropout));
        }
        if self.hidden.contains(&0) {
            return bad("hidden", "widths must be ≥ 1".into());
        }
        let aug = &self.augment;
        if aug.size < 8 {
            return bad("augment.size", format!("{} is too small", aug.size));
        }
        if self.eval_resize() < aug.size {
            return bad(
                "resize",
                format!(
                    "{} is smaller than the crop size {}",
                    self.eval_resize(),
                    aug.size
                ),
            );
        }
        let (s0, s1) = aug.scale;
        if !(s0 > 0.0 && s0 <= s1 && s1 <= 1.0) {
            return bad(
                "augment.scale",
                format!("({s0}, {s1}) must satisfy 0 < min ≤ max ≤ 1"),
            );
        }
        let (r0, r1) = aug.ratio;
        if !(r0 > 0.0 && r0 <= r1) {
            return bad(
                "augment.ratio",
                format!("({r0}, {r1}) must satisfy 0 < min ≤ max"),
            );
        }
        if !(0.0..=1.0).contains(&aug.flip) {
            return bad("augment.flip", format!("{} is a probability", aug.flip));
        }
        if !(0.0..=0.5).contains(&aug.hue) {
            return bad("augment.hue", format!("{} must be in [0, 0.5]", aug.hue));
        }
        for (name, v) in [
            ("rotation", aug.rotation),
            ("brightness", aug.brightness),
            ("contrast", aug.contrast),
            ("saturation", aug.saturation),
        ] {
            if !(v >= 0.0 && v.is_finite()) {
                return bad(&format!("augment.{name}"), format!("{v} must be ≥ 0"));
            }
        }
        if self.data.is_none()
            && !(1..=petal_data::synthetic::MAX_CLASSES).contains(&self.synthetic.classes)
        {
            return bad(
                "synthetic.classes",
                format!(
                    "{} is not in 1..={}",
                    self.synthetic.classes,
                    petal_data::synthetic::MAX_CLASSES
                ),
            );
        }
        self.backbone_config()?;
        Ok(())
    }
}
