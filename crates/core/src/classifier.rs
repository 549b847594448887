//! `Classifier = backbone + head`, its configuration, and layer groups for freezing and
//! discriminative learning rates (timm's `group_matcher`, fastai's `_densenet_split`).

use crate::densenet::{DenseNet, DenseNetConfig};
use crate::error::CoreError;
use crate::head::{ConcatPoolHead, ConcatPoolHeadConfig, LinearHead, LinearHeadConfig, PoolOrder};
use crate::mobilenet_v2::{MobileNetV2, MobileNetV2Config};
use burn::module::{Module, ModuleVisitor, Param, ParamGroup};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

/// Architecture names `--arch` accepts (besides `auto`).
pub const ARCH_NAMES: [&str; 5] = [
    "densenet121",
    "densenet161",
    "densenet169",
    "densenet201",
    "mobilenet_v2",
];

/// A backbone configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "arch", rename_all = "snake_case")]
pub enum BackboneConfig {
    /// A DenseNet (any growth rate / block layout).
    DenseNet(DenseNetConfig),
    /// A MobileNetV2 (any width multiplier).
    MobileNetV2(MobileNetV2Config),
}

impl BackboneConfig {
    /// The preset called `name` (one of [`ARCH_NAMES`]).
    pub fn from_name(name: &str) -> Result<Self, CoreError> {
        Ok(match name {
            "densenet121" => Self::DenseNet(DenseNetConfig::densenet121()),
            "densenet161" => Self::DenseNet(DenseNetConfig::densenet161()),
            "densenet169" => Self::DenseNet(DenseNetConfig::densenet169()),
            "densenet201" => Self::DenseNet(DenseNetConfig::densenet201()),
            "mobilenet_v2" | "mobilenetv2" => Self::MobileNetV2(MobileNetV2Config::mobilenet_v2()),
            other => {
                return Err(CoreError::UnknownArch {
                    name: other.to_string(),
                    known: ARCH_NAMES.join(", "),
                });
            }
        })
    }

    /// A short human-readable name (`densenet161`, `densenet(k=8, blocks=[2, 2], init=16)`, …).
    pub fn name(&self) -> String {
        for n in ARCH_NAMES {
            if Self::from_name(n).ok().as_ref() == Some(self) {
                return n.to_string();
            }
        }
        match self {
            Self::DenseNet(c) => format!(
                "densenet(k={}, blocks={:?}, init={}, bn_size={})",
                c.growth_rate, c.block_config, c.num_init_features, c.bn_size
            ),
            Self::MobileNetV2(c) => format!("mobilenet_v2(width={})", c.width_mult),
        }
    }

    /// Channels of the backbone's feature map.
    pub fn num_features(&self) -> usize {
        match self {
            Self::DenseNet(c) => c.num_features(),
            Self::MobileNetV2(c) => c.num_features(),
        }
    }

    /// By how much the backbone downsamples (the feature map of an `S × S` input is about
    /// `S / stride` wide): the smallest input it takes.
    pub fn output_stride(&self) -> usize {
        match self {
            Self::DenseNet(c) => 4 << c.block_config.len().saturating_sub(1),
            Self::MobileNetV2(_) => 32,
        }
    }

    /// Builds the backbone.
    pub fn init(&self, device: &Device) -> Backbone {
        match self {
            Self::DenseNet(c) => Backbone::DenseNet(c.init(device)),
            Self::MobileNetV2(c) => Backbone::MobileNetV2(c.init(device)),
        }
    }

    /// The linear head torchvision gives this architecture (dropout 0.2 for MobileNetV2).
    pub fn torchvision_head(&self) -> HeadConfig {
        match self {
            Self::DenseNet(_) => HeadConfig::Linear { dropout: 0.0 },
            Self::MobileNetV2(_) => HeadConfig::Linear { dropout: 0.2 },
        }
    }
}

/// A head configuration (its input width comes from the backbone).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "head", rename_all = "snake_case")]
pub enum HeadConfig {
    /// The seed's concat-pool head.
    ConcatPool {
        /// Hidden widths (default `[1024]`).
        hidden: Vec<usize>,
        /// Dropouts: one for all, or one per linear layer (default `[0.35]`).
        dropout: Vec<f64>,
        /// Pool order (default avg then max).
        pool_order: PoolOrder,
    },
    /// torchvision's average-pool + linear classifier.
    Linear {
        /// Dropout before the linear layer.
        dropout: f64,
    },
}

impl HeadConfig {
    /// The seed article's head: one hidden layer of 1024, dropout 0.35, avg then max.
    pub fn seed() -> Self {
        Self::ConcatPool {
            hidden: vec![1024],
            dropout: vec![0.35],
            pool_order: PoolOrder::AvgMax,
        }
    }
}

