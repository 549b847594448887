//! The CPU BatchNorm (+ ReLU) kernels on contiguous NCHW `f32` slices: per channel, two
//! passes forward (statistics, then normalise + activation) and two backward (the two
//! channel sums, then the input gradient), where Burn's default composes ~10 tensor ops
//! (two of them transposing copies) each way.
//!
//! The normalisation is Burn's expression, `(x − mean) / sqrt(var + ε) · γ + β`, evaluated
//! the same way in the forward pass and when the backward pass recomputes the ReLU mask;
//! statistics are summed in 16 f32 lanes per plane and f64 across lanes and planes (mean
//! first, then the biased variance about it).

use rayon::prelude::*;

/// `[N, C, P]` layout of one tensor (`P` = H·W).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dims {
    /// Batch size.
    pub n: usize,
    /// Channels.
    pub c: usize,
    /// Elements per plane.
    pub p: usize,
}

impl Dims {
    /// Planes (`N·C`) per rayon task: enough elements that a task outweighs its scheduling.
    fn planes_per_task(&self) -> usize {
        (16_384 / self.p.max(1)).max(1)
    }

    /// Channels per rayon task.
    fn channels_per_task(&self) -> usize {
        (16_384 / (self.n * self.p).max(1)).max(1)
    }

    fn plane<'a>(&self, t: &'a [f32], n: usize, c: usize) -> &'a [f32] {
        &t[(n * self.c + c) * self.p..][..self.p]
    }
}

/// Lanes of the per-plane partial sums: independent f32 accumulators the compiler keeps in
/// SIMD registers (one f64 chain per element would serialise on the add latency).
const LANES: usize = 16;

