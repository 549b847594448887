//! Fused augmentation (`kernels/augment.wgsl`) against its CPU reference on random
//! parameters and odd source sizes; identities; flip; seeded reproducibility; the draw
//! statistics of the training recipe; eval geometry; the stock-op baseline; MixUp / CutMix
//! inside the kernel (against the reference, hand values and the unmixed outputs) and the
//! pipeline's per-batch mixing.

use crate::common::*;
use burn::tensor::DType;
use petal::data::PackedBatch;
use petal::data::augment::{AugmentConfig, Padding, Pipeline, eval_params};
use petal::data::mix::Mix;
use petal::data::transform::normalise_chw;
use petal::kernels::augment::{
    AugmentParams, MAX_TAPS, Normalize, PackedImages, PixelMix, augment_batch, augment_reference,
    augment_stock,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Random RGB8 images of the given sizes, packed (indices 0..n).
fn batch(sizes: &[(u32, u32)], seed: u64) -> PackedBatch {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut b = PackedBatch::default();
    for (i, &(w, h)) in sizes.iter().enumerate() {
        b.offsets.push(b.data.len());
        // Smooth-ish content plus noise, so interpolation errors are visible but bounded.
        let (fx, fy) = (
            rng.random_range(0.01..0.2f32),
            rng.random_range(0.01..0.2f32),
        );
        for y in 0..h {
            for x in 0..w {
                for c in 0..3 {
                    let base = 127.0 + 100.0 * ((x as f32 * fx + y as f32 * fy + c as f32).sin());
                    let v = base + rng.random_range(-20.0..20.0f32);
                    b.data.push(v.clamp(0.0, 255.0) as u8);
                }
            }
        }
        b.sizes.push((w, h));
        b.labels.push(0);
        b.indices.push(i);
    }
    b
}

fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    crate::common::max_abs_err(a, b)
}

const ODD_SIZES: [(u32, u32); 6] = [(1, 1), (3, 500), (500, 3), (640, 427), (37, 29), (64, 64)];

/// Random parameters that exercise every feature: recipe draws (fill colours and reflection),
/// strong down-scaling with maximal taps, up-scaling, big rotations and hue shifts.
fn random_params(b: &PackedBatch, size: usize, seed: u64) -> Vec<AugmentParams> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let strong = AugmentConfig {
        size,
        rotation: 180.0,
        brightness: 0.6,
        contrast: 0.6,
        saturation: 0.8,
        hue: 0.5,
        ..AugmentConfig::default()
    };
    b.sizes
        .iter()
        .enumerate()
        .map(|(i, &(w, h))| {
            let padding = if i % 2 == 0 {
                Padding::Reflect
            } else {
                Padding::Fill([rng.random(), rng.random(), rng.random()])
            };
            let config = AugmentConfig {
                padding,
                ..strong.clone()
            };
            let mut p = Pipeline::train(config, seed).params_for(i, 0, w, h);
            if i % 3 == 1 {
                // The whole image, with the biggest supersampling footprint.
                p = AugmentParams::crop_rotate_flip(
                    [0.0, 0.0, w as f32, h as f32],
                    rng.random_range(-30.0..30.0),
                    rng.random(),
                    size,
                )
                .with_jitter(1.3, 0.7, 1.5, -0.2)
                .with_padding(padding);
                p.taps = [MAX_TAPS, MAX_TAPS];
            }
            p
        })
        .collect()
}

#[test]
fn augment_kernel_matches_reference_on_odd_sizes_wgpu() {
    let gpu = wgpu();
    let b = batch(&ODD_SIZES, 1);
    let norm = Normalize::default();
    for (size, seed) in [(40, 11u64), (33, 12)] {
        let params = random_params(&b, size, seed);
        let images = b.images();
        let expected = augment_reference(&images, &params, size, &norm);
        let out = augment_batch(&images, &params, size, &norm, DType::F32, &gpu);
        assert_eq!(out.dims(), [b.len(), 3, size, size]);
        let err = max_abs(&values(out), &expected);
        println!("augment S={size}: max abs error vs reference {err:.2e}");
        assert!(err <= 2e-3, "S={size}: max abs error {err:e} > 2e-3");
        // f16 output: the same values rounded to half precision.
        let half = augment_batch(&images, &params, size, &norm, DType::F16, &gpu);
        assert_eq!(half.dtype(), DType::F16);
        let err = max_abs(&values(half.cast(DType::F32)), &expected);
        println!("augment S={size} f16: max abs error vs reference {err:.2e}");
        assert!(err <= 4e-3, "S={size} f16: max abs error {err:e}");
    }
}

