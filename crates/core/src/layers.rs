//! Building blocks the model families share, each exactly as torchvision computes it:
//! conv → norm → activation ([`ConvNormAct`], torchvision's `Conv2dNormActivation`),
//! squeeze-and-excitation ([`SqueezeExcitation`], `torchvision.ops.SqueezeExcitation`),
//! stochastic depth ([`StochasticDepth`], `torchvision.ops.StochasticDepth`, mode `row`),
//! channels-first LayerNorm ([`LayerNorm2d`], ConvNeXt's) and the activations
//! ([`Activation`]). All are built with Burn's own config builders.

use burn::module::{Flag, Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{
    BatchNorm, BatchNormConfig, Initializer, LayerNorm, LayerNormConfig, PaddingConfig2d,
};
use burn::prelude::*;
use burn::tensor::Distribution;
use burn::tensor::activation::{gelu, hard_sigmoid, hard_swish, relu, relu6, sigmoid, silu};
use burn::tensor::ops::ConvOptions;
use petal_kernels::batch_norm::Act;
use serde::{Deserialize, Serialize};

/// torchvision's `_make_divisible`: round `v` to the nearest multiple of `divisor`, never
/// going below 90 % of `v` (nor below `divisor`).
pub fn make_divisible(v: f64, divisor: usize) -> usize {
    let d = divisor as f64;
    let mut new_v = d.max(((v + d / 2.0) / d).floor() * d);
    if new_v < 0.9 * v {
        new_v += d;
    }
    new_v as usize
}

/// `Err` naming `what` unless `p` is a probability in `[0, 1)` (dropout, stochastic depth).
pub(crate) fn check_prob(what: &str, p: f64) -> Result<(), String> {
    if p.is_finite() && (0.0..1.0).contains(&p) {
        Ok(())
    } else {
        Err(format!("{what} must be in [0, 1), got {p}"))
    }
}

/// `Err` naming `what` unless every value of `v` is in `1..=max` and there are 1 to
/// `max_len` of them.
pub(crate) fn check_sizes(
    what: &str,
    v: &[usize],
    max_len: usize,
    max: usize,
) -> Result<(), String> {
    if v.is_empty() || v.len() > max_len || v.iter().any(|&n| n == 0 || n > max) {
        Err(format!(
            "{what} needs 1 to {max_len} values, each in 1..={max}, got {v:?}"
        ))
    } else {
        Ok(())
    }
}

/// Largest channel count / block count petal accepts in a custom configuration (far above
/// every published model; keeps sizes from overflowing).
pub(crate) const MAX_WIDTH: usize = 1 << 16;

/// An element-wise activation (not a module: it has no state).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Activation {
    /// No activation (a linear projection).
    #[default]
    Identity,
    /// `max(x, 0)`.
    Relu,
    /// `min(max(x, 0), 6)`.
    Relu6,
    /// `x · σ(x)` (swish).
    Silu,
    /// `x · relu6(x + 3) / 6` (torch's `Hardswish`).
    HardSwish,
    /// `relu6(x + 3) / 6` (torch's `Hardsigmoid`).
    HardSigmoid,
    /// `σ(x)`.
    Sigmoid,
    /// Exact GELU, `x · Φ(x)` with the error function (torch's default `GELU()`).
    Gelu,
}

impl Activation {
    /// Applies the activation.
    pub fn forward<const D: usize>(self, x: Tensor<D>) -> Tensor<D> {
        match self {
            Self::Identity => x,
            Self::Relu => relu(x),
            Self::Relu6 => relu6(x),
            Self::Silu => silu(x),
            Self::HardSwish => hard_swish(x),
            Self::HardSigmoid => hard_sigmoid(x, 1.0 / 6.0, 0.5),
            Self::Sigmoid => sigmoid(x),
            Self::Gelu => gelu(x),
        }
    }
}

/// How a convolution's weight is initialised.
#[derive(Clone, Copy, Debug)]
pub enum ConvInit {
    /// Kaiming-normal with gain √2 over the fan-out (torchvision's ResNet, EfficientNet,
    /// MobileNet: `kaiming_normal_(mode="fan_out")`).
    KaimingFanOut,
    /// Kaiming-normal with gain √2 over the fan-in (torchvision's DenseNet).
    KaimingFanIn,
    /// Normal with this standard deviation (ConvNeXt's truncated normal, std 0.02; the
    /// truncation at ±2 only matters 5 % of the time and not for fine-tuning).
    Normal(f64),
}

