//! # petal-kernels
//!
//! Custom ops for petal. Each has a hand-written kernel — WGSL for the GPU (`kernels/*.wgsl`
//! at the workspace root), or Rust for the CPU — wired into Burn as a backend extension, so
//! it works under autodiff (and, for WGSL, under Burn's fusion), and a **reference** in
//! stock Burn ops that runs on every device and serves as the test oracle.
//!
//! | op | public function | reference | kernel |
//! |---|---|---|---|
//! | concat-pool (avg ‖ max over H×W) | [`concat_pool::concat_pool`] | [`concat_pool::concat_pool_reference`] | `concat_pool_{common,forward,backward}.wgsl` |
//! | BatchNorm (+ ReLU or SiLU), training and inference (statistics in one pass per channel, normalise + activation in one, backward in two) — **CPU (Flex)**, and **wgpu** (f32, training: four dispatches per layer) | [`batch_norm::batch_norm`] | [`batch_norm::batch_norm_reference`] (Burn's `batch_norm_train` / `batch_norm`, `relu` / `silu`) | Rust, `batch_norm/cpu.rs`; `batch_norm_{common,stats,forward,backward_sums,backward_input}.wgsl` |
//! | 2-D convolution (forward, input and weight gradients: im2col + one gemm per chunk of samples; stride-1 kernels larger than 1×1 as one gemm per tap on a padded copy, [`conv::shifted`]; depthwise as direct loops) — **CPU (Flex)**; on **wgpu** pointwise convolutions as one batched matmul and small stride-1 "same" convolutions as one direct kernel per pass | [`conv::conv2d`] | [`conv::conv2d_reference`] (Burn's `conv2d`) | Rust, `conv/cpu.rs`, `conv/shifted.rs`; `conv_direct_{common,forward,input_grad,weight_grad}.wgsl` |
//! | fused augmentation (uint8 images → normalised NCHW: crop, rotation, flip, colour jitter, normalise); from a device-resident store: [`augment::augment_resident`] | [`augment::augment_batch`] | [`augment::augment_reference`] (CPU, rayon; not stock ops) and [`augment::augment_stock`] (stock ops, the bench baseline) | `augment.wgsl` |
//! | eval transform (Pillow's antialiased bilinear resize in fixed point, center crop, normalise) — **wgpu** | [`augment::eval_resample`] | the PIL-exact CPU path, `petal_data::transform::EvalTransform::apply` | `eval_resample.wgsl` |
//!
//! The CPU kernels' inner loops are compiled for AVX-512, AVX2+FMA and the baseline and
//! picked at run time (`simd`); [`pool::on_cpu_pool`] runs a CPU training step on rayon's
//! pool; [`profile`] times the CPU kernels per op kind (`bench train-step --profile-ops`);
//! `PETAL_CPU_KERNELS=0` (or [`conv::set_cpu_kernels`]) falls back to Burn's ops.
//! [`dispatch`] counts (and times) the GPU kernel launches of a piece of work
//! (`bench train-step`'s `dispatches_per_step`); [`transfer`] counts the bytes petal uploads
//! to a GPU (`host_to_device_bytes_per_step`) and states a device's buffer limits.
#![warn(missing_docs)]

pub mod augment;
pub mod batch_norm;
pub mod concat_pool;
pub mod conv;
pub mod dispatch;
mod flex;
pub mod pool;
pub mod profile;
mod simd;
pub mod transfer;
