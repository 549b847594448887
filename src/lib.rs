//! # petal
//!
//! GPU-native fine-tuning of image classifiers in Rust, on Burn + wgpu. This facade
//! re-exports the workspace crates:
//!
//! - [`models`] (`petal-core`): torchvision-exact DenseNet / MobileNetV2, the concat-pool
//!   head, `Classifier`, torchvision weight import, device selection.
//! - [`kernels`] (`petal-kernels`): custom ops with stock-op references.
//! - [`data`] (`petal-data`): decoding and torchvision-exact preprocessing.
//! - [`trainer`] (`petal-trainer`): the fine-tune recipe.
#![warn(missing_docs)]

pub use petal_core as models;
pub use petal_data as data;
pub use petal_kernels as kernels;
pub use petal_trainer as trainer;

pub use petal_core::{Classifier, ClassifierConfig};