impl ConvInit {
    fn initializer(self) -> Initializer {
        match self {
            Self::KaimingFanOut => Initializer::KaimingNormal {
                gain: 2f64.sqrt(),
                fan_out_only: true,
            },
            Self::KaimingFanIn => Initializer::KaimingNormal {
                gain: 2f64.sqrt(),
                fan_out_only: false,
            },
            Self::Normal(std) => Initializer::Normal { mean: 0.0, std },
        }
    }
}

/// A square convolution: `k × k`, `stride`, torchvision's padding `(k − 1) / 2` unless
/// `padding` says otherwise, `groups`, an optional bias initialised to zero.
#[derive(Clone, Copy, Debug)]
pub struct ConvSpec {
    /// Input channels.
    pub c_in: usize,
    /// Output channels.
    pub c_out: usize,
    /// Kernel size.
    pub kernel: usize,
    /// Stride.
    pub stride: usize,
    /// Padding (default `(kernel − 1) / 2`).
    pub padding: usize,
    /// Channel groups (`c_in` = depthwise).
    pub groups: usize,
    /// Whether the convolution has a bias.
    pub bias: bool,
    /// Weight initialisation.
    pub init: ConvInit,
}

impl ConvSpec {
    /// A bias-free `k × k` convolution, stride 1, Kaiming fan-out initialisation.
    pub fn new(c_in: usize, c_out: usize, kernel: usize) -> Self {
        Self {
            c_in,
            c_out,
            kernel,
            stride: 1,
            padding: (kernel.max(1) - 1) / 2,
            groups: 1,
            bias: false,
            init: ConvInit::KaimingFanOut,
        }
    }
    /// With this stride.
    pub fn stride(mut self, stride: usize) -> Self {
        self.stride = stride;
        self
    }
    /// With this padding.
    pub fn padding(mut self, padding: usize) -> Self {
        self.padding = padding;
        self
    }
    /// With channel groups.
    pub fn groups(mut self, groups: usize) -> Self {
        self.groups = groups;
        self
    }
    /// Depthwise (`groups = c_in`).
    pub fn depthwise(self) -> Self {
        let g = self.c_in;
        self.groups(g)
    }
    /// With a bias (initialised to zero, as torchvision does).
    pub fn bias(mut self, bias: bool) -> Self {
        self.bias = bias;
        self
    }
    /// With this initialisation.
    pub fn init_with(mut self, init: ConvInit) -> Self {
        self.init = init;
        self
    }

    /// Builds the convolution.
    pub fn init(&self, device: &Device) -> Conv2d {
        let p = self.padding;
        let mut conv = Conv2dConfig::new([self.c_in, self.c_out], [self.kernel, self.kernel])
            .with_stride([self.stride, self.stride])
            .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
            .with_groups(self.groups)
            .with_bias(self.bias)
            .with_initializer(self.init.initializer())
            .init(device);
        if let Some(b) = conv.bias.as_mut() {
            *b = Param::from_tensor(Tensor::zeros([self.c_out], device));
        }
        conv
    }
}

/// Runs a Burn [`Conv2d`] through [`petal_kernels::conv::conv2d`]: petal's CPU kernels
/// on Flex (forward and both gradients), Burn's own `conv2d` elsewhere. The module (and so
/// its weights and record) stays Burn's; only the call differs from `Conv2d::forward`.
pub trait ConvRun {
    /// # Shapes
    /// `[N, C_in, H, W]` → `[N, C_out, H_out, W_out]`, as `Conv2d::forward`.
    fn run(&self, x: Tensor<4>) -> Tensor<4>;
}

impl ConvRun for Conv2d {
    fn run(&self, x: Tensor<4>) -> Tensor<4> {
        let pads = match self.padding {
            PaddingConfig2d::Valid => [(0, 0), (0, 0)],
            PaddingConfig2d::Explicit(top, left, bottom, right) => [(top, bottom), (left, right)],
            // petal's models never build `Same` padding; Burn's own forward handles it.
            PaddingConfig2d::Same => return self.forward(x),
        };
        let options = ConvOptions::new_with_padding(self.stride, pads, self.dilation, self.groups);
        petal_kernels::conv::conv2d(
            x,
            self.weight.val(),
            self.bias.as_ref().map(|b| b.val()),
            options,
        )
    }
}

