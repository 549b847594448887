//! MobileNetV3 large/small, exactly as torchvision builds it.
//!
//! Howard et al., *Searching for MobileNetV3*, ICCV 2019, <https://arxiv.org/abs/1905.02244>.
//! Layer for layer `torchvision/models/mobilenetv3.py`: stem Conv3×3/2-BN-Hardswish
//! (`features.0`); inverted residuals (optional 1×1 expansion, depthwise k×k with the
//! stride, optional squeeze-excitation with ReLU and hard-sigmoid squeezing to
//! `make_divisible(C_exp / 4, 8)`, linear 1×1 projection; ReLU or Hardswish as the table
//! says; the identity shortcut where stride is 1 and widths match); a final 1×1
//! Conv-BN-Hardswish to `6 × C`. BatchNorm eps 1e-3, momentum 0.01. torchvision's
//! classifier is avg-pool → Linear to 1280 (1024 small) → Hardswish → Dropout 0.2 → Linear,
//! carried by petal's torchvision head (`hidden`).
//!
//! petal's tree: `stem`, `blocks.{i}.{expand,depthwise,se,project}`, `last` ↔
//! torchvision's `features.0`, `features.{i+1}.block.{j}`, `features.{n+1}`. The
//! `reduced_tail` / `dilated` variants (no published weights) are not built.

use crate::backbone::{Family, FamilyConfig, FeatureExtractor, fuse_ids, ids};
use crate::classifier::{HeadConfig, LayerGroup};
use crate::efficientnet::{conv_bn_export, conv_bn_import};
use crate::error::CoreError;
use crate::layers::{
    Activation, BnSpec, ConvNormAct, ConvSpec, SqueezeExcitation, check_prob, make_divisible,
};
use crate::mobilenet_v2::width_candidates;
use crate::onnx::OnnxGraph;
use crate::weights::StateDict;
use burn::module::Module;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

/// BatchNorm of every MobileNetV3 layer.
const BN: BnSpec = BnSpec {
    eps: 1e-3,
    momentum: 0.01,
};

/// Large or small.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Variant {
    /// `mobilenet_v3_large`: 15 blocks, 960 features, head 1280.
    Large,
    /// `mobilenet_v3_small`: 11 blocks, 576 features, head 1024.
    Small,
}

/// One row of torchvision's table: `(c_in, kernel, c_exp, c_out, se, hardswish, stride)`.
type Row = (usize, usize, usize, usize, bool, bool, usize);

const LARGE: [Row; 15] = [
    (16, 3, 16, 16, false, false, 1),
    (16, 3, 64, 24, false, false, 2),
    (24, 3, 72, 24, false, false, 1),
    (24, 5, 72, 40, true, false, 2),
    (40, 5, 120, 40, true, false, 1),
    (40, 5, 120, 40, true, false, 1),
    (40, 3, 240, 80, false, true, 2),
    (80, 3, 200, 80, false, true, 1),
    (80, 3, 184, 80, false, true, 1),
    (80, 3, 184, 80, false, true, 1),
    (80, 3, 480, 112, true, true, 1),
    (112, 3, 672, 112, true, true, 1),
    (112, 5, 672, 160, true, true, 2),
    (160, 5, 960, 160, true, true, 1),
    (160, 5, 960, 160, true, true, 1),
];

const SMALL: [Row; 11] = [
    (16, 3, 16, 16, true, false, 2),
    (16, 3, 72, 24, false, false, 2),
    (24, 3, 88, 24, false, false, 1),
    (24, 5, 96, 40, true, true, 2),
    (40, 5, 240, 40, true, true, 1),
    (40, 5, 240, 40, true, true, 1),
    (40, 5, 120, 48, true, true, 1),
    (48, 5, 144, 48, true, true, 1),
    (48, 5, 288, 96, true, true, 2),
    (96, 5, 576, 96, true, true, 1),
    (96, 5, 576, 96, true, true, 1),
];

