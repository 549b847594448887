//! The augmentation pipeline the trainer calls: per-sample parameters drawn on the CPU
//! from a seeded RNG, applied on the device by one fused pass
//! ([`petal_kernels::augment::augment_batch`]; the CPU reference on non-wgpu devices).
//!
//! Train mode is the seed's recipe — `RandomRotation(25)`, `RandomResizedCrop(224)`,
//! `ColorJitter(0.2, 0.2, 0.2, 0.05)`, `RandomHorizontalFlip()`, `ToTensor()`,
//! `Normalize(ImageNet)` — composed into one affine map per sample (rotation about the crop
//! centre) plus colour factors. Semantics (colour order, contrast mean, antialiasing,
//! padding) are documented in [`petal_kernels::augment`].
//!
//! Eval mode is the deterministic resize of the shorter side + center crop + normalise
//! (torchvision's `Resize` / `CenterCrop` geometry, sampled by the same kernel: bilinear with
//! box supersampling, so close to but not bit-exact with Pillow; [`crate::EvalTransform`] is
//! the bit-exact CPU path).

use crate::loader::PackedBatch;
use crate::mix::{self, Mix, MixConfig};
use crate::transform::EvalTransform;
use crate::transform::{IMAGENET_MEAN, IMAGENET_STD};
use burn::tensor::{DType, Device, Tensor, TensorData};
use petal_kernels::augment::{
    AugmentParams, Normalize, PixelMix, augment_batch, augment_resident, eval_resample,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

pub use petal_kernels::augment::Padding;

/// The training augmentation recipe. `Default` is the seed's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AugmentConfig {
    /// Output side (224).
    pub size: usize,
    /// Crop area as a fraction of the image, uniform in this range ((0.08, 1.0)).
    pub scale: (f32, f32),
    /// Crop aspect ratio w/h, log-uniform in this range ((3/4, 4/3)).
    pub ratio: (f32, f32),
    /// Rotation in degrees, uniform in `[-rotation, rotation]` (25).
    pub rotation: f32,
    /// Probability of a horizontal flip (0.5).
    pub flip: f32,
    /// ColorJitter brightness: factor uniform in `[max(0, 1 − b), 1 + b]` (0.2).
    pub brightness: f32,
    /// ColorJitter contrast: factor uniform in `[max(0, 1 − c), 1 + c]` (0.2).
    pub contrast: f32,
    /// ColorJitter saturation: factor uniform in `[max(0, 1 − s), 1 + s]` (0.2).
    pub saturation: f32,
    /// ColorJitter hue: shift uniform in `[-h, h]` turns, `h ≤ 0.5` (0.05).
    pub hue: f32,
    /// Outside-the-image fill (black, like `RandomRotation`) or reflection.
    pub padding: Padding,
    /// Normalisation mean (ImageNet).
    pub mean: [f32; 3],
    /// Normalisation std (ImageNet).
    pub std: [f32; 3],
}

impl Default for AugmentConfig {
    fn default() -> Self {
        Self {
            size: 224,
            scale: (0.08, 1.0),
            ratio: (3.0 / 4.0, 4.0 / 3.0),
            rotation: 25.0,
            flip: 0.5,
            brightness: 0.2,
            contrast: 0.2,
            saturation: 0.2,
            hue: 0.05,
            padding: Padding::default(),
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
        }
    }
}

/// One sample's random draw, in torchvision's terms.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SampleDraw {
    /// `RandomResizedCrop.get_params`: (top `i`, left `j`, height `h`, width `w`) in source
    /// pixels.
    pub crop: (u32, u32, u32, u32),
    /// Rotation in degrees (counter-clockwise).
    pub angle: f32,
    /// Horizontal flip.
    pub flip: bool,
    /// Brightness factor.
    pub brightness: f32,
    /// Contrast factor.
    pub contrast: f32,
    /// Saturation factor.
    pub saturation: f32,
    /// Hue shift (turns).
    pub hue: f32,
}

