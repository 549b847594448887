//! Mixed precision (`--precision mixed`), as PyTorch's `torch.autocast` + `torch.amp.GradScaler`
//! do it for a whole-network f16 forward: the **master weights and the AdamW state stay f32**;
//! each optimizer step runs the forward and backward passes on an f16 copy of the model
//! ([`half_copy`]), the loss multiplied by the current loss scale so small gradients survive
//! f16; the f16 gradients are widened to f32 and divided by the scale ([`unscale`]); a
//! non-finite or saturated ([`F16_MAX`]) gradient skips the step and halves the scale, and
//! `growth_interval` clean steps in a row double it ([`LossScaler::update`], `GradScaler.update`'s rules and defaults).
//!
//! BatchNorm running statistics are buffers shared by the model and its copy (Burn's
//! `RunningState`): they are updated in f16 during the step and widened back to f32 after it
//! ([`widen`]), so evaluation and checkpoints see f32 everywhere (pending per-thread updates
//! are flushed before each cast, or a stale dtype would come back at the next forward pass).

use crate::optim::cast_model;
use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::{DType, Tensor};
use petal_core::Classifier;
use serde::{Deserialize, Serialize};

/// Dynamic loss scaling with `torch.amp.GradScaler`'s rules; part of the checkpoint so a
/// resumed run continues with the same scale.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LossScaler {
    /// The factor the loss is multiplied by before the backward pass.
    pub scale: f64,
    /// Consecutive steps without a non-finite gradient since the last change of scale.
    pub growth_tracker: u32,
    /// Clean steps after which the scale grows (`growth_interval`, 2000).
    pub growth_interval: u32,
    /// Steps skipped so far for non-finite gradients.
    pub skipped: u64,
}

impl LossScaler {
    /// `GradScaler`'s default initial scale, `2^16`.
    pub const INIT_SCALE: f64 = 65_536.0;
    /// `GradScaler`'s default growth interval.
    pub const GROWTH_INTERVAL: u32 = 2000;
    /// The scale's factor after `growth_interval` clean steps.
    pub const GROWTH_FACTOR: f64 = 2.0;
    /// The scale's factor after a non-finite gradient.
    pub const BACKOFF_FACTOR: f64 = 0.5;

    /// A scaler starting at `scale`, growing after `growth_interval` clean steps.
    pub fn new(scale: f64, growth_interval: u32) -> Self {
        Self {
            scale,
            growth_tracker: 0,
            growth_interval: growth_interval.max(1),
            skipped: 0,
        }
    }

    /// After a backward pass: whether the optimizer step is taken (`!found_inf`). As
    /// `GradScaler.update`: a non-finite gradient multiplies the scale by
    /// [`BACKOFF_FACTOR`](Self::BACKOFF_FACTOR) and resets the tracker; otherwise the tracker
    /// counts, and reaching `growth_interval` multiplies the scale by
    /// [`GROWTH_FACTOR`](Self::GROWTH_FACTOR) (unless that would overflow f32) and resets it.
    pub fn update(&mut self, found_inf: bool) -> bool {
        if found_inf {
            self.scale *= Self::BACKOFF_FACTOR;
            self.growth_tracker = 0;
            self.skipped += 1;
            return false;
        }
        self.growth_tracker += 1;
        if self.growth_tracker == self.growth_interval {
            let grown = self.scale * Self::GROWTH_FACTOR;
            if grown <= f32::MAX as f64 {
                self.scale = grown;
            }
            self.growth_tracker = 0;
        }
        true
    }
}

impl Default for LossScaler {
    fn default() -> Self {
        Self::new(Self::INIT_SCALE, Self::GROWTH_INTERVAL)
    }
}

/// The f16 copy of `master` that a mixed-precision step runs forward and backward on: every
/// parameter cast to f16 as a new autodiff leaf with the same [`ParamId`] (so its gradients
/// map back onto the master's parameters).
pub fn half_copy(master: &Classifier) -> Classifier {
    flush_running_stats(master);
    cast_model(master.clone(), DType::F16)
}

/// Folds the BatchNorm updates still pending in Burn's `RunningState` (kept per thread until
/// the next read) into its value, so that a cast reaches them: `valid()` synchronises every
/// running state in place (the copy it returns is dropped).
fn flush_running_stats(model: &Classifier) {
    drop(model.valid());
}

/// `master` with its shared BatchNorm buffers widened back to f32 after an f16 step (its
/// parameters are f32 already and stay as they are).
pub fn widen(master: Classifier) -> Classifier {
    flush_running_stats(&master);
    cast_model(master, DType::F32)
}

/// The largest finite f16 value. WGSL leaves the conversion of an out-of-range f32 to f16
/// undefined (lavapipe saturates instead of giving ±inf), so a gradient at this magnitude
/// counts as an overflow too.
pub const F16_MAX: f32 = 65_504.0;

