//! `petal augment-preview`: a PNG grid of original vs augmented samples (de-normalised), with
//! each sample's drawn parameters printed — "are we doing enough augmentation? too much?"

use anyhow::{Context, Result, bail};
use clap::Args;
use image::{Rgb, RgbImage, imageops};
use petal_core::device::{DeviceChoice, select_device};
use petal_data::augment::{AugmentConfig, Padding, Pipeline};
use petal_data::{
    DEFAULT_MAX_PIXELS, ImageFolder, PackedBatch, ScanOptions, SyntheticFlowers, decode_rgb8,
};
use petal_trainer::config::MAX_IMAGE_SIZE;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use std::path::PathBuf;

/// Arguments of `petal augment-preview`.
#[derive(Args, Debug)]
pub struct AugmentPreviewArgs {
    /// An ImageFolder data set (samples drawn from its train split).
    #[arg(
        long,
        conflicts_with = "synthetic",
        required_unless_present = "synthetic"
    )]
    data: Option<PathBuf>,
    /// Use generated synthetic flowers (500×500) instead of files.
    #[arg(long)]
    synthetic: bool,
    /// Number of samples.
    #[arg(long, default_value_t = 16)]
    n: usize,
    /// Seed of the sample choice and of the augmentation.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Epoch whose draws are shown (each epoch draws anew).
    #[arg(long, default_value_t = 0)]
    epoch: u64,
    /// Output side of the augmented images.
    #[arg(long, default_value_t = 224)]
    size: usize,
    /// Rotation range in degrees (the recipe's 25).
    #[arg(long)]
    rotation: Option<f32>,
    /// Reflect instead of filling with black outside the image.
    #[arg(long)]
    reflect: bool,
    /// Device: auto, cpu, wgpu, vulkan, metal, dx12.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Output PNG.
    #[arg(long, default_value = "augment_preview.png")]
    out: PathBuf,
}

/// Pairs (original | augmented) per grid row.
const PAIRS_PER_ROW: usize = 4;
const GAP: u32 = 6;

/// Runs `petal augment-preview`.
pub fn run(args: AugmentPreviewArgs) -> Result<i32> {
    crate::check_range("n", args.n, 1, 1024)?;
    crate::check_range("size", args.size, 8, MAX_IMAGE_SIZE)?;
    if let Some(r) = args.rotation
        && !(0.0..=180.0).contains(&r)
    {
        bail!("--rotation {r} is out of range: allowed 0..=180 (degrees)");
    }
    let selected = select_device(args.device.parse::<DeviceChoice>()?)?;
    let mut batch = PackedBatch::default();
    let mut push = |img: RgbImage, label: usize, index: usize| batch.push(&img, label, index);
    match &args.data {
        Some(dir) => {
            let ds = ImageFolder::scan(dir, &ScanOptions::default())?;
            let mut order: Vec<usize> = (0..ds.train.len()).collect();
            order.shuffle(&mut ChaCha8Rng::seed_from_u64(args.seed));
            let mut taken = 0;
            for i in order {
                if taken == args.n {
                    break;
                }
                let s = &ds.train[i];
                match decode_rgb8(&s.path, DEFAULT_MAX_PIXELS) {
                    Ok(img) => {
                        push(img, s.label, i);
                        taken += 1;
                    }
                    Err(e) => eprintln!("warning: {}: {e}", s.path.display()),
                }
            }
            if taken == 0 {
                bail!("no readable image in {}", dir.display());
            }
        }
        None => {
            let flowers = SyntheticFlowers::new(10, 500, args.seed);
            for i in 0..args.n {
                let (img, label) = flowers.sample(i as u64);
                push(img, label, i);
            }
        }
    }
    let mut config = AugmentConfig {
        size: args.size,
        ..AugmentConfig::default()
    };
    if let Some(r) = args.rotation {
        config.rotation = r;
    }
    if args.reflect {
        config.padding = Padding::Reflect;
    }
    let pipe = Pipeline::train(config.clone(), args.seed);
    let grid = render(&batch, &pipe, args.epoch, &selected.device)?;
    println!(
        "augment-preview on {} (seed {}, epoch {}, {} samples → {}²)",
        selected.description,
        args.seed,
        args.epoch,
        batch.len(),
        args.size
    );
    println!("recipe: {config:?}");
    println!(
        "{:>4} {:>6} {:>9}  {:<22} {:>7} {:>5} {:>6} {:>6} {:>6} {:>7}",
        "#",
        "index",
        "source",
        "crop (top,left,h,w)",
        "angle",
        "flip",
        "bright",
        "contr",
        "satur",
        "hue"
    );
    for i in 0..batch.len() {
        let (w, h) = batch.sizes[i];
        let d = pipe
            .draw(batch.indices[i], args.epoch, w, h)
            .expect("train mode");
        println!(
            "{:>4} {:>6} {:>9}  {:<22} {:>7.2} {:>5} {:>6.3} {:>6.3} {:>6.3} {:>7.4}",
            i,
            batch.indices[i],
            format!("{w}×{h}"),
            format!("{:?}", d.crop),
            d.angle,
            if d.flip { "yes" } else { "no" },
            d.brightness,
            d.contrast,
            d.saturation,
            d.hue
        );
    }

    let rows = batch.len().div_ceil(PAIRS_PER_ROW.min(batch.len()));
    grid.save(&args.out)
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!(
        "wrote {} ({} rows of original | augmented pairs)",
        args.out.display(),
        rows
    );
    Ok(0)
}

