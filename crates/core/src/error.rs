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
        "cannot read weights `{path}`: {reason}. Expected a PyTorch state dict (.pth/.pt, zip or legacy pickle, as torch.save(model.state_dict()) writes it) or a .safetensors file"
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
    /// The state dict holds NaN or infinite values.
    #[error(
        "weights `{path}`: tensor `{tensor}` has {count} non-finite value(s) (NaN or ±inf) among {total}{more}: the file comes from a diverged run or is damaged; refusing to load it",
        more = if *tensors > 1 { format!(" ({tensors} tensors are affected)") } else { String::new() }
    )]
    NonFinite {
        /// The file.
        path: String,
        /// The first affected tensor (as the file names it).
        tensor: String,
        /// Its non-finite values.
        count: usize,
        /// Its size.
        total: usize,
        /// How many tensors are affected.
        tensors: usize,
    },
    /// An explicit `--arch` contradicts the architecture the weight file holds.
    #[error(
        "--arch {asked} contradicts weights `{path}`, which hold {found}: drop --arch (the default `auto` reads the architecture from the file) or pass --arch {found}"
    )]
    ArchContradicts {
        /// The file.
        path: String,
        /// The architecture asked for.
        asked: String,
        /// The architecture the file holds.
        found: String,
    },
    /// A backbone configuration (a config file's `[backbone]`, or sizes read from a weight
    /// file) that cannot be built.
    #[error(
        "backbone `{arch}` cannot be built: {reason}. Fix the `[backbone]` settings, or use an --arch preset"
    )]
    BadBackbone {
        /// The configuration, described.
        arch: String,
        /// What is wrong, with the values.
        reason: String,
    },
    /// An export could not be written.
    #[error("export failed: {reason}")]
    Export {
        /// What went wrong.
        reason: String,
    },
    /// Device selection failed.
    #[error("{0}")]
    Device(String),
}
