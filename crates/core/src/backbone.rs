//! The backbone registry: every model family petal knows, behind two small traits.
//!
//! A family is **one file** (`densenet.rs`, `resnet.rs`, …) holding everything specific to
//! it: its configuration and presets, its module and `forward_features`, its layer groups
//! (timm's `group_matcher`), its torchvision key names in both directions and how to read
//! its configuration back from a state dict. It implements [`FamilyConfig`] (and so
//! [`Family`]) for its configuration and [`FeatureExtractor`] for its module. Adding a
//! family is adding that file and one line to the `families!` list below; `Classifier`,
//! weight import, the trainer and the CLI only see [`BackboneConfig`] / [`Backbone`].

use crate::classifier::{HeadConfig, LayerGroup};
use crate::convnext::{ConvNeXt, ConvNeXtConfig};
use crate::densenet::{DenseNet, DenseNetConfig};
use crate::efficientnet::{EfficientNet, EfficientNetConfig};
use crate::error::CoreError;
use crate::mobilenet_v2::{MobileNetV2, MobileNetV2Config};
use crate::mobilenet_v3::{MobileNetV3, MobileNetV3Config};
use crate::onnx::OnnxGraph;
use crate::resnet::{ResNet, ResNetConfig};
use crate::weights::StateDict;
use burn::module::{Module, ParamGroup};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

/// What petal needs to know about a backbone configuration, whatever its family
/// (object safe: reached through [`BackboneConfig::family`]).
pub trait Family: std::fmt::Debug {
    /// A description of a configuration that is not one of the presets
    /// (`resnet(bottleneck, layers=[1, 1, 2, 1], …)`).
    fn describe(&self) -> String;

    /// Whether the network can be built: every size, rate and probability in range (the
    /// message names the field and its value). `init` panics where this fails; the trainer
    /// and weight import call it first.
    fn check(&self) -> Result<(), String>;

    /// Channels of the feature map `forward_features` returns.
    fn num_features(&self) -> usize;

    /// By how much the backbone downsamples (the feature map of an `S × S` input is about
    /// `S / stride` wide): the smallest input it takes.
    fn output_stride(&self) -> usize {
        32
    }

    /// The head torchvision gives this architecture (average pool + linear, with the
    /// family's dropout, ConvNeXt's LayerNorm, MobileNetV3's hidden layer).
    fn torchvision_head(&self) -> HeadConfig;

    /// Where torchvision keeps that head's layers: `(petal path under head., torchvision
    /// prefix)` pairs, e.g. `("fc", "classifier.1")` for MobileNetV2, `("fc", "fc")` for ResNet.
    fn torchvision_head_keys(&self) -> &'static [(&'static str, &'static str)];

    /// petal's module path (under `backbone.`, with torchvision's parameter name) of the
    /// torchvision state-dict key `key` (`layer2.0.downsample.1.running_var` →
    /// `stages.1.0.downsample.bn.running_var`); `None` if the key is not part of this
    /// backbone. `sd` is there for layouts the key alone does not decide.
    fn import_key(&self, key: &str, sd: &StateDict) -> Option<String>;

    /// The inverse of [`import_key`](Self::import_key) for a module path without its
    /// parameter name (`stages.1.0.downsample.bn` → `layer2.0.downsample.1`).
    fn export_key(&self, path: &str) -> Option<String>;
}

/// The static side of a family: presets, detection and inference from a state dict, and
/// building the module.
pub trait FamilyConfig: Family + Clone + PartialEq + Sized {
    /// The module this configuration builds.
    type Module: FeatureExtractor;

    /// The family's name (`resnet`), for messages.
    const NAME: &'static str;

    /// torchvision's presets by name, as `--arch` accepts them.
    fn presets() -> Vec<(&'static str, Self)>;

    /// Other spellings `--arch` accepts: `(alias, preset name)`.
    fn aliases() -> &'static [(&'static str, &'static str)] {
        &[]
    }

    /// The key whose presence says a state dict holds this family (for messages).
    const SIGNATURE: &'static str;

    /// Whether `sd` holds a backbone of this family (its key layout, not its sizes).
    fn detect(sd: &StateDict) -> bool;

    /// The configuration `sd` describes (a preset when the sizes are one's), or why none.
    fn infer(sd: &StateDict) -> Result<Self, String>;

    /// Builds the module with torchvision's initialisation.
    fn build(&self, device: &Device) -> Self::Module;

