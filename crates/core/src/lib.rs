//! # petal-core
//!
//! The model half of petal: torchvision-exact backbones as Burn modules, one file per
//! family behind the [`backbone`] registry — [`densenet`] (121/161/169/201),
//! [`mobilenet_v2`], [`resnet`] (ResNet-18…152, ResNeXt, Wide ResNet), [`efficientnet`]
//! (B0–B7, V2 S/M/L), [`convnext`] (tiny…large), [`mobilenet_v3`] (large/small) — built
//! from shared [`layers`]; the seed article's concat-pool head and torchvision's heads
//! ([`head`]); [`Classifier`] = backbone + head with layer groups for freezing and
//! discriminative learning rates; torchvision `.pth` / `.safetensors` import with
//! architecture inference ([`weights`]) and export in torchvision's names ([`export`]) and as ONNX ([`onnx`]);
//! compute-device selection ([`device`]) and the ImageNet class names ([`imagenet`]).
#![warn(missing_docs)]

pub mod backbone;
pub mod classifier;
pub mod convnext;
pub mod densenet;
pub mod device;
pub mod efficientnet;
pub mod error;
pub mod export;
pub mod head;
pub mod imagenet;
pub mod inference;
pub mod layers;
pub mod mobilenet_v2;
pub mod mobilenet_v3;
pub mod onnx;
pub mod resnet;
pub mod weights;

pub use backbone::{Family, FamilyConfig, FeatureExtractor, arch_names};
pub use classifier::{
    Backbone, BackboneConfig, Classifier, ClassifierConfig, Head, HeadConfig, LayerGroup,
};
pub use error::CoreError;
