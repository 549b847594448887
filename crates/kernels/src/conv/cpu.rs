//! The CPU convolution kernels: im2col + one large `gemm` per chunk of samples, for the
//! forward pass and both gradients, on contiguous NCHW `f32` slices.
//!
//! Burn's Flex backend computes the weight gradient as a forward convolution with batch and
//! channels swapped (the output gradient becomes a `Ho×Wo` kernel: one small im2col + gemm
//! per input channel) and the input gradient as a transposed convolution (one gemm per
//! sample). Here every pass is one `gemm` over a whole chunk of samples at once, the shape
//! PyTorch's CPU convolutions use:
//!
//! - forward: `Y[O, S·P] = W[O, K] · col[K, S·P]`
//! - weight gradient: `dW[O, K] += dY[O, S·P] · col[K, S·P]ᵀ`
//! - input gradient: `dcol[K, S·P] = W[O, K]ᵀ · dY[O, S·P]`, then col2im into `dx`
//!
//! with `K = C/g · kh · kw` per group, `P = Ho · Wo` and `S` samples per chunk (as many as
//! fit in [`CHUNK_BYTES`]). Depthwise convolutions (one input and one output channel per
//! group) skip im2col and gemm: direct loops, parallel over channels. Stride-1 kernels
//! larger than 1×1 on large enough maps skip im2col too: one gemm per kernel tap on a
//! zero-padded copy of the input ([`super::shifted`]). Every scratch row has a stride off
//! large powers of two ([`row_stride`]).

use super::shifted;
use rayon::prelude::*;
use std::cell::RefCell;

/// Bytes of scratch (im2col columns + transposed output gradient) one chunk may use.
pub const CHUNK_BYTES: usize = 32 << 20;

/// Shapes and options of one 2-D convolution, all in elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Batch size.
    pub n: usize,
    /// Input channels.
    pub c: usize,
    /// Input height and width.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output channels.
    pub o: usize,
    /// Kernel height and width.
    pub kernel: [usize; 2],
    /// Stride.
    pub stride: [usize; 2],
    /// Zero padding before each spatial axis (the same after it).
    pub padding: [usize; 2],
    /// Dilation.
    pub dilation: [usize; 2],
    /// Channel groups.
    pub groups: usize,
}

impl Geometry {
    /// Output height and width, `None` when the kernel does not fit the padded input.
    pub fn output_size(&self) -> Option<[usize; 2]> {
        let axis = |i: usize, size: usize| {
            let reach = self.dilation[i] * (self.kernel[i] - 1) + 1;
            let padded = size + 2 * self.padding[i];
            (padded >= reach).then(|| (padded - reach) / self.stride[i] + 1)
        };
        Some([axis(0, self.h)?, axis(1, self.w)?])
    }

    pub(super) fn out(&self) -> [usize; 2] {
        self.output_size()
            .expect("conv geometry checked by the caller")
    }

    /// Input channels per group.
    fn cg(&self) -> usize {
        self.c / self.groups
    }

    /// Output channels per group.
    fn og(&self) -> usize {
        self.o / self.groups
    }

    /// Rows of the im2col matrix per group: `C/g · kh · kw`.
    fn kg(&self) -> usize {
        self.cg() * self.kernel[0] * self.kernel[1]
    }

    fn is_depthwise(&self) -> bool {
        self.cg() == 1 && self.og() == 1
    }

    /// The layer kind, for profiles: `conv 1×1`, `conv 3×3/2`, `depthwise 5×5`,
    /// `grouped 3×3`.
    pub fn kind(&self) -> String {
        let [kh, kw] = self.kernel;
        let family = if self.groups == 1 {
            "conv"
        } else if self.is_depthwise() {
            "depthwise"
        } else {
            "grouped"
        };
        let stride = match self.stride {
            [1, 1] => String::new(),
            [s, t] if s == t => format!("/{s}"),
            [s, t] => format!("/{s}×{t}"),
        };
        format!("{family} {kh}×{kw}{stride}")
    }

    /// Samples per chunk: as many as keep the columns and the transposed gradient within
    /// [`CHUNK_BYTES`], at least one.
    fn chunk(&self) -> usize {
        let [ho, wo] = self.out();
        let per_sample = (self.c * self.kernel[0] * self.kernel[1] + self.o) * ho * wo * 4;
        (CHUNK_BYTES / per_sample.max(1)).clamp(1, self.n.max(1))
    }
}

