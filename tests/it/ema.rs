//! `--ema`: the average after one update against the hand-computed `d·ema + (1 − d)·model`,
//! for every parameter and BatchNorm statistic, and the decay schedule against timm's
//! `ModelEmaV3.get_decay` values. (Exact resume with `--ema`: the CLI's resume test.)

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::prelude::*;
use petal::models::{ClassifierConfig, HeadConfig};
use petal::trainer::ema::{ModelEma, ema_decay};
use std::collections::BTreeMap;

/// Adds `k` to every float tensor (parameters and running statistics), keeping the ids.
struct AddScalar(f64);
impl ModuleMapper for AddScalar {
    fn map_float<const D: usize>(&mut self, p: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let k = self.0;
        p.map(|t| t.add_scalar(k))
    }
}

/// Every float tensor's values by id.
#[derive(Default)]
struct Values(BTreeMap<ParamId, Vec<f32>>);
impl ModuleVisitor for Values {
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        let v = p
            .val()
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap();
        self.0.insert(p.id, v);
    }
}

fn values(m: &impl Module) -> BTreeMap<ParamId, Vec<f32>> {
    let mut v = Values::default();
    m.visit(&mut v);
    v.0
}

#[test]
fn ema_decay_follows_timm_model_ema_v3() {
    // timm: step' = max(0, step − 1); 0 → 0.0; else min(decay, 1 − (1 + step')^(−2/3)).
    assert_eq!(ema_decay(0.999, 1, true), 0.0);
    assert_eq!(ema_decay(0.999, 1, false), 0.0);
    assert!((ema_decay(0.999, 2, true) - (1.0 - 2f64.powf(-2.0 / 3.0))).abs() < 1e-15);
    assert!((ema_decay(0.999, 2, true) - 0.370_039_475_8).abs() < 1e-9);
    assert!((ema_decay(0.999, 10, true) - 0.784_556_531_5).abs() < 1e-9);
    assert_eq!(ema_decay(0.5, 10, true), 0.5);
    assert_eq!(ema_decay(0.999, 2, false), 0.999);
    // 1 − (1 + t)^(−2/3) reaches 0.999 at t + 1 = 1000^(3/2) ≈ 31623.
    assert!(ema_decay(0.999, 31_000, true) < 0.999);
    assert_eq!(ema_decay(0.999, 32_000, true), 0.999);
}

#[test]
fn ema_update_is_the_hand_computed_lerp_of_weights_and_batchnorm_statistics() {
    let device = Device::flex().autodiff();
    let config =
        ClassifierConfig::new(crate::common::tiny_densenet(&[1, 1]), HeadConfig::seed(), 3);
    let model = config.init(&device);
    // A training-mode forward moves the BatchNorm statistics away from 0 / 1.
    let x = Tensor::<4>::random([2, 3, 32, 32], burn::tensor::Distribution::Default, &device);
    let _ = model.forward(x);
    let start = values(&model.valid());
    let mut ema = ModelEma::new(&model, 0.9, false);
    assert_eq!(values(&ema.model), start);

    // The model moves by +1 everywhere; one update at step 5 (decay 0.9 without warm-up).
    let moved = model.clone().map(&mut AddScalar(1.0));
    let d = ema.update(&moved, 5);
    assert_eq!(d, 0.9);
    let got = values(&ema.model);
    assert_eq!(got.len(), start.len());
    // (The visitor sees BatchNorm's running mean and var as well as the parameters.)
    for (id, a) in &start {
        let g = &got[id];
        for (g, a) in g.iter().zip(a) {
            let want = 0.9 * a + 0.1 * (a + 1.0);
            assert!(
                (g - want).abs() <= 1e-6 * (1.0 + want.abs()),
                "{g} vs {want}"
            );
        }
    }
    // The first step copies the model (decay 0 at step 1).
    let d = ema.update(&moved, 1);
    assert_eq!(d, 0.0);
    assert_eq!(values(&ema.model), values(&moved.valid()));
}
