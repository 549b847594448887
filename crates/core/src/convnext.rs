//! ConvNeXt tiny/small/base/large, exactly as torchvision builds it.
//!
//! Liu, Mao, Wu, Feichtenhofer, Darrell, Xie, *A ConvNet for the 2020s*, CVPR 2022,
//! <https://arxiv.org/abs/2201.03545>. Layer for layer `torchvision/models/convnext.py`:
//! stem Conv4×4/4 (bias) → LayerNorm2d (`features.0`); four stages of `CNBlock`s
//! (depthwise 7×7 with bias → channels-last LayerNorm (eps 1e-6) → Linear to 4C → exact-erf
//! GELU → Linear to C → layer scale (init 1e-6) → stochastic depth growing linearly to the
//! preset's rate → + input), between stages LayerNorm2d → Conv2×2/2 (`features.2, 4, 6`).
//! torchvision's classifier is avg-pool → LayerNorm2d → Linear, so the feature map any
//! head sees is the last stage's output without a norm (timm's `forward_features` with
//! `head_norm_first=False`); petal's torchvision head carries that LayerNorm.
//!
//! petal's tree: `stem.{conv,norm}`, `stages.{s}.blocks.{b}.{dwconv,norm,pwconv1,pwconv2,
//! layer_scale}`, `downsamples.{s}.{norm,conv}` ↔ torchvision's `features.0.{0,1}`,
//! `features.{2s+1}.{b}.{block.{0,2,3,5},layer_scale}`, `features.{2s+2}.{0,1}`.