#[test]
fn augment_identities_wgpu() {
    let gpu = wgpu();
    let s = 24usize;
    let b = batch(&[(s as u32, s as u32), (s as u32, s as u32)], 2);
    let norm = Normalize::default();
    let images = b.images();
    let identity = vec![AugmentParams::identity(); 2];
    // The source pixels, normalised as ToTensor + Normalize do.
    let mut expected = Vec::new();
    for i in 0..2 {
        expected.extend(normalise_chw(&b.image(i), norm.mean, norm.std));
    }
    let cpu = augment_reference(&images, &identity, s, &norm);
    assert_eq!(cpu, expected, "CPU identity is exact");
    let out = values(augment_batch(
        &images,
        &identity,
        s,
        &norm,
        DType::F32,
        &gpu,
    ));
    let err = max_abs(&out, &expected);
    assert!(err <= 1e-6, "GPU identity: max abs error {err:e}");

    // Each colour op at its identity factor changes nothing, on a non-trivial map: brightness
    // 1, contrast 1 (whatever the gray mean), saturation 1, hue 0 — and a full turn of hue
    // (the HSV round trip) within rounding.
    let base = AugmentParams::crop_rotate_flip([2.5, 1.0, 17.0, 20.0], 13.0, false, s);
    let run =
        |p: AugmentParams| values(augment_batch(&images, &[p, p], s, &norm, DType::F32, &gpu));
    let plain = run(base);
    let mut explicit = base.with_jitter(1.0, 1.0, 1.0, 0.0);
    explicit.gray_mean = 0.7;
    assert_eq!(
        run(explicit),
        plain,
        "identity factors are exact identities"
    );
    let err = max_abs(&run(base.with_jitter(1.0, 1.0, 1.0, 1.0)), &plain);
    assert!(err <= 1e-4, "a full hue turn: max abs error {err:e}");
    // Each op away from its identity does change the image.
    for (b_, c, sat, h) in [
        (1.2, 1.0, 1.0, 0.0),
        (1.0, 0.5, 1.0, 0.0),
        (1.0, 1.0, 0.5, 0.0),
        (1.0, 1.0, 1.0, 0.1),
    ] {
        let out = run(base.with_jitter(b_, c, sat, h));
        assert!(
            max_abs(&out, &plain) > 0.05,
            "jitter ({b_}, {c}, {sat}, {h}) is live"
        );
    }

    // Flip twice is the identity; flip once mirrors the output.
    let twice = base.flipped(s).flipped(s);
    let out2 = values(augment_batch(
        &images,
        &[twice, twice],
        s,
        &norm,
        DType::F32,
        &gpu,
    ));
    let err = max_abs(&out2, &plain);
    assert!(err <= 1e-4, "flip twice: max abs error {err:e}");
    let once = base.flipped(s);
    let out1 = values(augment_batch(
        &images,
        &[once, once],
        s,
        &norm,
        DType::F32,
        &gpu,
    ));
    let mirrored: Vec<f32> = (0..out1.len())
        .map(|k| {
            let (row, x) = (k / s, k % s);
            out1[row * s + (s - 1 - x)]
        })
        .collect();
    let err = max_abs(&mirrored, &plain);
    assert!(err <= 1e-4, "flip once mirrors: max abs error {err:e}");
}

