//! Errors of petal-core.

use thiserror::Error;

/// What can go wrong building a model or importing weights.
#[derive(Debug, Error)]
pub enum CoreError {
    /// `--arch` named no known architecture.
    #[error("unknown architecture `{name}`: use `auto` or one of {known}")]
    UnknownArch {
        /// What was asked for.
        name: String,
        /// What is known.
        known: String,
    },
    /// The weight file could not be read.
    #[error(
        "cannot read weights `{path}`: {reason}. Expected a PyTorch state dict (.pth/.pt, zip or legacy pickle) as torch.save(model.state_dict()) writes it"
    )]
    Read {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The architecture could not be inferred from the state dict.
    #[error("cannot infer the architecture of `{path}`: {reason}. Pass --arch with one of {known}")]
    Infer {
        /// The file.
        path: String,
        /// Why.
        reason: String,
        /// Known names.
        known: String,
    },
    /// The state dict does not fit the model.
    #[error("weights `{path}` do not fit {arch}:\n{details}")]
    Mismatch {
        /// The file.
        path: String,
        /// The model it was loaded into.
        arch: String,
        /// Missing / unexpected keys and shape mismatches, a few of each.
        details: String,
    },
    /// Device selection failed.
    #[error("{0}")]
    Device(String),
}
