//! The CPU reference of the fused augmentation: the same maths as `kernels/augment.wgsl`,
//! step for step in f32, one rayon task per output plane row block. It runs on non-wgpu
//! devices (Flex) and is the tests' oracle.

use super::{
    AugmentParams, GRAY_MEAN_GRID, GRAY_WEIGHTS, Normalize, PackedImages, Padding,
    resolve_gray_means,
};
use rayon::prelude::*;

/// Symmetric reflection of `s` into `[0, len]` (period `2·len`).
fn reflect(s: f32, len: f32) -> f32 {
    let period = 2.0 * len;
    let t = s - period * (s / period).floor();
    if t > len { period - t } else { t }
}

/// One bilinear tap at source point `(sx, sy)`: RGB in `[0, 255]`.
fn tap(img: &[u8], w: u32, h: u32, padding: Padding, sx: f32, sy: f32) -> [f32; 3] {
    let (wf, hf) = (w as f32, h as f32);
    let (sx, sy) = match padding {
        Padding::Reflect => (reflect(sx, wf), reflect(sy, hf)),
        Padding::Fill(c) => {
            if !(0.0..=wf).contains(&sx) || !(0.0..=hf).contains(&sy) {
                return [c[0] as f32, c[1] as f32, c[2] as f32];
            }
            (sx, sy)
        }
    };
    let px = sx - 0.5;
    let py = sy - 0.5;
    let x0 = px.floor();
    let y0 = py.floor();
    let fx = px - x0;
    let fy = py - y0;
    let clampi = |v: f32, n: u32| (v as i32).clamp(0, n as i32 - 1) as usize;
    let (ix0, ix1) = (clampi(x0, w), clampi(x0 + 1.0, w));
    let (iy0, iy1) = (clampi(y0, h), clampi(y0 + 1.0, h));
    let w = w as usize;
    let at = |x: usize, y: usize, c: usize| img[(y * w + x) * 3 + c] as f32;
    let mut out = [0f32; 3];
    for (c, o) in out.iter_mut().enumerate() {
        let top = (1.0 - fx) * at(ix0, iy0, c) + fx * at(ix1, iy0, c);
        let bottom = (1.0 - fx) * at(ix0, iy1, c) + fx * at(ix1, iy1, c);
        *o = (1.0 - fy) * top + fy * bottom;
    }
    out
}

/// The sampled (antialiased) colour of output point `(X, Y)` (pixel centre coordinates) of
/// sample `i`, on `[0, 1]`, before colour jitter.
pub fn sample_rgb(images: &PackedImages, i: usize, p: &AugmentParams, x: f32, y: f32) -> [f32; 3] {
    let img = images.image(i);
    let (w, h) = images.sizes[i];
    let [kx, ky] = p.taps;
    let a = &p.affine;
    let mut acc = [0f32; 3];
    for ty in 0..ky {
        let oy = y + ((ty as f32 + 0.5) / ky as f32 - 0.5);
        for tx in 0..kx {
            let ox = x + ((tx as f32 + 0.5) / kx as f32 - 0.5);
            let sx = a[0] * ox + a[1] * oy + a[2];
            let sy = a[3] * ox + a[4] * oy + a[5];
            let v = tap(img, w, h, p.padding, sx, sy);
            for c in 0..3 {
                acc[c] += v[c];
            }
        }
    }
    let d = 255.0 * (kx * ky) as f32;
    [acc[0] / d, acc[1] / d, acc[2] / d]
}

fn gray(v: [f32; 3]) -> f32 {
    GRAY_WEIGHTS[0] * v[0] + GRAY_WEIGHTS[1] * v[1] + GRAY_WEIGHTS[2] * v[2]
}

fn clamp01(v: f32) -> f32 {
    v.clamp(0.0, 1.0)
}

