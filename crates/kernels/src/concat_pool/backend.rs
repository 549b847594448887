//! The concat-pool backend extension: fused WGSL kernels on CubeCL's wgpu runtime (also
//! under Burn's fusion), and a custom backward for autodiff.

use super::{backward, forward};
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::backend::tensor::FloatTensor;
use burn::backend::wgpu::CubeBackend;
use burn::backend::{Backend, backend_extension};
use burn::tensor::Shape;

/// Fused concat-pool. Only the CubeCL (wgpu) runtime has kernels: call it through
/// [`super::concat_pool`], which routes other devices to the reference.
#[backend_extension(Autodiff, Cube, Fusion)]
pub trait ConcatPoolBackend: Backend {
    /// `[N, C, H, W]` → `[N, 2C]` = `[avg | max]` over H×W.
    #[fusion(dtype = x, shape = Shape::new([x[0], x[1] * 2]))]
    fn concat_pool_fused(x: FloatTensor<Self>) -> FloatTensor<Self>;

    /// Input gradient of [`concat_pool_fused`](Self::concat_pool_fused) given the output
    /// gradient `grad` (`[N, 2C]`): `[N, C, H, W]`.
    #[fusion(dtype = x, shape = x)]
    fn concat_pool_fused_backward(
        x: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
}

impl ConcatPoolBackend for CubeBackend {
    fn concat_pool_fused(x: FloatTensor<Self>) -> FloatTensor<Self> {
        forward::launch(x)
    }

    fn concat_pool_fused_backward(
        x: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        backward::launch(x, grad)
    }
}

impl<B: ConcatPoolBackend, C: CheckpointStrategy> ConcatPoolBackend for Autodiff<B, C> {
    fn concat_pool_fused(x: FloatTensor<Self>) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct ConcatPoolBackward;

        impl<B: ConcatPoolBackend> Backward<B, 1> for ConcatPoolBackward {
            /// The checkpointed input: backward recomputes the argmax from it.
            type State = NodeId;

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                checkpointer: &mut Checkpointer,
            ) {
                let x: FloatTensor<B> = checkpointer.retrieve_node_output(ops.state);
                unary::<B, _>(ops.parents, ops.node, grads, |grad| {
                    B::concat_pool_fused_backward(x, grad)
                });
            }
        }

        match ConcatPoolBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let state = prep.checkpoint(&x);
                prep.finish(state, B::concat_pool_fused(x.into_primitive()))
            }
            OpsKind::UnTracked(prep) => prep.finish(B::concat_pool_fused(x.into_primitive())),
        }
    }

    fn concat_pool_fused_backward(
        x: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        // Gradients of the gradient are not supported: the result is a constant.
        <FloatTensor<Self>>::new(B::concat_pool_fused_backward(
            x.into_primitive(),
            grad.into_primitive(),
        ))
    }
}
