//! AdamW (Burn's, decoupled weight decay) with no decay on BatchNorm and bias parameters,
//! which parameters train in each phase, and global gradient-norm clipping.

use crate::config::FineTuneConfig;
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamGroup, ParamId};
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{DType, Tensor};
use petal_core::{Classifier, LayerGroup};

fn adamw(config: &FineTuneConfig, wd: f64) -> AdamWConfig {
    AdamWConfig::new()
        .with_beta_1(config.beta1 as f32)
        .with_beta_2(config.beta2 as f32)
        .with_epsilon(config.eps as f32)
        .with_weight_decay(wd as f32)
}

/// A fresh AdamW over `model`: weight decay `wd` on weights, none on 1-D parameters
/// (BatchNorm γ/β and every bias) unless `wd_bn_bias`.
pub fn build_optimizer(config: &FineTuneConfig, model: &Classifier) -> ModuleOptimizer {
    let optim = adamw(config, config.wd).init();
    if config.wd_bn_bias || config.wd == 0.0 {
        return optim;
    }
    optim.with_group(no_decay_params(model), adamw(config, 0.0).build(), None)
}

/// The 1-D float parameters of `model` (BatchNorm γ, β, running statistics, biases).
pub fn no_decay_params<M: Module>(model: &M) -> ParamGroup {
    #[derive(Default)]
    struct Collect(Vec<ParamId>);
    impl ModuleVisitor for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if D == 1 {
                self.0.push(param.id);
            }
        }
    }
    let mut c = Collect::default();
    model.visit(&mut c);
    ParamGroup::from_ids(c.0)
}

/// Everything inside BatchNorm layers of `model` (parameters, statistics, training flag).
pub fn batch_norm_params<M: Module>(model: &M) -> ParamGroup {
    #[derive(Default)]
    struct Collect {
        stack: Vec<bool>,
        ids: Vec<ParamId>,
    }
    impl Collect {
        fn inside(&self) -> bool {
            self.stack.iter().any(|b| *b)
        }
    }
    impl ModuleVisitor for Collect {
        fn enter_module(&mut self, _name: &str, container_type: &str) {
            self.stack.push(container_type == "Struct:BatchNorm");
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.stack.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if self.inside() {
                self.ids.push(param.id);
            }
        }
        fn visit_flag(&mut self, flag: &Param<burn::module::Flag>) {
            if self.inside() {
                self.ids.push(flag.id);
            }
        }
    }
    let mut c = Collect::default();
    model.visit(&mut c);
    ParamGroup::from_ids(c.ids)
}

/// `model` with only the top `trainable` layer groups training (the head is the last group;
/// `trainable >= groups.len()` unfreezes everything). With `train_bn`, BatchNorm layers of
/// frozen groups keep training (fastai's default).
pub fn set_trainable(
    model: Classifier,
    groups: &[LayerGroup],
    trainable: usize,
    train_bn: bool,
) -> Classifier {
    let mut model = model.unfreeze();
    let bn = train_bn.then(|| batch_norm_params(&model));
    let frozen = groups.len().saturating_sub(trainable);
    for g in &groups[..frozen] {
        let params = match &bn {
            Some(bn) => g.params.clone().exclude(bn.clone()),
            None => g.params.clone(),
        };
        model = model.freeze_group(params);
    }
    model
}

/// Scales every gradient of `model` so their global L2 norm is at most `max_norm`
/// (PyTorch's `clip_grad_norm_`). Returns the norm before clipping.
pub fn clip_grad_norm<M: Module>(model: &M, grads: &mut GradientsParams, max_norm: f64) -> f64 {
    struct Norm<'a> {
        grads: &'a GradientsParams,
        sq: Option<Tensor<1>>,
    }
    impl ModuleVisitor for Norm<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.get::<D>(param.id) {
                let s = g.powi_scalar(2).sum();
                self.sq = Some(match self.sq.take() {
                    Some(acc) => acc + s,
                    None => s,
                });
            }
        }
    }
    let mut n = Norm { grads, sq: None };
    model.visit(&mut n);
    let Some(sq) = n.sq else { return 0.0 };
    let norm = (sq.into_scalar::<f32>() as f64).sqrt();
    if norm <= max_norm || !norm.is_finite() {
        return norm;
    }
    let scale = (max_norm / (norm + 1e-6)) as f32;
    struct Scale<'a> {
        grads: &'a mut GradientsParams,
        scale: f32,
    }
    impl ModuleVisitor for Scale<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.remove::<D>(param.id) {
                self.grads.register(param.id, g.mul_scalar(self.scale));
            }
        }
    }
    model.visit(&mut Scale { grads, scale });
    norm
}

/// `model` with every float tensor (parameters, BatchNorm statistics) cast to `dtype`.
/// Parameters that required gradients stay trainable leaves (the cast goes through the
/// inner backend, so it is not a node of any graph); a model off autodiff stays off it.
pub fn cast_model(model: Classifier, dtype: DType) -> Classifier {
    struct Cast(DType);
    impl ModuleMapper for Cast {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let dtype = self.0;
            param.map(|t| {
                if t.dtype() == dtype {
                    return t;
                }
                let (grad, ad) = (t.is_require_grad(), t.is_autodiff());
                let c = t.inner().cast(dtype);
                match (ad, grad) {
                    (true, true) => c.autodiff().require_grad(),
                    (true, false) => c.autodiff(),
                    _ => c,
                }
            })
        }
    }
    model.map(&mut Cast(dtype))
}

/// The float dtype of `model`'s first parameter (all share one after [`cast_model`]).
pub fn model_dtype<M: Module>(model: &M) -> DType {
    struct First(Option<DType>);
    impl ModuleVisitor for First {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if self.0.is_none() {
                self.0 = Some(param.val().dtype());
            }
        }
    }
    let mut f = First(None);
    model.visit(&mut f);
    f.0.unwrap_or(DType::F32)
}

/// Initialises every lazily-initialised parameter of `model` now, in module order, so the
/// random initialisation depends only on the device seed set just before (and not on when
/// each parameter is first used).
pub fn initialize_now<M: Module>(model: &M) {
    struct Touch;
    impl ModuleVisitor for Touch {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            drop(param.val());
        }
    }
    model.visit(&mut Touch);
}
