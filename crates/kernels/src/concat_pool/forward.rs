//! Launch of `kernels/concat_pool_forward{,_small}.wgsl`.

use super::kernel::{Pass, run};
use burn::backend::wgpu::{CubeTensor, into_contiguous};
use burn::tensor::Shape;

/// `[N, C, H, W]` → `[N, 2C]` (avg then max).
///
/// # Panics
/// If `x` is not 4-D or has an empty plane.
pub fn launch(x: CubeTensor) -> CubeTensor {
    let x = into_contiguous(x);
    let dims = x.meta.shape().to_vec();
    assert!(
        dims.len() == 4 && dims[2] * dims[3] > 0,
        "concat_pool: expected [N, C, H, W] with H·W > 0, got {dims:?}"
    );
    let (n, c, hw) = (dims[0], dims[1], dims[2] * dims[3]);
    run(Pass::Forward, &[&x], Shape::new([n, 2 * c]), n * c, hw, c)
}