/// Runs `pipe` on `batch` (the fused augmentation on `device`, epoch `epoch`'s draws) and
/// lays out (original | augmented) pairs, [`PAIRS_PER_ROW`] per row, de-normalised.
pub fn render(
    batch: &PackedBatch,
    pipe: &Pipeline,
    epoch: u64,
    device: &burn::tensor::Device,
) -> Result<RgbImage> {
    let out = pipe.apply(batch, epoch, device);
    let values: Vec<f32> = out
        .into_data()
        .try_to_vec_as::<f32>()
        .map_err(|e| anyhow::anyhow!("reading the batch back: {e:?}"))?;
    let s = pipe.size() as u32;
    let n = batch.len();
    let cols = PAIRS_PER_ROW.min(n);
    let rows = n.div_ceil(cols);
    let width = cols as u32 * (2 * s + GAP) + (cols as u32 + 1) * GAP;
    let height = rows as u32 * (s + GAP) + GAP;
    let mut grid = RgbImage::from_pixel(width, height, Rgb([255, 255, 255]));
    let norm = pipe.normalize();
    let plane = (s * s) as usize;
    for i in 0..n {
        let (x0, y0) = (
            GAP + (i % cols) as u32 * (2 * s + 2 * GAP),
            GAP + (i / cols) as u32 * (s + GAP),
        );
        // The original, scaled to fit s × s.
        let orig = batch.image(i);
        let k = s as f32 / orig.width().max(orig.height()) as f32;
        let (ow, oh) = (
            ((orig.width() as f32 * k).round() as u32).max(1),
            ((orig.height() as f32 * k).round() as u32).max(1),
        );
        let small = imageops::resize(&orig, ow, oh, imageops::FilterType::Triangle);
        imageops::overlay(
            &mut grid,
            &small,
            (x0 + (s - ow) / 2) as i64,
            (y0 + (s - oh) / 2) as i64,
        );
        // The augmented sample, de-normalised.
        let base = i * 3 * plane;
        let aug = RgbImage::from_fn(s, s, |x, y| {
            let p = (y * s + x) as usize;
            let c = |ch: usize| {
                let v = values[base + ch * plane + p] * norm.std[ch] + norm.mean[ch];
                (v * 255.0).round().clamp(0.0, 255.0) as u8
            };
            Rgb([c(0), c(1), c(2)])
        });
        imageops::overlay(&mut grid, &aug, (x0 + s + GAP) as i64, y0 as i64);
    }
    Ok(grid)
}