use crate::backbone::{Family, FamilyConfig, FeatureExtractor, fuse_ids, ids};
use crate::classifier::{HeadConfig, LayerGroup};
use crate::error::CoreError;
use crate::layers::ConvRun;
use crate::layers::{
    Activation, ConvInit, ConvSpec, LayerNorm2d, MAX_WIDTH, StochasticDepth, check_prob,
    check_sizes,
};
use crate::onnx::OnnxGraph;
use crate::weights::StateDict;
use burn::module::{Module, Param};
use burn::nn::conv::Conv2d;
use burn::nn::{Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::gelu;

/// LayerNorm eps throughout ConvNeXt.
const EPS: f64 = 1e-6;
/// Initialisation of convolutions and linear layers (torchvision: `trunc_normal_(std=0.02)`).
const INIT: ConvInit = ConvInit::Normal(0.02);

/// [`ConvNeXt`] configuration; presets mirror torchvision's constructors.
#[derive(Config, Debug, PartialEq)]
pub struct ConvNeXtConfig {
    /// Channels of each stage.
    pub dims: Vec<usize>,
    /// Blocks of each stage.
    pub depths: Vec<usize>,
    /// Initial layer scale.
    #[config(default = 1e-6)]
    pub layer_scale: f64,
    /// Stochastic depth of the last block (0 → this, linearly over the blocks).
    #[config(default = 0.1)]
    pub stochastic_depth_prob: f64,
}

impl ConvNeXtConfig {
    /// ConvNeXt-T: dims (96, 192, 384, 768), depths (3, 3, 9, 3), stochastic depth 0.1.
    pub fn tiny() -> Self {
        Self::new(vec![96, 192, 384, 768], vec![3, 3, 9, 3])
    }
    /// ConvNeXt-S: depths (3, 3, 27, 3), stochastic depth 0.4.
    pub fn small() -> Self {
        Self::new(vec![96, 192, 384, 768], vec![3, 3, 27, 3]).with_stochastic_depth_prob(0.4)
    }
    /// ConvNeXt-B: dims (128, 256, 512, 1024), stochastic depth 0.5.
    pub fn base() -> Self {
        Self::new(vec![128, 256, 512, 1024], vec![3, 3, 27, 3]).with_stochastic_depth_prob(0.5)
    }
    /// ConvNeXt-L: dims (192, 384, 768, 1536), stochastic depth 0.5.
    pub fn large() -> Self {
        Self::new(vec![192, 384, 768, 1536], vec![3, 3, 27, 3]).with_stochastic_depth_prob(0.5)
    }

    /// Builds the network with torchvision's initialisation (normal std 0.02 weights, zero
    /// biases, LayerNorm 1 / 0, layer scale `layer_scale`).
    ///
    /// # Panics
    /// If [`Family::check`] fails (`dims` and `depths` differ in length, are empty or hold a
    /// zero, …).
    pub fn init(&self, device: &Device) -> ConvNeXt {
        if let Err(e) = self.check() {
            panic!("ConvNeXt: {e}");
        }
        let total: usize = self.depths.iter().sum();
        let mut id = 0;
        let stages = self
            .dims
            .iter()
            .zip(&self.depths)
            .map(|(&c, &n)| CNStage {
                blocks: (0..n)
                    .map(|_| {
                        let sd = if total > 1 {
                            self.stochastic_depth_prob * id as f64 / (total - 1) as f64
                        } else {
                            0.0
                        };
                        id += 1;
                        CNBlock::new(c, self.layer_scale, sd, device)
                    })
                    .collect(),
            })
            .collect();
        let downsamples = self
            .dims
            .windows(2)
            .map(|w| CNDownsample {
                norm: LayerNorm2d::new(w[0], EPS, device),
                conv: ConvSpec::new(w[0], w[1], 2)
                    .stride(2)
                    .padding(0)
                    .bias(true)
                    .init_with(INIT)
                    .init(device),
            })
            .collect();
        ConvNeXt {
            stem: CNStem {
                conv: ConvSpec::new(3, self.dims[0], 4)
                    .stride(4)
                    .padding(0)
                    .bias(true)
                    .init_with(INIT)
                    .init(device),
                norm: LayerNorm2d::new(self.dims[0], EPS, device),
            },
            stages,
            downsamples,
        }
    }
}

fn linear(c_in: usize, c_out: usize, device: &Device) -> Linear {
    let mut l = LinearConfig::new(c_in, c_out)
        .with_initializer(Initializer::Normal {
            mean: 0.0,
            std: 0.02,
        })
        .init(device);
    if let Some(b) = l.bias.as_mut() {
        *b = Param::from_tensor(Tensor::zeros([c_out], device));
    }
    l
}

/// The stem: Conv4×4/4 with bias, LayerNorm2d.
#[derive(Module, Debug)]
pub struct CNStem {
    /// `features.0.0`.
    pub conv: Conv2d,
    /// `features.0.1`.
    pub norm: LayerNorm2d,
}

/// A ConvNeXt block.
#[derive(Module, Debug)]
pub struct CNBlock {
    /// Depthwise 7×7 with bias (`block.0`).
    pub dwconv: Conv2d,
    /// Channels-last LayerNorm (`block.2`).
    pub norm: LayerNorm,
    /// Linear C → 4C (`block.3`).
    pub pwconv1: Linear,
    /// Linear 4C → C (`block.5`).
    pub pwconv2: Linear,
    /// Per-channel scale of the branch, `[C, 1, 1]` (`layer_scale`).
    pub layer_scale: Param<Tensor<3>>,
    /// Stochastic depth on the branch.
    pub stochastic_depth: StochasticDepth,
}

impl CNBlock {
    fn new(c: usize, layer_scale: f64, sd: f64, device: &Device) -> Self {
        Self {
            dwconv: ConvSpec::new(c, c, 7)
                .depthwise()
                .bias(true)
                .init_with(INIT)
                .init(device),
            norm: LayerNormConfig::new(c).with_epsilon(EPS).init(device),
            pwconv1: linear(c, 4 * c, device),
            pwconv2: linear(4 * c, c, device),
            layer_scale: Param::from_tensor(Tensor::full([c, 1, 1], layer_scale, device)),
            stochastic_depth: StochasticDepth::new(sd),
        }
    }

    /// # Shapes
    /// `[N, C, H, W]` → `[N, C, H, W]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let h = self.dwconv.run(x.clone()).permute([0, 2, 3, 1]);
        let h = self
            .pwconv2
            .forward(gelu(self.pwconv1.forward(self.norm.forward(h))))
            .permute([0, 3, 1, 2]);
        let h = h * self.layer_scale.val().unsqueeze::<4>();
        self.stochastic_depth.forward(h) + x
    }
}

/// One stage (`features.1, 3, 5, 7`).
#[derive(Module, Debug)]
pub struct CNStage {
    /// The stage's blocks.
    pub blocks: Vec<CNBlock>,
}

/// Between stages: LayerNorm2d → Conv2×2/2 with bias (`features.2, 4, 6`).
#[derive(Module, Debug)]
pub struct CNDownsample {
    /// `….0`.
    pub norm: LayerNorm2d,
    /// `….1`.
    pub conv: Conv2d,
}

/// A torchvision-compatible ConvNeXt feature extractor (`features`, no classifier).
#[derive(Module, Debug)]
pub struct ConvNeXt {
    /// `features.0`.
    pub stem: CNStem,
    /// `features.1, 3, 5, 7`.
    pub stages: Vec<CNStage>,
    /// `features.2, 4, 6`.
    pub downsamples: Vec<CNDownsample>,
}

