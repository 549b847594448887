//! Import of torchvision / PyTorch state dicts (`.pth`, zip and legacy pickle formats).
//!
//! - Reads the file with `burn-store`'s PyTorch reader (no Python involved).
//! - Unwraps the usual containers: a `state_dict` / `model` entry and DataParallel's
//!   `module.` prefix.
//! - Rewrites DenseNet's legacy 2017 keys (`denselayer1.norm.1.weight` → `norm1.weight`,
//!   as torchvision's `_load_state_dict` does), drops `num_batches_tracked`.
//! - Infers the architecture (`--arch auto`): DenseNet growth rate, block layout, bn_size,
//!   stem width and classes; MobileNetV2 width multiplier and classes; the head kind
//!   (torchvision's linear classifier or the seed's concat-pool head).
//! - Maps torchvision names onto petal's module tree and applies them with
//!   `PyTorchToBurnAdapter` (Linear weights transposed, BatchNorm `weight/bias` → `gamma/beta`).
//! - Refuses a file that does not fit: one error listing the missing and unexpected keys and
//!   the shape mismatches (the first few of each). A model is never returned half-loaded.

use crate::classifier::{ARCH_NAMES, BackboneConfig, Classifier, ClassifierConfig, HeadConfig};
use crate::densenet::DenseNetConfig;
use crate::error::CoreError;
use crate::head::PoolOrder;
use crate::mobilenet_v2::MobileNetV2Config;
use burn::store::burn_pack::Tensor as PackTensor;
use burn::store::{ApplyError, ModuleSnapshot, ModuleStore, PyTorchToBurnAdapter, PytorchStore};
use burn::tensor::{DType, bf16, f16};
use std::collections::BTreeMap;
use std::path::Path;

/// How many entries of each kind a mismatch error lists.
const LIST_FIRST: usize = 8;

/// A PyTorch state dict read from disk, keys normalised to torchvision's current spelling.
pub struct StateDict {
    path: String,
    tensors: BTreeMap<String, PackTensor>,
}

