//! The eval transform is bit-exact with torchvision's on PIL images.

use crate::common::*;
use petal::data::transform::{center_crop, resize_shorter_side};
use petal::data::{DEFAULT_MAX_PIXELS, EvalTransform, decode_rgb8};

fn photo() -> image::RgbImage {
    decode_rgb8(fixture("photo.png"), DEFAULT_MAX_PIXELS).unwrap()
}

#[test]
fn resize_and_center_crop_are_bit_exact_with_torchvision() {
    let img = photo();
    assert_eq!(img.dimensions(), (400, 300));
    for (name, resize, crop) in [
        ("eval_256_224", 256, 224), // down-scaling ×0.85
        ("eval_128_112", 128, 112), // strong down-scaling: antialiasing matters
        ("eval_300_224", 300, 224), // shorter side already 300: untouched
        ("eval_400_320", 400, 320), // up-scaling
    ] {
        let got = center_crop(&resize_shorter_side(&img, resize), crop);
        let (shape, want) = u8s(name);
        assert_eq!(shape, vec![crop as usize, crop as usize, 3], "{name}");
        let diff = got
            .as_raw()
            .iter()
            .zip(&want)
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(diff, 0, "{name}: {diff} of {} bytes differ", want.len());
    }
}

#[test]
fn normalised_tensor_matches_torchvision() {
    let got = EvalTransform::default().apply(&photo());
    let (_, want) = f32s("eval_256_224_normalised");
    let max = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(max <= 1e-6, "max abs error {max}");
}

fn tmpdir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("petal-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn decodes_every_supported_kind_to_rgb8() {
    use image::{DynamicImage, GenericImageView, ImageBuffer, Luma, LumaA, Rgb, Rgba};
    let dir = tmpdir("formats");
    let cases: Vec<(&str, DynamicImage, [u8; 3])> = vec![
        (
            "gray.png",
            DynamicImage::ImageLuma8(ImageBuffer::from_pixel(5, 4, Luma([77]))),
            [77, 77, 77],
        ),
        (
            "gray_alpha.png",
            DynamicImage::ImageLumaA8(ImageBuffer::from_pixel(5, 4, LumaA([90, 10]))),
            [90, 90, 90],
        ),
        // Alpha is dropped, as PIL's convert("RGB") drops it.
        (
            "rgba.png",
            DynamicImage::ImageRgba8(ImageBuffer::from_pixel(5, 4, Rgba([10, 20, 30, 0]))),
            [10, 20, 30],
        ),
        // 16-bit: 0x8080 → 128, 0xFFFF → 255, 0x0101 → 1.
        (
            "rgb16.png",
            DynamicImage::ImageRgb16(ImageBuffer::from_pixel(
                5,
                4,
                Rgb([0x8080u16, 0xFFFF, 0x0101]),
            )),
            [128, 255, 1],
        ),
        (
            "rgb.bmp",
            DynamicImage::ImageRgb8(ImageBuffer::from_pixel(5, 4, Rgb([1, 2, 3]))),
            [1, 2, 3],
        ),
        (
            "rgb.webp",
            DynamicImage::ImageRgb8(ImageBuffer::from_pixel(5, 4, Rgb([40, 50, 60]))),
            [40, 50, 60],
        ),
        (
            "rgb.gif",
            DynamicImage::ImageRgba8(ImageBuffer::from_pixel(5, 4, Rgba([255, 0, 0, 255]))),
            [255, 0, 0],
        ),
        (
            "one_pixel.png",
            DynamicImage::ImageRgb8(ImageBuffer::from_pixel(1, 1, Rgb([9, 8, 7]))),
            [9, 8, 7],
        ),
    ];
    for (name, img, want) in cases {
        let path = dir.join(name);
        img.save(&path).unwrap();
        let got = decode_rgb8(&path, DEFAULT_MAX_PIXELS).unwrap();
        assert_eq!(got.dimensions(), img.dimensions(), "{name}");
        assert!(
            got.pixels().all(|p| p.0 == want),
            "{name}: {:?} != {want:?}",
            got.get_pixel(0, 0)
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn cmyk_jpeg_and_palette_png_decode_like_pillow() {
    let formats = manifest_entry("formats");
    for (name, tol) in [("cmyk.jpg", 6), ("palette.png", 0)] {
        let want: Vec<i32> = formats[name]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap() as i32)
            .collect();
        let img = decode_rgb8(fixture(name), DEFAULT_MAX_PIXELS).unwrap();
        let got = img.get_pixel(8, 8).0;
        for c in 0..3 {
            assert!(
                (got[c] as i32 - want[c]).abs() <= tol,
                "{name}: petal {got:?}, Pillow {want:?}"
            );
        }
    }
}

#[test]
fn oversized_headers_and_broken_files_are_refused_with_the_path() {
    use petal::data::DataError;
    // The header is read first: the pixel limit refuses before decoding.
    let err = decode_rgb8(fixture("photo.png"), 400 * 300 - 1).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::TooLarge {
                pixels: 120_000,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("photo.png"), "{err}");

    let dir = tmpdir("broken");
    let empty = dir.join("empty.jpg");
    std::fs::write(&empty, b"").unwrap();
    let truncated = dir.join("truncated.png");
    let bytes = std::fs::read(fixture("photo.png")).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    for p in [&empty, &truncated] {
        let err = decode_rgb8(p, DEFAULT_MAX_PIXELS).unwrap_err();
        assert!(matches!(err, DataError::Decode { .. }), "{err}");
        assert!(
            err.to_string()
                .contains(p.file_name().unwrap().to_str().unwrap())
        );
    }
    let missing = decode_rgb8(dir.join("nope.jpg"), DEFAULT_MAX_PIXELS).unwrap_err();
    assert!(matches!(missing, DataError::Io { .. }), "{missing}");
    std::fs::remove_dir_all(&dir).unwrap();
}