impl FeatureExtractor for ConvNeXt {
    /// `forward_features` as ONNX nodes (stochastic depth is the identity in inference).
    fn to_onnx(&self, g: &mut OnnxGraph, x: &str) -> Result<String, CoreError> {
        let h = g.conv(&self.stem.conv, x)?;
        let mut x = g.layer_norm_2d(&self.stem.norm, EPS, &h)?;
        for (i, stage) in self.stages.iter().enumerate() {
            if i > 0 {
                let d = &self.downsamples[i - 1];
                let h = g.layer_norm_2d(&d.norm, EPS, &x)?;
                x = g.conv(&d.conv, &h)?;
            }
            for block in &stage.blocks {
                let h = g.conv(&block.dwconv, &x)?;
                let h = g.transpose(&h, &[0, 2, 3, 1]);
                let h = g.layer_norm(&block.norm, EPS, &h)?;
                let h = g.linear(&block.pwconv1, &h)?;
                let h = g.act(Activation::Gelu, &h);
                let h = g.linear(&block.pwconv2, &h)?;
                let h = g.transpose(&h, &[0, 3, 1, 2]);
                let scale = g.tensor("layer_scale", &block.layer_scale.val())?;
                let h = g.mul(&h, &scale);
                x = g.add(&h, &x);
            }
        }
        Ok(x)
    }

    fn num_features(&self) -> usize {
        self.stages
            .last()
            .and_then(|s| s.blocks.last())
            .map_or(0, |b| b.norm.gamma.shape().dims::<1>()[0])
    }

    /// The last stage's output (no norm: torchvision's classifier holds it).
    ///
    /// # Shapes
    /// `[N, 3, H, W]` → `[N, num_features, H/32, W/32]`
    fn forward_features(&self, x: Tensor<4>) -> Tensor<4> {
        let mut x = self.stem.norm.forward(self.stem.conv.run(x));
        for (i, stage) in self.stages.iter().enumerate() {
            if i > 0 {
                let d = &self.downsamples[i - 1];
                x = d.conv.run(d.norm.forward(x));
            }
            for block in &stage.blocks {
                x = block.forward(x);
            }
        }
        x
    }

    /// `stem+stages 1–2 | stages 3–4` with the downsampling layers between them.
    fn layer_groups(&self) -> Vec<LayerGroup> {
        let n = self.stages.len();
        let k = n.div_ceil(2);
        let g0 = fuse_ids(
            fuse_ids(ids(&self.stem), &self.stages[..k]),
            &self.downsamples[..k - 1],
        );
        let g1 = fuse_ids(ids(&self.downsamples[k - 1..].to_vec()), &self.stages[k..]);
        vec![
            LayerGroup::new(format!("features.0-{}", 2 * k - 1), g0),
            LayerGroup::new(format!("features.{}-{}", 2 * k, 2 * n - 1), g1),
        ]
    }
}

impl Family for ConvNeXtConfig {
    fn check(&self) -> Result<(), String> {
        check_sizes("dims", &self.dims, 8, MAX_WIDTH)?;
        check_sizes("depths", &self.depths, 8, 1024)?;
        if self.dims.len() != self.depths.len() {
            return Err(format!(
                "{} dims {:?} for {} depths {:?}",
                self.dims.len(),
                self.dims,
                self.depths.len(),
                self.depths
            ));
        }
        if !self.layer_scale.is_finite() {
            return Err(format!(
                "layer_scale must be finite, got {}",
                self.layer_scale
            ));
        }
        check_prob("stochastic_depth_prob", self.stochastic_depth_prob)
    }

    fn describe(&self) -> String {
        format!("convnext(dims={:?}, depths={:?})", self.dims, self.depths)
    }

    fn num_features(&self) -> usize {
        self.dims.last().copied().unwrap_or(0)
    }

    fn output_stride(&self) -> usize {
        4 << self.dims.len().saturating_sub(1)
    }

    fn torchvision_head(&self) -> HeadConfig {
        HeadConfig::Linear {
            dropout: 0.0,
            layer_norm: true,
            hidden: None,
        }
    }

