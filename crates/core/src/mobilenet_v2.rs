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
//! torchvision names (`features.4.conv.1.0.weight`) are mapped here
//! ([`Family::import_key`]).

use crate::backbone::{Family, FamilyConfig, FeatureExtractor, fuse_ids, ids};
use crate::classifier::{HeadConfig, LayerGroup};
use crate::error::CoreError;
use crate::layers::{Activation, BnSpec, ConvNormAct, ConvSpec, check_sizes};
use crate::layers::{BnRun, ConvRun};
use crate::onnx::OnnxGraph;
use crate::weights::StateDict;
use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, BatchNormConfig};
use burn::prelude::*;

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

pub use crate::layers::make_divisible;

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
        if let Err(e) = self.check() {
            panic!("MobileNetV2: {e}");
        }
        let blocks = self
            .blocks()
            .into_iter()
            .map(|s| InvertedResidual::new(s, device))
            .collect::<Vec<_>>();
        let c_last_in = blocks.last().map(|b| b.spec().c_out).unwrap_or(0);
        MobileNetV2 {
            stem: conv_bn_relu6(3, self.input_channel(), 3, 2, 1, device),
            blocks,
            last: conv_bn_relu6(c_last_in, self.num_features(), 1, 1, 1, device),
        }
    }
}

/// Conv-BN-ReLU6 (torchvision's `Conv2dNormActivation` with ReLU6; Kaiming-normal fan-out).
fn conv_bn_relu6(
    c_in: usize,
    c_out: usize,
    k: usize,
    stride: usize,
    groups: usize,
    device: &Device,
) -> ConvNormAct {
    ConvNormAct::new(
        ConvSpec::new(c_in, c_out, k).stride(stride).groups(groups),
        BnSpec::TORCH,
        Activation::Relu6,
        device,
    )
}

/// An inverted residual block.
#[derive(Module, Debug)]
pub struct InvertedResidual {
    /// 1×1 expansion to `t · C_in` channels (absent when `t = 1`).
    pub expand: Option<ConvNormAct>,
    /// Depthwise 3×3 convolution carrying the stride.
    pub depthwise: ConvNormAct,
    /// Linear 1×1 projection.
    pub project: Conv2d,
    /// BatchNorm after the projection (no activation).
    pub project_bn: BatchNorm,
}

