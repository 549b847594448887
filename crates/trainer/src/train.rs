//! The fine-tune loop: frozen phase, unfreezing (all at once or gradually), discriminative
//! learning rates, AdamW, per-step schedules, validation, checkpoints, resume, early
//! stopping, Ctrl-C and NaN handling.

use crate::amp::{self, LossScaler};
use crate::checkpoint::{Checkpoint, TrainState, model_bytes};
use crate::config::{Cache, FineTuneConfig, Precision, Unfreeze};
use crate::data::{self, RunData};
use crate::ema::ModelEma;
use crate::error::TrainError;
use crate::metrics::{
    EpochRecord, Tally, cross_entropy, read_metrics, write_atomic, write_metrics,
};
use crate::optim::build_optimizer;
use crate::optim::{cast_model, clip_grad_norm, initialize_now, model_dtype, set_trainable};
use crate::plot;
use crate::schedule::{PhaseCurve, group_factor, phase_scheduler};
use crate::tensorboard::EventWriter;
use burn::module::{Module, ParamId};
use burn::optim::lr_scheduler::LrSchedulerRecord;
use burn::optim::lr_scheduler::module_lr_scheduler::{ModuleLearningRate, ModuleLrScheduler};
use burn::optim::{GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Bytes, DType, Device, Float, Int, Tensor, TensorData};
use indicatif::{ProgressBar, ProgressStyle};
use petal_core::device::{DeviceChoice, select_device};
use petal_core::weights::StateDict;
use petal_core::{Classifier, ClassifierConfig};
use petal_data::augment::Pipeline;
use petal_data::folder::{ScanWarning, SkipCounts, Skipped};
use petal_data::mix::{Mix, mixed_targets};
use petal_data::{EvalTransform, Loader, PackedBatch};
use petal_kernels::transfer::upload;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// File names inside a run directory.
pub mod files {
    /// The full configuration.
    pub const CONFIG: &str = "config.json";
    /// The class list (folders and names, label order).
    pub const CLASSES: &str = "classes.json";
    /// The last checkpoint.
    pub const LAST: &str = "last.ckpt";
    /// The checkpoint with the best validation top-1.
    pub const BEST: &str = "best.ckpt";
    /// Training curves.
    pub const CURVES: &str = "curves.png";
    /// TensorBoard event files (`--tensorboard`).
    pub const TENSORBOARD: &str = "tb";
}

/// How a run is driven (not part of the saved configuration).
#[derive(Clone, Debug)]
pub struct TrainOptions {
    /// Run directory.
    pub out: PathBuf,
    /// Continue from `out/last.ckpt`.
    pub resume: bool,
    /// Set (e.g. by Ctrl-C) to stop after the current step, writing `last`.
    pub stop: Arc<AtomicBool>,
    /// Stop (as if interrupted) once this many steps are done — for tests of `--resume`.
    pub stop_at_step: Option<u64>,
    /// Print per-epoch lines and progress bars.
    pub verbose: bool,
}

impl TrainOptions {
    /// Options for a fresh run in `out`.
    pub fn new(out: impl Into<PathBuf>) -> Self {
        Self {
            out: out.into(),
            resume: false,
            stop: Arc::default(),
            stop_at_step: None,
            verbose: true,
        }
    }
}

impl TrainOptions {
    /// Makes Ctrl-C stop the run: the first press finishes the current step and writes
    /// `last.ckpt` (the run ends [`StopReason::Interrupted`]); a second one exits at once
    /// (code 130). For a binary's `main`; a process has one handler, so only the first call
    /// takes effect.
    pub fn stop_on_ctrl_c(&self) {
        let stop = self.stop.clone();
        let _ = ctrlc::set_handler(move || {
            if stop.swap(true, Ordering::SeqCst) {
                eprintln!("\ninterrupted twice: exiting without saving");
                std::process::exit(130);
            }
            eprintln!("\nCtrl-C: finishing the current step and writing last.ckpt …");
        });
    }
}

/// On the CPU, makes Burn's *default* device Flex too: loading optimizer state (a resumed
/// run) materialises it on `Device::default()`, which would otherwise start a wgpu runtime
/// — and fail on a machine without any Vulkan / Metal / DX12 driver. Sets `BURN_DEVICE`
/// unless the user did.
///
/// # Safety
/// It writes the process environment: call it from `main` before any thread is started
/// (decoding, [`TrainOptions::stop_on_ctrl_c`]), so that nothing reads the environment
/// concurrently.
pub unsafe fn pin_default_device(config: &FineTuneConfig) -> Result<(), TrainError> {
    let selected = select_device(config.device.parse::<DeviceChoice>()?)?;
    if !selected.is_wgpu && std::env::var_os("BURN_DEVICE").is_none() {
        // SAFETY: the caller guarantees no other thread is running.
        unsafe { std::env::set_var("BURN_DEVICE", "flex") };
    }
    Ok(())
}

/// Why a run ended.
#[derive(Clone, Debug, PartialEq)]
pub enum StopReason {
    /// All epochs done.
    Finished,
    /// `patience` epochs without a better validation top-1.
    EarlyStopped {
        /// The last epoch run (1-based).
        epoch: usize,
    },
    /// Interrupted (Ctrl-C or `stop_at_step`); `last` holds the state.
    Interrupted {
        /// Steps done.
        step: u64,
    },
}

/// What a run produced.
#[derive(Clone, Debug)]
pub struct TrainOutcome {
    /// Per-epoch metrics (of the whole run, resumed parts included).
    pub records: Vec<EpochRecord>,
    /// Best validation top-1 and its epoch.
    pub best: Option<(f64, usize)>,
    /// Why it ended.
    pub stop: StopReason,
    /// The run directory.
    pub run_dir: PathBuf,
    /// Images skipped as unreadable (path, reason), each once: at the scan and at batch
    /// time.
    pub skipped: Vec<(String, String)>,
    /// Class folders left out (path, reason): empty training classes, unknown classes in
    /// `valid/`.
    pub classes_left_out: Vec<(String, String)>,
    /// Images actually used for training and validation.
    pub images_used: (usize, usize),
}

