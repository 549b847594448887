//! petal's integration tests: one binary (one link of Burn, shared shader/autotune caches).
//!
//! Fixtures in `tests/fixtures/` come from `scripts/make_fixtures.py` (PyTorch +
//! torchvision). Tests named `*_wgpu` run on a wgpu adapter (lavapipe in CI) and **fail**
//! when there is none: they are never skipped.

mod adamw;
mod amp;
mod augment;
mod common;
mod concat_pool;
mod contract;
mod cpu_kernels;
mod device_data;
mod ema;
mod export;
mod folder;
mod onnx;
mod parity;
mod preprocess;
mod recipe;
mod tensorboard;
mod trainer;
mod weights;
mod zoo;
