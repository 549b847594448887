//! Export of a classifier as a PyTorch state dict in torchvision's key names (`.safetensors`).
//!
//! The inverse of [`crate::weights`]: every parameter and BatchNorm buffer of the model is
//! written under torchvision's name (each family's [`Family::export_key`](crate::Family::export_key);
//! the seed's concat-pool head as `ClassifierNew`'s `classifier.bn0`, `classifier.fc1`, …; a
//! torchvision head under its family's own names), Linear weights transposed back to
//! `[out, in]`, norms' `gamma`/`beta` as `weight`/`bias`, and each BatchNorm's
//! `num_batches_tracked` (an int64 scalar, 0: petal does not count batches; PyTorch only reads
//! it when `momentum=None`) so that `load_state_dict(strict=True)` accepts the file. petal's
//! own import reads it back to the same model.

use crate::classifier::{BackboneConfig, Classifier};
use crate::error::CoreError;
use crate::weights::torchvision_key;
use burn::store::{BurnToPyTorchAdapter, ModuleSnapshot};
use burn::tensor::DType;
use safetensors::{Dtype, View};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// One tensor of an exported state dict.
#[derive(Clone, Debug, PartialEq)]
pub struct ExportTensor {
    /// Its element type (`F32` for parameters and statistics, `I64` for `num_batches_tracked`).
    pub dtype: Dtype,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Little-endian bytes.
    pub bytes: Vec<u8>,
}

impl View for &ExportTensor {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

/// The model's state dict in torchvision's names, sorted by name.
///
/// Fails if a parameter has no torchvision name (a module path outside the family's map: a
/// bug, reported rather than written under petal's name) or is not float32.
pub fn torchvision_state_dict(
    model: &Classifier,
    backbone: &BackboneConfig,
) -> Result<BTreeMap<String, ExportTensor>, CoreError> {
    let fail = |reason: String| CoreError::Export { reason };
    let mut out = BTreeMap::new();
    for t in model.collect(None, Some(Box::new(BurnToPyTorchAdapter)), true) {
        let name = torchvision_key(&t.name, backbone);
        if name.starts_with("backbone.") || name.starts_with("head.") {
            return Err(fail(format!(
                "`{}` has no torchvision name for {}",
                t.name,
                backbone.name()
            )));
        }
        if t.dtype != DType::F32 {
            return Err(fail(format!("`{name}` is {:?}, not float32", t.dtype)));
        }
        let bytes = t
            .to_bytes()
            .map_err(|e| fail(format!("`{name}`: {e}")))?
            .to_vec();
        if let Some(bn) = name.strip_suffix(".running_var") {
            out.insert(
                format!("{bn}.num_batches_tracked"),
                ExportTensor {
                    dtype: Dtype::I64,
                    shape: Vec::new(),
                    bytes: 0i64.to_le_bytes().to_vec(),
                },
            );
        }
        let tensor = ExportTensor {
            dtype: Dtype::F32,
            shape: t.shape.to_vec(),
            bytes,
        };
        if out.insert(name.clone(), tensor).is_some() {
            return Err(fail(format!("two parameters map to `{name}`")));
        }
    }
    Ok(out)
}

/// Writes `tensors` as a safetensors file at `path` with `metadata` (string pairs), through a
/// temporary file in the same folder renamed into place: `path` is never left half-written.
pub fn write_safetensors(
    path: &Path,
    tensors: &BTreeMap<String, ExportTensor>,
    metadata: HashMap<String, String>,
) -> Result<(), CoreError> {
    let io = |e: std::io::Error| CoreError::Export {
        reason: format!("cannot write `{}`: {e}", path.display()),
    };
    let bytes =
        safetensors::serialize(tensors.iter(), Some(metadata)).map_err(|e| CoreError::Export {
            reason: e.to_string(),
        })?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().ok_or_else(|| CoreError::Export {
        reason: format!("`{}` is not a file path", path.display()),
    })?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    std::fs::write(&tmp, &bytes).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(e)
    })?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(e)
    })
}