thread_local! {
    /// Reused im2col / transposed-gradient buffers: a fresh multi-megabyte `Vec` per call
    /// costs a page fault per 4 KiB on first touch.
    static SCRATCH: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// Runs `f` with two scratch slices of `a` and `b` elements (contents unspecified: every
/// user overwrites them before reading).
pub(super) fn with_scratch<R>(
    a: usize,
    b: usize,
    f: impl FnOnce(&mut [f32], &mut [f32]) -> R,
) -> R {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut bufs) => {
            let (x, y) = &mut *bufs;
            if x.len() < a {
                *x = vec![0.0; a];
            }
            if y.len() < b {
                *y = vec![0.0; b];
            }
            f(&mut x[..a], &mut y[..b])
        }
        // Re-entered on this thread (never in petal's own calls): plain buffers.
        Err(_) => f(&mut vec![0.0; a], &mut vec![0.0; b]),
    })
}

fn parallelism(m: usize, n: usize, k: usize) -> gemm::Parallelism {
    // gemm's own threads pay off only for a few hundred thousand multiply-adds.
    if m * n * k >= 1 << 18 && rayon::current_num_threads() > 1 {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    }
}

/// `dst[m, n] (+)= lhs[m, k] · rhs[k, n]`, each given by (slice, row stride, column
/// stride) in elements.
#[allow(clippy::too_many_arguments)]
pub(super) fn matmul(
    (m, n, k): (usize, usize, usize),
    dst: &mut [f32],
    (dst_rs, dst_cs): (usize, usize),
    accumulate: bool,
    lhs: &[f32],
    (lhs_rs, lhs_cs): (usize, usize),
    rhs: &[f32],
    (rhs_rs, rhs_cs): (usize, usize),
) {
    if m == 0 || n == 0 {
        return;
    }
    let last = |rs: usize, cs: usize, rows: usize, cols: usize| {
        (rows.max(1) - 1) * rs + (cols.max(1) - 1) * cs
    };
    assert!(last(dst_rs, dst_cs, m, n) < dst.len());
    if k > 0 {
        assert!(last(lhs_rs, lhs_cs, m, k) < lhs.len());
        assert!(last(rhs_rs, rhs_cs, k, n) < rhs.len());
    }
    // SAFETY: the asserts above keep every element gemm touches inside its slice, and `dst`
    // does not alias `lhs` or `rhs` (distinct borrows).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            dst_cs as isize,
            dst_rs as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_cs as isize,
            lhs_rs as isize,
            rhs.as_ptr(),
            rhs_cs as isize,
            rhs_rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism(m, n, k),
        );
    }
}

/// Output positions `o` whose input index `o·stride + offset` lies in `[0, size)`.
fn valid(out: usize, stride: usize, offset: isize, size: usize) -> std::ops::Range<usize> {
    let lo = if offset >= 0 {
        0
    } else {
        (-offset as usize).div_ceil(stride)
    };
    let hi = if (size as isize) <= offset {
        0
    } else {
        ((size as isize - offset) as usize).div_ceil(stride)
    };
    lo.min(out)..hi.min(out).max(lo.min(out))
}

/// The row stride for rows of `len` elements: `len` rounded up to an odd multiple of 16
/// (64 bytes). A stride that is a multiple of a large power of two maps a column's
/// elements onto a few cache sets, and gemm's packing of a transposed operand slowed
/// 3.5× on such strides (8 samples of 16×16: 2048).
pub(super) fn row_stride(len: usize) -> usize {
    (len.div_ceil(16) | 1) * 16
}

