//! The augmentation built from stock Burn ops — the baseline `petal bench augment` compares
//! the fused kernel against. Same pipeline, comparable work, not bit-exact: the bytes are
//! uploaded packed (u32) and unpacked with integer ops, the supersampled grid is sampled
//! with `grid_sample_2d` (bilinear, zero or reflection padding) and box-filtered with
//! `avg_pool2d`, and the colour jitter (with the exact per-image contrast mean) and the
//! normalisation are elementwise tensor ops. Sources are zero-padded to the largest image of
//! the chunk; the supersampling uses the batch's largest tap count for every sample; the
//! batch runs in chunks whose supersampled tensor stays under 64 MiB.

use super::{AugmentParams, GRAY_WEIGHTS, Normalize, PackedImages, Padding};
use burn::tensor::module::avg_pool2d;
use burn::tensor::ops::{
    AvgPoolOptions, GridSampleOptions, GridSamplePaddingMode, InterpolateMode,
};
use burn::tensor::{DType, Device, Int, Tensor, TensorData};

/// The augmentation pipeline in stock Burn ops on `device` (f32). See the module docs for
/// how it differs from [`super::augment_batch`].
///
/// # Panics
/// On an inconsistent or empty batch.
pub fn augment_stock(
    images: &PackedImages,
    params: &[AugmentParams],
    size: usize,
    norm: &Normalize,
    device: &Device,
) -> Tensor<4> {
    images.check(params);
    let n = params.len();
    assert!(n > 0 && size > 0, "augment_stock: empty batch or size");
    // The supersampled intermediate is the largest tensor: keep it under 64 MiB per chunk
    // (wgpu's default storage-buffer limit, and lavapipe's, is 128 MiB).
    let kx = params.iter().map(|p| p.taps[0]).max().unwrap_or(1) as usize;
    let ky = params.iter().map(|p| p.taps[1]).max().unwrap_or(1) as usize;
    let per_image = 3 * size * size * kx * ky * 4;
    let chunk = ((64 << 20) / per_image).clamp(1, n);
    let parts: Vec<Tensor<4>> = (0..n)
        .step_by(chunk)
        .map(|start| {
            let end = (start + chunk).min(n);
            let sub = PackedImages {
                data: images.data,
                offsets: &images.offsets[start..end],
                sizes: &images.sizes[start..end],
            };
            stock_chunk(&sub, &params[start..end], size, norm, device, (kx, ky))
        })
        .collect();
    mix_stock(Tensor::cat(parts, 0), params, size, device)
}

/// MixUp / CutMix on the finished batch (a second pass, unlike the fused kernel): the
/// partners gathered with `select`, blended by a per-pixel weight map built on the host.
/// Mixing the normalised values equals mixing before the normalisation (same affine map).
fn mix_stock(x: Tensor<4>, params: &[AugmentParams], size: usize, device: &Device) -> Tensor<4> {
    if params.iter().all(|p| p.mix.is_none()) {
        return x;
    }
    let n = params.len();
    let plane = size * size;
    let mut weights = vec![1f32; n * plane];
    let mut partners = Vec::with_capacity(n);
    for (i, p) in params.iter().enumerate() {
        partners.push(p.mix.map_or(i, |m| m.partner) as i64);
        if let Some(m) = p.mix {
            for (j, w) in weights[i * plane..(i + 1) * plane].iter_mut().enumerate() {
                *w = m.weight_at((j % size) as u32, (j / size) as u32);
            }
        }
    }
    let w = Tensor::<1>::from_data(TensorData::new(weights, [n * plane]), device)
        .reshape([n, 1, size, size]);
    let partners = Tensor::<1, Int>::from_data(TensorData::new(partners, [n]), device);
    let b = x.clone().select(0, partners);
    x * w.clone() + b * w.neg().add_scalar(1.0)
}