impl Default for HeadConfig {
    fn default() -> Self {
        Self::seed()
    }
}

/// [`Classifier`] configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassifierConfig {
    /// The backbone.
    pub backbone: BackboneConfig,
    /// The head.
    pub head: HeadConfig,
    /// Number of output classes.
    pub num_classes: usize,
}

impl ClassifierConfig {
    /// A classifier of `backbone` with `head` predicting `num_classes` classes.
    pub fn new(backbone: BackboneConfig, head: HeadConfig, num_classes: usize) -> Self {
        Self {
            backbone,
            head,
            num_classes,
        }
    }

    /// torchvision's own model: the backbone with its linear classifier.
    pub fn torchvision(backbone: BackboneConfig, num_classes: usize) -> Self {
        let head = backbone.torchvision_head();
        Self::new(backbone, head, num_classes)
    }

    /// Builds the classifier with freshly initialised weights.
    ///
    /// # Panics
    /// If `num_classes` is zero.
    pub fn init(&self, device: &Device) -> Classifier {
        assert!(self.num_classes > 0, "Classifier: num_classes must be > 0");
        let num_features = self.backbone.num_features();
        let head = match &self.head {
            HeadConfig::ConcatPool {
                hidden,
                dropout,
                pool_order,
            } => Head::ConcatPool(
                ConcatPoolHeadConfig::new(num_features, self.num_classes)
                    .with_hidden(hidden.clone())
                    .with_dropout(dropout.clone())
                    .with_pool_order(*pool_order)
                    .init(device),
            ),
            HeadConfig::Linear { dropout } => Head::Linear(
                LinearHeadConfig::new(num_features, self.num_classes)
                    .with_dropout(*dropout)
                    .init(device),
            ),
        };
        Classifier {
            backbone: self.backbone.init(device),
            head,
        }
    }
}

/// A backbone: everything up to the feature map.
#[derive(Module, Debug)]
pub enum Backbone {
    /// DenseNet-121/161/169/201 or custom.
    DenseNet(DenseNet),
    /// MobileNetV2.
    MobileNetV2(MobileNetV2),
}

impl Backbone {
    /// Channels of the feature map (timm's `num_features()`).
    pub fn num_features(&self) -> usize {
        match self {
            Self::DenseNet(m) => m.num_features(),
            Self::MobileNetV2(m) => m.num_features(),
        }
    }

    /// # Shapes
    /// - `x`: `[N, 3, H, W]` normalised images
    /// - output: `[N, num_features, H', W']`
    pub fn forward_features(&self, x: Tensor<4>) -> Tensor<4> {
        match self {
            Self::DenseNet(m) => m.forward_features(x),
            Self::MobileNetV2(m) => m.forward_features(x),
        }
    }

    /// Layer groups, input side first: DenseNet `stem+block1+block2 | block3+block4+norm5`
    /// (fastai's `_densenet_split`: the first half of the blocks with their transitions,
    /// then the rest); MobileNetV2 `features.0–8 | features.9–18`.
    pub fn layer_groups(&self) -> Vec<LayerGroup> {
        match self {
            Self::DenseNet(m) => {
                let k = m.blocks.len().div_ceil(2);
                let mut g0 = ids(&m.conv0).fuse(&ids(&m.norm0));
                for b in &m.blocks[..k] {
                    g0 = g0.fuse(&ids(b));
                }
                for t in &m.transitions[..k - 1] {
                    g0 = g0.fuse(&ids(t));
                }
                let mut g1 = ids(&m.norm5);
                for b in &m.blocks[k..] {
                    g1 = g1.fuse(&ids(b));
                }
                for t in &m.transitions[k - 1..] {
                    g1 = g1.fuse(&ids(t));
                }
                let name = |r: std::ops::Range<usize>| {
                    r.map(|i| format!("block{}", i + 1))
                        .collect::<Vec<_>>()
                        .join("+")
                };
                vec![
                    LayerGroup::new(format!("stem+{}", name(0..k)), g0),
                    LayerGroup::new(format!("{}+norm5", name(k..m.blocks.len())), g1),
                ]
            }
            Self::MobileNetV2(m) => {
                let k = m.blocks.len() / 2;
                let mut g0 = ids(&m.stem);
                for b in &m.blocks[..k] {
                    g0 = g0.fuse(&ids(b));
                }
                let mut g1 = ids(&m.last);
                for b in &m.blocks[k..] {
                    g1 = g1.fuse(&ids(b));
                }
                vec![
                    LayerGroup::new(format!("features.0-{k}"), g0),
                    LayerGroup::new(format!("features.{}-{}", k + 1, m.blocks.len() + 1), g1),
                ]
            }
        }
    }
}