/// One inverted residual after width scaling (torchvision's `InvertedResidualConfig`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockSpec {
    /// Input channels.
    pub c_in: usize,
    /// Depthwise kernel.
    pub kernel: usize,
    /// Expanded channels.
    pub c_exp: usize,
    /// Output channels.
    pub c_out: usize,
    /// Squeeze-excitation.
    pub se: bool,
    /// Hardswish (else ReLU).
    pub hardswish: bool,
    /// Depthwise stride.
    pub stride: usize,
}

/// [`MobileNetV3`] configuration.
#[derive(Config, Debug, PartialEq)]
pub struct MobileNetV3Config {
    /// Large or small.
    pub variant: Variant,
    /// Width multiplier.
    #[config(default = 1.0)]
    pub width_mult: f64,
    /// Dropout of torchvision's classifier.
    #[config(default = 0.2)]
    pub dropout: f64,
}

impl MobileNetV3Config {
    /// `mobilenet_v3_large()`: 5.5 M parameters with its classifier.
    pub fn large() -> Self {
        Self::new(Variant::Large)
    }
    /// `mobilenet_v3_small()`: 2.5 M parameters with its classifier.
    pub fn small() -> Self {
        Self::new(Variant::Small)
    }

    fn ch(&self, c: usize) -> usize {
        make_divisible(c as f64 * self.width_mult, 8)
    }

    /// The blocks as torchvision lays them out.
    pub fn blocks(&self) -> Vec<BlockSpec> {
        let table: &[Row] = match self.variant {
            Variant::Large => &LARGE,
            Variant::Small => &SMALL,
        };
        table
            .iter()
            .map(|&(i, k, e, o, se, hs, s)| BlockSpec {
                c_in: self.ch(i),
                kernel: k,
                c_exp: self.ch(e),
                c_out: self.ch(o),
                se,
                hardswish: hs,
                stride: s,
            })
            .collect()
    }

    /// Width of the classifier's hidden layer (`last_channel`).
    pub fn last_channel(&self) -> usize {
        self.ch(match self.variant {
            Variant::Large => 1280,
            Variant::Small => 1024,
        })
    }

    /// Builds the network with torchvision's initialisation (Kaiming-normal fan-out
    /// convolutions with zero biases, BatchNorm 1 / 0).
    ///
    /// # Panics
    /// If [`Family::check`] fails (`width_mult` not in (0, 16], dropout not in [0, 1)).
    pub fn init(&self, device: &Device) -> MobileNetV3 {
        if let Err(e) = self.check() {
            panic!("MobileNetV3: {e}");
        }
        let blocks = self.blocks();
        let first = blocks[0].c_in;
        let last_in = blocks.last().map_or(first, |b| b.c_out);
        MobileNetV3 {
            stem: ConvNormAct::new(
                ConvSpec::new(3, first, 3).stride(2),
                BN,
                Activation::HardSwish,
                device,
            ),
            blocks: blocks
                .iter()
                .map(|b| InvertedResidual::new(b, device))
                .collect(),
            last: ConvNormAct::new(
                ConvSpec::new(last_in, 6 * last_in, 1),
                BN,
                Activation::HardSwish,
                device,
            ),
        }
    }
}

/// A MobileNetV3 inverted residual.
#[derive(Module, Debug)]
pub struct InvertedResidual {
    /// 1×1 expansion (absent when the expanded width equals the input's).
    pub expand: Option<ConvNormAct>,
    /// Depthwise k×k carrying the stride.
    pub depthwise: ConvNormAct,
    /// Squeeze-excitation (ReLU, hard-sigmoid).
    pub se: Option<SqueezeExcitation>,
    /// Linear 1×1 projection.
    pub project: ConvNormAct,
    /// Whether the block adds its input.
    #[module(skip)]
    pub residual: bool,
}

