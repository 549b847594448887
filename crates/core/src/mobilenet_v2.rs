//! MobileNetV2, exactly as torchvision builds it.
//!
//! Sandler, Howard, Zhu, Zhmoginov, Chen, *MobileNetV2: Inverted Residuals and Linear
//! Bottlenecks*, CVPR 2018, <https://arxiv.org/abs/1801.04381>. Layer for layer
//! `torchvision/models/mobilenetv2.py`: stem Conv3×3/2-BN-ReLU6, seventeen inverted
//! residuals (optional 1×1 expansion-BN-ReLU6, depthwise 3×3-BN-ReLU6, linear 1×1
//! projection-BN, identity shortcut when stride 1 and widths match), a final
//! 1×1 Conv-BN-ReLU6 to `last_channel` (1280 at width 1.0). BatchNorm eps 1e-5.
//!
//! Parameter names follow petal's module tree (`blocks.3.depthwise.conv.weight`); the
//! torchvision names (`features.4.conv.1.0.weight`) are mapped by [`crate::weights`].

use crate::densenet::conv_grouped;
use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, BatchNormConfig};
use burn::prelude::*;
use burn::tensor::activation::relu6;

/// torchvision's `inverted_residual_setting`: (expansion t, channels c, repeats n, stride s).
pub const INVERTED_RESIDUAL_SETTING: [(usize, usize, usize, usize); 7] = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
];

/// torchvision's `_make_divisible`: round `v` to the nearest multiple of `divisor`, never
/// going below 90 % of `v`.
pub fn make_divisible(v: f64, divisor: usize) -> usize {
    let d = divisor as f64;
    let mut new_v = (divisor as f64).max(((v + d / 2.0) / d).floor() * d);
    if new_v < 0.9 * v {
        new_v += d;
    }
    new_v as usize
}

/// [`MobileNetV2`] configuration.
#[derive(Config, Debug, PartialEq)]
pub struct MobileNetV2Config {
    /// Width multiplier (torchvision's `width_mult`).
    #[config(default = 1.0)]
    pub width_mult: f64,
    /// Channel rounding (torchvision's `round_nearest`).
    #[config(default = 8)]
    pub round_nearest: usize,
}

/// The shape of one inverted residual block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvertedResidualSpec {
    /// Input channels.
    pub c_in: usize,
    /// Output channels.
    pub c_out: usize,
    /// Expansion ratio `t` (1 = no expansion convolution).
    pub expand_ratio: usize,
    /// Depthwise stride.
    pub stride: usize,
}

impl MobileNetV2Config {
    /// torchvision's `mobilenet_v2()` (width 1.0): 3.5 M parameters, 1280 features.
    pub fn mobilenet_v2() -> Self {
        Self::new()
    }

    /// Stem channels.
    pub fn input_channel(&self) -> usize {
        make_divisible(32.0 * self.width_mult, self.round_nearest)
    }

    /// Channels of the final feature map.
    pub fn num_features(&self) -> usize {
        make_divisible(1280.0 * self.width_mult.max(1.0), self.round_nearest)
    }

    /// The seventeen blocks as torchvision lays them out.
    pub fn blocks(&self) -> Vec<InvertedResidualSpec> {
        let mut c_in = self.input_channel();
        let mut specs = Vec::new();
        for (t, c, n, s) in INVERTED_RESIDUAL_SETTING {
            let c_out = make_divisible(c as f64 * self.width_mult, self.round_nearest);
            for i in 0..n {
                specs.push(InvertedResidualSpec {
                    c_in,
                    c_out,
                    expand_ratio: t,
                    stride: if i == 0 { s } else { 1 },
                });
                c_in = c_out;
            }
        }
        specs
    }

    /// Builds the network with torchvision's initialisation (Kaiming-normal fan-out
    /// convolutions, BatchNorm weight 1 / bias 0).
    ///
    /// # Panics
    /// If `width_mult` is not finite and positive or `round_nearest` is zero.
    pub fn init(&self, device: &Device) -> MobileNetV2 {
        assert!(
            self.width_mult.is_finite() && self.width_mult > 0.0 && self.round_nearest > 0,
            "MobileNetV2 width_mult ({}) must be > 0 and round_nearest ({}) > 0",
            self.width_mult,
            self.round_nearest
        );
        let blocks = self
            .blocks()
            .into_iter()
            .map(|s| InvertedResidual::new(s, device))
            .collect::<Vec<_>>();
        let c_last_in = blocks.last().map(|b| b.spec().c_out).unwrap_or(0);
        MobileNetV2 {
            stem: ConvBnAct::new(3, self.input_channel(), 3, 2, 1, device),
            blocks,
            last: ConvBnAct::new(c_last_in, self.num_features(), 1, 1, 1, device),
        }
    }
}

