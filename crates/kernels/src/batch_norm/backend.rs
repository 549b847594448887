//! BatchNorm (+ ReLU) as a Burn backend extension on Flex, with its own backward for
//! autodiff.

use super::cpu::{self, Dims};
use crate::flex::{slice, tensor};
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Flex, TensorMetadata, backend_extension};

/// BatchNorm with given statistics, optionally followed by ReLU. Implemented for Flex
/// (and autodiff over it) only: call it through [`super::batch_norm`], which routes other
/// devices to Burn's ops.
#[backend_extension(Autodiff, Flex)]
pub trait BatchNormBackend: Backend {
    /// Per-channel mean and biased variance of `x [N, C, H, W]` as one `[2C]` tensor
    /// (means, then variances). Not differentiated.
    fn bn_stats_cpu(x: FloatTensor<Self>) -> FloatTensor<Self>;

    /// `(x − mean) / sqrt(var + ε) · γ + β` (then ReLU when `relu`), `stats` as
    /// [`bn_stats_cpu`](Self::bn_stats_cpu) gives them. Under autodiff, `batch_stats` says
    /// the statistics are `x`'s own, so the input gradient flows through them too.
    fn bn_cpu(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        stats: FloatTensor<Self>,
        options: BnOptions,
    ) -> FloatTensor<Self>;
}

/// The scalar settings of [`BatchNormBackend::bn_cpu`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BnOptions {
    /// ε added to the variance.
    pub epsilon: f64,
    /// ReLU after the affine transform.
    pub relu: bool,
    /// The statistics are the batch's own (training mode).
    pub batch_stats: bool,
}

fn dims(x: &FlexTensor) -> Dims {
    let [n, c, h, w] = x.shape().dims::<4>();
    Dims { n, c, p: h * w }
}

impl BatchNormBackend for Flex {
    fn bn_stats_cpu(x: FlexTensor) -> FlexTensor {
        let (d, x) = (dims(&x), x.to_contiguous());
        crate::profile::timed(
            || "batchnorm statistics".into(),
            || tensor(cpu::stats(d, slice(&x)), [2 * d.c]),
        )
    }

    fn bn_cpu(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        stats: FlexTensor,
        options: BnOptions,
    ) -> FlexTensor {
        let [x, gamma, beta, stats] = [x, gamma, beta, stats].map(|t| t.to_contiguous());
        let shape = x.shape();
        let what = || {
            format!(
                "batchnorm{} forward",
                if options.relu { "+relu" } else { "" }
            )
        };
        let y = crate::profile::timed(what, || {
            cpu::forward(
                dims(&x),
                slice(&x),
                slice(&stats),
                slice(&gamma),
                slice(&beta),
                options.epsilon,
                options.relu,
            )
        });
        tensor(y, shape)
    }
}

impl<C: CheckpointStrategy> BatchNormBackend for Autodiff<Flex, C> {
    fn bn_stats_cpu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        <FloatTensor<Self>>::new(Flex::bn_stats_cpu(x.into_primitive()))
    }

    fn bn_cpu(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        stats: FloatTensor<Self>,
        options: BnOptions,
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct BnBackward;

        impl Backward<Flex, 3> for BnBackward {
            type State = (NodeId, NodeId, NodeId, FlexTensor, BnOptions);

            fn backward(
                self,
                ops: Ops<Self::State, 3>,
                grads: &mut Gradients,
                checkpointer: &mut Checkpointer,
            ) {
                let [node_x, node_gamma, node_beta] = ops.parents;
                let grad: FlexTensor = grads.consume::<Flex>(&ops.node);
                let (x_state, gamma_state, beta_state, stats, options) = ops.state;
                let x: FlexTensor = checkpointer.retrieve_node_output(x_state);
                let gamma: FlexTensor = checkpointer.retrieve_node_output(gamma_state);
                let beta: FlexTensor = checkpointer.retrieve_node_output(beta_state);
                let [x, grad, stats, gamma, beta] =
                    [x, grad, stats, gamma, beta].map(|t| t.to_contiguous());
                let shape = x.shape();
                let c = shape[1];
                let what = || {
                    format!(
                        "batchnorm{} backward",
                        if options.relu { "+relu" } else { "" }
                    )
                };
                let (dx, dgamma, dbeta) = crate::profile::timed(what, || {
                    cpu::backward(
                        dims(&x),
                        slice(&x),
                        slice(&grad),
                        slice(&stats),
                        slice(&gamma),
                        slice(&beta),
                        options.epsilon,
                        options.relu,
                        options.batch_stats,
                    )
                });
                if let Some(node) = node_x {
                    grads.register::<Flex>(node.id, tensor(dx, shape));
                }
                if let Some(node) = node_gamma {
                    grads.register::<Flex>(node.id, tensor(dgamma, [c]));
                }
                if let Some(node) = node_beta {
                    grads.register::<Flex>(node.id, tensor(dbeta, [c]));
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
                let y = Flex::bn_cpu(
                    x.into_primitive(),
                    gamma.into_primitive(),
                    beta.into_primitive(),
                    stats.clone(),
                    options,
                );
                prep.finish((x_state, gamma_state, beta_state, stats, options), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(Flex::bn_cpu(
                x.into_primitive(),
                gamma.into_primitive(),
                beta.into_primitive(),
                stats,
                options,
            )),
        }
    }
}