fn mix(a: u64, b: u64) -> u64 {
    // splitmix64 of a combination: distinct, well-spread device seeds per step.
    let mut z = a ^ b.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `train class counts: …` — every class up to 20, else the extremes and the imbalance —
/// and what `--sampler` / `--class-weights` do about it.
pub fn class_count_summary(
    counts: &[usize],
    names: &[String],
    sampler: crate::config::Sampler,
    weighted: bool,
) -> String {
    let name = |i: usize| names.get(i).cloned().unwrap_or_else(|| i.to_string());
    let mut s = String::from("train class counts: ");
    if counts.len() <= 20 {
        let parts: Vec<String> = counts
            .iter()
            .enumerate()
            .map(|(i, n)| format!("{} {n}", name(i)))
            .collect();
        s.push_str(&parts.join(", "));
    }
    let (lo, hi) = (
        counts.iter().enumerate().min_by_key(|p| *p.1),
        counts.iter().enumerate().max_by_key(|p| *p.1),
    );
    if let (Some((li, &l)), Some((hi_i, &h))) = (lo, hi) {
        if counts.len() > 20 {
            s.push_str(&format!(
                "{} classes, min {l} ({}), max {h} ({})",
                counts.len(),
                name(li),
                name(hi_i)
            ));
        }
        if l > 0 {
            s.push_str(&format!("; imbalance {:.1}×", h as f64 / l as f64));
        }
    }
    if sampler == crate::config::Sampler::Balanced {
        s.push_str("; balanced sampling");
    }
    if weighted {
        s.push_str("; weighted loss");
    }
    s
}

/// The cross-entropy of a batch with label smoothing `eps` (PyTorch's semantics), mean
/// over the batch.
///
/// # Shapes
/// - `logits`: `[N, K]`, `labels`: `[N]` → `[1]`
pub fn cross_entropy_loss(logits: Tensor<2>, labels: Tensor<1, Int>, eps: f64) -> Tensor<1> {
    weighted_cross_entropy_loss(logits, labels, eps, None)
}

/// [`cross_entropy_loss`] with per-class `weights` (PyTorch's `CrossEntropyLoss(weight=w,
/// label_smoothing=eps)`, mean reduction): `[(1 − eps) · Σᵢ w_yᵢ · (−log pᵢ,yᵢ) + eps / K ·
/// Σᵢ Σ_c w_c · (−log pᵢ,c)] / Σᵢ w_yᵢ`.
///
/// # Shapes
/// - `logits`: `[N, K]`, `labels`: `[N]`, `weights`: `[K]` → `[1]`
pub fn weighted_cross_entropy_loss(
    logits: Tensor<2>,
    labels: Tensor<1, Int>,
    eps: f64,
    weights: Option<&Tensor<1>>,
) -> Tensor<1> {
    let [n, k] = logits.dims();
    let logp = log_softmax(logits, 1);
    let picked = logp.clone().gather(1, labels.clone().reshape([n, 1])).neg();
    let Some(w) = weights else {
        let nll = picked.mean();
        if eps == 0.0 {
            return nll;
        }
        let uniform = logp.sum().neg().div_scalar((n * k) as f64);
        return nll.mul_scalar(1.0 - eps) + uniform.mul_scalar(eps);
    };
    let w = w.clone().cast(logp.dtype());
    let wy = w.clone().select(0, labels);
    let denom = wy.clone().sum();
    let nll = (picked.reshape([n]) * wy).sum();
    if eps == 0.0 {
        return nll / denom;
    }
    let smooth = (logp * w.reshape([1, k])).sum().neg();
    (nll.mul_scalar(1.0 - eps) + smooth.mul_scalar(eps / k as f64)) / denom
}

/// timm's `SoftTargetCrossEntropy`: `mean_i(−Σ_c t_ic · log softmax(z)_ic)` for soft targets
/// (MixUp / CutMix: [`petal_data::mix::mixed_targets`], label smoothing already inside).
///
/// # Shapes
/// - `logits`: `[N, K]`, `targets`: `[N, K]` (rows summing to 1) → `[1]`
pub fn soft_target_cross_entropy(logits: Tensor<2>, targets: Tensor<2>) -> Tensor<1> {
    let [n, _] = logits.dims();
    let logp = log_softmax(logits, 1);
    let t = targets.cast(logp.dtype());
    (logp * t).sum().neg().div_scalar(n as f64)
}

/// [`soft_target_cross_entropy`] with per-class `weights` and the batch's hard `labels`:
/// `−Σᵢ Σ_c w_c·t_ic·log p_ic / Σᵢ w_yᵢ`. With one-hot (smoothed) targets this is
/// [`weighted_cross_entropy_loss`] (PyTorch's `weight=` semantics); for a batch mixed with
/// its own permutation the denominator is also `Σᵢ (λ·w_yᵢ + (1 − λ)·w_y_partner)`.
/// `None` is [`soft_target_cross_entropy`].
///
/// # Shapes
/// - `logits`: `[N, K]`, `targets`: `[N, K]`, `weights`: `[K]`, `labels`: `[N]` → `[1]`
pub fn weighted_soft_target_cross_entropy(
    logits: Tensor<2>,
    targets: Tensor<2>,
    weights: Option<(&Tensor<1>, Tensor<1, Int>)>,
) -> Tensor<1> {
    let Some((w, labels)) = weights else {
        return soft_target_cross_entropy(logits, targets);
    };
    let [_, k] = logits.dims();
    let logp = log_softmax(logits, 1);
    let w = w.clone().cast(logp.dtype());
    let t = targets.cast(logp.dtype()) * w.clone().reshape([1, k]);
    (logp * t).sum().neg() / w.select(0, labels).sum()
}

/// A training step's metrics as one small f32 tensor `[loss, correct]`, left on the device
/// so the step costs one host read (after the optimizer step is queued) instead of a read of
/// the loss before the backward pass and of the whole logits after it.
pub fn step_metrics(logits: &Tensor<2>, labels: &Tensor<1, Int>, loss: &Tensor<1>) -> Tensor<1> {
    let [n, _] = logits.dims();
    let hits = logits
        .clone()
        .inner()
        .argmax(1)
        .reshape([n])
        .equal(labels.clone().inner())
        .int()
        .sum()
        .float()
        .cast(DType::F32);
    Tensor::cat(
        vec![loss.clone().inner().cast(DType::F32).reshape([1]), hits],
        0,
    )
}

/// Layer groups trainable in epoch `epoch` (0-based) of `groups` groups.
pub fn trainable_groups(config: &FineTuneConfig, epoch: usize, groups: usize) -> usize {
    if epoch < config.freeze_epochs {
        return 1;
    }
    match config.unfreeze {
        Unfreeze::All => groups,
        Unfreeze::Gradual => (2 + epoch - config.freeze_epochs).min(groups),
    }
}

/// The learning-rate curve of the head in the phase holding `epoch`, for `bpe` batches per
/// epoch.
pub fn head_curve(config: &FineTuneConfig, epoch: usize, bpe: usize) -> PhaseCurve {
    let epochs = if epoch < config.freeze_epochs {
        config.freeze_epochs
    } else {
        config.epochs
    };
    PhaseCurve::new(
        config.schedule,
        config.lr,
        config.min_lr,
        (epochs * bpe).max(1),
        config.warmup,
    )
}

/// The head's learning rate at every step of the first `epochs` epochs, as `(x, lr)` with `x`
/// in epochs (step `b` of epoch `e` at `e + (b + 1) / bpe`, so an epoch's last step sits at
/// its number, where `metrics.csv` puts the epoch): `curves.png`'s per-step panel. The same
/// closed form the scheduler follows ([`PhaseCurve::lr_at`] at the step's index in its phase).
pub fn head_lr_steps(config: &FineTuneConfig, epochs: usize, bpe: usize) -> Vec<(f64, f64)> {
    let mut out = Vec::with_capacity(epochs * bpe);
    for e in 0..epochs {
        let curve = head_curve(config, e, bpe);
        let first = if e < config.freeze_epochs {
            0
        } else {
            config.freeze_epochs
        };
        for b in 0..bpe {
            let t = (e - first) * bpe + b;
            out.push((e as f64 + (b + 1) as f64 / bpe as f64, curve.lr_at(t)));
        }
    }
    out
}

/// Selects the run's device (not autodiff); prints `--device auto`'s notice (CPU
/// fall-back) on stderr.
pub fn device_of(config: &FineTuneConfig) -> Result<(Device, String), TrainError> {
    let choice: DeviceChoice = config.device.parse()?;
    let sel = select_device(choice)?;
    if let Some(n) = &sel.notice {
        eprintln!("{n}");
    }
    Ok((sel.device.clone(), sel.description.clone()))
}

/// Validation / evaluation pass: per-sample logits through the eval transform.
/// `tta` also averages the logits of the mirrored images.
pub fn predict_loader(
    model: &Classifier,
    loader: &Loader,
    transform: &EvalTransform,
    tta: bool,
    device: &Device,
    mut each: impl FnMut(&[f32], usize, usize),
) {
    let model = model.valid();
    let dtype = model_dtype(&model);
    for batch in loader.epoch(0) {
        let k = model.num_classes();
        let input = |flip| data::eval_batch(transform, &batch, flip, device).cast(dtype);
        let mut logits = model.forward(input(false));
        if tta {
            logits = (logits + model.forward(input(true))).div_scalar(2.0);
        }
        let v: Vec<f32> = logits
            .cast(DType::F32)
            .into_data()
            .try_to_vec::<f32>()
            .expect("f32 logits");
        for i in 0..batch.len() {
            each(&v[i * k..(i + 1) * k], batch.labels[i], batch.indices[i]);
        }
    }
}

struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    fn new(verbose: bool, len: usize, prefix: String) -> Self {
        let bar = verbose.then(|| {
            let b = ProgressBar::new(len as u64);
            b.set_style(
                ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} eta {eta}")
                    .expect("template")
                    .progress_chars("=> "),
            );
            b.set_prefix(prefix);
            b
        });
        Self { bar }
    }
    fn tick(&self, pos: usize, msg: String) {
        if let Some(b) = &self.bar {
            b.set_position(pos as u64);
            b.set_message(msg);
        }
    }
    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// What a training step needs besides the model, the batch and the optimizer.
