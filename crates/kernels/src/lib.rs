//! # petal-kernels
//!
//! Custom ops for petal, each with a **reference** written in stock Burn ops that runs on
//! every device (Flex on the CPU included) and serves as the test oracle for the fused
//! WGSL kernels (`kernels/*.wgsl` at the workspace root).
//!
//! | op | reference | fused WGSL |
//! |---|---|---|
//! | concat-pool (avg ‖ max over H×W) | [`concat_pool::concat_pool_reference`] | issue #3 |
#![warn(missing_docs)]

pub mod concat_pool;
