//! The WGSL BatchNorm (+ ReLU) kernels (`kernels/batch_norm_*.wgsl`) on CubeCL's wgpu
//! runtime, `f32` only: statistics and the backward pass's two channel sums as one
//! workgroup per channel, the forward pass and the input gradient as one invocation per
//! element. Four dispatches per training layer (two forward, two backward) where Burn's
//! default composes about seventeen (reductions, element-wise chains, transposing copies).
//! `x` and the output gradient are read through their strides: Burn's convolutions return
//! channels-last views, and making them contiguous would cost a copy dispatch each.

use burn::backend::wgpu::{
    CubeTensor, KernelSource, SourceKernel, SourceTemplate, into_contiguous,
};
use burn::cubecl::prelude::KernelId;
use burn::cubecl::server::KernelArguments;
use burn::cubecl::{CubeCount, CubeDim};
use burn::tensor::{DType, Shape};

const COMMON: &str = include_str!("../../../../kernels/batch_norm_common.wgsl");

/// Which kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Pass {
    Stats,
    Forward,
    BackwardSums,
    BackwardInput,
}

impl Pass {
    fn source(self) -> &'static str {
        match self {
            Pass::Stats => include_str!("../../../../kernels/batch_norm_stats.wgsl"),
            Pass::Forward => include_str!("../../../../kernels/batch_norm_forward.wgsl"),
            Pass::BackwardSums => {
                include_str!("../../../../kernels/batch_norm_backward_sums.wgsl")
            }
            Pass::BackwardInput => {
                include_str!("../../../../kernels/batch_norm_backward_input.wgsl")
            }
        }
    }

    /// One workgroup per channel (a reduction) rather than one invocation per element.
    fn per_channel(self) -> bool {
        matches!(self, Pass::Stats | Pass::BackwardSums)
    }
}

/// The BatchNorm kernels (f32), one type per pass so that launch logs and
/// `bench train-step --profile-ops` name the pass.
macro_rules! kernel {
    ($name:ident, $pass:expr) => {
        struct $name;

        impl KernelSource for $name {
            fn source(&self) -> SourceTemplate {
                SourceTemplate::new(COMMON).add_template($pass.source())
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

kernel!(BatchNormStatsKernel, Pass::Stats);
kernel!(BatchNormForwardKernel, Pass::Forward);
kernel!(BatchNormBackwardSumsKernel, Pass::BackwardSums);
kernel!(BatchNormBackwardInputKernel, Pass::BackwardInput);

/// The scalar settings every kernel reads from its info buffer.
#[derive(Clone, Copy, Debug)]
pub(super) struct Settings {
    pub(super) epsilon: f64,
    /// [`super::Act::code`].
    pub(super) act: u8,
    pub(super) batch_stats: bool,
    /// The running statistics' momentum (the statistics pass).
    pub(super) momentum: f64,
}

/// Launches `pass`: binds the `inputs` in the order its WGSL source declares them (`x
/// [N, C, H, W]` first, then for the backward passes the output gradient, both read
/// through their strides; the rest — running statistics, statistics, γ, β, sums — made
/// contiguous), a new contiguous output (the [`super::StatsLayout`] for the statistics,
/// `[2C]` for the backward sums, `x`'s shape otherwise) and the info buffer.
pub(super) fn run(pass: Pass, inputs: Vec<CubeTensor>, s: Settings) -> CubeTensor {
    let strided = if pass == Pass::Stats || pass == Pass::Forward {
        1
    } else {
        2
    };
    let inputs: Vec<CubeTensor> = inputs
        .into_iter()
        .enumerate()
        .map(|(i, t)| if i < strided { t } else { into_contiguous(t) })
        .collect();
    let x = &inputs[0];
    assert_eq!(
        x.dtype,
        DType::F32,
        "batch_norm: the WGSL kernels take f32, got {:?}",
        x.dtype
    );
    let dims = x.meta.shape().to_vec();
    assert!(
        dims.len() == 4 && dims[0] * dims[2] * dims[3] > 0,
        "batch_norm: expected [N, C, H, W] with N·H·W > 0, got {dims:?}"
    );
    let (c, hw) = (dims[1], dims[2] * dims[3]);
    let layout = super::StatsLayout::of(c);
    let out_shape = if pass == Pass::Stats {
        Shape::new([layout.len])
    } else if pass.per_channel() {
        Shape::new([2 * c])
    } else {
        x.meta.shape().clone()
    };
    let elements = x.meta.shape().num_elements();
    let groups = if pass.per_channel() {
        c
    } else {
        elements.div_ceil(256)
    };
    let row = groups.clamp(1, 65_535);
    let rows = groups.div_ceil(row).max(1);
    let to_u32 = |v: usize| u32::try_from(v).expect("batch_norm: size exceeds u32");
    // The 4 strides, then 1 where they are plain NCHW (the kernels skip the index maths).
    let plain = [c * hw, hw, dims[3], 1];
    let strides = |t: &CubeTensor| -> [u32; 5] {
        let st = t.meta.strides();
        assert_eq!(t.meta.shape().to_vec(), dims, "batch_norm: shapes differ");
        let s = [0, 1, 2, 3].map(|d| st[d]);
        let is_plain = (0..4).all(|d| s[d] == plain[d] || dims[d] == 1);
        [s[0], s[1], s[2], s[3], usize::from(is_plain)].map(to_u32)
    };
    let grad_strides = inputs
        .get(1)
        .filter(|_| strided == 2)
        .map_or([0; 5], strides);
    let mut info = vec![
        to_u32(elements),
        to_u32(hw),
        to_u32(c),
        to_u32(row),
        (s.epsilon as f32).to_bits(),
        u32::from(s.act),
        u32::from(s.batch_stats),
        to_u32(elements / c),
        to_u32(dims[3]),
    ];
    info.extend(strides(x));
    info.extend(grad_strides);
    info.extend([
        (s.momentum as f32).to_bits(),
        ((1.0 - s.momentum) as f32).to_bits(),
        to_u32(layout.running_mean),
        to_u32(layout.running_var),
    ]);
    let client = x.client.clone();
    let handle = client.empty(out_shape.num_elements() * x.dtype.size());
    let out =
        CubeTensor::new_contiguous(client.clone(), x.device.clone(), out_shape, handle, x.dtype);
    let info = client.create_from_slice(bytemuck::cast_slice(&info));
    let mut buffers: Vec<_> = inputs.iter().map(|t| t.handle.clone().binding()).collect();
    buffers.push(out.handle.clone().binding());
    buffers.push(info.binding());
    client.launch(
        match pass {
            Pass::Stats => Box::new(SourceKernel::new(
                BatchNormStatsKernel,
                CubeDim::new_1d(256),
            )),
            Pass::Forward => Box::new(SourceKernel::new(
                BatchNormForwardKernel,
                CubeDim::new_1d(256),
            )),
            Pass::BackwardSums => Box::new(SourceKernel::new(
                BatchNormBackwardSumsKernel,
                CubeDim::new_1d(256),
            )),
            Pass::BackwardInput => Box::new(SourceKernel::new(
                BatchNormBackwardInputKernel,
                CubeDim::new_1d(256),
            )),
        },
        CubeCount::Static(row as u32, rows as u32, 1),
        KernelArguments::new().with_buffers(buffers),
    );
    out
}