pub struct StepContext<'a> {
    /// The training augmentation.
    pub pipeline: &'a Pipeline,
    /// The step's float type (the model's).
    pub dtype: DType,
    /// The autodiff device.
    pub device: &'a Device,
    /// Label smoothing of the loss.
    pub label_smoothing: f64,
    /// Per-class loss weights (`--class-weights`), on the training device.
    pub class_weights: Option<Tensor<1>>,
    /// Global gradient-norm clipping.
    pub grad_clip: Option<f64>,
}

/// The points inside [`train_step`] an observer sees (`bench train-step --breakdown`
/// times the phases between them).
pub enum StepEvent<'a> {
    /// The batch is augmented on the device and the labels uploaded.
    Augmented,
    /// Forward pass and loss queued.
    Forward {
        /// The batch's logits.
        logits: &'a Tensor<2>,
        /// The loss.
        loss: &'a Tensor<1>,
    },
    /// Backward pass (and clipping) queued.
    Backward,
    /// Optimizer step queued.
    Stepped {
        /// The batch's logits.
        logits: &'a Tensor<2>,
    },
}

/// One training step on `batch` (fastai's `one_batch`): augmentation on the device,
/// forward, loss, backward, optional clipping, AdamW step at `lrs`. Nothing is read back:
/// the returned `[loss, correct]` tensor is the caller's single host read. Seed the device
/// (dropout) before calling.
pub fn train_step(
    model: Classifier,
    batch: &PackedBatch,
    epoch: u64,
    optim: &mut ModuleOptimizer,
    lrs: impl Into<ModuleLearningRate>,
    ctx: &StepContext,
    observe: &mut (dyn FnMut(StepEvent) + Send),
) -> (Classifier, Tensor<1>) {
    let (grads, metrics, logits) = forward_backward(&model, batch, epoch, ctx, 1.0, observe);
    let model = apply_step(model, grads, optim, lrs, ctx, observe);
    observe(StepEvent::Stepped { logits: &logits });
    (model, metrics)
}

/// The first half of a step on one (micro-)batch: augmentation, forward, loss, backward of
/// the loss times `scale` (`1 / N` when `N` batches are accumulated into one step). Returns
/// the gradients, the unscaled `[loss, correct]` metrics and the logits. On the CPU it runs
/// on rayon's pool ([`petal_kernels::pool::on_cpu_pool`]: each parallel op of the CPU
/// backend then runs part of its work on the calling thread instead of waking the pool and
/// waiting).
pub fn forward_backward(
    model: &Classifier,
    batch: &PackedBatch,
    epoch: u64,
    ctx: &StepContext,
    scale: f64,
    observe: &mut (dyn FnMut(StepEvent) + Send),
) -> (GradientsParams, Tensor<1>, Tensor<2>) {
    petal_kernels::pool::on_cpu_pool(ctx.device, || {
        let out = forward_backward_here(model, batch, epoch, ctx, scale, observe);
        // Burn's `RunningState` keeps each thread's BatchNorm statistics update pending
        // until a sync, which averages the pending values of every thread; steps run on
        // whichever pool thread is free, so commit this step's updates now, on the thread
        // that made them (`valid` syncs the shared state of every BatchNorm of `model`).
        drop(model.valid());
        out
    })
}

fn forward_backward_here(
    model: &Classifier,
    batch: &PackedBatch,
    epoch: u64,
    ctx: &StepContext,
    scale: f64,
    observe: &mut (dyn FnMut(StepEvent) + Send),
) -> (GradientsParams, Tensor<1>, Tensor<2>) {
    let n = batch.len();
    let (x, mix) = ctx
        .pipeline
        .apply_mixed(batch, epoch, ctx.dtype, ctx.device);
    let labels: Vec<i64> = batch.labels.iter().map(|&l| l as i64).collect();
    let y = upload::<1, Int>(TensorData::new(labels, [n]), ctx.device);
    observe(StepEvent::Augmented);
    // The loss in f32 whatever the model's dtype (autocast's rule for softmax and
    // cross-entropy): with a loss scale of 2^16 an f16 loss would overflow.
    // (`cast` returns the tensor itself when it is f32 already.)
    let logits = model.forward(x).cast(DType::F32);
    let loss = if mix == Mix::None {
        weighted_cross_entropy_loss(
            logits.clone(),
            y.clone(),
            ctx.label_smoothing,
            ctx.class_weights.as_ref(),
        )
    } else {
        let k = logits.dims()[1];
        let t = mixed_targets(&batch.labels, k, mix.lambda(), ctx.label_smoothing as f32);
        let t = upload::<2, Float>(TensorData::new(t, [n, k]), ctx.device);
        let weights = ctx.class_weights.as_ref().map(|w| (w, y.clone()));
        weighted_soft_target_cross_entropy(logits.clone(), t, weights)
    };
    let metrics = step_metrics(&logits, &y, &loss);
    observe(StepEvent::Forward {
        logits: &logits,
        loss: &loss,
    });
    let scaled = if scale == 1.0 {
        loss
    } else {
        loss.mul_scalar(scale)
    };
    let grads = GradientsParams::from_grads(scaled.backward(), model);
    (grads, metrics, logits)
}

/// The second half of a step: optional clipping of the (accumulated) gradients, then the
/// optimizer step at `lrs`.
pub fn apply_step(
    model: Classifier,
    mut grads: GradientsParams,
    optim: &mut ModuleOptimizer,
    lrs: impl Into<ModuleLearningRate>,
    ctx: &StepContext,
    observe: &mut (dyn FnMut(StepEvent) + Send),
) -> Classifier {
    if let Some(max) = ctx.grad_clip {
        clip_grad_norm(&model, &mut grads, max);
    }
    observe(StepEvent::Backward);
    let lrs = lrs.into();
    petal_kernels::pool::on_cpu_pool(ctx.device, || optim.step(lrs, model, grads))
}

