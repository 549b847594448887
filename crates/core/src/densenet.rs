//! DenseNet, exactly as torchvision builds it.
//!
//! Huang, Liu, van der Maaten, Weinberger, *Densely Connected Convolutional Networks*,
//! CVPR 2017, <https://arxiv.org/abs/1608.06993>. Layer for layer the torchvision
//! implementation (`torchvision/models/densenet.py`): stem `conv0` 7×7/2 → `norm0` →
//! `relu0` → `pool0` (max 3×3/2, pad 1); dense blocks whose layers are
//! `norm1 → relu → conv1 (1×1, bn_size·k) → norm2 → relu → conv2 (3×3, k)` on the
//! concatenation of all earlier maps; transitions `norm → relu → conv (1×1, C/2) →
//! avg-pool 2×2/2`; `norm5`. No convolution has a bias.
//!
//! [`DenseNet::forward_features`] ends with the ReLU that torchvision applies in
//! `DenseNet.forward` after `norm5` (timm's `forward_features` does the same), so any
//! head sees the same map as torchvision's classifier does.
//!
//! Parameter names follow petal's module tree (`blocks.1.layers.3.conv2.weight`); the
//! torchvision names (`features.denseblock2.denselayer4.conv2.weight`; the legacy
//! `norm.1`/`conv.2` spellings of the 2017 files are rewritten on reading, in
//! [`crate::weights`]) are mapped here ([`Family::import_key`]).

use crate::backbone::{Family, FamilyConfig, FeatureExtractor, fuse_ids, ids};
use crate::classifier::{HeadConfig, LayerGroup};
use crate::error::CoreError;
use crate::layers::{BnRun, ConvRun};
use crate::layers::{ConvInit, ConvSpec, MAX_WIDTH, check_prob, check_sizes};
use crate::onnx::OnnxGraph;
use crate::weights::{StateDict, index_minus_one};
use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::pool::{AvgPool2d, AvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Dropout, DropoutConfig, PaddingConfig2d};
use burn::prelude::*;

/// [`DenseNet`] configuration; presets mirror torchvision's constructors.
#[derive(Config, Debug, PartialEq)]
pub struct DenseNetConfig {
    /// Growth rate `k`: channels each dense layer adds.
    pub growth_rate: usize,
    /// Number of dense layers in each block.
    pub block_config: Vec<usize>,
    /// Channels produced by the stem convolution.
    pub num_init_features: usize,
    /// Bottleneck width multiplier: `conv1` outputs `bn_size · growth_rate` channels.
    #[config(default = 4)]
    pub bn_size: usize,
    /// Dropout after each dense layer (torchvision's `drop_rate`, 0 in every preset).
    #[config(default = 0.0)]
    pub drop_rate: f64,
}

impl DenseNetConfig {
    /// DenseNet-121: k = 32, blocks (6, 12, 24, 16), 64 stem channels, 1024 features.
    pub fn densenet121() -> Self {
        Self::new(32, vec![6, 12, 24, 16], 64)
    }
    /// DenseNet-161: k = 48, blocks (6, 12, 36, 24), 96 stem channels, 2208 features.
    pub fn densenet161() -> Self {
        Self::new(48, vec![6, 12, 36, 24], 96)
    }
    /// DenseNet-169: k = 32, blocks (6, 12, 32, 32), 64 stem channels, 1664 features.
    pub fn densenet169() -> Self {
        Self::new(32, vec![6, 12, 32, 32], 64)
    }
    /// DenseNet-201: k = 32, blocks (6, 12, 48, 32), 64 stem channels, 1920 features.
    pub fn densenet201() -> Self {
        Self::new(32, vec![6, 12, 48, 32], 64)
    }

    /// Channels entering each block, and the final feature count, as torchvision computes them.
    fn channel_plan(&self) -> (Vec<usize>, usize) {
        let mut c = self.num_init_features;
        let mut inputs = Vec::with_capacity(self.block_config.len());
        for (i, &n) in self.block_config.iter().enumerate() {
            inputs.push(c);
            c += n * self.growth_rate;
            if i + 1 != self.block_config.len() {
                c /= 2;
            }
        }
        (inputs, c)
    }

