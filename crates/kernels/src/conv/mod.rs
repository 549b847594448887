//! 2-D convolution with petal's CPU kernels on Flex.
//!
//! Burn's Flex backend runs the convolution's forward pass as a tiled im2col + gemm, but
//! its backward pass through Burn's generic defaults: the input gradient as a transposed
//! convolution (one gemm per sample) and the weight gradient as a forward convolution with
//! batch and channels swapped, whose "kernel" is the whole `Ho×Wo` output gradient — one
//! thin gemm per input channel. On a DenseNet step that backward pass was 60–70 % of the
//! time. [`conv2d`] keeps Burn's semantics (NCHW, `[O, C/g, kh, kw]` weights, symmetric
//! padding, stride, dilation, groups) and, on a Flex device with f32 tensors, runs
//! [`cpu`]'s kernels: each pass one gemm over a chunk of samples
//! (`dW += dY·colᵀ`, `dcol = Wᵀ·dY` + col2im, `Y = W·col`), depthwise convolutions as
//! direct loops. On wgpu (f32, with [`crate::batch_norm::set_gpu_kernels`] on) a pointwise
//! convolution (1×1, stride 1, no padding, one group) is one batched matmul on NCHW, without
//! the layout copies Burn's GPU convolution makes, and a small stride-1 "same" convolution
//! (densenet121's 3×3 layers at small inputs) is one direct WGSL kernel per pass ([`gpu`]). Everywhere else (other wgpu convolutions,
//! f16, asymmetric padding) it is Burn's own `conv2d`, which is also the tests' oracle
//! ([`conv2d_reference`]).

mod backend;
pub mod cpu;
mod gpu;
pub mod shifted;

pub use backend::ConvBackend;
pub use gpu::{ConvDirectBackend, MAX_MACS};

use burn::backend::{Dispatch, DispatchDevice};
use burn::tensor::module;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{DType, Device, Tensor};
use std::cell::Cell;

thread_local! {
    static CPU_KERNELS: Cell<bool> = Cell::new(default_cpu_kernels());
}

/// On unless the environment sets `PETAL_CPU_KERNELS=0` (or `off`): an escape hatch to
/// Burn's own ops for every thread, and the A/B switch for whole runs.
fn default_cpu_kernels() -> bool {
    static DEFAULT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *DEFAULT.get_or_init(|| switch_on(std::env::var("PETAL_CPU_KERNELS").ok().as_deref()))
}

/// The value of a `PETAL_CPU_KERNELS`-style switch: off for `0`, `off` or `false` (any
/// case), on otherwise (unset included).
fn switch_on(value: Option<&str>) -> bool {
    !value.is_some_and(|v| {
        let v = v.trim().to_ascii_lowercase();
        matches!(v.as_str(), "0" | "off" | "false")
    })
}

/// Turns petal's CPU kernels ([`conv2d`] and [`crate::batch_norm::batch_norm`]) on or off
/// for ops recorded on the calling thread from now on (on by default, see
/// `PETAL_CPU_KERNELS` in the README). Off, both are
/// Burn's own ops: benchmarks and tests compare the two paths in one process. (A backward
/// pass follows whatever its forward pass recorded.)
pub fn set_cpu_kernels(enabled: bool) {
    CPU_KERNELS.with(|k| k.set(enabled));
}

/// Whether petal's CPU kernels are switched on for the calling thread.
pub fn cpu_kernels_enabled() -> bool {
    CPU_KERNELS.with(Cell::get)
}

/// Whether petal's CPU kernels run for a tensor of `dtype` on `device`: a Flex device
/// (with or without autodiff), f32, and the kernels switched on for this thread.
pub fn uses_cpu_kernels(device: &Device, dtype: DType) -> bool {
    dtype == DType::F32
        && cpu_kernels_enabled()
        && matches!(
            device.clone().inner().as_dispatch(),
            DispatchDevice::Flex(_)
        )
}

/// Burn's `conv2d`: the oracle of [`conv2d`], and what runs off Flex.
pub fn conv2d_reference(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    options: ConvOptions<2>,
) -> Tensor<4> {
    module::conv2d(x, weight, bias, options)
}

