//! `petal bench train-step`: steady-state images/s of the trainer's own step
//! ([`petal_trainer::train::train_step`]: augmentation, forward, loss, backward, AdamW).

use super::{cube_memory, flowers_500x375, peak_rss_bytes, rayon_threads};
use anyhow::{Result, bail};
use burn::prelude::*;
use clap::Args;
use petal_core::device::{DeviceChoice, select_device};
use petal_kernels::conv::shifted::Path;
use petal_kernels::dispatch::{DispatchCount, DispatchWatch};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

/// Arguments of `petal bench train-step`.
#[derive(Args, Debug)]
pub struct TrainStepArgs {
    /// Architecture: any torchvision preset petal builds (densenet121, resnet50,
    /// efficientnet_b0, convnext_tiny, mobilenet_v3_large, …: see `petal train --help`).
    #[arg(long, default_value = "densenet121")]
    arch: String,
    /// Images per step.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Training image side.
    #[arg(long, default_value_t = 224)]
    image_size: usize,
    /// f32; f16 (parameters, activations and optimizer in f16); or mixed (f16 passes, f32
    /// master weights and AdamW state, loss scaling). f16 and mixed: wgpu adapters only.
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
    /// Also time the step with Burn's own convolutions and BatchNorm instead of petal's
    /// kernels (the CPU kernels on Flex, the WGSL BatchNorm on wgpu), alternating step by
    /// step with the default; with `--breakdown`, its phases too; on wgpu, its dispatch count.
    #[arg(long)]
    compare_conv: bool,
    /// Also time the step run from the calling thread instead of on rayon's pool
    /// (`petal_kernels::pool::on_cpu_pool`), alternating step by step with the default.
    #[arg(long)]
    compare_pool: bool,
    /// Also time the step with every CPU convolution on im2col + gemm, without the shifted
    /// gemms that serve stride-1 kernels larger than 1×1 (`petal_kernels::conv::shifted`),
    /// alternating step by step with the default.
    #[arg(long)]
    compare_im2col: bool,
    /// Also run the timed steps again with petal's CPU kernels timing themselves, and
    /// report milliseconds per step by op kind and pass (convolutions by kernel / stride /
    /// groups, BatchNorm); the rest of the step is everything else (concatenation, pooling,
    /// element-wise ops, the head, autodiff bookkeeping, the optimizer). On wgpu: the device
    /// time of each kernel (every launch timed, so the kernels run one at a time), by kernel.
    #[arg(long)]
    profile_ops: bool,
    /// `device`: the batch's decoded images live on the device (as `petal train --cache
    /// device`), so a step uploads only its augmentation parameters and labels; `none`: the
    /// packed images are uploaded every step, as without a device cache.
    #[arg(long, default_value = "none", value_parser = ["none", "device"])]
    cache: String,
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
    /// `none` or `device` (`--cache`).
    cache: String,
    /// Bytes petal uploads from the host in one steady-state step (packed images unless
    /// `--cache device`, per-sample parameters, labels; `petal_kernels::transfer`): `null` on
    /// the CPU, where nothing crosses a bus. CubeCL's per-launch metadata is not counted.
    host_to_device_bytes_per_step: Option<u64>,
    /// `--cache device`: the images' bytes uploaded once, before the first step.
    #[serde(skip_serializing_if = "Option::is_none")]
    resident_bytes: Option<u64>,
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
    /// The median step with Burn's own convolutions and BatchNorm (`--compare-conv`).
    #[serde(skip_serializing_if = "Option::is_none")]
    step_ms_stock_conv: Option<f64>,
    /// The median step run from the calling thread, off rayon's pool (`--compare-pool`).
    #[serde(skip_serializing_if = "Option::is_none")]
    step_ms_off_pool: Option<f64>,
    /// The median step with every CPU convolution on im2col + gemm (`--compare-im2col`).
    #[serde(skip_serializing_if = "Option::is_none")]
    step_ms_im2col: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    breakdown_ms: Option<Breakdown>,
    /// `--breakdown` with Burn's unfused AdamW (`--compare-adamw`).
    #[serde(skip_serializing_if = "Option::is_none")]
    breakdown_ms_stock_adamw: Option<Breakdown>,
    /// `--breakdown` with Burn's own convolutions (`--compare-conv`).
    #[serde(skip_serializing_if = "Option::is_none")]
    breakdown_ms_stock_conv: Option<Breakdown>,
    /// GPU kernel launches of one steady-state step (CubeCL's launch observer, after the
    /// timed steps: autotune and compilation are done); `null` on Flex, which launches none.
    dispatches_per_step: Option<u64>,
    /// `dispatches_per_step` with Burn's own BatchNorm (`--compare-conv` on wgpu).
    #[serde(skip_serializing_if = "Option::is_none")]
    dispatches_per_step_stock_conv: Option<u64>,
    /// `dispatches_per_step_stock_conv` by kind.
    #[serde(skip_serializing_if = "Option::is_none")]
    dispatches_by_kind_stock_conv: Option<BTreeMap<&'static str, u64>>,
    /// `dispatches_per_step` by kind (`petal_kernels::dispatch::kernel_kind`).
    #[serde(skip_serializing_if = "Option::is_none")]
    dispatches_by_kind: Option<BTreeMap<&'static str, u64>>,
    /// A step with a device sync after each phase, its launches by phase and kind (the syncs
    /// end fused chains at the phase borders, so these can add up to a little more).
    #[serde(skip_serializing_if = "Option::is_none")]
    dispatches_by_phase: Option<BTreeMap<&'static str, BTreeMap<&'static str, u64>>>,
    /// `dispatches_per_step` by kernel name.
    #[serde(skip_serializing_if = "Option::is_none")]
    dispatches_by_kernel: Option<BTreeMap<String, u64>>,
    /// `--profile-ops`: time per step inside petal's CPU kernels, by op.
    #[serde(skip_serializing_if = "Option::is_none")]
    op_profile: Option<OpProfile>,
}