/// The optimizer, the scheduler and the trainable set of the current epoch.
struct Stepper {
    optim: ModuleOptimizer,
    scheduler: ModuleLrScheduler,
    trainable: usize,
    phase_frozen: bool,
    curve: PhaseCurve,
    factors: Vec<f64>,
}

/// Sums of a training epoch so far (carried across an interruption in the checkpoint).
struct EpochSums {
    loss_sum: f64,
    correct: u64,
    seen: u64,
    /// Images trained on in this process (for images/s).
    imgs_this_run: u64,
    train_time: f64,
    last_lrs: Vec<f64>,
    interrupted: bool,
}

/// A run in progress: everything the epoch functions share.
struct Run<'a> {
    config: &'a FineTuneConfig,
    opts: &'a TrainOptions,
    device: Device,
    train_device: Device,
    dtype: DType,
    model_config: ClassifierConfig,
    ckpt_path: PathBuf,
    /// The checkpoint resumed from, until the first epoch has restored its optimizer and
    /// scheduler.
    resume: Option<Checkpoint>,
    state: TrainState,
    records: Vec<EpochRecord>,
    train_loader: Loader,
    valid_loader: Loader,
    pipeline: Pipeline,
    eval_t: EvalTransform,
    /// Optimizer steps per epoch (loader batches / `accum`).
    bpe: usize,
    /// Loader batches per optimizer step (`--accum-steps`).
    accum: usize,
    total_epochs: usize,
    groups_n: usize,
    /// One parameter of each layer group: reads each group's learning rate off the scheduler.
    probes: Vec<ParamId>,
    /// The layer groups' names (TensorBoard's `lr/<group>` tags).
    group_names: Vec<String>,
    data: DataReport,
    /// `--tensorboard`'s event file.
    tb: Option<EventWriter>,
    /// `--ema`'s average of the weights.
    ema: Option<ModelEma>,
    /// `--class-weights`, resolved (on the training device).
    class_weights: Option<Tensor<1>>,
}

/// Scalars into the event file, if any; a write error turns TensorBoard logging off with a
/// warning (the run goes on: its checkpoints and metrics are what matter).
fn log_scalars(tb: &mut Option<EventWriter>, step: u64, values: &[(String, f64)]) {
    if let Some(w) = tb.as_mut()
        && let Err(e) = w.scalars(step, values)
    {
        log::warn!(
            "{}: {e}; TensorBoard logging stops here",
            w.path().display()
        );
        *tb = None;
    }
}

/// What the data set gave the run: exact counts, each skipped file once.
struct DataReport {
    description: String,
    /// Training images per class.
    class_counts: Vec<usize>,
    class_names: Vec<String>,
    train: usize,
    valid: usize,
    warnings: Vec<ScanWarning>,
}

/// Runs a fine-tune as `config` says, writing everything into `opts.out`.
pub fn train(config: &FineTuneConfig, opts: &TrainOptions) -> Result<TrainOutcome, TrainError> {
    config.validate()?;
    let found;
    let config = if config.lr_auto && !opts.resume && config.lr_finder.is_none() {
        found = auto_lr(config, opts)?;
        &found
    } else {
        config
    };
    let (mut run, mut model) = Run::open(config, opts)?;
    run.announce(&model);
    let mut stepper: Option<Stepper> = None;
    let mut stop = StopReason::Finished;
    for epoch in run.state.epoch..run.total_epochs {
        let t0 = Instant::now();
        let st;
        (model, st) = run.prepare_epoch(model, epoch, &mut stepper)?;
        let sums;
        (model, sums) = run.train_epoch(model, epoch, st)?;
        if sums.interrupted {
            run.save(&model, st)?;
            run.say(format!(
                "interrupted at step {}: wrote {}; continue with --resume {}",
                run.state.global_step,
                run.ckpt_path.display(),
                opts.out.display()
            ));
            stop = StopReason::Interrupted {
                step: run.state.global_step,
            };
            break;
        }
        if let Some(s) = run.end_epoch(&model, epoch, st, sums, t0)? {
            stop = s;
            break;
        }
    }
    Ok(run.finish(stop))
}

/// `--lr auto`: the LR finder on the run's data and phase-1 model (its plot and numbers in
/// `OUT/lr_find/`), then the configuration with `lr` = its suggestion (also kept as
/// `lr_finder`, so `config.json` says where the rate came from).
fn auto_lr(config: &FineTuneConfig, opts: &TrainOptions) -> Result<FineTuneConfig, TrainError> {
    let dir = opts.out.join("lr_find");
    let r = crate::lr_find::lr_find(
        config,
        &crate::lr_find::LrFindOptions {
            out: dir.clone(),
            ..Default::default()
        },
    )?;
    let lr = r.suggestion;
    if !(lr.is_finite() && lr > config.min_lr && lr <= 1.0) {
        return Err(TrainError::Config {
            what: "--lr auto (config key lr_auto)".into(),
            reason: format!(
                "the learning-rate finder suggested {lr:e}{}, not a usable rate above min_lr {}: give --lr VALUE (see {})",
                if r.diverged {
                    " (the loss diverged)"
                } else {
                    ""
                },
                config.min_lr,
                dir.join("lr_find.png").display()
            ),
        });
    }
    if opts.verbose {
        println!(
            "lr auto: the learning-rate finder suggests {lr:.2e} (fastai's valley over {} steps; {})",
            r.lrs.len(),
            dir.join("lr_find.png").display()
        );
    }
    let found = FineTuneConfig {
        lr,
        lr_finder: Some(lr),
        ..config.clone()
    };
    found.validate()?;
    Ok(found)
}

impl<'a> Run<'a> {
    fn say(&self, s: String) {
        if self.opts.verbose {
            println!("{s}");
        }
    }

