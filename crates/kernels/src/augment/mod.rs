//! Fused image augmentation: one compute pass from a batch of packed RGB8 images of
//! different sizes to a normalised `[N, 3, S, S]` tensor.
//!
//! Per output pixel and sample the kernel (`kernels/augment.wgsl`) does:
//!
//! 1. **Geometry**: the output pixel centre `(X, Y) = (x + 0.5, y + 0.5)` is mapped to the
//!    source by one affine map ([`AugmentParams::affine`]) that composes random-resized-crop,
//!    rotation about the crop centre and horizontal flip (or, for evaluation, resize +
//!    center crop).
//! 2. **Sampling**: bilinear on the source pixels (pixel centres at `+0.5`, edge taps clamped
//!    inside the image). Points outside the image take the fill colour
//!    ([`Padding::Fill`]) or are mirrored back into it ([`Padding::Reflect`], symmetric
//!    reflection about the image border, period `2W`).
//! 3. **Antialiasing**: when the map shrinks the source (a Jacobian column longer than one
//!    source pixel per output pixel), the output pixel is supersampled on a `kx × ky` grid of
//!    bilinear taps spread evenly over its footprint (a box prefilter of the footprint's size),
//!    `k = ceil(length)` capped at [`MAX_TAPS`]. [`AugmentParams::new`] derives `taps` from
//!    the map; a 1:1 map has one tap, so identity maps reproduce the source exactly.
//! 4. **Colour jitter** in the fixed order brightness → contrast → saturation → hue (torchvision
//!    draws a random order per call; petal documents this fixed one), each on `[0, 1]` values
//!    and clamped to `[0, 1]` as torchvision's float path does:
//!    - brightness `b`: `clamp(b·v)`;
//!    - contrast `c`: `clamp(c·v + (1 − c)·m)` where `m` is the mean grayscale
//!      (`0.2989 R + 0.587 G + 0.114 B`) of the brightness-adjusted output crop. The kernel
//!      has no second pass to reduce over the whole crop, so `m` is **estimated on the CPU**
//!      on a 16 × 16 grid of the same map ([`estimate_gray_mean`], one bilinear tap per point)
//!      and passed in [`AugmentParams::gray_mean`]; the CPU reference uses the same value;
//!    - saturation `s`: `clamp(s·v + (1 − s)·gray(v))`;
//!    - hue `h`: torchvision's RGB → HSV, `H = (H + h) mod 1`, HSV → RGB (skipped when
//!      `h = 0`, so a zero shift is an exact identity).
//! 5. **Mixing** (MixUp / CutMix, [`PixelMix`]): a sample with a partner blends its jittered
//!    value `a` with the partner's `b` — steps 1–4 of the partner's own parameters at the same
//!    output pixel — as `w·a + (1 − w)·b`, where `w` is [`PixelMix::weight`] outside the cut
//!    box and 0 inside it. Each output pixel reads both samples in the same pass (no second
//!    pass over the batch); a weight of exactly 1 (or 0) reads only one. Mixing before the
//!    normalisation equals timm's mixing of normalised tensors (the normalisation is the same
//!    affine map for both samples).
//! 6. **Normalise**: `(v − mean) / std` per channel, written as f32 or f16.
//!
//! On a wgpu device [`augment_batch`] runs the fused kernel; on any other device (Flex) it
//! runs [`augment_reference`], the same maths on the CPU with rayon, which is also the
//! tests' oracle. [`augment_stock`] is the same pipeline from stock Burn ops
//! (`grid_sample_2d` + elementwise colour ops), the baseline of `petal bench augment`.

mod backend;
mod kernel;
mod reference;
mod resample;
mod stock;

pub use backend::AugmentBackend;
pub use reference::{augment_reference, estimate_gray_mean, sample_rgb};
pub use resample::{AxisTaps, EvalTaps, eval_resample};
pub use stock::augment_stock;