/// torchvision's `Conv2dNormActivation` (convolutions initialised Kaiming-normal, fan-out): bias-free conv → BatchNorm → ReLU6.
#[derive(Module, Debug)]
pub struct ConvBnAct {
    /// The convolution.
    pub conv: Conv2d,
    /// Its BatchNorm.
    pub bn: BatchNorm,
}

impl ConvBnAct {
    fn new(
        c_in: usize,
        c_out: usize,
        k: usize,
        stride: usize,
        groups: usize,
        device: &Device,
    ) -> Self {
        Self {
            conv: conv_grouped(c_in, c_out, k, stride, (k - 1) / 2, groups, true, device),
            bn: BatchNormConfig::new(c_out).init(device),
        }
    }

    /// # Shapes
    /// `[N, C_in, H, W]` → `[N, C_out, H/stride, W/stride]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        relu6(self.bn.forward(self.conv.forward(x)))
    }
}

/// An inverted residual block.
#[derive(Module, Debug)]
pub struct InvertedResidual {
    /// 1×1 expansion to `t · C_in` channels (absent when `t = 1`).
    pub expand: Option<ConvBnAct>,
    /// Depthwise 3×3 convolution carrying the stride.
    pub depthwise: ConvBnAct,
    /// Linear 1×1 projection.
    pub project: Conv2d,
    /// BatchNorm after the projection (no activation).
    pub project_bn: BatchNorm,
}

impl InvertedResidual {
    fn new(s: InvertedResidualSpec, device: &Device) -> Self {
        let hidden = (s.c_in as f64 * s.expand_ratio as f64).round() as usize;
        Self {
            expand: (s.expand_ratio != 1).then(|| ConvBnAct::new(s.c_in, hidden, 1, 1, 1, device)),
            depthwise: ConvBnAct::new(hidden, hidden, 3, s.stride, hidden, device),
            project: conv_grouped(hidden, s.c_out, 1, 1, 0, 1, true, device),
            project_bn: BatchNormConfig::new(s.c_out).init(device),
        }
    }

    /// The block's shape, read back from its weights.
    pub fn spec(&self) -> InvertedResidualSpec {
        let [c_out, hidden, ..] = self.project.weight.shape().dims::<4>();
        let c_in = match &self.expand {
            Some(e) => e.conv.weight.shape().dims::<4>()[1],
            None => hidden,
        };
        InvertedResidualSpec {
            c_in,
            c_out,
            expand_ratio: hidden / c_in,
            stride: self.depthwise.conv.stride[0],
        }
    }

    /// # Shapes
    /// `[N, C_in, H, W]` → `[N, C_out, H/stride, W/stride]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [_, c_in, ..] = x.dims();
        let h = match &self.expand {
            Some(e) => e.forward(x.clone()),
            None => x.clone(),
        };
        let h = self.depthwise.forward(h);
        let out = self.project_bn.forward(self.project.forward(h));
        let [_, c_out, ..] = out.dims();
        if self.depthwise.conv.stride[0] == 1 && c_in == c_out {
            x + out
        } else {
            out
        }
    }
}

/// A torchvision-compatible MobileNetV2 feature extractor (`features`, no classifier).
#[derive(Module, Debug)]
pub struct MobileNetV2 {
    /// `features.0`: Conv3×3/2-BN-ReLU6.
    pub stem: ConvBnAct,
    /// `features.1` … `features.17`.
    pub blocks: Vec<InvertedResidual>,
    /// `features.18`: Conv1×1-BN-ReLU6 to the feature width.
    pub last: ConvBnAct,
}

impl MobileNetV2 {
    /// Channels of the feature map.
    pub fn num_features(&self) -> usize {
        let [c] = self.last.bn.gamma.shape().dims();
        c
    }

    /// Feature map after the last Conv-BN-ReLU6.
    ///
    /// # Shapes
    /// - `x`: `[N, 3, H, W]`
    /// - output: `[N, num_features, H/32, W/32]`
    pub fn forward_features(&self, x: Tensor<4>) -> Tensor<4> {
        let [_, c, ..] = x.dims();
        assert_eq!(c, 3, "MobileNetV2 expects 3 input channels, got {c}");
        let mut x = self.stem.forward(x);
        for b in &self.blocks {
            x = b.forward(x);
        }
        self.last.forward(x)
    }
}