#[test]
fn augment_same_seed_is_bit_identical_and_order_independent_wgpu() {
    let gpu = wgpu();
    let b = batch(&[(50, 40), (31, 60), (64, 64)], 3);
    let config = AugmentConfig {
        size: 32,
        ..AugmentConfig::default()
    };
    let pipe = Pipeline::train(config.clone(), 7);
    let a = pipe.apply(&b, 3, &gpu).into_data();
    let again = Pipeline::train(config.clone(), 7)
        .apply(&b, 3, &gpu)
        .into_data();
    assert_eq!(
        a.as_bytes(),
        again.as_bytes(),
        "same seed, same batch: same bits"
    );
    let other = Pipeline::train(config.clone(), 8)
        .apply(&b, 3, &gpu)
        .into_data();
    assert_ne!(a.as_bytes(), other.as_bytes(), "another seed differs");
    // An autodiff device (the trainer's) gets the same values, as a constant.
    let ad = pipe.apply(&b, 3, &gpu.clone().autodiff());
    assert!(!ad.is_require_grad());
    assert_eq!(
        ad.into_data().as_bytes(),
        a.as_bytes(),
        "autodiff device: same bits"
    );
    let next_epoch = pipe.apply(&b, 4, &gpu).into_data();
    assert_ne!(a.as_bytes(), next_epoch.as_bytes(), "another epoch differs");

    // A sample's parameters depend on (seed, epoch, index) only: not on its batch or place.
    let params = pipe.params(&b, 3);
    let mut rev = PackedBatch::default();
    for i in (0..b.len()).rev() {
        rev.offsets.push(rev.data.len());
        rev.data.extend_from_slice(&b.image(i).into_raw());
        rev.sizes.push(b.sizes[i]);
        rev.labels.push(0);
        rev.indices.push(b.indices[i]);
    }
    let mut rev_params = pipe.params(&rev, 3);
    rev_params.reverse();
    assert_eq!(params, rev_params);
}

#[test]
fn augment_on_flex_is_the_reference_and_eval_crops_exactly() {
    let cpu = flex();
    let b = batch(&[(40, 30), (30, 45)], 4);
    let pipe = Pipeline::train(
        AugmentConfig {
            size: 16,
            ..AugmentConfig::default()
        },
        1,
    );
    let out = values(pipe.apply(&b, 0, &cpu));
    let expected = augment_reference(&b.images(), &pipe.params(&b, 0), 16, &pipe.normalize());
    assert_eq!(out, expected);
    // f16 output and an autodiff Flex device also take the reference path.
    let half = pipe.apply_as(&b, 0, DType::F16, &cpu);
    assert_eq!(half.dtype(), DType::F16);
    assert_eq!(values(pipe.apply(&b, 0, &cpu.clone().autodiff())), expected);

    // Eval: shorter side already at `resize`, so the map is a pure 1:1 center crop.
    let b = batch(&[(20, 26)], 5);
    let eval = Pipeline::eval(16, 20, Normalize::default().mean, Normalize::default().std);
    let p = eval_params(20, 26, 16, 20);
    assert_eq!(p.affine, [1.0, 0.0, 2.0, 0.0, 1.0, 5.0]);
    assert_eq!(p.taps, [1, 1]);
    let out = values(eval.apply(&b, 0, &cpu));
    let crop = petal::data::transform::center_crop(&b.image(0), 16);
    let norm = Normalize::default();
    assert_eq!(out, normalise_chw(&crop, norm.mean, norm.std));
}

#[test]
fn augment_eval_is_close_to_pillow() {
    // A smooth down-scale: the kernel's box-supersampled bilinear against Pillow's
    // antialiased bilinear (EvalTransform, bit-exact with torchvision).
    let b = batch(&[(300, 200), (120, 180)], 6);
    let eval = Pipeline::eval(56, 64, Normalize::default().mean, Normalize::default().std);
    let out = values(eval.apply(&b, 0, &flex()));
    let t = petal::data::EvalTransform {
        resize: 64,
        crop: 56,
        ..Default::default()
    };
    let plane = 3 * 56 * 56;
    for i in 0..2 {
        let exp = t.apply(&b.image(i));
        let got = &out[i * plane..(i + 1) * plane];
        let mean_err: f32 = got
            .iter()
            .zip(&exp)
            .map(|(a, b)| (a - b).abs())
            .sum::<f32>()
            / plane as f32;
        println!("eval vs Pillow, image {i}: mean abs error {mean_err:.3}");
        assert!(mean_err < 0.15, "image {i}: mean abs error {mean_err}");
    }
}

