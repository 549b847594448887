//! EfficientNet B0–B7 and EfficientNetV2 S/M/L, exactly as torchvision builds them.
//!
//! Tan, Le, *EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks*,
//! ICML 2019, <https://arxiv.org/abs/1905.11946>; *EfficientNetV2: Smaller Models and
//! Faster Training*, ICML 2021, <https://arxiv.org/abs/2104.00298>. Layer for layer
//! `torchvision/models/efficientnet.py`: stem Conv3×3/2-BN-SiLU (`features.0`); stages of
//! `MBConv` (optional 1×1 expansion, depthwise k×k with the stride, squeeze-excitation with
//! SiLU and sigmoid squeezing to `C_in / 4`, linear 1×1 projection) or, in V2's first
//! stages, `FusedMBConv` (k×k expansion with the stride, then 1×1 projection; a single
//! k×k conv when the ratio is 1); the shortcut, with stochastic depth growing linearly to
//! 0.2 over the blocks, where stride is 1 and widths match; a final 1×1 Conv-BN-SiLU
//! (`4 × C` for B0–B7, 1280 for V2). BatchNorm eps 1e-5 for B0–B4 (torchvision's default
//! `norm_layer`), 1e-3 with momentum 0.01 for B5–B7, 1e-3 for V2. Convolutions are
//! symmetric-padded (`(k − 1) / 2`), as torchvision's weights (not TF's "same") expect.
//!
//! petal's tree: `stem`, `stages.{s}.blocks.{b}.{expand,depthwise,se,project}`, `last`
//! ↔ torchvision's `features.{0, s+1, S+1}` with `….{b}.block.{j}` numbered by what exists.

use crate::backbone::{Family, FamilyConfig, FeatureExtractor, fuse_ids, ids};
use crate::classifier::{HeadConfig, LayerGroup};
use crate::error::CoreError;
use crate::layers::{
    Activation, BnSpec, ConvNormAct, ConvSpec, MAX_WIDTH, SqueezeExcitation, StochasticDepth,
    check_prob, check_sizes, make_divisible,
};
use crate::onnx::OnnxGraph;
use crate::weights::StateDict;
use burn::module::Module;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

/// One stage of an EfficientNet (torchvision's `MBConvConfig` / `FusedMBConvConfig`, after
/// width and depth scaling).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageSpec {
    /// `FusedMBConv` (V2's first stages) instead of `MBConv`.
    pub fused: bool,
    /// Expansion ratio (1 = no expansion convolution).
    pub expand_ratio: usize,
    /// Kernel of the depthwise (MBConv) or fused (FusedMBConv) convolution.
    pub kernel: usize,
    /// Stride of the stage's first block.
    pub stride: usize,
    /// Input channels of the first block.
    pub c_in: usize,
    /// Output channels of every block.
    pub c_out: usize,
    /// Number of blocks.
    pub layers: usize,
}

impl StageSpec {
    /// Channels after the expansion, as torchvision's `adjust_channels(c_in, ratio)`.
    pub fn expanded(&self, c_in: usize) -> usize {
        make_divisible((c_in * self.expand_ratio) as f64, 8)
    }
}

/// Strides of torchvision's stages, by position (the same for B0–B7 and V2 S/M/L). The
/// weights do not hold the strides: a file whose stages match no preset is read with these.
const STAGE_STRIDES: [usize; 7] = [1, 2, 2, 2, 1, 2, 1];

/// [`EfficientNet`] configuration; presets mirror torchvision's constructors.
#[derive(Config, Debug, PartialEq)]
pub struct EfficientNetConfig {
    /// The stages.
    pub stages: Vec<StageSpec>,
    /// Channels of the final 1×1 convolution (the feature width).
    pub last_channel: usize,
    /// BatchNorm eps.
    #[config(default = 1e-5)]
    pub bn_eps: f64,
    /// BatchNorm momentum (torch's convention).
    #[config(default = 0.1)]
    pub bn_momentum: f64,
    /// Stochastic depth of the last block (0 → this, linearly over the blocks).
    #[config(default = 0.2)]
    pub stochastic_depth_prob: f64,
    /// Dropout of torchvision's classifier.
    #[config(default = 0.2)]
    pub dropout: f64,
}

