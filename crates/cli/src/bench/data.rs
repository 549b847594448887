//! `petal bench data`: decoded images/s on one thread vs all cores, and whether the loader
//! keeps up with a training step.

use anyhow::{Result, bail};
use clap::Args;

use serde::Serialize;
use std::time::Instant;

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

/// Runs `petal bench data`.
pub fn run(args: DataArgs) -> Result<i32> {
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
