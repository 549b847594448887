//! Stride-1 convolutions (3×3 and other kernels larger than 1×1, one group, no dilation)
//! as one `gemm` per kernel tap on a zero-padded copy of the input, without im2col.
//!
//! Pad every input plane to `Hp × Wp` (`Hp = H + 2·ph`, `Wp = W + 2·pw`) and lay a chunk's
//! samples end to end per channel: `xp[C, S·Hp·Wp]`. Index an output position by the
//! padded position of its top-left tap, `q = s·Hp·Wp + oh·Wp + ow` (the "wide" layout: the
//! columns `ow ≥ Wo` and rows `oh ≥ Ho` of each plane are positions no output has). Tap
//! `(i, j)` of output `q` then reads `xp[c, q + i·Wp + j]`, so each tap is a plain matrix
//! product with a shifted view of `xp`:
//!
//! - forward: `yw[O, q] = Σ_taps W[:, :, i, j] · xp[:, q + off]`
//! - weight gradient: `dW[:, :, i, j] = Σ_q dyw[O, q] · xp[C, q + off]ᵀ`, `dyw` the output
//!   gradient in the wide layout with zeros where no output is
//! - input gradient: `dxp[C, q] = Σ_taps W[:, :, i, j]ᵀ · dyw[O, q − off]`; a position
//!   `q − off` before the plane's outputs falls on the zeros of the previous plane's last
//!   rows or row's last columns (or on leading zeros for the first sample)
//!
//! with `off = i·Wp + j`. im2col writes and reads `kh·kw` copies of the input; this reads
//! the input `kh·kw` times in place, and the wide layout costs `Hp·Wp / (Ho·Wo)` in extra
//! multiply-adds (1.07× for a 3×3 on 56×56, 2.25× on 4×4), so [`serves`] keeps the small
//! maps, and layers with many output channels (where im2col's copies are a small part of
//! the work), on im2col. PyTorch's oneDNN direct convolutions avoid im2col too.

use super::cpu::{CHUNK_BYTES, Geometry, chunked, matmul};
use rayon::prelude::*;
use std::sync::atomic::{AtomicU8, Ordering};

/// Which path petal's CPU kernels take for the convolutions the shifted gemms can compute
/// ([`fits`]: one group, stride 1, no dilation, a kernel larger than 1×1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// The shifted gemms where they are worth it ([`serves`]), im2col + gemm elsewhere
    /// (the default).
    Auto,
    /// im2col + gemm for every convolution.
    Im2col,
    /// The shifted gemms for every convolution they can compute.
    Shifted,
}

static PATH: AtomicU8 = AtomicU8::new(Path::Auto as u8);

/// Sets the path for every thread. Benchmarks compare the paths in one process.
pub fn set_path(path: Path) {
    PATH.store(path as u8, Ordering::Relaxed);
}

/// The path set by [`set_path`].
pub fn path() -> Path {
    match PATH.load(Ordering::Relaxed) {
        x if x == Path::Im2col as u8 => Path::Im2col,
        x if x == Path::Shifted as u8 => Path::Shifted,
        _ => Path::Auto,
    }
}

/// Most extra multiply-adds the wide layout may cost, as `Hp·Wp / (Ho·Wo)`: a 3×3 with
/// padding 1 on 14×14 (1.31) and larger. On smaller maps the two paths timed alike.
const MAX_WASTE: f64 = 1.35;

/// Most output channels: im2col's copies cost `1/O` of its gemm's work, so with many output
/// channels the `kh·kw` passes over the output (and the wasted products) cost more than
/// they save. Timed per 3×3 layer of densenet121 and resnet50, batch 8 (BENCHMARKS.md):
/// at 32–128 outputs the shifted gemms are 1.0–2.0× faster, at 256–512 outputs
/// 1.2–1.6× slower.
const MAX_OUTPUTS: usize = 128;

/// Whether the shifted gemms serve `g` on the [`path`] set: with [`Path::Auto`], a
/// geometry they [`fit`](fits) with at most [`MAX_OUTPUTS`] output channels and a wide
/// layout within [`MAX_WASTE`].
pub fn serves(g: &Geometry) -> bool {
    match path() {
        Path::Auto => worth(g),
        Path::Im2col => false,
        Path::Shifted => fits(g),
    }
}

