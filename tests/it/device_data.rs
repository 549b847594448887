//! The device-resident data path (`--cache device`) and the eval transform on the device
//! (`kernels/eval_resample.wgsl`): against the PIL-exact CPU path and torchvision's own
//! output, resident batches against uploaded ones, the loader's resident epochs against its
//! decoding ones, the upload byte counts against the buffers' sizes by hand, and the refusals.

use crate::common::*;
use petal::data::augment::{AugmentConfig, Pipeline, eval_preprocess};
use petal::data::loader::check_device_fit;
use petal::data::{
    DEFAULT_MAX_PIXELS, DataError, EvalTransform, Loader, LoaderConfig, PackedBatch, Source,
    SyntheticFlowers, decode_rgb8,
};
use petal::kernels::transfer::{device_limits, uploaded_bytes};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Random RGB8 images of the given sizes, packed (indices 0..n, label i mod 3).
fn batch(sizes: &[(u32, u32)], seed: u64) -> PackedBatch {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut b = PackedBatch::default();
    for (i, &(w, h)) in sizes.iter().enumerate() {
        let img = image::RgbImage::from_fn(w, h, |x, y| {
            let mut v = |c: u32| {
                let s = ((x * 7 + y * 3 + c * 50) as f32 * 0.05).sin();
                (127.0 + 100.0 * s + rng.random_range(-25.0..25.0f32)).clamp(0.0, 255.0) as u8
            };
            image::Rgb([v(0), v(1), v(2)])
        });
        b.push(&img, i % 3, i);
    }
    b
}

/// The CPU path of the eval transform, image by image (mirrored first when `flip`).
fn cpu_eval(t: &EvalTransform, b: &PackedBatch, flip: bool) -> Vec<f32> {
    (0..b.len())
        .flat_map(|i| {
            let mut img = b.image(i);
            if flip {
                image::imageops::flip_horizontal_in_place(&mut img);
            }
            t.apply(&img)
        })
        .collect()
}

/// Normalised values back to 8-bit grey levels.
fn grey_levels(v: &[f32], t: &EvalTransform) -> Vec<i32> {
    let plane = (t.crop * t.crop) as usize;
    v.iter()
        .enumerate()
        .map(|(i, &x)| {
            let c = (i / plane) % 3;
            ((x * t.std[c] + t.mean[c]) * 255.0).round() as i32
        })
        .collect()
}

/// Largest difference in grey levels and in value between the device and the CPU path.
fn compare(t: &EvalTransform, b: &PackedBatch, flip: bool) -> (i32, f32) {
    let gpu = values(eval_preprocess(t, b, flip, &wgpu()));
    let cpu = cpu_eval(t, b, flip);
    assert_eq!(gpu.len(), cpu.len());
    let levels = grey_levels(&gpu, t)
        .iter()
        .zip(grey_levels(&cpu, t))
        .map(|(a, b)| (a - b).abs())
        .max()
        .unwrap_or(0);
    (levels, max_abs_err(&gpu, &cpu))
}

#[test]
fn eval_kernel_gives_pillows_values_wgpu() {
    // Odd sizes: 1×1, thin strips, a photo-sized image, shorter side already at the resize
    // size (untouched), smaller than the crop (zero padding), strong down-scaling.
    let sizes = [
        (1, 1),
        (3, 500),
        (500, 3),
        (640, 427),
        (37, 29),
        (64, 64),
        (300, 200),
        (1000, 999),
    ];
    let b = batch(&sizes, 3);
    for (resize, crop) in [(256, 224), (64, 56), (40, 48), (64, 64), (9, 7)] {
        let t = EvalTransform {
            resize,
            crop,
            ..EvalTransform::default()
        };
        for flip in [false, true] {
            let (levels, err) = compare(&t, &b, flip);
            println!("resize {resize} crop {crop} flip {flip}: {levels} grey levels, {err:.1e}");
            // The same 8-bit values; the normalisation's f32 division may round differently.
            assert!(
                levels <= 1,
                "resize {resize} crop {crop} flip {flip}: {levels} levels"
            );
            assert!(
                err <= 1e-5,
                "resize {resize} crop {crop} flip {flip}: {err:e}"
            );
        }
    }
}

#[test]
fn eval_kernel_matches_torchvision_on_a_photo_wgpu() {
    // torchvision's Resize(256) + CenterCrop(224) + ToTensor + Normalize of the fixture
    // photo (scripts/make_fixtures.py), independent of petal's CPU path.
    let img = decode_rgb8(fixture("photo.png"), DEFAULT_MAX_PIXELS).unwrap();
    let mut b = PackedBatch::default();
    b.push(&img, 0, 0);
    let got = values(eval_preprocess(
        &EvalTransform::default(),
        &b,
        false,
        &wgpu(),
    ));
    let (_, want) = f32s("eval_256_224_normalised");
    let err = max_abs_err(&got, &want);
    println!("device eval transform vs torchvision: {err:.1e}");
    assert!(err <= 1e-5, "{err:e}");
}

