//! BatchNorm (optionally fused with the ReLU or SiLU after it) with petal's CPU kernels on Flex
//! and its WGSL kernels on wgpu.
//!
//! Burn's Flex backend has no BatchNorm of its own: Burn's defaults compose it from tensor
//! ops — in training, a transposing copy and a mean for the statistics, another copy and
//! mean for the variance, then subtract / sqrt / divide / multiply / add, and about as many
//! again in the backward pass, plus the ReLU and its mask. On a DenseNet (120 BatchNorms,
//! each followed by ReLU) those small passes and their allocations are a large share of a
//! CPU step. [`batch_norm`] does the statistics in one pass per channel (f64 sums),
//! normalise + affine + ReLU in one, and the backward pass in two (the channel sums, then
//! `dx`), recomputing the ReLU mask (or SiLU's derivative) instead of storing it. SiLU
//! (EfficientNet) costs Burn a sigmoid, a product and about five passes backward on top;
//! fused, it is one `exp` per element forward and two backward.
//!
//! On wgpu (f32, batch statistics: training) the same four passes are WGSL kernels, one
//! dispatch each, where Burn's default issues about seventeen per layer (reductions,
//! element-wise chains, transposing copies); a densenet121 step has 121 BatchNorms.
//! Elsewhere — other devices and dtypes, running statistics on wgpu, or with
//! [`set_gpu_kernels`]`(false)` — it is Burn's `batch_norm_train` / `batch_norm` and `relu`
//! / `silu`
//! ([`batch_norm_reference`], also the tests' oracle).

mod backend;
pub mod cpu;
mod gpu;

use burn::prelude::Device;
use std::cell::Cell;

thread_local! {
    static GPU_KERNELS: Cell<bool> = const { Cell::new(true) };
}

/// Turns petal's GPU paths on or off for this thread (on by default): the WGSL BatchNorm
/// kernels and pointwise convolutions as matmuls ([`crate::conv::conv2d`]); off, wgpu
/// devices run Burn's ops. For before/after measurements (`bench train-step
/// --compare-conv`) and tests.
pub fn set_gpu_kernels(enabled: bool) {
    GPU_KERNELS.with(|k| k.set(enabled));
}

/// Whether [`batch_norm`] runs the WGSL kernels for a training BatchNorm of `dtype` on
/// `device`.
pub fn uses_gpu_kernels(device: &Device, dtype: DType) -> bool {
    dtype == DType::F32 && GPU_KERNELS.with(Cell::get) && crate::transfer::is_gpu(device)
}

pub use backend::BatchNormBackend;

use crate::conv::uses_cpu_kernels;
use burn::backend::Dispatch;
use burn::tensor::activation::{relu, silu};
use burn::tensor::{DType, Tensor, module};

/// The activation fused after BatchNorm's affine step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Act {
    /// None: the affine output as it is.
    #[default]
    Identity,
    /// `max(z, 0)`.
    Relu,
    /// `z · sigmoid(z)` (SiLU, "swish": EfficientNet's activation).
    Silu,
}

impl Act {
    /// The code the backend ops and the WGSL kernels take (`info[5]`): 0, 1, 2.
    pub fn code(self) -> u8 {
        match self {
            Act::Identity => 0,
            Act::Relu => 1,
            Act::Silu => 2,
        }
    }

    /// The activation of a [`code`](Self::code); unknown codes are the identity.
    pub fn from_code(code: u8) -> Act {
        match code {
            1 => Act::Relu,
            2 => Act::Silu,
            _ => Act::Identity,
        }
    }

    /// `"+relu"` / `"+silu"` / `""`, for profile labels.
    pub(crate) fn suffix(self) -> &'static str {
        match self {
            Act::Identity => "",
            Act::Relu => "+relu",
            Act::Silu => "+silu",
        }
    }

    /// The activation as Burn's op (the reference path).
    fn apply(self, x: Tensor<4>) -> Tensor<4> {
        match self {
            Act::Identity => x,
            Act::Relu => relu(x),
            Act::Silu => silu(x),
        }
    }
}