/// The gradients of `model`'s parameters (from the f16 copy, already widened) as f32 multiplied
/// by `factor` (`1 / scale` to unscale), and whether the scaled gradients overflowed: any
/// ±inf or NaN, or any magnitude at [`F16_MAX`] or above — one host read for all.
pub fn unscale(model: &Classifier, grads: GradientsParams, factor: f64) -> (GradientsParams, bool) {
    struct Unscale {
        grads: GradientsParams,
        factor: f64,
        /// Σ over parameters of Σ (g − g): NaN as soon as one value is ±inf or NaN.
        nonfinite: Option<Tensor<1>>,
        /// The largest magnitude.
        largest: Option<Tensor<1>>,
    }
    impl ModuleVisitor for Unscale {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let id: ParamId = param.id;
            let Some(g) = self.grads.remove::<D>(id) else {
                return;
            };
            let g = g.cast(DType::F32);
            let probe = (g.clone() - g.clone()).sum();
            let largest = g.clone().abs().max();
            self.nonfinite = Some(match self.nonfinite.take() {
                Some(acc) => acc + probe,
                None => probe,
            });
            self.largest = Some(match self.largest.take() {
                Some(acc) => acc.max_pair(largest),
                None => largest,
            });
            self.grads.register(id, g.mul_scalar(self.factor));
        }
    }
    let mut v = Unscale {
        grads,
        factor,
        nonfinite: None,
        largest: None,
    };
    model.visit(&mut v);
    let found_inf = match (v.nonfinite, v.largest) {
        (Some(n), Some(l)) => {
            let both: Vec<f32> = Tensor::cat(vec![n, l], 0)
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .expect("f32 probe");
            !both[0].is_finite() || both[1].is_nan() || both[1] >= F16_MAX
        }
        _ => false,
    };
    (v.grads, found_inf)
}

/// The f16 gradients of one micro-batch widened to f32 (before accumulation, so the sum of
/// several micro-batches cannot overflow f16).
pub fn widen_grads(model: &Classifier, grads: GradientsParams) -> GradientsParams {
    struct Widen(GradientsParams);
    impl ModuleVisitor for Widen {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.0.remove::<D>(param.id) {
                self.0.register(param.id, g.cast(DType::F32));
            }
        }
    }
    let mut w = Widen(grads);
    model.visit(&mut w);
    w.0
}

/// The end of a mixed-precision step on the (accumulated, widened) scaled gradients:
/// unscale them and check for overflow (one host read), then the AdamW step on the f32
/// master — or, on overflow, no step and the scale halved ([`LossScaler::update`]) — and the
/// master's BatchNorm buffers widened back to f32.
pub fn apply_step_scaled(
    model: Classifier,
    grads: GradientsParams,
    optim: &mut burn::optim::ModuleOptimizer,
    lrs: impl Into<burn::optim::lr_scheduler::module_lr_scheduler::ModuleLearningRate>,
    ctx: &crate::train::StepContext,
    scaler: &mut LossScaler,
    observe: &mut (dyn FnMut(crate::train::StepEvent) + Send),
) -> Classifier {
    let (grads, found_inf) = unscale(&model, grads, 1.0 / scaler.scale);
    let model = if scaler.update(found_inf) {
        crate::train::apply_step(model, grads, optim, lrs, ctx, observe)
    } else {
        observe(crate::train::StepEvent::Backward);
        model
    };
    widen(model)
}

/// One mixed-precision training step (no accumulation), the counterpart of
/// [`train_step`](crate::train::train_step): forward and backward of the f16 copy with the
/// loss scaled, then [`apply_step_scaled`]. `ctx.dtype` should be F16 (the copy's input).
/// Returns the master and the unscaled `[loss, correct]` metrics.
// `train_step`'s seven arguments plus the scaler.
#[allow(clippy::too_many_arguments)]
pub fn train_step_mixed(
    model: Classifier,
    batch: &petal_data::PackedBatch,
    epoch: u64,
    optim: &mut burn::optim::ModuleOptimizer,
    lrs: impl Into<burn::optim::lr_scheduler::module_lr_scheduler::ModuleLearningRate>,
    ctx: &crate::train::StepContext,
    scaler: &mut LossScaler,
    observe: &mut (dyn FnMut(crate::train::StepEvent) + Send),
) -> (Classifier, Tensor<1>) {
    let half = half_copy(&model);
    let (grads, metrics, logits) =
        crate::train::forward_backward(&half, batch, epoch, ctx, scaler.scale, observe);
    let grads = widen_grads(&half, grads);
    drop(half);
    let model = apply_step_scaled(model, grads, optim, lrs, ctx, scaler, observe);
    observe(crate::train::StepEvent::Stepped { logits: &logits });
    (model, metrics)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grad_scaler_rules_by_hand() {
        // torch.amp.GradScaler(init_scale=1024, growth_interval=3): inf → 512, then three
        // clean steps → 1024, inf in the middle of a run resets the tracker.
        let mut s = LossScaler::new(1024.0, 3);
        assert!(!s.update(true));
        assert_eq!((s.scale, s.growth_tracker, s.skipped), (512.0, 0, 1));
        assert!(s.update(false) && s.update(false));
        assert_eq!((s.scale, s.growth_tracker), (512.0, 2));
        assert!(s.update(false));
        assert_eq!((s.scale, s.growth_tracker), (1024.0, 0));
        assert!(s.update(false) && s.update(false));
        assert!(!s.update(true));
        assert_eq!((s.scale, s.growth_tracker, s.skipped), (512.0, 0, 2));
        assert!(s.update(false) && s.update(false));
        assert_eq!(s.scale, 512.0, "the tracker restarted after the overflow");
        assert!(s.update(false));
        assert_eq!(s.scale, 1024.0);
        // Defaults: 2^16, 2000.
        let d = LossScaler::default();
        assert_eq!((d.scale, d.growth_interval), (65_536.0, 2000));
        // Growth stops below f32's largest value.
        let mut big = LossScaler::new(2.0f64.powi(127), 1);
        big.update(false);
        assert_eq!(big.scale, 2.0f64.powi(127));
    }
}