#[test]
fn augment_draw_statistics_match_the_configured_ranges() {
    let config = AugmentConfig::default();
    let pipe = Pipeline::train(config.clone(), 42);
    let (w, h) = (500u32, 375u32);
    let n = 4000;
    let draws: Vec<_> = (0..n).map(|i| pipe.draw(i, 0, w, h).unwrap()).collect();
    let frac = |f: &dyn Fn(&petal::data::augment::SampleDraw) -> bool| {
        draws.iter().filter(|d| f(d)).count() as f64 / n as f64
    };
    let area = |d: &petal::data::augment::SampleDraw| {
        let (_, _, ch, cw) = d.crop;
        (ch * cw) as f64 / (w * h) as f64
    };
    for d in &draws {
        let (i, j, ch, cw) = d.crop;
        assert!(i + ch <= h && j + cw <= w, "crop inside the image: {d:?}");
        let a = area(d);
        // Rounding of w and h moves the area a little past the configured range.
        assert!((0.075..=1.0).contains(&a), "area fraction {a}");
        let r = cw as f64 / ch as f64;
        assert!((0.74..=1.345).contains(&r), "aspect ratio {r}");
        assert!(d.angle.abs() <= 25.0);
        for f in [d.brightness, d.contrast, d.saturation] {
            assert!((0.8..=1.2).contains(&f), "factor {f}");
        }
        assert!(d.hue.abs() <= 0.05);
    }
    // Area ~ uniform(0.08, 1) and log-ratio ~ uniform, conditioned on the crop fitting the
    // 4:3 image (a ≤ 0.75·r): integrating over r gives P(accept) = 0.739, so
    // P(a < 0.3) = 0.239 / 0.739 = 0.323 and P(r > 1) = 0.580 (wide crops fit more often).
    let small = frac(&|d| area(d) < 0.3);
    assert!((0.29..=0.36).contains(&small), "P(area < 0.3) = {small}");
    let wide = frac(&|d| d.crop.3 > d.crop.2);
    assert!((0.54..=0.62).contains(&wide), "P(w > h) = {wide}");
    // Angles uniform in [-25, 25]: mean ~ 0, a quarter below -12.5.
    let mean_angle = draws.iter().map(|d| d.angle as f64).sum::<f64>() / n as f64;
    assert!(mean_angle.abs() < 1.0, "mean angle {mean_angle}");
    let low = frac(&|d| d.angle < -12.5);
    assert!((0.22..=0.28).contains(&low), "P(angle < -12.5) = {low}");
    let flips = frac(&|d| d.flip);
    assert!((0.47..=0.53).contains(&flips), "P(flip) = {flips}");
    let bright_low = frac(&|d| d.brightness < 0.9);
    assert!(
        (0.22..=0.28).contains(&bright_low),
        "P(brightness < 0.9) = {bright_low}"
    );

    // The composed map: the crop's size sets the Jacobian, the angle its rotation.
    let d = draws[0];
    let p = pipe.params_for(0, 0, w, h);
    let s = config.size as f32;
    let (_, _, ch, cw) = d.crop;
    let jx = (p.affine[0].hypot(p.affine[3])) * s;
    let jy = (p.affine[1].hypot(p.affine[4])) * s;
    assert!((jx - cw as f32).abs() < 1e-2 && (jy - ch as f32).abs() < 1e-2);
    // a1 = −sin θ · h/S, a4 = cos θ · h/S.
    let angle = (-p.affine[1]).atan2(p.affine[4]).to_degrees();
    assert!((angle - d.angle).abs() < 1e-3, "{angle} vs {}", d.angle);

    // Fallback: an extreme aspect ratio never fits in ten tries → the center crop clamped to
    // the ratio range.
    let (_, _, ch, cw) = pipe.draw(0, 0, 3, 500).unwrap().crop;
    assert!(cw <= 3 && ch <= 500);
}