/// [`augment_stock`] on one chunk, with the batch's tap counts.
fn stock_chunk(
    images: &PackedImages,
    params: &[AugmentParams],
    size: usize,
    norm: &Normalize,
    device: &Device,
    (kx, ky): (usize, usize),
) -> Tensor<4> {
    let n = params.len();
    let wmax = images.sizes.iter().map(|s| s.0 as usize).max().unwrap_or(1);
    let hmax = images.sizes.iter().map(|s| s.1 as usize).max().unwrap_or(1);
    // Each image zero-padded to hmax × wmax, then to a whole number of u32 words.
    let len = hmax * wmax * 3;
    let words = len.div_ceil(4);
    let mut packed = vec![0u32; n * words];
    {
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut packed);
        for i in 0..n {
            let (w, h) = images.sizes[i];
            let img = images.image(i);
            let row = w as usize * 3;
            for y in 0..h as usize {
                let dst = i * words * 4 + y * wmax * 3;
                bytes[dst..dst + row].copy_from_slice(&img[y * row..(y + 1) * row]);
            }
        }
    }
    let src =
        Tensor::<2, Int>::from_data(TensorData::new(packed, [n, words]), (device, DType::U32));
    let bytes: Vec<Tensor<3, Int>> = (0..4)
        .map(|k| {
            src.clone()
                .bitwise_right_shift_scalar(8 * k)
                .bitwise_and_scalar(255)
                .reshape([n, words, 1])
        })
        .collect();
    let x = Tensor::cat(bytes, 2)
        .reshape([n, words * 4])
        .slice([0..n, 0..len])
        .reshape([n, hmax, wmax, 3])
        .permute([0, 3, 1, 2])
        .float();

    // The supersampled sampling grid, in grid_sample's [-1, 1] (align_corners = false).
    let (gw, gh) = (size * kx, size * ky);
    let ox = Tensor::<1, Int>::arange(0..gw as i64, device)
        .float()
        .add_scalar(0.5)
        .div_scalar(kx as f32)
        .reshape([1, 1, gw]);
    let oy = Tensor::<1, Int>::arange(0..gh as i64, device)
        .float()
        .add_scalar(0.5)
        .div_scalar(ky as f32)
        .reshape([1, gh, 1]);
    let col = |j: usize| -> Tensor<3> {
        let v: Vec<f32> = params.iter().map(|p| p.affine[j]).collect();
        Tensor::<1>::from_data(TensorData::new(v, [n]), device).reshape([n, 1, 1])
    };
    let sx = col(0) * ox.clone() + col(1) * oy.clone() + col(2);
    let sy = col(3) * ox + col(4) * oy + col(5);
    let gx = sx.mul_scalar(2.0 / wmax as f32).sub_scalar(1.0);
    let gy = sy.mul_scalar(2.0 / hmax as f32).sub_scalar(1.0);
    let grid = Tensor::stack::<4>(vec![gx, gy], 3);
    let padding = if params.iter().any(|p| p.padding == Padding::Reflect) {
        GridSamplePaddingMode::Reflection
    } else {
        GridSamplePaddingMode::Zeros
    };
    let options = GridSampleOptions::new(InterpolateMode::Bilinear).with_padding_mode(padding);
    let x = x.grid_sample_2d(grid, options);
    let x = if kx * ky > 1 {
        avg_pool2d(x, AvgPoolOptions::new([ky, kx]).with_stride([ky, kx]))
    } else {
        x
    };
    let x = x.div_scalar(255.0);

    // Colour jitter: brightness, contrast, saturation, hue.
    let per = |f: fn(&AugmentParams) -> f32| -> Tensor<4> {
        let v: Vec<f32> = params.iter().map(f).collect();
        Tensor::<1>::from_data(TensorData::new(v, [n]), device).reshape([n, 1, 1, 1])
    };
    let gray = |x: &Tensor<4>| -> Tensor<4> {
        x.clone().narrow(1, 0, 1).mul_scalar(GRAY_WEIGHTS[0])
            + x.clone().narrow(1, 1, 1).mul_scalar(GRAY_WEIGHTS[1])
            + x.clone().narrow(1, 2, 1).mul_scalar(GRAY_WEIGHTS[2])
    };
    let blend = |x: Tensor<4>, f: Tensor<4>, target: Tensor<4>| -> Tensor<4> {
        (x * f.clone() + target * (f.neg().add_scalar(1.0))).clamp(0.0, 1.0)
    };
    let x = (x * per(|p| p.brightness)).clamp(0.0, 1.0);
    let mean = gray(&x).mean_dim(2).mean_dim(3);
    let x = blend(x, per(|p| p.contrast), mean);
    let g = gray(&x);
    let x = blend(x, per(|p| p.saturation), g);
    let x = hue_shift(x, per(|p| p.hue));

    let nm = Tensor::<1>::from_data(TensorData::new(norm.mean.to_vec(), [3]), device)
        .reshape([1, 3, 1, 1]);
    let ns = Tensor::<1>::from_data(TensorData::new(norm.std.to_vec(), [3]), device)
        .reshape([1, 3, 1, 1]);
    (x - nm) / ns
}

