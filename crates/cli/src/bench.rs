//! `petal bench …`: speed as ratios measured in one run on one device.

use anyhow::{Result, bail};
use burn::prelude::*;
use clap::{Args, Subcommand};
use petal_core::device::{DeviceChoice, select_device};
use petal_kernels::concat_pool::{
    PoolOrder, concat_pool, concat_pool_reference, uses_fused_kernel,
};
use serde::Serialize;
use std::time::Instant;

/// `petal bench` subcommands.
#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Fused concat-pool kernel vs the stock-op reference, forward and forward+backward.
    Pool(PoolArgs),
    /// Decoded images/s on one thread vs all cores, and whether the loader keeps up.
    Data(DataArgs),
    /// Fused augmentation kernel vs the same pipeline in stock Burn ops vs the CPU reference.
    Augment(AugmentArgs),
}

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
}

/// Arguments of `petal bench data`.
#[derive(Args, Debug)]
pub struct DataArgs {
    /// An ImageFolder (its train split) or an Oxford-102 folder (its train+valid+test ids).
    #[arg(
        long,
        conflicts_with = "synthetic",
        required_unless_present = "synthetic"
    )]
    data: Option<std::path::PathBuf>,
    /// Use generated synthetic flowers (500×500) instead of files.
    #[arg(long)]
    synthetic: bool,
    /// Images per batch.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// At most this many images per measurement.
    #[arg(long, default_value_t = 512)]
    limit: usize,
    /// Down-scale at load to this shorter side (as training does), 0 for full resolution.
    #[arg(long, default_value_t = 256)]
    shorter_side: u32,
    /// The training step the loader must keep up with, in ms per batch.
    #[arg(long, default_value_t = 250.0)]
    step_ms: f64,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct DataReport {
    source: String,
    images: usize,
    threads: usize,
    single_thread_ips: f64,
    all_cores_ips: f64,
    step_ms: f64,
    /// Mean time the consumer waited for a batch while "training" `step_ms` per batch.
    consumer_wait_ms: f64,
    keeps_up: bool,
}

/// Arguments of `petal bench pool`.
#[derive(Args, Debug)]
pub struct PoolArgs {
    /// Device: wgpu, vulkan, metal, dx12 (the fused kernel needs wgpu), or auto.
    #[arg(long, default_value = "wgpu")]
    device: String,
    /// Timed runs per measurement (the median is reported).
    #[arg(long, default_value_t = 20)]
    runs: usize,
    /// Untimed warm-up runs per measurement.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct PoolResult {
    shape: [usize; 4],
    pass: &'static str,
    fused_ms: f64,
    reference_ms: f64,
    speedup: f64,
    /// Effective bandwidth of the fused kernel: bytes read + written per run / time.
    gbps: f64,
}

#[derive(Serialize)]
struct PoolReport {
    device: String,
    runs: usize,
    results: Vec<PoolResult>,
}