use burn::backend::Dispatch;
use burn::tensor::{DType, Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

/// The most supersampling taps per axis (antialiasing footprint), so at most 16 bilinear
/// taps per output pixel.
pub const MAX_TAPS: u32 = 4;

/// Side of the grid on which [`estimate_gray_mean`] samples the crop for contrast.
pub const GRAY_MEAN_GRID: usize = 16;

/// `gray_mean` value that asks [`augment_batch`] / [`augment_reference`] to estimate the mean
/// themselves with [`estimate_gray_mean`].
pub const GRAY_MEAN_AUTO: f32 = -1.0;

/// torchvision's grayscale weights (`rgb_to_grayscale`).
pub const GRAY_WEIGHTS: [f32; 3] = [0.2989, 0.587, 0.114];

/// What a sample point outside the source image takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Padding {
    /// A constant RGB colour (black by default, like `RandomRotation`'s `fill=0`).
    Fill([u8; 3]),
    /// The image mirrored about its border (symmetric reflection, period `2W`).
    Reflect,
}

impl Default for Padding {
    fn default() -> Self {
        Self::Fill([0, 0, 0])
    }
}

/// Per-sample parameters (all maths in f32).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AugmentParams {
    /// Output pixel centre `(X, Y) = (x + 0.5, y + 0.5)` in `[0, S)²` → source coordinates
    /// (in source pixels, pixel centres at `+0.5`):
    /// `sx = a[0]·X + a[1]·Y + a[2]`, `sy = a[3]·X + a[4]·Y + a[5]`
    /// (crop, rotation and flip composed).
    pub affine: [f32; 6],
    /// Brightness factor (identity 1).
    pub brightness: f32,
    /// Contrast factor (identity 1).
    pub contrast: f32,
    /// Saturation factor (identity 1).
    pub saturation: f32,
    /// Hue shift in turns, in `[-0.5, 0.5]` (identity 0).
    pub hue: f32,
    /// Mean grayscale (in `[0, 1]`) of the brightness-adjusted crop, the contrast blend's
    /// target; [`GRAY_MEAN_AUTO`] (negative) lets the batch functions estimate it.
    pub gray_mean: f32,
    /// Outside-the-image handling.
    pub padding: Padding,
    /// Supersampling taps per output pixel along the output x and y axes (1..=[`MAX_TAPS`]).
    pub taps: [u32; 2],
    /// Blending with another sample of the batch (MixUp / CutMix); `None` for none.
    pub mix: Option<PixelMix>,
}

/// How a sample's output blends with a partner sample of the same batch (see step 5 of the
/// module docs): `w·own + (1 − w)·partner` per pixel, `w = weight` outside the cut box and
/// `w = 0` inside it. MixUp is `weight = λ` with an empty box; CutMix is `weight = 1` with the
/// partner's box.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PixelMix {
    /// Index of the partner sample in the batch (its own parameters are used for it).
    pub partner: usize,
    /// Weight of the sample itself outside the box, in `[0, 1]`.
    pub weight: f32,
    /// `[y0, y1, x0, x1]`: output pixels `y0 ≤ y < y1`, `x0 ≤ x < x1` are the partner's alone
    /// (empty when `y0 = y1` or `x0 = x1`).
    pub cut: [u32; 4],
}

impl PixelMix {
    /// The weight of the sample itself at output pixel `(x, y)` (integer pixel indices).
    pub fn weight_at(&self, x: u32, y: u32) -> f32 {
        let [y0, y1, x0, x1] = self.cut;
        if (y0..y1).contains(&y) && (x0..x1).contains(&x) {
            0.0
        } else {
            self.weight
        }
    }
}

impl AugmentParams {
    /// The map `affine` with no colour change, the fill colour black and the antialiasing taps
    /// derived from the map ([`taps_for`]).
    pub fn new(affine: [f32; 6]) -> Self {
        Self {
            affine,
            brightness: 1.0,
            contrast: 1.0,
            saturation: 1.0,
            hue: 0.0,
            gray_mean: GRAY_MEAN_AUTO,
            padding: Padding::default(),
            taps: taps_for(&affine),
            mix: None,
        }
    }