#[test]
fn augment_stock_baseline_agrees_with_the_reference_wgpu() {
    let gpu = wgpu();
    let b = batch(&[(48, 40), (48, 40), (48, 40)], 9);
    let size = 24;
    // Crops inside the image, no rotation: stock and fused do the same sampling.
    let params: Vec<AugmentParams> = (0..3)
        .map(|i| {
            AugmentParams::crop_rotate_flip([4.0 + i as f32, 3.0, 36.0, 30.0], 0.0, i == 1, size)
                .with_jitter(1.1, 0.9, 1.2, if i == 2 { 0.1 } else { 0.0 })
        })
        .collect();
    let norm = Normalize::default();
    let images = PackedImages {
        data: &b.data,
        offsets: &b.offsets,
        sizes: &b.sizes,
    };
    let expected = augment_reference(&images, &params, size, &norm);
    let stock = values(augment_stock(&images, &params, size, &norm, &gpu));
    let mean_err = stock
        .iter()
        .zip(&expected)
        .map(|(a, b)| (a - b).abs())
        .sum::<f32>()
        / expected.len() as f32;
    println!("stock vs reference: mean abs error {mean_err:.3e}");
    assert!(mean_err < 0.02, "stock baseline mean abs error {mean_err}");
}

/// The seed's recipe draws (reflect and fill padding) with mixing on every sample: MixUp
/// weights on one third, CutMix boxes on another, a box with a blended outside on the rest;
/// partners across the batch (not only the reverse).
fn mixed_params(b: &PackedBatch, size: usize, seed: u64) -> Vec<AugmentParams> {
    let n = b.len();
    let s = size as u32;
    b.sizes
        .iter()
        .enumerate()
        .map(|(i, &(w, h))| {
            let padding = if i % 2 == 0 {
                Padding::Reflect
            } else {
                Padding::Fill([30, 60, 90])
            };
            let config = AugmentConfig {
                size,
                padding,
                ..AugmentConfig::default()
            };
            let partner = (i * 5 + 3) % n;
            let mix = match i % 3 {
                0 => PixelMix {
                    partner,
                    weight: 0.3 + 0.1 * i as f32,
                    cut: [0; 4],
                },
                1 => PixelMix {
                    partner,
                    weight: 1.0,
                    cut: [3, s - 5, 7, s - 2],
                },
                _ => PixelMix {
                    partner,
                    weight: 0.6,
                    cut: [0, 10, 0, s],
                },
            };
            Pipeline::train(config, seed)
                .params_for(i, 0, w, h)
                .with_mix(Some(mix))
        })
        .collect()
}

#[test]
fn augment_mixed_batch_kernel_matches_reference_wgpu() {
    let gpu = wgpu();
    let b = batch(&ODD_SIZES, 21);
    let images = b.images();
    // On [0, 1] values (no normalisation) the f32 bound is 1e-5; ImageNet's normalisation
    // divides by std ≥ 0.224, so the same error grows by up to 1 / 0.224.
    let unit = Normalize {
        mean: [0.0; 3],
        std: [1.0; 3],
    };
    for (norm, f32_tol) in [(unit, 1e-5), (Normalize::default(), 1e-5 / 0.224)] {
        for (size, seed) in [(40, 31u64), (33, 32)] {
            let params = mixed_params(&b, size, seed);
            let expected = augment_reference(&images, &params, size, &norm);
            let out = augment_batch(&images, &params, size, &norm, DType::F32, &gpu);
            let err = max_abs(&values(out), &expected);
            println!("mixed batch S={size} {norm:?}: f32 max abs error vs reference {err:.2e}");
            assert!(
                err <= f32_tol,
                "S={size}: f32 max abs error {err:e} > {f32_tol:e}"
            );
            let half = augment_batch(&images, &params, size, &norm, DType::F16, &gpu);
            let err = max_abs(&values(half.cast(DType::F32)), &expected);
            println!("mixed batch S={size}: f16 max abs error vs reference {err:.2e}");
            assert!(err <= 2e-3, "S={size}: f16 max abs error {err:e} > 2e-3");
        }
    }
}