/// [`serves`] on [`Path::Auto`].
fn worth(g: &Geometry) -> bool {
    fits(g) && g.o <= MAX_OUTPUTS && {
        let [ho, wo] = g.out();
        let wide = Padded::of(g).plane() as f64;
        wide <= MAX_WASTE * (ho * wo) as f64
    }
}

/// Whether the shifted gemms can compute `g`: one group, stride 1, no dilation, a kernel
/// larger than 1×1.
pub fn fits(g: &Geometry) -> bool {
    g.groups == 1 && g.stride == [1, 1] && g.dilation == [1, 1] && g.kernel != [1, 1]
}

/// The padded plane and the chunking of one geometry.
struct Padded {
    hp: usize,
    wp: usize,
    /// Reach of the last tap, `(kh − 1)·Wp + kw − 1`.
    reach: usize,
}

impl Padded {
    fn of(g: &Geometry) -> Self {
        let (hp, wp) = (g.h + 2 * g.padding[0], g.w + 2 * g.padding[1]);
        Self {
            hp,
            wp,
            reach: (g.kernel[0] - 1) * wp + g.kernel[1] - 1,
        }
    }

    fn plane(&self) -> usize {
        self.hp * self.wp
    }

    /// Tap `(i, j)`'s shift `i·Wp + j`, in tap order (row-major over the kernel).
    fn offsets(&self, g: &Geometry) -> Vec<usize> {
        let [kh, kw] = g.kernel;
        (0..kh)
            .flat_map(|i| (0..kw).map(move |j| i * self.wp + j))
            .collect()
    }

    /// Samples per chunk: `(C + O)` wide planes each within `budget` bytes, at least one.
    fn chunk(&self, g: &Geometry, budget: usize) -> usize {
        let per_sample = (g.c + g.o) * self.plane() * 4;
        (budget / per_sample.max(1)).clamp(1, g.n.max(1))
    }
}

/// [`chunked`] for the shifted gemms: chunks of `step` samples (default: as many as fit
/// [`CHUNK_BYTES`]), `C` and `O` rows of `lead + s·Hp·Wp` elements.
fn for_chunks(
    g: &Geometry,
    p: &Padded,
    step: Option<usize>,
    lead: usize,
    f: impl FnMut(usize, usize, usize, &mut [f32], &mut [f32]),
) {
    let step = step.unwrap_or_else(|| p.chunk(g, CHUNK_BYTES));
    chunked((g.n, step), (g.c, g.o), |s| lead + s * p.plane(), f);
}

/// Packs samples `n0..n0 + s` of `src [N, chans, rows, cols]` into the rows of `dst`
/// (`chans` rows of stride `ld`): `lead` zeros, then each plane at row and column offset
/// `at` of a zeroed `Hp × Wp` plane.
#[allow(clippy::too_many_arguments)]
fn pack(
    src: &[f32],
    chans: usize,
    [rows, cols]: [usize; 2],
    p: &Padded,
    [top, left]: [usize; 2],
    lead: usize,
    (n0, s): (usize, usize),
    ld: usize,
    dst: &mut [f32],
) {
    let plane = p.plane();
    dst.par_chunks_mut(ld).enumerate().for_each(|(ch, out)| {
        out[..lead].fill(0.0);
        for (k, wide) in out[lead..lead + s * plane]
            .chunks_exact_mut(plane)
            .enumerate()
        {
            let from = &src[((n0 + k) * chans + ch) * rows * cols..][..rows * cols];
            wide[..top * p.wp].fill(0.0);
            for (r, line) in from.chunks_exact(cols).enumerate() {
                let to = &mut wide[(top + r) * p.wp..][..p.wp];
                to[..left].fill(0.0);
                to[left..left + cols].copy_from_slice(line);
                to[left + cols..].fill(0.0);
            }
            wide[(top + rows) * p.wp..].fill(0.0);
        }
    });
}