    /// Builds the network with torchvision's initialisation (Kaiming-normal convolutions,
    /// BatchNorm weight 1 / bias 0).
    ///
    /// # Panics
    /// If [`Family::check`] fails (no block, a zero growth rate, bn_size or stem width, …).
    pub fn init(&self, device: &Device) -> DenseNet {
        if let Err(e) = self.check() {
            panic!("DenseNet: {e}");
        }
        let (inputs, out) = self.channel_plan();
        let blocks = self
            .block_config
            .iter()
            .zip(&inputs)
            .map(|(&n, &c_in)| DenseBlock {
                layers: (0..n)
                    .map(|l| self.layer(c_in + l * self.growth_rate, device))
                    .collect(),
            })
            .collect();
        let transitions = inputs
            .iter()
            .zip(&self.block_config)
            .take(self.block_config.len() - 1)
            .map(|(&c_in, &n)| {
                let c = c_in + n * self.growth_rate;
                Transition {
                    norm: BatchNormConfig::new(c).init(device),
                    conv: conv(c, c / 2, 1, 1, 0, device),
                    pool: AvgPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
                }
            })
            .collect();
        DenseNet {
            conv0: conv(3, self.num_init_features, 7, 2, 3, device),
            norm0: BatchNormConfig::new(self.num_init_features).init(device),
            pool0: MaxPool2dConfig::new([3, 3])
                .with_strides([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(),
            blocks,
            transitions,
            norm5: BatchNormConfig::new(out).init(device),
            dropout: DropoutConfig::new(self.drop_rate).init(),
        }
    }

    fn layer(&self, c_in: usize, device: &Device) -> DenseLayer {
        let mid = self.bn_size * self.growth_rate;
        DenseLayer {
            norm1: BatchNormConfig::new(c_in).init(device),
            conv1: conv(c_in, mid, 1, 1, 0, device),
            norm2: BatchNormConfig::new(mid).init(device),
            conv2: conv(mid, self.growth_rate, 3, 1, 1, device),
        }
    }
}

/// A bias-free square convolution with torchvision's DenseNet initialisation (Kaiming-normal
/// over the fan-in).
fn conv(c_in: usize, c_out: usize, k: usize, stride: usize, pad: usize, device: &Device) -> Conv2d {
    ConvSpec::new(c_in, c_out, k)
        .stride(stride)
        .padding(pad)
        .init_with(ConvInit::KaimingFanIn)
        .init(device)
}

/// One dense layer: BN-ReLU-Conv1×1 bottleneck then BN-ReLU-Conv3×3 producing `k` maps.
#[derive(Module, Debug)]
pub struct DenseLayer {
    /// BatchNorm on the concatenated input.
    pub norm1: BatchNorm,
    /// 1×1 bottleneck to `bn_size · k` channels.
    pub conv1: Conv2d,
    /// BatchNorm on the bottleneck.
    pub norm2: BatchNorm,
    /// 3×3 convolution to `k` channels.
    pub conv2: Conv2d,
}

impl DenseLayer {
    /// # Shapes
    /// - `x`: `[N, C_in, H, W]` (the concatenation of all earlier maps of the block)
    /// - output: `[N, k, H, W]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = self.conv1.run(self.norm1.run_relu(x));
        self.conv2.run(self.norm2.run_relu(x))
    }
}

/// A dense block: every layer sees the concatenation of the block input and all earlier outputs.
#[derive(Module, Debug)]
pub struct DenseBlock {
    /// The block's layers, in order.
    pub layers: Vec<DenseLayer>,
}

/// Transition between blocks: BN-ReLU-Conv1×1 halving the channels, then 2×2 average pooling.
#[derive(Module, Debug)]
pub struct Transition {
    /// BatchNorm on the block output.
    pub norm: BatchNorm,
    /// 1×1 convolution to half the channels.
    pub conv: Conv2d,
    /// 2×2/2 average pooling.
    pub pool: AvgPool2d,
}

/// A torchvision-compatible DenseNet feature extractor (everything before the classifier).
#[derive(Module, Debug)]
pub struct DenseNet {
    /// Stem 7×7/2 convolution.
    pub conv0: Conv2d,
    /// Stem BatchNorm.
    pub norm0: BatchNorm,
    /// Stem 3×3/2 max pooling.
    pub pool0: MaxPool2d,
    /// Dense blocks (`denseblock1…` in torchvision).
    pub blocks: Vec<DenseBlock>,
    /// Transitions (`transition1…`), one fewer than blocks.
    pub transitions: Vec<Transition>,
    /// Final BatchNorm.
    pub norm5: BatchNorm,
    /// Dropout after each dense layer (torchvision's `drop_rate`; active only in training).
    pub dropout: Dropout,
}

impl DenseNet {
    /// Channels of the feature map [`forward_features`](Self::forward_features) returns.
    pub fn num_features(&self) -> usize {
        let [c] = self.norm5.gamma.shape().dims();
        c
    }