/// torchvision's `RandomResizedCrop.get_params`: ten tries of a random area and log-uniform
/// aspect ratio, then the fallback (the whole image, or its center clamped to the ratio range).
/// Returns (top, left, height, width).
pub fn random_resized_crop(
    rng: &mut impl Rng,
    width: u32,
    height: u32,
    scale: (f32, f32),
    ratio: (f32, f32),
) -> (u32, u32, u32, u32) {
    let (wf, hf) = (width as f64, height as f64);
    let area = wf * hf;
    let (lr0, lr1) = ((ratio.0 as f64).ln(), (ratio.1 as f64).ln());
    let uniform = |rng: &mut dyn rand::RngCore, a: f64, b: f64| {
        if b > a {
            a + (b - a) * rng.random::<f64>()
        } else {
            a
        }
    };
    for _ in 0..10 {
        let target = area * uniform(rng, scale.0 as f64, scale.1 as f64);
        let aspect = uniform(rng, lr0, lr1).exp();
        let w = (target * aspect).sqrt().round_ties_even() as i64;
        let h = (target / aspect).sqrt().round_ties_even() as i64;
        if 0 < w && w <= width as i64 && 0 < h && h <= height as i64 {
            let i = rng.random_range(0..=(height as i64 - h)) as u32;
            let j = rng.random_range(0..=(width as i64 - w)) as u32;
            return (i, j, h as u32, w as u32);
        }
    }
    let in_ratio = wf / hf;
    let (rmin, rmax) = (ratio.0.min(ratio.1) as f64, ratio.0.max(ratio.1) as f64);
    let (w, h) = if in_ratio < rmin {
        (width, ((wf / rmin).round_ties_even() as u32).max(1))
    } else if in_ratio > rmax {
        (((hf * rmax).round_ties_even() as u32).max(1), height)
    } else {
        (width, height)
    };
    (
        (height - h.min(height)) / 2,
        (width - w.min(width)) / 2,
        h,
        w,
    )
}

#[derive(Clone, Debug, PartialEq)]
enum Mode {
    Train {
        config: AugmentConfig,
        seed: u64,
        mix: MixConfig,
    },
    Eval {
        size: usize,
        resize: usize,
        norm: Normalize,
    },
}

/// Augmentation (train) or deterministic preprocessing (eval) of packed batches, run as one
/// fused pass on the device.
#[derive(Clone, Debug, PartialEq)]
pub struct Pipeline {
    mode: Mode,
}

impl Pipeline {
    /// Random augmentation with `config`, reproducible from `seed`.
    ///
    /// # Panics
    /// If `config.size` is zero or a range is invalid.
    pub fn train(config: AugmentConfig, seed: u64) -> Self {
        assert!(config.size > 0, "augment: size must be > 0");
        assert!(
            0.0 < config.scale.0 && config.scale.0 <= config.scale.1,
            "augment: scale must satisfy 0 < min ≤ max, got {:?}",
            config.scale
        );
        assert!(
            0.0 < config.ratio.0 && config.ratio.0 <= config.ratio.1,
            "augment: ratio must satisfy 0 < min ≤ max, got {:?}",
            config.ratio
        );
        assert!(
            (0.0..=0.5).contains(&config.hue),
            "augment: hue must be in [0, 0.5], got {}",
            config.hue
        );
        assert!(
            config.brightness >= 0.0
                && config.contrast >= 0.0
                && config.saturation >= 0.0
                && config.rotation >= 0.0
                && (0.0..=1.0).contains(&config.flip),
            "augment: jitter, rotation must be ≥ 0 and flip a probability"
        );
        Self {
            mode: Mode::Train {
                config,
                seed,
                mix: MixConfig::default(),
            },
        }
    }

