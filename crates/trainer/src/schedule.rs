//! Per-step learning rates: one schedule per phase, scaled per layer group
//! (discriminative learning rates), built from Burn's schedulers.
//!
//! Closed form of [`Schedule::Cosine`] for a phase of `T` steps, `W = round(warmup · T)`
//! warmup steps, peak `p` and floor `m` (step `t` counted from 0 within the phase):
//! - `t < W`: `p/25 + (p − p/25) · t / W` (Burn's `LinearLrScheduler`)
//! - `t ≥ W`: `m + ½ (p − m) (1 + cos(π (t − W) / (T − W)))` (Burn's
//!   `CosineAnnealingLrScheduler`), the two joined by `SequentialLrScheduler`.
//!
//! [`Schedule::OneCycle`] (fastai's `fit_one_cycle`): cosine from `p/25` up to `p` over `W`
//! steps, then cosine from `p` down to `p / 25e5`.
//!
//! Group `g` of `G` (input side first, head last) peaks at
//! `lr / lr_mult^((G−1−g)/(G−1))` — fastai's `slice(lr / lr_mult, lr)` — and its floor is
//! `min_lr` scaled by the same factor.

use crate::config::Schedule;
use burn::module::ParamGroup;
use burn::optim::LearningRate;
use burn::optim::lr_scheduler::cosine::CosineAnnealingLrSchedulerConfig;
use burn::optim::lr_scheduler::linear::LinearLrSchedulerConfig;
use burn::optim::lr_scheduler::module_lr_scheduler::{ModuleLrScheduler, ModuleLrSchedulerConfig};
use burn::optim::lr_scheduler::sequential::SequentialLrSchedulerConfig;
use burn::optim::lr_scheduler::{LrScheduler, LrSchedulerConfig, LrSchedulerRecord};
use std::f64::consts::PI;

/// Warmup start divisor (fastai's `div`).
pub const WARMUP_DIV: f64 = 25.0;
/// One-cycle final divisor relative to the start (fastai's `div_final`).
pub const ONE_CYCLE_FINAL_DIV: f64 = 1e5;

/// The learning-rate curve of one phase for one group.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PhaseCurve {
    /// Which curve.
    pub schedule: Schedule,
    /// Peak learning rate.
    pub peak: f64,
    /// Floor (cosine only).
    pub min: f64,
    /// Steps in the phase.
    pub total: usize,
    /// Warmup steps.
    pub warmup: usize,
}

impl PhaseCurve {
    /// A phase of `total` steps with `warmup_fraction` of them warming up.
    ///
    /// # Panics
    /// If `total` is zero.
    pub fn new(
        schedule: Schedule,
        peak: f64,
        min: f64,
        total: usize,
        warmup_fraction: f64,
    ) -> Self {
        assert!(total > 0, "PhaseCurve: a phase needs at least one step");
        let warmup = ((warmup_fraction * total as f64).round() as usize).min(total - 1);
        Self {
            schedule,
            peak,
            min,
            total,
            warmup,
        }
    }

    /// The same curve with its peak and floor multiplied by `factor`.
    pub fn scaled(&self, factor: f64) -> Self {
        Self {
            peak: self.peak * factor,
            min: self.min * factor,
            ..*self
        }
    }

    /// The learning rate at step `t` of the phase (closed form).
    pub fn lr_at(&self, t: usize) -> f64 {
        let (p, w, n) = (self.peak, self.warmup, self.total);
        let start = p / WARMUP_DIV;
        match self.schedule {
            Schedule::Cosine => {
                if t < w {
                    start + (p - start) / w as f64 * t as f64
                } else {
                    let x = (t - w) as f64 / (n - w) as f64;
                    self.min + 0.5 * (p - self.min) * (1.0 + (PI * x).cos())
                }
            }
            Schedule::OneCycle => {
                let end = start / ONE_CYCLE_FINAL_DIV;
                if t < w {
                    let x = t as f64 / w as f64;
                    start + (p - start) * 0.5 * (1.0 - (PI * x).cos())
                } else {
                    let x = (t - w) as f64 / (n - w) as f64;
                    end + (p - end) * 0.5 * (1.0 + (PI * x).cos())
                }
            }
        }
    }