    /// The identity: output pixel `(x, y)` is source pixel `(x, y)` (for a source of the
    /// output size), no colour change.
    pub fn identity() -> Self {
        Self::new([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
    }

    /// The map that takes the source rectangle with top-left `(left, top)` and size
    /// `width × height` (source pixels, fractional allowed) onto the `size × size` output.
    pub fn crop(left: f32, top: f32, width: f32, height: f32, size: usize) -> Self {
        let s = size as f32;
        Self::new([width / s, 0.0, left, 0.0, height / s, top])
    }

    /// A composed train-time map: the crop rectangle (`left`, `top`, `width`, `height`) onto
    /// `size × size`, then the content rotated counter-clockwise by `degrees` about the crop
    /// centre (torchvision's sign), then mirrored horizontally when `flip`.
    pub fn crop_rotate_flip(crop: [f32; 4], degrees: f32, flip: bool, size: usize) -> Self {
        let [left, top, width, height] = crop;
        let s = size as f32;
        let (sin, cos) = degrees.to_radians().sin_cos();
        let f = if flip { -1.0 } else { 1.0 };
        let (sx, sy) = (width / s, height / s);
        // Output offset from the centre (dx, dy) = (X − S/2, Y − S/2); flip negates dx,
        // scaling takes it to crop pixels, and rotating the content counter-clockwise by θ
        // (y down) samples the source at R(θ)·d: (cos·u − sin·v, sin·u + cos·v).
        let a0 = f * cos * sx;
        let a1 = -sin * sy;
        let a3 = f * sin * sx;
        let a4 = cos * sy;
        let (cx, cy) = (left + width / 2.0, top + height / 2.0);
        let h = s / 2.0;
        Self::new([a0, a1, cx - (a0 + a1) * h, a3, a4, cy - (a3 + a4) * h])
    }

    /// The same parameters with the output mirrored horizontally (`X → size − X` composed
    /// before the map).
    pub fn flipped(mut self, size: usize) -> Self {
        let s = size as f32;
        let a = self.affine;
        self.affine = [-a[0], a[1], a[0] * s + a[2], -a[3], a[4], a[3] * s + a[5]];
        self
    }

    /// The same parameters with the colour jitter factors set.
    pub fn with_jitter(
        mut self,
        brightness: f32,
        contrast: f32,
        saturation: f32,
        hue: f32,
    ) -> Self {
        self.brightness = brightness;
        self.contrast = contrast;
        self.saturation = saturation;
        self.hue = hue;
        self
    }

    /// The same parameters with `padding`.
    pub fn with_padding(mut self, padding: Padding) -> Self {
        self.padding = padding;
        self
    }

    /// The same parameters blended with `mix` (MixUp / CutMix).
    pub fn with_mix(mut self, mix: Option<PixelMix>) -> Self {
        self.mix = mix;
        self
    }

    /// Whether the colour jitter is the identity.
    pub fn is_colour_identity(&self) -> bool {
        self.brightness == 1.0 && self.contrast == 1.0 && self.saturation == 1.0 && self.hue == 0.0
    }
}

/// Supersampling taps for `affine`: per output axis, `ceil` of the source distance one output
/// pixel step covers (the Jacobian column's length), in `1..=MAX_TAPS`.
pub fn taps_for(affine: &[f32; 6]) -> [u32; 2] {
    let k = |a: f32, b: f32| {
        let len = (a * a + b * b).sqrt();
        // A 1:1 map (up to rounding) keeps one tap.
        ((len - 1e-3).ceil().max(1.0) as u32).min(MAX_TAPS)
    };
    [k(affine[0], affine[3]), k(affine[1], affine[4])]
}

/// ImageNet normalisation (or any other per-channel mean / std).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Normalize {
    /// Channel means (on `[0, 1]` values).
    pub mean: [f32; 3],
    /// Channel standard deviations.
    pub std: [f32; 3],
}

impl Default for Normalize {
    /// ImageNet's (torchvision).
    fn default() -> Self {
        Self {
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
        }
    }
}

/// A batch of RGB8 images of different sizes packed back to back.
#[derive(Clone, Copy, Debug)]
pub struct PackedImages<'a> {
    /// All images' RGB8 bytes.
    pub data: &'a [u8],
    /// Byte offset of each image in `data`.
    pub offsets: &'a [usize],
    /// `(width, height)` of each image.
    pub sizes: &'a [(u32, u32)],
}