    /// Device, data, model (pretrained, resumed or fresh), run files and loaders.
    fn open(
        config: &'a FineTuneConfig,
        opts: &'a TrainOptions,
    ) -> Result<(Self, Classifier), TrainError> {
        let out = &opts.out;
        let (device, device_name) = device_of(config)?;
        let has_f16 = petal_kernels::concat_pool::uses_fused_kernel(&device, DType::F16);
        let dtype = match (config.precision, has_f16) {
            (Precision::F32, _) => DType::F32,
            (Precision::F16, true) => DType::F16,
            // The master weights; the f16 copy is made per step.
            (Precision::Mixed, true) => DType::F32,
            (precision, false) => {
                return Err(TrainError::Config {
                    what: "`precision`".into(),
                    reason: format!(
                        "{} training needs a wgpu adapter with f16 (shader-f16); {device_name} has no f16 compute path (the CPU backend computes f16 by widening to f32, so it would be slower, not faster) — use --precision f32",
                        if precision == Precision::F16 {
                            "f16"
                        } else {
                            "mixed-precision"
                        }
                    ),
                });
            }
        };
        let train_device = device.clone().autodiff();

        // The weight file is read once: it decides `--arch auto` and is then loaded. A
        // resumed run takes its model from the checkpoint instead.
        let weights = match (&config.weights, opts.resume) {
            (Some(w), false) => Some(StateDict::read(w)?),
            _ => None,
        };
        let backbone = config.resolve_backbone(weights.as_ref())?;
        let saved_config = config.with_backbone(&backbone);

        let data = data::open(config, None)?;
        for w in &data.warnings {
            log::warn!("skipped {w}");
        }
        let RunData {
            classes,
            train: train_src,
            valid: valid_src,
            description,
            warnings,
            ..
        } = data;
        if train_src.is_empty() || valid_src.is_empty() {
            return Err(TrainError::Config {
                what: "data".into(),
                reason: format!(
                    "{description}: training and validation need at least one image each"
                ),
            });
        }
        let num_classes = classes.names.len();
        let class_counts = train_src.class_counts(num_classes);
        let class_weights = config
            .class_weights
            .as_deref()
            .map(|spec| data::class_weights(spec, &class_counts, &classes))
            .transpose()?;
        // The run directory appears only once weights, architecture and data are known good.
        std::fs::create_dir_all(out).map_err(|e| TrainError::io(out, e))?;
        write_atomic(
            &out.join(files::CLASSES),
            serde_json::to_string_pretty(&classes)
                .expect("classes serialise")
                .as_bytes(),
        )?;
        write_atomic(
            &out.join(files::CONFIG),
            serde_json::to_string_pretty(&saved_config)
                .expect("config serialises")
                .as_bytes(),
        )?;

        let model_config = ClassifierConfig::new(backbone, config.head_config(), num_classes);
        let ckpt_path = out.join(files::LAST);
        let resume = if opts.resume {
            let c = Checkpoint::read(&ckpt_path)?;
            if c.header.model != model_config {
                return Err(TrainError::checkpoint(
                    &ckpt_path,
                    "its model differs from the run's config.json (architecture, head or classes)",
                ));
            }
            Some(c)
        } else {
            None
        };
        let mut model = match (&resume, &weights) {
            (Some(c), _) => c.load_model(&ckpt_path, &train_device)?,
            (None, Some(sd)) => {
                train_device.seed(config.seed);
                let (m, report) = petal_core::weights::load_pretrained_backbone(
                    sd,
                    &model_config,
                    &train_device,
                )?;
                if opts.verbose {
                    println!(
                        "weights: {} tensors from {} (head fresh)",
                        report.applied,
                        sd.path()
                    );
                }
                m
            }
            (None, None) => {
                train_device.seed(config.seed);
                model_config.init(&train_device)
            }
        };
        // Parameters are lazy: initialise them all now, from `config.seed` alone.
        initialize_now(&model);
        if model_dtype(&model) != dtype {
            // Parameters, BatchNorm statistics, activations and AdamW state all in f16 (no
            // f32 master copy): halves memory and bandwidth; the loss is read back in f32.
            model = cast_model(model, dtype);
        }

        let state = resume
            .as_ref()
            .map(|c| c.header.state.clone())
            .unwrap_or(TrainState {
                seed: config.seed,
                loss_scaler: (config.precision == Precision::Mixed)
                    .then(|| LossScaler::new(config.loss_scale, config.loss_scale_growth as u32)),
                ..TrainState::default()
            });
        let records = if opts.resume {
            read_metrics(out)?
                .into_iter()
                .filter(|r| r.epoch <= state.epoch)
                .collect()
        } else {
            Vec::new()
        };
        let data = DataReport {
            description,
            class_counts: class_counts.clone(),
            class_names: classes.names.clone(),
            train: train_src.len(),
            valid: valid_src.len(),
            warnings,
        };
        let mut train_loader = data::loader(config, train_src, true);
        let accum = config.accum_steps.max(1);
        if train_loader.batches_per_epoch() < accum {
            return Err(TrainError::Config {
                what: format!("--accum-steps {accum} (config key accum_steps)"),
                reason: format!(
                    "an epoch has only {} batches of {}: at most that many can be accumulated",
                    train_loader.batches_per_epoch(),
                    config.batch_size
                ),
            });
        }
        let mut valid_loader = data::loader(config, valid_src, false);
        let resident = if config.cache == Cache::Device {
            Some((
                train_loader.make_resident(&train_device)?,
                valid_loader.make_resident(&device)?,
            ))
        } else {
            None
        };
        let probes = {
            let ids = float_param_ids(&model);
            model
                .layer_groups()
                .iter()
                .filter_map(|g| ids.iter().find(|id| g.params.matches(id, None)).copied())
                .collect()
        };
        let ema = match (&resume, config.ema > 0.0) {
            (_, false) => None,
            // Loaded into a copy of the trained model: the same parameter ids, tensor for tensor.
            (Some(c), true) if c.section("ema").is_some() => Some(ModelEma::resume(
                c.load_section_into(&ckpt_path, "ema", model.valid())?,
                config.ema,
                config.ema_warmup,
            )),
            _ => Some(ModelEma::new(&model, config.ema, config.ema_warmup)),
        };
        let run = Self {
            config,
            opts,
            dtype,
            model_config,
            ckpt_path,
            resume,
            state,
            records,
            bpe: train_loader.batches_per_epoch() / accum,
            accum,
            train_loader,
            valid_loader,
            pipeline: config.train_pipeline(config.freeze_epochs + config.epochs - 1),
            eval_t: data::eval_transform(config),
            total_epochs: config.freeze_epochs + config.epochs,
            groups_n: model.layer_groups().len(),
            probes,
            group_names: model.layer_groups().into_iter().map(|g| g.name).collect(),
            data,
            tb: Self::open_tensorboard(config, out)?,
            ema,
            class_weights: class_weights
                .map(|w| Tensor::<1>::from_data(TensorData::new(w, [num_classes]), &train_device)),
            device: device.clone(),
            train_device,
        };
        run.say(format!("device: {device_name}"));
        if let Some((t, v)) = resident {
            let mib = |b: usize| b as f64 / (1024.0 * 1024.0);
            run.say(format!(
                "--cache device: {} train images in {:.1} MiB, {} valid images in {:.1} MiB on the device (largest buffer {:.1} MiB)",
                t.images,
                mib(t.bytes),
                v.images,
                mib(v.bytes),
                mib(t.max_buffer as usize)
            ));
        }
        Ok((run, model))
    }

    /// `--tensorboard`: a new event file under `<out>/tb/` (a resumed run adds one), the
    /// configuration as its first text.
    fn open_tensorboard(
        config: &FineTuneConfig,
        out: &Path,
    ) -> Result<Option<EventWriter>, TrainError> {
        if !config.tensorboard {
            return Ok(None);
        }
        let dir = out.join(files::TENSORBOARD);
        let mut w = EventWriter::create(&dir).map_err(|e| TrainError::io(&dir, e))?;
        let text = format!(
            "```\n{}\n```",
            toml::to_string_pretty(config).unwrap_or_else(|e| e.to_string())
        );
        w.text(0, "config", &text)
            .map_err(|e| TrainError::io(w.path(), e))?;
        Ok(Some(w))
    }