/// `Σ f(a_i, b_i)` over one plane: f32 lanes, the lane totals added in f64.
#[inline(always)]
fn plane_sum(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f64 {
    let mut acc = [0f32; LANES];
    let (a_body, a_tail) = a.split_at(a.len() / LANES * LANES);
    let (b_body, b_tail) = b.split_at(a_body.len());
    for (ca, cb) in a_body.chunks_exact(LANES).zip(b_body.chunks_exact(LANES)) {
        for l in 0..LANES {
            acc[l] += f(ca[l], cb[l]);
        }
    }
    let tail: f64 = a_tail
        .iter()
        .zip(b_tail)
        .map(|(&x, &y)| f(x, y) as f64)
        .sum();
    acc.iter().map(|&v| v as f64).sum::<f64>() + tail
}

/// The normalised, affine value of one element (Burn's `batch_norm` expression).
#[inline(always)]
fn affine(x: f32, mean: f32, std: f32, gamma: f32, beta: f32) -> f32 {
    (x - mean) / std * gamma + beta
}

/// Per-channel parameters the passes share.
#[derive(Clone, Copy)]
struct Channel {
    mean: f32,
    std: f32,
    gamma: f32,
    beta: f32,
}

fn channel(stats: &[f32], gamma: &[f32], beta: &[f32], eps: f64, c: usize) -> Channel {
    let ch = gamma.len();
    Channel {
        mean: stats[c],
        std: (stats[ch + c] as f64 + eps).sqrt() as f32,
        gamma: gamma[c],
        beta: beta[c],
    }
}

crate::simd::simd_fn! {
    /// `(Σ x, Σ (x − m)²)` of one plane (the second only when `m` is given).
    fn plane_moments(p: &[f32], m: Option<f32>) -> f64 {
        match m {
            None => plane_sum(p, p, |v, _| v),
            Some(m) => plane_sum(p, p, |v, _| (v - m) * (v - m)),
        }
    }
}

crate::simd::simd_fn! {
    /// One plane of the forward pass.
    fn forward_plane(out: &mut [f32], src: &[f32], k: Channel, relu: bool) {
        if relu {
            for (o, &v) in out.iter_mut().zip(src) {
                *o = affine(v, k.mean, k.std, k.gamma, k.beta).max(0.0);
            }
        } else {
            for (o, &v) in out.iter_mut().zip(src) {
                *o = affine(v, k.mean, k.std, k.gamma, k.beta);
            }
        }
    }
}

/// The output gradient masked by the ReLU (recomputed from the input).
#[inline(always)]
fn masked(k: Channel, v: f32, g: f32, relu: bool) -> f32 {
    if relu && affine(v, k.mean, k.std, k.gamma, k.beta) <= 0.0 {
        0.0
    } else {
        g
    }
}

crate::simd::simd_fn! {
    /// `(Σ g, Σ g·x̂)` over one plane, `g` the masked output gradient.
    fn plane_grad_sums(xs: &[f32], gs: &[f32], k: Channel, relu: bool) -> (f64, f64) {
        if relu {
            (
                plane_sum(xs, gs, |v, g| masked(k, v, g, true)),
                plane_sum(xs, gs, |v, g| masked(k, v, g, true) * ((v - k.mean) / k.std)),
            )
        } else {
            (
                plane_sum(xs, gs, |_, g| g),
                plane_sum(xs, gs, |v, g| g * ((v - k.mean) / k.std)),
            )
        }
    }
}

crate::simd::simd_fn! {
    /// One plane of the input gradient: `γ/σ · (g − mg − x̂·mgx)` (`mg`, `mgx` zero for
    /// running statistics).
    fn dx_plane(out: &mut [f32], xs: &[f32], gs: &[f32], k: Channel, relu: bool, mg: f32, mgx: f32) {
        let scale = k.gamma / k.std;
        if relu {
            for ((o, &v), &g) in out.iter_mut().zip(xs).zip(gs) {
                *o = scale * (masked(k, v, g, true) - mg - (v - k.mean) / k.std * mgx);
            }
        } else {
            for ((o, &v), &g) in out.iter_mut().zip(xs).zip(gs) {
                *o = scale * (g - mg - (v - k.mean) / k.std * mgx);
            }
        }
    }
}

/// Per-channel mean and biased variance of `x`: `[mean_0, …, mean_C−1, var_0, …, var_C−1]`.
pub fn stats(d: Dims, x: &[f32]) -> Vec<f32> {
    let count = (d.n * d.p) as f64;
    per_channel_pair(d, |c| {
        let sum: f64 = (0..d.n)
            .map(|n| plane_moments(d.plane(x, n, c), None))
            .sum();
        let mean = sum / count;
        let m = Some(mean as f32);
        let sq: f64 = (0..d.n).map(|n| plane_moments(d.plane(x, n, c), m)).sum();
        (mean as f32, (sq / count) as f32)
    })
}

/// `f(c)` for every channel (in parallel), laid out as `[first_0 … first_C−1, second_0 …
/// second_C−1]`: the `[2C]` layout of the statistics and of the backward pass's sums.
fn per_channel_pair(d: Dims, f: impl Fn(usize) -> (f32, f32) + Sync + Send) -> Vec<f32> {
    let pairs: Vec<(f32, f32)> = (0..d.c)
        .into_par_iter()
        .with_min_len(d.channels_per_task())
        .map(f)
        .collect();
    pairs
        .iter()
        .map(|s| s.0)
        .chain(pairs.iter().map(|s| s.1))
        .collect()
}

/// `y = (x − mean) / sqrt(var + ε) · γ + β`, then `max(y, 0)` when `relu`.
pub fn forward(
    d: Dims,
    x: &[f32],
    stats: &[f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f64,
    relu: bool,
) -> Vec<f32> {
    let mut y = vec![0.0; x.len()];
    y.par_chunks_mut(d.p)
        .with_min_len(d.planes_per_task())
        .enumerate()
        .for_each(|(idx, out)| {
            let k = channel(stats, gamma, beta, eps, idx % d.c);
            forward_plane(out, &x[idx * d.p..][..d.p], k, relu);
        });
    y
}

/// The two channel sums of the backward pass of [`forward`] given the output gradient `dy`:
/// `[Σg_0 … Σg_C−1, Σg·x̂_0 … Σg·x̂_C−1]`, `g` the output gradient masked by the ReLU and
/// `x̂ = (x − mean)/σ`. They are β's and γ's gradients, and [`backward_input`] needs them.
#[allow(clippy::too_many_arguments)]
pub fn backward_sums(
    d: Dims,
    x: &[f32],
    dy: &[f32],
    stats: &[f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f64,
    relu: bool,
) -> Vec<f32> {
    per_channel_pair(d, |c| {
        let k = channel(stats, gamma, beta, eps, c);
        let (mut sg, mut sgx) = (0.0f64, 0.0f64);
        for n in 0..d.n {
            let (a, b) = plane_grad_sums(d.plane(x, n, c), d.plane(dy, n, c), k, relu);
            sg += a;
            sgx += b;
        }
        (sg as f32, sgx as f32)
    })
}

/// The input gradient of [`forward`] given the output gradient `dy` and the
/// [`backward_sums`].
///
/// `batch_stats`: the statistics were the batch's own (training), so `dx` includes their
/// dependence on `x`: `dx = γ/σ · (g − Σg/M − x̂·Σg·x̂/M)`, `g` the output gradient
/// masked by the ReLU. Otherwise (running statistics) `dx = γ/σ · g`.
#[allow(clippy::too_many_arguments)]
pub fn backward_input(
    d: Dims,
    x: &[f32],
    dy: &[f32],
    stats: &[f32],
    gamma: &[f32],
    beta: &[f32],
    sums: &[f32],
    eps: f64,
    relu: bool,
    batch_stats: bool,
) -> Vec<f32> {
    let m = (d.n * d.p) as f32;
    let mut dx = vec![0.0; x.len()];
    dx.par_chunks_mut(d.p)
        .with_min_len(d.planes_per_task())
        .enumerate()
        .for_each(|(idx, out)| {
            let c = idx % d.c;
            let k = channel(stats, gamma, beta, eps, c);
            let (mg, mgx) = if batch_stats {
                (sums[c] / m, sums[d.c + c] / m)
            } else {
                (0.0, 0.0)
            };
            let (xs, gs) = (&x[idx * d.p..][..d.p], &dy[idx * d.p..][..d.p]);
            dx_plane(out, xs, gs, k, relu, mg, mgx);
        });
    dx
}