#[test]
fn resident_batches_give_the_uploaded_results_wgpu() {
    let gpu = wgpu();
    let train = gpu.clone().autodiff();
    let b = batch(&[(50, 40), (31, 64), (640, 427), (40, 40)], 9);
    let resident = b.clone().into_resident(&train).expect("fits");
    assert!(resident.data.is_empty() && resident.resident().is_some());
    assert_eq!(resident.image(2), b.image(2));
    // Training augmentation (every draw on, MixUp) from the device copy and from an upload.
    let config = AugmentConfig {
        size: 32,
        ..AugmentConfig::default()
    };
    let pipe = Pipeline::train(config, 4);
    let up = values(pipe.apply(&b, 3, &train));
    let res = values(pipe.apply(&resident, 3, &train));
    assert_eq!(up, res, "augmentation from the resident copy");
    // The eval transform.
    let t = EvalTransform {
        resize: 36,
        crop: 32,
        ..EvalTransform::default()
    };
    let resident = b.clone().into_resident(&gpu).expect("fits");
    for flip in [false, true] {
        let up = values(eval_preprocess(&t, &b, flip, &gpu));
        let res = values(eval_preprocess(&t, &resident, flip, &gpu));
        assert_eq!(
            up, res,
            "eval transform from the resident copy (flip {flip})"
        );
    }
}

#[test]
fn a_resident_step_uploads_only_parameters_wgpu() {
    // The step's uploads by hand: per-image info (4 + 4n u32) and parameters (8 + 20n f32),
    // plus the packed images (their bytes in whole u32 words) unless resident. The counter
    // is process-wide, so a test uploading at the same time can add to a reading: retry.
    let train = wgpu().autodiff();
    let b = batch(&[(50, 40), (31, 64), (37, 29)], 2);
    let n = b.len();
    let params = 4 * (4 + 4 * n) + 4 * (8 + 20 * n);
    let images = 4 * b.data.len().div_ceil(4);
    let resident = b.clone().into_resident(&train).expect("fits");
    let pipe = Pipeline::train(
        AugmentConfig {
            size: 16,
            ..AugmentConfig::default()
        },
        1,
    );
    for (what, batch, want) in [
        ("uploaded", &b, params + images),
        ("resident", &resident, params),
    ] {
        let mut seen = Vec::new();
        for _ in 0..10 {
            let before = uploaded_bytes();
            drop(pipe.apply(batch, 0, &train));
            let got = (uploaded_bytes() - before) as usize;
            seen.push(got);
            if got == want {
                break;
            }
        }
        assert_eq!(*seen.last().unwrap(), want, "{what}: bytes seen {seen:?}");
    }
}

fn synthetic(n: u64) -> Source {
    Source::Synthetic {
        flowers: SyntheticFlowers::new(3, 40, 5),
        indices: (0..n).collect(),
    }
}

#[test]
fn a_resident_loader_serves_the_decoded_batches_wgpu() {
    let config = LoaderConfig {
        batch_size: 3,
        seed: 11,
        max_shorter_side: Some(32),
        ..LoaderConfig::default()
    };
    let decoding = Loader::new(synthetic(8), config.clone());
    let mut resident = Loader::new(synthetic(8), config);
    let summary = resident.make_resident(&wgpu()).expect("fits");
    assert_eq!((summary.images, summary.failed), (8, 0));
    // Every image down-scaled to 32×32 (the generator draws 40×40): 8 · 32 · 32 · 3 bytes.
    assert_eq!(summary.bytes, 8 * 32 * 32 * 3);
    for epoch in [0, 1] {
        let want: Vec<PackedBatch> = decoding.epoch(epoch).into_iter().collect();
        let got: Vec<PackedBatch> = resident.epoch(epoch).into_iter().collect();
        assert_eq!(got.len(), want.len(), "epoch {epoch}");
        for (g, w) in got.iter().zip(&want) {
            assert!(g.resident().is_some() && g.data.is_empty());
            assert_eq!(
                (&g.indices, &g.labels, &g.sizes),
                (&w.indices, &w.labels, &w.sizes)
            );
            for i in 0..g.len() {
                assert_eq!(
                    g.image(i),
                    w.image(i),
                    "epoch {epoch}, sample {}",
                    g.indices[i]
                );
            }
        }
    }
    // Resuming mid-epoch skips batches as the decoding loader does.
    let skip: Vec<Vec<usize>> = resident
        .epoch_from(1, 2)
        .into_iter()
        .map(|b| b.indices)
        .collect();
    let want: Vec<Vec<usize>> = decoding
        .epoch_from(1, 2)
        .into_iter()
        .map(|b| b.indices)
        .collect();
    assert_eq!(skip, want);
}

#[test]
fn the_device_cache_is_refused_off_the_gpu_and_when_it_does_not_fit() {
    let mut loader = Loader::new(synthetic(2), LoaderConfig::default());
    let err = loader.make_resident(&flex()).unwrap_err();
    assert!(matches!(err, DataError::DeviceCache { .. }));
    let msg = err.to_string();
    assert!(
        msg.starts_with("--cache device:") && msg.contains("--cache ram"),
        "{msg}"
    );
    // One byte over the device's largest buffer (or half its memory, where stated): the message states both sizes and a
    // --max-shorter-side that fits (the side scales with the square root of the bytes).
    let limits = device_limits(&wgpu()).expect("a GPU device");
    let cap = limits.max_buffer.min(u32::MAX as u64);
    let limit = limits.max_memory.map_or(cap, |m| (m / 2).min(cap));
    let bytes = limit as usize + 1;
    let err = check_device_fit(bytes, 1000, 500, &wgpu())
        .unwrap_err()
        .to_string();
    println!("{err}");
    assert!(err.contains(&format!("{bytes} bytes")), "{err}");
    assert!(err.contains(&format!("{limit} bytes")), "{err}");
    assert!(err.contains("--max-shorter-side 499 or less"), "{err}");
    assert!(check_device_fit(bytes - 1, 1000, 500, &wgpu()).is_ok());
}