    /// Whether a state dict (seen through `has_prefix`) uses timm's spelling of this family
    /// (petal then renames its keys to torchvision's on reading). Default: no timm spelling.
    fn timm_detect(_has_prefix: &dyn Fn(&str) -> bool) -> bool {
        false
    }

    /// torchvision's key — and shape, where timm's differs — for timm's `key` of shape
    /// `shape`; `None` for a key without a counterpart (reported as unexpected on loading).
    fn timm_key(
        _key: &str,
        _shape: &[usize],
        _has_prefix: &dyn Fn(&str) -> bool,
    ) -> Option<(String, Option<Vec<usize>>)> {
        None
    }
}

/// Renames a timm key: see [`FamilyConfig::timm_key`].
pub(crate) type TimmRename =
    fn(&str, &[usize], &dyn Fn(&str) -> bool) -> Option<(String, Option<Vec<usize>>)>;

/// What petal needs from a backbone module.
pub trait FeatureExtractor {
    /// Channels of the feature map.
    fn num_features(&self) -> usize;

    /// Everything before the pooling: the map any head sees.
    ///
    /// # Shapes
    /// - `x`: `[N, 3, H, W]` normalised images
    /// - output: `[N, num_features, H', W']`
    fn forward_features(&self, x: Tensor<4>) -> Tensor<4>;

    /// Layer groups, input side first (the units of freezing and discriminative learning
    /// rates; the head is added by `Classifier`).
    fn layer_groups(&self) -> Vec<LayerGroup>;

    /// Appends [`forward_features`](Self::forward_features) in inference mode to an ONNX
    /// graph, reading the value `x`; returns the feature map's name.
    fn to_onnx(&self, g: &mut OnnxGraph, x: &str) -> Result<String, CoreError>;
}

/// The parameter ids of `m` (and its module flags): a layer group's content.
pub(crate) fn ids<M: Module>(m: &M) -> ParamGroup {
    ParamGroup::ids_from_module(m.clone())
}

/// Fuses the ids of several modules into one group.
pub(crate) fn fuse_ids<'a, M: Module + 'a>(
    first: ParamGroup,
    more: impl IntoIterator<Item = &'a M>,
) -> ParamGroup {
    more.into_iter().fold(first, |g, m| g.fuse(&ids(m)))
}