impl EfficientNetConfig {
    /// torchvision's `_efficientnet_conf("efficientnet_bN", width_mult, depth_mult)`.
    pub fn v1(width_mult: f64, depth_mult: f64, dropout: f64) -> Self {
        let table = [
            (1, 3, 1, 32, 16, 1),
            (6, 3, 2, 16, 24, 2),
            (6, 5, 2, 24, 40, 2),
            (6, 3, 2, 40, 80, 3),
            (6, 5, 1, 80, 112, 3),
            (6, 5, 2, 112, 192, 4),
            (6, 3, 1, 192, 320, 1),
        ];
        let ch = |c: usize| make_divisible(c as f64 * width_mult, 8);
        let stages: Vec<StageSpec> = table
            .iter()
            .map(|&(e, k, s, i, o, n)| StageSpec {
                fused: false,
                expand_ratio: e,
                kernel: k,
                stride: s,
                c_in: ch(i),
                c_out: ch(o),
                layers: (n as f64 * depth_mult).ceil() as usize,
            })
            .collect();
        let last = 4 * stages[6].c_out;
        Self::new(stages, last).with_dropout(dropout)
    }

    fn v2(table: &[(bool, usize, usize, usize, usize, usize, usize)], dropout: f64) -> Self {
        let stages = table
            .iter()
            .map(|&(fused, e, k, s, i, o, n)| StageSpec {
                fused,
                expand_ratio: e,
                kernel: k,
                stride: s,
                c_in: i,
                c_out: o,
                layers: n,
            })
            .collect();
        Self::new(stages, 1280)
            .with_bn_eps(1e-3)
            .with_dropout(dropout)
    }

    /// B5–B7: BatchNorm eps 1e-3, momentum 0.01.
    fn large_bn(self) -> Self {
        self.with_bn_eps(1e-3).with_bn_momentum(0.01)
    }

    /// EfficientNet-B0 (width 1.0, depth 1.0, dropout 0.2): 1280 features.
    pub fn b0() -> Self {
        Self::v1(1.0, 1.0, 0.2)
    }
    /// EfficientNet-B1 (1.0, 1.1, 0.2).
    pub fn b1() -> Self {
        Self::v1(1.0, 1.1, 0.2)
    }
    /// EfficientNet-B2 (1.1, 1.2, 0.3).
    pub fn b2() -> Self {
        Self::v1(1.1, 1.2, 0.3)
    }
    /// EfficientNet-B3 (1.2, 1.4, 0.3).
    pub fn b3() -> Self {
        Self::v1(1.2, 1.4, 0.3)
    }
    /// EfficientNet-B4 (1.4, 1.8, 0.4).
    pub fn b4() -> Self {
        Self::v1(1.4, 1.8, 0.4)
    }
    /// EfficientNet-B5 (1.6, 2.2, 0.4).
    pub fn b5() -> Self {
        Self::v1(1.6, 2.2, 0.4).large_bn()
    }
    /// EfficientNet-B6 (1.8, 2.6, 0.5).
    pub fn b6() -> Self {
        Self::v1(1.8, 2.6, 0.5).large_bn()
    }
    /// EfficientNet-B7 (2.0, 3.1, 0.5).
    pub fn b7() -> Self {
        Self::v1(2.0, 3.1, 0.5).large_bn()
    }
    /// EfficientNetV2-S.
    pub fn v2_s() -> Self {
        Self::v2(
            &[
                (true, 1, 3, 1, 24, 24, 2),
                (true, 4, 3, 2, 24, 48, 4),
                (true, 4, 3, 2, 48, 64, 4),
                (false, 4, 3, 2, 64, 128, 6),
                (false, 6, 3, 1, 128, 160, 9),
                (false, 6, 3, 2, 160, 256, 15),
            ],
            0.2,
        )
    }
    /// EfficientNetV2-M.
    pub fn v2_m() -> Self {
        Self::v2(
            &[
                (true, 1, 3, 1, 24, 24, 3),
                (true, 4, 3, 2, 24, 48, 5),
                (true, 4, 3, 2, 48, 80, 5),
                (false, 4, 3, 2, 80, 160, 7),
                (false, 6, 3, 1, 160, 176, 14),
                (false, 6, 3, 2, 176, 304, 18),
                (false, 6, 3, 1, 304, 512, 5),
            ],
            0.3,
        )
    }
    /// EfficientNetV2-L.
    pub fn v2_l() -> Self {
        Self::v2(
            &[
                (true, 1, 3, 1, 32, 32, 4),
                (true, 4, 3, 2, 32, 64, 7),
                (true, 4, 3, 2, 64, 96, 7),
                (false, 4, 3, 2, 96, 192, 10),
                (false, 6, 3, 1, 192, 224, 19),
                (false, 6, 3, 2, 224, 384, 25),
                (false, 6, 3, 1, 384, 640, 7),
            ],
            0.4,
        )
    }