/// Runs a Burn [`BatchNorm`] over `[N, C, H, W]` through
/// [`petal_kernels::batch_norm::batch_norm`] (petal's CPU kernels on Flex, Burn's ops
/// elsewhere), exactly as `BatchNorm::forward` decides and updates: the batch's statistics
/// when the device is autodiff and the layer's `training` flag is on (then the running
/// statistics move by `momentum` towards the batch's mean and biased variance, as Burn's
/// layer does), the running statistics otherwise.
pub trait BnRun {
    /// BatchNorm. # Shapes: `[N, C, H, W]` → the same.
    fn run(&self, x: Tensor<4>) -> Tensor<4>;
    /// BatchNorm then ReLU, fused on the CPU. # Shapes: `[N, C, H, W]` → the same.
    fn run_relu(&self, x: Tensor<4>) -> Tensor<4>;
    /// BatchNorm then SiLU, fused on the CPU. # Shapes: `[N, C, H, W]` → the same.
    fn run_silu(&self, x: Tensor<4>) -> Tensor<4>;
}

impl BnRun for BatchNorm {
    fn run(&self, x: Tensor<4>) -> Tensor<4> {
        batch_norm_layer(self, x, Act::Identity)
    }

    fn run_relu(&self, x: Tensor<4>) -> Tensor<4> {
        batch_norm_layer(self, x, Act::Relu)
    }

    fn run_silu(&self, x: Tensor<4>) -> Tensor<4> {
        batch_norm_layer(self, x, Act::Silu)
    }
}

fn batch_norm_layer(bn: &BatchNorm, x: Tensor<4>, act: Act) -> Tensor<4> {
    use petal_kernels::batch_norm::{Stats, batch_norm};
    let device = x.device();
    let stats = if device.is_autodiff() && bn.training.is_enabled() {
        // Burn's `BatchNorm::forward_train` update, `r·(1 − momentum) + batch·momentum`
        // (on wgpu in the statistics kernel's dispatch).
        Stats::BatchUpdating(Box::new((
            bn.running_mean.value_sync().to_device(&device),
            bn.running_var.value_sync().to_device(&device),
            bn.momentum,
        )))
    } else {
        Stats::Running(Box::new((
            bn.running_mean.value().to_device(&device),
            bn.running_var.value().to_device(&device),
        )))
    };
    let out = batch_norm(x, bn.gamma.val(), bn.beta.val(), stats, bn.epsilon, act);
    if let Some((mean, var)) = out.running {
        bn.running_mean.update(mean);
        bn.running_var.update(var);
    }
    out.output
}

/// torchvision's `Conv2dNormActivation` with BatchNorm: conv → BatchNorm → activation.
#[derive(Module, Debug)]
pub struct ConvNormAct {
    /// The convolution (`….0` in torchvision).
    pub conv: Conv2d,
    /// Its BatchNorm (`….1`).
    pub bn: BatchNorm,
    /// The activation (`….2`, no parameters).
    #[module(skip)]
    pub act: Activation,
}

impl ConvNormAct {
    /// `spec`, then a BatchNorm with `eps` / `momentum` (torch's convention), then `act`.
    pub fn new(spec: ConvSpec, bn: BnSpec, act: Activation, device: &Device) -> Self {
        Self {
            conv: spec.init(device),
            bn: bn.init(spec.c_out, device),
            act,
        }
    }

    /// # Shapes
    /// `[N, C_in, H, W]` → `[N, C_out, H/stride, W/stride]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = self.conv.run(x);
        match self.act {
            Activation::Relu => self.bn.run_relu(x),
            Activation::Silu => self.bn.run_silu(x),
            act => act.forward(self.bn.run(x)),
        }
    }

    /// Output channels.
    pub fn c_out(&self) -> usize {
        self.conv.weight.shape().dims::<4>()[0]
    }
}

/// BatchNorm hyper-parameters in torch's convention (`momentum` weighs the new batch).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct BnSpec {
    /// `eps` added to the variance.
    pub eps: f64,
    /// Running-statistics momentum.
    pub momentum: f64,
}

impl BnSpec {
    /// torch's defaults: eps 1e-5, momentum 0.1.
    pub const TORCH: Self = Self {
        eps: 1e-5,
        momentum: 0.1,
    };

    /// A BatchNorm over `c` channels.
    pub fn init(self, c: usize, device: &Device) -> BatchNorm {
        BatchNormConfig::new(c)
            .with_epsilon(self.eps)
            .with_momentum(self.momentum)
            .init(device)
    }
}

