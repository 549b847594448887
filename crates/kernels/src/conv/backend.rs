//! The CPU convolution as a Burn backend extension on Flex, with a custom backward for
//! autodiff that calls petal's gradient kernels instead of Burn's defaults (a transposed
//! convolution for the input gradient, a batch/channel-swapped convolution for the weight
//! gradient).

use super::cpu::{self, Geometry};
use crate::flex::{slice, tensor};
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::backend::flex::FlexTensor;
use burn::backend::ops::ModuleOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Flex, TensorMetadata, backend_extension};
use burn::tensor::DType;
use burn::tensor::ops::ConvOptions;

/// A convolution without bias whose backward pass is petal's. Implemented for Flex only:
/// call it through [`super::conv2d`], which routes other devices to Burn's `conv2d`.
#[backend_extension(Autodiff, Flex)]
pub trait ConvBackend: Backend {
    /// `x [N, C, H, W]`, `weight [O, C/g, kh, kw]` → `[N, O, Ho, Wo]`.
    fn conv2d_cpu(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self>;

    /// The input gradient of [`conv2d_cpu`](Self::conv2d_cpu) given the output gradient.
    fn conv2d_cpu_x_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self>;

    /// The weight gradient of [`conv2d_cpu`](Self::conv2d_cpu) given the output gradient.
    fn conv2d_cpu_weight_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self>;
}

/// The geometry of a convolution petal's kernels handle: f32, symmetric padding, a kernel
/// that fits. `None` sends the call to Burn's own op.
pub(super) fn geometry(x: &[usize], w: &[usize], options: &ConvOptions<2>) -> Option<Geometry> {
    let (&[n, c, h, wd], &[o, cg, kh, kw]) = (x, w) else {
        return None;
    };
    let g = Geometry {
        n,
        c,
        h,
        w: wd,
        o,
        kernel: [kh, kw],
        stride: options.stride,
        padding: options.padding_begin(),
        dilation: options.dilation,
        groups: options.groups,
    };
    let sane = !options.is_asymmetric()
        && g.groups > 0
        && c == cg * g.groups
        && o % g.groups == 0
        && g.stride.iter().chain(&g.dilation).all(|&s| s > 0)
        && kh > 0
        && kw > 0
        && g.output_size().is_some();
    sane.then_some(g)
}

fn f32_geometry(x: &FlexTensor, w: &FlexTensor, options: &ConvOptions<2>) -> Option<Geometry> {
    (x.dtype() == DType::F32 && w.dtype() == DType::F32)
        .then(|| geometry(&x.shape().dims::<4>(), &w.shape().dims::<4>(), options))
        .flatten()
}

impl ConvBackend for Flex {
    fn conv2d_cpu(x: FlexTensor, weight: FlexTensor, options: ConvOptions<2>) -> FlexTensor {
        let Some(g) = f32_geometry(&x, &weight, &options) else {
            return <Flex as ModuleOps<Flex>>::conv2d(x, weight, None, options);
        };
        let (x, weight) = (x.to_contiguous(), weight.to_contiguous());
        let [ho, wo] = g.output_size().expect("checked by geometry");
        crate::profile::timed(
            || format!("{} forward", g.kind()),
            || {
                tensor(
                    cpu::forward(&g, slice(&x), slice(&weight), None),
                    [g.n, g.o, ho, wo],
                )
            },
        )
    }

    fn conv2d_cpu_x_backward(
        x: FlexTensor,
        weight: FlexTensor,
        grad: FlexTensor,
        options: ConvOptions<2>,
    ) -> FlexTensor {
        let Some(g) = f32_geometry(&x, &weight, &options).filter(|_| grad.dtype() == DType::F32)
        else {
            return <Flex as ModuleOps<Flex>>::conv2d_x_backward(x, weight, grad, options);
        };
        let (weight, grad) = (weight.to_contiguous(), grad.to_contiguous());
        crate::profile::timed(
            || format!("{} input grad", g.kind()),
            || {
                tensor(
                    cpu::input_grad(&g, slice(&weight), slice(&grad)),
                    [g.n, g.c, g.h, g.w],
                )
            },
        )
    }

    fn conv2d_cpu_weight_backward(
        x: FlexTensor,
        weight: FlexTensor,
        grad: FlexTensor,
        options: ConvOptions<2>,
    ) -> FlexTensor {
        let Some(g) = f32_geometry(&x, &weight, &options).filter(|_| grad.dtype() == DType::F32)
        else {
            return <Flex as ModuleOps<Flex>>::conv2d_weight_backward(x, weight, grad, options);
        };
        let (x, grad) = (x.to_contiguous(), grad.to_contiguous());
        let [kh, kw] = g.kernel;
        crate::profile::timed(
            || format!("{} weight grad", g.kind()),
            || {
                tensor(
                    cpu::weight_grad(&g, slice(&x), slice(&grad)),
                    [g.o, g.c / g.groups, kh, kw],
                )
            },
        )
    }
}

impl<B: ConvBackend, C: CheckpointStrategy> ConvBackend for Autodiff<B, C> {
    fn conv2d_cpu(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct ConvBackward;

        impl<B: ConvBackend> Backward<B, 2> for ConvBackward {
            type State = (NodeId, NodeId, ConvOptions<2>);

            fn backward(
                self,
                ops: Ops<Self::State, 2>,
                grads: &mut Gradients,
                checkpointer: &mut Checkpointer,
            ) {
                let [node_x, node_weight] = ops.parents;
                let grad = grads.consume::<B>(&ops.node);
                let (x_state, weight_state, options) = ops.state;
                let x: FloatTensor<B> = checkpointer.retrieve_node_output(x_state);
                let weight: FloatTensor<B> = checkpointer.retrieve_node_output(weight_state);
                if let Some(node) = node_x {
                    let dx = B::conv2d_cpu_x_backward(
                        x.clone(),
                        weight.clone(),
                        grad.clone(),
                        options.clone(),
                    );
                    grads.register::<B>(node.id, dx);
                }
                if let Some(node) = node_weight {
                    let dw = B::conv2d_cpu_weight_backward(x, weight, grad, options);
                    grads.register::<B>(node.id, dw);
                }
            }
        }

        match ConvBackward
            .prepare::<C>([x.node(), weight.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let weight_state = prep.checkpoint(&weight);
                prep.finish(
                    (x_state, weight_state, options.clone()),
                    B::conv2d_cpu(x.into_primitive(), weight.into_primitive(), options),
                )
            }
            OpsKind::UnTracked(prep) => prep.finish(B::conv2d_cpu(
                x.into_primitive(),
                weight.into_primitive(),
                options,
            )),
        }
    }

    fn conv2d_cpu_x_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        // Gradients of gradients are not supported: the result is a constant.
        <FloatTensor<Self>>::new(B::conv2d_cpu_x_backward(
            x.into_primitive(),
            weight.into_primitive(),
            grad.into_primitive(),
            options,
        ))
    }

    fn conv2d_cpu_weight_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        <FloatTensor<Self>>::new(B::conv2d_cpu_weight_backward(
            x.into_primitive(),
            weight.into_primitive(),
            grad.into_primitive(),
            options,
        ))
    }
}