    /// The same training pipeline with MixUp / CutMix (`mix`, timm's batch mode: each batch
    /// mixed with its own reverse, drawn per batch by [`mix::draw`]); no effect in eval mode.
    ///
    /// # Panics
    /// If an alpha is negative or not finite, or a probability is outside `[0, 1]`.
    pub fn with_mix(mut self, mix: MixConfig) -> Self {
        assert!(
            mix.mixup >= 0.0
                && mix.cutmix >= 0.0
                && mix.mixup.is_finite()
                && mix.cutmix.is_finite()
                && (0.0..=1.0).contains(&mix.prob)
                && (0.0..=1.0).contains(&mix.switch_prob),
            "augment: mix alphas must be finite and ≥ 0, probabilities in [0, 1], got {mix:?}"
        );
        if let Mode::Train { mix: m, .. } = &mut self.mode {
            *m = mix;
        }
        self
    }

    /// The mixing of `batch` in `epoch`: drawn from an RNG keyed by (seed, epoch, the batch's
    /// source indices in order) only, so a resumed run draws the same; [`Mix::None`] in eval
    /// mode or with mixing off.
    pub fn mix_for(&self, batch: &PackedBatch, epoch: u64) -> Mix {
        let Mode::Train { seed, mix: m, .. } = &self.mode else {
            return Mix::None;
        };
        if !m.enabled() || batch.is_empty() {
            return Mix::None;
        }
        // FNV-1a over the indices: the batch's identity, whatever its position in the epoch.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for &i in &batch.indices {
            for b in (i as u64).to_le_bytes() {
                h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
            }
        }
        let mut rng = keyed_rng(*seed, epoch, h, b"petalmix");
        mix::draw(m, self.size() as u32, &mut rng)
    }

    /// Deterministic resize of the shorter side to `resize` + center crop `size` + normalise
    /// (the eval transform).
    ///
    /// # Panics
    /// If `size` or `resize` is zero.
    pub fn eval(size: usize, resize: usize, mean: [f32; 3], std: [f32; 3]) -> Self {
        assert!(
            size > 0 && resize > 0,
            "augment: size and resize must be > 0"
        );
        Self {
            mode: Mode::Eval {
                size,
                resize,
                norm: Normalize { mean, std },
            },
        }
    }

    /// Output side.
    pub fn size(&self) -> usize {
        match &self.mode {
            Mode::Train { config, .. } => config.size,
            Mode::Eval { size, .. } => *size,
        }
    }

    /// The normalisation applied last.
    pub fn normalize(&self) -> Normalize {
        match &self.mode {
            Mode::Train { config, .. } => Normalize {
                mean: config.mean,
                std: config.std,
            },
            Mode::Eval { norm, .. } => *norm,
        }
    }

    /// Whether this is the (random) train mode.
    pub fn is_train(&self) -> bool {
        matches!(self.mode, Mode::Train { .. })
    }

    /// The RNG of sample `index` in `epoch`: a function of (seed, epoch, index) only.
    fn rng(seed: u64, epoch: u64, index: usize) -> ChaCha8Rng {
        keyed_rng(seed, epoch, index as u64, b"petalaug")
    }

    /// The random draw of sample `index` (a `width × height` image) in `epoch`; `None` in
    /// eval mode.
    pub fn draw(&self, index: usize, epoch: u64, width: u32, height: u32) -> Option<SampleDraw> {
        let Mode::Train {
            config: c, seed, ..
        } = &self.mode
        else {
            return None;
        };
        let mut rng = Self::rng(*seed, epoch, index);
        // Fixed draw order: crop, angle, flip, brightness, contrast, saturation, hue.
        let crop = random_resized_crop(&mut rng, width, height, c.scale, c.ratio);
        let mut uniform = |a: f32, b: f32| a + (b - a) * rng.random::<f32>();
        let angle = uniform(-c.rotation, c.rotation);
        let flip = uniform(0.0, 1.0) < c.flip;
        let mut factor = |f: f32| {
            let v = uniform((1.0 - f).max(0.0), 1.0 + f);
            if f == 0.0 { 1.0 } else { v }
        };
        let brightness = factor(c.brightness);
        let contrast = factor(c.contrast);
        let saturation = factor(c.saturation);
        let h = uniform(-c.hue, c.hue);
        let hue = if c.hue == 0.0 { 0.0 } else { h };
        Some(SampleDraw {
            crop,
            angle,
            flip,
            brightness,
            contrast,
            saturation,
            hue,
        })
    }

    /// Kernel parameters of one `width × height` image with source index `index`.
    pub fn params_for(&self, index: usize, epoch: u64, width: u32, height: u32) -> AugmentParams {
        match &self.mode {
            Mode::Train { config, .. } => {
                let d = self
                    .draw(index, epoch, width, height)
                    .expect("train mode draws");
                let (i, j, h, w) = d.crop;
                AugmentParams::crop_rotate_flip(
                    [j as f32, i as f32, w as f32, h as f32],
                    d.angle,
                    d.flip,
                    config.size,
                )
                .with_jitter(d.brightness, d.contrast, d.saturation, d.hue)
                .with_padding(config.padding)
            }
            Mode::Eval { size, resize, .. } => eval_params(width, height, *size, *resize),
        }
    }

    /// Per-sample parameters; in train mode sample `i` draws from an RNG seeded from
    /// `(seed, epoch, batch.indices[i])` only, so the result does not depend on batch
    /// composition or order (resuming a run reproduces it).
    pub fn params(&self, batch: &PackedBatch, epoch: u64) -> Vec<AugmentParams> {
        self.params_mixed(batch, epoch).0
    }

    /// [`params`](Self::params) with the batch's MixUp / CutMix ([`mix_for`](Self::mix_for))
    /// set on every sample: sample `i` blends with sample `N − 1 − i`.
    pub fn params_mixed(&self, batch: &PackedBatch, epoch: u64) -> (Vec<AugmentParams>, Mix) {
        let mix = self.mix_for(batch, epoch);
        let n = batch.len();
        let pixel = |i: usize| match mix {
            Mix::None => None,
            Mix::MixUp { lambda } => Some(PixelMix {
                partner: n - 1 - i,
                weight: lambda.clamp(0.0, 1.0),
                cut: [0; 4],
            }),
            Mix::CutMix { bbox, .. } => Some(PixelMix {
                partner: n - 1 - i,
                weight: 1.0,
                cut: bbox,
            }),
        };
        let params = self.unmixed_params(batch, epoch);
        let params = params
            .into_iter()
            .enumerate()
            .map(|(i, p)| p.with_mix(pixel(i)))
            .collect();
        (params, mix)
    }

    fn unmixed_params(&self, batch: &PackedBatch, epoch: u64) -> Vec<AugmentParams> {
        batch
            .sizes
            .iter()
            .enumerate()
            .map(|(i, &(w, h))| {
                let index = batch.indices.get(i).copied().unwrap_or(i);
                self.params_for(index, epoch, w, h)
            })
            .collect()
    }

    /// `[N, 3, S, S]` normalised batch on `device` (f32): fused kernel on wgpu, CPU reference
    /// elsewhere.
    pub fn apply(&self, batch: &PackedBatch, epoch: u64, device: &Device) -> Tensor<4> {
        self.apply_as(batch, epoch, DType::F32, device)
    }

    /// [`apply`](Self::apply) with the output dtype (F32 or F16).
    pub fn apply_as(
        &self,
        batch: &PackedBatch,
        epoch: u64,
        dtype: DType,
        device: &Device,
    ) -> Tensor<4> {
        self.apply_mixed(batch, epoch, dtype, device).0
    }

    /// [`apply_as`](Self::apply_as) that also returns the batch's MixUp / CutMix draw (the
    /// targets are [`mix::mixed_targets`] with its `λ`).
    pub fn apply_mixed(
        &self,
        batch: &PackedBatch,
        epoch: u64,
        dtype: DType,
        device: &Device,
    ) -> (Tensor<4>, Mix) {
        let (params, mix) = self.params_mixed(batch, epoch);
        let (size, norm) = (self.size(), self.normalize());
        let x = match batch.resident() {
            Some(r) => augment_resident(&batch.images(), r, &params, size, &norm, dtype, device),
            None => augment_batch(&batch.images(), &params, size, &norm, dtype, device),
        };
        (x, mix)
    }
}