impl StateDict {
    /// Reads a `.pth` / `.pt` file (zip or legacy pickle).
    pub fn read(path: impl AsRef<Path>) -> Result<Self, CoreError> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        if !path.is_file() {
            return Err(CoreError::Read {
                path: shown,
                reason: "no such file".into(),
            });
        }
        let read = |top: Option<&str>| -> Result<BTreeMap<String, PackTensor>, CoreError> {
            let mut store = PytorchStore::from_file(path).map_indices_contiguous(false);
            if let Some(k) = top {
                store = store.with_top_level_key(k);
            }
            store
                .get_all_tensors()
                .cloned()
                .map_err(|e| CoreError::Read {
                    path: shown.clone(),
                    reason: e.to_string(),
                })
        };
        let mut tensors = read(None)?;
        for top in ["state_dict", "model", "model_state_dict"] {
            if !tensors.is_empty() && !tensors.keys().all(|k| k.starts_with(&format!("{top}."))) {
                break;
            }
            if let Ok(inner) = read(Some(top))
                && !inner.is_empty()
            {
                tensors = inner;
            }
        }
        if tensors.is_empty() {
            return Err(CoreError::Read {
                path: shown,
                reason: "the file holds no tensors".into(),
            });
        }
        check_finite(&shown, &tensors)?;
        let strip_module = tensors.keys().all(|k| k.starts_with("module."));
        let tensors = tensors
            .into_iter()
            .filter(|(k, _)| !k.ends_with("num_batches_tracked"))
            .map(|(k, mut t)| {
                let k = k
                    .strip_prefix("module.")
                    .filter(|_| strip_module)
                    .unwrap_or(&k);
                let k = modernise_densenet_key(k);
                t.name = k.clone();
                (k, t)
            })
            .collect();
        Ok(Self {
            path: shown,
            tensors,
        })
    }

    /// The file this was read from.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// All keys (normalised), sorted.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// Whether the dict is empty (never true for a dict [`read`](Self::read) returned).
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// Shape of `key`, if present.
    pub fn shape(&self, key: &str) -> Option<Vec<usize>> {
        self.tensors.get(key).map(|t| t.shape.to_vec())
    }

    fn dim(&self, key: &str, axis: usize) -> Result<usize, String> {
        self.shape(key)
            .and_then(|s| s.get(axis).copied())
            .ok_or_else(|| format!("key `{key}` is missing or has no axis {axis}"))
    }

    fn has_prefix(&self, prefix: &str) -> bool {
        self.tensors
            .range(prefix.to_string()..)
            .next()
            .is_some_and(|(k, _)| k.starts_with(prefix))
    }

    /// The backbone to build for `arch`: `None` or `auto` infers it from the file; an
    /// explicit name must agree with the file (else [`CoreError::ArchContradicts`] naming
    /// both). A file whose architecture cannot be inferred is taken at the explicit name's
    /// word (loading then lists what does not fit).
    pub fn backbone_for(&self, arch: Option<&str>) -> Result<BackboneConfig, CoreError> {
        let asked = match arch {
            None | Some("auto") => None,
            Some(name) => Some(BackboneConfig::from_name(name)?),
        };
        self.backbone_matching(asked)
    }

    /// [`backbone_for`](Self::backbone_for) with an explicit configuration (a custom
    /// backbone) or `None` for `auto`.
    pub fn backbone_matching(
        &self,
        asked: Option<BackboneConfig>,
    ) -> Result<BackboneConfig, CoreError> {
        match (asked, self.infer()) {
            (None, inferred) => inferred.map(|(b, _)| b),
            (Some(asked), Ok((found, _))) if asked != found => Err(CoreError::ArchContradicts {
                path: self.path.clone(),
                asked: asked.name(),
                found: found.name(),
            }),
            (Some(asked), _) => Ok(asked),
        }
    }

    /// Infers the classifier this state dict describes (`--arch auto`): the backbone, and
    /// the head if the file has one (`None` for a backbone-only file).
    pub fn infer(&self) -> Result<(BackboneConfig, Option<(HeadConfig, usize)>), CoreError> {
        let fail = |reason: String| CoreError::Infer {
            path: self.path.clone(),
            reason,
            known: ARCH_NAMES.join(", "),
        };
        let backbone = if self.tensors.contains_key("features.conv0.weight") {
            BackboneConfig::DenseNet(self.infer_densenet().map_err(fail)?)
        } else if self.tensors.contains_key("features.0.0.weight")
            && self.has_prefix("features.1.conv.")
        {
            BackboneConfig::MobileNetV2(self.infer_mobilenet_v2().map_err(fail)?)
        } else {
            let first: Vec<&str> = self.keys().take(5).collect();
            return Err(fail(format!(
                "neither torchvision DenseNet (`features.conv0.weight`) nor MobileNetV2 \
                 (`features.0.0.weight`) keys found; the file starts with {first:?}"
            )));
        };
        let head = self.infer_head(&backbone).map_err(fail)?;
        Ok((backbone, head))
    }

    fn infer_densenet(&self) -> Result<DenseNetConfig, String> {
        let init = self.dim("features.conv0.weight", 0)?;
        let mut blocks = Vec::new();
        while self.has_prefix(&format!("features.denseblock{}.", blocks.len() + 1)) {
            let b = blocks.len() + 1;
            let mut n = 0;
            while self.has_prefix(&format!("features.denseblock{b}.denselayer{}.", n + 1)) {
                n += 1;
            }
            if n == 0 {
                return Err(format!("`features.denseblock{b}` has no `denselayer1`"));
            }
            blocks.push(n);
        }
        if blocks.is_empty() {
            return Err("no `features.denseblock1` found".into());
        }
        let growth = self.dim("features.denseblock1.denselayer1.conv2.weight", 0)?;
        let mid = self.dim("features.denseblock1.denselayer1.conv1.weight", 0)?;
        if growth == 0 || mid % growth != 0 {
            return Err(format!(
                "bottleneck width {mid} is not a multiple of the growth rate {growth}"
            ));
        }
        Ok(DenseNetConfig::new(growth, blocks, init).with_bn_size(mid / growth))
    }

    fn infer_mobilenet_v2(&self) -> Result<MobileNetV2Config, String> {
        let stem = self.dim("features.0.0.weight", 0)?;
        let mut n = 0;
        while self.has_prefix(&format!("features.{}.", n + 1)) {
            n += 1;
        }
        let last = self.dim(&format!("features.{n}.0.weight"), 0)?;
        let project_out = |i: usize| -> Option<usize> {
            let expand = self.has_prefix(&format!("features.{i}.conv.3."));
            let key = format!("features.{i}.conv.{}.weight", if expand { 2 } else { 1 });
            self.shape(&key).map(|s| s[0])
        };
        // torchvision names widths `width_mult` multiples rounded to 8: find the multiplier
        // that reproduces every width in the file.
        let mut candidates: Vec<f64> = (1..=80).map(|i| i as f64 * 0.05).collect();
        candidates.extend([0.35, 1.3, 1.4]);
        candidates.sort_by(f64::total_cmp);
        for w in candidates {
            let cfg = MobileNetV2Config::new().with_width_mult(w);
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

    fn infer_head(&self, backbone: &BackboneConfig) -> Result<Option<(HeadConfig, usize)>, String> {
        let linear_key = match backbone {
            BackboneConfig::DenseNet(_) => "classifier.weight",
            BackboneConfig::MobileNetV2(_) => "classifier.1.weight",
        };
        if let Some(s) = self.shape(linear_key) {
            return Ok(Some((backbone.torchvision_head(), s[0])));
        }
        if self.tensors.contains_key("classifier.fc1.weight") {
            // The seed's `ClassifierNew`: bn0, fc1, bn1, fc2, … (ReLU between stages).
            let mut widths = Vec::new();
            let mut i = 1;
            while let Some(s) = self.shape(&format!("classifier.fc{i}.weight")) {
                widths.push(s[0]);
                i += 1;
            }
            let classes = widths.pop().unwrap_or(0);
            let head = HeadConfig::ConcatPool {
                hidden: widths,
                dropout: vec![0.0],
                pool_order: PoolOrder::AvgMax,
            };
            return Ok(Some((head, classes)));
        }
        if self.has_prefix("classifier.") {
            let keys: Vec<&str> = self
                .keys()
                .filter(|k| k.starts_with("classifier."))
                .take(LIST_FIRST)
                .collect();
            return Err(format!("unrecognised classifier keys {keys:?}"));
        }
        Ok(None)
    }

    /// Maps the file's keys onto petal's module tree. Keys petal does not know map to `None`.
    fn petal_name(&self, key: &str, backbone: &BackboneConfig) -> Option<String> {
        if key.starts_with("backbone.") || key.starts_with("head.") {
            return Some(key.to_string());
        }
        if let Some(rest) = key.strip_prefix("classifier.") {
            return classifier_name(rest, backbone);
        }
        let rest = key.strip_prefix("features.")?;
        let mapped = match backbone {
            BackboneConfig::DenseNet(_) => densenet_name(rest)?,
            BackboneConfig::MobileNetV2(cfg) => mobilenet_name(rest, cfg.blocks().len() + 1, self)?,
        };
        Some(format!("backbone.{mapped}"))
    }
}

/// Refuses a state dict holding NaN or ±inf in any floating-point tensor (a diverged or
/// damaged checkpoint): the error names the first such tensor with its count of non-finite
/// values, and how many tensors are affected.
fn check_finite(path: &str, tensors: &BTreeMap<String, PackTensor>) -> Result<(), CoreError> {
    let mut bad: Vec<(String, usize, usize)> = Vec::new();
    for (key, t) in tensors {
        let bytes = t.to_bytes().map_err(|e| CoreError::Read {
            path: path.to_string(),
            reason: format!("tensor `{key}`: {e}"),
        })?;
        let count = non_finite(t.dtype, &bytes);
        if count > 0 {
            bad.push((key.clone(), count, t.shape.num_elements()));
        }
    }
    match bad.first() {
        None => Ok(()),
        Some((tensor, count, total)) => Err(CoreError::NonFinite {
            path: path.to_string(),
            tensor: tensor.clone(),
            count: *count,
            total: *total,
            tensors: bad.len(),
        }),
    }
}

/// Number of NaN / ±inf values in little-endian `bytes` of `dtype` (0 for integer types).
fn non_finite(dtype: DType, bytes: &[u8]) -> usize {
    fn count<const N: usize>(bytes: &[u8], finite: impl Fn([u8; N]) -> bool) -> usize {
        bytes
            .chunks_exact(N)
            .filter(|c| !finite((*c).try_into().expect("chunk of N bytes")))
            .count()
    }
    match dtype {
        DType::F64 => count(bytes, |b| f64::from_le_bytes(b).is_finite()),
        DType::F32 | DType::Flex32 => count(bytes, |b| f32::from_le_bytes(b).is_finite()),
        DType::F16 => count(bytes, |b| f16::from_le_bytes(b).is_finite()),
        DType::BF16 => count(bytes, |b| bf16::from_le_bytes(b).is_finite()),
        _ => 0,
    }
}

/// torchvision's `_load_state_dict` rewrite of DenseNet's 2017 keys:
/// `^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$`
/// → `\1\2`.
fn modernise_densenet_key(key: &str) -> String {
    let Some(pos) = key.find("denselayer") else {
        return key.to_string();
    };
    let (head, tail) = key.split_at(pos);
    let parts: Vec<&str> = tail.split('.').collect();
    if let [
        layer,
        kind @ ("norm" | "relu" | "conv"),
        n @ ("1" | "2"),
        param,
    ] = parts[..]
        && layer["denselayer".len()..].parse::<usize>().is_ok()
        && matches!(param, "weight" | "bias" | "running_mean" | "running_var")
    {
        return format!("{head}{layer}.{kind}{n}.{param}");
    }
    key.to_string()
}

fn index_minus_one(s: &str, prefix: &str) -> Option<usize> {
    s.strip_prefix(prefix)?
        .parse::<usize>()
        .ok()?
        .checked_sub(1)
}

fn densenet_name(rest: &str) -> Option<String> {
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

fn mobilenet_name(rest: &str, last: usize, sd: &StateDict) -> Option<String> {
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

fn classifier_name(rest: &str, backbone: &BackboneConfig) -> Option<String> {
    match (backbone, rest) {
        (BackboneConfig::DenseNet(_), "weight" | "bias") => Some(format!("head.fc.{rest}")),
        (BackboneConfig::MobileNetV2(_), _) if rest.starts_with("1.") => {
            Some(format!("head.fc.{}", &rest[2..]))
        }
        _ => {
            let (layer, p) = rest.split_once('.')?;
            if let Some(i) = layer
                .strip_prefix("bn")
                .and_then(|s| s.parse::<usize>().ok())
            {
                Some(format!("head.blocks.{i}.bn.{p}"))
            } else {
                let i = index_minus_one(layer, "fc")?;
                Some(format!("head.blocks.{i}.fc.{p}"))
            }
        }
    }
}

/// What to do with the file's classifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadPolicy {
    /// The file's head must fit the model's and is loaded (inference with a trained model).
    Load,
    /// The file's head, if any, is ignored and the model keeps its fresh head (fine-tuning a
    /// pretrained backbone on new classes).
    Fresh,
}

/// What [`load_state_dict`] did.
#[derive(Clone, Debug, Default)]
pub struct LoadReport {
    /// Tensors written into the model.
    pub applied: usize,
    /// The file's head tensors that were left out ([`HeadPolicy::Fresh`]).
    pub head_ignored: usize,
    /// Whether the model's head kept its fresh initialisation.
    pub head_fresh: bool,
}

/// Loads `sd` into `model`, or fails listing what does not fit.
pub fn load_state_dict(
    model: Classifier,
    backbone: &BackboneConfig,
    sd: &StateDict,
    head: HeadPolicy,
) -> Result<(Classifier, LoadReport), CoreError> {
    let mut model = model;
    let mut unknown = Vec::new();
    let mut tensors = Vec::with_capacity(sd.len());
    let mut original = BTreeMap::new();
    let mut head_ignored = 0;
    for (key, t) in &sd.tensors {
        match sd.petal_name(key, backbone) {
            Some(name) if name.starts_with("head.") && head == HeadPolicy::Fresh => {
                head_ignored += 1;
            }
            Some(name) => {
                let mut t = t.clone();
                t.name = name.clone();
                original.insert(name, key.clone());
                tensors.push(t);
            }
            None => unknown.push(key.clone()),
        }
    }
    let result = model.apply(tensors, None, Some(Box::new(PyTorchToBurnAdapter)), true);
    let shown = |k: &str| {
        original
            .get(k)
            .cloned()
            .unwrap_or_else(|| torchvision_key(k, backbone))
    };
    let mut missing: Vec<String> = result
        .missing
        .iter()
        .map(|(k, _)| k.clone())
        .filter(|k| !(head == HeadPolicy::Fresh && is_head_key(k)))
        .map(|k| torchvision_key(&k, backbone))
        .collect();
    let mut unexpected: Vec<String> = unknown;
    unexpected.extend(result.unused.iter().map(|k| shown(k)));
    let mut errors: Vec<String> = result
        .errors
        .iter()
        .map(|e| match e {
            ApplyError::ShapeMismatch {
                path,
                expected,
                found,
            } => format!(
                "{}: model expects {:?}, file has {:?}",
                shown(path),
                expected.to_vec(),
                found.to_vec()
            ),
            other => other.to_string(),
        })
        .collect();
    for items in [&mut missing, &mut unexpected, &mut errors] {
        items.sort_by(|a, b| natural_cmp(a, b));
    }
    if !missing.is_empty() || !unexpected.is_empty() || !errors.is_empty() {
        let mut details = String::new();
        let mut list = |title: &str, items: &[String]| {
            if items.is_empty() {
                return;
            }
            details.push_str(&format!("  {} {title}:\n", items.len()));
            for i in items.iter().take(LIST_FIRST) {
                details.push_str(&format!("    {i}\n"));
            }
            if items.len() > LIST_FIRST {
                details.push_str(&format!("    … and {} more\n", items.len() - LIST_FIRST));
            }
        };
        list("missing from the file", &missing);
        list("unexpected in the file", &unexpected);
        list("shape mismatches", &errors);
        details.push_str(
            "  Check --arch (or use --arch auto), and that the file is a torchvision \
             DenseNet/MobileNetV2 state dict.",
        );
        return Err(CoreError::Mismatch {
            path: sd.path.clone(),
            arch: backbone.name(),
            details,
        });
    }
    Ok((
        model,
        LoadReport {
            applied: result.applied.len(),
            head_ignored,
            head_fresh: head == HeadPolicy::Fresh,
        },
    ))
}

/// The torchvision name of petal's module path `key` (the inverse of the import map, with
/// BatchNorm's `gamma`/`beta` named `weight`/`bias` again): what a mismatch report shows, so
/// that it speaks the file's language. Paths outside the known layout are returned as is.
pub fn torchvision_key(key: &str, backbone: &BackboneConfig) -> String {
    let (path, param) = key.rsplit_once('.').unwrap_or(("", key));
    let param = match param {
        "gamma" => "weight",
        "beta" => "bias",
        p => p,
    };
    let mapped = if let Some(rest) = path.strip_prefix("backbone.") {
        match backbone {
            BackboneConfig::DenseNet(_) => densenet_torchvision(rest),
            BackboneConfig::MobileNetV2(cfg) => mobilenet_torchvision(rest, cfg),
        }
        .map(|p| format!("features.{p}"))
    } else if let Some(rest) = path.strip_prefix("head.") {
        head_torchvision(rest, backbone)
    } else {
        None
    };
    match mapped {
        Some(p) => format!("{p}.{param}"),
        None => key.to_string(),
    }
}

fn densenet_torchvision(path: &str) -> Option<String> {
    let parts: Vec<&str> = path.split('.').collect();
    Some(match parts[..] {
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
    })
}

fn mobilenet_torchvision(path: &str, cfg: &MobileNetV2Config) -> Option<String> {
    let blocks = cfg.blocks();
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
    match parts[..] {
        ["stem", part] => conv_bn(0, part),
        ["last", part] => conv_bn(blocks.len() + 1, part),
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
            Some(format!("{}.conv.{tail}", i + 1))
        }
        _ => None,
    }
}

fn head_torchvision(path: &str, backbone: &BackboneConfig) -> Option<String> {
    let parts: Vec<&str> = path.split('.').collect();
    Some(match (&parts[..], backbone) {
        (["fc"], BackboneConfig::DenseNet(_)) => "classifier".into(),
        (["fc"], BackboneConfig::MobileNetV2(_)) => "classifier.1".into(),
        (["blocks", i, "bn"], _) => format!("classifier.bn{i}"),
        (["blocks", i, "fc"], _) => format!("classifier.fc{}", i.parse::<usize>().ok()? + 1),
        _ => return None,
    })
}

fn is_head_key(k: &str) -> bool {
    k.starts_with("head.")
}

/// Reads `path`, builds the model it describes (or `arch` if given) and loads every weight:
/// the inference path of `petal predict --weights`.
///
/// `num_classes` overrides nothing: a file without a head is refused here (use
/// [`load_pretrained_backbone`] to fine-tune one).
pub fn load_classifier(
    path: impl AsRef<Path>,
    arch: Option<&str>,
    device: &burn::tensor::Device,
) -> Result<(Classifier, ClassifierConfig, LoadReport), CoreError> {
    let sd = StateDict::read(path)?;
    let backbone = sd.backbone_for(arch)?;
    let Some((head, classes)) = sd
        .infer_head(&backbone)
        .map_err(|reason| CoreError::Infer {
            path: sd.path.clone(),
            reason,
            known: ARCH_NAMES.join(", "),
        })?
    else {
        return Err(CoreError::Mismatch {
            path: sd.path.clone(),
            arch: backbone.name(),
            details: "  the file has no classifier (`classifier.*`): it is a backbone only and \
                      cannot predict; fine-tune it with `petal train --weights` first"
                .into(),
        });
    };
    let config = ClassifierConfig::new(backbone, head, classes);
    let model = config.init(device);
    let (model, report) = load_state_dict(model, &config.backbone, &sd, HeadPolicy::Load)?;
    Ok((model, config, report))
}

/// Orders keys as a state dict lists its layers: dot-separated parts compared as numbers
/// where both are numbers (`features.2` before `features.10`), else as text.
fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let part = |p: &str| (p.parse::<u64>().ok(), p.to_string());
    let (mut x, mut y) = (a.split('.').map(part), b.split('.').map(part));
    loop {
        match (x.next(), y.next()) {
            (None, None) => return std::cmp::Ordering::Equal,
            (None, Some(_)) => return std::cmp::Ordering::Less,
            (Some(_), None) => return std::cmp::Ordering::Greater,
            (Some((Some(m), _)), Some((Some(n), _))) if m != n => return m.cmp(&n),
            (Some((_, s)), Some((_, t))) if s != t => return s.cmp(&t),
            _ => {}
        }
    }
}

