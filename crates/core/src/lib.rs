//! # petal-core
//!
//! The model half of petal: torchvision-exact backbones as Burn modules
//! ([`densenet::DenseNet`] 121/161/169/201 and custom, [`mobilenet_v2::MobileNetV2`]),
//! the seed article's concat-pool head and torchvision's linear head ([`head`]),
//! [`Classifier`] = backbone + head with layer groups for freezing and discriminative
//! learning rates, torchvision `.pth` import with architecture inference ([`weights`]),
//! compute-device selection ([`device`]) and the ImageNet class names ([`imagenet`]).
#![warn(missing_docs)]

pub mod classifier;
pub mod densenet;
pub mod device;
pub mod error;
pub mod head;
pub mod imagenet;
pub mod inference;
pub mod mobilenet_v2;
pub mod weights;

pub use classifier::{
    ARCH_NAMES, Backbone, BackboneConfig, Classifier, ClassifierConfig, Head, HeadConfig,
    LayerGroup,
};
pub use error::CoreError;
