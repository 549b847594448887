//! Import of torchvision / PyTorch state dicts (`.pth`/`.pt` in the zip and legacy pickle
//! formats, and `.safetensors`), for every backbone family of the [registry](crate::backbone).
//!
//! - Reads the file with `burn-store`'s PyTorch or safetensors reader (no Python involved),
//!   choosing by content, not by extension.
//! - Unwraps the usual containers: a `state_dict` / `model` entry and DataParallel's
//!   `module.` prefix.
//! - Rewrites DenseNet's legacy 2017 keys (`denselayer1.norm.1.weight` → `norm1.weight`,
//!   as torchvision's `_load_state_dict` does), drops `num_batches_tracked`.
//! - Infers the architecture (`--arch auto`): the family from the key layout, its sizes
//!   from the shapes (each family's `FamilyConfig::infer`), the head kind (torchvision's
//!   classifier or the seed's concat-pool head) and the classes.
//! - Maps torchvision names onto petal's module tree (each family's `Family::import_key`)
//!   and applies them with
//!   `PyTorchToBurnAdapter` (Linear weights transposed, BatchNorm `weight/bias` → `gamma/beta`).
//! - Refuses a file that does not fit: one error listing the missing and unexpected keys and
//!   the shape mismatches (the first few of each). A model is never returned half-loaded.

