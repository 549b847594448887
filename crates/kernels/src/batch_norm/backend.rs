//! BatchNorm (+ ReLU) as a Burn backend extension on Flex and CubeCL (wgpu), with its own
//! backward for autodiff.

use super::Act;
use super::cpu::{self, Dims};
use super::gpu::{self, Pass, Settings};
use crate::flex::{slice, tensor};
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::wgpu::{CubeBackend, CubeTensor};
use burn::backend::{Backend, Flex, TensorMetadata, backend_extension};
use burn::tensor::{Shape, Slice};

/// BatchNorm with given statistics, optionally followed by ReLU: petal's CPU kernels on
/// Flex, its WGSL kernels (f32) on CubeCL's wgpu runtime (also under Burn's fusion), and a
/// custom backward for autodiff over either. Call it through [`super::batch_norm`], which
/// routes other devices and dtypes to Burn's ops.
#[backend_extension(Autodiff, Cube, Fusion, Flex)]
pub trait BatchNormBackend: Backend {
    /// Per-channel mean and biased variance of `x [N, C, H, W]` (means, then variances:
    /// the first `2C` values), and `running_mean`, `running_var` (`[C]`) moved by
    /// `momentum` towards them, `r·(1 − m) + batch·m`, at the offsets of the
    /// [`StatsLayout`](super::StatsLayout) of `C`, in one tensor of its length. Not
    /// differentiated.
    #[fusion(dtype = x, shape = Shape::new([super::StatsLayout::of(x[1]).len]))]
    fn bn_stats(
        x: FloatTensor<Self>,
        running_mean: FloatTensor<Self>,
        running_var: FloatTensor<Self>,
        momentum: f64,
    ) -> FloatTensor<Self>;

    /// `(x − mean) / sqrt(var + ε) · γ + β` (then the activation [`Act::code`] `act`), `stats` as
    /// [`bn_stats`](Self::bn_stats) gives them. Under autodiff, `batch_stats` says the
    /// statistics are `x`'s own, so the input gradient flows through them too.
    #[fusion(dtype = x, shape = x)]
    fn bn_forward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        stats: FloatTensor<Self>,
        epsilon: f64,
        act: u8,
        batch_stats: bool,
    ) -> FloatTensor<Self>;

    /// The backward pass's channel sums given the output gradient `grad`: `[2C]` = `Σg`
    /// per channel (β's gradient), then `Σg·x̂` (γ's), `g` masked by the ReLU.
    #[fusion(dtype = x, shape = Shape::new([2 * x[1]]))]
    fn bn_backward_sums(
        x: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        stats: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        act: u8,
    ) -> FloatTensor<Self>;

    /// The input gradient given `grad` and the [`bn_backward_sums`](Self::bn_backward_sums).
    #[fusion(dtype = x, shape = x)]
    #[allow(clippy::too_many_arguments)]
    fn bn_backward_input(
        x: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        stats: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        sums: FloatTensor<Self>,
        epsilon: f64,
        act: u8,
        batch_stats: bool,
    ) -> FloatTensor<Self>;
}

fn dims(x: &FlexTensor) -> Dims {
    let [n, c, h, w] = x.shape().dims::<4>();
    Dims { n, c, p: h * w }
}

fn label(act: u8, pass: &str) -> String {
    format!("batchnorm{} {pass}", Act::from_code(act).suffix())
}

impl BatchNormBackend for Flex {
    fn bn_stats(
        x: FlexTensor,
        running_mean: FlexTensor,
        running_var: FlexTensor,
        momentum: f64,
    ) -> FlexTensor {
        let (d, x) = (dims(&x), x.to_contiguous());
        let (rm, rv) = (running_mean.to_contiguous(), running_var.to_contiguous());
        let layout = super::StatsLayout::of(d.c);
        crate::profile::timed(
            || "batchnorm statistics".into(),
            || {
                let batch = cpu::stats(d, slice(&x));
                let out = layout.with_running(&batch, slice(&rm), slice(&rv), momentum);
                tensor(out, [layout.len])
            },
        )
    }

