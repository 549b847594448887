//! AdamW (decoupled weight decay; [`FusedAdamW`]: one pass per parameter on Flex, Burn's
//! `AdamW` elsewhere) with no decay on BatchNorm and bias parameters, which parameters train
//! in each phase, and global gradient-norm clipping.

use crate::adamw::FusedAdamW;
use crate::config::FineTuneConfig;
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamGroup, ParamId};
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{DType, Tensor};
use petal_core::{Classifier, LayerGroup};

fn adamw(config: &FineTuneConfig, wd: f64, stock: bool) -> FusedAdamW {
    let optim = FusedAdamW::new(
        config.beta1 as f32,
        config.beta2 as f32,
        config.eps as f32,
        wd as f32,
    );
    if stock { optim.stock_only() } else { optim }
}

/// A fresh AdamW over `model`: weight decay `wd` on weights, none on 1-D parameters
/// (BatchNorm γ/β and every bias) unless `wd_bn_bias`.
pub fn build_optimizer(config: &FineTuneConfig, model: &Classifier) -> ModuleOptimizer {
    build_optimizer_with(config, model, false)
}

/// [`build_optimizer`], with Burn's unfused AdamW on every device when `stock` (for
/// before/after comparisons; the update is the same, the state format too).
pub fn build_optimizer_with(
    config: &FineTuneConfig,
    model: &Classifier,
    stock: bool,
) -> ModuleOptimizer {
    let optim = ModuleOptimizer::from(adamw(config, config.wd, stock));
    if config.wd_bn_bias || config.wd == 0.0 {
        return optim;
    }
    optim.with_group(no_decay_params(model), adamw(config, 0.0, stock), None)
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

/// Scales the gradients of `model` in `grads` so that their global L2 norm is at most
/// `max_norm`, as PyTorch's `clip_grad_norm_`: every gradient is multiplied by
/// `min(1, max_norm / (norm + 1e-6))`. Everything stays on the device (no host read, so the
/// device never idles mid-step); the norm (accumulated in f32) is returned as a one-element
/// tensor, `None` when `grads` holds no gradient of `model`.
pub fn clip_grad_norm<M: Module>(
    model: &M,
    grads: &mut GradientsParams,
    max_norm: f64,
) -> Option<Tensor<1>> {
    struct Norm<'a> {
        grads: &'a GradientsParams,
        sq: Option<Tensor<1>>,
    }
    impl ModuleVisitor for Norm<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.get::<D>(param.id) {
                let s = g.cast(DType::F32).powi_scalar(2).sum();
                self.sq = Some(match self.sq.take() {
                    Some(acc) => acc + s,
                    None => s,
                });
            }
        }
    }
    let mut n = Norm { grads, sq: None };
    model.visit(&mut n);
    let norm = n.sq?.sqrt();
    let coef = norm
        .clone()
        .add_scalar(1e-6)
        .recip()
        .mul_scalar(max_norm)
        .clamp_max(1.0);
    struct Scale<'a> {
        grads: &'a mut GradientsParams,
        coef: Tensor<1>,
    }
    impl ModuleVisitor for Scale<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.remove::<D>(param.id) {
                let coef = self.coef.clone().cast(g.dtype()).reshape([1; D]);
                self.grads.register(param.id, g * coef);
            }
        }
    }
    model.visit(&mut Scale { grads, coef });
    Some(norm)
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