/// Unpacks the wide planes of `src` (`chans` rows of stride `ld`, `s` planes each) into
/// samples `n0..n0 + s` of `dst [N, chans, rows, cols]`, reading each plane from row and
/// column offset `at`, plus `bias[ch]`.
#[allow(clippy::too_many_arguments)]
fn unpack(
    src: &[f32],
    bias: Option<&[f32]>,
    chans: usize,
    [rows, cols]: [usize; 2],
    p: &Padded,
    [top, left]: [usize; 2],
    (n0, s): (usize, usize),
    ld: usize,
    dst: &mut [f32],
) {
    let plane = p.plane();
    dst[n0 * chans * rows * cols..(n0 + s) * chans * rows * cols]
        .par_chunks_mut(rows * cols)
        .enumerate()
        .for_each(|(idx, out)| {
            let (k, ch) = (idx / chans, idx % chans);
            let wide = &src[ch * ld + k * plane..][..plane];
            let b = bias.map_or(0.0, |b| b[ch]);
            for (r, line) in out.chunks_exact_mut(cols).enumerate() {
                let from = &wide[(top + r) * p.wp + left..][..cols];
                for (d, v) in line.iter_mut().zip(from) {
                    *d = v + b;
                }
            }
        });
}

/// The forward convolution into `y [N, O, Ho, Wo]` (see [`super::cpu::forward`]), in
/// chunks of at most `step` samples (default: as many as fit the scratch budget).
pub(super) fn forward(
    g: &Geometry,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    step: Option<usize>,
    y: &mut [f32],
) {
    let p = Padded::of(g);
    let out = g.out();
    let kk = g.kernel[0] * g.kernel[1];
    for_chunks(g, &p, step, 0, |n0, s, ld, xp, yw| {
        let sp = s * p.plane();
        pack(x, g.c, [g.h, g.w], &p, g.padding, 0, (n0, s), ld, xp);
        // Positions past `sp − reach` would read past the chunk; none is an output.
        let n = sp - p.reach;
        for (tap, off) in p.offsets(g).into_iter().enumerate() {
            // yw[O, q] (+)= W[:, :, tap][O, C] · xp[C, q + off]
            matmul(
                (g.o, n, g.c),
                yw,
                (ld, 1),
                tap > 0,
                &weight[tap..],
                (g.c * kk, kk),
                &xp[off..],
                (ld, 1),
            );
        }
        unpack(yw, bias, g.o, out, &p, [0, 0], (n0, s), ld, y);
    });
}

/// The weight gradient into `dw [O, C, kh, kw]` (see [`super::cpu::weight_grad`]), in
/// chunks of at most `step` samples.
pub(super) fn weight_grad(
    g: &Geometry,
    x: &[f32],
    dy: &[f32],
    step: Option<usize>,
    dw: &mut [f32],
) {
    let p = Padded::of(g);
    let kk = g.kernel[0] * g.kernel[1];
    let offsets = p.offsets(g);
    // One `[O, C]` block per tap, filled in parallel, then interleaved into `[O, C, kh, kw]`.
    let mut taps = vec![0.0f32; kk * g.o * g.c];
    for_chunks(g, &p, step, 0, |n0, s, ld, xp, dyw| {
        let sp = s * p.plane();
        pack(x, g.c, [g.h, g.w], &p, g.padding, 0, (n0, s), ld, xp);
        pack(dy, g.o, g.out(), &p, [0, 0], 0, (n0, s), ld, dyw);
        let n = sp - p.reach;
        let (xp, dyw) = (&*xp, &*dyw);
        taps.par_chunks_mut(g.o * g.c)
            .zip(&offsets)
            .for_each(|(dst, &off)| {
                // dW_tap[O, C] (+)= dyw[O, q] · xp[C, q + off]ᵀ
                matmul(
                    (g.o, g.c, n),
                    dst,
                    (g.c, 1),
                    n0 > 0,
                    dyw,
                    (ld, 1),
                    &xp[off..],
                    (1, ld),
                );
            });
    });
    dw.par_chunks_mut(kk).enumerate().for_each(|(oc, out)| {
        for (tap, v) in out.iter_mut().enumerate() {
            *v = taps[tap * g.o * g.c + oc];
        }
    });
}

/// The input gradient into `dx [N, C, H, W]` (see [`super::cpu::input_grad`]), in chunks
/// of at most `step` samples.
pub(super) fn input_grad(
    g: &Geometry,
    weight: &[f32],
    dy: &[f32],
    step: Option<usize>,
    dx: &mut [f32],
) {
    let p = Padded::of(g);
    let kk = g.kernel[0] * g.kernel[1];
    // `dyz` leads with `reach` zeros, so that `q − off` never goes below its start.
    let lead = p.reach;
    for_chunks(g, &p, step, lead, |n0, s, ld, dxp, dyz| {
        let sp = s * p.plane();
        pack(dy, g.o, g.out(), &p, [0, 0], lead, (n0, s), ld, dyz);
        for (tap, off) in p.offsets(g).into_iter().enumerate() {
            // dxp[C, q] (+)= W[:, :, tap]ᵀ[C, O] · dyz[O, lead + q − off]
            matmul(
                (g.c, sp, g.o),
                dxp,
                (ld, 1),
                tap > 0,
                &weight[tap..],
                (kk, g.c * kk),
                &dyz[lead - off..],
                (ld, 1),
            );
        }
        unpack(dxp, None, g.c, [g.h, g.w], &p, g.padding, (n0, s), ld, dx);
    });
}