/// Median wall time of `f` in ms, after `warmup` runs; `f` syncs the device itself.
fn median_ms(warmup: usize, runs: usize, mut f: impl FnMut()) -> f64 {
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

/// Runs `petal bench`.
pub fn run(cmd: BenchCommand) -> Result<i32> {
    match cmd {
        BenchCommand::Pool(args) => pool(args),
        BenchCommand::Data(args) => data(args),
        BenchCommand::Augment(args) => augment(args),
    }
}

fn data(args: DataArgs) -> Result<i32> {
    use petal_data::{
        ImageFolder, Loader, LoaderConfig, Oxford102, ScanOptions, Source, SyntheticFlowers,
    };
    if args.batch_size == 0 || args.limit == 0 {
        bail!("--batch-size and --limit must be at least 1");
    }
    let (name, source) = match &args.data {
        Some(dir) if Oxford102::is_native_layout(dir) => {
            let ds = Oxford102::open(dir)?;
            let mut s = ds.train;
            s.extend(ds.valid);
            s.extend(ds.test);
            s.truncate(args.limit);
            (format!("{} (Oxford-102)", dir.display()), Source::Files(s))
        }
        Some(dir) => {
            let ds = ImageFolder::scan(dir, &ScanOptions::default())?;
            for w in &ds.warnings {
                eprintln!("warning: {w}");
            }
            let mut s = ds.train;
            s.truncate(args.limit);
            (
                format!("{} (ImageFolder train)", dir.display()),
                Source::Files(s),
            )
        }
        None => (
            "synthetic flowers 500×500".to_string(),
            Source::Synthetic {
                flowers: SyntheticFlowers::new(10, 500, 0),
                indices: (0..args.limit as u64).collect(),
            },
        ),
    };
    let images = source.len();
    if images == 0 {
        bail!("no images to measure");
    }
    let config = |threads: Option<usize>| LoaderConfig {
        batch_size: args.batch_size,
        max_shorter_side: (args.shorter_side > 0).then_some(args.shorter_side),
        threads,
        ..LoaderConfig::default()
    };
    let rate = |threads: Option<usize>| {
        let loader = Loader::new(source.clone(), config(threads));
        let start = Instant::now();
        let n: usize = loader.epoch(0).iter().map(|b| b.len()).sum();
        n as f64 / start.elapsed().as_secs_f64()
    };
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let single = rate(Some(1));
    let all = rate(None);
    // Keep-up: the consumer "trains" step_ms per batch while the loader prefetches.
    let loader = Loader::new(source.clone(), config(None));
    let rx = loader.epoch(1);
    let mut waits = Vec::new();
    let mut first = true;
    loop {
        let t = Instant::now();
        let Ok(_batch) = rx.recv() else { break };
        if !first {
            waits.push(t.elapsed().as_secs_f64() * 1e3);
        }
        first = false;
        std::thread::sleep(std::time::Duration::from_secs_f64(args.step_ms / 1e3));
    }
    let wait = if waits.is_empty() {
        0.0
    } else {
        waits.iter().sum::<f64>() / waits.len() as f64
    };
    let report = DataReport {
        source: name,
        images,
        threads: cores,
        single_thread_ips: single,
        all_cores_ips: all,
        step_ms: args.step_ms,
        consumer_wait_ms: wait,
        keeps_up: wait <= 0.05 * args.step_ms,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "data loading: {} ({} images, batch {})",
            report.source, images, args.batch_size
        );
        println!("  1 thread:        {:>9.1} images/s", single);
        println!(
            "  {cores} threads:       {:>9.1} images/s ({:.2}x)",
            all,
            all / single
        );
        println!(
            "  at {:.0} ms/step: the step waited {:.1} ms per batch on average: {}",
            args.step_ms,
            wait,
            if report.keeps_up {
                "the loader keeps up"
            } else {
                "the loader is the bottleneck"
            }
        );
    }
    Ok(0)
}