/// Loads the backbone weights of `sd` into a classifier built from `config` (whose head
/// stays freshly initialised): the start of a fine-tune. The file's architecture must
/// match `config.backbone` (choose it with [`StateDict::backbone_for`]); its classifier, if
/// any, is ignored.
pub fn load_pretrained_backbone(
    sd: &StateDict,
    config: &ClassifierConfig,
    device: &burn::tensor::Device,
) -> Result<(Classifier, LoadReport), CoreError> {
    let model = config.init(device);
    load_state_dict(model, &config.backbone, sd, HeadPolicy::Fresh)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_densenet_keys_are_rewritten_like_torchvision() {
        assert_eq!(
            modernise_densenet_key("features.denseblock1.denselayer12.norm.1.running_var"),
            "features.denseblock1.denselayer12.norm1.running_var"
        );
        assert_eq!(
            modernise_densenet_key("features.denseblock4.denselayer3.conv.2.weight"),
            "features.denseblock4.denselayer3.conv2.weight"
        );
        assert_eq!(
            modernise_densenet_key("features.denseblock1.denselayer1.conv1.weight"),
            "features.denseblock1.denselayer1.conv1.weight"
        );
        assert_eq!(
            modernise_densenet_key("features.norm5.weight"),
            "features.norm5.weight"
        );
    }

    #[test]
    fn torchvision_names_map_onto_the_module_tree() {
        assert_eq!(
            densenet_name("denseblock2.denselayer4.conv2.weight").as_deref(),
            Some("blocks.1.layers.3.conv2.weight")
        );
        assert_eq!(
            densenet_name("transition3.norm.running_mean").as_deref(),
            Some("transitions.2.norm.running_mean")
        );
        let d = BackboneConfig::DenseNet(DenseNetConfig::densenet121());
        assert_eq!(
            classifier_name("bn0.weight", &d).as_deref(),
            Some("head.blocks.0.bn.weight")
        );
        assert_eq!(
            classifier_name("fc2.bias", &d).as_deref(),
            Some("head.blocks.1.fc.bias")
        );
        assert_eq!(
            classifier_name("weight", &d).as_deref(),
            Some("head.fc.weight")
        );
        let m = BackboneConfig::MobileNetV2(MobileNetV2Config::new());
        assert_eq!(
            classifier_name("1.bias", &m).as_deref(),
            Some("head.fc.bias")
        );
    }
}
