//! Checkpoints: one file holding the model (burnpack), the optimizer state (burnpack), the
//! scheduler state and the run's progress — everything `--resume` needs.
//!
//! File layout: `PETALCKP` magic, a little-endian `u64` header length, a JSON header
//! ([`Header`]: the [`TrainState`] and each section's name and length), then the sections
//! back to back. Writes are atomic: the bytes go to a temporary file beside the target,
//! which is flushed to disk and renamed over it, so a reader (or a crash at any moment)
//! sees the old checkpoint or the new one, never a torn one.

use crate::error::TrainError;
use crate::optim::cast_model;
use burn::store::{BurnpackStore, ModuleSnapshot};
use burn::tensor::{Bytes, DType, Device};
use petal_core::{Classifier, ClassifierConfig};
use serde::{Deserialize, Serialize};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"PETALCKP";
/// Checkpoint format version.
pub const FORMAT: u32 = 1;

/// Where a run stands: enough to continue it exactly.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Epochs fully done.
    pub epoch: usize,
    /// Batches of epoch `epoch` already done (non-zero after an interruption mid-epoch).
    pub batch_in_epoch: usize,
    /// Optimizer steps done over the whole run.
    pub global_step: u64,
    /// Steps done within the current phase (the scheduler's position).
    pub phase_step: u64,
    /// Running sums of the interrupted epoch: loss · n, correct, n.
    pub partial: (f64, u64, u64),
    /// Best validation top-1 so far and its epoch.
    pub best_top1: Option<(f64, usize)>,
    /// Seed of the run.
    pub seed: u64,
    /// Trainable layer groups when saved (the optimizer state belongs to that set).
    pub trainable_groups: usize,
    /// `--precision mixed`: the loss scaler's state.
    #[serde(default)]
    pub loss_scaler: Option<crate::amp::LossScaler>,
}

/// The JSON header of a checkpoint file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Header {
    /// [`FORMAT`].
    pub format: u32,
    /// The model's architecture.
    pub model: ClassifierConfig,
    /// Progress.
    pub state: TrainState,
    /// Whether the weights are stored in f16 (`--precision f16` runs).
    #[serde(default)]
    pub f16: bool,
    /// Section names and byte lengths, in file order.
    pub sections: Vec<(String, u64)>,
}

const TRUNCATED_HEADER: &str = "truncated header";

/// The header length from a checkpoint's first 16 bytes (magic, `u64` length).
fn header_len(path: &Path, prefix: &[u8]) -> Result<usize, TrainError> {
    if prefix.len() < 16 || &prefix[..8] != MAGIC {
        return Err(TrainError::checkpoint(
            path,
            "not a petal checkpoint (bad magic)",
        ));
    }
    Ok(u64::from_le_bytes(prefix[8..16].try_into().expect("8 bytes")) as usize)
}

impl Header {
    /// Reads only a checkpoint's header (architecture, progress, section table): what a
    /// caller deciding whether to resume needs, without reading the sections.
    pub fn read(path: &Path) -> Result<Self, TrainError> {
        let mut file = File::open(path).map_err(|e| TrainError::io(path, e))?;
        let mut prefix = Vec::with_capacity(16);
        (&mut file)
            .take(16)
            .read_to_end(&mut prefix)
            .map_err(|e| TrainError::io(path, e))?;
        let hlen = header_len(path, &prefix)?;
        let mut body = Vec::with_capacity(hlen);
        file.take(hlen as u64)
            .read_to_end(&mut body)
            .map_err(|e| TrainError::io(path, e))?;
        if body.len() < hlen {
            return Err(TrainError::checkpoint(path, TRUNCATED_HEADER));
        }
        Self::parse(path, &body)
    }

    /// Parses and checks the JSON header `body` of the checkpoint at `path`.
    fn parse(path: &Path, body: &[u8]) -> Result<Self, TrainError> {
        let header: Header = serde_json::from_slice(body)
            .map_err(|e| TrainError::checkpoint(path, format!("bad header: {e}")))?;
        if header.format != FORMAT {
            return Err(TrainError::checkpoint(
                path,
                format!("format {} (this petal reads {FORMAT})", header.format),
            ));
        }
        Ok(header)
    }
}

/// A checkpoint in memory.
pub struct Checkpoint {
    /// Architecture, progress and section table.
    pub header: Header,
    /// Named byte sections (`model`, `optimizer`, `scheduler`).
    pub sections: Vec<(String, Vec<u8>)>,
}

/// Serialises `model` to burnpack bytes.
pub fn model_bytes(model: &Classifier) -> Result<Vec<u8>, TrainError> {
    let mut store = BurnpackStore::from_bytes(None);
    model
        .save_into(&mut store)
        .map_err(|e| TrainError::Config {
            what: "model".into(),
            reason: format!("cannot serialise: {e}"),
        })?;
    let bytes = store.get_bytes().map_err(|e| TrainError::Config {
        what: "model".into(),
        reason: format!("cannot serialise: {e}"),
    })?;
    Ok(bytes.to_vec())
}

