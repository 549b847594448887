//! Classifier heads: the seed article's concat-pool head and torchvision's linear head.
//!
//! The concat-pool head (fastai's `create_head`, the seed's `ClassifierNew`) is
//! `concat(avg-pool, max-pool) → flatten → [BatchNorm1d → Dropout → Linear → ReLU]* →
//! BatchNorm1d → Dropout → Linear`. With the defaults (one hidden layer of 1024,
//! dropout 0.35) on DenseNet-161 it is exactly the seed's 4416 → 1024 → classes head.
//! The pooled halves are ordered avg then max ([`PoolOrder::AvgMax`], as the seed and
//! timm); fastai orders max then avg.

use burn::module::Module;
use burn::nn::{
    BatchNorm, BatchNormConfig, Dropout, DropoutConfig, LayerNorm, LayerNormConfig, Linear,
    LinearConfig,
};
use burn::prelude::*;
use burn::tensor::activation::{hard_swish, relu};
pub use petal_kernels::concat_pool::PoolOrder;

/// [`ConcatPoolHead`] configuration.
#[derive(Config, Debug, PartialEq)]
pub struct ConcatPoolHeadConfig {
    /// Channels of the backbone's feature map (`C`; the head's input is `2·C`).
    pub num_features: usize,
    /// Number of output classes.
    pub num_classes: usize,
    /// Widths of the hidden linear layers (the seed: one of 1024).
    #[config(default = "vec![1024]")]
    pub hidden: Vec<usize>,
    /// Dropout before each linear layer: one value for all, or one per linear layer
    /// (`hidden.len() + 1` values). The seed: 0.35.
    #[config(default = "vec![0.35]")]
    pub dropout: Vec<f64>,
    /// Order of the pooled halves.
    #[config(default = "PoolOrder::AvgMax")]
    pub pool_order: PoolOrder,
}

impl ConcatPoolHeadConfig {
    /// Builds the head.
    ///
    /// # Panics
    /// If a width is zero, or `dropout` has neither 1 nor `hidden.len() + 1` values, or a
    /// dropout is outside `[0, 1)`.
    pub fn init(&self, device: &Device) -> ConcatPoolHead {
        let n_linear = self.hidden.len() + 1;
        assert!(
            self.dropout.len() == 1 || self.dropout.len() == n_linear,
            "ConcatPoolHead: dropout needs 1 or {n_linear} values (one per linear layer), got {:?}",
            self.dropout
        );
        assert!(
            self.dropout.iter().all(|p| (0.0..1.0).contains(p)),
            "ConcatPoolHead: every dropout must be in [0, 1), got {:?}",
            self.dropout
        );
        let mut widths = vec![2 * self.num_features];
        widths.extend(&self.hidden);
        widths.push(self.num_classes);
        assert!(
            widths.iter().all(|&w| w > 0),
            "ConcatPoolHead: widths must be > 0, got {widths:?}"
        );
        let blocks = widths
            .windows(2)
            .enumerate()
            .map(|(i, w)| HeadBlock {
                bn: BatchNormConfig::new(w[0]).init(device),
                dropout: DropoutConfig::new(self.dropout[i.min(self.dropout.len() - 1)]).init(),
                fc: LinearConfig::new(w[0], w[1]).init(device),
            })
            .collect();
        ConcatPoolHead {
            blocks,
            pool_order: self.pool_order,
        }
    }
}

/// `BatchNorm1d → Dropout → Linear`, one stage of the concat-pool head.
#[derive(Module, Debug)]
pub struct HeadBlock {
    /// BatchNorm1d on the stage input (the seed's `bn0`, `bn1`).
    pub bn: BatchNorm,
    /// Dropout (the seed's `dropout0`, `dropout1`).
    pub dropout: Dropout,
    /// Linear layer (the seed's `fc1`, `fc2`).
    pub fc: Linear,
}

/// The concat-pool head. Stages are separated by ReLU; the last stage's output is the logits.
#[derive(Module, Debug)]
pub struct ConcatPoolHead {
    /// The stages, input side first.
    pub blocks: Vec<HeadBlock>,
    /// Order of the pooled halves.
    #[module(skip)]
    pub pool_order: PoolOrder,
}

impl ConcatPoolHead {
    /// Number of classes the head predicts.
    pub fn num_classes(&self) -> usize {
        self.blocks
            .last()
            .map(|b| b.fc.weight.shape().dims::<2>()[1])
            .unwrap_or(0)
    }