    fn burn_config(&self) -> LrSchedulerConfig {
        let cosine = LrSchedulerConfig::Cosine(
            CosineAnnealingLrSchedulerConfig::new(self.peak, self.total - self.warmup)
                .with_min_lr(self.min),
        );
        if self.warmup == 0 {
            return cosine;
        }
        let linear = LrSchedulerConfig::Linear(LinearLrSchedulerConfig::new(
            self.peak / WARMUP_DIV,
            self.peak,
            self.warmup,
        ));
        LrSchedulerConfig::Sequential(SequentialLrSchedulerConfig::new(
            vec![linear, cosine],
            vec![self.warmup],
        ))
    }
}

/// [`Schedule::OneCycle`] as a Burn [`LrScheduler`].
#[derive(Clone, Debug)]
pub struct OneCycle {
    curve: PhaseCurve,
    step: usize,
}

impl LrScheduler for OneCycle {
    fn step(&mut self) -> LearningRate {
        let lr = self.curve.lr_at(self.step);
        self.step += 1;
        lr
    }

    fn to_record(&self) -> LrSchedulerRecord {
        LrSchedulerRecord::new().with_scalar("step", self.step as u64)
    }

    fn load_record(&mut self, record: LrSchedulerRecord) {
        if let Some(step) = record.scalar::<u64>("step") {
            self.step = step as usize;
        }
    }
}

/// The peak-rate factor of group `g` of `n` (head last): `lr_mult^(−(n−1−g)/(n−1))`.
pub fn group_factor(g: usize, n: usize, lr_mult: f64) -> f64 {
    if n <= 1 {
        return 1.0;
    }
    lr_mult.powf(-((n - 1 - g) as f64) / (n - 1) as f64)
}

/// A phase's scheduler over the layer groups: group `g` follows `head.scaled(factors[g])`.
/// The last group (the head) is also the fallback for any parameter outside the groups.
pub fn phase_scheduler(
    head: &PhaseCurve,
    groups: &[ParamGroup],
    factors: &[f64],
) -> Result<ModuleLrScheduler, String> {
    match head.schedule {
        Schedule::Cosine => {
            let mut config = ModuleLrSchedulerConfig::new(head.burn_config());
            for (g, f) in groups.iter().zip(factors) {
                config = config.with_group(g.clone(), head.scaled(*f).burn_config());
            }
            config.init()
        }
        Schedule::OneCycle => {
            let mut s = ModuleLrScheduler::new(OneCycle {
                curve: *head,
                step: 0,
            });
            for (g, f) in groups.iter().zip(factors) {
                s = s.with_group(
                    g.clone(),
                    OneCycle {
                        curve: head.scaled(*f),
                        step: 0,
                    },
                );
            }
            Ok(s)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_factors_are_fastai_slice() {
        let f: Vec<f64> = (0..3).map(|g| group_factor(g, 3, 100.0)).collect();
        assert!((f[0] - 0.01).abs() < 1e-12 && (f[1] - 0.1).abs() < 1e-12 && f[2] == 1.0);
        assert_eq!(group_factor(0, 1, 100.0), 1.0);
    }

    #[test]
    fn one_cycle_shape() {
        let c = PhaseCurve::new(Schedule::OneCycle, 1e-2, 0.0, 100, 0.25);
        assert_eq!(c.warmup, 25);
        assert!((c.lr_at(0) - 1e-2 / 25.0).abs() < 1e-15);
        assert!((c.lr_at(25) - 1e-2).abs() < 1e-15);
        assert!(c.lr_at(99) < 1e-4);
    }
}
