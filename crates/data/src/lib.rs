//! # petal-data
//!
//! - [`decode`]: any common image file to RGB8, with a decompression-bomb guard.
//! - [`transform`]: torchvision's eval preprocessing, bit-exact with PIL: resize of the
//!   shorter side with Pillow's antialiased bilinear filter, center crop (half-to-even
//!   offsets, zero padding), `ToTensor` and ImageNet `Normalize`.
//! - [`folder`]: ImageFolder data sets (natural class order, `cat_to_name.json`, broken
//!   files reported and skipped, seeded stratified split).
//! - [`oxford`]: Oxford 102 Flowers in its native layout with the official splits.
//! - [`synthetic`]: seeded procedural flowers, the built-in data set of a fresh machine.
//! - [`loader`]: packed uint8 batches, decoded in parallel ahead of the training step, or
//!   (`--cache device`) offsets into every image decoded once onto the GPU.
//! - [`augment`]: the training augmentation / eval preprocessing of packed batches as one
//!   fused GPU pass (seeded per-sample parameters; CPU reference off wgpu), and the eval
//!   transform as one GPU pass with Pillow's 8-bit values ([`augment::eval_preprocess`]).
//! - [`mix`]: MixUp / CutMix batch parameters and soft targets (timm's `Mixup`).
#![warn(missing_docs)]

pub mod augment;
pub mod decode;
pub mod error;
pub mod folder;
pub mod loader;
pub mod mix;
pub mod oxford;
pub mod synthetic;
pub mod transform;

pub use augment::{AugmentConfig, Padding, Pipeline};
pub use decode::{Alpha, DEFAULT_MAX_PIXELS, decode_rgb8, decode_rgb8_with};
pub use error::DataError;
pub use folder::{ClassList, ImageFolder, Sample, ScanOptions, ScanWarning, SkipCounts, Skipped};
pub use loader::{Loader, LoaderConfig, PackedBatch, ResidentSummary, Source};
pub use oxford::Oxford102;
pub use synthetic::SyntheticFlowers;
pub use transform::{EvalTransform, IMAGENET_MEAN, IMAGENET_STD};
