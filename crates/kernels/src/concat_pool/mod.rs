//! Concat-pool: global average pooling and global max pooling over H×W, concatenated on
//! the channel axis — fastai's `AdaptiveConcatPool2d`, timm's `catavgmax`.
//!
//! petal's default order is **avg then max** (as the seed article and timm); fastai's is
//! max then avg. [`PoolOrder`] selects either.
//!
//! On a wgpu device the op is one fused WGSL kernel per pass
//! (`kernels/concat_pool_{common,forward,backward}.wgsl`): one workgroup reads each
//! `(n, c)` plane once and reduces sum and max (with its index) together in shared memory;
//! the backward recomputes the argmax and writes `d avg / (H·W)` everywhere plus `d max` at
//! the argmax (first index on ties, NaN propagated). It is a Burn backend extension, so it
//! runs under `Autodiff` (custom backward) and Burn's fusion (with burn's `fusion` feature,
//! which petal enables, the wgpu device *is* `Fusion<CubeBackend>`, so every wgpu test goes
//! through the generated fusion path). Planes of H·W ≤ 512 get one invocation each; larger
//! ones a 256-wide workgroup reducing in shared memory. Everywhere else — Flex on the
//! CPU, or a dtype the kernel lacks — [`concat_pool_reference`] runs instead; it is also the
//! tests' oracle.

mod backend;
mod backward;
mod forward;
mod kernel;
mod reference;

pub use backend::ConcatPoolBackend;
#[doc(hidden)]
pub use kernel::set_grid_row_limit;
pub use reference::concat_pool_reference;

use burn::backend::Dispatch;
use burn::tensor::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

/// Which pooled half comes first in the concatenated `[N, 2C]` output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum PoolOrder {
    /// `[avg, max]`: the seed article's `torch.cat((ap, mp), dim=1)` and timm's `catavgmax`.
    #[default]
    AvgMax,
    /// `[max, avg]`: fastai's `AdaptiveConcatPool2d`.
    MaxAvg,
}

/// Whether [`concat_pool`] runs the fused kernel for a tensor of `dtype` on `device`
/// (a CubeCL device — petal compiles only the wgpu runtime — with f32 or f16).
pub fn uses_fused_kernel(device: &Device, dtype: DType) -> bool {
    matches!(dtype, DType::F32 | DType::F16) && crate::transfer::is_gpu(device)
}

/// Concat-pool on whatever device `x` lives on: the fused kernel on wgpu, the stock-op
/// reference elsewhere. Differentiable on autodiff devices.
///
/// # Shapes
/// - `x`: `[N, C, H, W]`
/// - output: `[N, 2C]`, halves ordered as `order` says.
///
/// # Panics
/// If `H·W` is zero.
pub fn concat_pool(x: Tensor<4>, order: PoolOrder) -> Tensor<2> {
    if !uses_fused_kernel(&x.device(), x.dtype()) {
        return concat_pool_reference(x, order);
    }
    let [n, c, h, w] = x.dims();
    assert!(
        h * w > 0,
        "concat_pool: spatial size must be non-empty, got H={h}, W={w}"
    );
    let out = concat_pool_fused(x);
    match order {
        PoolOrder::AvgMax => out,
        PoolOrder::MaxAvg => Tensor::cat(
            vec![out.clone().slice([0..n, c..2 * c]), out.slice([0..n, 0..c])],
            1,
        ),
    }
}

/// The fused kernel itself (avg then max). Only for wgpu devices: use [`concat_pool`].
///
/// # Shapes
/// `[N, C, H, W]` → `[N, 2C]`
pub fn concat_pool_fused(x: Tensor<4>) -> Tensor<2> {
    Tensor::from_dispatch(<Dispatch as ConcatPoolBackend>::concat_pool_fused(
        x.into_dispatch(),
    ))
}
