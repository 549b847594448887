//! ResNet, ResNeXt and Wide ResNet, exactly as torchvision builds them.
//!
//! He, Zhang, Ren, Sun, *Deep Residual Learning for Image Recognition*, CVPR 2016,
//! <https://arxiv.org/abs/1512.03385>; Xie et al., *Aggregated Residual Transformations*
//! (ResNeXt), CVPR 2017, <https://arxiv.org/abs/1611.05431>; Zagoruyko, Komodakis, *Wide
//! Residual Networks*, BMVC 2016, <https://arxiv.org/abs/1605.07146>. Layer for layer
//! `torchvision/models/resnet.py`: stem `conv1` 7×7/2 → `bn1` → ReLU → max-pool 3×3/2
//! (pad 1); four stages `layer1…layer4` of `BasicBlock`s (two 3×3 convolutions) or
//! `Bottleneck`s (1×1 → 3×3 with the stride and `groups` → 1×1 to 4× the planes: the
//! "ResNet v1.5" placement of the stride); a 1×1 projection (`downsample`) where the
//! shape changes. ResNeXt = Bottleneck with `groups` and `width_per_group`; Wide ResNet =
//! Bottleneck with `width_per_group` 128. No convolution has a bias; BatchNorm eps 1e-5.
//!
//! petal's tree: `conv1`, `bn1`, `stages.{s}.blocks.{b}.{conv1,bn1,…,downsample.{conv,bn}}`
//! ↔ torchvision's `layer{s+1}.{b}.{…, downsample.{0,1}}`.

use crate::backbone::{Family, FamilyConfig, FeatureExtractor, fuse_ids, ids};
use crate::classifier::{HeadConfig, LayerGroup};
use crate::error::CoreError;
use crate::layers::{BnRun, ConvRun};
use crate::layers::{BnSpec, ConvSpec, MAX_WIDTH, check_sizes};
use crate::onnx::OnnxGraph;
use crate::weights::StateDict;
use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::relu;
use serde::{Deserialize, Serialize};

/// The residual block a ResNet is made of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockKind {
    /// Two 3×3 convolutions (ResNet-18/34); expansion 1.
    Basic,
    /// 1×1 → 3×3 → 1×1 (ResNet-50 and deeper, ResNeXt, Wide ResNet); expansion 4.
    Bottleneck,
}

impl BlockKind {
    /// Output channels per "plane" (`expansion` in torchvision).
    pub fn expansion(self) -> usize {
        match self {
            Self::Basic => 1,
            Self::Bottleneck => 4,
        }
    }
}

/// [`ResNet`] configuration; presets mirror torchvision's constructors.
#[derive(Config, Debug, PartialEq)]
pub struct ResNetConfig {
    /// Basic or bottleneck blocks.
    pub block: BlockKind,
    /// Blocks per stage (`[3, 4, 6, 3]` for ResNet-50).
    pub layers: Vec<usize>,
    /// Groups of the 3×3 convolution (ResNeXt's cardinality).
    #[config(default = 1)]
    pub groups: usize,
    /// Width of each group (`width_per_group`; 64 plain, 128 wide).
    #[config(default = 64)]
    pub width_per_group: usize,
    /// Stem channels (torchvision: 64).
    #[config(default = 64)]
    pub stem_width: usize,
    /// Planes of each stage (torchvision: 64, 128, 256, 512); a stage outputs
    /// `planes × expansion` channels.
    #[config(default = "vec![64, 128, 256, 512]")]
    pub widths: Vec<usize>,
}