    /// Feature map after `norm5` and ReLU.
    ///
    /// # Shapes
    /// - `x`: `[N, 3, H, W]`
    /// - output: `[N, num_features, H/32, W/32]` (rounded as the strided ops round)
    pub fn forward_features(&self, x: Tensor<4>) -> Tensor<4> {
        let [_, c, ..] = x.dims();
        assert_eq!(c, 3, "DenseNet expects 3 input channels, got {c}");
        let mut x = self.pool0.forward(self.norm0.run_relu(self.conv0.run(x)));
        for (i, block) in self.blocks.iter().enumerate() {
            // The concatenation grows by one layer's maps at a time: `cat([x, y])` is the
            // same tensor as torchvision's `cat(all maps so far)`, and its backward is two
            // slices and one add per layer, where re-concatenating every earlier map made it
            // one slice and one gradient add per earlier map (≈ 600 GPU dispatches per
            // densenet121 step).
            for layer in &block.layers {
                let y = self.dropout.forward(layer.forward(x.clone()));
                x = Tensor::cat(vec![x, y], 1);
            }
            if let Some(t) = self.transitions.get(i) {
                x = t.pool.forward(t.conv.run(t.norm.run_relu(x)));
            }
        }
        self.norm5.run_relu(x)
    }
}

impl Family for DenseNetConfig {
    fn check(&self) -> Result<(), String> {
        check_sizes("block_config", &self.block_config, 8, 1024)?;
        check_sizes(
            "growth_rate, bn_size and num_init_features",
            &[self.growth_rate, self.bn_size, self.num_init_features],
            3,
            MAX_WIDTH,
        )?;
        check_prob("drop_rate", self.drop_rate)
    }

    fn describe(&self) -> String {
        format!(
            "densenet(k={}, blocks={:?}, init={}, bn_size={})",
            self.growth_rate, self.block_config, self.num_init_features, self.bn_size
        )
    }

    fn num_features(&self) -> usize {
        self.channel_plan().1
    }

    fn output_stride(&self) -> usize {
        4 << self.block_config.len().saturating_sub(1)
    }

    fn torchvision_head(&self) -> HeadConfig {
        HeadConfig::linear(0.0)
    }

    fn torchvision_head_keys(&self) -> &'static [(&'static str, &'static str)] {
        &[("fc", "classifier")]
    }

    fn import_key(&self, key: &str, _: &StateDict) -> Option<String> {
        let rest = key.strip_prefix("features.")?;
        let (first, tail) = rest.split_once('.')?;
        Some(match first {
            "conv0" | "norm0" | "norm5" => rest.to_string(),
            _ if first.starts_with("denseblock") => {
                let b = index_minus_one(first, "denseblock")?;
                let (layer, tail) = tail.split_once('.')?;
                let l = index_minus_one(layer, "denselayer")?;
                format!("blocks.{b}.layers.{l}.{tail}")
            }
            _ if first.starts_with("transition") => {
                let t = index_minus_one(first, "transition")?;
                format!("transitions.{t}.{tail}")
            }
            _ => return None,
        })
    }

    fn export_key(&self, path: &str) -> Option<String> {
        let parts: Vec<&str> = path.split('.').collect();
        let p = match parts[..] {
            ["conv0" | "norm0" | "norm5"] => path.to_string(),
            ["blocks", b, "layers", l, ref rest @ ..] => format!(
                "denseblock{}.denselayer{}.{}",
                b.parse::<usize>().ok()? + 1,
                l.parse::<usize>().ok()? + 1,
                rest.join(".")
            ),
            ["transitions", t, ref rest @ ..] => {
                format!(
                    "transition{}.{}",
                    t.parse::<usize>().ok()? + 1,
                    rest.join(".")
                )
            }
            _ => return None,
        };
        Some(format!("features.{p}"))
    }
}

