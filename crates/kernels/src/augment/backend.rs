//! The augmentation backend extension: the fused WGSL kernel on CubeCL's wgpu runtime (also
//! under Burn's fusion); autodiff devices run it untracked (augmentation needs no gradient).

use super::{kernel, resample};
use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::wgpu::CubeBackend;
use burn::backend::{Backend, backend_extension};
use burn::tensor::{DType, Shape};

/// Fused augmentation. Only the CubeCL (wgpu) runtime has the kernel: call it through
/// [`super::augment_batch`], which packs the inputs and routes other devices to the CPU
/// reference.
#[backend_extension(Autodiff, Cube, Fusion)]
pub trait AugmentBackend: Backend {
    /// `src`: the packed bytes as u32 words; `info`: `[N, S, 0, 0]` + per image
    /// `[offset, w, h, flags]` (u32); `params`: f32 header + per-image parameters (see
    /// `kernels/augment.wgsl`). Output `[n, 3, size, size]` of `dtype`.
    #[fusion(dtype = *dtype, shape = Shape::new([*n, 3, *size, *size]))]
    fn augment_fused(
        src: IntTensor<Self>,
        info: IntTensor<Self>,
        params: FloatTensor<Self>,
        n: usize,
        size: usize,
        dtype: DType,
    ) -> FloatTensor<Self>;

    /// The eval transform (`kernels/eval_resample.wgsl`): `src` as for
    /// [`augment_fused`](Self::augment_fused); `info`: `[N, S, 0, 0]` + per image
    /// `[offset, w, flip, taps base]`; `taps`: i32 fixed-point taps; `params`: mean, std.
    /// Output `[n, 3, size, size]` f32.
    #[fusion(dtype = DType::F32, shape = Shape::new([*n, 3, *size, *size]))]
    fn eval_resample(
        src: IntTensor<Self>,
        info: IntTensor<Self>,
        taps: IntTensor<Self>,
        params: FloatTensor<Self>,
        n: usize,
        size: usize,
    ) -> FloatTensor<Self>;
}

impl AugmentBackend for CubeBackend {
    fn augment_fused(
        src: IntTensor<Self>,
        info: IntTensor<Self>,
        params: FloatTensor<Self>,
        n: usize,
        size: usize,
        dtype: DType,
    ) -> FloatTensor<Self> {
        kernel::launch(src, info, params, n, size, dtype)
    }

    fn eval_resample(
        src: IntTensor<Self>,
        info: IntTensor<Self>,
        taps: IntTensor<Self>,
        params: FloatTensor<Self>,
        n: usize,
        size: usize,
    ) -> FloatTensor<Self> {
        resample::launch(src, info, taps, params, n, size)
    }
}

impl<B: AugmentBackend, C: CheckpointStrategy> AugmentBackend for Autodiff<B, C> {
    fn augment_fused(
        src: IntTensor<Self>,
        info: IntTensor<Self>,
        params: FloatTensor<Self>,
        n: usize,
        size: usize,
        dtype: DType,
    ) -> FloatTensor<Self> {
        // A constant: nothing upstream of the augmentation has a gradient.
        <FloatTensor<Self>>::new(B::augment_fused(
            src,
            info,
            params.into_primitive(),
            n,
            size,
            dtype,
        ))
    }

    fn eval_resample(
        src: IntTensor<Self>,
        info: IntTensor<Self>,
        taps: IntTensor<Self>,
        params: FloatTensor<Self>,
        n: usize,
        size: usize,
    ) -> FloatTensor<Self> {
        <FloatTensor<Self>>::new(B::eval_resample(
            src,
            info,
            taps,
            params.into_primitive(),
            n,
            size,
        ))
    }
}
