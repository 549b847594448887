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