impl InvertedResidual {
    fn new(s: InvertedResidualSpec, device: &Device) -> Self {
        let hidden = (s.c_in as f64 * s.expand_ratio as f64).round() as usize;
        Self {
            expand: (s.expand_ratio != 1).then(|| conv_bn_relu6(s.c_in, hidden, 1, 1, 1, device)),
            depthwise: conv_bn_relu6(hidden, hidden, 3, s.stride, hidden, device),
            project: ConvSpec::new(hidden, s.c_out, 1).init(device),
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
        let out = self.project_bn.run(self.project.run(h));
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
    pub stem: ConvNormAct,
    /// `features.1` … `features.17`.
    pub blocks: Vec<InvertedResidual>,
    /// `features.18`: Conv1×1-BN-ReLU6 to the feature width.
    pub last: ConvNormAct,
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

impl Family for MobileNetV2Config {
    fn check(&self) -> Result<(), String> {
        if !(self.width_mult.is_finite() && self.width_mult > 0.0 && self.width_mult <= 16.0) {
            return Err(format!(
                "width_mult must be in (0, 16], got {}",
                self.width_mult
            ));
        }
        check_sizes("round_nearest", &[self.round_nearest], 1, 1024)
    }

    fn describe(&self) -> String {
        format!("mobilenet_v2(width={})", self.width_mult)
    }

    fn num_features(&self) -> usize {
        make_divisible(1280.0 * self.width_mult.max(1.0), self.round_nearest)
    }

    fn torchvision_head(&self) -> HeadConfig {
        HeadConfig::linear(0.2)
    }

    fn torchvision_head_keys(&self) -> &'static [(&'static str, &'static str)] {
        &[("fc", "classifier.1")]
    }

    fn import_key(&self, key: &str, sd: &StateDict) -> Option<String> {
        let rest = key.strip_prefix("features.")?;
        let last = self.blocks().len() + 1;
        let (idx, tail) = rest.split_once('.')?;
        let i: usize = idx.parse().ok()?;
        let conv_bn = |t: &str| -> Option<String> {
            let (k, p) = t.split_once('.')?;
            Some(format!("{}.{p}", if k == "0" { "conv" } else { "bn" }))
        };
        if i == 0 {
            return Some(format!("stem.{}", conv_bn(tail)?));
        }
        if i == last {
            return Some(format!("last.{}", conv_bn(tail)?));
        }
        let t = tail.strip_prefix("conv.")?;
        let expand = sd.has_prefix(&format!("features.{i}.conv.3."));
        let (j, p) = t.split_once('.')?;
        let name = match (expand, j) {
            (true, "0") => format!("expand.{}", conv_bn(p)?),
            (true, "1") | (false, "0") => format!("depthwise.{}", conv_bn(p)?),
            (true, "2") | (false, "1") => format!("project.{p}"),
            (true, "3") | (false, "2") => format!("project_bn.{p}"),
            _ => return None,
        };
        Some(format!("blocks.{}.{name}", i - 1))
    }

    fn export_key(&self, path: &str) -> Option<String> {
        let blocks = self.blocks();
        let conv_bn = |i: usize, part: &str| -> Option<String> {
            Some(format!(
                "{i}.{}",
                match part {
                    "conv" => 0,
                    "bn" => 1,
                    _ => return None,
                }
            ))
        };
        let parts: Vec<&str> = path.split('.').collect();
        let p = match parts[..] {
            ["stem", part] => conv_bn(0, part)?,
            ["last", part] => conv_bn(blocks.len() + 1, part)?,
            ["blocks", i, ref rest @ ..] => {
                let i: usize = i.parse().ok()?;
                let expand = blocks.get(i)?.expand_ratio != 1;
                let o = usize::from(expand);
                let tail = match rest {
                    ["expand", part] if expand => conv_bn(0, part)?,
                    ["depthwise", part] => conv_bn(o, part)?,
                    ["project"] => format!("{}", 1 + o),
                    ["project_bn"] => format!("{}", 2 + o),
                    _ => return None,
                };
                format!("{}.conv.{tail}", i + 1)
            }
            _ => return None,
        };
        Some(format!("features.{p}"))
    }
}

impl FamilyConfig for MobileNetV2Config {
    type Module = MobileNetV2;
    const NAME: &'static str = "mobilenet_v2";
    const SIGNATURE: &'static str = "features.1.conv.0.0.weight";

    fn presets() -> Vec<(&'static str, Self)> {
        vec![("mobilenet_v2", Self::mobilenet_v2())]
    }

    fn aliases() -> &'static [(&'static str, &'static str)] {
        &[("mobilenetv2", "mobilenet_v2")]
    }

    /// torchvision's MobileNetV2 layout: `features.0.0` and `features.1.conv.…` (MobileNetV3
    /// names its blocks `features.1.block.…`).
    fn detect(sd: &StateDict) -> bool {
        sd.contains("features.0.0.weight") && sd.has_prefix("features.1.conv.")
    }

    fn infer(sd: &StateDict) -> Result<Self, String> {
        let stem = sd.dim("features.0.0.weight", 0)?;
        let n = sd.count_from("features.", 1);
        let last = sd.dim(&format!("features.{n}.0.weight"), 0)?;
        let project_out = |i: usize| -> Option<usize> {
            let expand = sd.has_prefix(&format!("features.{i}.conv.3."));
            let key = format!("features.{i}.conv.{}.weight", if expand { 2 } else { 1 });
            sd.shape(&key).map(|s| s[0])
        };
        // torchvision names widths `width_mult` multiples rounded to 8: find the multiplier
        // that reproduces every width in the file.
        for w in width_candidates() {
            let cfg = Self::new().with_width_mult(w);
            let blocks = cfg.blocks();
            if cfg.input_channel() == stem
                && cfg.num_features() == last
                && blocks.len() + 1 == n
                && blocks
                    .iter()
                    .enumerate()
                    .all(|(i, b)| project_out(i + 1) == Some(b.c_out))
            {
                return Ok(cfg);
            }
        }
        Err(format!(
            "no MobileNetV2 width multiplier gives stem width {stem}, {} blocks and {last} features",
            n.saturating_sub(1)
        ))
    }

    fn build(&self, device: &Device) -> MobileNetV2 {
        self.init(device)
    }
}

/// Width multipliers tried when reading a MobileNet's width back from its weights: every
/// multiple of 0.05 up to 4 and the published 0.35 / 1.3 / 1.4 first, then the multiples
/// of 0.025 (0.125, …) — the first that reproduces every width wins (several multipliers
/// can build the same network).
pub(crate) fn width_candidates() -> Vec<f64> {
    let mut candidates: Vec<f64> = (1..=80).map(|i| i as f64 * 0.05).collect();
    candidates.extend([0.35, 1.3, 1.4]);
    candidates.sort_by(f64::total_cmp);
    candidates.extend((0..80).map(|i| (2 * i + 1) as f64 * 0.025));
    candidates
}

impl FeatureExtractor for MobileNetV2 {
    fn to_onnx(&self, g: &mut OnnxGraph, x: &str) -> Result<String, CoreError> {
        let mut x = g.conv_norm_act(&self.stem, x)?;
        for b in &self.blocks {
            let h = match &b.expand {
                Some(e) => g.conv_norm_act(e, &x)?,
                None => x.clone(),
            };
            let h = g.conv_norm_act(&b.depthwise, &h)?;
            let h = g.conv(&b.project, &h)?;
            let out = g.batch_norm(&b.project_bn, &h)?;
            let spec = b.spec();
            x = if spec.stride == 1 && spec.c_in == spec.c_out {
                g.add(&x, &out)
            } else {
                out
            };
        }
        g.conv_norm_act(&self.last, &x)
    }

    fn num_features(&self) -> usize {
        MobileNetV2::num_features(self)
    }

    fn forward_features(&self, x: Tensor<4>) -> Tensor<4> {
        MobileNetV2::forward_features(self, x)
    }

    /// `features.0–8 | features.9–18`.
    fn layer_groups(&self) -> Vec<LayerGroup> {
        let k = self.blocks.len() / 2;
        let g0 = fuse_ids(ids(&self.stem), &self.blocks[..k]);
        let g1 = fuse_ids(ids(&self.last), &self.blocks[k..]);
        vec![
            LayerGroup::new(format!("features.0-{k}"), g0),
            LayerGroup::new(format!("features.{}-{}", k + 1, self.blocks.len() + 1), g1),
        ]
    }
}
