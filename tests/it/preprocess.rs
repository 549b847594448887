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
        ("eval_256_224", 256, 224),  // down-scaling ×0.85
        ("eval_128_112", 128, 112),  // strong down-scaling: antialiasing matters
        ("eval_300_224", 300, 224),  // shorter side already 300: untouched
        ("eval_400_320", 400, 320),  // up-scaling
    ] {
        let got = center_crop(&resize_shorter_side(&img, resize), crop);
        let (shape, want) = u8s(name);
        assert_eq!(shape, vec![crop as usize, crop as usize, 3], "{name}");
        let diff = got.as_raw().iter().zip(&want).filter(|(a, b)| a != b).count();
        assert_eq!(diff, 0, "{name}: {diff} of {} bytes differ", want.len());
    }
}

#[test]
fn normalised_tensor_matches_torchvision() {
    let got = EvalTransform::default().apply(&photo());
    let (_, want) = f32s("eval_256_224_normalised");
    let max = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(max <= 1e-6, "max abs error {max}");
}