/// A 2-D convolution, differentiable on autodiff devices: petal's CPU kernels on Flex
/// (see the module docs), Burn's `conv2d` elsewhere.
///
/// # Shapes
/// - `x`: `[N, C, H, W]`
/// - `weight`: `[O, C / groups, kh, kw]`
/// - `bias`: `[O]`
/// - output: `[N, O, Ho, Wo]`
pub fn conv2d(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    options: ConvOptions<2>,
) -> Tensor<4> {
    let on_gpu =
        crate::batch_norm::uses_gpu_kernels(&x.device(), x.dtype()) && weight.dtype() == DType::F32;
    if on_gpu && is_pointwise(&weight.dims(), &options) {
        return conv1x1_matmul(x, weight, bias);
    }
    if on_gpu && is_direct(&x.dims(), &weight.dims(), &options) {
        let y = Tensor::<4>::from_dispatch(<Dispatch as ConvDirectBackend>::conv_direct(
            x.into_dispatch(),
            weight.into_dispatch(),
        ));
        return with_bias(y, bias);
    }
    let handled = uses_cpu_kernels(&x.device(), x.dtype())
        && weight.dtype() == DType::F32
        && backend::geometry(&x.dims(), &weight.dims(), &options).is_some();
    if !handled {
        return conv2d_reference(x, weight, bias, options);
    }
    let y = Tensor::<4>::from_dispatch(<Dispatch as ConvBackend>::conv2d_cpu(
        x.into_dispatch(),
        weight.into_dispatch(),
        options,
    ));
    with_bias(y, bias)
}

/// `y + bias` per output channel.
fn with_bias(y: Tensor<4>, bias: Option<Tensor<1>>) -> Tensor<4> {
    match bias {
        Some(b) => {
            let o = b.dims()[0];
            y + b.reshape([1, o, 1, 1])
        }
        None => y,
    }
}

/// A 1×1 convolution with stride 1, no padding and one group.
fn is_pointwise(w: &[usize; 4], options: &ConvOptions<2>) -> bool {
    w[2] == 1
        && w[3] == 1
        && options.stride == [1, 1]
        && options.padding.iter().all(|&(a, b)| a == 0 && b == 0)
        && options.groups == 1
}

/// A convolution for [`gpu`]'s direct kernels: a square odd kernel larger than 1×1 with
/// "same" padding, stride 1, no dilation, one group, and at most [`MAX_MACS`]
/// multiply-adds.
fn is_direct(x: &[usize; 4], w: &[usize; 4], options: &ConvOptions<2>) -> bool {
    let k = w[2];
    let p = k.saturating_sub(1) / 2;
    let macs = x[0]
        .saturating_mul(w[0])
        .saturating_mul(x[2] * x[3])
        .saturating_mul(x[1] * k * k);
    k > 1
        && k % 2 == 1
        && w[3] == k
        && x[1] == w[1]
        && options.stride == [1, 1]
        && options.dilation == [1, 1]
        && options.groups == 1
        && options.padding.iter().all(|&(a, b)| a == p && b == p)
        && macs <= MAX_MACS
}

/// A pointwise convolution as one batched matmul on NCHW as it lies, `Y[n] = W · X[n]` with
/// `X[n]` the sample's `[C, H·W]` block (the weight broadcast over the batch): on the GPU,
/// Burn's `conv2d` wraps its gemm in layout copies to and from channels-last (about four
/// dispatches per convolution, forward and backward), the matmul needs none. Autodiff takes
/// the gradients through the matmul (`dX[n] = Wᵀ·dY[n]`, `dW = Σₙ dY[n]·X[n]ᵀ`).
fn conv1x1_matmul(x: Tensor<4>, weight: Tensor<4>, bias: Option<Tensor<1>>) -> Tensor<4> {
    let [n, c, h, w] = x.dims();
    let o = weight.dims()[0];
    let y = weight
        .reshape([1, o, c])
        .matmul(x.reshape([n, c, h * w]))
        .reshape([n, o, h, w]);
    with_bias(y, bias)
}

#[cfg(test)]
mod tests {
    use super::switch_on;

    #[test]
    fn the_environment_switch_reads_off_values_only() {
        for off in ["0", "off", "OFF", "false", " False "] {
            assert!(!switch_on(Some(off)), "{off:?} switches the kernels off");
        }
        for on in [None, Some("1"), Some("on"), Some(""), Some("yes")] {
            assert!(switch_on(on), "{on:?} leaves the kernels on");
        }
    }
}