impl Checkpoint {
    /// A checkpoint of `model` with extra sections.
    pub fn new(
        config: &ClassifierConfig,
        model: &Classifier,
        state: TrainState,
        extra: Vec<(String, Vec<u8>)>,
    ) -> Result<Self, TrainError> {
        let mut sections = vec![("model".to_string(), model_bytes(model)?)];
        sections.extend(extra);
        Ok(Self {
            header: Header {
                format: FORMAT,
                model: config.clone(),
                state,
                f16: crate::optim::model_dtype(model) == DType::F16,
                sections: sections
                    .iter()
                    .map(|(n, b)| (n.clone(), b.len() as u64))
                    .collect(),
            },
            sections,
        })
    }

    /// The section called `name`.
    pub fn section(&self, name: &str) -> Option<&[u8]> {
        self.sections
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, b)| b.as_slice())
    }

    /// Writes atomically to `path` (temporary file + fsync + rename + directory fsync).
    pub fn write(&self, path: &Path) -> Result<(), TrainError> {
        let header = serde_json::to_vec(&self.header).expect("header serialises");
        let dir = path.parent().unwrap_or(Path::new("."));
        let tmp: PathBuf = dir.join(format!(
            ".{}.{}.tmp",
            path.file_name().and_then(|n| n.to_str()).unwrap_or("ckpt"),
            std::process::id()
        ));
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(MAGIC)?;
            f.write_all(&(header.len() as u64).to_le_bytes())?;
            f.write_all(&header)?;
            for (_, b) in &self.sections {
                f.write_all(b)?;
            }
            f.sync_all()?;
            drop(f);
            fs::rename(&tmp, path)?;
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
            Ok(())
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            TrainError::io(path, format!("cannot write checkpoint: {e}"))
        })
    }

    /// Reads and checks a checkpoint file.
    pub fn read(path: &Path) -> Result<Self, TrainError> {
        let bytes = fs::read(path).map_err(|e| TrainError::io(path, e))?;
        let hlen = header_len(path, &bytes)?;
        let body = bytes
            .get(16..16 + hlen)
            .ok_or_else(|| TrainError::checkpoint(path, TRUNCATED_HEADER))?;
        let header = Header::parse(path, body)?;
        let mut at = 16 + hlen;
        let mut sections = Vec::new();
        for (name, len) in &header.sections {
            let end = at + *len as usize;
            let b = bytes.get(at..end).ok_or_else(|| {
                TrainError::checkpoint(path, format!("section `{name}` truncated"))
            })?;
            sections.push((name.clone(), b.to_vec()));
            at = end;
        }
        if at != bytes.len() {
            return Err(TrainError::checkpoint(
                path,
                "trailing bytes after the last section",
            ));
        }
        Ok(Self { header, sections })
    }

    /// Builds the model on `device` and loads the weights (every tensor must match), in the
    /// dtype they were saved in.
    pub fn load_model(&self, path: &Path, device: &Device) -> Result<Classifier, TrainError> {
        self.load_section_model(path, "model", device)
    }

    /// The weights to predict with: the EMA average (section `ema`, `--ema` runs) when the
    /// checkpoint has one, else the trained weights.
    pub fn load_inference_model(
        &self,
        path: &Path,
        device: &Device,
    ) -> Result<Classifier, TrainError> {
        let name = if self.section("ema").is_some() {
            "ema"
        } else {
            "model"
        };
        self.load_section_model(path, name, device)
    }

    /// Builds the model on `device` and loads the weights of section `name` (`model` or
    /// `ema`).
    pub fn load_section_model(
        &self,
        path: &Path,
        name: &str,
        device: &Device,
    ) -> Result<Classifier, TrainError> {
        let mut model = self.header.model.init(device);
        if self.header.f16 {
            model = cast_model(model, DType::F16);
        }
        self.load_section_into(path, name, model)
    }

    /// Loads the weights of section `name` into `model` (its parameter ids are kept: an EMA
    /// average loaded into a copy of the trained model pairs with it tensor for tensor).
    pub fn load_section_into(
        &self,
        path: &Path,
        name: &str,
        mut model: Classifier,
    ) -> Result<Classifier, TrainError> {
        let bytes = self
            .section(name)
            .ok_or_else(|| TrainError::checkpoint(path, format!("no `{name}` section")))?;
        let mut store = BurnpackStore::from_bytes(Some(Bytes::from_bytes_vec(bytes.to_vec())));
        let result = model
            .load_from(&mut store)
            .map_err(|e| TrainError::checkpoint(path, format!("cannot load the model: {e}")))?;
        if !result.missing.is_empty() || !result.errors.is_empty() {
            let missing: Vec<String> = result
                .missing
                .iter()
                .take(8)
                .map(|m| format!("{m:?}"))
                .collect();
            return Err(TrainError::checkpoint(
                path,
                format!(
                    "the weights do not fit the model: missing {missing:?}, errors {:?}",
                    result.errors.iter().take(8).collect::<Vec<_>>()
                ),
            ));
        }
        Ok(model)
    }
}

/// Reads the model to predict with from a checkpoint (the EMA average where the run kept
/// one), with its config, in f32 (an f16 run's weights are widened).
pub fn load_checkpoint_model(
    path: &Path,
    device: &Device,
) -> Result<(Classifier, ClassifierConfig), TrainError> {
    let ckpt = Checkpoint::read(path)?;
    let model = cast_model(ckpt.load_inference_model(path, device)?, DType::F32);
    Ok((model, ckpt.header.model.clone()))
}
