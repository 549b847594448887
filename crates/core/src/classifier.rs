//! `Classifier = backbone + head`, its configuration, and layer groups for freezing and
//! discriminative learning rates (timm's `group_matcher`, fastai's `_densenet_split`).

pub use crate::backbone::{Backbone, BackboneConfig};
use crate::head::{ConcatPoolHead, ConcatPoolHeadConfig, LinearHead, LinearHeadConfig, PoolOrder};
use burn::module::{Module, ModuleVisitor, Param, ParamGroup};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

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
    /// torchvision's classifier: average pool → [LayerNorm (ConvNeXt)] → [Linear →
    /// Hardswish (MobileNetV3)] → Dropout → Linear.
    Linear {
        /// Dropout before the last linear layer.
        dropout: f64,
        /// A LayerNorm over the pooled channels first (ConvNeXt's `classifier.0`, eps 1e-6).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        layer_norm: bool,
        /// A hidden Linear → Hardswish layer of this width (MobileNetV3's `classifier.0`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hidden: Option<usize>,
    },
}

impl HeadConfig {
    /// torchvision's plain classifier: average pool → Dropout(`dropout`) → Linear.
    pub fn linear(dropout: f64) -> Self {
        Self::Linear {
            dropout,
            layer_norm: false,
            hidden: None,
        }
    }

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
            HeadConfig::Linear {
                dropout,
                layer_norm,
                hidden,
            } => Head::Linear(
                LinearHeadConfig::new(num_features, self.num_classes)
                    .with_dropout(*dropout)
                    .with_layer_norm(*layer_norm)
                    .with_hidden(*hidden)
                    .init(device),
            ),
        };
        Classifier {
            backbone: self.backbone.init(device),
            head,
        }
    }
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
    pub(crate) fn new(name: impl Into<String>, params: ParamGroup) -> Self {
        let name = name.into();
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
