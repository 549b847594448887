//! [`TrainError`]: what can stop a run, each saying what to do.

use std::path::Path;

/// Errors of the trainer.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A setting is out of range or a config file does not parse.
    #[error("bad configuration {what}: {reason}")]
    Config {
        /// The field or file.
        what: String,
        /// Why.
        reason: String,
    },
    /// A setting is outside its allowed range (named by its flag and its config key).
    #[error(
        "{} {value} is out of range: {allowed} (`{key}` in a config file)",
        flag.as_ref().map(|f| format!("--{f}")).unwrap_or_else(|| format!("`{key}`"))
    )]
    OutOfRange {
        /// The command-line flag, without dashes (`None`: a config-file key only).
        flag: Option<String>,
        /// The `FineTuneConfig` / TOML key.
        key: String,
        /// The value given.
        value: String,
        /// The allowed range, in words.
        allowed: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {reason}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// A checkpoint is unreadable or does not belong to this run.
    #[error("checkpoint `{path}`: {reason}")]
    Checkpoint {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The loss became NaN or infinite.
    #[error(
        "the loss became {loss} at step {step} (epoch {epoch}, head learning rate {lr:.3e}); stopped. \
         The last good checkpoint is kept: lower --lr (try `petal lr-find`), add --grad-clip, or check the data"
    )]
    NonFinite {
        /// The loss value.
        loss: f32,
        /// Global step.
        step: u64,
        /// Epoch (1-based).
        epoch: usize,
        /// Head learning rate at that step.
        lr: f64,
    },
    /// Model / weights problem.
    #[error(transparent)]
    Core(#[from] petal_core::CoreError),
    /// Data problem.
    #[error(transparent)]
    Data(#[from] petal_data::DataError),
}

impl TrainError {
    /// An I/O error on `path`.
    pub fn io(path: &Path, e: impl std::fmt::Display) -> Self {
        Self::Io {
            path: path.display().to_string(),
            reason: e.to_string(),
        }
    }

    /// A checkpoint error on `path`.
    pub fn checkpoint(path: &Path, reason: impl Into<String>) -> Self {
        Self::Checkpoint {
            path: path.display().to_string(),
            reason: reason.into(),
        }
    }
}