/// A ChaCha8 stream keyed by (seed, epoch, `id`, `tag`) alone: each draw of the pipeline
/// (per-sample augmentation, per-batch mixing) has its own tag, so resuming reproduces it.
fn keyed_rng(seed: u64, epoch: u64, id: u64, tag: &[u8; 8]) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&epoch.to_le_bytes());
    key[16..24].copy_from_slice(&id.to_le_bytes());
    key[24..].copy_from_slice(tag);
    ChaCha8Rng::from_seed(key)
}

/// A batch through the eval transform (mirrored first when `flip`, for test-time
/// augmentation) as `[N, 3, S, S]` f32 on `device`. On a GPU: one pass of
/// [`eval_resample`] (Pillow's fixed-point taps from [`EvalTransform::device_taps`]),
/// reading a resident batch's images where they already are; elsewhere — and for a batch
/// bigger than the adapter's largest buffer — the PIL-exact CPU path
/// ([`EvalTransform::apply`], one image per rayon task). Both give the same 8-bit values.
pub fn eval_preprocess(
    t: &EvalTransform,
    batch: &PackedBatch,
    flip: bool,
    device: &Device,
) -> Tensor<4> {
    let s = t.crop as usize;
    // The images go to the kernel as one buffer (or already are there): a batch larger
    // than the adapter's largest buffer, or than u32 byte offsets, takes the CPU path.
    let fits = |limit: u64| batch.images().data.len() as u64 <= limit.min(u32::MAX as u64);
    let on_gpu = batch.resident().is_some()
        || petal_kernels::transfer::device_limits(device).is_some_and(|l| fits(l.max_buffer));
    if on_gpu && petal_kernels::transfer::is_gpu(device) && !batch.is_empty() {
        let taps: Vec<_> = batch
            .sizes
            .iter()
            .map(|&(w, h)| t.device_taps(w, h, flip))
            .collect();
        let norm = Normalize {
            mean: t.mean,
            std: t.std,
        };
        return eval_resample(&batch.images(), batch.resident(), &taps, s, &norm, device);
    }
    let per: Vec<Vec<f32>> = (0..batch.len())
        .into_par_iter()
        .map(|i| {
            let mut img = batch.image(i);
            if flip {
                image::imageops::flip_horizontal_in_place(&mut img);
            }
            t.apply(&img)
        })
        .collect();
    Tensor::from_data(
        TensorData::new(per.concat(), [batch.len(), 3, s, s]),
        device,
    )
}

/// torchvision's `Resize(resize)` (shorter side, `int()` of the longer) then
/// `CenterCrop(size)` (half-to-even offsets, zero padding when the image is smaller) as one
/// map of a `width × height` source.
pub fn eval_params(width: u32, height: u32, size: usize, resize: usize) -> AugmentParams {
    let (w, h) = (width as u64, height as u64);
    let r = resize as u64;
    let (short, long) = if w <= h { (w, h) } else { (h, w) };
    let (nw, nh) = if short == r {
        (w, h)
    } else {
        let new_long = (((r * long) as f64 / short as f64) as u64).max(1);
        if w <= h { (r, new_long) } else { (new_long, r) }
    };
    let c = size as i64;
    let offset = |n: i64| {
        let pad = if c > n { (c - n) / 2 } else { 0 };
        ((((n.max(c) - c) as f64) / 2.0).round_ties_even() as i64 - pad) as f32
    };
    let (left, top) = (offset(nw as i64), offset(nh as i64));
    let (kx, ky) = (width as f32 / nw as f32, height as f32 / nh as f32);
    AugmentParams::new([kx, 0.0, left * kx, 0.0, ky, top * ky])
}