impl FamilyConfig for DenseNetConfig {
    type Module = DenseNet;
    const NAME: &'static str = "densenet";
    const SIGNATURE: &'static str = "features.conv0.weight";

    fn presets() -> Vec<(&'static str, Self)> {
        vec![
            ("densenet121", Self::densenet121()),
            ("densenet161", Self::densenet161()),
            ("densenet169", Self::densenet169()),
            ("densenet201", Self::densenet201()),
        ]
    }

    fn detect(sd: &StateDict) -> bool {
        sd.contains("features.conv0.weight")
    }

    fn infer(sd: &StateDict) -> Result<Self, String> {
        let init = sd.dim("features.conv0.weight", 0)?;
        let mut blocks = Vec::new();
        while sd.has_prefix(&format!("features.denseblock{}.", blocks.len() + 1)) {
            let b = blocks.len() + 1;
            let n = sd.count_from(&format!("features.denseblock{b}.denselayer"), 1);
            if n == 0 {
                return Err(format!("`features.denseblock{b}` has no `denselayer1`"));
            }
            blocks.push(n);
        }
        if blocks.is_empty() {
            return Err("no `features.denseblock1` found".into());
        }
        let growth = sd.dim("features.denseblock1.denselayer1.conv2.weight", 0)?;
        let mid = sd.dim("features.denseblock1.denselayer1.conv1.weight", 0)?;
        if growth == 0 || mid % growth != 0 {
            return Err(format!(
                "bottleneck width {mid} is not a multiple of the growth rate {growth}"
            ));
        }
        Ok(Self::new(growth, blocks, init).with_bn_size(mid / growth))
    }

    fn build(&self, device: &Device) -> DenseNet {
        self.init(device)
    }
}

impl FeatureExtractor for DenseNet {
    /// `forward_features` as ONNX nodes (Dropout is the identity in inference).
    fn to_onnx(&self, g: &mut OnnxGraph, x: &str) -> Result<String, CoreError> {
        let h = g.conv(&self.conv0, x)?;
        let h = g.batch_norm(&self.norm0, &h)?;
        let h = g.relu(&h);
        let mut x = g.max_pool(&self.pool0, &h)?;
        for (i, block) in self.blocks.iter().enumerate() {
            let mut features = vec![x];
            for layer in &block.layers {
                let input = g.concat(&features, 1);
                let h = g.batch_norm(&layer.norm1, &input)?;
                let h = g.relu(&h);
                let h = g.conv(&layer.conv1, &h)?;
                let h = g.batch_norm(&layer.norm2, &h)?;
                let h = g.relu(&h);
                features.push(g.conv(&layer.conv2, &h)?);
            }
            x = g.concat(&features, 1);
            if let Some(t) = self.transitions.get(i) {
                let h = g.batch_norm(&t.norm, &x)?;
                let h = g.relu(&h);
                let h = g.conv(&t.conv, &h)?;
                x = g.avg_pool(&t.pool, &h)?;
            }
        }
        let h = g.batch_norm(&self.norm5, &x)?;
        Ok(g.relu(&h))
    }

    fn num_features(&self) -> usize {
        DenseNet::num_features(self)
    }

    fn forward_features(&self, x: Tensor<4>) -> Tensor<4> {
        DenseNet::forward_features(self, x)
    }

    /// `stem+block1+block2 | block3+block4+norm5` (fastai's `_densenet_split`: the first
    /// half of the blocks with their transitions, then the rest).
    fn layer_groups(&self) -> Vec<LayerGroup> {
        let k = self.blocks.len().div_ceil(2);
        let g0 = ids(&self.conv0).fuse(&ids(&self.norm0));
        let g0 = fuse_ids(fuse_ids(g0, &self.blocks[..k]), &self.transitions[..k - 1]);
        let g1 = fuse_ids(ids(&self.norm5), &self.blocks[k..]);
        let g1 = fuse_ids(g1, &self.transitions[k - 1..]);
        let name = |r: std::ops::Range<usize>| {
            r.map(|i| format!("block{}", i + 1))
                .collect::<Vec<_>>()
                .join("+")
        };
        vec![
            LayerGroup::new(format!("stem+{}", name(0..k)), g0),
            LayerGroup::new(format!("{}+norm5", name(k..self.blocks.len())), g1),
        ]
    }
}