/// torchvision's `adjust_hue` on `[N, 3, H, W]` with a per-sample shift `[N, 1, 1, 1]`.
fn hue_shift(x: Tensor<4>, hue: Tensor<4>) -> Tensor<4> {
    let r = x.clone().narrow(1, 0, 1);
    let g = x.clone().narrow(1, 1, 1);
    let b = x.clone().narrow(1, 2, 1);
    let maxc = x.clone().max_dim(1);
    let minc = x.min_dim(1);
    let eqc = maxc.clone().equal(minc.clone());
    let cr = maxc.clone() - minc;
    let s = cr.clone() / maxc.clone().mask_fill(eqc.clone(), 1.0);
    let d = cr.mask_fill(eqc, 1.0);
    let rc = (maxc.clone() - r.clone()) / d.clone();
    let gc = (maxc.clone() - g.clone()) / d.clone();
    let bc = (maxc.clone() - b) / d;
    let is_r = maxc.clone().equal(r).float();
    let is_g = maxc.clone().equal(g).float() * is_r.clone().neg().add_scalar(1.0);
    let is_b = (is_r.clone() + is_g.clone()).neg().add_scalar(1.0);
    let h = is_r * (bc.clone() - gc.clone())
        + is_g * (rc.clone().add_scalar(2.0) - bc)
        + is_b * (gc.add_scalar(4.0) - rc);
    let h = h.div_scalar(6.0).add_scalar(1.0) + hue;
    let h = h.clone() - h.floor();
    let v = maxc;
    let h6 = h.mul_scalar(6.0);
    let i = h6.clone().floor();
    let f = h6 - i.clone();
    let p = (v.clone() * s.clone().neg().add_scalar(1.0)).clamp(0.0, 1.0);
    let q = (v.clone() * (s.clone() * f.clone()).neg().add_scalar(1.0)).clamp(0.0, 1.0);
    let t = (v.clone() * (s * f.neg().add_scalar(1.0)).neg().add_scalar(1.0)).clamp(0.0, 1.0);
    let m: Vec<Tensor<4>> = (0..6)
        .map(|k| i.clone().equal_elem(k as f32).float())
        .collect();
    let pick = |vals: [&Tensor<4>; 6]| -> Tensor<4> {
        let mut acc = vals[0].clone() * m[0].clone();
        for k in 1..6 {
            acc = acc + vals[k].clone() * m[k].clone();
        }
        acc
    };
    let rr = pick([&v, &q, &p, &p, &t, &v]);
    let gg = pick([&t, &v, &v, &q, &p, &p]);
    let bb = pick([&p, &p, &t, &v, &v, &q]);
    Tensor::cat(vec![rr, gg, bb], 1)
}