    fn announce(&self, model: &Classifier) {
        let c = self.config;
        let skips = SkipCounts::of(&self.data.warnings);
        self.say(format!(
            "data: {}{}",
            self.data.description,
            skip_summary(skips.images, skips),
        ));
        self.say(class_count_summary(
            &self.data.class_counts,
            &self.data.class_names,
            c.sampler,
            self.class_weights.is_some(),
        ));
        self.say(format!(
            "model: {} + concat-pool head {:?} → {} classes, {} parameters",
            self.model_config.backbone.name(),
            c.hidden,
            self.model_config.num_classes,
            model.num_parameters()
        ));
        self.say(format!(
            "recipe: {} frozen + {} unfrozen ({:?}) epochs × {} steps of {}, AdamW lr {:.1e} (groups down to /{}), wd {}, {:?} schedule",
            c.freeze_epochs,
            c.epochs,
            c.unfreeze,
            self.bpe,
            if self.accum > 1 {
                format!("{} × {} (accumulated)", self.accum, c.batch_size)
            } else {
                c.batch_size.to_string()
            },
            c.lr,
            c.lr_mult,
            c.wd,
            c.schedule
        ));
        if c.progressive.is_some() {
            let sizes: Vec<String> = (0..self.total_epochs)
                .map(|e| c.train_size(e).to_string())
                .collect();
            self.say(format!(
                "progressive resizing: training crops {} (per epoch), validation {}",
                sizes.join(" → "),
                c.augment.size
            ));
        }
        let m = c.mix_config();
        if m.enabled() {
            let kinds = match (m.mixup > 0.0, m.cutmix > 0.0) {
                (true, true) => format!(
                    "MixUp α {} / CutMix α {} (CutMix {:.0} %)",
                    m.mixup,
                    m.cutmix,
                    100.0 * m.switch_prob
                ),
                (true, false) => format!("MixUp α {}", m.mixup),
                _ => format!("CutMix α {}", m.cutmix),
            };
            self.say(format!(
                "mixing: {kinds} on {:.0} % of batches, in the fused augmentation; soft-target loss{}",
                100.0 * m.prob,
                if c.label_smoothing > 0.0 {
                    format!(" (label smoothing {})", c.label_smoothing)
                } else {
                    String::new()
                }
            ));
        }
        if self.opts.resume {
            self.say(format!(
                "resuming {} at epoch {}, batch {} (step {})",
                self.opts.out.display(),
                self.state.epoch + 1,
                self.state.batch_in_epoch,
                self.state.global_step
            ));
        }
    }

