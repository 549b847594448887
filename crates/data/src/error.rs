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
}