impl ResNetConfig {
    fn bottleneck(layers: [usize; 4], groups: usize, width_per_group: usize) -> Self {
        Self::new(BlockKind::Bottleneck, layers.to_vec())
            .with_groups(groups)
            .with_width_per_group(width_per_group)
    }
    /// ResNet-18: basic blocks (2, 2, 2, 2), 11.7 M parameters with the 1000-class head.
    pub fn resnet18() -> Self {
        Self::new(BlockKind::Basic, vec![2, 2, 2, 2])
    }
    /// ResNet-34: basic blocks (3, 4, 6, 3).
    pub fn resnet34() -> Self {
        Self::new(BlockKind::Basic, vec![3, 4, 6, 3])
    }
    /// ResNet-50: bottlenecks (3, 4, 6, 3), 2048 features.
    pub fn resnet50() -> Self {
        Self::bottleneck([3, 4, 6, 3], 1, 64)
    }
    /// ResNet-101: bottlenecks (3, 4, 23, 3).
    pub fn resnet101() -> Self {
        Self::bottleneck([3, 4, 23, 3], 1, 64)
    }
    /// ResNet-152: bottlenecks (3, 8, 36, 3).
    pub fn resnet152() -> Self {
        Self::bottleneck([3, 8, 36, 3], 1, 64)
    }
    /// ResNeXt-50 32×4d.
    pub fn resnext50_32x4d() -> Self {
        Self::bottleneck([3, 4, 6, 3], 32, 4)
    }
    /// ResNeXt-101 32×8d.
    pub fn resnext101_32x8d() -> Self {
        Self::bottleneck([3, 4, 23, 3], 32, 8)
    }
    /// ResNeXt-101 64×4d.
    pub fn resnext101_64x4d() -> Self {
        Self::bottleneck([3, 4, 23, 3], 64, 4)
    }
    /// Wide ResNet-50-2 (bottleneck width doubled).
    pub fn wide_resnet50_2() -> Self {
        Self::bottleneck([3, 4, 6, 3], 1, 128)
    }
    /// Wide ResNet-101-2.
    pub fn wide_resnet101_2() -> Self {
        Self::bottleneck([3, 4, 23, 3], 1, 128)
    }

    /// Width of a bottleneck's 3×3 convolution for `planes`, as torchvision computes it.
    pub fn inner_width(&self, planes: usize) -> usize {
        match self.block {
            BlockKind::Basic => planes,
            BlockKind::Bottleneck => {
                (planes as f64 * (self.width_per_group as f64 / 64.0)) as usize * self.groups
            }
        }
    }

