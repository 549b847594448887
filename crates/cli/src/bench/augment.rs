//! `petal bench augment`: the fused augmentation kernel vs the same pipeline in stock Burn
//! ops vs the CPU reference.

use super::{flowers_500x375, median_ms, rayon_threads};
use anyhow::{Result, bail};
use burn::prelude::*;
use clap::Args;
use petal_core::device::{DeviceChoice, select_device};
use serde::Serialize;

/// Arguments of `petal bench augment`.
#[derive(Args, Debug)]
pub struct AugmentArgs {
    /// Device: wgpu, vulkan, metal, dx12 (the fused kernel needs wgpu), or auto.
    #[arg(long, default_value = "wgpu")]
    device: String,
    /// Images per batch.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Output side.
    #[arg(long, default_value_t = 224)]
    size: usize,
    /// Timed batches per measurement (the median is reported).
    #[arg(long, default_value_t = 10)]
    runs: usize,
    /// Untimed warm-up batches per measurement.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Mix every batch with MixUp of this α (every path mixes; the fused kernel is also
    /// timed unmixed in the same run: `mix_cost`).
    #[arg(long, default_value_t = 0.0)]
    mixup: f64,
    /// Mix every batch with CutMix of this α (with --mixup too: half the batches each).
    #[arg(long, default_value_t = 0.0)]
    cutmix: f64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct AugmentReport {
    device: String,
    batch_size: usize,
    source: String,
    size: usize,
    cpu_threads: usize,
    fused_ms: f64,
    stock_ms: f64,
    cpu_ms: f64,
    fused_ips: f64,
    stock_ips: f64,
    cpu_ips: f64,
    speedup_vs_stock: f64,
    speedup_vs_cpu: f64,
    /// MixUp α of every batch (0 = off).
    mixup: f64,
    /// CutMix α of every batch (0 = off).
    cutmix: f64,
    /// With mixing: the fused kernel without it, same run.
    #[serde(skip_serializing_if = "Option::is_none")]
    fused_unmixed_ms: Option<f64>,
    /// With mixing: `fused_ms / fused_unmixed_ms`.
    #[serde(skip_serializing_if = "Option::is_none")]
    mix_cost: Option<f64>,
}

/// Runs `petal bench augment`.
pub fn run(args: AugmentArgs) -> Result<i32> {
    use petal_data::augment::{AugmentConfig, Pipeline};
    use petal_kernels::augment::{augment_reference, augment_stock};

    use petal_trainer::config::{MAX_BATCH_SIZE, MAX_IMAGE_SIZE};
    crate::check_range("runs", args.runs, 1, 1_000_000)?;
    crate::check_range("batch-size", args.batch_size, 1, MAX_BATCH_SIZE)?;
    crate::check_range("size", args.size, 8, MAX_IMAGE_SIZE)?;
    let selected = select_device(args.device.parse::<DeviceChoice>()?)?;
    let device = selected.device.clone();
    if !petal_kernels::augment::uses_fused_kernel(&device, burn::tensor::DType::F32) {
        bail!(
            "--device {}: {} has no fused augmentation kernel (it runs on wgpu devices); use --device wgpu",
            args.device,
            selected.description
        );
    }
    // Sources: synthetic flowers cut to 500×375 (the benchmark shape).
    let batch = flowers_500x375(args.batch_size, |_| 0);
    let config = AugmentConfig {
        size: args.size,
        ..AugmentConfig::default()
    };
    let mix = petal_data::mix::MixConfig {
        mixup: args.mixup,
        cutmix: args.cutmix,
        ..Default::default()
    };
    if !(mix.mixup >= 0.0 && mix.cutmix >= 0.0 && mix.mixup <= 100.0 && mix.cutmix <= 100.0) {
        bail!("--mixup / --cutmix must be in 0..=100");
    }
    let unmixed = Pipeline::train(config, 0);
    let pipe = unmixed.clone().with_mix(mix);
    let norm = pipe.normalize();
    let sync = |d: &Device| d.sync().expect("device sync");
    // Every measurement draws the parameters (epoch = run number) and uploads the bytes.
    let mut epoch = 0u64;
    eprintln!("  fused kernel…");
    let fused_ms = median_ms(args.warmup, args.runs, || {
        epoch += 1;
        drop(pipe.apply(&batch, epoch, &device));
        sync(&device);
    });
    let fused_unmixed_ms = mix.enabled().then(|| {
        eprintln!("  fused kernel, unmixed…");
        median_ms(args.warmup, args.runs, || {
            epoch += 1;
            drop(unmixed.apply(&batch, epoch, &device));
            sync(&device);
        })
    });
    eprintln!("  stock Burn ops…");
    let stock_ms = median_ms(args.warmup, args.runs, || {
        epoch += 1;
        let params = pipe.params(&batch, epoch);
        drop(augment_stock(
            &batch.images(),
            &params,
            args.size,
            &norm,
            &device,
        ));
        sync(&device);
    });
    eprintln!("  CPU reference (rayon)…");
    let cpu_ms = median_ms(args.warmup.min(1), args.runs, || {
        epoch += 1;
        let params = pipe.params(&batch, epoch);
        drop(augment_reference(
            &batch.images(),
            &params,
            args.size,
            &norm,
        ));
    });
    let ips = |ms: f64| args.batch_size as f64 / (ms / 1e3);
    let report = AugmentReport {
        device: selected.description,
        batch_size: args.batch_size,
        source: "synthetic flowers 500×375 (RGB8)".to_string(),
        size: args.size,
        cpu_threads: rayon_threads(),
        fused_ms,
        stock_ms,
        cpu_ms,
        fused_ips: ips(fused_ms),
        stock_ips: ips(stock_ms),
        cpu_ips: ips(cpu_ms),
        speedup_vs_stock: stock_ms / fused_ms,
        speedup_vs_cpu: cpu_ms / fused_ms,
        mixup: args.mixup,
        cutmix: args.cutmix,
        fused_unmixed_ms,
        mix_cost: fused_unmixed_ms.map(|u| fused_ms / u),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "augmentation on {}: batch {} of {} → {}² (median of {} runs after {} warm-up)",
            report.device, args.batch_size, report.source, args.size, args.runs, args.warmup
        );
        println!(
            "  fused kernel:        {:>9.2} ms  {:>10.1} images/s",
            fused_ms, report.fused_ips
        );
        if let (Some(u), Some(c)) = (fused_unmixed_ms, report.mix_cost) {
            println!(
                "  fused, unmixed:      {:>9.2} ms  (mixing costs {:.2}x, MixUp α {} / CutMix α {})",
                u, c, args.mixup, args.cutmix
            );
        }
        println!(
            "  stock Burn ops:      {:>9.2} ms  {:>10.1} images/s  (fused {:.2}x)",
            stock_ms, report.stock_ips, report.speedup_vs_stock
        );
        println!(
            "  CPU reference ({:>2}t): {:>9.2} ms  {:>10.1} images/s  (fused {:.2}x)",
            report.cpu_threads, cpu_ms, report.cpu_ips, report.speedup_vs_cpu
        );
    }
    Ok(0)
}