    /// `(stage, block) → (input channels, stride)` for every block, in order.
    fn blocks(&self) -> Vec<(usize, usize, StageSpec, usize, usize)> {
        let mut out = Vec::new();
        for (s, st) in self.stages.iter().enumerate() {
            for b in 0..st.layers {
                let (c_in, stride) = if b == 0 {
                    (st.c_in, st.stride)
                } else {
                    (st.c_out, 1)
                };
                out.push((s, b, *st, c_in, stride));
            }
        }
        out
    }

    /// Builds the network with torchvision's initialisation (Kaiming-normal fan-out
    /// convolutions with zero biases, BatchNorm weight 1 / bias 0).
    ///
    /// # Panics
    /// If [`Family::check`] fails (no stage, a stage without blocks, a zero size, …).
    pub fn init(&self, device: &Device) -> EfficientNet {
        if let Err(e) = self.check() {
            panic!("EfficientNet: {e}");
        }
        let bn = BnSpec {
            eps: self.bn_eps,
            momentum: self.bn_momentum,
        };
        let blocks = self.blocks();
        let total = blocks.len() as f64;
        let mut stages: Vec<EffStage> = self
            .stages
            .iter()
            .map(|_| EffStage { blocks: Vec::new() })
            .collect();
        for (id, (s, _, st, c_in, stride)) in blocks.into_iter().enumerate() {
            let sd = self.stochastic_depth_prob * id as f64 / total;
            stages[s]
                .blocks
                .push(MBConv::new(&st, c_in, stride, sd, bn, device));
        }
        let first = self.stages[0].c_in;
        let last_in = self.stages.last().map_or(first, |s| s.c_out);
        EfficientNet {
            stem: ConvNormAct::new(
                ConvSpec::new(3, first, 3).stride(2),
                bn,
                Activation::Silu,
                device,
            ),
            stages,
            last: ConvNormAct::new(
                ConvSpec::new(last_in, self.last_channel, 1),
                bn,
                Activation::Silu,
                device,
            ),
        }
    }
}

/// An `MBConv` or `FusedMBConv` block.
#[derive(Module, Debug)]
pub struct MBConv {
    /// 1×1 expansion (MBConv) or k×k expansion carrying the stride (FusedMBConv); absent
    /// when the ratio is 1.
    pub expand: Option<ConvNormAct>,
    /// Depthwise k×k carrying the stride (MBConv only).
    pub depthwise: Option<ConvNormAct>,
    /// Squeeze-excitation (MBConv only).
    pub se: Option<SqueezeExcitation>,
    /// 1×1 linear projection; for a FusedMBConv of ratio 1, its single k×k Conv-BN-SiLU.
    pub project: ConvNormAct,
    /// Stochastic depth on the residual branch.
    pub stochastic_depth: StochasticDepth,
    /// Whether the block adds its input (stride 1, widths equal).
    #[module(skip)]
    pub residual: bool,
}