impl PackedImages<'_> {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.sizes.len()
    }

    /// Whether there is no image.
    pub fn is_empty(&self) -> bool {
        self.sizes.is_empty()
    }

    /// The RGB8 bytes of image `i`.
    pub fn image(&self, i: usize) -> &[u8] {
        let (w, h) = self.sizes[i];
        &self.data[self.offsets[i]..self.offsets[i] + (w as usize) * (h as usize) * 3]
    }

    /// # Panics
    /// If offsets and sizes disagree in length, an image is empty or lies outside `data`, or a
    /// mix partner is not in the batch or its weight is outside `[0, 1]`.
    pub(crate) fn check(&self, params: &[AugmentParams]) {
        for (i, m) in params
            .iter()
            .enumerate()
            .filter_map(|(i, p)| Some((i, p.mix?)))
        {
            assert!(
                m.partner < params.len() && (0.0..=1.0).contains(&m.weight),
                "augment: sample {i} mixes with sample {} (batch of {}) at weight {} (must be in [0, 1])",
                m.partner,
                params.len(),
                m.weight
            );
        }
        let params = params.len();
        assert_eq!(
            params,
            self.sizes.len(),
            "augment: {params} parameter sets for {} images",
            self.sizes.len()
        );
        self.check_images();
    }

    /// # Panics
    /// If offsets and sizes disagree in length, or an image is empty or lies outside `data`.
    pub(crate) fn check_images(&self) {
        assert_eq!(
            self.offsets.len(),
            self.sizes.len(),
            "augment: {} offsets for {} sizes",
            self.offsets.len(),
            self.sizes.len()
        );
        for (i, (&o, &(w, h))) in self.offsets.iter().zip(self.sizes).enumerate() {
            assert!(w > 0 && h > 0, "augment: image {i} is empty ({w}×{h})");
            let end = o + (w as usize) * (h as usize) * 3;
            assert!(
                end <= self.data.len(),
                "augment: image {i} ({w}×{h} at {o}) ends past the data ({} bytes)",
                self.data.len()
            );
        }
    }
}

/// `params` with every [`GRAY_MEAN_AUTO`] replaced by [`estimate_gray_mean`] (0 where the
/// contrast factor is 1: the mean is then unused).
pub fn resolve_gray_means(
    images: &PackedImages,
    params: &[AugmentParams],
    size: usize,
) -> Vec<AugmentParams> {
    params
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut p = *p;
            if p.gray_mean < 0.0 {
                p.gray_mean = if p.contrast == 1.0 {
                    0.0
                } else {
                    estimate_gray_mean(images, i, &p, size)
                };
            }
            p
        })
        .collect()
}

/// Whether [`augment_batch`] runs the fused kernel on `device` (a CubeCL device — petal
/// compiles only the wgpu runtime) for output `dtype` (f32 or f16).
pub fn uses_fused_kernel(device: &Device, dtype: DType) -> bool {
    matches!(dtype, DType::F32 | DType::F16) && crate::transfer::is_gpu(device)
}

/// Augments a batch: one fused pass on wgpu devices; the CPU reference (rayon) on any other
/// device (Flex). Output `[N, 3, size, size]` of `dtype` (F32 or F16) on `device`.
///
/// The packed bytes go to the device as one storage buffer: on wgpu the batch must fit the
/// adapter's storage-buffer limit (128 MiB on lavapipe and wgpu's defaults — e.g. 64 images
/// of 500×375 take 36 MB; down-scale at load, `LoaderConfig::max_shorter_side`, for big
/// photos).
///
/// # Panics
/// On an inconsistent batch (see [`PackedImages`]), `size` zero or above 4095, more than
/// 65,535 images, a dtype other than F32 / F16, or taps outside `1..=MAX_TAPS`.
pub fn augment_batch(
    images: &PackedImages,
    params: &[AugmentParams],
    size: usize,
    norm: &Normalize,
    dtype: DType,
    device: &Device,
) -> Tensor<4> {
    check_batch(images, params, dtype);
    let n = params.len();
    if !uses_fused_kernel(device, dtype) || n == 0 {
        let v = augment_reference(images, params, size, norm);
        return crate::transfer::upload(TensorData::new(v, [n, 3, size, size]), (device, dtype));
    }
    check_fused_size(n, size);
    let src = upload_src(images.data, device);
    launch_fused(images, &src, params, size, norm, dtype, device)
}

