//! torchvision's eval transform, bit-exact on PIL images:
//! `Resize(resize)` → `CenterCrop(crop)` → `ToTensor()` → `Normalize(mean, std)`.
//!
//! The resize is Pillow's `ImagingResample` with the bilinear filter: a separable
//! convolution whose support widens with the down-scaling factor (antialiasing), with
//! coefficients in 22-bit fixed point and rounding to 8 bits after each pass (horizontal,
//! then vertical), as `libImaging/Resample.c` does. Matching it to the bit is what lets
//! `petal predict` reproduce PyTorch's logits, not just its top-1.

use image::RgbImage;
use petal_kernels::augment::{AxisTaps, EvalTaps};

/// ImageNet channel means (torchvision).
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet channel standard deviations (torchvision).
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Pillow's `precompute_coeffs` for the bilinear (triangle) filter followed by
/// `normalize_coeffs_8bpc`: per output pixel the first source index, the tap count, and
/// `ksize` fixed-point taps.
fn coefficients(in_size: usize, out_size: usize) -> (Vec<(usize, usize)>, Vec<i32>, usize) {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filterscale; // bilinear support 1.0 × filterscale
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size);
    let mut kk = vec![0i32; out_size * ksize];
    let mut k = vec![0f64; ksize];
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        let xmin = ((center - support + 0.5) as i64).max(0);
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) - xmin;
        let mut ww = 0.0;
        for (x, kx) in k.iter_mut().enumerate().take(xmax.max(0) as usize) {
            let t = ((x as i64 + xmin) as f64 - center + 0.5) * ss;
            let w = (1.0 - t.abs()).max(0.0);
            *kx = w;
            ww += w;
        }
        for x in 0..xmax.max(0) as usize {
            let v = if ww != 0.0 { k[x] / ww } else { k[x] };
            kk[xx * ksize + x] = if v < 0.0 {
                (-0.5 + v * (1u32 << PRECISION_BITS) as f64) as i32
            } else {
                (0.5 + v * (1u32 << PRECISION_BITS) as f64) as i32
            };
        }
        bounds.push((xmin as usize, xmax.max(0) as usize));
    }
    (bounds, kk, ksize)
}

#[inline]
fn clip8(v: i64) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Pillow's `Image.resize((width, height), Image.BILINEAR)` on an RGB image.
///
/// # Panics
/// If a target dimension is zero.
pub fn resize_bilinear(src: &RgbImage, width: u32, height: u32) -> RgbImage {
    assert!(
        width > 0 && height > 0,
        "resize to {width}×{height}: sizes must be > 0"
    );
    let (sw, sh) = (src.width() as usize, src.height() as usize);
    let (w, h) = (width as usize, height as usize);
    if (sw, sh) == (w, h) {
        return src.clone();
    }
    let (hb, hk, hks) = coefficients(sw, w);
    let (vb, vk, vks) = coefficients(sh, h);
    let s = src.as_raw();
    // Horizontal pass over every source row (Pillow restricts it to the rows the vertical
    // pass reads; the values are the same).
    let mut tmp = vec![0u8; w * sh * 3];
    for y in 0..sh {
        let row = &s[y * sw * 3..(y + 1) * sw * 3];
        for (xx, &(xmin, n)) in hb.iter().enumerate() {
            let k = &hk[xx * hks..xx * hks + n];
            for c in 0..3 {
                let mut acc: i64 = 1 << (PRECISION_BITS - 1);
                for (x, &kx) in k.iter().enumerate() {
                    acc += row[(xmin + x) * 3 + c] as i64 * kx as i64;
                }
                tmp[(y * w + xx) * 3 + c] = clip8(acc);
            }
        }
    }
    let mut out = vec![0u8; w * h * 3];
    for (yy, &(ymin, n)) in vb.iter().enumerate() {
        let k = &vk[yy * vks..yy * vks + n];
        for xx in 0..w {
            for c in 0..3 {
                let mut acc: i64 = 1 << (PRECISION_BITS - 1);
                for (y, &ky) in k.iter().enumerate() {
                    acc += tmp[((ymin + y) * w + xx) * 3 + c] as i64 * ky as i64;
                }
                out[(yy * w + xx) * 3 + c] = clip8(acc);
            }
        }
    }
    RgbImage::from_raw(width, height, out).expect("buffer size matches")
}