#[derive(Serialize)]
struct OpProfile {
    /// Mean step time of the profiled steps.
    step_ms: f64,
    /// Mean time per step inside petal's CPU kernels, all ops.
    kernels_ms: f64,
    ops: Vec<OpTime>,
}

#[derive(Serialize)]
struct OpTime {
    op: String,
    calls_per_step: f64,
    ms_per_step: f64,
}

#[derive(Serialize, Clone, Copy, Default)]
struct Breakdown {
    augment: f64,
    forward_loss: f64,
    backward: f64,
    optimizer: f64,
}

/// Runs `petal bench train-step`.
pub fn run(args: TrainStepArgs) -> Result<i32> {
    use burn::tensor::DType;
    use petal_core::{BackboneConfig, ClassifierConfig, HeadConfig};
    use petal_trainer::FineTuneConfig;
    use petal_trainer::amp::{LossScaler, train_step_mixed};
    use petal_trainer::optim::{build_optimizer_with, cast_model};
    use petal_trainer::train::{StepContext, StepEvent, train_step};

    use petal_trainer::config::{MAX_BATCH_SIZE, MAX_IMAGE_SIZE};
    crate::check_range("runs", args.runs, 1, 1_000_000)?;
    crate::check_range("batch", args.batch, 1, MAX_BATCH_SIZE)?;
    crate::check_range("classes", args.classes, 1, 1_000_000)?;
    let backbone = BackboneConfig::from_name(&args.arch)?;
    let stride = backbone.output_stride();
    crate::check_range("image-size", args.image_size, stride, MAX_IMAGE_SIZE)?;
    let selected = select_device(args.device.parse::<DeviceChoice>()?)?;
    if let Some(n) = &selected.notice {
        eprintln!("{n}");
    }
    let device = selected.device.clone();
    let mixed = args.precision == "mixed";
    // The model's dtype, and the step's input dtype (the f16 copy's under `mixed`).
    let (dtype, input_dtype) = match args.precision.as_str() {
        "f32" => (DType::F32, DType::F32),
        "f16" if selected.is_wgpu => (DType::F16, DType::F16),
        "mixed" if selected.is_wgpu => (DType::F32, DType::F16),
        "f16" | "mixed" => bail!(
            "--precision {}: {} has no f16 training path (use a wgpu device)",
            args.precision,
            selected.description
        ),
        other => bail!("--precision {other}: expected f32, f16 or mixed"),
    };
    let mut scaler = LossScaler::default();
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
    config.validate()?;
    let model_config = ClassifierConfig::new(backbone, HeadConfig::seed(), args.classes);
    let mut model = model_config.init(&train_device);
    if dtype != DType::F32 {
        model = cast_model(model, dtype);
    }
    // [petal's AdamW, Burn's unfused AdamW (only stepped with `--compare-adamw`)].
    let mut optims = [false, true].map(|stock| build_optimizer_with(&config, &model, stock));
    // Sources: synthetic flowers cut to 500×375 (as `bench augment`), labels i mod classes.
    let batch = flowers_500x375(args.batch, |i| i % args.classes);
    let (batch, resident_bytes) = if args.cache == "device" {
        let b = batch.into_resident(&train_device)?;
        let bytes = b.resident().map(|r| r.bytes() as u64);
        (b, bytes)
    } else {
        (batch, None)
    };
    let pipe = config.train_pipeline(0);
    let n = args.batch;
    let sync = |d: &Device| d.sync().expect("device sync");
    let mut peak_reserved = 0u64;
    let mut peak_in_use = 0u64;
    // One step. `Mode::Step`: one host read at the end (loss and hits, as the trainer
    // does now); `Mode::OldSyncs`: the trainer's former reads (the loss before backward, the
    // logits after the step); `Mode::Phases`: a device sync after each phase, timed;
    // `Mode::StockAdamW` / `Mode::PhasesStockAdamW`: `Step` / `Phases` with Burn's AdamW;
    // `Mode::StockConv` / `Mode::PhasesStockConv`: with Burn's convolutions.
    #[derive(Clone, Copy, PartialEq, Eq, Hash)]
    enum Mode {
        Step,
        OldSyncs,
        StockAdamW,
        StockConv,
        OffPool,
        Im2col,
        Phases,
        PhasesStockAdamW,
        PhasesStockConv,
    }
    let ctx = StepContext {
        pipeline: &pipe,
        dtype: input_dtype,
        device: &train_device,
        label_smoothing: 0.0,
        class_weights: None,
        grad_clip: None,
    };
    let mut epoch = 0u64;
    // While dispatches are counted by phase: the watch, and a snapshot after each phase.
    let phase_watch: Mutex<Option<(DispatchWatch, Vec<DispatchCount>)>> = Mutex::new(None);
    let mut run = |model: petal_core::Classifier, mode: Mode| {
        let stock = matches!(mode, Mode::StockAdamW | Mode::PhasesStockAdamW);
        let phases = matches!(
            mode,
            Mode::Phases | Mode::PhasesStockAdamW | Mode::PhasesStockConv
        );
        petal_kernels::conv::set_cpu_kernels(!matches!(
            mode,
            Mode::StockConv | Mode::PhasesStockConv
        ));
        petal_kernels::batch_norm::set_gpu_kernels(!matches!(
            mode,
            Mode::StockConv | Mode::PhasesStockConv
        ));
        petal_kernels::pool::set_on_pool(mode != Mode::OffPool);
        petal_kernels::conv::shifted::set_path(if mode == Mode::Im2col {
            Path::Im2col
        } else {
            Path::Auto
        });
        epoch += 1;
        let mut b = Breakdown::default();
        let mut t = Instant::now();
        let mut lap = |b: &mut f64| {
            if phases {
                sync(&device);
                *b = t.elapsed().as_secs_f64() * 1e3;
                if let Some((watch, snaps)) = phase_watch.lock().expect("watch").as_mut() {
                    snaps.push(watch.snapshot());
                }
                t = Instant::now();
            }
        };
        // The trainer's step, observed between its phases.
        let mut step = |model: petal_core::Classifier,
                        optim: &mut burn::optim::ModuleOptimizer,
                        observe: &mut (dyn FnMut(StepEvent) + Send)| {
            if mixed {
                train_step_mixed(
                    model,
                    &batch,
                    epoch,
                    optim,
                    config.lr,
                    &ctx,
                    &mut scaler,
                    observe,
                )
            } else {
                train_step(model, &batch, epoch, optim, config.lr, &ctx, observe)
            }
        };
        let (model, metrics) = step(
            model,
            &mut optims[usize::from(stock)],
            &mut |event| match event {
                StepEvent::Augmented => lap(&mut b.augment),
                StepEvent::Forward { loss, .. } => {
                    if mode == Mode::OldSyncs {
                        drop(loss.clone().into_data());
                    }
                    lap(&mut b.forward_loss);
                }
                StepEvent::Backward => {
                    lap(&mut b.backward);
                    if let Some((r, u)) = cube_memory(&device) {
                        peak_reserved = peak_reserved.max(r);
                        peak_in_use = peak_in_use.max(u);
                    }
                }
                StepEvent::Stepped { logits } => {
                    if mode == Mode::OldSyncs {
                        drop(logits.clone().inner().into_data());
                    }
                }
            },
        );
        if mode != Mode::OldSyncs {
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
    if args.compare_conv {
        modes.push(Mode::StockConv);
    }
    if args.compare_pool {
        modes.push(Mode::OffPool);
    }
    if args.compare_im2col {
        modes.push(Mode::Im2col);
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
    let stock_conv_ms = times.remove(&Mode::StockConv);
    let off_pool_ms = times.remove(&Mode::OffPool);
    let im2col_ms = times.remove(&Mode::Im2col);
    let mut breakdowns = Vec::new();
    if args.breakdown {
        let mut phase_modes = vec![Mode::Phases];
        if args.compare_adamw {
            phase_modes.push(Mode::PhasesStockAdamW);
        }
        if args.compare_conv {
            phase_modes.push(Mode::PhasesStockConv);
        }
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
    let breakdown_stock = if args.compare_adamw {
        breakdowns.next()
    } else {
        None
    };
    let breakdown_stock_conv = breakdowns.next();
    petal_kernels::conv::set_cpu_kernels(true);
    petal_kernels::batch_norm::set_gpu_kernels(true);
    petal_kernels::pool::set_on_pool(true);
    petal_kernels::conv::shifted::set_path(Path::Auto);
    let mut dispatches = None;
    let mut dispatches_stock = None;
    let mut dispatches_by_phase = None;
    let mut uploaded = None;
    if selected.is_wgpu {
        eprintln!("  dispatch count: 2 steps…");
        // The same step counts its launches and its uploads.
        let watch = DispatchWatch::start();
        let before = petal_kernels::transfer::uploaded_bytes();
        let (m, _) = run(model.take().expect("model"), Mode::Step);
        model = Some(m);
        uploaded = Some(petal_kernels::transfer::uploaded_bytes() - before);
        sync(&device);
        dispatches = Some(watch.snapshot());
        drop(watch);
        if args.compare_conv {
            let watch = DispatchWatch::start();
            let (m, _) = run(model.take().expect("model"), Mode::StockConv);
            model = Some(m);
            sync(&device);
            dispatches_stock = Some(watch.snapshot());
        }
        *phase_watch.lock().expect("watch") = Some((DispatchWatch::start(), Vec::new()));
        let (m, _) = run(model.take().expect("model"), Mode::Phases);
        model = Some(m);
        let (_, snaps) = phase_watch.lock().expect("watch").take().expect("watch");
        let mut by_phase = BTreeMap::new();
        let mut earlier = DispatchCount::default();
        let names = ["1_augment", "2_forward_loss", "3_backward", "4_optimizer"];
        for (name, snap) in names.into_iter().zip(snaps) {
            by_phase.insert(name, snap.since(&earlier).by_kind());
            earlier = snap;
        }
        dispatches_by_phase = Some(by_phase);
    }
    let op_profile = if args.profile_ops {
        // On wgpu each launch is timed on the device (they run one at a time), by kernel;
        // on Flex petal's CPU kernels time themselves, by op kind and pass.
        let watch = if selected.is_wgpu {
            eprintln!("  kernel profile: {} steps…", args.runs);
            Some(DispatchWatch::start_timed())
        } else {
            eprintln!("  op profile: {} steps…", args.runs);
            petal_kernels::profile::start();
            None
        };
        let t = Instant::now();
        for _ in 0..args.runs {
            let (m, _) = run(model.take().expect("model"), Mode::Step);
            model = Some(m);
        }
        sync(&device);
        let step_ms = t.elapsed().as_secs_f64() * 1e3 / args.runs as f64;
        // (op, calls, ms) over the profiled steps.
        let totals: Vec<(String, u64, f64)> = match watch {
            Some(watch) => {
                let count = watch.snapshot();
                count
                    .ms_by_kernel
                    .iter()
                    .map(|(name, &ms)| {
                        (
                            name.clone(),
                            count.by_kernel.get(name).copied().unwrap_or(0),
                            ms,
                        )
                    })
                    .collect()
            }
            None => petal_kernels::profile::stop()
                .into_iter()
                .map(|(op, calls, t)| (op, calls, t.as_secs_f64() * 1e3))
                .collect(),
        };
        let per_step = args.runs as f64;
        let mut ops: Vec<OpTime> = totals
            .into_iter()
            .map(|(op, calls, ms)| OpTime {
                op,
                calls_per_step: calls as f64 / per_step,
                ms_per_step: ms / per_step,
            })
            .collect();
        ops.sort_by(|a, b| b.ms_per_step.total_cmp(&a.ms_per_step));
        Some(OpProfile {
            step_ms,
            kernels_ms: ops.iter().map(|o| o.ms_per_step).sum(),
            ops,
        })
    } else {
        None
    };
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
        source: format!(
            "synthetic flowers 500×375 (RGB8), augmented on the device{}",
            if resident_bytes.is_some() {
                " from a device-resident copy"
            } else {
                ""
            }
        ),
        runs: args.runs,
        warmup: args.warmup,
        cpu_threads: rayon_threads(),
        ips: n as f64 / (ms / 1e3),
        step_ms: ms,
        cache: args.cache.clone(),
        host_to_device_bytes_per_step: uploaded,
        resident_bytes,
        peak_mem_bytes: peak,
        peak_mem_source: source,
        peak_in_use_bytes: in_use,
        step_ms_old_syncs: old_ms,
        step_ms_stock_adamw: stock_adamw_ms,
        step_ms_stock_conv: stock_conv_ms,
        step_ms_off_pool: off_pool_ms,
        step_ms_im2col: im2col_ms,
        breakdown_ms: breakdown,
        breakdown_ms_stock_adamw: breakdown_stock,
        breakdown_ms_stock_conv: breakdown_stock_conv,
        dispatches_per_step: dispatches.as_ref().map(DispatchCount::total),
        dispatches_per_step_stock_conv: dispatches_stock.as_ref().map(DispatchCount::total),
        dispatches_by_kind_stock_conv: dispatches_stock.as_ref().map(DispatchCount::by_kind),
        dispatches_by_kind: dispatches.as_ref().map(DispatchCount::by_kind),
        dispatches_by_phase,
        dispatches_by_kernel: dispatches.map(|d| d.by_kernel),
        op_profile,
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
        if let Some(b) = report.host_to_device_bytes_per_step {
            println!(
                "  host→device per step: {b} bytes (--cache {}{})",
                args.cache,
                resident_bytes.map_or(String::new(), |r| format!(
                    "; {r} bytes of images uploaded once"
                ))
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
        if let Some(o) = stock_conv_ms {
            println!(
                "  with Burn's convolutions and BatchNorm: {o:.1} ms ({:.3}x)",
                o / ms
            );
        }
        if let Some(o) = off_pool_ms {
            println!("  off rayon's pool: {o:.1} ms ({:.3}x)", o / ms);
        }
        if let Some(o) = im2col_ms {
            println!(
                "  every convolution on im2col + gemm: {o:.1} ms ({:.3}x)",
                o / ms
            );
        }
        for (what, b) in [
            ("", breakdown),
            (" with Burn's AdamW", breakdown_stock),
            (" with Burn's convolutions", breakdown_stock_conv),
        ] {
            if let Some(b) = b {
                println!(
                    "  phases (synced){what}: augment {:.1} ms, forward+loss {:.1} ms, backward {:.1} ms, optimizer {:.1} ms",
                    b.augment, b.forward_loss, b.backward, b.optimizer
                );
            }
        }
        if let (Some(n), Some(kinds)) = (report.dispatches_per_step, &report.dispatches_by_kind) {
            let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{k} {n}")).collect();
            println!("  GPU dispatches per step: {n} ({})", kinds.join(", "));
        }
        if let Some(n) = report.dispatches_per_step_stock_conv {
            println!("  GPU dispatches per step with Burn's BatchNorm: {n}");
        }
        if let Some(p) = &report.op_profile {
            println!(
                "  op profile (ms per step of {:.1} ms; {:.1} ms in the profiled kernels, {:.1} ms elsewhere):",
                p.step_ms,
                p.kernels_ms,
                p.step_ms - p.kernels_ms
            );
            for o in &p.ops {
                println!(
                    "    {:<34} {:>8.2} ms  {:>6.1} calls",
                    o.op, o.ms_per_step, o.calls_per_step
                );
            }
        }
    }
    Ok(0)
}
