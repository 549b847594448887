//! MixUp / CutMix batch parameters and soft targets, as timm's `Mixup` in its default
//! `mode="batch"` (`timm/data/mixup.py`): with probability `prob` a batch is mixed with its
//! own reverse (sample `i` with sample `N − 1 − i`, timm's `x.flip(0)`); when both alphas are
//! set, CutMix is chosen with probability `switch_prob`, else MixUp; `λ ~ Beta(α, α)`. CutMix
//! pastes the partner's box of area `≈ (1 − λ)·S²` (`rand_bbox`) and corrects `λ` to the
//! pasted area (`correct_lam`). Targets are `λ·onehot(y) + (1 − λ)·onehot(y_partner)` with
//! label smoothing applied to both one-hots (`mixup_target`).
//!
//! This module draws the parameters and builds the targets; the pixels are mixed by the
//! augmentation (each output pixel reading its own sample and its partner).

use rand::Rng;
use rand_distr::{Beta, Distribution};
use serde::{Deserialize, Serialize};

/// MixUp / CutMix settings (timm's names: `mixup_alpha`, `cutmix_alpha`, `mix_prob`,
/// `switch_prob`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MixConfig {
    /// MixUp's `α` (0 = off).
    pub mixup: f64,
    /// CutMix's `α` (0 = off).
    pub cutmix: f64,
    /// Probability that a batch is mixed at all.
    pub prob: f64,
    /// With both on: probability of CutMix instead of MixUp.
    pub switch_prob: f64,
}

impl Default for MixConfig {
    /// Off (both alphas 0), timm's `mix_prob = 1`, `switch_prob = 0.5`.
    fn default() -> Self {
        Self {
            mixup: 0.0,
            cutmix: 0.0,
            prob: 1.0,
            switch_prob: 0.5,
        }
    }
}

impl MixConfig {
    /// Whether any mixing can happen.
    pub fn enabled(&self) -> bool {
        (self.mixup > 0.0 || self.cutmix > 0.0) && self.prob > 0.0
    }
}

/// How one batch is mixed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mix {
    /// Not mixed (`λ = 1`).
    None,
    /// `λ·x + (1 − λ)·x_partner` everywhere.
    MixUp {
        /// Weight of the sample itself.
        lambda: f32,
    },
    /// The partner's pixels inside `[y0, y1) × [x0, x1)` of the output, the sample's outside.
    CutMix {
        /// `1 −` the box's share of the output (the sample's share of the pixels).
        lambda: f32,
        /// `[y0, y1, x0, x1]` in output pixels.
        bbox: [u32; 4],
    },
}

impl Mix {
    /// The weight of each sample's own label in its target.
    pub fn lambda(&self) -> f32 {
        match *self {
            Self::None => 1.0,
            Self::MixUp { lambda } | Self::CutMix { lambda, .. } => lambda,
        }
    }
}

/// `Beta(α, α)` (α > 0).
fn beta(alpha: f64, rng: &mut impl Rng) -> f64 {
    Beta::new(alpha, alpha).map_or(1.0, |b| b.sample(rng))
}

/// timm's `rand_bbox` (no margin) for a square `size` output, then `correct_lam`.
pub fn cutmix_box(size: u32, lambda: f64, rng: &mut impl Rng) -> ([u32; 4], f64) {
    let ratio = (1.0 - lambda).max(0.0).sqrt();
    let s = size as i64;
    let cut = (size as f64 * ratio) as i64;
    let cy = rng.random_range(0..s.max(1));
    let cx = rng.random_range(0..s.max(1));
    let clip = |v: i64| v.clamp(0, s) as u32;
    let (y0, y1) = (clip(cy - cut / 2), clip(cy + cut / 2));
    let (x0, x1) = (clip(cx - cut / 2), clip(cx + cut / 2));
    let area = (y1 - y0) as f64 * (x1 - x0) as f64;
    ([y0, y1, x0, x1], 1.0 - area / (size as f64 * size as f64))
}

/// Draws one batch's mixing (timm's `_params_per_batch`, then the box for CutMix).
pub fn draw(config: &MixConfig, size: u32, rng: &mut impl Rng) -> Mix {
    if !config.enabled() || rng.random::<f64>() >= config.prob {
        return Mix::None;
    }
    let cutmix = match (config.mixup > 0.0, config.cutmix > 0.0) {
        (true, true) => rng.random::<f64>() < config.switch_prob,
        (false, true) => true,
        _ => false,
    };
    if cutmix {
        let lambda = beta(config.cutmix, rng);
        let (bbox, lambda) = cutmix_box(size, lambda, rng);
        Mix::CutMix {
            lambda: lambda as f32,
            bbox,
        }
    } else {
        Mix::MixUp {
            lambda: beta(config.mixup, rng) as f32,
        }
    }
}

