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
    /// Use these (`[C]` mean, `[C]` variance); they are constants for the gradient.
    Running(Box<(Tensor<1>, Tensor<1>)>),
}

/// The output and, for [`Stats::Batch`], the batch statistics (mean, biased variance,
/// detached) to fold into running averages.
#[derive(Debug)]
pub struct BatchNormOutput {
    /// `[N, C, H, W]`.
    pub output: Tensor<4>,
    /// `([C] mean, [C] biased variance)` of the batch, `None` for [`Stats::Running`].
    pub batch_stats: Option<(Tensor<1>, Tensor<1>)>,
}

/// Burn's ops: `batch_norm_train` (or `batch_norm` with the given statistics), then the
/// activation (`relu`, `silu`).
pub fn batch_norm_reference(
    x: Tensor<4>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    stats: Stats,
    epsilon: f64,
    act: Act,
) -> BatchNormOutput {
    let (output, batch_stats) = match stats {
        Stats::Batch => {
            let r = module::batch_norm_train(x, gamma, beta, epsilon);
            (r.output, Some((r.mean.detach(), r.variance.detach())))
        }
        Stats::Running(running) => {
            let (mean, var) = *running;
            (module::batch_norm(x, gamma, beta, mean, var, epsilon), None)
        }
    };
    let output = act.apply(output);
    BatchNormOutput {
        output,
        batch_stats,
    }
}

/// BatchNorm over `[N, C, H, W]` with per-channel `gamma` / `beta`, then ReLU when
/// the activation `act` (ReLU or SiLU fused into the same passes): petal's CPU kernels on Flex with f32, its WGSL kernels on wgpu with f32
/// and batch statistics (see the module docs), Burn's ops elsewhere. Differentiable with respect to `x`, `gamma` and `beta`.
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
    let on_gpu = matches!(stats, Stats::Batch) && uses_gpu_kernels(&device, DType::F32);
    if !(f32s && (on_cpu || on_gpu)) {
        return batch_norm_reference(x, gamma, beta, stats, epsilon, act);
    }
    let c = x.dims()[1];
    let (stats, batch_stats) = match stats {
        Stats::Batch => {
            let s = Tensor::<1>::from_dispatch(<Dispatch as BatchNormBackend>::bn_stats(
                x.clone().into_dispatch(),
            ));
            let split = (s.clone().narrow(0, 0, c), s.clone().narrow(0, c, c));
            (s, Some(split))
        }
        Stats::Running(running) => {
            let (mean, var) = *running;
            (Tensor::cat(vec![mean, var], 0), None)
        }
    };
    let output = Tensor::from_dispatch(<Dispatch as BatchNormBackend>::bn_forward(
        x.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        stats.detach().into_dispatch(),
        epsilon,
        act.code(),
        batch_stats.is_some(),
    ));
    BatchNormOutput {
        output,
        batch_stats,
    }
}