impl MBConv {
    fn new(
        st: &StageSpec,
        c_in: usize,
        stride: usize,
        sd: f64,
        bn: BnSpec,
        device: &Device,
    ) -> Self {
        let exp = st.expanded(c_in);
        let k = st.kernel;
        let silu = Activation::Silu;
        let cna = |spec: ConvSpec, act| ConvNormAct::new(spec, bn, act, device);
        let (expand, depthwise, se, project) = if st.fused {
            if exp != c_in {
                (
                    Some(cna(ConvSpec::new(c_in, exp, k).stride(stride), silu)),
                    None,
                    None,
                    cna(ConvSpec::new(exp, st.c_out, 1), Activation::Identity),
                )
            } else {
                (
                    None,
                    None,
                    None,
                    cna(ConvSpec::new(c_in, st.c_out, k).stride(stride), silu),
                )
            }
        } else {
            (
                (exp != c_in).then(|| cna(ConvSpec::new(c_in, exp, 1), silu)),
                Some(cna(
                    ConvSpec::new(exp, exp, k).stride(stride).depthwise(),
                    silu,
                )),
                Some(SqueezeExcitation::new(
                    exp,
                    (c_in / 4).max(1),
                    Activation::Silu,
                    Activation::Sigmoid,
                    device,
                )),
                cna(ConvSpec::new(exp, st.c_out, 1), Activation::Identity),
            )
        };
        Self {
            expand,
            depthwise,
            se,
            project,
            stochastic_depth: StochasticDepth::new(sd),
            residual: stride == 1 && c_in == st.c_out,
        }
    }

    /// # Shapes
    /// `[N, C_in, H, W]` → `[N, C_out, H/stride, W/stride]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut h = x.clone();
        if let Some(e) = &self.expand {
            h = e.forward(h);
        }
        if let Some(d) = &self.depthwise {
            h = d.forward(h);
        }
        if let Some(se) = &self.se {
            h = se.forward(h);
        }
        let h = self.project.forward(h);
        if self.residual {
            self.stochastic_depth.forward(h) + x
        } else {
            h
        }
    }

    /// torchvision's `block.{j}` index of each present part, in order.
    fn parts(fused: bool, expand: bool) -> &'static [&'static str] {
        match (fused, expand) {
            (false, true) => &["expand", "depthwise", "se", "project"],
            (false, false) => &["depthwise", "se", "project"],
            (true, true) => &["expand", "project"],
            (true, false) => &["project"],
        }
    }
}

/// One stage (`features.{s+1}`).
#[derive(Module, Debug)]
pub struct EffStage {
    /// The stage's blocks.
    pub blocks: Vec<MBConv>,
}

/// A torchvision-compatible EfficientNet feature extractor (`features`, no classifier).
#[derive(Module, Debug)]
pub struct EfficientNet {
    /// `features.0`: Conv3×3/2-BN-SiLU.
    pub stem: ConvNormAct,
    /// `features.1` … `features.S`.
    pub stages: Vec<EffStage>,
    /// `features.S+1`: Conv1×1-BN-SiLU to the feature width.
    pub last: ConvNormAct,
}

impl FeatureExtractor for EfficientNet {
    /// `forward_features` as ONNX nodes (stochastic depth is the identity in inference).
    fn to_onnx(&self, g: &mut OnnxGraph, x: &str) -> Result<String, CoreError> {
        let mut x = g.conv_norm_act(&self.stem, x)?;
        for block in self.stages.iter().flat_map(|s| &s.blocks) {
            let mut h = x.clone();
            if let Some(e) = &block.expand {
                h = g.conv_norm_act(e, &h)?;
            }
            if let Some(d) = &block.depthwise {
                h = g.conv_norm_act(d, &h)?;
            }
            if let Some(se) = &block.se {
                h = g.squeeze_excitation(se, &h)?;
            }
            let h = g.conv_norm_act(&block.project, &h)?;
            x = if block.residual { g.add(&h, &x) } else { h };
        }
        g.conv_norm_act(&self.last, &x)
    }

    fn num_features(&self) -> usize {
        self.last.c_out()
    }

    /// # Shapes
    /// `[N, 3, H, W]` → `[N, num_features, H/32, W/32]`
    fn forward_features(&self, x: Tensor<4>) -> Tensor<4> {
        let mut x = self.stem.forward(x);
        for stage in &self.stages {
            for block in &stage.blocks {
                x = block.forward(x);
            }
        }
        self.last.forward(x)
    }