/// torchvision's `_rgb2hsv`.
fn rgb2hsv([r, g, b]: [f32; 3]) -> [f32; 3] {
    let maxc = r.max(g).max(b);
    let minc = r.min(g).min(b);
    let eqc = maxc == minc;
    let cr = maxc - minc;
    let s = cr / if eqc { 1.0 } else { maxc };
    let d = if eqc { 1.0 } else { cr };
    let rc = (maxc - r) / d;
    let gc = (maxc - g) / d;
    let bc = (maxc - b) / d;
    let h = if maxc == r {
        bc - gc
    } else if maxc == g {
        2.0 + rc - bc
    } else {
        4.0 + gc - rc
    };
    let h = h / 6.0 + 1.0;
    [h - h.floor(), s, maxc]
}

/// torchvision's `_hsv2rgb`.
fn hsv2rgb([h, s, v]: [f32; 3]) -> [f32; 3] {
    let h6 = h * 6.0;
    let i = h6.floor();
    let f = h6 - i;
    let p = clamp01(v * (1.0 - s));
    let q = clamp01(v * (1.0 - s * f));
    let t = clamp01(v * (1.0 - s * (1.0 - f)));
    match (i as i32).rem_euclid(6) {
        0 => [v, t, p],
        1 => [q, v, p],
        2 => [p, v, t],
        3 => [p, q, v],
        4 => [t, p, v],
        _ => [v, p, q],
    }
}

/// Brightness then clamp: the first colour op (and what the contrast mean is taken over).
fn brightness(v: [f32; 3], b: f32) -> [f32; 3] {
    [clamp01(v[0] * b), clamp01(v[1] * b), clamp01(v[2] * b)]
}

/// The colour jitter after brightness: contrast, saturation, hue (see the module docs).
fn jitter_rest(v: [f32; 3], p: &AugmentParams) -> [f32; 3] {
    let c = p.contrast;
    let m = (1.0 - c) * p.gray_mean;
    let v = [
        clamp01(c * v[0] + m),
        clamp01(c * v[1] + m),
        clamp01(c * v[2] + m),
    ];
    let s = p.saturation;
    let g = (1.0 - s) * gray(v);
    let v = [
        clamp01(s * v[0] + g),
        clamp01(s * v[1] + g),
        clamp01(s * v[2] + g),
    ];
    if p.hue == 0.0 {
        return v;
    }
    let [h, s, val] = rgb2hsv(v);
    let h = h + p.hue;
    hsv2rgb([h - h.floor(), s, val])
}

/// Mean grayscale of the brightness-adjusted crop of sample `i`, estimated on a
/// [`GRAY_MEAN_GRID`]² grid of output points (one bilinear tap each, no supersampling): the
/// contrast target the kernel receives in [`AugmentParams::gray_mean`].
pub fn estimate_gray_mean(images: &PackedImages, i: usize, p: &AugmentParams, size: usize) -> f32 {
    let g = GRAY_MEAN_GRID;
    let step = size as f32 / g as f32;
    let mut one = *p;
    one.taps = [1, 1];
    let mut sum = 0f32;
    for gy in 0..g {
        for gx in 0..g {
            let x = (gx as f32 + 0.5) * step;
            let y = (gy as f32 + 0.5) * step;
            sum += gray(brightness(sample_rgb(images, i, &one, x, y), p.brightness));
        }
    }
    sum / (g * g) as f32
}

/// The colour of output pixel `(x, y)` (integer indices) of sample `i` with parameters `p`
/// after sampling and colour jitter, before mixing and normalisation, on `[0, 1]`. `p` must
/// have its gray mean resolved.
fn sample_augmented(
    images: &PackedImages,
    i: usize,
    p: &AugmentParams,
    x: usize,
    y: usize,
) -> [f32; 3] {
    let v = sample_rgb(images, i, p, x as f32 + 0.5, y as f32 + 0.5);
    jitter_rest(brightness(v, p.brightness), p)
}

/// Output pixel `(x, y)` of sample `i` before normalisation: its own value, or its blend with
/// the partner's (`w·a + (1 − w)·b`, reading only one sample when `w` is 0 or 1).
fn mixed_pixel(
    images: &PackedImages,
    params: &[AugmentParams],
    i: usize,
    p: &AugmentParams,
    x: usize,
    y: usize,
) -> [f32; 3] {
    let Some(m) = p.mix else {
        return sample_augmented(images, i, p, x, y);
    };
    let w = m.weight_at(x as u32, y as u32);
    let partner = || sample_augmented(images, m.partner, &params[m.partner], x, y);
    if w >= 1.0 {
        return sample_augmented(images, i, p, x, y);
    }
    if w <= 0.0 {
        return partner();
    }
    let (a, b) = (sample_augmented(images, i, p, x, y), partner());
    [0, 1, 2].map(|c| w * a[c] + (1.0 - w) * b[c])
}