fn ids<M: Module>(m: &M) -> ParamGroup {
    ParamGroup::ids_from_module(m.clone())
}

/// A named set of parameters that is frozen / unfrozen together and shares a learning rate.
#[derive(Clone, Debug)]
pub struct LayerGroup {
    /// Human-readable name (`stem+block1+block2`, `head`, …).
    pub name: String,
    /// The parameters (and module flags such as BatchNorm's training switch) of the group.
    pub params: ParamGroup,
}

impl LayerGroup {
    fn new(name: String, params: ParamGroup) -> Self {
        Self { name, params }
    }

    /// Number of learnable parameters of `model` in this group (BatchNorm running
    /// statistics are buffers, not parameters, as in PyTorch).
    pub fn num_params<M: Module>(&self, model: &M) -> usize {
        count_parameters(model, Some(&self.params))
    }
}

/// Number of learnable parameters (what PyTorch's `sum(p.numel() for p in m.parameters())`
/// counts): every float parameter except BatchNorm's running statistics, which are buffers.
/// Burn's own `Module::num_params` counts those too.
pub fn num_parameters<M: Module>(model: &M) -> usize {
    count_parameters(model, None)
}

fn count_parameters<M: Module>(model: &M, group: Option<&ParamGroup>) -> usize {
    struct Count<'a> {
        group: Option<&'a ParamGroup>,
        field: Vec<String>,
        n: usize,
    }
    impl ModuleVisitor for Count<'_> {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.field.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.field.pop();
        }
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            let buffer = matches!(
                self.field.last().map(String::as_str),
                Some("running_mean" | "running_var")
            );
            if !buffer && self.group.is_none_or(|g| g.matches(&p.id, None)) {
                self.n += p.lazy_shape().num_elements();
            }
        }
    }
    let mut c = Count {
        group,
        field: Vec::new(),
        n: 0,
    };
    model.visit(&mut c);
    c.n
}

/// A head: feature map → logits.
// Built once per model; boxing the variants would only add an indirection to the module tree.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Head {
    /// The seed's concat-pool head.
    ConcatPool(ConcatPoolHead),
    /// torchvision's average-pool + linear classifier.
    Linear(LinearHead),
}

impl Head {
    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        match self {
            Self::ConcatPool(h) => h.num_classes(),
            Self::Linear(h) => h.num_classes(),
        }
    }

    /// # Shapes
    /// - `features`: `[N, C, H, W]`
    /// - output: `[N, classes]`
    pub fn forward(&self, features: Tensor<4>) -> Tensor<2> {
        match self {
            Self::ConcatPool(h) => h.forward(features),
            Self::Linear(h) => h.forward(features),
        }
    }
}

/// An image classifier: a pretrained-style backbone and a head (timm's
/// `forward_features` / `forward_head` split).
#[derive(Module, Debug)]
pub struct Classifier {
    /// The feature extractor.
    pub backbone: Backbone,
    /// The classifier head.
    pub head: Head,
}

impl Classifier {
    /// Channels of the backbone's feature map.
    pub fn num_features(&self) -> usize {
        self.backbone.num_features()
    }

    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.head.num_classes()
    }

    /// Number of learnable parameters, as PyTorch counts them (see [`num_parameters`]).
    pub fn num_parameters(&self) -> usize {
        num_parameters(self)
    }

    /// # Shapes
    /// - `x`: `[N, 3, H, W]` normalised images
    /// - output: `[N, num_features, H', W']`
    pub fn forward_features(&self, x: Tensor<4>) -> Tensor<4> {
        self.backbone.forward_features(x)
    }

    /// # Shapes
    /// - `features`: `[N, num_features, H', W']`
    /// - output: `[N, classes]` logits
    pub fn forward_head(&self, features: Tensor<4>) -> Tensor<2> {
        self.head.forward(features)
    }

    /// # Shapes
    /// - `x`: `[N, 3, H, W]` normalised images
    /// - output: `[N, classes]` logits
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.forward_head(self.forward_features(x))
    }

    /// Layer groups, input side first, the head last: the units of freezing and of
    /// discriminative learning rates.
    pub fn layer_groups(&self) -> Vec<LayerGroup> {
        let mut groups = self.backbone.layer_groups();
        groups.push(LayerGroup::new(
            "head".to_string(),
            ParamGroup::ids_from_module(self.head.clone()),
        ));
        groups
    }

    /// Freezes the whole backbone (gradients off and BatchNorm statistics frozen).
    pub fn freeze_backbone(self) -> Self {
        let mut groups = self.backbone.layer_groups().into_iter();
        let mut all = groups.next().expect("a backbone has layer groups").params;
        for g in groups {
            all = all.fuse(&g.params);
        }
        self.freeze_group(all)
    }
}