fn pool(args: PoolArgs) -> Result<i32> {
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let selected = select_device(args.device.parse::<DeviceChoice>()?)?;
    let device = selected.device.clone();
    if !uses_fused_kernel(&device, burn::tensor::DType::F32) {
        bail!(
            "--device {}: {} has no fused concat-pool kernel (it runs on wgpu devices); use --device wgpu",
            args.device,
            selected.description
        );
    }
    let sync = |d: &Device| d.sync().expect("device sync");
    let mut results = Vec::new();
    for shape in [[64, 2208, 7, 7], [256, 1024, 7, 7]] {
        let [n, c, h, w] = shape;
        let x = Tensor::<4>::random(shape, burn::tensor::Distribution::Default, &device);
        let elems = (n * c * h * w) as f64;
        let pooled = (n * 2 * c) as f64;
        // Forward: read x, write [N, 2C].
        let fwd_bytes = 4.0 * (elems + pooled);
        let fwd = |fused: bool| {
            eprintln!(
                "  {shape:?} forward, {}…",
                if fused { "fused" } else { "reference" }
            );
            median_ms(args.warmup, args.runs, || {
                let out = if fused {
                    concat_pool(x.clone(), PoolOrder::AvgMax)
                } else {
                    concat_pool_reference(x.clone(), PoolOrder::AvgMax)
                };
                drop(out);
                sync(&device);
            })
        };
        let (f_ms, r_ms) = (fwd(true), fwd(false));
        results.push(PoolResult {
            shape,
            pass: "forward",
            fused_ms: f_ms,
            reference_ms: r_ms,
            speedup: r_ms / f_ms,
            gbps: fwd_bytes / (f_ms * 1e6),
        });
        // Forward + backward: forward as above, then read x and the [N, 2C] gradient and
        // write dx.
        let ad = device.clone().autodiff();
        let xa = x.clone().autodiff();
        let ones = Tensor::<2>::ones([n, 2 * c], &ad);
        let fb_bytes = fwd_bytes + 4.0 * (2.0 * elems + pooled);
        let fwd_bwd = |fused: bool| {
            eprintln!(
                "  {shape:?} forward+backward, {}…",
                if fused { "fused" } else { "reference" }
            );
            median_ms(args.warmup, args.runs, || {
                let xg = xa.clone().require_grad();
                let out = if fused {
                    concat_pool(xg.clone(), PoolOrder::AvgMax)
                } else {
                    concat_pool_reference(xg.clone(), PoolOrder::AvgMax)
                };
                let grads = (out * ones.clone()).sum().backward();
                let dx = xg.grad(&grads).expect("input gradient");
                drop(dx);
                sync(&device);
            })
        };
        let (f_ms, r_ms) = (fwd_bwd(true), fwd_bwd(false));
        results.push(PoolResult {
            shape,
            pass: "forward_backward",
            fused_ms: f_ms,
            reference_ms: r_ms,
            speedup: r_ms / f_ms,
            gbps: fb_bytes / (f_ms * 1e6),
        });
    }
    let report = PoolReport {
        device: selected.description,
        runs: args.runs,
        results,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "concat-pool on {} (median of {} runs after {} warm-up)",
            report.device, args.runs, args.warmup
        );
        println!(
            "{:<18} {:<17} {:>10} {:>13} {:>8} {:>10}",
            "shape", "pass", "fused ms", "reference ms", "speedup", "fused GB/s"
        );
        for r in &report.results {
            println!(
                "{:<18} {:<17} {:>10.3} {:>13.3} {:>7.2}x {:>10.2}",
                format!("{:?}", r.shape).replace(' ', ""),
                r.pass,
                r.fused_ms,
                r.reference_ms,
                r.speedup,
                r.gbps
            );
        }
    }
    Ok(0)
}

fn augment(args: AugmentArgs) -> Result<i32> {
    use petal_data::augment::{AugmentConfig, Pipeline, packed};
    use petal_data::{PackedBatch, SyntheticFlowers};
    use petal_kernels::augment::{augment_reference, augment_stock};

    if args.runs == 0 || args.batch_size == 0 || args.size == 0 {
        bail!("--runs, --batch-size and --size must be at least 1");
    }
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
    let flowers = SyntheticFlowers::new(10, 500, 0);
    let mut batch = PackedBatch::default();
    for i in 0..args.batch_size {
        let img =
            image::imageops::crop_imm(&flowers.sample(i as u64).0, 0, 62, 500, 375).to_image();
        batch.offsets.push(batch.data.len());
        batch.sizes.push((500, 375));
        batch.data.extend_from_slice(img.as_raw());
        batch.labels.push(0);
        batch.indices.push(i);
    }
    let config = AugmentConfig {
        size: args.size,
        ..AugmentConfig::default()
    };
    let pipe = Pipeline::train(config, 0);
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
    eprintln!("  stock Burn ops…");
    let stock_ms = median_ms(args.warmup, args.runs, || {
        epoch += 1;
        let params = pipe.params(&batch, epoch);
        drop(augment_stock(
            &packed(&batch),
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
            &packed(&batch),
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

fn rayon_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}
