//! Launch of `kernels/concat_pool_forward.wgsl`.

use super::kernel::{ConcatPoolKernel, Pass, dispatch};
use burn::backend::wgpu::{CubeTensor, SourceKernel, into_contiguous};
use burn::cubecl::CubeDim;
use burn::cubecl::server::KernelArguments;
use burn::tensor::Shape;

/// `[N, C, H, W]` → `[N, 2C]` (avg then max).
///
/// # Panics
/// If `x` is not 4-D or has an empty plane.
pub fn launch(x: CubeTensor) -> CubeTensor {
    let x = into_contiguous(x);
    let dims = x.meta.shape().to_vec();
    assert!(
        dims.len() == 4 && dims[2] * dims[3] > 0,
        "concat_pool: expected [N, C, H, W] with H·W > 0, got {dims:?}"
    );
    let (n, c, hw) = (dims[0], dims[1], dims[2] * dims[3]);
    let elem = x.dtype.size();
    let handle = x.client.empty(n * 2 * c * elem);
    let out = CubeTensor::new_contiguous(
        x.client.clone(),
        x.device.clone(),
        Shape::new([n, 2 * c]),
        handle,
        x.dtype,
    );
    let (layout, count, info) = dispatch(n * c, hw, c);
    let info = x.client.create_from_slice(bytemuck::cast_slice(&info));
    let kernel = ConcatPoolKernel::new(Pass::Forward, layout, x.dtype);
    x.client.launch(
        Box::new(SourceKernel::new(kernel, CubeDim::new_1d(256))),
        count,
        KernelArguments::new().with_buffers(vec![
            x.handle.clone().binding(),
            out.handle.clone().binding(),
            info.binding(),
        ]),
    );
    out
}