    /// # Shapes
    /// - `features`: `[N, C, H, W]`
    /// - output: `[N, classes]` logits
    pub fn forward(&self, features: Tensor<4>) -> Tensor<2> {
        let [_, c, ..] = features.dims();
        let [expected] = self.blocks[0].bn.gamma.shape().dims();
        assert_eq!(
            2 * c,
            expected,
            "ConcatPoolHead expects {} feature channels, got {c}",
            expected / 2
        );
        self.forward_pooled(petal_kernels::concat_pool::concat_pool(
            features,
            self.pool_order,
        ))
    }

    /// The head after pooling: the BN → Dropout → Linear stages.
    ///
    /// # Shapes
    /// - `pooled`: `[N, 2C]` (the concat-pool output, in this head's pool order)
    /// - output: `[N, classes]` logits
    pub fn forward_pooled(&self, pooled: Tensor<2>) -> Tensor<2> {
        let mut x = pooled;
        let last = self.blocks.len() - 1;
        for (i, b) in self.blocks.iter().enumerate() {
            x = b.fc.forward(b.dropout.forward(b.bn.forward(x)));
            if i != last {
                x = relu(x);
            }
        }
        x
    }
}

/// The `eps` of [`LinearHead`]'s LayerNorm (torchvision's ConvNeXt classifier).
pub const LINEAR_HEAD_LN_EPS: f64 = 1e-6;

/// [`LinearHead`] configuration.
#[derive(Config, Debug, PartialEq)]
pub struct LinearHeadConfig {
    /// Channels of the backbone's feature map.
    pub num_features: usize,
    /// Number of output classes.
    pub num_classes: usize,
    /// Dropout before the last linear layer (torchvision: 0 for DenseNet and ResNet, 0.2
    /// for MobileNet and EfficientNet-B0, up to 0.5 for B7).
    #[config(default = 0.0)]
    pub dropout: f64,
    /// A LayerNorm (eps 1e-6) over the pooled channels first, as ConvNeXt's classifier.
    #[config(default = false)]
    pub layer_norm: bool,
    /// A hidden Linear → Hardswish layer of this width first, as MobileNetV3's classifier.
    #[config(default = "None")]
    pub hidden: Option<usize>,
}

impl LinearHeadConfig {
    /// Builds the head (PyTorch's default `nn.Linear` initialisation, biases zero as
    /// torchvision's).
    pub fn init(&self, device: &Device) -> LinearHead {
        let linear = |c_in: usize, c_out: usize| {
            let mut fc = LinearConfig::new(c_in, c_out).init(device);
            if let Some(b) = fc.bias.as_mut() {
                *b = burn::module::Param::from_tensor(Tensor::zeros([c_out], device));
            }
            fc
        };
        let fc_in = self.hidden.unwrap_or(self.num_features);
        LinearHead {
            norm: self.layer_norm.then(|| {
                LayerNormConfig::new(self.num_features)
                    .with_epsilon(LINEAR_HEAD_LN_EPS)
                    .init(device)
            }),
            hidden: self.hidden.map(|h| linear(self.num_features, h)),
            dropout: DropoutConfig::new(self.dropout).init(),
            fc: linear(fc_in, self.num_classes),
        }
    }
}

/// torchvision's classifier: global average pool → flatten → [LayerNorm] → [Linear →
/// Hardswish] → Dropout → Linear.
#[derive(Module, Debug)]
pub struct LinearHead {
    /// ConvNeXt's LayerNorm over the pooled channels (`classifier.0`).
    pub norm: Option<LayerNorm>,
    /// MobileNetV3's hidden layer (`classifier.0`), followed by Hardswish.
    pub hidden: Option<Linear>,
    /// Dropout before the last linear layer.
    pub dropout: Dropout,
    /// The linear classifier.
    pub fc: Linear,
}

impl LinearHead {
    /// Number of classes the head predicts.
    pub fn num_classes(&self) -> usize {
        self.fc.weight.shape().dims::<2>()[1]
    }

    /// # Shapes
    /// - `features`: `[N, C, H, W]`
    /// - output: `[N, classes]` logits
    pub fn forward(&self, features: Tensor<4>) -> Tensor<2> {
        let [n, c, h, w] = features.dims();
        let mut x: Tensor<2> = features.reshape([n, c, h * w]).mean_dim(2).reshape([n, c]);
        if let Some(norm) = &self.norm {
            x = norm.forward(x);
        }
        if let Some(hidden) = &self.hidden {
            x = hard_swish(hidden.forward(x));
        }
        self.fc.forward(self.dropout.forward(x))
    }
}