/// Statistics for [`batch_norm`]: the batch's own (training), or given running ones.
#[derive(Clone, Debug)]
pub enum Stats {
    /// Compute mean and biased variance from the batch; the gradient flows through them.
    Batch,
    /// As [`Stats::Batch`], and move the running statistics `(mean, variance, momentum)`
    /// towards the batch's as Burn's `BatchNorm` does, `r·(1 − m) + batch·m`
    /// ([`BatchNormOutput::running`]). On wgpu the statistics kernel computes the update in
    /// the same dispatch.
    BatchUpdating(Box<(Tensor<1>, Tensor<1>, f64)>),
    /// Use these (`[C]` mean, `[C]` variance); they are constants for the gradient.
    Running(Box<(Tensor<1>, Tensor<1>)>),
}

/// The output and the statistics a training BatchNorm produces.
#[derive(Debug)]
pub struct BatchNormOutput {
    /// `[N, C, H, W]`.
    pub output: Tensor<4>,
    /// `([C] mean, [C] biased variance)` of the batch (detached) for [`Stats::Batch`],
    /// `None` otherwise.
    pub batch_stats: Option<(Tensor<1>, Tensor<1>)>,
    /// The moved running `([C] mean, [C] variance)` (detached) for
    /// [`Stats::BatchUpdating`], `None` otherwise.
    pub running: Option<(Tensor<1>, Tensor<1>)>,
}

/// Where [`BatchNormBackend::bn_stats`] puts its values in its one output: the batch's
/// means at `0..C`, variances at `C..2C`, the moved running mean at `running_mean..+C` and
/// variance at `running_var..+C`, each running part starting on a 64-value (256-byte)
/// boundary, `len` values in all. Burn's `slice` of a GPU tensor is a view (no copy)
/// when both its start and the bytes after its end are multiples of the adapter's offset
/// alignment (256 bytes at most, wgpu's default limit), so the running parts are views
/// for `C` a multiple of 64 ([`Self::views`]); otherwise the update is Burn's element-wise
/// chain on the batch's statistics, as before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatsLayout {
    /// Offset of the moved running mean.
    pub running_mean: usize,
    /// Offset of the moved running variance.
    pub running_var: usize,
    /// Values in all.
    pub len: usize,
}

impl StatsLayout {
    /// Values per alignment boundary (256 bytes of f32).
    const ALIGN: usize = 64;

    /// The layout for `c` channels.
    pub fn of(c: usize) -> Self {
        let up = |v: usize| v.div_ceil(Self::ALIGN) * Self::ALIGN;
        let running_mean = up(2 * c);
        let running_var = running_mean + up(c);
        Self {
            running_mean,
            running_var,
            len: running_var + up(c),
        }
    }

    /// Whether the running parts of `c` channels are slices a GPU takes as views.
    pub fn views(c: usize) -> bool {
        c.is_multiple_of(Self::ALIGN)
    }

    /// The layout's values on the host from the batch's `[2C]` statistics and the running
    /// ones (the padding zero), as the statistics kernel writes them.
    pub(crate) fn with_running(
        &self,
        batch: &[f32],
        running_mean: &[f32],
        running_var: &[f32],
        momentum: f64,
    ) -> Vec<f32> {
        let c = running_mean.len();
        let (m, keep) = (momentum as f32, (1.0 - momentum) as f32);
        let mut out = vec![0.0; self.len];
        out[..2 * c].copy_from_slice(&batch[..2 * c]);
        for i in 0..c {
            out[self.running_mean + i] = running_mean[i] * keep + batch[i] * m;
            out[self.running_var + i] = running_var[i] * keep + batch[c + i] * m;
        }
        out
    }
}

/// Burn's `BatchNorm` running-statistics update, `r·(1 − m) + batch·m`, detached.
fn moved(
    (mean, var): (Tensor<1>, Tensor<1>),
    (batch_mean, batch_var): (Tensor<1>, Tensor<1>),
    momentum: f64,
) -> (Tensor<1>, Tensor<1>) {
    let step = |r: Tensor<1>, b: Tensor<1>| {
        r.mul_scalar(1.0 - momentum)
            .add(b.mul_scalar(momentum))
            .detach()
    };
    (step(mean, batch_mean), step(var, batch_var))
}