    /// Builds the network with torchvision's initialisation (Kaiming-normal fan-out
    /// convolutions, BatchNorm weight 1 / bias 0).
    ///
    /// # Panics
    /// If [`Family::check`] fails: a size is zero, `widths` and `layers` differ in length, or
    /// basic blocks are asked for with groups ≠ 1 or `width_per_group` ≠ 64 (torchvision
    /// refuses those too).
    pub fn init(&self, device: &Device) -> ResNet {
        if let Err(e) = self.check() {
            panic!("ResNet: {e}");
        }
        let bn = |c| BnSpec::TORCH.init(c, device);
        let mut c_in = self.stem_width;
        let stages = self
            .layers
            .iter()
            .zip(&self.widths)
            .enumerate()
            .map(|(s, (&n, &planes))| {
                let blocks = (0..n)
                    .map(|b| {
                        let stride = if s > 0 && b == 0 { 2 } else { 1 };
                        let block = self.block(c_in, planes, stride, device);
                        c_in = planes * self.block.expansion();
                        block
                    })
                    .collect();
                ResStage { blocks }
            })
            .collect();
        ResNet {
            conv1: ConvSpec::new(3, self.stem_width, 7)
                .stride(2)
                .padding(3)
                .init(device),
            bn1: bn(self.stem_width),
            maxpool: MaxPool2dConfig::new([3, 3])
                .with_strides([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(),
            stages,
        }
    }

    fn block(&self, c_in: usize, planes: usize, stride: usize, device: &Device) -> ResBlock {
        let bn = |c| BnSpec::TORCH.init(c, device);
        let c_out = planes * self.block.expansion();
        let downsample = (stride != 1 || c_in != c_out).then(|| Downsample {
            conv: ConvSpec::new(c_in, c_out, 1).stride(stride).init(device),
            bn: bn(c_out),
        });
        match self.block {
            BlockKind::Basic => ResBlock {
                conv1: ConvSpec::new(c_in, planes, 3).stride(stride).init(device),
                bn1: bn(planes),
                conv2: ConvSpec::new(planes, planes, 3).init(device),
                bn2: bn(planes),
                conv3: None,
                bn3: None,
                downsample,
            },
            BlockKind::Bottleneck => {
                let width = self.inner_width(planes);
                ResBlock {
                    conv1: ConvSpec::new(c_in, width, 1).init(device),
                    bn1: bn(width),
                    conv2: ConvSpec::new(width, width, 3)
                        .stride(stride)
                        .groups(self.groups)
                        .init(device),
                    bn2: bn(width),
                    conv3: Some(ConvSpec::new(width, c_out, 1).init(device)),
                    bn3: Some(bn(c_out)),
                    downsample,
                }
            }
        }
    }
}

/// The 1×1 projection of the shortcut where a block changes shape.
#[derive(Module, Debug)]
pub struct Downsample {
    /// 1×1 convolution carrying the stride (`downsample.0`).
    pub conv: Conv2d,
    /// Its BatchNorm (`downsample.1`).
    pub bn: BatchNorm,
}

/// A basic block (`conv3`/`bn3` absent) or a bottleneck.
#[derive(Module, Debug)]
pub struct ResBlock {
    /// First convolution (3×3 with the stride in a basic block; 1×1 in a bottleneck).
    pub conv1: Conv2d,
    /// Its BatchNorm.
    pub bn1: BatchNorm,
    /// Second convolution (3×3; the stride and groups in a bottleneck).
    pub conv2: Conv2d,
    /// Its BatchNorm.
    pub bn2: BatchNorm,
    /// A bottleneck's 1×1 expansion.
    pub conv3: Option<Conv2d>,
    /// Its BatchNorm.
    pub bn3: Option<BatchNorm>,
    /// Shortcut projection, where the shape changes.
    pub downsample: Option<Downsample>,
}

impl ResBlock {
    /// # Shapes
    /// `[N, C_in, H, W]` → `[N, planes · expansion, H/stride, W/stride]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let out = self.bn1.run_relu(self.conv1.run(x.clone()));
        let out = self.conv2.run(out);
        let out = match (&self.conv3, &self.bn3) {
            (Some(conv3), Some(bn3)) => bn3.run(conv3.run(self.bn2.run_relu(out))),
            _ => self.bn2.run(out),
        };
        let identity = match &self.downsample {
            Some(d) => d.bn.run(d.conv.run(x)),
            None => x,
        };
        relu(out + identity)
    }
}

/// One stage (`layer1` … `layer4`).
#[derive(Module, Debug)]
pub struct ResStage {
    /// The stage's blocks, in order.
    pub blocks: Vec<ResBlock>,
}

/// A torchvision-compatible ResNet feature extractor (everything before `avgpool`/`fc`).
#[derive(Module, Debug)]
pub struct ResNet {
    /// Stem 7×7/2 convolution.
    pub conv1: Conv2d,
    /// Stem BatchNorm.
    pub bn1: BatchNorm,
    /// Stem 3×3/2 max pooling.
    pub maxpool: MaxPool2d,
    /// `layer1` … `layer4`.
    pub stages: Vec<ResStage>,
}

impl FeatureExtractor for ResNet {
    fn to_onnx(&self, g: &mut OnnxGraph, x: &str) -> Result<String, CoreError> {
        let h = g.conv(&self.conv1, x)?;
        let h = g.batch_norm(&self.bn1, &h)?;
        let h = g.relu(&h);
        let mut x = g.max_pool(&self.maxpool, &h)?;
        for block in self.stages.iter().flat_map(|s| &s.blocks) {
            let h = g.conv(&block.conv1, &x)?;
            let h = g.batch_norm(&block.bn1, &h)?;
            let h = g.relu(&h);
            let h = g.conv(&block.conv2, &h)?;
            let mut out = g.batch_norm(&block.bn2, &h)?;
            if let (Some(conv3), Some(bn3)) = (&block.conv3, &block.bn3) {
                let h = g.relu(&out);
                let h = g.conv(conv3, &h)?;
                out = g.batch_norm(bn3, &h)?;
            }
            let identity = match &block.downsample {
                Some(d) => {
                    let h = g.conv(&d.conv, &x)?;
                    g.batch_norm(&d.bn, &h)?
                }
                None => x.clone(),
            };
            let sum = g.add(&out, &identity);
            x = g.relu(&sum);
        }
        Ok(x)
    }

    fn num_features(&self) -> usize {
        let last = self.stages.last().and_then(|s| s.blocks.last());
        last.map_or(0, |b| {
            let bn = b.bn3.as_ref().unwrap_or(&b.bn2);
            bn.gamma.shape().dims::<1>()[0]
        })
    }

