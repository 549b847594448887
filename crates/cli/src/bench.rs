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
    /// Steady-state images/s of a full fine-tune step (augmentation, forward, loss,
    /// backward, AdamW step).
    TrainStep(TrainStepArgs),
}

/// Arguments of `petal bench train-step`.
#[derive(Args, Debug)]
pub struct TrainStepArgs {
    /// Architecture: densenet121, densenet161, densenet169, densenet201, mobilenet_v2.
    #[arg(long, default_value = "densenet121")]
    arch: String,
    /// Images per step.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Training image side.
    #[arg(long, default_value_t = 224)]
    image_size: usize,
    /// f32, or f16 (parameters, activations and optimizer in f16; wgpu adapters only).
    #[arg(long, default_value = "f32")]
    precision: String,
    /// Device: cpu (Flex), wgpu, vulkan, metal, dx12 or auto.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Classes of the head.
    #[arg(long, default_value_t = 102)]
    classes: usize,
    /// Timed steps (the median is reported).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Untimed warm-up steps (autotune, shader compilation, pool growth).
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Also time each phase (augment, forward+loss, backward, optimizer) with a device sync
    /// after each; reported as extra fields (the synced phases add up to more than a step).
    #[arg(long)]
    breakdown: bool,
    /// Also time the step with the trainer's former host reads (the loss read before the
    /// backward pass, the logits read after the step) for a before/after comparison.
    #[arg(long)]
    compare_syncs: bool,
    /// Also time the step with Burn's unfused AdamW instead of petal's (fused on the CPU
    /// backend), alternating step by step with the default; with `--breakdown`, its phases too.
    #[arg(long)]
    compare_adamw: bool,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct TrainStepReport {
    engine: &'static str,
    arch: String,
    device: String,
    precision: String,
    batch: usize,
    image_size: usize,
    classes: usize,
    source: String,
    runs: usize,
    warmup: usize,
    cpu_threads: usize,
    /// Images per second of the median step.
    ips: f64,
    /// Median step time.
    step_ms: f64,
    /// Peak memory (bytes), `null` where nothing reports it.
    peak_mem_bytes: Option<u64>,
    /// What `peak_mem_bytes` measures.
    peak_mem_source: String,
    /// Most bytes in live allocations seen at the sampled points (after backward), wgpu only.
    peak_in_use_bytes: Option<u64>,
    /// The median step with the trainer's former per-step host reads (`--compare-syncs`).
    #[serde(skip_serializing_if = "Option::is_none")]
    step_ms_old_syncs: Option<f64>,
    /// The median step with Burn's unfused AdamW (`--compare-adamw`).
    #[serde(skip_serializing_if = "Option::is_none")]
    step_ms_stock_adamw: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    breakdown_ms: Option<Breakdown>,
    /// `--breakdown` with Burn's unfused AdamW (`--compare-adamw`).
    #[serde(skip_serializing_if = "Option::is_none")]
    breakdown_ms_stock_adamw: Option<Breakdown>,
}

#[derive(Serialize, Clone, Copy, Default)]
struct Breakdown {
    augment: f64,
    forward_loss: f64,
    backward: f64,
    optimizer: f64,
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
        BenchCommand::TrainStep(args) => train_step(args),
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
    let batch = flowers_500x375(args.batch_size, |_| 0);
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

/// Memory the device's CubeCL client reports: (bytes reserved, bytes in use); `None` off
/// CubeCL (Flex).
fn cube_memory(device: &Device) -> Option<(u64, u64)> {
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
fn peak_rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn train_step(args: TrainStepArgs) -> Result<i32> {
    use burn::optim::GradientsParams;
    use burn::tensor::DType;
    use petal_core::{BackboneConfig, ClassifierConfig, HeadConfig};
    use petal_data::augment::Pipeline;
    use petal_trainer::FineTuneConfig;
    use petal_trainer::optim::{build_optimizer_with, cast_model};
    use petal_trainer::train::{cross_entropy_loss, step_metrics};

    if args.runs == 0 || args.batch == 0 || args.image_size == 0 || args.classes == 0 {
        bail!("--runs, --batch, --image-size and --classes must be at least 1");
    }
    let selected = select_device(args.device.parse::<DeviceChoice>()?)?;
    if let Some(n) = &selected.notice {
        eprintln!("{n}");
    }
    let device = selected.device.clone();
    let dtype = match args.precision.as_str() {
        "f32" => DType::F32,
        "f16" if selected.is_wgpu => DType::F16,
        "f16" => bail!(
            "--precision f16: {} has no f16 training path (use a wgpu device)",
            selected.description
        ),
        other => bail!("--precision {other}: expected f32 or f16"),
    };
    let train_device = device.clone().autodiff();
    let config = FineTuneConfig {
        arch: args.arch.clone(),
        augment: petal_data::augment::AugmentConfig {
            size: args.image_size,
            ..Default::default()
        },
        batch_size: args.batch,
        ..FineTuneConfig::default()
    };
    let model_config = ClassifierConfig::new(
        BackboneConfig::from_name(&args.arch)?,
        HeadConfig::seed(),
        args.classes,
    );
    let mut model = model_config.init(&train_device);
    if dtype != DType::F32 {
        model = cast_model(model, dtype);
    }
    // [petal's AdamW, Burn's unfused AdamW (only stepped with `--compare-adamw`)].
    let mut optims = [false, true].map(|stock| build_optimizer_with(&config, &model, stock));
    // Sources: synthetic flowers cut to 500×375 (as `bench augment`), labels i mod classes.
    let batch = flowers_500x375(args.batch, |i| i % args.classes);
    let pipe = Pipeline::train(config.augment_config(), config.seed);
    let labels: Vec<i64> = batch.labels.iter().map(|&l| l as i64).collect();
    let n = args.batch;
    let sync = |d: &Device| d.sync().expect("device sync");
    let mut peak_reserved = 0u64;
    let mut peak_in_use = 0u64;
    // One step. `Mode::Step`: one host read at the end (loss and hits, as the trainer
    // does now); `Mode::OldSyncs`: the trainer's former reads (the loss before backward, the
    // logits after the step); `Mode::Phases`: a device sync after each phase, timed;
    // `Mode::StockAdamW` / `Mode::PhasesStockAdamW`: `Step` / `Phases` with Burn's AdamW.
    #[derive(Clone, Copy, PartialEq, Eq, Hash)]
    enum Mode {
        Step,
        OldSyncs,
        StockAdamW,
        Phases,
        PhasesStockAdamW,
    }
    let mut epoch = 0u64;
    let mut run = |model: petal_core::Classifier, mode: Mode| {
        let stock = matches!(mode, Mode::StockAdamW | Mode::PhasesStockAdamW);
        let phases = matches!(mode, Mode::Phases | Mode::PhasesStockAdamW);
        epoch += 1;
        let mut b = Breakdown::default();
        let mut t = Instant::now();
        let mut lap = |b: &mut f64| {
            if phases {
                sync(&device);
                *b = t.elapsed().as_secs_f64() * 1e3;
                t = Instant::now();
            }
        };
        let x = pipe.apply_as(&batch, epoch, dtype, &train_device);
        let y = Tensor::<1, Int>::from_data(TensorData::new(labels.clone(), [n]), &train_device);
        lap(&mut b.augment);
        let logits = model.forward(x);
        let loss = cross_entropy_loss(logits.clone(), y.clone(), 0.0);
        let metrics = step_metrics(&logits, &y, &loss);
        if mode == Mode::OldSyncs {
            drop(loss.clone().into_data());
        }
        lap(&mut b.forward_loss);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        lap(&mut b.backward);
        if let Some((r, u)) = cube_memory(&device) {
            peak_reserved = peak_reserved.max(r);
            peak_in_use = peak_in_use.max(u);
        }
        let model = optims[usize::from(stock)].step(config.lr, model, grads);
        if mode == Mode::OldSyncs {
            drop(logits.inner().into_data());
        } else {
            // The trainer's end-of-step read: loss and hits in one small tensor (syncs the
            // device).
            drop(metrics.into_data());
        }
        lap(&mut b.optimizer);
        (model, b)
    };
    // Warm-up in every measured mode first; then, with `--compare-syncs`, the two modes
    // alternate step by step, so late autotuning or shader compilation (and machine load)
    // hits both alike.
    let mut model = Some(model);
    let mut modes = vec![Mode::Step];
    if args.compare_syncs {
        modes.push(Mode::OldSyncs);
    }
    if args.compare_adamw {
        modes.push(Mode::StockAdamW);
    }
    eprintln!(
        "  train step: {} warm-up + {} timed steps per mode…",
        args.warmup, args.runs
    );
    for &mode in &modes {
        for _ in 0..args.warmup {
            let (m, _) = run(model.take().expect("model"), mode);
            model = Some(m);
        }
    }
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    for _ in 0..args.runs {
        for (i, &mode) in modes.iter().enumerate() {
            let t = Instant::now();
            let (m, _) = run(model.take().expect("model"), mode);
            model = Some(m);
            times[i].push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    let median = |mut t: Vec<f64>| {
        t.sort_by(f64::total_cmp);
        t[t.len() / 2]
    };
    let mut times = modes
        .iter()
        .copied()
        .zip(times.into_iter().map(median))
        .collect::<std::collections::HashMap<_, _>>();
    let ms = times.remove(&Mode::Step).expect("the step");
    let old_ms = times.remove(&Mode::OldSyncs);
    let stock_adamw_ms = times.remove(&Mode::StockAdamW);
    let mut breakdowns = Vec::new();
    if args.breakdown {
        let phase_modes: &[Mode] = if args.compare_adamw {
            &[Mode::Phases, Mode::PhasesStockAdamW]
        } else {
            &[Mode::Phases]
        };
        eprintln!("  phases (synced): {} steps per mode…", args.runs);
        let mut all = vec![Vec::<Breakdown>::new(); phase_modes.len()];
        for _ in 0..args.runs {
            for (i, &mode) in phase_modes.iter().enumerate() {
                let (m, b) = run(model.take().expect("model"), mode);
                model = Some(m);
                all[i].push(b);
            }
        }
        let med = |f: fn(&Breakdown) -> f64, all: &mut Vec<Breakdown>| {
            all.sort_by(|a, b| f(a).total_cmp(&f(b)));
            f(&all[all.len() / 2])
        };
        for mut all in all {
            breakdowns.push(Breakdown {
                augment: med(|b| b.augment, &mut all),
                forward_loss: med(|b| b.forward_loss, &mut all),
                backward: med(|b| b.backward, &mut all),
                optimizer: med(|b| b.optimizer, &mut all),
            });
        }
    }
    let mut breakdowns = breakdowns.into_iter();
    let breakdown = breakdowns.next();
    let breakdown_stock = breakdowns.next();
    let (peak, source, in_use) = if selected.is_wgpu {
        (
            Some(peak_reserved),
            "CubeCL memory report: most bytes reserved by the device's memory pools (sampled after backward)".to_string(),
            Some(peak_in_use),
        )
    } else {
        (
            peak_rss_bytes(),
            "process peak RSS (VmHWM): Flex keeps tensors in host memory".to_string(),
            None,
        )
    };
    let report = TrainStepReport {
        engine: "petal",
        arch: args.arch.clone(),
        device: selected.description.clone(),
        precision: args.precision.clone(),
        batch: n,
        image_size: args.image_size,
        classes: args.classes,
        source: "synthetic flowers 500×375 (RGB8), augmented on the device".to_string(),
        runs: args.runs,
        warmup: args.warmup,
        cpu_threads: rayon_threads(),
        ips: n as f64 / (ms / 1e3),
        step_ms: ms,
        peak_mem_bytes: peak,
        peak_mem_source: source,
        peak_in_use_bytes: in_use,
        step_ms_old_syncs: old_ms,
        step_ms_stock_adamw: stock_adamw_ms,
        breakdown_ms: breakdown,
        breakdown_ms_stock_adamw: breakdown_stock,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "train step: {} batch {} at {}² ({}) on {} (median of {} after {} warm-up)",
            report.arch,
            n,
            args.image_size,
            report.precision,
            report.device,
            args.runs,
            args.warmup
        );
        println!("  step: {:>10.1} ms  {:>9.2} images/s", ms, report.ips);
        if let Some(p) = peak {
            println!(
                "  peak memory: {:.1} MiB ({})",
                p as f64 / 1048576.0,
                report.peak_mem_source
            );
        }
        if let Some(o) = old_ms {
            println!(
                "  with the former trainer syncs: {o:.1} ms ({:.3}x)",
                o / ms
            );
        }
        if let Some(o) = stock_adamw_ms {
            println!("  with Burn's unfused AdamW: {o:.1} ms ({:.3}x)", o / ms);
        }
        for (what, b) in [("", breakdown), (" with Burn's AdamW", breakdown_stock)] {
            if let Some(b) = b {
                println!(
                    "  phases (synced){what}: augment {:.1} ms, forward+loss {:.1} ms, backward {:.1} ms, optimizer {:.1} ms",
                    b.augment, b.forward_loss, b.backward, b.optimizer
                );
            }
        }
    }
    Ok(0)
}

/// `n` synthetic flowers cut to 500×375 (the benchmarks' source shape), packed, with
/// `label(i)` as labels.
fn flowers_500x375(n: usize, label: impl Fn(usize) -> usize) -> petal_data::PackedBatch {
    let flowers = petal_data::SyntheticFlowers::new(10, 500, 0);
    let mut batch = petal_data::PackedBatch::default();
    for i in 0..n {
        let img =
            image::imageops::crop_imm(&flowers.sample(i as u64).0, 0, 62, 500, 375).to_image();
        batch.push(&img, label(i), i);
    }
    batch
}