/// Burn's ops: `batch_norm_train` (or `batch_norm` with the given statistics), then the
/// activation (`relu`, `silu`); the running statistics moved by Burn's formula.
pub fn batch_norm_reference(
    x: Tensor<4>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    stats: Stats,
    epsilon: f64,
    act: Act,
) -> BatchNormOutput {
    let train = || {
        let r = module::batch_norm_train(x.clone(), gamma.clone(), beta.clone(), epsilon);
        (r.output, (r.mean.detach(), r.variance.detach()))
    };
    let (output, batch_stats, running) = match stats {
        Stats::Batch => {
            let (output, batch) = train();
            (output, Some(batch), None)
        }
        Stats::BatchUpdating(u) => {
            let (output, batch) = train();
            let (mean, var, m) = *u;
            (output, None, Some(moved((mean, var), batch, m)))
        }
        Stats::Running(running) => {
            let (mean, var) = *running;
            let output = module::batch_norm(x, gamma, beta, mean, var, epsilon);
            (output, None, None)
        }
    };
    BatchNormOutput {
        output: act.apply(output),
        batch_stats,
        running,
    }
}

/// BatchNorm over `[N, C, H, W]` with per-channel `gamma` / `beta`, then the activation
/// `act` (ReLU or SiLU fused into the same passes): petal's CPU kernels on Flex with f32,
/// its WGSL kernels on wgpu with f32 and batch statistics (see the module docs), Burn's
/// ops elsewhere. Differentiable with respect to `x`, `gamma` and `beta`.
pub fn batch_norm(
    x: Tensor<4>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    stats: Stats,
    epsilon: f64,
    act: Act,
) -> BatchNormOutput {
    let f32s = [x.dtype(), gamma.dtype(), beta.dtype()]
        .iter()
        .all(|&d| d == DType::F32);
    let device = x.device();
    let on_cpu = uses_cpu_kernels(&device, DType::F32);
    let from_batch = !matches!(stats, Stats::Running(_));
    let on_gpu = from_batch && uses_gpu_kernels(&device, DType::F32);
    if !(f32s && (on_cpu || on_gpu)) {
        return batch_norm_reference(x, gamma, beta, stats, epsilon, act);
    }
    let c = x.dims()[1];
    let batch_stat = |s: &Tensor<1>| (s.clone().narrow(0, 0, c), s.clone().narrow(0, c, c));
    let (stats, batch_stats, running) = match stats {
        Stats::Batch => {
            // γ and β stand in for running statistics: the kernel's update of them is
            // never read.
            let s = stats_with_running(&x, gamma.clone(), beta.clone(), 0.0);
            let batch = batch_stat(&s);
            (s, Some(batch), None)
        }
        Stats::BatchUpdating(u) => {
            let (mean, var, m) = *u;
            let s = stats_with_running(&x, mean.clone(), var.clone(), m);
            // On the CPU the slices are views whatever `C`; on a GPU when `C` is aligned.
            let running = if on_cpu || StatsLayout::views(c) {
                let l = StatsLayout::of(c);
                (
                    s.clone().narrow(0, l.running_mean, c),
                    s.clone().narrow(0, l.running_var, c),
                )
            } else {
                moved((mean, var), batch_stat(&s), m)
            };
            (s, None, Some(running))
        }
        Stats::Running(running) => {
            let (mean, var) = *running;
            (Tensor::cat(vec![mean, var], 0), None, None)
        }
    };
    let output = Tensor::from_dispatch(<Dispatch as BatchNormBackend>::bn_forward(
        x.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        stats.detach().into_dispatch(),
        epsilon,
        act.code(),
        from_batch,
    ));
    BatchNormOutput {
        output,
        batch_stats,
        running,
    }
}

/// [`BatchNormBackend::bn_stats`] of `x` with `running_mean`, `running_var` (detached).
fn stats_with_running(
    x: &Tensor<4>,
    running_mean: Tensor<1>,
    running_var: Tensor<1>,
    momentum: f64,
) -> Tensor<1> {
    Tensor::<1>::from_dispatch(<Dispatch as BatchNormBackend>::bn_stats(
        x.clone().into_dispatch(),
        running_mean.detach().into_dispatch(),
        running_var.detach().into_dispatch(),
        momentum,
    ))
}