    /// (Re)builds the optimizer and scheduler when the trainable set or the phase changes
    /// (their state belongs to the parameters they were training) and, on the first epoch
    /// of a resumed run, restores both from the checkpoint (which is then let go).
    fn prepare_epoch<'s>(
        &mut self,
        model: Classifier,
        epoch: usize,
        stepper: &'s mut Option<Stepper>,
    ) -> Result<(Classifier, &'s mut Stepper), TrainError> {
        let config = self.config;
        let first = stepper.is_none();
        let frozen = epoch < config.freeze_epochs;
        let trainable = trainable_groups(config, epoch, self.groups_n);
        let phase_changed = stepper.as_ref().is_none_or(|s| s.phase_frozen != frozen);
        let set_changed = stepper.as_ref().is_none_or(|s| s.trainable != trainable);
        if !(phase_changed || set_changed) {
            return Ok((model, stepper.as_mut().expect("checked above")));
        }
        let groups = model.layer_groups();
        let model = set_trainable(model, &groups, trainable, config.train_bn);
        let groups = model.layer_groups();
        let mut optim = build_optimizer(config, &model);
        let (mut scheduler, curve, factors) = match (phase_changed, stepper.take()) {
            (false, Some(s)) => (s.scheduler, s.curve, s.factors),
            _ => {
                let curve = head_curve(config, epoch, self.bpe);
                let factors: Vec<f64> = (0..groups.len())
                    .map(|g| group_factor(g, groups.len(), config.lr_mult))
                    .collect();
                let ids: Vec<_> = groups.iter().map(|g| g.params.clone()).collect();
                let s = phase_scheduler(&curve, &ids, &factors).map_err(|reason| {
                    TrainError::Config {
                        what: "schedule".into(),
                        reason,
                    }
                })?;
                (s, curve, factors)
            }
        };
        // The checkpoint's scheduler and optimizer continue only within the phase (and
        // trainable set) they were saved in, as an uninterrupted run would.
        let state = &mut self.state;
        let saved_epoch = if state.batch_in_epoch > 0 {
            state.epoch
        } else {
            state.epoch.saturating_sub(1)
        };
        let same_phase = (saved_epoch < config.freeze_epochs) == frozen;
        let resume = if first { self.resume.take() } else { None };
        if same_phase && let Some(c) = &resume {
            let path = &self.ckpt_path;
            if let Some(b) = c.section("scheduler") {
                let rec = LrSchedulerRecord::from_bytes(Bytes::from_bytes_vec(b.to_vec()))
                    .map_err(|e| TrainError::checkpoint(path, e.to_string()))?;
                scheduler = scheduler.load_record(rec);
            }
            if state.trainable_groups == trainable
                && let Some(b) = c.section("optimizer")
            {
                optim = optim
                    .from_bytes(Bytes::from_bytes_vec(b.to_vec()))
                    .map_err(|e| TrainError::checkpoint(path, e.to_string()))?;
            }
        }
        if phase_changed && !first {
            state.phase_step = 0;
        }
        let st = stepper.insert(Stepper {
            optim,
            scheduler,
            trainable,
            phase_frozen: frozen,
            curve,
            factors,
        });
        Ok((model, st))
    }

    fn phase_name(&self, epoch: usize, trainable: usize) -> String {
        if epoch < self.config.freeze_epochs {
            "frozen".to_string()
        } else if trainable >= self.groups_n {
            "unfrozen".to_string()
        } else {
            format!("unfrozen:{}", trainable - 1)
        }
    }

    /// The training half of an epoch: [`train_step`] over the loader's batches (from the
    /// checkpoint's position when resuming mid-epoch), stopping early on Ctrl-C /
    /// `stop_at_step`, or with an error on a non-finite loss.
    fn train_epoch(
        &mut self,
        mut model: Classifier,
        epoch: usize,
        st: &mut Stepper,
    ) -> Result<(Classifier, EpochSums), TrainError> {
        let config = self.config;
        let skip = self.state.batch_in_epoch;
        let (loss_sum, correct, seen) = if skip > 0 {
            self.state.partial
        } else {
            (0.0, 0, 0)
        };
        let mut sums = EpochSums {
            loss_sum,
            correct,
            seen,
            imgs_this_run: 0,
            train_time: 0.0,
            last_lrs: Vec::new(),
            interrupted: false,
        };
        let bar = Progress::new(
            self.opts.verbose,
            self.bpe * self.accum,
            format!(
                "epoch {}/{} {}",
                epoch + 1,
                self.total_epochs,
                self.phase_name(epoch, st.trainable)
            ),
        );
        // Progressive resizing: this epoch's crop (the run's pipeline otherwise).
        let resized = (config.progressive.is_some()).then(|| config.train_pipeline(epoch));
        let ctx = StepContext {
            pipeline: resized.as_ref().unwrap_or(&self.pipeline),
            // Mixed precision: the f16 copy's input is f16 too.
            dtype: if self.state.loss_scaler.is_some() {
                DType::F16
            } else {
                self.dtype
            },
            device: &self.train_device,
            label_smoothing: config.label_smoothing,
            class_weights: self.class_weights.clone(),
            grad_clip: config.grad_clip,
        };
        let t_train = Instant::now();
        // `--accum-steps N`: N loader batches (micro-batches) per optimizer step, each loss
        // scaled by 1/N so the summed gradients are those of the N·B mean; the scheduler
        // counts optimizer steps (`self.bpe` of them per epoch) and a run stops only between
        // steps, so no half-accumulated gradient needs saving.
        let accum = self.accum;
        let micro_total = self.bpe * accum;
        let mut acc: GradientsAccumulator<Classifier> = GradientsAccumulator::new();
        let mut half: Option<Classifier> = None;
        let (mut step_loss, mut lr_base) = (0.0f64, 0.0f64);
        for (b, batch) in self
            .train_loader
            .epoch_from(epoch as u64, skip)
            .into_iter()
            .enumerate()
        {
            let pos = b + skip;
            if pos >= micro_total {
                break; // batches that would not fill a last step
            }
            let k = pos % accum;
            let completes_step = k + 1 == accum;
            let state = &mut self.state;
            let seed = mix(config.seed, state.global_step);
            self.train_device
                .seed(if k == 0 { seed } else { mix(seed, k as u64) });
            // `--precision mixed`: forward and backward on an f16 copy (made once per step),
            // the loss scaled; the gradients widened to f32 at once.
            if k == 0 {
                half = state.loss_scaler.is_some().then(|| amp::half_copy(&model));
            }
            let loss_scale = state.loss_scaler.map_or(1.0, |s| s.scale);
            let (grads, metrics, _) = forward_backward(
                half.as_ref().unwrap_or(&model),
                &batch,
                epoch as u64,
                &ctx,
                loss_scale / accum as f64,
                &mut |_| {},
            );
            let grads = match &half {
                Some(h) => amp::widen_grads(h, grads),
                None => grads,
            };
            if completes_step {
                let lrs = st.scheduler.step();
                lr_base = lrs.base();
                sums.last_lrs = self
                    .probes
                    .iter()
                    .map(|id| lrs.lr_from_param(*id, None))
                    .collect();
                let grads = if accum == 1 {
                    grads
                } else {
                    acc.accumulate(&model, grads);
                    acc.grads()
                };
                model = match state.loss_scaler.as_mut() {
                    None => apply_step(model, grads, &mut st.optim, lrs, &ctx, &mut |_| {}),
                    Some(scaler) => {
                        half = None;
                        let optim = &mut st.optim;
                        amp::apply_step_scaled(model, grads, optim, lrs, &ctx, scaler, &mut |_| {})
                    }
                };
            } else {
                acc.accumulate(&model, grads);
            }
            let mv: Vec<f32> = metrics
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .expect("f32 metrics");
            let loss_v = mv[0];
            if !loss_v.is_finite() {
                // Nothing of this step is saved: the run ends here, as before.
                bar.finish();
                return Err(TrainError::NonFinite {
                    loss: loss_v,
                    step: state.global_step,
                    epoch: epoch + 1,
                    lr: lr_base,
                });
            }
            let n = batch.len() as u64;
            sums.correct += mv[1] as u64;
            sums.loss_sum += loss_v as f64 * n as f64;
            sums.seen += n;
            sums.imgs_this_run += n;
            state.batch_in_epoch = pos + 1;
            step_loss += loss_v as f64 / accum as f64;
            if !completes_step {
                continue;
            }
            state.global_step += 1;
            state.phase_step += 1;
            if let Some(ema) = self.ema.as_mut() {
                ema.update(&model, state.global_step);
            }
            if self.tb.is_some() {
                let step = state.global_step;
                let mut values = vec![("train/loss".to_string(), step_loss)];
                values.extend(
                    self.group_names
                        .iter()
                        .zip(&sums.last_lrs)
                        .map(|(g, lr)| (format!("lr/{g}"), *lr)),
                );
                log_scalars(&mut self.tb, step, &values);
            }
            step_loss = 0.0;
            let state = &mut self.state;
            let ips = sums.imgs_this_run as f64 / t_train.elapsed().as_secs_f64();
            bar.tick(
                pos + 1,
                format!(
                    "loss {:.4} acc {:.1}% {:.0} img/s",
                    sums.loss_sum / sums.seen as f64,
                    100.0 * sums.correct as f64 / sums.seen as f64,
                    ips
                ),
            );
            let stop_now = self.opts.stop.load(Ordering::SeqCst)
                || self
                    .opts
                    .stop_at_step
                    .is_some_and(|s| state.global_step >= s);
            if stop_now && state.batch_in_epoch < micro_total {
                state.partial = (sums.loss_sum, sums.correct, sums.seen);
                state.trainable_groups = st.trainable;
                sums.interrupted = true;
                break;
            }
        }
        bar.finish();
        sums.train_time = t_train.elapsed().as_secs_f64();
        Ok((model, sums))
    }

    /// The end of an epoch: validation, the epoch's record, checkpoints, curves, and the
    /// stop decision (early stopping, Ctrl-C between epochs).
    fn end_epoch(
        &mut self,
        model: &Classifier,
        epoch: usize,
        st: &Stepper,
        sums: EpochSums,
        t0: Instant,
    ) -> Result<Option<StopReason>, TrainError> {
        let config = self.config;
        let out = &self.opts.out;
        let mut tally = Tally::new(self.model_config.num_classes);
        // With `--ema`, the average is what is validated, kept as best and predicted with.
        let validated = self.ema.as_ref().map_or(model, |e| &e.model);
        predict_loader(
            validated,
            &self.valid_loader,
            &self.eval_t,
            false,
            &self.device,
            |l, y, _| tally.add(l, y, cross_entropy(l, y, config.label_smoothing)),
        );
        let state = &mut self.state;
        state.epoch = epoch + 1;
        state.batch_in_epoch = 0;
        state.partial = (0.0, 0, 0);
        state.trainable_groups = st.trainable;
        let top1 = tally.top1();
        let improved = state.best_top1.is_none_or(|(b, _)| top1 > b);
        if improved {
            state.best_top1 = Some((top1, epoch + 1));
        }
        let record = EpochRecord {
            epoch: epoch + 1,
            phase: self.phase_name(epoch, st.trainable),
            step: self.state.global_step,
            train_loss: sums.loss_sum / sums.seen.max(1) as f64,
            train_top1: sums.correct as f64 / sums.seen.max(1) as f64,
            valid_loss: tally.loss(),
            valid_top1: top1,
            valid_top5: tally.top5(),
            lr: sums.last_lrs.last().copied().unwrap_or(0.0),
            lrs: sums.last_lrs.clone(),
            time_s: t0.elapsed().as_secs_f64(),
            images_per_s: sums.imgs_this_run as f64 / sums.train_time.max(1e-9),
            loss_scale: self.state.loss_scaler.map(|s| s.scale),
            skipped_steps: self.state.loss_scaler.map(|s| s.skipped),
        };
        self.say(format!(
            "epoch {:>2}/{} {:<10} train_loss {:.4} valid_loss {:.4} top1 {:.2}% top5 {:.2}% lr {:.2e} time {:.1}s ({:.0} img/s){}{}",
            record.epoch,
            self.total_epochs,
            record.phase,
            record.train_loss,
            record.valid_loss,
            100.0 * record.valid_top1,
            100.0 * record.valid_top5,
            record.lr,
            record.time_s,
            record.images_per_s,
            match (record.loss_scale, record.skipped_steps) {
                (Some(scale), Some(skipped)) =>
                    format!(" loss scale {scale} ({skipped} steps skipped)"),
                _ => String::new(),
            },
            if improved { " *" } else { "" }
        ));
        log_scalars(
            &mut self.tb,
            record.step,
            &[
                ("valid/loss".into(), record.valid_loss),
                ("valid/top1".into(), record.valid_top1),
                ("valid/top5".into(), record.valid_top5),
                ("train/epoch_loss".into(), record.train_loss),
                ("train/top1".into(), record.train_top1),
                ("perf/images_per_s".into(), record.images_per_s),
            ],
        );
        self.records.push(record);
        self.save(model, st)?;
        if improved {
            std::fs::copy(&self.ckpt_path, out.join(".best.tmp"))
                .and_then(|_| std::fs::rename(out.join(".best.tmp"), out.join(files::BEST)))
                .map_err(|e| TrainError::io(&out.join(files::BEST), e))?;
        }
        write_metrics(out, &self.records)?;
        let head_lrs = head_lr_steps(config, epoch + 1, self.bpe);
        if let Err(e) = plot::curves(&out.join(files::CURVES), &self.records, &head_lrs) {
            log::warn!("{e}");
        }
        if let (Some(p), Some((best, best_epoch))) = (config.patience, self.state.best_top1)
            && epoch + 1 - best_epoch >= p
            && epoch + 1 < self.total_epochs
        {
            self.say(format!(
                "early stop: no better valid top-1 for {p} epochs (best {:.2}% at epoch {best_epoch})",
                100.0 * best
            ));
            return Ok(Some(StopReason::EarlyStopped { epoch: epoch + 1 }));
        }
        if self.opts.stop.load(Ordering::SeqCst) {
            return Ok(Some(StopReason::Interrupted {
                step: self.state.global_step,
            }));
        }
        Ok(None)
    }

    fn save(&self, model: &Classifier, st: &Stepper) -> Result<(), TrainError> {
        let ema = self.ema.as_ref().map(|e| &e.model);
        save(
            &self.ckpt_path,
            &self.model_config,
            model,
            ema,
            &self.state,
            st,
        )
    }

    /// The outcome, with the exact data summary (files that failed only at batch time
    /// included, each once).
    fn finish(self, stop: StopReason) -> TrainOutcome {
        let mut skipped: Vec<(String, String)> = Vec::new();
        let mut classes_left_out = Vec::new();
        for w in &self.data.warnings {
            let entry = (w.path.display().to_string(), w.reason.clone());
            match w.skipped {
                Skipped::Image => skipped.push(entry),
                _ => classes_left_out.push(entry),
            }
        }
        let late_train = self.train_loader.warnings();
        let late_valid = self.valid_loader.warnings();
        let images_used = (
            self.data.train - late_train.len(),
            self.data.valid - late_valid.len(),
        );
        for w in late_train.into_iter().chain(late_valid) {
            skipped.push((w.name, w.reason));
        }
        let skips = SkipCounts::of(&self.data.warnings);
        if !skipped.is_empty() || !classes_left_out.is_empty() {
            self.say(format!(
                "data: {} train / {} valid images used{}",
                images_used.0,
                images_used.1,
                skip_summary(skipped.len(), skips)
            ));
        }
        if let Some((b, e)) = self.state.best_top1 {
            self.say(format!(
                "best valid top-1 {:.2}% at epoch {e}: {}",
                100.0 * b,
                self.opts.out.join(files::BEST).display()
            ));
        }
        TrainOutcome {
            records: self.records,
            best: self.state.best_top1,
            stop,
            run_dir: self.opts.out.clone(),
            skipped,
            classes_left_out,
            images_used,
        }
    }
}