/// torchvision's `Resize(size)` with an int: the shorter side becomes `size`, the longer
/// `int(size · long / short)`; an image whose shorter side already is `size` is returned
/// untouched.
pub fn resize_shorter_side(src: &RgbImage, size: u32) -> RgbImage {
    let (w, h) = (src.width() as u64, src.height() as u64);
    let (short, long) = if w <= h { (w, h) } else { (h, w) };
    if short == size as u64 {
        return src.clone();
    }
    let new_long = ((size as u64 * long) as f64 / short as f64) as u32;
    let (nw, nh) = if w <= h {
        (size, new_long)
    } else {
        (new_long, size)
    };
    resize_bilinear(src, nw.max(1), nh.max(1))
}

/// The size [`resize_shorter_side`] gives a `width × height` image.
fn resized_size(width: u32, height: u32, size: u32) -> (u32, u32) {
    let (w, h) = (width as u64, height as u64);
    let (short, long) = if w <= h { (w, h) } else { (h, w) };
    if short == size as u64 {
        return (width, height);
    }
    let new_long = (((size as u64 * long) as f64 / short as f64) as u32).max(1);
    if w <= h {
        (size.max(1), new_long)
    } else {
        (new_long, size.max(1))
    }
}

/// [`center_crop`]'s first source index along an axis of length `n` (negative: padding).
fn crop_start(n: u32, size: u32) -> i64 {
    let (n, c) = (n as i64, size as i64);
    let pad = if c > n { (c - n) / 2 } else { 0 };
    (((n.max(c) - c) as f64) / 2.0).round_ties_even() as i64 - pad
}

/// One axis of resize-then-crop: the taps of the resized pixels the crop keeps.
fn axis_taps(in_size: u32, resized: u32, crop: u32) -> AxisTaps {
    let (bounds, kk, ksize) = coefficients(in_size as usize, resized as usize);
    let start = crop_start(resized, crop);
    let mut out = AxisTaps {
        ksize,
        bounds: Vec::with_capacity(crop as usize),
        weights: vec![0; crop as usize * ksize],
    };
    for x in 0..crop as i64 {
        let r = x + start;
        if r < 0 || r >= resized as i64 {
            out.bounds.push((0, 0)); // zero padding
            continue;
        }
        let (first, n) = bounds[r as usize];
        out.bounds.push((first as u32, n as u32));
        let at = x as usize * ksize;
        out.weights[at..at + n].copy_from_slice(&kk[r as usize * ksize..r as usize * ksize + n]);
    }
    out
}

/// torchvision's `CenterCrop(size)`: offsets `round((H − size) / 2)` with Python's
/// half-to-even rounding; an image smaller than the crop is zero-padded first as
/// torchvision pads it.
pub fn center_crop(src: &RgbImage, size: u32) -> RgbImage {
    let (w, h) = (src.width() as i64, src.height() as i64);
    let c = size as i64;
    // torchvision pads left/top with (c − w) // 2, the rest on the right/bottom.
    let pad_l = if c > w { (c - w) / 2 } else { 0 };
    let pad_t = if c > h { (c - h) / 2 } else { 0 };
    let (pw, ph) = (w.max(c), h.max(c));
    let top = (((ph - c) as f64) / 2.0).round_ties_even() as i64;
    let left = (((pw - c) as f64) / 2.0).round_ties_even() as i64;
    let mut out = RgbImage::new(size, size);
    for y in 0..c {
        let sy = y + top - pad_t;
        if sy < 0 || sy >= h {
            continue;
        }
        for x in 0..c {
            let sx = x + left - pad_l;
            if sx < 0 || sx >= w {
                continue;
            }
            out.put_pixel(x as u32, y as u32, *src.get_pixel(sx as u32, sy as u32));
        }
    }
    out
}

/// The eval transform: resize the shorter side, center crop, scale to [0, 1], normalise.
#[derive(Clone, Debug, PartialEq)]
pub struct EvalTransform {
    /// Target of the shorter side (torchvision's `Resize(256)`).
    pub resize: u32,
    /// Square crop size (`CenterCrop(224)`).
    pub crop: u32,
    /// Per-channel mean subtracted after scaling to [0, 1].
    pub mean: [f32; 3],
    /// Per-channel std divided by.
    pub std: [f32; 3],
}