use crate::backbone::{arch_names, infer_backbone, signatures, timm_spelling};
use crate::classifier::{BackboneConfig, Classifier, ClassifierConfig, HeadConfig};
use crate::error::CoreError;
use crate::head::PoolOrder;
use burn::store::burn_pack::Tensor as PackTensor;
use burn::store::{
    ApplyError, ModuleSnapshot, ModuleStore, PyTorchToBurnAdapter, PytorchStore, SafetensorsStore,
};
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
    /// Reads a `.pth` / `.pt` file (zip or legacy pickle) or a `.safetensors` file, told
    /// apart by their content.
    pub fn read(path: impl AsRef<Path>) -> Result<Self, CoreError> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        if !path.is_file() {
            return Err(CoreError::Read {
                path: shown,
                reason: "no such file".into(),
            });
        }
        let failed = |e: String| CoreError::Read {
            path: shown.clone(),
            reason: e,
        };
        let pytorch = |top: Option<&str>| {
            let mut store = PytorchStore::from_file(path).map_indices_contiguous(false);
            if let Some(k) = top {
                store = store.with_top_level_key(k);
            }
            store
                .get_all_tensors()
                .cloned()
                .map_err(|e| failed(e.to_string()))
        };
        let safetensors = is_safetensors(path);
        let mut tensors = if safetensors {
            SafetensorsStore::from_file(path)
                .get_all_tensors()
                .cloned()
                .map_err(|e| failed(e.to_string()))?
        } else {
            pytorch(None)?
        };
        // A checkpoint wrapping the state dict (`{"state_dict": …}`, `{"model": …}`).
        for top in ["state_dict", "model", "model_state_dict"] {
            if safetensors
                || (!tensors.is_empty()
                    && !tensors.keys().all(|k| k.starts_with(&format!("{top}."))))
            {
                break;
            }
            if let Ok(inner) = pytorch(Some(top))
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
        let tensors = from_timm(&shown, tensors);
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

    /// Whether `key` is present.
    pub fn contains(&self, key: &str) -> bool {
        self.tensors.contains_key(key)
    }

    /// Axis `axis` of `key`'s shape, or a message naming the key.
    pub fn dim(&self, key: &str, axis: usize) -> Result<usize, String> {
        self.shape(key)
            .and_then(|s| s.get(axis).copied())
            .ok_or_else(|| format!("key `{key}` is missing or has no axis {axis}"))
    }

    /// Whether some key starts with `prefix`.
    pub fn has_prefix(&self, prefix: &str) -> bool {
        has_prefix(&self.tensors, prefix)
    }

    /// How many consecutive indices `start, start + 1, …` have keys under `{prefix}{i}.`
    /// (`count_from("layer1.", 0)` = the blocks of ResNet's first stage).
    pub fn count_from(&self, prefix: &str, start: usize) -> usize {
        (start..)
            .take_while(|i| self.has_prefix(&format!("{prefix}{i}.")))
            .count()
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
            (Some(asked), Ok((found, _))) if !same_architecture(&asked, &found) => {
                Err(CoreError::ArchContradicts {
                    path: self.path.clone(),
                    asked: asked.name(),
                    found: found.name(),
                })
            }
            (Some(asked), _) => Ok(asked),
        }
    }

    fn infer_error(&self, reason: String) -> CoreError {
        CoreError::Infer {
            path: self.path.clone(),
            reason,
            known: arch_names().join(", "),
        }
    }

    /// Infers the classifier this state dict describes (`--arch auto`): the backbone, and
    /// the head if the file has one (`None` for a backbone-only file).
    pub fn infer(&self) -> Result<(BackboneConfig, Option<(HeadConfig, usize)>), CoreError> {
        let backbone = match infer_backbone(self) {
            Some((family, Ok(b))) => {
                log::debug!("{}: a {family} backbone, {}", self.path, b.name());
                b.family()
                    .check()
                    .map_err(|r| self.infer_error(format!("a {family} layout, but {r}")))?;
                b
            }
            Some((family, Err(reason))) => {
                return Err(self.infer_error(format!("a {family} layout, but {reason}")));
            }
            None => {
                let first: Vec<&str> = self.keys().take(5).collect();
                let known: Vec<String> = signatures()
                    .into_iter()
                    .map(|(f, k)| format!("{f} (`{k}`)"))
                    .collect();
                return Err(self.infer_error(format!(
                    "no torchvision backbone layout found (looked for {}); the file starts with {first:?}",
                    known.join(", ")
                )));
            }
        };
        let head = self
            .infer_head(&backbone)
            .map_err(|r| self.infer_error(r))?;
        Ok((backbone, head))
    }

    fn infer_head(&self, backbone: &BackboneConfig) -> Result<Option<(HeadConfig, usize)>, String> {
        let family = backbone.family();
        let tv_keys = family.torchvision_head_keys();
        let fc = tv_keys
            .iter()
            .find(|(p, _)| *p == "fc")
            .map(|(_, tv)| *tv)
            .unwrap_or("classifier");
        if let Some(s) = self.shape(&format!("{fc}.weight")) {
            return Ok(Some((family.torchvision_head(), s[0])));
        }
        if self.contains("classifier.fc1.weight") {
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
        let head_prefixes: Vec<String> = std::iter::once("classifier".to_string())
            .chain(tv_keys.iter().map(|(_, tv)| tv.to_string()))
            .collect();
        let strays: Vec<&str> = self
            .keys()
            .filter(|k| {
                head_prefixes
                    .iter()
                    .any(|p| k.starts_with(&format!("{p}.")))
                    && family.import_key(k, self).is_none()
            })
            .take(LIST_FIRST)
            .collect();
        if !strays.is_empty() {
            return Err(format!(
                "unrecognised classifier keys {strays:?} (expected torchvision's `{fc}.weight` or the seed head's `classifier.fc1.weight`)"
            ));
        }
        Ok(None)
    }

    /// Maps the file's keys onto petal's module tree. Keys petal does not know map to `None`.
    fn petal_name(&self, key: &str, backbone: &BackboneConfig) -> Option<String> {
        if key.starts_with("backbone.") || key.starts_with("head.") {
            return Some(key.to_string());
        }
        let family = backbone.family();
        for (petal, tv) in family.torchvision_head_keys() {
            if let Some(param) = key.strip_prefix(&format!("{tv}."))
                && !param.contains('.')
            {
                return Some(format!("head.{petal}.{param}"));
            }
        }
        if let Some(rest) = key.strip_prefix("classifier.")
            && let Some((layer, p)) = rest.split_once('.')
        {
            if let Some(i) = layer
                .strip_prefix("bn")
                .and_then(|s| s.parse::<usize>().ok())
            {
                return Some(format!("head.blocks.{i}.bn.{p}"));
            }
            if let Some(i) = index_minus_one(layer, "fc") {
                return Some(format!("head.blocks.{i}.fc.{p}"));
            }
        }
        family
            .import_key(key, self)
            .map(|p| format!("backbone.{p}"))
    }
}

/// Whether some key of `tensors` starts with `prefix` (one ordered-map lookup).
fn has_prefix(tensors: &BTreeMap<String, PackTensor>, prefix: &str) -> bool {
    tensors
        .range(prefix.to_string()..)
        .next()
        .is_some_and(|(k, _)| k.starts_with(prefix))
}