    fn bn_forward(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        stats: FlexTensor,
        epsilon: f64,
        act: u8,
        _batch_stats: bool,
    ) -> FlexTensor {
        let [x, gamma, beta, stats] = [x, gamma, beta, stats].map(|t| t.to_contiguous());
        let shape = x.shape();
        let y = crate::profile::timed(
            || label(act, "forward"),
            || {
                cpu::forward(
                    dims(&x),
                    slice(&x),
                    slice(&stats),
                    slice(&gamma),
                    slice(&beta),
                    epsilon,
                    Act::from_code(act),
                )
            },
        );
        tensor(y, shape)
    }

    fn bn_backward_sums(
        x: FlexTensor,
        grad: FlexTensor,
        stats: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        epsilon: f64,
        act: u8,
    ) -> FlexTensor {
        let [x, grad, stats, gamma, beta] =
            [x, grad, stats, gamma, beta].map(|t| t.to_contiguous());
        let d = dims(&x);
        let sums = crate::profile::timed(
            || label(act, "backward"),
            || {
                cpu::backward_sums(
                    d,
                    slice(&x),
                    slice(&grad),
                    slice(&stats),
                    slice(&gamma),
                    slice(&beta),
                    epsilon,
                    Act::from_code(act),
                )
            },
        );
        tensor(sums, [2 * d.c])
    }

    fn bn_backward_input(
        x: FlexTensor,
        grad: FlexTensor,
        stats: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        sums: FlexTensor,
        epsilon: f64,
        act: u8,
        batch_stats: bool,
    ) -> FlexTensor {
        let [x, grad, stats, gamma, beta, sums] =
            [x, grad, stats, gamma, beta, sums].map(|t| t.to_contiguous());
        let shape = x.shape();
        let dx = crate::profile::timed(
            || label(act, "backward"),
            || {
                cpu::backward_input(
                    dims(&x),
                    slice(&x),
                    slice(&grad),
                    slice(&stats),
                    slice(&gamma),
                    slice(&beta),
                    slice(&sums),
                    epsilon,
                    Act::from_code(act),
                    batch_stats,
                )
            },
        );
        tensor(dx, shape)
    }
}

impl BatchNormBackend for CubeBackend {
    fn bn_stats(
        x: CubeTensor,
        running_mean: CubeTensor,
        running_var: CubeTensor,
        momentum: f64,
    ) -> CubeTensor {
        let s = Settings {
            epsilon: 0.0,
            act: 0,
            batch_stats: true,
            momentum,
        };
        gpu::run(Pass::Stats, vec![x, running_mean, running_var], s)
    }

    fn bn_forward(
        x: CubeTensor,
        gamma: CubeTensor,
        beta: CubeTensor,
        stats: CubeTensor,
        epsilon: f64,
        act: u8,
        batch_stats: bool,
    ) -> CubeTensor {
        let s = Settings {
            epsilon,
            act,
            batch_stats,
            momentum: 0.0,
        };
        gpu::run(Pass::Forward, vec![x, stats, gamma, beta], s)
    }

    fn bn_backward_sums(
        x: CubeTensor,
        grad: CubeTensor,
        stats: CubeTensor,
        gamma: CubeTensor,
        beta: CubeTensor,
        epsilon: f64,
        act: u8,
    ) -> CubeTensor {
        let s = Settings {
            epsilon,
            act,
            batch_stats: true,
            momentum: 0.0,
        };
        gpu::run(Pass::BackwardSums, vec![x, grad, stats, gamma, beta], s)
    }

    fn bn_backward_input(
        x: CubeTensor,
        grad: CubeTensor,
        stats: CubeTensor,
        gamma: CubeTensor,
        beta: CubeTensor,
        sums: CubeTensor,
        epsilon: f64,
        act: u8,
        batch_stats: bool,
    ) -> CubeTensor {
        let s = Settings {
            epsilon,
            act,
            batch_stats,
            momentum: 0.0,
        };
        gpu::run(
            Pass::BackwardInput,
            vec![x, grad, stats, gamma, beta, sums],
            s,
        )
    }
}

/// What the backward pass keeps: the checkpointed `x`, `γ`, `β`, the statistics and the
/// settings.
type BnState<B> = (NodeId, NodeId, NodeId, FloatTensor<B>, f64, u8, bool);