impl InvertedResidual {
    fn new(b: &BlockSpec, device: &Device) -> Self {
        let act = if b.hardswish {
            Activation::HardSwish
        } else {
            Activation::Relu
        };
        let cna = |spec: ConvSpec, act| ConvNormAct::new(spec, BN, act, device);
        Self {
            expand: (b.c_exp != b.c_in).then(|| cna(ConvSpec::new(b.c_in, b.c_exp, 1), act)),
            depthwise: cna(
                ConvSpec::new(b.c_exp, b.c_exp, b.kernel)
                    .stride(b.stride)
                    .depthwise(),
                act,
            ),
            se: b.se.then(|| {
                SqueezeExcitation::new(
                    b.c_exp,
                    make_divisible((b.c_exp / 4) as f64, 8),
                    Activation::Relu,
                    Activation::HardSigmoid,
                    device,
                )
            }),
            project: cna(ConvSpec::new(b.c_exp, b.c_out, 1), Activation::Identity),
            residual: b.stride == 1 && b.c_in == b.c_out,
        }
    }

    /// # Shapes
    /// `[N, C_in, H, W]` → `[N, C_out, H/stride, W/stride]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut h = x.clone();
        if let Some(e) = &self.expand {
            h = e.forward(h);
        }
        h = self.depthwise.forward(h);
        if let Some(se) = &self.se {
            h = se.forward(h);
        }
        let h = self.project.forward(h);
        if self.residual { h + x } else { h }
    }
}

/// A torchvision-compatible MobileNetV3 feature extractor (`features`, no classifier).
#[derive(Module, Debug)]
pub struct MobileNetV3 {
    /// `features.0`: Conv3×3/2-BN-Hardswish.
    pub stem: ConvNormAct,
    /// `features.1` … `features.n`.
    pub blocks: Vec<InvertedResidual>,
    /// `features.n+1`: Conv1×1-BN-Hardswish to `6 × C`.
    pub last: ConvNormAct,
}

impl FeatureExtractor for MobileNetV3 {
    fn to_onnx(&self, g: &mut OnnxGraph, x: &str) -> Result<String, CoreError> {
        let mut x = g.conv_norm_act(&self.stem, x)?;
        for b in &self.blocks {
            let mut h = x.clone();
            if let Some(e) = &b.expand {
                h = g.conv_norm_act(e, &h)?;
            }
            h = g.conv_norm_act(&b.depthwise, &h)?;
            if let Some(se) = &b.se {
                h = g.squeeze_excitation(se, &h)?;
            }
            let h = g.conv_norm_act(&b.project, &h)?;
            x = if b.residual { g.add(&h, &x) } else { h };
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
        for b in &self.blocks {
            x = b.forward(x);
        }
        self.last.forward(x)
    }

    /// `features.0–k | features.k+1–n+1`, the blocks split in halves.
    fn layer_groups(&self) -> Vec<LayerGroup> {
        let n = self.blocks.len();
        let k = n / 2;
        let g0 = fuse_ids(ids(&self.stem), &self.blocks[..k]);
        let g1 = fuse_ids(ids(&self.last), &self.blocks[k..]);
        vec![
            LayerGroup::new(format!("features.0-{k}"), g0),
            LayerGroup::new(format!("features.{}-{}", k + 1, n + 1), g1),
        ]
    }
}

/// Parts of a block in torchvision's `block.{j}` order.
fn parts(b: &BlockSpec) -> Vec<&'static str> {
    let mut p = Vec::with_capacity(4);
    if b.c_exp != b.c_in {
        p.push("expand");
    }
    p.push("depthwise");
    if b.se {
        p.push("se");
    }
    p.push("project");
    p
}

impl Family for MobileNetV3Config {
    fn check(&self) -> Result<(), String> {
        if !(self.width_mult.is_finite() && self.width_mult > 0.0 && self.width_mult <= 16.0) {
            return Err(format!(
                "width_mult must be in (0, 16], got {}",
                self.width_mult
            ));
        }
        check_prob("dropout", self.dropout)
    }

    fn describe(&self) -> String {
        format!(
            "mobilenet_v3_{}(width={})",
            match self.variant {
                Variant::Large => "large",
                Variant::Small => "small",
            },
            self.width_mult
        )
    }

    fn num_features(&self) -> usize {
        6 * self.blocks().last().map_or(0, |b| b.c_out)
    }

