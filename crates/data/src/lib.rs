//! # petal-data
//!
//! Image decoding ([`decode`]) and torchvision's eval preprocessing ([`transform`]):
//! resize of the shorter side with Pillow's antialiased bilinear filter (bit-exact with
//! `torchvision.transforms.Resize` on PIL images), center crop (torchvision's
//! half-to-even offset rounding and zero padding), `ToTensor` and ImageNet `Normalize`.
#![warn(missing_docs)]

pub mod decode;
pub mod error;
pub mod folder;
pub mod oxford;
pub mod transform;

pub use decode::{DEFAULT_MAX_PIXELS, decode_rgb8};
pub use error::DataError;
pub use folder::{ClassList, ImageFolder, Sample, ScanOptions, ScanWarning};
pub use oxford::Oxford102;
pub use transform::{EvalTransform, IMAGENET_MEAN, IMAGENET_STD};