/// im2col of samples `n0..n0 + s` into `col[C·kh·kw, s·P]` with row stride `ld` (row `(c,
/// i, j)`, column `sample·P + oh·Wo + ow`).
fn im2col(g: &Geometry, x: &[f32], n0: usize, s: usize, ld: usize, col: &mut [f32]) {
    let [ho, wo] = g.out();
    let p = ho * wo;
    let [kh, kw] = g.kernel;
    let plane = g.h * g.w;
    col.par_chunks_mut(ld).enumerate().for_each(|(row, out)| {
        let c = row / (kh * kw);
        let (i, j) = ((row / kw) % kh, row % kw);
        let off_h = (i * g.dilation[0]) as isize - g.padding[0] as isize;
        let off_w = (j * g.dilation[1]) as isize - g.padding[1] as isize;
        let rows = valid(ho, g.stride[0], off_h, g.h);
        let cols = valid(wo, g.stride[1], off_w, g.w);
        for sample in 0..s {
            let src = &x[((n0 + sample) * g.c + c) * plane..][..plane];
            let dst = &mut out[sample * p..][..p];
            for oh in 0..ho {
                let line = &mut dst[oh * wo..][..wo];
                if !rows.contains(&oh) {
                    line.fill(0.0);
                    continue;
                }
                let ih = (oh * g.stride[0]) as isize + off_h;
                let src_line = &src[ih as usize * g.w..][..g.w];
                line[..cols.start].fill(0.0);
                line[cols.end..].fill(0.0);
                let first = (cols.start * g.stride[1]) as isize + off_w;
                if g.stride[1] == 1 {
                    let len = cols.len();
                    line[cols.clone()].copy_from_slice(&src_line[first as usize..][..len]);
                } else {
                    for (k, v) in line[cols.clone()].iter_mut().enumerate() {
                        *v = src_line[first as usize + k * g.stride[1]];
                    }
                }
            }
        }
    });
}

/// col2im: `dx[n0 + sample, c] += Σ_(i, j) dcol[(c, i, j), sample·P + …]` (row stride
/// `ld`) scattered back to the input positions. `dx` covers all samples; planes outside the
/// chunk are untouched.
fn col2im(g: &Geometry, dcol: &[f32], n0: usize, s: usize, ld: usize, dx: &mut [f32]) {
    let [ho, wo] = g.out();
    let (p, kk, plane, stride) = (ho * wo, g.kernel[0] * g.kernel[1], g.h * g.w, g.stride[1]);
    dx[n0 * g.c * plane..(n0 + s) * g.c * plane]
        .par_chunks_mut(plane)
        .enumerate()
        .for_each(|(idx, out)| {
            let (sample, c) = (idx / g.c, idx % g.c);
            tap_rows(g, |tap, o, i, len| {
                let src = &dcol[(c * kk + tap) * ld + sample * p + o..][..len];
                if stride == 1 {
                    add_assign(&mut out[i..i + len], src);
                } else {
                    for (t, v) in src.iter().enumerate() {
                        out[i + t * stride] += v;
                    }
                }
            });
        });
}

/// `[N, O, P]` samples `n0..n0 + s` → `[O, s·P]` with row stride `ld`.
fn gather_channels_first(
    src: &[f32],
    chans: usize,
    p: usize,
    (n0, s): (usize, usize),
    ld: usize,
    dst: &mut [f32],
) {
    dst.par_chunks_mut(ld).enumerate().for_each(|(ch, out)| {
        for sample in 0..s {
            out[sample * p..][..p].copy_from_slice(&src[((n0 + sample) * chans + ch) * p..][..p]);
        }
    });
}

/// `[O, s·P]` with row stride `ld` → samples `n0..n0 + s` of `[N, O, P]`, plus `bias[o]`.
#[allow(clippy::too_many_arguments)]
fn scatter_channels_first(
    src: &[f32],
    chans: usize,
    p: usize,
    (n0, s): (usize, usize),
    ld: usize,
    bias: Option<&[f32]>,
    dst: &mut [f32],
) {
    dst[n0 * chans * p..(n0 + s) * chans * p]
        .par_chunks_mut(p)
        .enumerate()
        .for_each(|(idx, out)| {
            let (sample, ch) = (idx / chans, idx % chans);
            let b = bias.map_or(0.0, |b| b[ch]);
            for (d, v) in out.iter_mut().zip(&src[ch * ld + sample * p..][..p]) {
                *d = v + b;
            }
        });
}

