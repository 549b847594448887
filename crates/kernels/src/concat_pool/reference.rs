//! Stock-op reference of concat-pool: the oracle for the fused kernel and the CPU path.

use super::PoolOrder;
use burn::tensor::Tensor;

/// Global average ‖ global max pooling over H×W, built from stock Burn ops
/// (Burn 0.22 has no adaptive max pool, so both halves reduce a `[N, C, H·W]` view).
///
/// # Shapes
/// - `x`: `[N, C, H, W]`
/// - output: `[N, 2C]`, halves ordered as `order` says.
///
/// # Panics
/// If `H·W` is zero.
pub fn concat_pool_reference(x: Tensor<4>, order: PoolOrder) -> Tensor<2> {
    let [n, c, h, w] = x.dims();
    assert!(
        h * w > 0,
        "concat_pool: spatial size must be non-empty, got H={h}, W={w}"
    );
    let flat: Tensor<3> = x.reshape([n, c, h * w]);
    let avg = flat.clone().mean_dim(2);
    let max = flat.max_dim(2);
    let parts = match order {
        PoolOrder::AvgMax => vec![avg, max],
        PoolOrder::MaxAvg => vec![max, avg],
    };
    Tensor::cat(parts, 1).reshape([n, 2 * c])
}
