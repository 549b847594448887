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
//! The format is decided by the file's **content** (its magic bytes), as Pillow does: a PNG
//! saved with a `.jpg` name decodes as the PNG it is. Extensions only pre-filter which files
//! a folder scan looks at.
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
    let format = sniff_format(&bytes).ok_or_else(|| DataError::Decode {
        path: shown.clone(),
        reason: UNKNOWN_SIGNATURE.into(),
    })?;
    let reader = || ImageReader::with_format(Cursor::new(&bytes[..]), format);
    let (width, height) = reader().into_dimensions().map_err(decode)?;
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
    if let Err(reason) = check_complete(format, &bytes, &bytes, bytes.len() as u64) {
        // The JPEG decoder fills a cut-off scan with grey instead of failing; Pillow
        // refuses such files ("image file is truncated"), and so does petal.
        return Err(DataError::Decode {
            path: shown.clone(),
            reason,
        });
    }
    let mut reader = reader();
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

/// What [`sniff_format`] says of a file it does not recognise.
pub const UNKNOWN_SIGNATURE: &str =
    "not an image: the content starts with no JPEG, PNG, WebP, GIF or BMP signature";

/// The image format of a file by its first bytes (magic numbers), whatever its name says;
/// `None` for anything petal does not decode.
pub fn sniff_format(head: &[u8]) -> Option<ImageFormat> {
    image::guess_format(head).ok().filter(|f| {
        matches!(
            f,
            ImageFormat::Jpeg
                | ImageFormat::Png
                | ImageFormat::WebP
                | ImageFormat::Gif
                | ImageFormat::Bmp
        )
    })
}

/// How many bytes of a file's end [`check_complete`] needs to judge it (the scan reads
/// only this much).
pub const TAIL_BYTES: usize = 64 * 1024;

/// Checks what is cheap to check of a file's completeness from its first bytes (`head`),
/// its last bytes (`tail`, the whole file when `len` fits in it) and its length: a JPEG
/// needs an end-of-image marker after its last scan, a PNG its `IEND` chunk, a WebP the
/// length its RIFF header announces. `Err` says what is missing.
pub fn check_complete(
    format: ImageFormat,
    head: &[u8],
    tail: &[u8],
    len: u64,
) -> Result<(), String> {
    let whole = tail.len() as u64 >= len;
    let complete = match format {
        ImageFormat::Jpeg => jpeg_is_complete(tail, whole),
        ImageFormat::Png => tail.windows(4).any(|w| w == b"IEND"),
        ImageFormat::WebP => head
            .get(4..8)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as u64)
            .is_some_and(|size| len >= 8 + size),
        _ => true,
    };
    if complete {
        return Ok(());
    }
    Err(match format {
        ImageFormat::Jpeg => "truncated JPEG (no end-of-image marker after the last scan)",
        ImageFormat::Png => "truncated PNG (no IEND chunk)",
        _ => "truncated WebP (shorter than its RIFF header says)",
    }
    .into())
}

/// Whether a JPEG stream whose last bytes are `tail` has an end-of-image marker (`FF D9`)
/// after its last start-of-scan (`FF DA`). Scan data never holds `FF D9` (`FF` is stuffed),
/// so an EOI in the tail with no scan after it closes the image even when the scan began
/// before the tail; when `tail` is the `whole` file, an EOI needs a scan before it (an EXIF
/// thumbnail's own markers come before the main image's scan).
fn jpeg_is_complete(tail: &[u8], whole: bool) -> bool {
    let last = |marker: u8| tail.windows(2).rposition(|w| w == [0xFF, marker]);
    match (last(0xDA), last(0xD9)) {
        (Some(sos), Some(eoi)) => eoi > sos,
        (None, Some(_)) => !whole,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn jpeg_completeness_looks_for_eoi_after_the_last_scan() {
        let ok = |b: &[u8]| super::jpeg_is_complete(b, true);
        assert!(ok(&[0xFF, 0xD8, 0xFF, 0xDA, 1, 2, 0xFF, 0xD9]));
        // Thumbnail EOI before the main scan, main scan cut off.
        assert!(!ok(&[0xFF, 0xD8, 0xFF, 0xD9, 0xFF, 0xDA, 1, 2, 3]));
        assert!(!ok(&[0xFF, 0xD8, 0xFF, 0xDA, 1, 2]));
        assert!(!ok(&[]));
        // A tail of a longer file: the scan began before it, the EOI closes it.
        assert!(super::jpeg_is_complete(&[7, 8, 0xFF, 0xD9], false));
        assert!(!super::jpeg_is_complete(&[7, 8, 9, 10], false));
        assert!(!super::jpeg_is_complete(
            &[0xFF, 0xD9, 0xFF, 0xDA, 1],
            false
        ));
    }
}
