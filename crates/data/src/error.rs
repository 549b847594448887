//! Errors of petal-data.

use thiserror::Error;

/// What can go wrong reading an image.
#[derive(Debug, Error)]
pub enum DataError {
    /// The file could not be opened or read.
    #[error("{path}: cannot read: {reason}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The file is not a decodable image (empty, truncated, unsupported format…).
    #[error("{path}: not a readable image: {reason}")]
    Decode {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The header announces more pixels than allowed (decompression-bomb guard).
    #[error(
        "{path}: {width}×{height} = {pixels} pixels exceeds the limit of {limit} (raise it with --max-pixels if the file is trusted)"
    )]
    TooLarge {
        /// The file.
        path: String,
        /// Width from the header.
        width: u32,
        /// Height from the header.
        height: u32,
        /// width × height.
        pixels: u64,
        /// The limit.
        limit: u64,
    },
    /// The dataset folder does not have a layout petal knows.
    #[error("{path}: {reason}\n{layouts}", layouts = LAYOUTS)]
    Layout {
        /// The folder.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// `--cache device`: the decoded images cannot be kept on the device (not a GPU, or
    /// they do not fit).
    #[error("--cache device: {reason}")]
    DeviceCache {
        /// Why, with the byte counts.
        reason: String,
    },
    /// A side file (`cat_to_name.json`, …) is unreadable.
    #[error("{path}: {reason}")]
    Metadata {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
}

impl DataError {
    /// The message without the leading `path: ` (for reports that name the file already).
    pub fn reason(&self) -> String {
        let full = self.to_string();
        let path = match self {
            Self::Io { path, .. }
            | Self::Decode { path, .. }
            | Self::TooLarge { path, .. }
            | Self::Layout { path, .. }
            | Self::Metadata { path, .. } => path,
            Self::DeviceCache { .. } => return full,
        };
        full.strip_prefix(&format!("{path}: "))
            .map(str::to_string)
            .unwrap_or(full)
    }
}

/// The dataset layouts petal reads, shown with every layout error.
pub const LAYOUTS: &str = "expected an ImageFolder layout:
  DIR/train/<class>/*.jpg      (required)
  DIR/valid/<class>/*.jpg      (or DIR/val/; without it a stratified split of train is made)
  DIR/test/<class>/*.jpg       (optional)
  DIR/cat_to_name.json         (optional: {\"<class folder>\": \"display name\"})";
