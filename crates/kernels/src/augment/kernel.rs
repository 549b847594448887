//! `kernels/augment.wgsl`: input packing and launch.

use super::{AugmentParams, Normalize, PackedImages, Padding};
use burn::backend::wgpu::{
    CubeTensor, KernelSource, SourceKernel, SourceTemplate, into_contiguous,
};
use burn::cubecl::prelude::KernelId;
use burn::cubecl::server::KernelArguments;
use burn::cubecl::{CubeCount, CubeDim};
use burn::tensor::{DType, Shape};

const SOURCE: &str = include_str!("../../../../kernels/augment.wgsl");

/// Floats before the first image's parameters (mean, std, 2 unused).
pub(crate) const PRM_HEADER: usize = 8;
/// Floats per image.
pub(crate) const PRM_STRIDE: usize = 20;
/// Words before the first image's info.
pub(crate) const INFO_HEADER: usize = 4;

/// The augmentation kernel for one output element type.
struct AugmentKernel {
    dtype: DType,
}

impl KernelSource for AugmentKernel {
    fn source(&self) -> SourceTemplate {
        let (elem, header) = match self.dtype {
            DType::F16 => ("f16", "enable f16;"),
            _ => ("f32", ""),
        };
        SourceTemplate::new(SOURCE)
            .register("elem", elem)
            .register("header", header)
    }

    fn id(&self) -> KernelId {
        KernelId::new::<Self>().info(self.dtype)
    }

    fn lang(&self) -> &'static str {
        "wgsl"
    }
}

/// The packed bytes as the kernel's source buffer: little-endian u32 words (at least one).
pub(crate) fn pack_src(data: &[u8]) -> Vec<u32> {
    let mut src = vec![0u32; data.len().div_ceil(4).max(1)];
    bytemuck::cast_slice_mut::<u32, u8>(&mut src)[..data.len()].copy_from_slice(data);
    if cfg!(target_endian = "big") {
        src.iter_mut().for_each(|w| *w = w.swap_bytes());
    }
    src
}

/// The kernel's per-image info and f32 parameters (layouts in `kernels/augment.wgsl`);
/// the byte offsets are `images.offsets`, into whichever buffer holds `images.data`.
/// `params` must have their gray means resolved.
pub(crate) fn pack(
    images: &PackedImages,
    params: &[AugmentParams],
    size: usize,
    norm: &Normalize,
) -> (Vec<u32>, Vec<f32>) {
    let to_u32 = |v: usize| u32::try_from(v).expect("augment: batch exceeds u32 indexing");
    let mut info = vec![to_u32(params.len()), to_u32(size), 0, 0];
    let mut prm = Vec::with_capacity(PRM_HEADER + PRM_STRIDE * params.len());
    prm.extend_from_slice(&norm.mean);
    prm.extend_from_slice(&norm.std);
    prm.extend_from_slice(&[0.0, 0.0]);
    for (i, p) in params.iter().enumerate() {
        let (w, h) = images.sizes[i];
        let [kx, ky] = p.taps;
        assert!(
            (1..=super::MAX_TAPS).contains(&kx) && (1..=super::MAX_TAPS).contains(&ky),
            "augment: taps {:?} outside 1..={}",
            p.taps,
            super::MAX_TAPS
        );
        let (reflect, fill) = match p.padding {
            Padding::Reflect => (1, [0.0; 3]),
            Padding::Fill(c) => (0, [c[0] as f32, c[1] as f32, c[2] as f32]),
        };
        // Pixel indices inside an image must fit u32 as well.
        to_u32(images.offsets[i] + (w as usize) * (h as usize) * 3);
        info.extend_from_slice(&[
            to_u32(images.offsets[i]),
            w,
            h,
            reflect | (kx << 8) | (ky << 16),
        ]);
        prm.extend_from_slice(&p.affine);
        prm.extend_from_slice(&[p.brightness, p.contrast, p.saturation, p.hue, p.gray_mean]);
        prm.extend_from_slice(&fill);
        // Mixing: own weight, partner, cut box (small integers, exact in f32).
        let (weight, partner, cut) = match p.mix {
            Some(m) => (m.weight, to_u32(m.partner), m.cut),
            None => (1.0, to_u32(i), [0; 4]),
        };
        prm.extend_from_slice(&[weight, partner as f32]);
        prm.extend(cut.map(|v| v as f32));
    }
    debug_assert_eq!(info.len(), INFO_HEADER + 4 * params.len());
    debug_assert_eq!(prm.len(), PRM_HEADER + PRM_STRIDE * params.len());
    (info, prm)
}

/// Launches the kernel: one invocation per output pixel, grid `(ceil(S²/256), N, 1)`.
pub(crate) fn launch(
    src: CubeTensor,
    info: CubeTensor,
    params: CubeTensor,
    n: usize,
    size: usize,
    dtype: DType,
) -> CubeTensor {
    assert!(
        matches!(src.dtype, DType::U32 | DType::I32) && info.dtype == src.dtype,
        "augment: packed inputs must be 32-bit integers, got {:?} / {:?}",
        src.dtype,
        info.dtype
    );
    assert!(
        params.dtype == DType::F32,
        "augment: parameters must be f32, got {:?}",
        params.dtype
    );
    let src = into_contiguous(src);
    let info = into_contiguous(info);
    let params = into_contiguous(params);
    let shape = Shape::new([n, 3, size, size]);
    let handle = src.client.empty(shape.num_elements() * dtype.size());
    let out =
        CubeTensor::new_contiguous(src.client.clone(), src.device.clone(), shape, handle, dtype);
    let groups = (size * size).div_ceil(256);
    assert!(
        groups <= 65_535 && n <= 65_535,
        "augment: grid ({groups}, {n}) exceeds 65,535 workgroups per dimension"
    );
    let buffers = vec![
        src.handle.clone().binding(),
        info.handle.clone().binding(),
        params.handle.clone().binding(),
        out.handle.clone().binding(),
    ];
    src.client.launch(
        Box::new(SourceKernel::new(
            AugmentKernel { dtype },
            CubeDim::new_1d(256),
        )),
        CubeCount::Static(groups as u32, n as u32, 1),
        KernelArguments::new().with_buffers(buffers),
    );
    out
}