/// `torchvision.ops.SqueezeExcitation`: global average pool → 1×1 conv (`fc1`) →
/// activation → 1×1 conv (`fc2`) → scale activation, multiplied into the input.
#[derive(Module, Debug)]
pub struct SqueezeExcitation {
    /// Squeeze convolution (with bias).
    pub fc1: Conv2d,
    /// Excitation convolution (with bias).
    pub fc2: Conv2d,
    /// Between the two (SiLU in EfficientNet, ReLU in MobileNetV3).
    #[module(skip)]
    pub act: Activation,
    /// On the scale (sigmoid in EfficientNet, hard-sigmoid in MobileNetV3).
    #[module(skip)]
    pub scale_act: Activation,
}

impl SqueezeExcitation {
    /// `channels` squeezed to `squeeze` channels.
    pub fn new(
        channels: usize,
        squeeze: usize,
        act: Activation,
        scale_act: Activation,
        device: &Device,
    ) -> Self {
        Self {
            fc1: ConvSpec::new(channels, squeeze, 1).bias(true).init(device),
            fc2: ConvSpec::new(squeeze, channels, 1).bias(true).init(device),
            act,
            scale_act,
        }
    }

    /// # Shapes
    /// `[N, C, H, W]` → `[N, C, H, W]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [n, c, h, w] = x.dims();
        let pooled = x
            .clone()
            .reshape([n, c, h * w])
            .mean_dim(2)
            .reshape([n, c, 1, 1]);
        let scale = self
            .scale_act
            .forward(self.fc2.run(self.act.forward(self.fc1.run(pooled))));
        x * scale
    }
}

/// `torchvision.ops.StochasticDepth(p, "row")`: in training, each sample's residual branch
/// is dropped with probability `p` and the kept ones scaled by `1 / (1 − p)`; the identity
/// in evaluation. Random numbers come from the backend's seeded generator, like Dropout's.
#[derive(Module, Debug)]
pub struct StochasticDepth {
    /// Drop probability.
    pub prob: f64,
    /// Whether the module is in training mode (turned off by `valid()` / freezing, as
    /// Burn's Dropout).
    pub training: Param<Flag>,
}

impl StochasticDepth {
    /// Drops with probability `prob`.
    ///
    /// # Panics
    /// If `prob` is not in `[0, 1)`.
    pub fn new(prob: f64) -> Self {
        assert!(
            prob.is_finite() && (0.0..1.0).contains(&prob),
            "StochasticDepth: probability must be in [0, 1), got {prob}"
        );
        Self {
            prob,
            training: Param::from_bool(true),
        }
    }

    /// # Shapes
    /// `[N, …]` → `[N, …]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        if !self.training.is_enabled() || !x.device().is_autodiff() || self.prob == 0.0 {
            return x;
        }
        let keep = 1.0 - self.prob;
        let [n, ..] = x.dims();
        let mask: Tensor<4> =
            Tensor::random([n, 1, 1, 1], Distribution::Bernoulli(keep), &x.device());
        x * mask.div_scalar(keep)
    }
}

/// ConvNeXt's `LayerNorm2d`: LayerNorm over the channels of each pixel of an `[N, C, H, W]`
/// map (computed channels-last, as torchvision's permute → `layer_norm` → permute).
#[derive(Module, Debug)]
pub struct LayerNorm2d {
    /// The LayerNorm over `C`.
    pub norm: LayerNorm,
}

impl LayerNorm2d {
    /// Over `c` channels with this `eps` (ConvNeXt: 1e-6).
    pub fn new(c: usize, eps: f64, device: &Device) -> Self {
        Self {
            norm: LayerNormConfig::new(c).with_epsilon(eps).init(device),
        }
    }

    /// # Shapes
    /// `[N, C, H, W]` → `[N, C, H, W]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.norm
            .forward(x.permute([0, 2, 3, 1]))
            .permute([0, 3, 1, 2])
    }
}

#[cfg(test)]
mod tests {
    use super::make_divisible;

    #[test]
    fn make_divisible_matches_torchvision() {
        // torchvision: _make_divisible(32 * 0.25, 8) = 8, (16 * 0.35, 8) = 8,
        // (1280 * 1.4, 8) = 1792, (88 * 0.75, 8) = 64 (66 → 64 ≥ 0.9·66), (36, 8) = 40.
        assert_eq!(make_divisible(8.0, 8), 8);
        assert_eq!(make_divisible(16.0 * 0.35, 8), 8);
        assert_eq!(make_divisible(1280.0 * 1.4, 8), 1792);
        assert_eq!(make_divisible(66.0, 8), 64);
        assert_eq!(make_divisible(36.0, 8), 40);
        assert_eq!(make_divisible(11.0, 8), 16); // 8 < 0.9 · 11
    }
}