    /// `features.0–k | features.k+1–S+1`, the stages split in halves.
    fn layer_groups(&self) -> Vec<LayerGroup> {
        let n = self.stages.len();
        let k = n.div_ceil(2);
        let g0 = fuse_ids(ids(&self.stem), &self.stages[..k]);
        let g1 = fuse_ids(ids(&self.last), &self.stages[k..]);
        vec![
            LayerGroup::new(format!("features.0-{k}"), g0),
            LayerGroup::new(format!("features.{}-{}", k + 1, n + 1), g1),
        ]
    }
}

/// `conv` / `bn` of a `ConvNormAct` ↔ torchvision's `0` / `1`.
pub(crate) fn conv_bn_import(part: &str) -> Option<&'static str> {
    match part {
        "0" => Some("conv"),
        "1" => Some("bn"),
        _ => None,
    }
}

/// The inverse of [`conv_bn_import`].
pub(crate) fn conv_bn_export(part: &str) -> Option<&'static str> {
    match part {
        "conv" => Some("0"),
        "bn" => Some("1"),
        _ => None,
    }
}

impl Family for EfficientNetConfig {
    fn check(&self) -> Result<(), String> {
        if self.stages.is_empty() || self.stages.len() > 16 {
            return Err(format!("1 to 16 stages, got {}", self.stages.len()));
        }
        for (i, s) in self.stages.iter().enumerate() {
            check_sizes(
                &format!("stage {i} (c_in, c_out, kernel, expand_ratio, layers)"),
                &[s.c_in, s.c_out, s.kernel, s.expand_ratio, s.layers],
                5,
                MAX_WIDTH,
            )?;
            if !(1..=2).contains(&s.stride) {
                return Err(format!(
                    "stage {i}: stride must be 1 or 2, got {}",
                    s.stride
                ));
            }
        }
        check_sizes("last_channel", &[self.last_channel], 1, MAX_WIDTH)?;
        if !(self.bn_eps.is_finite() && self.bn_eps > 0.0) {
            return Err(format!("bn_eps must be > 0, got {}", self.bn_eps));
        }
        if !(self.bn_momentum.is_finite() && (0.0..=1.0).contains(&self.bn_momentum)) {
            return Err(format!(
                "bn_momentum must be in [0, 1], got {}",
                self.bn_momentum
            ));
        }
        check_prob("stochastic_depth_prob", self.stochastic_depth_prob)?;
        check_prob("dropout", self.dropout)
    }

    fn describe(&self) -> String {
        let stages: Vec<String> = self
            .stages
            .iter()
            .map(|s| {
                format!(
                    "{}{}k{}s{}:{}→{}×{}",
                    if s.fused { "F" } else { "M" },
                    s.expand_ratio,
                    s.kernel,
                    s.stride,
                    s.c_in,
                    s.c_out,
                    s.layers
                )
            })
            .collect();
        format!(
            "efficientnet([{}], last={}, bn_eps={})",
            stages.join(", "),
            self.last_channel,
            self.bn_eps
        )
    }

    fn num_features(&self) -> usize {
        self.last_channel
    }

    fn output_stride(&self) -> usize {
        2 * self.stages.iter().map(|s| s.stride).product::<usize>()
    }

    fn torchvision_head(&self) -> HeadConfig {
        HeadConfig::linear(self.dropout)
    }

