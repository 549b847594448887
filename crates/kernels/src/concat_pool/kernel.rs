//! The WGSL sources and their dispatch geometry.

use burn::backend::wgpu::{CubeTensor, KernelSource, SourceKernel, SourceTemplate};
use burn::cubecl::prelude::KernelId;
use burn::cubecl::server::KernelArguments;
use burn::cubecl::{CubeCount, CubeDim};
use burn::tensor::{DType, Shape};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Workgroups per row of the dispatch grid (the WebGPU limit per dimension is 65,535);
/// more workgroups wrap onto further rows.
static GRID_ROW_LIMIT: AtomicUsize = AtomicUsize::new(65_535);

/// Lowers the number of workgroups per grid row (clamped to 1..=65,535), so tests can
/// exercise the wrapped 2-D grid on shapes small enough for a software adapter. It changes
/// only the dispatch geometry, never a result.
#[doc(hidden)]
pub fn set_grid_row_limit(limit: usize) {
    GRID_ROW_LIMIT.store(limit, Ordering::Relaxed);
}

const COMMON: &str = include_str!("../../../../kernels/concat_pool_common.wgsl");
const FORWARD: &str = include_str!("../../../../kernels/concat_pool_forward.wgsl");
const BACKWARD: &str = include_str!("../../../../kernels/concat_pool_backward.wgsl");
const FORWARD_SMALL: &str = include_str!("../../../../kernels/concat_pool_forward_small.wgsl");
const BACKWARD_SMALL: &str = include_str!("../../../../kernels/concat_pool_backward_small.wgsl");

/// Planes up to this many elements get one invocation each; larger ones a workgroup each.
pub(crate) const SMALL_PLANE: usize = 512;

/// How a plane is mapped onto the GPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Layout {
    /// One invocation per plane (H·W ≤ [`SMALL_PLANE`]).
    ThreadPerPlane,
    /// One workgroup of 256 per plane, reducing in shared memory.
    WorkgroupPerPlane,
}

impl Layout {
    pub(crate) fn for_plane(hw: usize) -> Self {
        if hw <= SMALL_PLANE {
            Self::ThreadPerPlane
        } else {
            Self::WorkgroupPerPlane
        }
    }
}

/// Which kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Pass {
    Forward,
    Backward,
}

/// A concat-pool kernel for one element type.
pub(crate) struct ConcatPoolKernel {
    pass: Pass,
    layout: Layout,
    dtype: DType,
}

impl ConcatPoolKernel {
    /// # Panics
    /// On an element type other than f32 / f16.
    pub(crate) fn new(pass: Pass, layout: Layout, dtype: DType) -> Self {
        assert!(
            matches!(dtype, DType::F32 | DType::F16),
            "concat_pool: fused kernel supports f32 and f16, got {dtype:?}"
        );
        Self {
            pass,
            layout,
            dtype,
        }
    }
}

impl KernelSource for ConcatPoolKernel {
    fn source(&self) -> SourceTemplate {
        let body = match (self.pass, self.layout) {
            (Pass::Forward, Layout::WorkgroupPerPlane) => FORWARD,
            (Pass::Backward, Layout::WorkgroupPerPlane) => BACKWARD,
            (Pass::Forward, Layout::ThreadPerPlane) => FORWARD_SMALL,
            (Pass::Backward, Layout::ThreadPerPlane) => BACKWARD_SMALL,
        };
        let (elem, header) = match self.dtype {
            DType::F16 => ("f16", "enable f16;"),
            _ => ("f32", ""),
        };
        SourceTemplate::new(COMMON)
            .add_template(body)
            .register("elem", elem)
            .register("header", header)
    }

    fn id(&self) -> KernelId {
        KernelId::new::<Self>().info((self.pass, self.layout, self.dtype))
    }

    fn lang(&self) -> &'static str {
        "wgsl"
    }
}

/// The layout for planes of `hw` elements, the workgroups for `planes` planes (over a 2-D
/// grid past 65,535) and the info buffer contents `[planes, hw, channels, workgroups per
/// row]`.
fn dispatch(planes: usize, hw: usize, channels: usize) -> (Layout, CubeCount, [u32; 4]) {
    let max = GRID_ROW_LIMIT.load(Ordering::Relaxed).clamp(1, 65_535);
    let layout = Layout::for_plane(hw);
    let groups = match layout {
        Layout::ThreadPerPlane => planes.div_ceil(256),
        Layout::WorkgroupPerPlane => planes,
    };
    let x = groups.clamp(1, max);
    let y = groups.div_ceil(x).max(1);
    let to_u32 = |v: usize| u32::try_from(v).expect("concat_pool: size exceeds u32");
    (
        layout,
        CubeCount::Static(x as u32, y as u32, 1),
        [to_u32(planes), to_u32(hw), to_u32(channels), x as u32],
    )
}

/// Launches `pass` over `planes` planes of `hw` elements (`channels` per image): binds the
/// contiguous `inputs` (x first), a new contiguous output of `out_shape` and the info
/// buffer, in that order, as the WGSL sources declare them.
pub(crate) fn run(
    pass: Pass,
    inputs: &[&CubeTensor],
    out_shape: Shape,
    planes: usize,
    hw: usize,
    channels: usize,
) -> CubeTensor {
    let x = inputs[0];
    let handle = x.client.empty(out_shape.num_elements() * x.dtype.size());
    let out = CubeTensor::new_contiguous(
        x.client.clone(),
        x.device.clone(),
        out_shape,
        handle,
        x.dtype,
    );
    let (layout, count, info) = dispatch(planes, hw, channels);
    let info = x.client.create_from_slice(bytemuck::cast_slice(&info));
    let mut buffers: Vec<_> = inputs.iter().map(|t| t.handle.clone().binding()).collect();
    buffers.push(out.handle.clone().binding());
    buffers.push(info.binding());
    let kernel = ConcatPoolKernel::new(pass, layout, x.dtype);
    x.client.launch(
        Box::new(SourceKernel::new(kernel, CubeDim::new_1d(256))),
        count,
        KernelArguments::new().with_buffers(buffers),
    );
    out
}