/// `"; 2 unreadable image(s) skipped, 1 class folder(s) left out (3 images)"`, or nothing.
pub fn skip_summary(images: usize, skips: SkipCounts) -> String {
    let mut parts = Vec::new();
    if images > 0 {
        parts.push(format!("{images} unreadable image(s) skipped"));
    }
    if skips.classes > 0 {
        parts.push(format!(
            "{} class folder(s) left out ({} image(s) in them)",
            skips.classes, skips.images_in_classes
        ));
    }
    if parts.is_empty() {
        return String::new();
    }
    format!("; {} (each named above)", parts.join(", "))
}

/// Ids of every float parameter of `model`, in module order.
pub fn float_param_ids<M: Module>(model: &M) -> Vec<burn::module::ParamId> {
    struct Ids(Vec<burn::module::ParamId>);
    impl burn::module::ModuleVisitor for Ids {
        fn visit_float<const D: usize>(&mut self, p: &burn::module::Param<Tensor<D>>) {
            self.0.push(p.id);
        }
    }
    let mut ids = Ids(Vec::new());
    model.visit(&mut ids);
    ids.0
}

fn save(
    path: &Path,
    config: &ClassifierConfig,
    model: &Classifier,
    ema: Option<&Classifier>,
    state: &TrainState,
    st: &Stepper,
) -> Result<(), TrainError> {
    // BatchNorm's running statistics hold their latest update aside until synced; saving
    // visits the synced value. `valid()` syncs the (shared) state first.
    drop(model.valid());
    let optim = st
        .optim
        .into_bytes()
        .map_err(|e| TrainError::io(path, format!("cannot serialise the optimizer: {e}")))?;
    let sched = st
        .scheduler
        .to_record()
        .into_bytes()
        .map_err(|e| TrainError::io(path, format!("cannot serialise the scheduler: {e}")))?;
    let mut extra = vec![
        ("optimizer".into(), optim.to_vec()),
        ("scheduler".into(), sched.to_vec()),
    ];
    if let Some(ema) = ema {
        extra.push(("ema".into(), model_bytes(ema)?));
    }
    Checkpoint::new(config, model, state.clone(), extra)?.write(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trainable_groups_per_epoch() {
        let mut c = FineTuneConfig {
            freeze_epochs: 2,
            epochs: 4,
            ..FineTuneConfig::default()
        };
        // Frozen: the head only; then all three groups at once.
        let all: Vec<usize> = (0..6).map(|e| trainable_groups(&c, e, 3)).collect();
        assert_eq!(all, [1, 1, 3, 3, 3, 3]);
        // Gradual: head + the last backbone group, then one more per epoch.
        c.unfreeze = Unfreeze::Gradual;
        let gradual: Vec<usize> = (0..6).map(|e| trainable_groups(&c, e, 3)).collect();
        assert_eq!(gradual, [1, 1, 2, 3, 3, 3]);
    }

    #[test]
    fn loss_matches_the_per_sample_formula() {
        let device = Device::flex();
        let logits = [[1.0f32, 3.0, 2.0], [0.5, -1.0, 0.0]];
        let labels = [2i64, 0];
        let x = Tensor::<2>::from_data(TensorData::new(logits.concat(), [2, 3]), &device);
        let y = Tensor::<1, Int>::from_data(TensorData::new(labels.to_vec(), [2]), &device);
        for eps in [0.0, 0.1] {
            let got: f32 = cross_entropy_loss(x.clone(), y.clone(), eps).into_scalar();
            let want = (crate::metrics::cross_entropy(&logits[0], 2, eps)
                + crate::metrics::cross_entropy(&logits[1], 0, eps))
                / 2.0;
            assert!(
                (got as f64 - want).abs() < 1e-6,
                "eps {eps}: {got} vs {want}"
            );
        }
    }
}
