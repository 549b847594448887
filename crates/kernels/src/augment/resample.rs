//! `kernels/eval_resample.wgsl`: the eval transform (Pillow's antialiased bilinear resize,
//! center crop, normalise) on the device, from taps the host computes.

use super::AugmentBackend;
use super::{Normalize, PackedImages, ResidentImages};
use crate::transfer::upload;
use burn::backend::Dispatch;
use burn::backend::wgpu::{
    CubeTensor, KernelSource, SourceKernel, SourceTemplate, into_contiguous,
};
use burn::cubecl::prelude::KernelId;
use burn::cubecl::server::KernelArguments;
use burn::cubecl::{CubeCount, CubeDim};
use burn::tensor::{DType, Device, Int, Shape, Tensor, TensorData};

const SOURCE: &str = include_str!("../../../../kernels/eval_resample.wgsl");

/// One output axis of one image: for each of the `S` output pixels, the first source index
/// and its fixed-point taps (Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc`, 22
/// fractional bits); no taps = a pixel of the crop's zero padding.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AxisTaps {
    /// Taps stored per output pixel (the longest run).
    pub ksize: usize,
    /// Per output pixel: first source index and number of taps (≤ `ksize`).
    pub bounds: Vec<(u32, u32)>,
    /// `ksize` taps per output pixel (the first `n` used).
    pub weights: Vec<i32>,
}

/// The eval transform of one image: its columns' and rows' taps, and whether to read the
/// image mirrored (test-time augmentation).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EvalTaps {
    /// Output columns → source columns (of the unmirrored image's geometry).
    pub columns: AxisTaps,
    /// Output rows → source rows.
    pub rows: AxisTaps,
    /// Read source column `w − 1 − x` for `x`.
    pub flip: bool,
}

struct EvalResampleKernel;

impl KernelSource for EvalResampleKernel {
    fn source(&self) -> SourceTemplate {
        SourceTemplate::new(SOURCE)
    }

    fn id(&self) -> KernelId {
        KernelId::new::<Self>()
    }

    fn lang(&self) -> &'static str {
        "wgsl"
    }
}

/// The kernel's info and taps buffers.
fn pack(images: &PackedImages, taps: &[EvalTaps], size: usize) -> (Vec<u32>, Vec<i32>) {
    let to_u32 = |v: usize| u32::try_from(v).expect("eval resample: batch exceeds u32 indexing");
    let mut info = vec![to_u32(taps.len()), to_u32(size), 0, 0];
    let mut buf = Vec::new();
    for (i, t) in taps.iter().enumerate() {
        let (w, _) = images.sizes[i];
        info.extend_from_slice(&[
            to_u32(images.offsets[i]),
            w,
            u32::from(t.flip),
            to_u32(buf.len()),
        ]);
        buf.extend_from_slice(&[t.columns.ksize as i32, t.rows.ksize as i32]);
        for axis in [&t.columns, &t.rows] {
            assert!(
                axis.bounds.len() == size && axis.weights.len() == size * axis.ksize,
                "eval resample: image {i}: {} bounds and {} taps for {size} pixels of {} taps",
                axis.bounds.len(),
                axis.weights.len(),
                axis.ksize
            );
            for (p, &(start, n)) in axis.bounds.iter().enumerate() {
                assert!(
                    n as usize <= axis.ksize,
                    "eval resample: image {i}: {n} taps > ksize"
                );
                buf.extend_from_slice(&[start as i32, n as i32]);
                buf.extend_from_slice(&axis.weights[p * axis.ksize..(p + 1) * axis.ksize]);
            }
        }
    }
    (info, buf)
}

/// `[N, 3, size, size]` f32 on the GPU `device`: every image resized, cropped and
/// normalised by its taps. `resident` holds `images.data` on the device already (a
/// `--cache device` batch); otherwise the bytes are uploaded. The taps must stay inside each
/// image (callers build them from the image's size).
///
/// # Panics
/// Off a GPU device, on taps that do not match `size`, `size` zero or above 4095, or more
/// than 65,535 images.
pub fn eval_resample(
    images: &PackedImages,
    resident: Option<&ResidentImages>,
    taps: &[EvalTaps],
    size: usize,
    norm: &Normalize,
    device: &Device,
) -> Tensor<4> {
    assert!(
        crate::transfer::is_gpu(device),
        "eval resample: needs a GPU (wgpu) device, got {device:?}"
    );
    let n = taps.len();
    assert!(
        n == images.len() && (1..=4095).contains(&size) && n <= 65_535,
        "eval resample: {n} tap sets for {} images at size {size} (1..=4095, at most 65,535 images)",
        images.len()
    );
    if n == 0 {
        return Tensor::zeros([0, 3, size, size], (device, DType::F32));
    }
    images.check_images();
    let src = match resident {
        Some(r) => {
            assert_eq!(
                r.bytes(),
                images.data.len(),
                "eval resample: resident bytes differ"
            );
            r.src.clone()
        }
        None => super::upload_src(images.data, device),
    };
    let (info, buf) = pack(images, taps, size);
    let (info_len, buf_len) = (info.len(), buf.len());
    let info = upload::<1, Int>(TensorData::new(info, [info_len]), (device, DType::U32));
    let buf = upload::<1, Int>(TensorData::new(buf, [buf_len]), (device, DType::I32));
    let mut p = norm.mean.to_vec();
    p.extend_from_slice(&norm.std);
    let prm = upload::<1, burn::tensor::Float>(TensorData::new(p, [6]), (device, DType::F32));
    Tensor::from_dispatch(<Dispatch as AugmentBackend>::eval_resample(
        src.into_dispatch(),
        info.into_dispatch(),
        buf.into_dispatch(),
        prm.into_dispatch(),
        n,
        size,
    ))
}

/// Launches the kernel: one invocation per output pixel, grid `(ceil(S²/256), N, 1)`.
pub(crate) fn launch(
    src: CubeTensor,
    info: CubeTensor,
    taps: CubeTensor,
    params: CubeTensor,
    n: usize,
    size: usize,
) -> CubeTensor {
    let [src, info, taps, params] = [src, info, taps, params].map(into_contiguous);
    let shape = Shape::new([n, 3, size, size]);
    let handle = src.client.empty(shape.num_elements() * DType::F32.size());
    let out = CubeTensor::new_contiguous(
        src.client.clone(),
        src.device.clone(),
        shape,
        handle,
        DType::F32,
    );
    let groups = (size * size).div_ceil(256);
    let buffers = vec![
        src.handle.clone().binding(),
        info.handle.clone().binding(),
        taps.handle.clone().binding(),
        params.handle.clone().binding(),
        out.handle.clone().binding(),
    ];
    src.client.launch(
        Box::new(SourceKernel::new(EvalResampleKernel, CubeDim::new_1d(256))),
        CubeCount::Static(groups as u32, n as u32, 1),
        KernelArguments::new().with_buffers(buffers),
    );
    out
}