    fn torchvision_head(&self) -> HeadConfig {
        HeadConfig::Linear {
            dropout: self.dropout,
            layer_norm: false,
            hidden: Some(self.last_channel()),
        }
    }

    fn torchvision_head_keys(&self) -> &'static [(&'static str, &'static str)] {
        &[("hidden", "classifier.0"), ("fc", "classifier.3")]
    }

    fn import_key(&self, key: &str, _: &StateDict) -> Option<String> {
        let rest = key.strip_prefix("features.")?;
        let (i, tail) = rest.split_once('.')?;
        let i: usize = i.parse().ok()?;
        let blocks = self.blocks();
        if i == 0 || i == blocks.len() + 1 {
            let (part, p) = tail.split_once('.')?;
            let which = if i == 0 { "stem" } else { "last" };
            return Some(format!("{which}.{}.{p}", conv_bn_import(part)?));
        }
        let b = blocks.get(i - 1)?;
        let (j, tail) = tail.strip_prefix("block.")?.split_once('.')?;
        let part = *parts(b).get(j.parse::<usize>().ok()?)?;
        let inner = if part == "se" {
            tail.to_string()
        } else {
            let (k, p) = tail.split_once('.')?;
            format!("{}.{p}", conv_bn_import(k)?)
        };
        Some(format!("blocks.{}.{part}.{inner}", i - 1))
    }

    fn export_key(&self, path: &str) -> Option<String> {
        let blocks = self.blocks();
        let parts_of: Vec<&str> = path.split('.').collect();
        let p = match parts_of[..] {
            ["stem", part] => format!("0.{}", conv_bn_export(part)?),
            ["last", part] => format!("{}.{}", blocks.len() + 1, conv_bn_export(part)?),
            ["blocks", i, part, x] => {
                let i: usize = i.parse().ok()?;
                let j = parts(blocks.get(i)?).iter().position(|p| *p == part)?;
                let inner = if part == "se" {
                    x.to_string()
                } else {
                    conv_bn_export(x)?.to_string()
                };
                format!("{}.block.{j}.{inner}", i + 1)
            }
            _ => return None,
        };
        Some(format!("features.{p}"))
    }
}

impl FamilyConfig for MobileNetV3Config {
    type Module = MobileNetV3;
    const NAME: &'static str = "mobilenet_v3";
    const SIGNATURE: &'static str = "features.1.block.0.0.weight";

    fn presets() -> Vec<(&'static str, Self)> {
        vec![
            ("mobilenet_v3_large", Self::large()),
            ("mobilenet_v3_small", Self::small()),
        ]
    }

    fn detect(sd: &StateDict) -> bool {
        sd.contains("features.0.0.weight") && sd.has_prefix("features.1.block.")
    }

    fn infer(sd: &StateDict) -> Result<Self, String> {
        let n = sd.count_from("features.", 1).saturating_sub(1);
        let variant = match n {
            15 => Variant::Large,
            11 => Variant::Small,
            _ => {
                return Err(format!("{n} blocks (torchvision's large has 15, small 11)"));
            }
        };
        let stem = sd.dim("features.0.0.weight", 0)?;
        let last = sd.dim(&format!("features.{}.0.weight", n + 1), 0)?;
        for w in width_candidates() {
            let cfg = Self::new(variant).with_width_mult(w);
            let blocks = cfg.blocks();
            let fits = blocks[0].c_in == stem
                && cfg.num_features() == last
                && blocks.iter().enumerate().all(|(i, b)| {
                    let j = parts(b).len() - 1;
                    sd.shape(&format!("features.{}.block.{j}.0.weight", i + 1))
                        .is_some_and(|s| s[0] == b.c_out && s[1] == b.c_exp)
                });
            if fits {
                return Ok(cfg);
            }
        }
        Err(format!(
            "no width multiplier gives stem width {stem} and {last} features for mobilenet_v3 {variant:?}"
        ))
    }

    fn build(&self, device: &Device) -> MobileNetV3 {
        self.init(device)
    }
}
