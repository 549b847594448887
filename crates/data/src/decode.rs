//! Decoding any common image file to RGB8.
//!
//! JPEG (baseline, progressive, CMYK/YCCK), PNG (8/16-bit, palette, gray, alpha), WebP,
//! GIF (first frame) and BMP, via the `image` crate. Grayscale is expanded to RGB;
//! 16-bit channels are scaled to 8 bits. Alpha: [`decode_rgb8`] **drops** it, as Pillow's
//! `convert("RGB")` (what torchvision's loaders call) does, so `petal predict` sees the same
//! pixels PyTorch does; [`decode_rgb8_with`] can instead composite over a background
//! ([`Alpha::Composite`], white by default for training data: transparent regions of
//! product photos and cut-outs are usually meant as white).
//!
//! The header is read before any pixel is decoded: an image announcing more than
//! `max_pixels` pixels is refused (Pillow's `MAX_IMAGE_PIXELS` guard; default the same
//! 89,478,485).

use crate::error::DataError;
use image::{ImageFormat, ImageReader, RgbImage};
use std::io::Cursor;
use std::path::Path;

/// Pillow's `Image.MAX_IMAGE_PIXELS`: 1024 · 1024 · 1024 / 4 / 3.
pub const DEFAULT_MAX_PIXELS: u64 = 1024 * 1024 * 1024 / 4 / 3;

/// What to do with an alpha channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alpha {
    /// Keep the colour channels as stored (Pillow's `convert("RGB")`).
    Drop,
    /// Blend over this background colour: `c·a + bg·(1 − a)`, rounded.
    Composite([u8; 3]),
}

impl Alpha {
    /// Composite over white.
    pub const WHITE: Alpha = Alpha::Composite([255, 255, 255]);
}

/// Decodes `path` to RGB8 (alpha dropped, as PIL), refusing images above `max_pixels`
/// before decoding them.
pub fn decode_rgb8(path: impl AsRef<Path>, max_pixels: u64) -> Result<RgbImage, DataError> {
    decode_rgb8_with(path, max_pixels, Alpha::Drop)
}

/// [`decode_rgb8`] with a choice of alpha handling.
pub fn decode_rgb8_with(
    path: impl AsRef<Path>,
    max_pixels: u64,
    alpha: Alpha,
) -> Result<RgbImage, DataError> {
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
    let bytes = std::fs::read(path).map_err(io)?;
    let reader = || {
        ImageReader::new(Cursor::new(&bytes[..]))
            .with_guessed_format()
            .map_err(io)
    };
    let reader_for_header = reader()?;
    let format = reader_for_header.format();
    let (width, height) = reader_for_header.into_dimensions().map_err(decode)?;
    let pixels = width as u64 * height as u64;
    if pixels > max_pixels {
        return Err(DataError::TooLarge {
            path: shown.clone(),
            width,
            height,
            pixels,
            limit: max_pixels,
        });
    }
    if format == Some(ImageFormat::Jpeg) && !jpeg_is_complete(&bytes) {
        // The JPEG decoder fills a cut-off scan with grey instead of failing; Pillow
        // refuses such files ("image file is truncated"), and so does petal.
        return Err(DataError::Decode {
            path: shown.clone(),
            reason: "truncated JPEG (no end-of-image marker after the last scan)".into(),
        });
    }
    let mut reader = reader()?;
    reader.no_limits();
    let img = reader.decode().map_err(decode)?;
    match alpha {
        Alpha::Composite(bg) if img.color().has_alpha() => {
            let rgba = img.to_rgba8();
            let mut out = RgbImage::new(rgba.width(), rgba.height());
            for (o, p) in out.pixels_mut().zip(rgba.pixels()) {
                let a = p.0[3] as u32;
                for ((o, &c), &b) in o.0.iter_mut().zip(&p.0[..3]).zip(&bg) {
                    *o = ((c as u32 * a + b as u32 * (255 - a) + 127) / 255) as u8;
                }
            }
            Ok(out)
        }
        _ => Ok(img.to_rgb8()),
    }
}

/// Whether a JPEG stream has an end-of-image marker (`FF D9`) after its last start-of-scan
/// (`FF DA`). An EXIF thumbnail's own markers come before the main image's scan, so they
/// do not count.
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let last = |marker: u8| bytes.windows(2).rposition(|w| w == [0xFF, marker]);
    match (last(0xDA), last(0xD9)) {
        (Some(sos), Some(eoi)) => eoi > sos,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn jpeg_completeness_looks_for_eoi_after_the_last_scan() {
        use super::jpeg_is_complete as ok;
        assert!(ok(&[0xFF, 0xD8, 0xFF, 0xDA, 1, 2, 0xFF, 0xD9]));
        // Thumbnail EOI before the main scan, main scan cut off.
        assert!(!ok(&[0xFF, 0xD8, 0xFF, 0xD9, 0xFF, 0xDA, 1, 2, 3]));
        assert!(!ok(&[0xFF, 0xD8, 0xFF, 0xDA, 1, 2]));
        assert!(!ok(&[]));
    }
}