/// Decoded images uploaded once into one device buffer (`--cache device`): a batch of them
/// then uploads only its per-sample parameters ([`augment_resident`]).
#[derive(Clone, Debug)]
pub struct ResidentImages {
    src: Tensor<1, Int>,
    bytes: usize,
}

impl ResidentImages {
    /// Uploads `data` — every image's RGB8 bytes back to back, as the [`PackedImages`] of
    /// later batches will index them — to `device` as one buffer. Check the size against
    /// [`crate::transfer::device_limits`] first.
    ///
    /// # Panics
    /// If `device` is not a GPU device, or `data` does not fit u32 byte offsets (4 GiB).
    pub fn upload(data: &[u8], device: &Device) -> Self {
        assert!(
            crate::transfer::is_gpu(device),
            "augment: device-resident images need a GPU (wgpu) device, got {device:?}"
        );
        assert!(
            u32::try_from(data.len()).is_ok(),
            "augment: {} bytes of images exceed u32 byte offsets (4 GiB)",
            data.len()
        );
        Self {
            src: upload_src(data, device),
            bytes: data.len(),
        }
    }

    /// The images' bytes on the device.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

/// [`augment_batch`] of images already on the device: `images` indexes the bytes `resident`
/// holds (`images.data` is the host copy of the same bytes, read only for the contrast
/// jitter's gray-mean estimate and off the GPU), so the step uploads only the per-image
/// info and parameters.
///
/// # Panics
/// As [`augment_batch`]; also if `images.data` is not the size `resident` holds.
pub fn augment_resident(
    images: &PackedImages,
    resident: &ResidentImages,
    params: &[AugmentParams],
    size: usize,
    norm: &Normalize,
    dtype: DType,
    device: &Device,
) -> Tensor<4> {
    assert_eq!(
        images.data.len(),
        resident.bytes,
        "augment: the batch indexes {} bytes of images, the device holds {}",
        images.data.len(),
        resident.bytes
    );
    if !uses_fused_kernel(device, dtype) || params.is_empty() {
        return augment_batch(images, params, size, norm, dtype, device);
    }
    check_batch(images, params, dtype);
    check_fused_size(params.len(), size);
    launch_fused(images, &resident.src, params, size, norm, dtype, device)
}

fn check_batch(images: &PackedImages, params: &[AugmentParams], dtype: DType) {
    assert!(
        matches!(dtype, DType::F32 | DType::F16),
        "augment: output dtype must be F32 or F16, got {dtype:?}"
    );
    images.check(params);
}

fn check_fused_size(n: usize, size: usize) {
    assert!(
        (1..=4095).contains(&size) && n <= 65_535,
        "augment: fused kernel needs 1 ≤ size ≤ 4095 and at most 65,535 images (got {size}, {n})"
    );
}

/// The fused kernel on `src` (the images' bytes on the device): uploads the per-image info
/// and parameters, launches.
fn launch_fused(
    images: &PackedImages,
    src: &Tensor<1, Int>,
    params: &[AugmentParams],
    size: usize,
    norm: &Normalize,
    dtype: DType,
    device: &Device,
) -> Tensor<4> {
    let n = params.len();
    let params = resolve_gray_means(images, params, size);
    let (meta, prm) = kernel::pack(images, &params, size, norm);
    let meta_len = meta.len();
    let meta =
        crate::transfer::upload::<1, Int>(TensorData::new(meta, [meta_len]), (device, DType::U32));
    let prm_len = prm.len();
    let prm = crate::transfer::upload::<1, burn::tensor::Float>(
        TensorData::new(prm, [prm_len]),
        (device, DType::F32),
    );
    Tensor::from_dispatch(<Dispatch as AugmentBackend>::augment_fused(
        src.clone().into_dispatch(),
        meta.into_dispatch(),
        prm.into_dispatch(),
        n,
        size,
        dtype,
    ))
}

/// Packed RGB8 bytes uploaded as the kernels' u32 source buffer (at least one word).
fn upload_src(data: &[u8], device: &Device) -> Tensor<1, Int> {
    let words = kernel::pack_src(data);
    let len = words.len();
    crate::transfer::upload(TensorData::new(words, [len]), (device, DType::U32))
}