/// timm's `mixup_target`: row `i` is `λ·smooth(onehot(yᵢ)) + (1 − λ)·smooth(onehot(y_{N−1−i}))`
/// with `smooth` putting `1 − ε + ε/K` on the class and `ε/K` elsewhere. Row-major `[N, K]`.
pub fn mixed_targets(labels: &[usize], k: usize, lambda: f32, smoothing: f32) -> Vec<f32> {
    let n = labels.len();
    let off = smoothing / k as f32;
    let on = 1.0 - smoothing + off;
    let mut t = vec![0.0f32; n * k];
    for (i, &y) in labels.iter().enumerate() {
        let partner = labels[n - 1 - i];
        let row = &mut t[i * k..(i + 1) * k];
        for (c, v) in row.iter_mut().enumerate() {
            let a = if c == y { on } else { off };
            let b = if c == partner { on } else { off };
            *v = lambda * a + (1.0 - lambda) * b;
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn targets_match_timm_by_hand() {
        // labels [0, 2, 1], K = 3, λ = 0.7, ε = 0.1: on = 0.9333…, off = 0.0333…;
        // row 0 mixes class 0 with the last sample's class 1.
        let t = mixed_targets(&[0, 2, 1], 3, 0.7, 0.1);
        let (on, off) = (1.0 - 0.1 + 0.1 / 3.0, 0.1 / 3.0);
        let want = [
            // y 0, partner 1
            0.7 * on + 0.3 * off,
            0.7 * off + 0.3 * on,
            off,
            // y 2, its own partner (the middle of an odd batch)
            off,
            off,
            on,
            // y 1, partner 0
            0.7 * off + 0.3 * on,
            0.7 * on + 0.3 * off,
            off,
        ];
        assert_eq!(t.len(), 9);
        for (g, w) in t.iter().zip(want.iter()) {
            assert!((g - w).abs() < 1e-6, "{t:?}");
        }
        for row in t.chunks(3) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        }
        // λ = 1, ε = 0: plain one-hot.
        assert_eq!(mixed_targets(&[1, 0], 2, 1.0, 0.0), [0.0, 1.0, 1.0, 0.0]);
    }

    #[test]
    fn cutmix_box_corrects_lambda_to_the_pasted_area() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for lambda in [0.1, 0.5, 0.9] {
            for _ in 0..50 {
                let ([y0, y1, x0, x1], lam) = cutmix_box(32, lambda, &mut rng);
                assert!(y0 <= y1 && y1 <= 32 && x0 <= x1 && x1 <= 32);
                let area = ((y1 - y0) * (x1 - x0)) as f64;
                assert!((lam - (1.0 - area / 1024.0)).abs() < 1e-12);
                // The uncut box side is floor(32·√(1 − λ)); clipping only shrinks it.
                let cut = (32.0 * (1.0f64 - lambda).sqrt()) as u32;
                assert!(y1 - y0 <= cut && x1 - x0 <= cut);
            }
        }
    }

    #[test]
    fn draw_follows_the_probabilities() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let both = MixConfig {
            mixup: 0.8,
            cutmix: 1.0,
            prob: 0.6,
            switch_prob: 0.25,
        };
        let (mut none, mut up, mut cut) = (0, 0, 0);
        for _ in 0..4000 {
            match draw(&both, 32, &mut rng) {
                Mix::None => none += 1,
                Mix::MixUp { lambda } => {
                    assert!((0.0..=1.0).contains(&lambda));
                    up += 1
                }
                Mix::CutMix { .. } => cut += 1,
            }
        }
        // P(none) = 0.4, P(cutmix) = 0.6 · 0.25 = 0.15, P(mixup) = 0.45.
        let f = |c: i32| c as f64 / 4000.0;
        assert!((f(none) - 0.4).abs() < 0.03, "{none}");
        assert!((f(cut) - 0.15).abs() < 0.03, "{cut}");
        assert!((f(up) - 0.45).abs() < 0.03, "{up}");
        assert_eq!(draw(&MixConfig::default(), 32, &mut rng), Mix::None);
        // Beta(α, α) has mean 1/2.
        let mean = (0..4000).map(|_| beta(0.8, &mut rng)).sum::<f64>() / 4000.0;
        assert!((mean - 0.5).abs() < 0.02, "{mean}");
    }
}