    fn torchvision_head_keys(&self) -> &'static [(&'static str, &'static str)] {
        &[("fc", "classifier.1")]
    }

    fn import_key(&self, key: &str, _: &StateDict) -> Option<String> {
        let rest = key.strip_prefix("features.")?;
        let (i, tail) = rest.split_once('.')?;
        let i: usize = i.parse().ok()?;
        let n = self.stages.len();
        if i == 0 || i == n + 1 {
            let (part, p) = tail.split_once('.')?;
            let which = if i == 0 { "stem" } else { "last" };
            return Some(format!("{which}.{}.{p}", conv_bn_import(part)?));
        }
        let st = self.stages.get(i - 1)?;
        let (b, tail) = tail.split_once('.')?;
        let b: usize = b.parse().ok()?;
        let c_in = if b == 0 { st.c_in } else { st.c_out };
        let tail = tail.strip_prefix("block.")?;
        let (j, tail) = tail.split_once('.')?;
        let parts = MBConv::parts(st.fused, st.expanded(c_in) != c_in);
        let part = parts.get(j.parse::<usize>().ok()?)?;
        let inner = if *part == "se" {
            tail.to_string()
        } else {
            let (k, p) = tail.split_once('.')?;
            format!("{}.{p}", conv_bn_import(k)?)
        };
        Some(format!("stages.{}.blocks.{b}.{part}.{inner}", i - 1))
    }

    fn export_key(&self, path: &str) -> Option<String> {
        let parts: Vec<&str> = path.split('.').collect();
        let n = self.stages.len();
        let p = match parts[..] {
            ["stem", part] => format!("0.{}", conv_bn_export(part)?),
            ["last", part] => format!("{}.{}", n + 1, conv_bn_export(part)?),
            ["stages", s, "blocks", b, part, ref rest @ ..] => {
                let s: usize = s.parse().ok()?;
                let b: usize = b.parse().ok()?;
                let st = self.stages.get(s)?;
                let c_in = if b == 0 { st.c_in } else { st.c_out };
                let order = MBConv::parts(st.fused, st.expanded(c_in) != c_in);
                let j = order.iter().position(|p| *p == part)?;
                let inner = match rest {
                    [x] if part == "se" => x.to_string(),
                    [x] => conv_bn_export(x)?.to_string(),
                    _ => return None,
                };
                format!("{}.{b}.block.{j}.{inner}", s + 1)
            }
            _ => return None,
        };
        Some(format!("features.{p}"))
    }
}

impl FamilyConfig for EfficientNetConfig {
    type Module = EfficientNet;
    const NAME: &'static str = "efficientnet";
    const SIGNATURE: &'static str = "features.1.0.block.0.0.weight";

    fn presets() -> Vec<(&'static str, Self)> {
        vec![
            ("efficientnet_b0", Self::b0()),
            ("efficientnet_b1", Self::b1()),
            ("efficientnet_b2", Self::b2()),
            ("efficientnet_b3", Self::b3()),
            ("efficientnet_b4", Self::b4()),
            ("efficientnet_b5", Self::b5()),
            ("efficientnet_b6", Self::b6()),
            ("efficientnet_b7", Self::b7()),
            ("efficientnet_v2_s", Self::v2_s()),
            ("efficientnet_v2_m", Self::v2_m()),
            ("efficientnet_v2_l", Self::v2_l()),
        ]
    }

    /// Stages of blocks that hold a `block` sequence: `features.1.0.block.…`.
    fn detect(sd: &StateDict) -> bool {
        sd.contains("features.0.0.weight") && sd.contains(Self::SIGNATURE)
    }

    fn infer(sd: &StateDict) -> Result<Self, String> {
        let n = sd.count_from("features.", 1).saturating_sub(1);
        if n == 0 {
            return Err("no stage `features.1` before the last convolution".into());
        }
        let last_channel = sd.dim(&format!("features.{}.0.weight", n + 1), 0)?;
        let mut stages = Vec::new();
        for s in 1..=n {
            let layers = sd.count_from(&format!("features.{s}."), 0);
            let key = |j: usize, tail: &str| format!("features.{s}.0.block.{j}.{tail}");
            let parts = sd.count_from(&format!("features.{s}.0.block."), 0);
            let se = (0..parts).any(|j| sd.contains(&key(j, "fc1.weight")));
            let shape = |j: usize| {
                sd.shape(&key(j, "0.weight"))
                    .filter(|s| s.len() == 4)
                    .ok_or_else(|| format!("key `{}` is missing or not 4-D", key(j, "0.weight")))
            };
            let (fused, c_in, exp, kernel, c_out) = match (se, parts) {
                (true, 4) => {
                    let e = shape(0)?;
                    (false, e[1], e[0], shape(1)?[2], shape(3)?[0])
                }
                (true, 3) => {
                    let d = shape(0)?;
                    (false, d[0], d[0], d[2], shape(2)?[0])
                }
                (false, 2) => {
                    let e = shape(0)?;
                    (true, e[1], e[0], e[2], shape(1)?[0])
                }
                (false, 1) => {
                    let c = shape(0)?;
                    (true, c[1], c[1], c[2], c[0])
                }
                _ => {
                    return Err(format!(
                        "`features.{s}.0.block` has {parts} parts{}: no MBConv/FusedMBConv layout",
                        if se { " with squeeze-excitation" } else { "" }
                    ));
                }
            };
            let expand_ratio = (1..=16)
                .find(|&r| make_divisible((c_in * r) as f64, 8) == exp || (r == 1 && exp == c_in))
                .ok_or_else(|| {
                    format!("stage {s}: expansion {c_in} → {exp} is no integer ratio")
                })?;
            stages.push(StageSpec {
                fused,
                expand_ratio,
                kernel,
                stride: STAGE_STRIDES.get(s - 1).copied().unwrap_or(1),
                c_in,
                c_out,
                layers,
            });
        }
        let same = |p: &Self| {
            p.last_channel == last_channel
                && p.stages.len() == stages.len()
                && p.stages.iter().zip(&stages).all(|(a, b)| {
                    StageSpec {
                        stride: b.stride,
                        ..*a
                    } == *b
                })
        };
        if let Some((_, preset)) = Self::presets().into_iter().find(|(_, p)| same(p)) {
            return Ok(preset);
        }
        // Not a preset: torchvision's stage strides by position, and the BatchNorm eps of
        // its family (V2's 1e-3 when a stage is fused, else B0–B4's 1e-5).
        let eps = if stages.iter().any(|s| s.fused) {
            1e-3
        } else {
            1e-5
        };
        Ok(Self::new(stages, last_channel).with_bn_eps(eps))
    }

