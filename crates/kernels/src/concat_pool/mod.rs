//! Concat-pool: global average pooling and global max pooling over H×W, concatenated on
//! the channel axis — fastai's `AdaptiveConcatPool2d`, timm's `catavgmax`.
//!
//! petal's default order is **avg then max** (as the seed article and timm); fastai's is
//! max then avg. [`PoolOrder`] selects either.

mod reference;

pub use reference::concat_pool_reference;

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

/// Concat-pool on whatever device `x` lives on.
///
/// Until the fused WGSL kernel lands this is the stock-op reference on every device.
///
/// # Shapes
/// - `x`: `[N, C, H, W]`
/// - output: `[N, 2C]`
pub fn concat_pool(x: burn::tensor::Tensor<4>, order: PoolOrder) -> burn::tensor::Tensor<2> {
    concat_pool_reference(x, order)
}
