//! Launch of `kernels/concat_pool_backward.wgsl`.

use super::kernel::{ConcatPoolKernel, Pass, dispatch};
use burn::backend::wgpu::{CubeTensor, SourceKernel, into_contiguous};
use burn::cubecl::CubeDim;
use burn::cubecl::server::KernelArguments;

/// Input gradient: `x` `[N, C, H, W]`, `grad` `[N, 2C]` (avg then max) → `[N, C, H, W]`.
///
/// # Panics
/// If the shapes do not fit.
pub fn launch(x: CubeTensor, grad: CubeTensor) -> CubeTensor {
    let x = into_contiguous(x);
    let grad = into_contiguous(grad);
    let dims = x.meta.shape().to_vec();
    let gdims = grad.meta.shape().to_vec();
    assert!(
        dims.len() == 4 && gdims == [dims[0], 2 * dims[1]],
        "concat_pool backward: x {dims:?} and grad {gdims:?} do not fit"
    );
    let (n, c, hw) = (dims[0], dims[1], dims[2] * dims[3]);
    let handle = x.client.empty(n * c * hw * x.dtype.size());
    let out = CubeTensor::new_contiguous(
        x.client.clone(),
        x.device.clone(),
        x.meta.shape().clone(),
        handle,
        x.dtype,
    );
    let (layout, count, info) = dispatch(n * c, hw, c);
    let info = x.client.create_from_slice(bytemuck::cast_slice(&info));
    let kernel = ConcatPoolKernel::new(Pass::Backward, layout, x.dtype);
    x.client.launch(
        Box::new(SourceKernel::new(kernel, CubeDim::new_1d(256))),
        count,
        KernelArguments::new().with_buffers(vec![
            x.handle.clone().binding(),
            grad.handle.clone().binding(),
            out.handle.clone().binding(),
            info.binding(),
        ]),
    );
    out
}
