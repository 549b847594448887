//! `petal bench …`: speed as ratios measured in one run on one device, one file per bench.

mod augment;
mod conv;
mod data;
mod pool;
mod train_step;

use anyhow::Result;
use burn::prelude::*;
use clap::Subcommand;
use std::time::Instant;

/// `petal bench` subcommands.
#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Fused concat-pool kernel vs the stock-op reference, forward and forward+backward.
    Pool(pool::PoolArgs),
    /// Decoded images/s on one thread vs all cores, and whether the loader keeps up.
    Data(data::DataArgs),
    /// Fused augmentation kernel vs the same pipeline in stock Burn ops vs the CPU reference.
    Augment(augment::AugmentArgs),
    /// Steady-state images/s of a full fine-tune step (augmentation, forward, loss,
    /// backward, AdamW step).
    TrainStep(train_step::TrainStepArgs),
    /// petal's CPU convolution paths for stride-1 kernels larger than 1×1, im2col + gemm vs
    /// the shifted gemms, per layer shape: forward, weight gradient, input gradient.
    Conv(conv::ConvArgs),
}

/// Runs `petal bench`.
pub fn run(cmd: BenchCommand) -> Result<i32> {
    match cmd {
        BenchCommand::Pool(args) => pool::run(args),
        BenchCommand::Data(args) => data::run(args),
        BenchCommand::Augment(args) => augment::run(args),
        BenchCommand::TrainStep(args) => train_step::run(args),
        BenchCommand::Conv(args) => conv::run(args),
    }
}

/// Median wall time of `f` in ms, after `warmup` runs; `f` syncs the device itself.
pub(crate) fn median_ms(warmup: usize, runs: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..warmup {
        f();
    }
    let mut t: Vec<f64> = (0..runs)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

pub(crate) fn rayon_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Memory the device's CubeCL client reports: (bytes reserved, bytes in use); `None` off
/// CubeCL (Flex).
pub(crate) fn cube_memory(device: &Device) -> Option<(u64, u64)> {
    use burn::backend::DispatchDevice;
    match device.clone().inner().as_dispatch() {
        DispatchDevice::Cube(d) => {
            let u = d
                .client()
                .memory_report(burn::cubecl::MemoryScope::Device)
                .usage();
            Some((u.bytes_reserved, u.bytes_in_use))
        }
        _ => None,
    }
}

/// The process's peak resident set (VmHWM), Linux only.
pub(crate) fn peak_rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// `n` synthetic flowers cut to 500×375 (the benchmarks' source shape), packed, with
/// `label(i)` as labels.
pub(crate) fn flowers_500x375(n: usize, label: impl Fn(usize) -> usize) -> petal_data::PackedBatch {
    let flowers = petal_data::SyntheticFlowers::new(10, 500, 0);
    let mut batch = petal_data::PackedBatch::default();
    for i in 0..n {
        let img =
            image::imageops::crop_imm(&flowers.sample(i as u64).0, 0, 62, 500, 375).to_image();
        batch.push(&img, label(i), i);
    }
    batch
}