/// The CPU reference: `[N, 3, size, size]` (NCHW, row-major) normalised values.
///
/// # Panics
/// On an inconsistent batch (see [`PackedImages`]) or taps outside `1..=MAX_TAPS`.
pub fn augment_reference(
    images: &PackedImages,
    params: &[AugmentParams],
    size: usize,
    norm: &Normalize,
) -> Vec<f32> {
    images.check(params);
    for p in params {
        assert!(
            (1..=super::MAX_TAPS).contains(&p.taps[0])
                && (1..=super::MAX_TAPS).contains(&p.taps[1]),
            "augment: taps {:?} outside 1..={}",
            p.taps,
            super::MAX_TAPS
        );
    }
    let params = resolve_gray_means(images, params, size);
    let plane = size * size;
    let mut out = vec![0f32; params.len() * 3 * plane];
    if plane == 0 {
        return out;
    }
    out.par_chunks_mut(3 * plane)
        .zip(params.par_iter())
        .enumerate()
        .for_each(|(i, (dst, p))| {
            for y in 0..size {
                for x in 0..size {
                    let v = mixed_pixel(images, &params, i, p, x, y);
                    for c in 0..3 {
                        dst[c * plane + y * size + x] = (v[c] - norm.mean[c]) / norm.std[c];
                    }
                }
            }
        });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hsv_round_trip() {
        for v in [
            [0.2, 0.5, 0.9],
            [1.0, 0.0, 0.0],
            [0.3, 0.3, 0.3],
            [0.0, 1.0, 0.5],
        ] {
            let back = hsv2rgb(rgb2hsv(v));
            for c in 0..3 {
                assert!((back[c] - v[c]).abs() < 1e-6, "{v:?} → {back:?}");
            }
        }
        // Pure red shifted by a third of a turn is pure green.
        let [h, s, v] = rgb2hsv([1.0, 0.0, 0.0]);
        let g = hsv2rgb([(h + 1.0 / 3.0).fract(), s, v]);
        assert!(
            (g[1] - 1.0).abs() < 1e-6 && g[0] < 1e-6 && g[2] < 1e-6,
            "{g:?}"
        );
    }

    #[test]
    fn rotation_is_counter_clockwise_like_torchvision() {
        // A white pixel at the top-right of a 4×4 black image.
        let mut data = vec![0u8; 4 * 4 * 3];
        data[3 * 3..3 * 3 + 3].copy_from_slice(&[255, 255, 255]);
        let images = PackedImages {
            data: &data,
            offsets: &[0],
            sizes: &[(4, 4)],
        };
        let norm = Normalize {
            mean: [0.0; 3],
            std: [1.0; 3],
        };
        let white_at = |degrees: f32| {
            let p = AugmentParams::crop_rotate_flip([0.0, 0.0, 4.0, 4.0], degrees, false, 4);
            assert_eq!(p.taps, [1, 1]);
            let out = augment_reference(&images, &[p], 4, &norm);
            let i = out[..16]
                .iter()
                .position(|&v| v > 0.99)
                .expect("a white pixel");
            (i % 4, i / 4)
        };
        assert_eq!(white_at(0.0), (3, 0));
        // +90° (counter-clockwise): top-right → top-left; −90°: → bottom-right.
        assert_eq!(white_at(90.0), (0, 0));
        assert_eq!(white_at(-90.0), (3, 3));
    }

    #[test]
    fn reflect_mirrors_about_the_border() {
        assert_eq!(reflect(-0.5, 4.0), 0.5);
        assert_eq!(reflect(4.5, 4.0), 3.5);
        assert_eq!(reflect(2.0, 4.0), 2.0);
        assert_eq!(reflect(8.5, 4.0), 0.5);
    }
}