impl Default for EvalTransform {
    /// ImageNet's: resize 256, crop 224, ImageNet mean/std.
    fn default() -> Self {
        Self {
            resize: 256,
            crop: 224,
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
        }
    }
}

impl EvalTransform {
    /// The cropped RGB8 image (before normalisation).
    pub fn crop_rgb8(&self, img: &RgbImage) -> RgbImage {
        center_crop(&resize_shorter_side(img, self.resize), self.crop)
    }

    /// The transform of a `width × height` image (mirrored first when `flip`) as the taps
    /// of `petal_kernels::augment::eval_resample`, which gives the 8-bit values of
    /// [`crop_rgb8`](Self::crop_rgb8) on the device.
    pub fn device_taps(&self, width: u32, height: u32, flip: bool) -> EvalTaps {
        let (nw, nh) = resized_size(width, height, self.resize);
        EvalTaps {
            columns: axis_taps(width, nw, self.crop),
            rows: axis_taps(height, nh, self.crop),
            flip,
        }
    }

    /// `[3, crop, crop]` channel-major floats, `(v / 255 − mean) / std` in f32 exactly as
    /// torchvision's `ToTensor` + `Normalize` compute them.
    pub fn apply(&self, img: &RgbImage) -> Vec<f32> {
        normalise_chw(&self.crop_rgb8(img), self.mean, self.std)
    }
}

/// RGB8 HWC → normalised f32 CHW.
pub fn normalise_chw(img: &RgbImage, mean: [f32; 3], std: [f32; 3]) -> Vec<f32> {
    let n = (img.width() * img.height()) as usize;
    let mut out = vec![0f32; 3 * n];
    for (i, p) in img.pixels().enumerate() {
        for c in 0..3 {
            out[c * n + i] = (p.0[c] as f32 / 255.0 - mean[c]) / std[c];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_to_the_same_size_is_identity() {
        let img = RgbImage::from_fn(7, 5, |x, y| image::Rgb([x as u8 * 30, y as u8 * 40, 9]));
        assert_eq!(resize_bilinear(&img, 7, 5), img);
        // The shorter side equal to the requested size leaves the image untouched.
        assert_eq!(resize_shorter_side(&img, 5), img);
    }

    #[test]
    fn constant_image_stays_constant_at_any_scale() {
        let img = RgbImage::from_pixel(37, 23, image::Rgb([200, 3, 77]));
        for (w, h) in [(5, 3), (100, 61), (37, 1), (1, 1)] {
            let out = resize_bilinear(&img, w, h);
            assert!(out.pixels().all(|p| p.0 == [200, 3, 77]), "{w}x{h}");
        }
    }

    #[test]
    fn center_crop_rounds_half_to_even_and_pads_with_zeros() {
        // 5 wide, crop 2: offset round(1.5) = 2 (half to even).
        let img = RgbImage::from_fn(5, 2, |x, _| image::Rgb([x as u8, 0, 0]));
        let c = center_crop(&img, 2);
        assert_eq!(c.get_pixel(0, 0).0[0], 2);
        // 7 wide, crop 2: offset round(2.5) = 2.
        let img = RgbImage::from_fn(7, 2, |x, _| image::Rgb([x as u8, 0, 0]));
        assert_eq!(center_crop(&img, 2).get_pixel(0, 0).0[0], 2);
        // 1×1 into 4×4: padded (4-1)//2 = 1 on the left/top.
        let img = RgbImage::from_pixel(1, 1, image::Rgb([9, 9, 9]));
        let c = center_crop(&img, 4);
        assert_eq!(c.get_pixel(1, 1).0, [9, 9, 9]);
        assert_eq!(c.pixels().filter(|p| p.0 == [9, 9, 9]).count(), 1);
    }

    #[test]
    fn normalise_is_to_tensor_then_normalize() {
        let img = RgbImage::from_pixel(1, 1, image::Rgb([255, 0, 128]));
        let v = normalise_chw(&img, IMAGENET_MEAN, IMAGENET_STD);
        assert!((v[0] - (1.0 - 0.485) / 0.229).abs() < 1e-6);
        assert!((v[1] - (0.0 - 0.456) / 0.224).abs() < 1e-6);
        assert!((v[2] - (128.0 / 255.0 - 0.406) / 0.225).abs() < 1e-6);
    }
}