    fn torchvision_head_keys(&self) -> &'static [(&'static str, &'static str)] {
        &[("norm", "classifier.0"), ("fc", "classifier.2")]
    }

    fn import_key(&self, key: &str, _: &StateDict) -> Option<String> {
        let rest = key.strip_prefix("features.")?;
        let (i, tail) = rest.split_once('.')?;
        let i: usize = i.parse().ok()?;
        let (j, tail) = tail.split_once('.')?;
        if i == 0 {
            return match j {
                "0" => Some(format!("stem.conv.{tail}")),
                "1" => Some(format!("stem.norm.norm.{tail}")),
                _ => None,
            };
        }
        if i.is_multiple_of(2) {
            let d = i / 2 - 1;
            return match j {
                "0" => Some(format!("downsamples.{d}.norm.norm.{tail}")),
                "1" => Some(format!("downsamples.{d}.conv.{tail}")),
                _ => None,
            };
        }
        let s = i / 2;
        let b: usize = j.parse().ok()?;
        let inner = if tail == "layer_scale" {
            "layer_scale".to_string()
        } else {
            let (k, p) = tail.strip_prefix("block.")?.split_once('.')?;
            let part = match k {
                "0" => "dwconv",
                "2" => "norm",
                "3" => "pwconv1",
                "5" => "pwconv2",
                _ => return None,
            };
            format!("{part}.{p}")
        };
        Some(format!("stages.{s}.blocks.{b}.{inner}"))
    }

    fn export_key(&self, path: &str) -> Option<String> {
        let parts: Vec<&str> = path.split('.').collect();
        let p = match parts[..] {
            ["stem", "conv"] => "0.0".to_string(),
            ["stem", "norm", "norm"] => "0.1".to_string(),
            ["downsamples", d, "norm", "norm"] => format!("{}.0", 2 * d.parse::<usize>().ok()? + 2),
            ["downsamples", d, "conv"] => format!("{}.1", 2 * d.parse::<usize>().ok()? + 2),
            // The block itself holds `layer_scale`.
            ["stages", s, "blocks", b] => format!("{}.{b}", 2 * s.parse::<usize>().ok()? + 1),
            ["stages", s, "blocks", b, part] => {
                let i = 2 * s.parse::<usize>().ok()? + 1;
                let k = match part {
                    "dwconv" => 0,
                    "norm" => 2,
                    "pwconv1" => 3,
                    "pwconv2" => 5,
                    _ => return None,
                };
                format!("{i}.{b}.block.{k}")
            }
            _ => return None,
        };
        Some(format!("features.{p}"))
    }
}

impl FamilyConfig for ConvNeXtConfig {
    type Module = ConvNeXt;
    const NAME: &'static str = "convnext";
    const SIGNATURE: &'static str = "features.1.0.layer_scale";

    fn presets() -> Vec<(&'static str, Self)> {
        vec![
            ("convnext_tiny", Self::tiny()),
            ("convnext_small", Self::small()),
            ("convnext_base", Self::base()),
            ("convnext_large", Self::large()),
        ]
    }

    fn detect(sd: &StateDict) -> bool {
        sd.contains("features.0.0.weight") && sd.contains(Self::SIGNATURE)
    }

    fn infer(sd: &StateDict) -> Result<Self, String> {
        let n = sd.count_from("features.", 0).div_ceil(2);
        let mut dims = Vec::new();
        let mut depths = Vec::new();
        for s in 0..n {
            let i = 2 * s + 1;
            dims.push(sd.dim(&format!("features.{i}.0.block.0.weight"), 0)?);
            depths.push(sd.count_from(&format!("features.{i}."), 0));
        }
        if dims.is_empty() {
            return Err("no stage `features.1`".into());
        }
        let cfg = Self::new(dims, depths);
        Ok(Self::presets()
            .into_iter()
            .map(|(_, p)| p)
            .find(|p| p.dims == cfg.dims && p.depths == cfg.depths)
            .unwrap_or(cfg))
    }

    fn build(&self, device: &Device) -> ConvNeXt {
        self.init(device)
    }

    /// timm's `convnext_*` (same network): `stem.{0,1}`, `stages.{s}.downsample.{0,1}`,
    /// `stages.{s}.blocks.{b}.{conv_dw,norm,mlp.fc1,mlp.fc2,gamma}`, `head.{norm,fc}`.
    fn timm_detect(has_prefix: &dyn Fn(&str) -> bool) -> bool {
        has_prefix("stem.0.weight") && has_prefix("stages.0.blocks.0.conv_dw.")
    }

    fn timm_key(
        key: &str,
        shape: &[usize],
        _: &dyn Fn(&str) -> bool,
    ) -> Option<(String, Option<Vec<usize>>)> {
        let parts: Vec<&str> = key.split('.').collect();
        let n = |s: &str| s.parse::<usize>().ok();
        let (name, shape) = match parts[..] {
            ["stem", j, p] => (format!("features.0.{j}.{p}"), None),
            ["stages", s, "downsample", j, p] => (format!("features.{}.{j}.{p}", 2 * n(s)?), None),
            // timm's layer scale is `[C]`, torchvision's `[C, 1, 1]`.
            ["stages", s, "blocks", b, "gamma"] => (
                format!("features.{}.{b}.layer_scale", 2 * n(s)? + 1),
                Some(vec![*shape.first()?, 1, 1]),
            ),
            ["stages", s, "blocks", b, ref rest @ .., p] => {
                let k = match rest {
                    ["conv_dw"] => 0,
                    ["norm"] => 2,
                    ["mlp", "fc1"] => 3,
                    ["mlp", "fc2"] => 5,
                    _ => return None,
                };
                (
                    format!("features.{}.{b}.block.{k}.{p}", 2 * n(s)? + 1),
                    None,
                )
            }
            ["head", "norm", p] => (format!("classifier.0.{p}"), None),
            ["head", "fc", p] => (format!("classifier.2.{p}"), None),
            _ => return None,
        };
        Some((name, shape))
    }
}