/// Calls `f(n0, s, ld, a, b)` for each chunk `n0..n0 + s` of at most `step` of `n`
/// samples, with scratch of `rows.0` and `rows.1` rows of `len(s)` elements at stride
/// `ld` ([`row_stride`]). Both CPU paths chunk their samples this way.
pub(super) fn chunked(
    (n, step): (usize, usize),
    (rows_a, rows_b): (usize, usize),
    len: impl Fn(usize) -> usize,
    mut f: impl FnMut(usize, usize, usize, &mut [f32], &mut [f32]),
) {
    let most = row_stride(len(step));
    with_scratch(rows_a * most, rows_b * most, |a, b| {
        for n0 in (0..n).step_by(step) {
            let s = step.min(n - n0);
            let ld = row_stride(len(s));
            f(n0, s, ld, &mut a[..rows_a * ld], &mut b[..rows_b * ld]);
        }
    });
}

/// [`chunked`] for im2col: `C·kh·kw` column rows and `O` rows of values, each `s·P`
/// elements.
fn for_chunks(g: &Geometry, f: impl FnMut(usize, usize, usize, &mut [f32], &mut [f32])) {
    let [ho, wo] = g.out();
    let p = ho * wo;
    chunked((g.n, g.chunk()), (g.groups * g.kg(), g.o), |s| s * p, f);
}

/// The forward convolution: `x [N, C, H, W]`, `weight [O, C/g, kh, kw]`, `bias [O]` →
/// `[N, O, Ho, Wo]`.
pub fn forward(g: &Geometry, x: &[f32], weight: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    let [ho, wo] = g.out();
    let p = ho * wo;
    let mut y = vec![0.0; g.n * g.o * p];
    if g.is_depthwise() {
        depthwise_forward(g, x, weight, bias, &mut y);
        return y;
    }
    if shifted::serves(g) {
        shifted::forward(g, x, weight, bias, None, &mut y);
        return y;
    }
    im2col_forward(g, x, weight, bias, &mut y);
    y
}

/// [`forward`] by im2col + gemm into `y` (zeroed, `[N, O, Ho, Wo]`).
pub(super) fn im2col_forward(
    g: &Geometry,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
) {
    let p = {
        let [ho, wo] = g.out();
        ho * wo
    };
    let (kg, og) = (g.kg(), g.og());
    for_chunks(g, |n0, s, ld, col, yt| {
        let sp = s * p;
        im2col(g, x, n0, s, ld, col);
        for gi in 0..g.groups {
            // Y_g[og, sp] = W_g[og, kg] · col_g[kg, sp]
            let w = &weight[gi * og * kg..];
            let dst = &mut yt[gi * og * ld..];
            matmul(
                (og, sp, kg),
                dst,
                (ld, 1),
                false,
                w,
                (kg, 1),
                &col[gi * kg * ld..],
                (ld, 1),
            );
        }
        scatter_channels_first(yt, g.o, p, (n0, s), ld, bias, y);
    });
}

/// The weight gradient `[O, C/g, kh, kw]` given the input and the output gradient `dy
/// [N, O, Ho, Wo]`.
pub fn weight_grad(g: &Geometry, x: &[f32], dy: &[f32]) -> Vec<f32> {
    let mut dw = vec![0.0; g.o * g.kg()];
    if g.is_depthwise() {
        depthwise_weight_grad(g, x, dy, &mut dw);
        return dw;
    }
    if shifted::serves(g) {
        shifted::weight_grad(g, x, dy, None, &mut dw);
        return dw;
    }
    im2col_weight_grad(g, x, dy, &mut dw);
    dw
}

/// [`weight_grad`] by im2col + gemm into `dw` (`[O, C/g, kh, kw]`).
pub(super) fn im2col_weight_grad(g: &Geometry, x: &[f32], dy: &[f32], dw: &mut [f32]) {
    let (kg, og) = (g.kg(), g.og());
    let [ho, wo] = g.out();
    let p = ho * wo;
    for_chunks(g, |n0, s, ld, col, dyt| {
        let sp = s * p;
        im2col(g, x, n0, s, ld, col);
        gather_channels_first(dy, g.o, p, (n0, s), ld, dyt);
        for gi in 0..g.groups {
            // dW_g[og, kg] += dY_g[og, sp] · col_g[kg, sp]ᵀ
            let (lhs, rhs) = (&dyt[gi * og * ld..], &col[gi * kg * ld..]);
            let dst = &mut dw[gi * og * kg..];
            matmul(
                (og, kg, sp),
                dst,
                (kg, 1),
                n0 > 0,
                lhs,
                (ld, 1),
                rhs,
                (1, ld),
            );
        }
    });
}