    /// `layer4`'s output (after its final ReLU).
    ///
    /// # Shapes
    /// `[N, 3, H, W]` → `[N, num_features, H/32, W/32]`
    fn forward_features(&self, x: Tensor<4>) -> Tensor<4> {
        let mut x = self.maxpool.forward(self.bn1.run_relu(self.conv1.run(x)));
        for stage in &self.stages {
            for block in &stage.blocks {
                x = block.forward(x);
            }
        }
        x
    }

    /// `stem+layer1+layer2 | layer3+layer4` (fastai's `_resnet_split`).
    fn layer_groups(&self) -> Vec<LayerGroup> {
        let k = self.stages.len().div_ceil(2);
        let name = |r: std::ops::Range<usize>| {
            r.map(|i| format!("layer{}", i + 1))
                .collect::<Vec<_>>()
                .join("+")
        };
        let g0 = fuse_ids(ids(&self.conv1).fuse(&ids(&self.bn1)), &self.stages[..k]);
        let mut groups = vec![LayerGroup::new(format!("stem+{}", name(0..k)), g0)];
        if k < self.stages.len() {
            let mut rest = self.stages[k..].iter();
            let first = ids(rest.next().expect("k < len"));
            groups.push(LayerGroup::new(
                name(k..self.stages.len()),
                fuse_ids(first, rest),
            ));
        }
        groups
    }
}

impl Family for ResNetConfig {
    fn check(&self) -> Result<(), String> {
        check_sizes("layers", &self.layers, 8, 1024)?;
        check_sizes("widths", &self.widths, 8, MAX_WIDTH)?;
        check_sizes(
            "groups, width_per_group and stem_width",
            &[self.groups, self.width_per_group, self.stem_width],
            3,
            MAX_WIDTH,
        )?;
        if self.layers.len() != self.widths.len() {
            return Err(format!(
                "{} stage widths {:?} for {} stages {:?}",
                self.widths.len(),
                self.widths,
                self.layers.len(),
                self.layers
            ));
        }
        if self.block == BlockKind::Basic && (self.groups != 1 || self.width_per_group != 64) {
            return Err(format!(
                "basic blocks only support groups = 1 and width_per_group = 64 (as torchvision), got {} and {}",
                self.groups, self.width_per_group
            ));
        }
        if self.widths.iter().any(|&p| self.inner_width(p) == 0) {
            return Err(format!(
                "width_per_group {} gives a zero-width bottleneck for widths {:?}",
                self.width_per_group, self.widths
            ));
        }
        Ok(())
    }

    fn describe(&self) -> String {
        format!(
            "resnet({}, layers={:?}, groups={}, width_per_group={}, stem={}, widths={:?})",
            match self.block {
                BlockKind::Basic => "basic",
                BlockKind::Bottleneck => "bottleneck",
            },
            self.layers,
            self.groups,
            self.width_per_group,
            self.stem_width,
            self.widths
        )
    }

    fn num_features(&self) -> usize {
        self.widths.last().copied().unwrap_or(0) * self.block.expansion()
    }

    fn output_stride(&self) -> usize {
        4 << self.layers.len().saturating_sub(1)
    }

    fn torchvision_head(&self) -> HeadConfig {
        HeadConfig::linear(0.0)
    }

    fn torchvision_head_keys(&self) -> &'static [(&'static str, &'static str)] {
        &[("fc", "fc")]
    }

    fn import_key(&self, key: &str, _: &StateDict) -> Option<String> {
        let (first, rest) = key.split_once('.')?;
        if matches!(first, "conv1" | "bn1") {
            return Some(key.to_string());
        }
        let s = first
            .strip_prefix("layer")?
            .parse::<usize>()
            .ok()?
            .checked_sub(1)?;
        let (b, tail) = rest.split_once('.')?;
        let b: usize = b.parse().ok()?;
        let tail = match tail.split_once('.') {
            Some(("downsample", t)) => {
                let (i, p) = t.split_once('.')?;
                let part = match i {
                    "0" => "conv",
                    "1" => "bn",
                    _ => return None,
                };
                format!("downsample.{part}.{p}")
            }
            _ => tail.to_string(),
        };
        Some(format!("stages.{s}.blocks.{b}.{tail}"))
    }

