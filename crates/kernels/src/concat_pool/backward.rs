//! Launch of `kernels/concat_pool_backward{,_small}.wgsl`.

use super::kernel::{Pass, run};
use burn::backend::wgpu::{CubeTensor, into_contiguous};

/// Input gradient: `x` `[N, C, H, W]`, `grad` `[N, 2C]` (avg then max) → `[N, C, H, W]`.
///
/// # Panics
/// If the shapes do not fit.
pub fn launch(x: CubeTensor, grad: CubeTensor) -> CubeTensor {
    let x = into_contiguous(x);
    let grad = into_contiguous(grad);
    let dims = x.meta.shape().to_vec();
    let gdims = grad.meta.shape().to_vec();
    assert!(
        dims.len() == 4 && gdims == [dims[0], 2 * dims[1]],
        "concat_pool backward: x {dims:?} and grad {gdims:?} do not fit"
    );
    let (n, c, hw) = (dims[0], dims[1], dims[2] * dims[3]);
    let shape = x.meta.shape().clone();
    run(Pass::Backward, &[&x, &grad], shape, n * c, hw, c)
}