/// Renames timm's spelling of a family (`conv_stem`, `stages.0.blocks.0.conv_dw`, …) to
/// torchvision's, when the keys are timm's; other dicts are returned as they are.
fn from_timm(path: &str, tensors: BTreeMap<String, PackTensor>) -> BTreeMap<String, PackTensor> {
    let has_prefix = |p: &str| has_prefix(&tensors, p);
    let Some((family, rename)) = timm_spelling(&has_prefix) else {
        return tensors;
    };
    let renames: Vec<Option<(String, Option<Vec<usize>>)>> = tensors
        .iter()
        .map(|(k, t)| rename(k, &t.shape.to_vec(), &has_prefix))
        .collect();
    log::info!("{path}: timm's spelling of {family}, read as torchvision's");
    tensors
        .into_iter()
        .zip(renames)
        .map(|((k, mut t), r)| match r {
            Some((name, shape)) => {
                if let Some(shape) = shape {
                    t.shape = shape.into();
                }
                t.name = name.clone();
                (name, t)
            }
            None => (k, t),
        })
        .collect()
}

/// Whether two configurations build the same network (the same weights fit both):
/// training-only settings such as dropout or stochastic depth do not count.
fn same_architecture(a: &BackboneConfig, b: &BackboneConfig) -> bool {
    a == b || a.name() == b.name()
}

/// Whether the file is a safetensors file: an 8-byte little-endian header length, then a
/// JSON object (zip `.pth` files start with `PK`, legacy ones with a pickle opcode).
fn is_safetensors(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 9];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok_and(|()| head[8] == b'{' && u64::from_le_bytes(head[..8].try_into().unwrap()) > 1)
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

/// `n - 1` of a 1-based name such as `denseblock3` (`prefix` = `denseblock`).
pub(crate) fn index_minus_one(s: &str, prefix: &str) -> Option<usize> {
    s.strip_prefix(prefix)?
        .parse::<usize>()
        .ok()?
        .checked_sub(1)
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
            "  Check --arch (or use --arch auto), and that the file is a torchvision state \
             dict of one of petal's families (DenseNet, MobileNetV2, ResNet/ResNeXt/Wide \
             ResNet, EfficientNet/V2, ConvNeXt, MobileNetV3).",
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
/// BatchNorm's and LayerNorm's `gamma`/`beta` named `weight`/`bias` again, and Burn's enum
/// variant names left out): what a mismatch report shows, so that it speaks the file's
/// language. Paths outside the known layout are returned as is.
pub fn torchvision_key(key: &str, backbone: &BackboneConfig) -> String {
    let plain: Vec<&str> = key
        .split('.')
        .filter(|p| !p.starts_with(|c: char| c.is_ascii_uppercase()))
        .collect();
    let plain = plain.join(".");
    let (path, param) = plain.rsplit_once('.').unwrap_or(("", &plain));
    let param = match param {
        "gamma" => "weight",
        "beta" => "bias",
        p => p,
    };
    let family = backbone.family();
    let mapped = if let Some(rest) = path.strip_prefix("backbone.") {
        family.export_key(rest)
    } else if let Some(rest) = path.strip_prefix("head.") {
        head_torchvision(rest, family.torchvision_head_keys())
    } else {
        None
    };
    match mapped {
        Some(p) => format!("{p}.{param}"),
        None => key.to_string(),
    }
}

fn head_torchvision(path: &str, tv_keys: &[(&str, &str)]) -> Option<String> {
    if let Some((_, tv)) = tv_keys.iter().find(|(p, _)| *p == path) {
        return Some(tv.to_string());
    }
    let parts: Vec<&str> = path.split('.').collect();
    Some(match parts[..] {
        ["blocks", i, "bn"] => format!("classifier.bn{i}"),
        ["blocks", i, "fc"] => format!("classifier.fc{}", i.parse::<usize>().ok()? + 1),
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
        .map_err(|reason| sd.infer_error(reason))?
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
    fn head_paths_map_back_to_torchvision() {
        let d = BackboneConfig::from_name("densenet121").unwrap();
        assert_eq!(
            torchvision_key("head.blocks.0.bn.gamma", &d),
            "classifier.bn0.weight"
        );
        assert_eq!(
            torchvision_key("head.blocks.1.fc.bias", &d),
            "classifier.fc2.bias"
        );
        assert_eq!(torchvision_key("head.fc.weight", &d), "classifier.weight");
        let m = BackboneConfig::from_name("mobilenet_v2").unwrap();
        assert_eq!(torchvision_key("head.fc.bias", &m), "classifier.1.bias");
        assert_eq!(
            torchvision_key("backbone.MobileNetV2.stem.bn.gamma", &m),
            "features.0.1.weight"
        );
    }
}
