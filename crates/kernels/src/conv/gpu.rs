//! Direct convolutions on wgpu (`kernels/conv_direct_*.wgsl`): stride 1, a square odd
//! kernel with "same" padding, one group, no dilation, f32 — densenet121's 3×3 layers.
//!
//! Burn's GPU convolution permutes its input, weight and output between NCHW and
//! channels-last and its backward pass adds col2im, transposed matmuls and more layout
//! copies: about eleven dispatches per 3×3 layer and training step (BENCHMARKS.md). Here the
//! forward pass, the input gradient and the weight gradient are one dispatch each, one
//! invocation per output value looping over its terms. That is launch-bound work done
//! well, not a tiled matrix product: [`super::conv2d`] sends only convolutions of at most
//! [`MAX_MACS`] multiply-adds here, where the launches, not the arithmetic, are the cost.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::backend::tensor::FloatTensor;
use burn::backend::wgpu::{
    CubeBackend, CubeTensor, KernelSource, SourceKernel, SourceTemplate, into_contiguous,
};
use burn::backend::{Backend, backend_extension};
use burn::cubecl::prelude::KernelId;
use burn::cubecl::server::KernelArguments;
use burn::cubecl::{CubeCount, CubeDim};
use burn::tensor::{DType, Shape};

/// Most multiply-adds (`N·O·H·W·C·k²`) of a convolution the direct kernels take: a 3×3
/// with 128 inputs and 32 outputs over 8 samples of 32×32 (densenet121's first block at a
/// 128² input) is 302 M. Larger convolutions are arithmetic-bound, where Burn's tiled
/// matrix products are the better kernels. (Not tuned on a real GPU: none was lent. On
/// lavapipe, a CPU, the direct kernels are slow arithmetic — densenet121's first block
/// took ~170 ms per pass — yet a threshold of 2²⁴, which sends densenet121's first two
/// blocks back to Burn at 64², gave no faster step there: BENCHMARKS.md.)
pub const MAX_MACS: usize = 1 << 29;

/// A direct convolution without bias: `x [N, C, H, W]`, `weight [O, C, k, k]` (k odd,
/// padding `(k − 1) / 2`, stride 1) → `[N, O, H, W]`, with its gradients. Only CubeCL's
/// wgpu runtime has kernels: call it through [`super::conv2d`].
#[backend_extension(Autodiff, Cube, Fusion)]
pub trait ConvDirectBackend: Backend {
    /// The forward convolution.
    #[fusion(dtype = x, shape = Shape::new([x[0], weight[0], x[2], x[3]]))]
    fn conv_direct(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self>;

    /// The input gradient given the output gradient `grad [N, O, H, W]`.
    #[fusion(dtype = grad, shape = Shape::new([grad[0], weight[1], grad[2], grad[3]]))]
    fn conv_direct_x_backward(
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self>;

    /// The weight gradient given the input and the output gradient (`weight` gives the
    /// shape).
    #[fusion(dtype = x, shape = weight)]
    fn conv_direct_weight_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
}

const COMMON: &str = include_str!("../../../../kernels/conv_direct_common.wgsl");

/// The direct-convolution kernels, one type per pass so that launch logs and profiles name
/// the pass.
macro_rules! kernel {
    ($name:ident, $file:literal) => {
        struct $name;

        impl KernelSource for $name {
            fn source(&self) -> SourceTemplate {
                SourceTemplate::new(COMMON).add_template(include_str!($file))
            }

            fn id(&self) -> KernelId {
                KernelId::new::<Self>()
            }

            fn lang(&self) -> &'static str {
                "wgsl"
            }
        }
    };
}

kernel!(
    ConvDirectForwardKernel,
    "../../../../kernels/conv_direct_forward.wgsl"
);
kernel!(
    ConvDirectInputGradKernel,
    "../../../../kernels/conv_direct_input_grad.wgsl"
);
kernel!(
    ConvDirectWeightGradKernel,
    "../../../../kernels/conv_direct_weight_grad.wgsl"
);

/// Which pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pass {
    Forward,
    InputGrad,
    WeightGrad,
}

/// `[N, C, H, W, O, k]` of one convolution.
type Dims = [usize; 6];