#[test]
fn augment_mixing_by_hand_on_both_paths_wgpu() {
    // A red and a blue 8×8 image, identity maps, no normalisation: sample 0 is MixUp with
    // weight 0.25 (every pixel 0.25·red + 0.75·blue), sample 1 CutMix with red pasted into
    // rows 2..5, columns 1..4.
    let mut b = PackedBatch::default();
    for rgb in [[255u8, 0, 0], [0, 0, 255]] {
        b.offsets.push(b.data.len());
        for _ in 0..64 {
            b.data.extend_from_slice(&rgb);
        }
        b.sizes.push((8, 8));
        b.labels.push(0);
        b.indices.push(b.indices.len());
    }
    let norm = Normalize {
        mean: [0.0; 3],
        std: [1.0; 3],
    };
    let params = [
        AugmentParams::identity().with_mix(Some(PixelMix {
            partner: 1,
            weight: 0.25,
            cut: [0; 4],
        })),
        AugmentParams::identity().with_mix(Some(PixelMix {
            partner: 0,
            weight: 1.0,
            cut: [2, 5, 1, 4],
        })),
    ];
    let mut want = vec![0f32; 2 * 3 * 64];
    for p in 0..64 {
        want[p] = 0.25;
        want[128 + p] = 0.75;
        let (x, y) = (p % 8, p / 8);
        let red = (2..5).contains(&y) && (1..4).contains(&x);
        want[192 + p] = if red { 1.0 } else { 0.0 };
        want[192 + 128 + p] = if red { 0.0 } else { 1.0 };
    }
    let images = b.images();
    assert_eq!(augment_reference(&images, &params, 8, &norm), want);
    let got = values(augment_batch(
        &images,
        &params,
        8,
        &norm,
        DType::F32,
        &wgpu(),
    ));
    assert!(max_abs(&got, &want) <= 1e-6, "kernel: {got:?}");
    let stock = values(augment_stock(&images, &params, 8, &norm, &flex()));
    assert!(max_abs(&stock, &want) <= 1e-6, "stock: {stock:?}");
}

#[test]
fn augment_mixing_blends_the_unmixed_outputs() {
    // Reference (Flex): a mixed sample is w·own + (1 − w)·partner of the unmixed outputs,
    // the partner's alone inside the cut box, its own alone where w = 1.
    let b = batch(&[(50, 40), (31, 64), (64, 31), (40, 40)], 5);
    let size = 24;
    let norm = Normalize::default();
    let images = b.images();
    let mixed = mixed_params(&b, size, 7);
    let plain: Vec<AugmentParams> = mixed.iter().map(|p| p.with_mix(None)).collect();
    let base = augment_reference(&images, &plain, size, &norm);
    let got = values(augment_batch(
        &images,
        &mixed,
        size,
        &norm,
        DType::F32,
        &flex(),
    ));
    let plane = size * size;
    let (mut worst, mut inside, mut own) = (0f32, 0, 0);
    for (i, p) in mixed.iter().enumerate() {
        let m = p.mix.unwrap();
        for c in 0..3 {
            for j in 0..plane {
                let w = m.weight_at((j % size) as u32, (j / size) as u32);
                let a = base[(i * 3 + c) * plane + j];
                let pb = base[(m.partner * 3 + c) * plane + j];
                let g = got[(i * 3 + c) * plane + j];
                if w == 0.0 {
                    assert_eq!(g, pb, "sample {i} inside the box is its partner's");
                    inside += 1;
                } else if w == 1.0 {
                    assert_eq!(g, a, "sample {i} outside the box is its own");
                    own += 1;
                } else {
                    // Blending before the normalisation vs blending normalised values.
                    worst = worst.max((g - (w * a + (1.0 - w) * pb)).abs());
                }
            }
        }
    }
    println!("blend vs unmixed outputs: max abs error {worst:.2e}");
    assert!(
        worst < 1e-5 && inside > 0 && own > 0,
        "{worst} {inside} {own}"
    );
    // The stock-op baseline mixes the same way (its own sampling aside).
    let stock = values(augment_stock(&images, &mixed, size, &norm, &flex()));
    let stock_plain = values(augment_stock(&images, &plain, size, &norm, &flex()));
    for (i, p) in mixed.iter().enumerate() {
        let m = p.mix.unwrap();
        for j in 0..plane {
            let w = m.weight_at((j % size) as u32, (j / size) as u32);
            let (a, pb) = (
                stock_plain[i * 3 * plane + j],
                stock_plain[m.partner * 3 * plane + j],
            );
            let want = w * a + (1.0 - w) * pb;
            assert!((stock[i * 3 * plane + j] - want).abs() < 1e-5);
        }
    }
}