    fn export_key(&self, path: &str) -> Option<String> {
        let parts: Vec<&str> = path.split('.').collect();
        Some(match parts[..] {
            ["conv1" | "bn1"] => path.to_string(),
            ["stages", s, "blocks", b, "downsample", part] => format!(
                "layer{}.{b}.downsample.{}",
                s.parse::<usize>().ok()? + 1,
                if part == "conv" { 0 } else { 1 }
            ),
            ["stages", s, "blocks", b, layer] => {
                format!("layer{}.{b}.{layer}", s.parse::<usize>().ok()? + 1)
            }
            _ => return None,
        })
    }
}

impl FamilyConfig for ResNetConfig {
    type Module = ResNet;
    const NAME: &'static str = "resnet";
    const SIGNATURE: &'static str = "layer1.0.conv1.weight";

    fn presets() -> Vec<(&'static str, Self)> {
        vec![
            ("resnet18", Self::resnet18()),
            ("resnet34", Self::resnet34()),
            ("resnet50", Self::resnet50()),
            ("resnet101", Self::resnet101()),
            ("resnet152", Self::resnet152()),
            ("resnext50_32x4d", Self::resnext50_32x4d()),
            ("resnext101_32x8d", Self::resnext101_32x8d()),
            ("resnext101_64x4d", Self::resnext101_64x4d()),
            ("wide_resnet50_2", Self::wide_resnet50_2()),
            ("wide_resnet101_2", Self::wide_resnet101_2()),
        ]
    }

    fn detect(sd: &StateDict) -> bool {
        sd.contains("conv1.weight") && sd.contains("layer1.0.conv1.weight")
    }

    fn infer(sd: &StateDict) -> Result<Self, String> {
        let stem_width = sd.dim("conv1.weight", 0)?;
        let n_stages = sd.count_from("layer", 1);
        let layers: Vec<usize> = (1..=n_stages)
            .map(|s| sd.count_from(&format!("layer{s}."), 0))
            .collect();
        if layers.contains(&0) {
            return Err(format!(
                "a stage without block 0 (blocks per stage {layers:?})"
            ));
        }
        let block = if sd.contains("layer1.0.conv3.weight") {
            BlockKind::Bottleneck
        } else {
            BlockKind::Basic
        };
        let mut widths = Vec::new();
        let mut inner = Vec::new();
        for s in 1..=n_stages {
            let conv2 = sd
                .shape(&format!("layer{s}.0.conv2.weight"))
                .ok_or_else(|| format!("key `layer{s}.0.conv2.weight` is missing"))?;
            let planes = match block {
                BlockKind::Basic => conv2[0],
                BlockKind::Bottleneck => sd.dim(&format!("layer{s}.0.conv3.weight"), 0)? / 4,
            };
            widths.push(planes);
            inner.push((conv2[0], conv2[1]));
        }
        let (width, per_group_in) = inner[0];
        if per_group_in == 0 || width % per_group_in != 0 {
            return Err(format!(
                "`layer1.0.conv2.weight` is {width}×{per_group_in}: not a grouped convolution"
            ));
        }
        let groups = width / per_group_in;
        let mut cfg = Self::new(block, layers)
            .with_groups(groups)
            .with_stem_width(stem_width)
            .with_widths(widths.clone());
        if block == BlockKind::Bottleneck {
            // torchvision: width = int(planes · width_per_group / 64) · groups; the
            // smallest width_per_group that reproduces every stage's width.
            let wpg = (1..=1024).find(|&w| {
                let c = cfg.clone().with_width_per_group(w);
                widths
                    .iter()
                    .zip(&inner)
                    .all(|(&p, &(width, _))| c.inner_width(p) == width)
            });
            cfg.width_per_group = wpg.ok_or_else(|| {
                format!(
                    "no width_per_group gives the bottleneck widths {inner:?} with {groups} groups"
                )
            })?;
        } else if groups != 1 {
            return Err(format!(
                "basic blocks with {groups} groups (torchvision has none)"
            ));
        }
        Ok(cfg)
    }

    fn build(&self, device: &Device) -> ResNet {
        self.init(device)
    }
}