#[cfg(test)]
mod tests {
    use super::super::cpu;
    use super::*;

    fn noise(len: usize, seed: u64) -> Vec<f32> {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
            })
            .collect()
    }

    fn rel(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
        a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
    }

    fn geometry(
        [n, c, h, w]: [usize; 4],
        o: usize,
        kernel: [usize; 2],
        padding: [usize; 2],
    ) -> Geometry {
        Geometry {
            n,
            c,
            h,
            w,
            o,
            kernel,
            stride: [1, 1],
            padding,
            dilation: [1, 1],
            groups: 1,
        }
    }

    /// The shifted path against im2col + gemm (itself tested against Burn's convolution),
    /// forward and both gradients, one sample per chunk and the whole batch in one.
    #[test]
    fn shifted_gemms_match_im2col() {
        let cases = [
            geometry([3, 8, 9, 9], 5, [3, 3], [1, 1]),
            geometry([2, 5, 7, 11], 6, [3, 3], [0, 0]),
            geometry([2, 4, 12, 10], 3, [5, 5], [2, 2]),
            geometry([3, 6, 6, 8], 4, [1, 3], [0, 1]),
            geometry([2, 3, 5, 6], 7, [3, 2], [2, 0]),
            geometry([4, 2, 2, 2], 3, [3, 3], [1, 1]),
            geometry([2, 3, 4, 5], 2, [3, 3], [3, 2]),
        ];
        for g in cases {
            assert!(fits(&g));
            let [ho, wo] = g.out();
            let kk = g.kernel[0] * g.kernel[1];
            let x = noise(g.n * g.c * g.h * g.w, 1);
            let w = noise(g.o * g.c * kk, 2);
            let dy = noise(g.n * g.o * ho * wo, 3);
            let b = noise(g.o, 4);
            let mut want = [vec![0.0; y_len(&g)], vec![0.0; w.len()], vec![0.0; x.len()]];
            cpu::im2col_forward(&g, &x, &w, Some(&b), &mut want[0]);
            cpu::im2col_weight_grad(&g, &x, &dy, &mut want[1]);
            cpu::im2col_input_grad(&g, &w, &dy, &mut want[2]);
            for step in [Some(1), Some(2), None] {
                let mut got = [
                    vec![f32::NAN; want[0].len()],
                    vec![f32::NAN; w.len()],
                    vec![f32::NAN; x.len()],
                ];
                forward(&g, &x, &w, Some(&b), step, &mut got[0]);
                weight_grad(&g, &x, &dy, step, &mut got[1]);
                input_grad(&g, &w, &dy, step, &mut got[2]);
                for (what, (a, b)) in ["forward", "weight grad", "input grad"]
                    .iter()
                    .zip(got.iter().zip(&want))
                {
                    let err = rel(a, b);
                    assert!(
                        err <= 1e-5,
                        "{what} of {g:?} in chunks of {step:?}: {err:e}"
                    );
                }
            }
        }
    }

    fn y_len(g: &Geometry) -> usize {
        let [ho, wo] = g.out();
        g.n * g.o * ho * wo
    }

    #[test]
    fn small_maps_stay_on_im2col() {
        // 3×3 pad 1: 58²/56² = 1.07 takes the shifted path, 6²/4² = 2.25 does not, nor
        // 256 output channels.
        assert!(worth(&geometry([8, 128, 56, 56], 32, [3, 3], [1, 1])));
        assert!(!worth(&geometry([8, 128, 4, 4], 32, [3, 3], [1, 1])));
        assert!(!worth(&geometry([8, 256, 14, 14], 256, [3, 3], [1, 1])));
        let strided = Geometry {
            stride: [2, 2],
            ..geometry([8, 16, 32, 32], 16, [3, 3], [1, 1])
        };
        assert!(!worth(&strided));
    }
}