/// Launches `pass` with `inputs` bound in the order its WGSL source declares them (made
/// contiguous: views cost no copy when they already are), a new output of `out_shape` and
/// the info buffer.
fn run(pass: Pass, inputs: [CubeTensor; 2], dims: Dims, out_shape: Shape) -> CubeTensor {
    let inputs = inputs.map(into_contiguous);
    let first = &inputs[0];
    assert!(
        inputs.iter().all(|t| t.dtype == DType::F32),
        "conv_direct: the WGSL kernels take f32"
    );
    let [n, c, h, w, o, k] = dims;
    assert!(
        k % 2 == 1 && n * c * h * w * o > 0,
        "conv_direct: expected an odd kernel and non-empty tensors, got {dims:?}"
    );
    let invocations = out_shape.num_elements();
    let groups = invocations.div_ceil(256);
    let row = groups.clamp(1, 65_535);
    let rows = groups.div_ceil(row).max(1);
    let to_u32 = |v: usize| u32::try_from(v).expect("conv_direct: size exceeds u32");
    let info: Vec<u32> = [n, c, h, w, o, k, (k - 1) / 2, invocations, row]
        .into_iter()
        .map(to_u32)
        .collect();
    let client = first.client.clone();
    let handle = client.empty(invocations * DType::F32.size());
    let out = CubeTensor::new_contiguous(
        client.clone(),
        first.device.clone(),
        out_shape,
        handle,
        DType::F32,
    );
    let info = client.create_from_slice(bytemuck::cast_slice(&info));
    let mut buffers: Vec<_> = inputs.iter().map(|t| t.handle.clone().binding()).collect();
    buffers.push(out.handle.clone().binding());
    buffers.push(info.binding());
    let dim = CubeDim::new_1d(256);
    client.launch(
        match pass {
            Pass::Forward => Box::new(SourceKernel::new(ConvDirectForwardKernel, dim)),
            Pass::InputGrad => Box::new(SourceKernel::new(ConvDirectInputGradKernel, dim)),
            Pass::WeightGrad => Box::new(SourceKernel::new(ConvDirectWeightGradKernel, dim)),
        },
        CubeCount::Static(row as u32, rows as u32, 1),
        KernelArguments::new().with_buffers(buffers),
    );
    out
}

fn dims4(t: &CubeTensor) -> [usize; 4] {
    let d = t.meta.shape().to_vec();
    [d[0], d[1], d[2], d[3]]
}

impl ConvDirectBackend for CubeBackend {
    fn conv_direct(x: CubeTensor, weight: CubeTensor) -> CubeTensor {
        let ([n, c, h, w], [o, _, k, _]) = (dims4(&x), dims4(&weight));
        let shape = Shape::new([n, o, h, w]);
        run(Pass::Forward, [x, weight], [n, c, h, w, o, k], shape)
    }

    fn conv_direct_x_backward(weight: CubeTensor, grad: CubeTensor) -> CubeTensor {
        let ([o, c, k, _], [n, _, h, w]) = (dims4(&weight), dims4(&grad));
        let shape = Shape::new([n, c, h, w]);
        run(Pass::InputGrad, [weight, grad], [n, c, h, w, o, k], shape)
    }

    fn conv_direct_weight_backward(
        x: CubeTensor,
        weight: CubeTensor,
        grad: CubeTensor,
    ) -> CubeTensor {
        let ([n, c, h, w], [o, _, k, _]) = (dims4(&x), dims4(&weight));
        let shape = Shape::new([o, c, k, k]);
        run(Pass::WeightGrad, [x, grad], [n, c, h, w, o, k], shape)
    }
}

impl<B: ConvDirectBackend, C: CheckpointStrategy> ConvDirectBackend for Autodiff<B, C> {
    fn conv_direct(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct ConvDirectBackward;

        impl<B: ConvDirectBackend> Backward<B, 2> for ConvDirectBackward {
            type State = (NodeId, NodeId);

            fn backward(
                self,
                ops: Ops<Self::State, 2>,
                grads: &mut Gradients,
                checkpointer: &mut Checkpointer,
            ) {
                let [node_x, node_weight] = ops.parents;
                let grad = grads.consume::<B>(&ops.node);
                let (x_state, weight_state) = ops.state;
                let x: FloatTensor<B> = checkpointer.retrieve_node_output(x_state);
                let weight: FloatTensor<B> = checkpointer.retrieve_node_output(weight_state);
                if let Some(node) = node_x {
                    let dx = B::conv_direct_x_backward(weight.clone(), grad.clone());
                    grads.register::<B>(node.id, dx);
                }
                if let Some(node) = node_weight {
                    let dw = B::conv_direct_weight_backward(x, weight, grad);
                    grads.register::<B>(node.id, dw);
                }
            }
        }

        match ConvDirectBackward
            .prepare::<C>([x.node(), weight.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let weight_state = prep.checkpoint(&weight);
                prep.finish(
                    (x_state, weight_state),
                    B::conv_direct(x.into_primitive(), weight.into_primitive()),
                )
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(B::conv_direct(x.into_primitive(), weight.into_primitive()))
            }
        }
    }

    fn conv_direct_x_backward(
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        // Gradients of gradients are not supported: the result is a constant.
        <FloatTensor<Self>>::new(B::conv_direct_x_backward(
            weight.into_primitive(),
            grad.into_primitive(),
        ))
    }

    fn conv_direct_weight_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        <FloatTensor<Self>>::new(B::conv_direct_weight_backward(
            x.into_primitive(),
            weight.into_primitive(),
            grad.into_primitive(),
        ))
    }
}
