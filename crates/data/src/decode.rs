//! Decoding any common image file to RGB8.
//!
//! JPEG (baseline, progressive, CMYK/YCCK), PNG (8/16-bit, palette, gray, alpha), WebP,
//! GIF (first frame) and BMP, via the `image` crate. Grayscale is expanded to RGB;
//! 16-bit channels are scaled to 8 bits; alpha is **dropped**, as Pillow's
//! `convert("RGB")` (what torchvision's loaders call) drops it, so petal sees the same
//! pixels PyTorch does.
//!
//! The header is read before any pixel is decoded: an image announcing more than
//! `max_pixels` pixels is refused (Pillow's `MAX_IMAGE_PIXELS` guard; default the same
//! 89,478,485).

use crate::error::DataError;
use image::{ImageReader, RgbImage};
use std::path::Path;

/// Pillow's `Image.MAX_IMAGE_PIXELS`: 1024 · 1024 · 1024 / 4 / 3.
pub const DEFAULT_MAX_PIXELS: u64 = 1024 * 1024 * 1024 / 4 / 3;

/// Decodes `path` to RGB8, refusing images above `max_pixels` before decoding them.
pub fn decode_rgb8(path: impl AsRef<Path>, max_pixels: u64) -> Result<RgbImage, DataError> {
    let path = path.as_ref();
    let shown = path.display().to_string();
    let io = |e: std::io::Error| DataError::Io {
        path: shown.clone(),
        reason: e.to_string(),
    };
    let decode = |e: image::ImageError| DataError::Decode {
        path: shown.clone(),
        reason: e.to_string(),
    };
    let (width, height) = ImageReader::open(path)
        .map_err(io)?
        .with_guessed_format()
        .map_err(io)?
        .into_dimensions()
        .map_err(decode)?;
    let pixels = width as u64 * height as u64;
    if pixels > max_pixels {
        return Err(DataError::TooLarge {
            path: shown,
            width,
            height,
            pixels,
            limit: max_pixels,
        });
    }
    let mut reader = ImageReader::open(path)
        .map_err(io)?
        .with_guessed_format()
        .map_err(io)?;
    reader.no_limits();
    let img = reader.decode().map_err(decode)?;
    Ok(img.to_rgb8())
}
