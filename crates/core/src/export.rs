//! Export of a classifier as a PyTorch state dict in torchvision's key names: `.safetensors`
//! ([`write_safetensors`]) or `torch.save`'s zip format ([`write_pth`]).
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
    let bytes =
        safetensors::serialize(tensors.iter(), Some(metadata)).map_err(|e| CoreError::Export {
            reason: e.to_string(),
        })?;
    write_atomic(path, &bytes)
}

/// Writes `bytes` to a temporary file next to `path`, then renames it into place: `path` is
/// never left half-written.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CoreError> {
    let io = |e: std::io::Error| CoreError::Export {
        reason: format!("cannot write `{}`: {e}", path.display()),
    };
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
    std::fs::write(&tmp, bytes).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(e)
    })?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(e)
    })
}

/// Writes `tensors` as `torch.save(state_dict)` does (the zip format of PyTorch ≥ 1.6):
/// `archive/data.pkl` — a protocol-2 pickle of an `OrderedDict` whose values are
/// `torch._utils._rebuild_tensor_v2(persistent storage, 0, size, stride, False, OrderedDict())`
/// with `FloatStorage` / `LongStorage` storages, the only globals `torch.load(weights_only=True)`
/// needs — `archive/data/<i>` (each storage, 64-byte aligned), `archive/byteorder`,
/// `archive/version`. Written through a temporary file renamed into place.
pub fn write_pth(path: &Path, tensors: &BTreeMap<String, ExportTensor>) -> Result<(), CoreError> {
    let fail = |reason: String| CoreError::Export { reason };
    let mut pickle = Pickle::default();
    pickle.proto();
    pickle.global("collections", "OrderedDict");
    pickle.op(b')'); // EMPTY_TUPLE
    pickle.op(b'R'); // REDUCE
    pickle.op(b'('); // MARK
    for (i, (name, t)) in tensors.iter().enumerate() {
        let storage = match t.dtype {
            Dtype::F32 => "FloatStorage",
            Dtype::I64 => "LongStorage",
            other => return Err(fail(format!("`{name}`: cannot write {other:?} to .pth"))),
        };
        let numel: usize = t.shape.iter().product();
        pickle.string(name);
        pickle.global("torch._utils", "_rebuild_tensor_v2");
        pickle.op(b'(');
        // The persistent id: ('storage', torch.<X>Storage, key, location, numel).
        pickle.op(b'(');
        pickle.string("storage");
        pickle.global("torch", storage);
        pickle.string(&i.to_string());
        pickle.string("cpu");
        pickle.int(numel)?;
        pickle.op(b't'); // TUPLE
        pickle.op(b'Q'); // BINPERSID
        pickle.int(0)?; // storage offset
        let mut strides = vec![1usize; t.shape.len()];
        for d in (0..t.shape.len().saturating_sub(1)).rev() {
            strides[d] = strides[d + 1] * t.shape[d + 1];
        }
        pickle.tuple(&t.shape)?;
        pickle.tuple(&strides)?;
        pickle.op(0x89); // NEWFALSE: requires_grad
        pickle.global("collections", "OrderedDict");
        pickle.op(b')');
        pickle.op(b'R'); // backward hooks: OrderedDict()
        pickle.op(b't');
        pickle.op(b'R');
    }
    pickle.op(b'u'); // SETITEMS
    pickle.op(b'.'); // STOP

    let stored = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .with_alignment(64);
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut zip = zip::ZipWriter::new(&mut buf);
        let mut add = |name: &str, bytes: &[u8]| -> Result<(), CoreError> {
            use std::io::Write;
            zip.start_file(format!("archive/{name}"), stored)
                .map_err(|e| fail(format!("zip: {e}")))?;
            zip.write_all(bytes).map_err(|e| fail(format!("zip: {e}")))
        };
        add("data.pkl", &pickle.bytes)?;
        add("byteorder", b"little")?;
        for (i, t) in tensors.values().enumerate() {
            add(&format!("data/{i}"), &t.bytes)?;
        }
        add("version", b"3\n")?;
        zip.finish().map_err(|e| fail(format!("zip: {e}")))?;
    }
    write_atomic(path, &buf.into_inner())
}

/// The few pickle opcodes a state dict needs (protocol 2, as `torch.save` writes).
#[derive(Default)]
struct Pickle {
    bytes: Vec<u8>,
}

impl Pickle {
    fn op(&mut self, op: u8) {
        self.bytes.push(op);
    }
    fn proto(&mut self) {
        self.bytes.extend_from_slice(&[0x80, 2]);
    }
    /// GLOBAL `module\nname\n`.
    fn global(&mut self, module: &str, name: &str) {
        self.op(b'c');
        self.bytes
            .extend_from_slice(format!("{module}\n{name}\n").as_bytes());
    }
    /// BINUNICODE.
    fn string(&mut self, s: &str) {
        self.op(b'X');
        self.bytes
            .extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.bytes.extend_from_slice(s.as_bytes());
    }
    /// BININT (a 4-byte signed integer).
    fn int(&mut self, v: usize) -> Result<(), CoreError> {
        let v = i32::try_from(v).map_err(|_| CoreError::Export {
            reason: format!("{v} does not fit .pth's 32-bit integers here"),
        })?;
        self.op(b'J');
        self.bytes.extend_from_slice(&v.to_le_bytes());
        Ok(())
    }
    /// A tuple of integers (EMPTY_TUPLE for none).
    fn tuple(&mut self, v: &[usize]) -> Result<(), CoreError> {
        if v.is_empty() {
            self.op(b')');
            return Ok(());
        }
        self.op(b'(');
        for &x in v {
            self.int(x)?;
        }
        self.op(b't');
        Ok(())
    }
}