impl<B: BatchNormBackend, C: CheckpointStrategy> BatchNormBackend for Autodiff<B, C> {
    fn bn_stats(
        x: FloatTensor<Self>,
        running_mean: FloatTensor<Self>,
        running_var: FloatTensor<Self>,
        momentum: f64,
    ) -> FloatTensor<Self> {
        <FloatTensor<Self>>::new(B::bn_stats(
            x.into_primitive(),
            running_mean.into_primitive(),
            running_var.into_primitive(),
            momentum,
        ))
    }

    fn bn_forward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        stats: FloatTensor<Self>,
        epsilon: f64,
        act: u8,
        batch_stats: bool,
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct BnBackward;

        impl<B: BatchNormBackend> Backward<B, 3> for BnBackward {
            type State = BnState<B>;

            fn backward(
                self,
                ops: Ops<Self::State, 3>,
                grads: &mut Gradients,
                checkpointer: &mut Checkpointer,
            ) {
                let [node_x, node_gamma, node_beta] = ops.parents;
                let grad: FloatTensor<B> = grads.consume::<B>(&ops.node);
                let (x_state, gamma_state, beta_state, stats, epsilon, act, batch_stats) =
                    ops.state;
                let x: FloatTensor<B> = checkpointer.retrieve_node_output(x_state);
                let gamma: FloatTensor<B> = checkpointer.retrieve_node_output(gamma_state);
                let beta: FloatTensor<B> = checkpointer.retrieve_node_output(beta_state);
                let c = x.shape()[1];
                let sums = B::bn_backward_sums(
                    x.clone(),
                    grad.clone(),
                    stats.clone(),
                    gamma.clone(),
                    beta.clone(),
                    epsilon,
                    act,
                );
                if let Some(node) = node_gamma {
                    grads.register::<B>(
                        node.id,
                        B::float_slice(sums.clone(), &[Slice::from(c..2 * c)]),
                    );
                }
                if let Some(node) = node_beta {
                    grads
                        .register::<B>(node.id, B::float_slice(sums.clone(), &[Slice::from(0..c)]));
                }
                if let Some(node) = node_x {
                    let dx = B::bn_backward_input(
                        x,
                        grad,
                        stats,
                        gamma,
                        beta,
                        sums,
                        epsilon,
                        act,
                        batch_stats,
                    );
                    grads.register::<B>(node.id, dx);
                }
            }
        }

        let stats = stats.into_primitive();
        match BnBackward
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let gamma_state = prep.checkpoint(&gamma);
                let beta_state = prep.checkpoint(&beta);
                let y = B::bn_forward(
                    x.into_primitive(),
                    gamma.into_primitive(),
                    beta.into_primitive(),
                    stats.clone(),
                    epsilon,
                    act,
                    batch_stats,
                );
                let state = (
                    x_state,
                    gamma_state,
                    beta_state,
                    stats,
                    epsilon,
                    act,
                    batch_stats,
                );
                prep.finish(state, y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::bn_forward(
                x.into_primitive(),
                gamma.into_primitive(),
                beta.into_primitive(),
                stats,
                epsilon,
                act,
                batch_stats,
            )),
        }
    }

    fn bn_backward_sums(
        x: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        stats: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        act: u8,
    ) -> FloatTensor<Self> {
        // Gradients of the gradient are not supported: the result is a constant.
        <FloatTensor<Self>>::new(B::bn_backward_sums(
            x.into_primitive(),
            grad.into_primitive(),
            stats.into_primitive(),
            gamma.into_primitive(),
            beta.into_primitive(),
            epsilon,
            act,
        ))
    }

    fn bn_backward_input(
        x: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        stats: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        sums: FloatTensor<Self>,
        epsilon: f64,
        act: u8,
        batch_stats: bool,
    ) -> FloatTensor<Self> {
        // Gradients of the gradient are not supported: the result is a constant.
        <FloatTensor<Self>>::new(B::bn_backward_input(
            x.into_primitive(),
            grad.into_primitive(),
            stats.into_primitive(),
            gamma.into_primitive(),
            beta.into_primitive(),
            sums.into_primitive(),
            epsilon,
            act,
            batch_stats,
        ))
    }
}
