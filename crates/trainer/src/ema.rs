//! Exponential moving average of the weights (`--ema DECAY`), as timm's `ModelEmaV3`: after
//! every optimizer step, `ema ← decay · ema + (1 − decay) · model` for every parameter **and**
//! every BatchNorm running statistic (timm's default, `exclude_buffers=False`), on the device,
//! with the decay warmed up over the first steps (`use_warmup`):
//! `decay(t) = min(DECAY, 1 − (1 + t − 1)^(−2/3))` at optimizer step `t` (1-based; the first
//! step copies the model). Validation, `best.ckpt`, `eval`, `predict --run` and `export` use
//! the averaged weights; the checkpoint holds both, so a resumed run continues exactly.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::prelude::*;
use petal_core::Classifier;
use std::collections::HashMap;

/// timm `ModelEmaV3`'s warm-up power (`warmup_power=2/3`, `warmup_gamma=1`).
pub const WARMUP_POWER: f64 = 2.0 / 3.0;

/// The decay applied at optimizer step `step` (1-based, counted after the step as timm's
/// `num_updates`): `decay` itself without warm-up; with it, 0 at the first step (the average
/// starts as a copy) then `1 − step'^(−2/3)` with `step' = step − 1 + 1`, capped at `decay`.
pub fn ema_decay(decay: f64, step: u64, warmup: bool) -> f64 {
    let t = step.saturating_sub(1);
    if t == 0 {
        return 0.0;
    }
    if !warmup {
        return decay;
    }
    let d = 1.0 - (1.0 + t as f64).powf(-WARMUP_POWER);
    d.min(decay).max(0.0)
}

/// The averaged model and its settings.
#[derive(Debug)]
pub struct ModelEma {
    /// The averaged weights (inference device, no autodiff).
    pub model: Classifier,
    /// The target decay (`--ema`).
    pub decay: f64,
    /// Warm the decay up (`--ema-warmup`).
    pub warmup: bool,
}

/// Every float tensor (parameters and running statistics) of a model by id.
struct Collect(HashMap<ParamId, TensorHandle>);

/// A tensor of any rank, kept as its flat float form plus shape (the visitor sees every rank).
#[derive(Clone, Debug)]
struct TensorHandle(Tensor<1>, Vec<usize>);

impl ModuleVisitor for Collect {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let t = param.val();
        let shape = t.dims().to_vec();
        let n: usize = shape.iter().product();
        self.0.insert(param.id, TensorHandle(t.reshape([n]), shape));
    }
}

/// `ema ← decay · ema + (1 − decay) · source` for each tensor whose id `source` holds.
struct Lerp<'a> {
    source: &'a HashMap<ParamId, TensorHandle>,
    decay: f64,
    missing: usize,
}

impl ModuleMapper for Lerp<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some(TensorHandle(src, shape)) = self.source.get(&param.id) else {
            self.missing += 1;
            return param;
        };
        let dims: [usize; D] = match shape.as_slice().try_into() {
            Ok(d) => d,
            Err(_) => {
                self.missing += 1;
                return param;
            }
        };
        let src: Tensor<D> = src.clone().reshape(dims);
        let decay = self.decay;
        param.map(|ema| {
            let src = src.cast(ema.dtype());
            if decay == 0.0 {
                src
            } else {
                ema.mul_scalar(decay).add(src.mul_scalar(1.0 - decay))
            }
        })
    }
}

impl ModelEma {
    /// Starts the average at `model`'s weights.
    pub fn new(model: &Classifier, decay: f64, warmup: bool) -> Self {
        Self {
            model: model.valid(),
            decay,
            warmup,
        }
    }

    /// Resumes an average saved in a checkpoint.
    pub fn resume(model: Classifier, decay: f64, warmup: bool) -> Self {
        Self {
            model,
            decay,
            warmup,
        }
    }

    /// Folds `model` (after optimizer step `step`, 1-based) into the average; returns the
    /// decay used.
    ///
    /// # Panics
    /// If `model` is not the architecture the average was started from (a bug).
    pub fn update(&mut self, model: &Classifier, step: u64) -> f64 {
        let decay = ema_decay(self.decay, step, self.warmup);
        // `valid()`: the weights without autodiff, BatchNorm statistics synced, same ids.
        let mut c = Collect(HashMap::new());
        model.valid().visit(&mut c);
        let mut lerp = Lerp {
            source: &c.0,
            decay,
            missing: 0,
        };
        // (A clone shares the tensors: `map` consumes it and the average is replaced.)
        self.model = self.model.clone().map(&mut lerp);
        assert_eq!(
            lerp.missing, 0,
            "EMA: {} tensors of the average have no counterpart in the model",
            lerp.missing
        );
        decay
    }
}