/// The input gradient `[N, C, H, W]` given the weight and the output gradient.
pub fn input_grad(g: &Geometry, weight: &[f32], dy: &[f32]) -> Vec<f32> {
    let mut dx = vec![0.0; g.n * g.c * g.h * g.w];
    if g.is_depthwise() {
        depthwise_input_grad(g, weight, dy, &mut dx);
        return dx;
    }
    if shifted::serves(g) {
        shifted::input_grad(g, weight, dy, None, &mut dx);
        return dx;
    }
    im2col_input_grad(g, weight, dy, &mut dx);
    dx
}

/// [`input_grad`] by gemm + col2im into `dx` (zeroed, `[N, C, H, W]`).
pub(super) fn im2col_input_grad(g: &Geometry, weight: &[f32], dy: &[f32], dx: &mut [f32]) {
    let (kg, og) = (g.kg(), g.og());
    let [ho, wo] = g.out();
    let p = ho * wo;
    for_chunks(g, |n0, s, ld, dcol, dyt| {
        let sp = s * p;
        gather_channels_first(dy, g.o, p, (n0, s), ld, dyt);
        for gi in 0..g.groups {
            // dcol_g[kg, sp] = W_g[og, kg]ᵀ · dY_g[og, sp]
            let (w, rhs) = (&weight[gi * og * kg..], &dyt[gi * og * ld..]);
            let dst = &mut dcol[gi * kg * ld..];
            matmul((kg, sp, og), dst, (ld, 1), false, w, (1, kg), rhs, (ld, 1));
        }
        col2im(g, dcol, n0, s, ld, dx);
    });
}

/// `dst += a · src` (vectorised where the caller is compiled for SIMD).
#[inline(always)]
fn axpy_here(dst: &mut [f32], a: f32, src: &[f32]) {
    for (d, &v) in dst.iter_mut().zip(src) {
        *d += a * v;
    }
}

/// `Σ a_i · b_i`: 16 f32 lanes, added in f64.
#[inline(always)]
fn dot_here(a: &[f32], b: &[f32]) -> f64 {
    const LANES: usize = 16;
    let mut acc = [0f32; LANES];
    let body = a.len().min(b.len()) / LANES * LANES;
    for (ca, cb) in a[..body]
        .chunks_exact(LANES)
        .zip(b[..body].chunks_exact(LANES))
    {
        for l in 0..LANES {
            acc[l] += ca[l] * cb[l];
        }
    }
    let tail: f64 = a[body..]
        .iter()
        .zip(&b[body..])
        .map(|(&x, &y)| (x * y) as f64)
        .sum();
    acc.iter().map(|&v| v as f64).sum::<f64>() + tail
}

crate::simd::simd_fn! {
    /// `dst += src`.
    fn add_assign(dst: &mut [f32], src: &[f32]) {
        for (d, &v) in dst.iter_mut().zip(src) {
            *d += v;
        }
    }
}

/// Walks one plane's kernel taps row by row: `f(tap, out_offset, in_offset, len)` for each
/// tap `(i, j)` and each output row with valid positions — output positions
/// `out_offset..+len` read input positions `in_offset, in_offset + stride, …` (depthwise
/// convolutions and col2im).
#[inline(always)]
fn tap_rows(g: &Geometry, mut f: impl FnMut(usize, usize, usize, usize)) {
    let [ho, wo] = g.out();
    let [kh, kw] = g.kernel;
    for i in 0..kh {
        let off_h = (i * g.dilation[0]) as isize - g.padding[0] as isize;
        let rows = valid(ho, g.stride[0], off_h, g.h);
        for j in 0..kw {
            let off_w = (j * g.dilation[1]) as isize - g.padding[1] as isize;
            let cols = valid(wo, g.stride[1], off_w, g.w);
            if cols.is_empty() {
                continue;
            }
            let first = ((cols.start * g.stride[1]) as isize + off_w) as usize;
            for oh in rows.clone() {
                let ih = ((oh * g.stride[0]) as isize + off_h) as usize;
                f(
                    i * kw + j,
                    oh * wo + cols.start,
                    ih * g.w + first,
                    cols.len(),
                );
            }
        }
    }
}

