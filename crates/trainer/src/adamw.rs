//! AdamW with a fused update on the CPU backend.
//!
//! Burn's [`AdamW`] updates a parameter with a chain of about fifteen tensor operations
//! (moments, bias correction, `sqrt`, division, decay, step). On wgpu Burn's fusion merges that
//! chain into a few kernels, but Flex runs every operation as its own pass over the tensor:
//! on densenet121 (8 M parameters) the optimizer step took 78 ms of a 523 ms training step
//! at 64² (BENCHMARKS.md). [`FusedAdamW`] does the same arithmetic in **one pass** on Flex
//! (`rayon` over chunks, in place: parameter, first and second moment are taken out of their
//! tensors without a copy when nothing else holds them) and delegates to Burn's `AdamW`
//! everywhere else (wgpu, f16), so both paths share one state type, [`AdamWState`], and a
//! checkpoint written by either loads in the other.
//!
//! The arithmetic is Burn's, operation for operation in f32 (decoupled weight decay as in
//! Loshchilov & Hutter, *Decoupled Weight Decay Regularization*, and PyTorch's `AdamW`):
//!
//! ```text
//! m ← β₁·m + (1−β₁)·g            (m ← (1−β₁)·g at the first step)
//! v ← β₂·v + (1−β₂)·g²           (v ← (1−β₂)·g² at the first step)
//! t ← t + 1
//! Δ ← (m / (1−β₁ᵗ)) / (√(v / (1−β₂ᵗ)) + ε)
//! θ ← θ·(1 − lr·λ) − lr·Δ        (θ unchanged by decay when lr·λ = 0)
//! ```

use burn::backend::DispatchDevice;
use burn::optim::{AdamW, AdamWConfig, AdamWState, AdaptiveMomentumState, LearningRate, Optimizer};
use burn::tensor::{DType, Device, Tensor, TensorData};
use rayon::prelude::*;

/// Elements per `rayon` task of the fused update.
const CHUNK: usize = 1 << 14;

/// AdamW with decoupled weight decay: one fused pass per parameter on Flex, Burn's
/// [`AdamW`] elsewhere (plain AdamW: no AMSGrad, no cautious weight decay).
#[derive(Clone)]
pub struct FusedAdamW {
    stock: AdamW,
    beta_1: f32,
    beta_2: f32,
    epsilon: f32,
    weight_decay: f32,
    force_stock: bool,
}

impl FusedAdamW {
    /// AdamW with moment decay rates `beta_1`, `beta_2`, `epsilon` added to `√v̂`, and
    /// decoupled weight decay `weight_decay` (multiplied by the learning rate).
    pub fn new(beta_1: f32, beta_2: f32, epsilon: f32, weight_decay: f32) -> Self {
        let stock = AdamWConfig::new()
            .with_beta_1(beta_1)
            .with_beta_2(beta_2)
            .with_epsilon(epsilon)
            .with_weight_decay(weight_decay)
            .build();
        Self {
            stock,
            beta_1,
            beta_2,
            epsilon,
            weight_decay,
            force_stock: false,
        }
    }

    /// Always take Burn's path (for comparisons: `petal bench train-step --compare-adamw`).
    pub fn stock_only(mut self) -> Self {
        self.force_stock = true;
        self
    }

    /// Whether a step on `tensor` runs the fused CPU update.
    pub fn fuses<const D: usize>(&self, tensor: &Tensor<D>) -> bool {
        !self.force_stock
            && tensor.dtype() == DType::F32
            && matches!(tensor.device().as_dispatch(), DispatchDevice::Flex(_))
    }
}

/// `tensor`'s f32 values, taken out without a copy when nothing else holds the buffer.
fn take_f32<const D: usize>(tensor: Tensor<D>) -> TensorData {
    let data = tensor.into_data();
    debug_assert_eq!(data.dtype(), DType::F32);
    data
}

fn put_f32<const D: usize>(data: TensorData, device: &Device) -> Tensor<D> {
    Tensor::from_data(data, (device, DType::F32))
}

/// One fused AdamW update over flat slices. At the first step `m` and `v` are zeros, which
/// gives Burn's first-step values exactly (`β·0 + x = x`).
fn update(
    p: &mut [f32],
    m: &mut [f32],
    v: &mut [f32],
    g: &[f32],
    (beta_1, beta_2, epsilon): (f32, f32, f32),
    (c1, c2): (f32, f32),
    (lr, keep, decay): (f32, f32, bool),
) {
    let f1 = 1.0 - beta_1;
    let f2 = 1.0 - beta_2;
    for i in 0..p.len() {
        let gi = g[i];
        let mi = m[i] * beta_1 + gi * f1;
        let vi = v[i] * beta_2 + (gi * gi) * f2;
        m[i] = mi;
        v[i] = vi;
        let delta = (mi / c1) / ((vi / c2).sqrt() + epsilon);
        let theta = if decay { p[i] * keep } else { p[i] };
        p[i] = theta - delta * lr;
    }
}

impl Optimizer for FusedAdamW {
    type State<const D: usize> = AdamWState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        let state_f32 = state.as_ref().is_none_or(|s| {
            s.momentum.max_moment_2.is_none()
                && s.momentum.moment_1.dtype() == DType::F32
                && s.momentum.moment_2.dtype() == DType::F32
        });
        if !self.fuses(&tensor) || grad.dtype() != DType::F32 || !state_f32 {
            return self.stock.step(lr, tensor, grad, state);
        }
        let device = tensor.device();
        let shape = tensor.shape();
        let mut p = take_f32(tensor);
        let g = take_f32(grad.to_device(&device));
        let (time, mut m, mut v) = match state {
            Some(s) => (
                s.momentum.time + 1,
                take_f32(s.momentum.moment_1),
                take_f32(s.momentum.moment_2),
            ),
            None => {
                let zeros = || TensorData::zeros::<f32, _>(shape.clone());
                (1, zeros(), zeros())
            }
        };
        let t = time as i32;
        let corrections = (1f32 - self.beta_1.powi(t), 1f32 - self.beta_2.powi(t));
        let decay_rate = lr * self.weight_decay as f64;
        let step = (lr as f32, (1.0 - decay_rate) as f32, decay_rate != 0.0);
        let betas = (self.beta_1, self.beta_2, self.epsilon);
        {
            let ps = p.as_mut_slice::<f32>().expect("f32 parameter");
            let ms = m.as_mut_slice::<f32>().expect("f32 first moment");
            let vs = v.as_mut_slice::<f32>().expect("f32 second moment");
            let gs = g.as_slice::<f32>().expect("f32 gradient");
            assert!(
                ms.len() == ps.len() && vs.len() == ps.len() && gs.len() == ps.len(),
                "FusedAdamW: parameter of {} values, gradient {}, moments {} / {}",
                ps.len(),
                gs.len(),
                ms.len(),
                vs.len()
            );
            if ps.len() <= CHUNK {
                update(ps, ms, vs, gs, betas, corrections, step);
            } else {
                ps.par_chunks_mut(CHUNK)
                    .zip(ms.par_chunks_mut(CHUNK))
                    .zip(vs.par_chunks_mut(CHUNK))
                    .zip(gs.par_chunks(CHUNK))
                    .for_each(|(((p, m), v), g)| update(p, m, v, g, betas, corrections, step));
            }
        }
        let momentum = AdaptiveMomentumState {
            time,
            moment_1: put_f32(m, &device),
            moment_2: put_f32(v, &device),
            max_moment_2: None,
        };
        (put_f32(p, &device), Some(AdamWState { momentum }))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        <AdamW as Optimizer>::to_device(state, device)
    }
}