#[test]
fn pipeline_mixes_each_batch_with_its_reverse_reproducibly() {
    use petal::data::mix::{MixConfig, mixed_targets};
    let b = batch(&[(40, 30); 5], 3);
    let config = AugmentConfig {
        size: 32,
        ..AugmentConfig::default()
    };
    let cutmix_only = MixConfig {
        cutmix: 1.0,
        ..MixConfig::default()
    };
    let mixup_only = MixConfig {
        mixup: 0.4,
        ..MixConfig::default()
    };
    for (mix, want_cut) in [(cutmix_only, true), (mixup_only, false)] {
        let pipe = Pipeline::train(config.clone(), 9).with_mix(mix);
        let mut kinds = Vec::new();
        for epoch in 0..6 {
            let (params, m) = pipe.params_mixed(&b, epoch);
            assert_eq!(
                m,
                pipe.mix_for(&b, epoch),
                "the draw is a function of the batch"
            );
            // Unmixed parameters are the same draws.
            assert_eq!(pipe.params(&b, epoch).len(), 5);
            for (i, p) in params.iter().enumerate() {
                let pm = p.mix.expect("every batch is mixed at prob 1");
                assert_eq!(pm.partner, 4 - i);
                match m {
                    Mix::CutMix { lambda, bbox } => {
                        assert!(want_cut);
                        assert_eq!((pm.weight, pm.cut), (1.0, bbox));
                        let [y0, y1, x0, x1] = bbox;
                        let area = ((y1 - y0) * (x1 - x0)) as f32;
                        assert!((lambda - (1.0 - area / 1024.0)).abs() < 1e-6);
                    }
                    Mix::MixUp { lambda } => {
                        assert!(!want_cut);
                        assert_eq!((pm.weight, pm.cut), (lambda, [0; 4]));
                    }
                    Mix::None => panic!("prob 1 mixes every batch"),
                }
                // Without the mix, the sample's own draw is unchanged.
                assert_eq!(p.with_mix(None), pipe.params(&b, epoch)[i].with_mix(None));
            }
            kinds.push(m);
        }
        // Different epochs draw differently; the same seed draws the same.
        assert!(kinds.windows(2).any(|w| w[0] != w[1]));
        let again = Pipeline::train(config.clone(), 9).with_mix(mix);
        assert_eq!(again.mix_for(&b, 3), kinds[3]);
        // The targets follow λ: row 0 mixes label 0 with sample 4's label 2.
        let l = kinds[0].lambda();
        let t = mixed_targets(&[0, 1, 2, 1, 2], 3, l, 0.0);
        assert_eq!(&t[..3], &[l, 0.0, 1.0 - l]);
    }
    // Off, or in eval mode: never mixed.
    let off = Pipeline::train(config.clone(), 9);
    assert_eq!(off.mix_for(&b, 0), Mix::None);
    assert!(off.params(&b, 0).iter().all(|p| p.mix.is_none()));
    let eval = Pipeline::eval(32, 36, [0.5; 3], [0.5; 3]).with_mix(cutmix_only);
    assert_eq!(eval.mix_for(&b, 0), Mix::None);
    // mix_prob 0.5: about half the batches are mixed.
    let half = Pipeline::train(config, 9).with_mix(MixConfig {
        mixup: 0.4,
        prob: 0.5,
        ..MixConfig::default()
    });
    let mixed = (0..400)
        .filter(|&e| half.mix_for(&b, e) != Mix::None)
        .count();
    assert!((160..=240).contains(&mixed), "{mixed} of 400 mixed");
}