crate::simd::simd_fn! {
    /// One depthwise output plane: `out = b + Σ_taps w · src` (shifted).
    fn depthwise_forward_plane(g: &Geometry, out: &mut [f32], src: &[f32], w: &[f32], b: f32) {
        let s = g.stride[1];
        out.fill(b);
        tap_rows(g, |k, o, i, len| {
            if s == 1 {
                axpy_here(&mut out[o..o + len], w[k], &src[i..i + len]);
            } else {
                for t in 0..len {
                    out[o + t] += w[k] * src[i + t * s];
                }
            }
        });
    }
}

crate::simd::simd_fn! {
    /// One depthwise plane's weight-gradient terms: `acc[tap] += Σ grad · src` (shifted).
    fn depthwise_weight_plane(g: &Geometry, acc: &mut [f64], grad: &[f32], src: &[f32]) {
        let s = g.stride[1];
        tap_rows(g, |k, o, i, len| {
            acc[k] += if s == 1 {
                dot_here(&grad[o..o + len], &src[i..i + len])
            } else {
                (0..len)
                    .map(|t| (grad[o + t] * src[i + t * s]) as f64)
                    .sum()
            };
        });
    }
}

crate::simd::simd_fn! {
    /// One depthwise input-gradient plane: `out += Σ_taps w · grad` (shifted back).
    fn depthwise_input_plane(g: &Geometry, out: &mut [f32], grad: &[f32], w: &[f32]) {
        let s = g.stride[1];
        tap_rows(g, |k, o, i, len| {
            if s == 1 {
                axpy_here(&mut out[i..i + len], w[k], &grad[o..o + len]);
            } else {
                for t in 0..len {
                    out[i + t * s] += w[k] * grad[o + t];
                }
            }
        });
    }
}

/// Planes per rayon task: enough elements that a task outweighs its scheduling.
fn planes_per_task(plane: usize) -> usize {
    (8192 / plane.max(1)).max(1)
}

fn depthwise_forward(g: &Geometry, x: &[f32], weight: &[f32], bias: Option<&[f32]>, y: &mut [f32]) {
    let [ho, wo] = g.out();
    let (plane, kk) = (g.h * g.w, g.kernel[0] * g.kernel[1]);
    y.par_chunks_mut(ho * wo)
        .with_min_len(planes_per_task(plane))
        .enumerate()
        .for_each(|(idx, out)| {
            let c = idx % g.c;
            let (src, w) = (&x[idx * plane..][..plane], &weight[c * kk..][..kk]);
            depthwise_forward_plane(g, out, src, w, bias.map_or(0.0, |b| b[c]));
        });
}

fn depthwise_weight_grad(g: &Geometry, x: &[f32], dy: &[f32], dw: &mut [f32]) {
    let [ho, wo] = g.out();
    let (plane, p, kk) = (g.h * g.w, ho * wo, g.kernel[0] * g.kernel[1]);
    dw.par_chunks_mut(kk)
        .with_min_len(planes_per_task(plane * g.n))
        .enumerate()
        .for_each(|(c, out)| {
            let mut acc = vec![0f64; kk];
            for n in 0..g.n {
                let src = &x[(n * g.c + c) * plane..][..plane];
                let grad = &dy[(n * g.c + c) * p..][..p];
                depthwise_weight_plane(g, &mut acc, grad, src);
            }
            for (d, a) in out.iter_mut().zip(acc) {
                *d = a as f32;
            }
        });
}

fn depthwise_input_grad(g: &Geometry, weight: &[f32], dy: &[f32], dx: &mut [f32]) {
    let [ho, wo] = g.out();
    let (plane, p, kk) = (g.h * g.w, ho * wo, g.kernel[0] * g.kernel[1]);
    dx.par_chunks_mut(plane)
        .with_min_len(planes_per_task(plane))
        .enumerate()
        .for_each(|(idx, out)| {
            let c = idx % g.c;
            let (w, grad) = (&weight[c * kk..][..kk], &dy[idx * p..][..p]);
            depthwise_input_plane(g, out, grad, w);
        });
}