/// Declares the registry: `Variant("serde tag", Config, Module)` per family.
macro_rules! families {
    ($( $(#[doc = $doc:literal])* $variant:ident($tag:literal, $config:ty, $module:ty) ),* $(,)?) => {
        /// A backbone configuration: one variant per model family. Serialised with the tag
        /// `arch` (`{"arch": "resnet", …}`), as `config.json` and checkpoints store it.
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "arch")]
        pub enum BackboneConfig {
            $( $(#[doc = $doc])* #[serde(rename = $tag)] $variant($config), )*
        }

        /// A backbone: everything up to the feature map.
        // Built once per model; boxing would only add an indirection to the module tree.
        #[allow(clippy::large_enum_variant)]
        #[derive(Module, Debug)]
        pub enum Backbone {
            $( $(#[doc = $doc])* $variant($module), )*
        }

        impl BackboneConfig {
            /// The family-specific side of this configuration.
            pub fn family(&self) -> &dyn Family {
                match self { $( Self::$variant(c) => c, )* }
            }

            /// Builds the backbone.
            pub fn init(&self, device: &Device) -> Backbone {
                match self { $( Self::$variant(c) => Backbone::$variant(FamilyConfig::build(c, device)), )* }
            }
        }

        impl Backbone {
            /// The family-specific side of this module.
            pub fn extractor(&self) -> &dyn FeatureExtractor {
                match self { $( Self::$variant(m) => m, )* }
            }
        }

        /// Every preset of every family, in registry order.
        pub fn presets() -> Vec<(&'static str, BackboneConfig)> {
            let mut all = Vec::new();
            $( all.extend(<$config as FamilyConfig>::presets().into_iter().map(|(n, c)| (n, BackboneConfig::$variant(c)))); )*
            all
        }

        fn aliases() -> Vec<(&'static str, &'static str)> {
            let mut all = Vec::new();
            $( all.extend_from_slice(<$config as FamilyConfig>::aliases()); )*
            all
        }

        /// The family whose key layout `sd` has, and its configuration read from the sizes.
        pub(crate) fn infer_backbone(sd: &StateDict) -> Option<(&'static str, Result<BackboneConfig, String>)> {
            $( if <$config as FamilyConfig>::detect(sd) {
                return Some((<$config as FamilyConfig>::NAME, <$config as FamilyConfig>::infer(sd).map(BackboneConfig::$variant)));
            } )*
            None
        }

        /// The family whose timm spelling a state dict uses, and its renaming.
        pub(crate) fn timm_spelling(has_prefix: &dyn Fn(&str) -> bool) -> Option<(&'static str, TimmRename)> {
            $( if <$config as FamilyConfig>::timm_detect(has_prefix) {
                return Some((<$config as FamilyConfig>::NAME, <$config as FamilyConfig>::timm_key));
            } )*
            None
        }

        /// `(family, signature key)` of every family, for "nothing recognised" messages.
        pub(crate) fn signatures() -> Vec<(&'static str, &'static str)> {
            vec![ $( (<$config as FamilyConfig>::NAME, <$config as FamilyConfig>::SIGNATURE), )* ]
        }
    };
}

families! {
    /// DenseNet-121/161/169/201 or custom (`densenet.rs`).
    DenseNet("dense_net", DenseNetConfig, DenseNet),
    /// MobileNetV2 at any width (`mobilenet_v2.rs`).
    MobileNetV2("mobile_net_v2", MobileNetV2Config, MobileNetV2),
    /// ResNet-18…152, ResNeXt, Wide ResNet (`resnet.rs`).
    ResNet("resnet", ResNetConfig, ResNet),
    /// EfficientNet B0–B7 and V2 S/M/L (`efficientnet.rs`).
    EfficientNet("efficientnet", EfficientNetConfig, EfficientNet),
    /// ConvNeXt tiny/small/base/large (`convnext.rs`).
    ConvNeXt("convnext", ConvNeXtConfig, ConvNeXt),
    /// MobileNetV3 large/small (`mobilenet_v3.rs`).
    MobileNetV3("mobilenet_v3", MobileNetV3Config, MobileNetV3),
}

/// Architecture names `--arch` accepts (besides `auto`), in registry order.
pub fn arch_names() -> Vec<&'static str> {
    presets().into_iter().map(|(n, _)| n).collect()
}

impl BackboneConfig {
    /// The preset called `name` (one of [`arch_names`], or an alias such as `mobilenetv2`).
    pub fn from_name(name: &str) -> Result<Self, CoreError> {
        let wanted = aliases()
            .into_iter()
            .find(|(alias, _)| *alias == name)
            .map_or(name, |(_, preset)| preset);
        presets()
            .into_iter()
            .find(|(n, _)| *n == wanted)
            .map(|(_, c)| c)
            .ok_or_else(|| CoreError::UnknownArch {
                name: name.to_string(),
                known: arch_names().join(", "),
            })
    }

    /// The preset's name, or a description of a custom configuration
    /// (`densenet(k=8, blocks=[2, 2], init=16, bn_size=4)`).
    pub fn name(&self) -> String {
        presets()
            .into_iter()
            .find(|(_, c)| c == self)
            .map_or_else(|| self.family().describe(), |(n, _)| n.to_string())
    }

    /// Channels of the backbone's feature map.
    pub fn num_features(&self) -> usize {
        self.family().num_features()
    }

    /// Refuses a configuration that cannot be built (see [`Family::check`]).
    pub fn check(&self) -> Result<(), CoreError> {
        self.family()
            .check()
            .map_err(|reason| CoreError::BadBackbone {
                arch: self.family().describe(),
                reason,
            })
    }

    /// By how much the backbone downsamples: the smallest input it takes.
    pub fn output_stride(&self) -> usize {
        self.family().output_stride()
    }

    /// The head torchvision gives this architecture.
    pub fn torchvision_head(&self) -> HeadConfig {
        self.family().torchvision_head()
    }
}

impl Backbone {
    /// Channels of the feature map (timm's `num_features()`).
    pub fn num_features(&self) -> usize {
        self.extractor().num_features()
    }

    /// # Shapes
    /// - `x`: `[N, 3, H, W]` normalised images
    /// - output: `[N, num_features, H', W']`
    pub fn forward_features(&self, x: Tensor<4>) -> Tensor<4> {
        let [_, c, ..] = x.dims();
        assert_eq!(c, 3, "the backbone expects 3 input channels, got {c}");
        self.extractor().forward_features(x)
    }

    /// Layer groups, input side first (see each family's `layer_groups`).
    pub fn layer_groups(&self) -> Vec<LayerGroup> {
        self.extractor().layer_groups()
    }
}
