//! Synthetic flowers: a seeded procedural data set that needs no download.
//!
//! A class is a combination of **petal count** (3–8), **petal shape** (round, pointed,
//! notched) and **colour palette** (4 hue families); every image draws one flower with a
//! random position, size, rotation, petal colour jitter, a textured background and pixel
//! noise, at any size. Class `k` has `3 + k % 6` petals, palette `(k / 6) % 4` and shape
//! `(k / 24) % 3`, so up to 72 classes are distinct. Sample `i` has label `i % classes`
//! (balanced by construction) and is a pure function of `(seed, i)`.

use crate::folder::ClassList;
use image::{Rgb, RgbImage};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::f32::consts::PI;

/// The most classes with distinct (petal count, shape, palette).
pub const MAX_CLASSES: usize = 6 * 3 * 4;

const SHAPES: [&str; 3] = ["round", "pointed", "notched"];
/// Palette hue families (degrees) and names.
const PALETTES: [(f32, &str); 4] = [
    (350.0, "red"),
    (45.0, "yellow"),
    (275.0, "violet"),
    (205.0, "blue"),
];

/// A synthetic-flowers data set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyntheticFlowers {
    /// Number of classes (1..=72).
    pub num_classes: usize,
    /// Image side in pixels.
    pub size: u32,
    /// Seed: the same seed gives the same images.
    pub seed: u64,
}

fn hsv(h: f32, s: f32, v: f32) -> [f32; 3] {
    let h = h.rem_euclid(360.0) / 60.0;
    let c = v * s;
    let x = c * (1.0 - (h % 2.0 - 1.0).abs());
    let (r, g, b) = match h as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let m = v - c;
    [(r + m) * 255.0, (g + m) * 255.0, (b + m) * 255.0]
}

impl SyntheticFlowers {
    /// # Panics
    /// If `num_classes` is not in 1..=72 or `size` is zero.
    pub fn new(num_classes: usize, size: u32, seed: u64) -> Self {
        assert!(
            (1..=MAX_CLASSES).contains(&num_classes),
            "synthetic flowers: num_classes must be in 1..={MAX_CLASSES}, got {num_classes}"
        );
        assert!(size > 0, "synthetic flowers: size must be > 0");
        Self {
            num_classes,
            size,
            seed,
        }
    }

    /// (petal count, shape index, palette index) of class `k`.
    pub fn class_attributes(k: usize) -> (u32, usize, usize) {
        (3 + (k % 6) as u32, (k / 24) % 3, (k / 6) % 4)
    }

    /// Class folders (`0`…) and descriptive names (`5 round red petals`).
    pub fn classes(&self) -> ClassList {
        ClassList {
            folders: (0..self.num_classes).map(|k| k.to_string()).collect(),
            names: (0..self.num_classes)
                .map(|k| {
                    let (p, s, c) = Self::class_attributes(k);
                    format!("{p} {} {} petals", SHAPES[s], PALETTES[c].1)
                })
                .collect(),
        }
    }

    /// Label of sample `index`.
    pub fn label(&self, index: u64) -> usize {
        (index % self.num_classes as u64) as usize
    }

    /// Draws sample `index`: its image and label.
    pub fn sample(&self, index: u64) -> (RgbImage, usize) {
        let label = self.label(index);
        let (petals, shape, palette) = Self::class_attributes(label);
        let mut rng =
            ChaCha8Rng::seed_from_u64(self.seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let n = self.size as f32;
        // Background: an earthy or leafy base with two random stripes of texture.
        let bg = hsv(
            rng.random_range(60.0..150.0),
            rng.random_range(0.3..0.7),
            rng.random_range(0.25..0.6),
        );
        let (fx, fy, fp) = (
            rng.random_range(2.0..9.0) / n,
            rng.random_range(2.0..9.0) / n,
            rng.random_range(0.0..2.0 * PI),
        );
        // The flower.
        let cx = rng.random_range(0.3..0.7) * n;
        let cy = rng.random_range(0.3..0.7) * n;
        let radius = rng.random_range(0.22..0.42) * n;
        let rot = rng.random_range(0.0..2.0 * PI);
        let hue = PALETTES[palette].0 + rng.random_range(-18.0..18.0);
        let petal = hsv(
            hue,
            rng.random_range(0.55..0.95),
            rng.random_range(0.7..1.0),
        );
        let disc = hsv(
            rng.random_range(30.0..55.0),
            0.8,
            rng.random_range(0.35..0.9),
        );
        let noise = rng.random_range(3.0..12.0);
        let mut img = RgbImage::new(self.size, self.size);
        for (x, y, px) in img.enumerate_pixels_mut() {
            let (dx, dy) = (x as f32 + 0.5 - cx, y as f32 + 0.5 - cy);
            let d = (dx * dx + dy * dy).sqrt() / radius;
            // Position within one petal, 0..1 around the flower.
            let t = ((dy.atan2(dx) - rot) * petals as f32 / (2.0 * PI)).rem_euclid(1.0);
            let s = (PI * t).sin();
            let reach = match shape {
                0 => s.sqrt(),
                1 => s * s,
                _ => s.sqrt() * (1.0 - 0.35 * (-((t - 0.5) / 0.07).powi(2)).exp()),
            };
            let base = if d < 0.22 {
                disc
            } else if d < 0.22 + 0.78 * reach {
                let shade = 1.0 - 0.35 * d;
                [petal[0] * shade, petal[1] * shade, petal[2] * shade]
            } else {
                let tex =
                    0.85 + 0.15 * (x as f32 * fx * 2.0 * PI + y as f32 * fy * 2.0 * PI + fp).sin();
                [bg[0] * tex, bg[1] * tex, bg[2] * tex]
            };
            let jitter: f32 = rng.random_range(-1.0..1.0) * noise;
            *px = Rgb(base.map(|v| (v + jitter).clamp(0.0, 255.0) as u8));
        }
        (img, label)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_attributes_are_distinct_for_every_class() {
        let mut seen: Vec<_> = (0..MAX_CLASSES)
            .map(SyntheticFlowers::class_attributes)
            .collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), MAX_CLASSES);
    }

    #[test]
    fn hsv_primaries() {
        assert_eq!(hsv(0.0, 1.0, 1.0), [255.0, 0.0, 0.0]);
        assert_eq!(hsv(120.0, 1.0, 1.0), [0.0, 255.0, 0.0]);
        assert_eq!(hsv(240.0, 1.0, 0.5), [0.0, 0.0, 127.5]);
    }
}
