//! # petal-kernels
//!
//! Custom ops for petal. Each has a hand-written WGSL kernel (`kernels/*.wgsl` at the
//! workspace root) wired into Burn as a backend extension — so it works on wgpu, under
//! autodiff and under Burn's fusion — and a **reference** written in stock Burn ops that
//! runs on every device (Flex on the CPU included) and serves as the test oracle.
//!
//! | op | public function | reference | WGSL |
//! |---|---|---|---|
//! | concat-pool (avg ‖ max over H×W) | [`concat_pool::concat_pool`] | [`concat_pool::concat_pool_reference`] | `concat_pool_{common,forward,backward}.wgsl` |
//! | fused augmentation (uint8 images → normalised NCHW: crop, rotation, flip, colour jitter, normalise) | [`augment::augment_batch`] | [`augment::augment_reference`] (CPU, rayon; not stock ops) and [`augment::augment_stock`] (stock ops, the bench baseline) | `augment.wgsl` |
#![warn(missing_docs)]

pub mod augment;
pub mod concat_pool;