    fn build(&self, device: &Device) -> EfficientNet {
        self.init(device)
    }

    /// timm's `efficientnet_b*` (same network): `conv_stem`, `bn1`, `blocks.{s}.{b}.…`,
    /// `conv_head`, `bn2`, `classifier`.
    fn timm_detect(has_prefix: &dyn Fn(&str) -> bool) -> bool {
        has_prefix("conv_stem.weight") && has_prefix("blocks.0.0.conv_dw.") && has_prefix("bn2.")
    }

    fn timm_key(
        key: &str,
        _: &[usize],
        has_prefix: &dyn Fn(&str) -> bool,
    ) -> Option<(String, Option<Vec<usize>>)> {
        let stages = (0..)
            .take_while(|i| has_prefix(&format!("blocks.{i}.")))
            .count();
        let (first, rest) = key.split_once('.')?;
        let name = match first {
            "conv_stem" => format!("features.0.0.{rest}"),
            "bn1" => format!("features.0.1.{rest}"),
            "conv_head" => format!("features.{}.0.{rest}", stages + 1),
            "bn2" => format!("features.{}.1.{rest}", stages + 1),
            "classifier" => format!("classifier.1.{rest}"),
            "blocks" => {
                let (s, rest) = rest.split_once('.')?;
                let (b, rest) = rest.split_once('.')?;
                let s: usize = s.parse().ok()?;
                // timm's DepthwiseSeparableConv (no expansion) or InvertedResidual.
                let inverted = has_prefix(&format!("blocks.{s}.{b}.conv_pwl."));
                let (part, p) = match rest.strip_prefix("se.") {
                    Some(se) => {
                        let (c, p) = se.split_once('.')?;
                        (format!("se.{c}"), p)
                    }
                    None => {
                        let (c, p) = rest.split_once('.')?;
                        (c.to_string(), p)
                    }
                };
                let j = match (inverted, part.as_str()) {
                    (_, "bn1") => "0.1",
                    (false, "conv_dw") => "0.0",
                    (false, "se.conv_reduce") => "1.fc1",
                    (false, "se.conv_expand") => "1.fc2",
                    (false, "conv_pw") => "2.0",
                    (false, "bn2") => "2.1",
                    (true, "conv_pw") => "0.0",
                    (true, "conv_dw") => "1.0",
                    (true, "bn2") => "1.1",
                    (true, "se.conv_reduce") => "2.fc1",
                    (true, "se.conv_expand") => "2.fc2",
                    (true, "conv_pwl") => "3.0",
                    (true, "bn3") => "3.1",
                    _ => return None,
                };
                format!("features.{}.{b}.block.{j}.{p}", s + 1)
            }
            _ => return None,
        };
        Some((name, None))
    }
}
