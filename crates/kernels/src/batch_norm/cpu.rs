//! The CPU BatchNorm (+ ReLU or SiLU) kernels on contiguous NCHW `f32` slices: per
//! channel, two passes forward (statistics, then normalise + activation) and two backward
//! (the two channel sums, then the input gradient), where Burn's default composes ~10
//! tensor ops (two of them transposing copies) each way.
//!
//! The normalisation is Burn's expression, `(x − mean) / sqrt(var + ε) · γ + β`, evaluated
//! the same way in the forward pass and when the backward pass recomputes the ReLU mask or
//! SiLU's derivative; statistics are summed in 16 f32 lanes per plane and f64 across lanes
//! and planes (mean first, then the biased variance about it). SiLU's `exp` is [`exp`], a
//! polynomial in f32 operations that the loops vectorise (`f32::exp` is a libm call per
//! element).

pub use super::Act;
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

/// `Σ f(a_i, b_i)` over one plane: f32 lanes, the lane totals added in f64 ([`plane_sums2`]
/// with one sum: the unused second is optimised away).
#[inline(always)]
fn plane_sum(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f64 {
    plane_sums2(a, b, |x, y| (f(x, y), 0.0)).0
}

/// `(Σ f(a_i, b_i).0, Σ f(a_i, b_i).1)` over one plane in one pass: each sum in f32 lanes
/// (independent accumulators the compiler keeps in SIMD registers), the lane totals and
/// the tail added in f64.
#[inline(always)]
fn plane_sums2(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> (f32, f32)) -> (f64, f64) {
    let mut acc = [[0f32; LANES]; 2];
    let (a_body, a_tail) = a.split_at(a.len() / LANES * LANES);
    let (b_body, b_tail) = b.split_at(a_body.len());
    for (ca, cb) in a_body.chunks_exact(LANES).zip(b_body.chunks_exact(LANES)) {
        for l in 0..LANES {
            let (u, v) = f(ca[l], cb[l]);
            acc[0][l] += u;
            acc[1][l] += v;
        }
    }
    let (mut t0, mut t1) = (0f64, 0f64);
    for (&x, &y) in a_tail.iter().zip(b_tail) {
        let (u, v) = f(x, y);
        t0 += u as f64;
        t1 += v as f64;
    }
    let total = |acc: &[f32; LANES]| acc.iter().map(|&v| v as f64).sum::<f64>();
    (total(&acc[0]) + t0, total(&acc[1]) + t1)
}

/// The normalised, affine value of one element (Burn's `batch_norm` expression).
#[inline(always)]
fn affine(x: f32, mean: f32, std: f32, gamma: f32, beta: f32) -> f32 {
    (x - mean) / std * gamma + beta
}

/// `eˣ` from f32 multiply-adds and an exponent built in the bits (Cephes' `expf`: `x =
/// k·ln 2 + r`, a degree-6 polynomial in `r`), so that loops calling it vectorise. Within
/// 2 ulp of `f32::exp` for `x` in `[-87, 88]`; `x` is clamped to that range (`e⁻⁸⁷ ≈
/// 1.6e-38`, `e⁸⁸ ≈ 1.7e38`), which changes nothing SiLU computes from it.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    let k = (x * std::f32::consts::LOG2_E + 0.5).floor();
    let r = x - k * 0.693_359_4 + k * 2.121_944_4e-4;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 0.5;
    let y = p * (r * r) + r + 1.0;
    // k ∈ [-126, 127]: a normal power of two.
    y * f32::from_bits(((k as i32 + 127) as u32) << 23)
}

/// `1 / (1 + e⁻ᶻ)`.
#[inline(always)]
fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + exp(-z))
}

/// The activation of the affine value `z`.
#[inline(always)]
fn activate(z: f32, act: Act) -> f32 {
    match act {
        Act::Identity => z,
        Act::Relu => z.max(0.0),
        Act::Silu => z * sigmoid(z),
    }
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

/// One plane of the forward pass, for one activation (a separate loop per activation, so
/// each vectorises without a branch per element).
#[inline(always)]
fn forward_plane_with(out: &mut [f32], src: &[f32], k: Channel, act: Act) {
    for (o, &v) in out.iter_mut().zip(src) {
        *o = activate(affine(v, k.mean, k.std, k.gamma, k.beta), act);
    }
}

crate::simd::simd_fn! {
    /// One plane of the forward pass.
    fn forward_plane(out: &mut [f32], src: &[f32], k: Channel, act: Act) {
        match act {
            Act::Identity => forward_plane_with(out, src, k, Act::Identity),
            Act::Relu => forward_plane_with(out, src, k, Act::Relu),
            Act::Silu => forward_plane_with(out, src, k, Act::Silu),
        }
    }
}

/// The output gradient through the activation, recomputed from the input: masked by the
/// ReLU, times SiLU's derivative `s·(1 + z·(1 − s))` (`s = sigmoid(z)`).
#[inline(always)]
fn through_act(k: Channel, v: f32, g: f32, act: Act) -> f32 {
    match act {
        Act::Identity => g,
        Act::Relu => {
            if affine(v, k.mean, k.std, k.gamma, k.beta) <= 0.0 {
                0.0
            } else {
                g
            }
        }
        Act::Silu => {
            let z = affine(v, k.mean, k.std, k.gamma, k.beta);
            let s = sigmoid(z);
            g * (s * (1.0 + z * (1.0 - s)))
        }
    }
}

/// [`plane_grad_sums`] for one activation.
#[inline(always)]
fn plane_grad_sums_with(xs: &[f32], gs: &[f32], k: Channel, act: Act) -> (f64, f64) {
    plane_sums2(xs, gs, |v, g| {
        let g = through_act(k, v, g, act);
        (g, g * ((v - k.mean) / k.std))
    })
}

crate::simd::simd_fn! {
    /// `(Σ g, Σ g·x̂)` over one plane, `g` the output gradient through the activation.
    fn plane_grad_sums(xs: &[f32], gs: &[f32], k: Channel, act: Act) -> (f64, f64) {
        match act {
            Act::Identity => plane_grad_sums_with(xs, gs, k, Act::Identity),
            Act::Relu => plane_grad_sums_with(xs, gs, k, Act::Relu),
            Act::Silu => plane_grad_sums_with(xs, gs, k, Act::Silu),
        }
    }
}

/// [`dx_plane`] for one activation.
#[inline(always)]
fn dx_plane_with(out: &mut [f32], xs: &[f32], gs: &[f32], k: Channel, act: Act, m: [f32; 2]) {
    let scale = k.gamma / k.std;
    let [mg, mgx] = m;
    for ((o, &v), &g) in out.iter_mut().zip(xs).zip(gs) {
        *o = scale * (through_act(k, v, g, act) - mg - (v - k.mean) / k.std * mgx);
    }
}

crate::simd::simd_fn! {
    /// One plane of the input gradient: `γ/σ · (g − mg − x̂·mgx)` (`mg`, `mgx` zero for
    /// running statistics), `g` the output gradient through the activation.
    fn dx_plane(out: &mut [f32], xs: &[f32], gs: &[f32], k: Channel, act: Act, mg: f32, mgx: f32) {
        let m = [mg, mgx];
        match act {
            Act::Identity => dx_plane_with(out, xs, gs, k, Act::Identity, m),
            Act::Relu => dx_plane_with(out, xs, gs, k, Act::Relu, m),
            Act::Silu => dx_plane_with(out, xs, gs, k, Act::Silu, m),
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

/// `y = (x − mean) / sqrt(var + ε) · γ + β`, then the activation.
pub fn forward(
    d: Dims,
    x: &[f32],
    stats: &[f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f64,
    act: Act,
) -> Vec<f32> {
    let mut y = vec![0.0; x.len()];
    y.par_chunks_mut(d.p)
        .with_min_len(d.planes_per_task())
        .enumerate()
        .for_each(|(idx, out)| {
            let k = channel(stats, gamma, beta, eps, idx % d.c);
            forward_plane(out, &x[idx * d.p..][..d.p], k, act);
        });
    y
}

/// The two channel sums of the backward pass of [`forward`] given the output gradient `dy`:
/// `[Σg_0 … Σg_C−1, Σg·x̂_0 … Σg·x̂_C−1]`, `g` the output gradient through the activation and
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
    act: Act,
) -> Vec<f32> {
    per_channel_pair(d, |c| {
        let k = channel(stats, gamma, beta, eps, c);
        let (mut sg, mut sgx) = (0.0f64, 0.0f64);
        for n in 0..d.n {
            let (a, b) = plane_grad_sums(d.plane(x, n, c), d.plane(dy, n, c), k, act);
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
/// through the activation. Otherwise (running statistics) `dx = γ/σ · g`.
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
    act: Act,
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
            dx_plane(out, xs, gs, k, act, mg, mgx);
        });
    dx
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`exp`] against libm's `f32::exp` (computed in f64 and rounded) over the range SiLU
    /// meets, every 1/1024.
    #[test]
    fn polynomial_exp_is_within_two_ulp_of_libm() {
        let mut worst = 0f64;
        for i in -87 * 1024..=88 * 1024 {
            let x = i as f32 / 1024.0;
            let want = (x as f64).exp();
            let got = exp(x) as f64;
            let ulp = (want as f32).abs() as f64 * f32::EPSILON as f64;
            worst = worst.max((got - want).abs() / ulp);
        }
        assert!(worst <= 2.0, "worst error {worst} ulp");
        // Clamped outside [-87, 88]: finite and positive, as SiLU needs.
        assert!(exp(-1000.0) > 0.0 && exp(1000.0).is_finite());
    }

    #[test]
    fn activations_by_hand() {
        let k = Channel {
            mean: 1.0,
            std: 2.0,
            gamma: 3.0,
            beta: -1.0,
        };
        // x = 3: z = (3 − 1) / 2 · 3 − 1 = 2; sigmoid(2) = 0.880797.
        let s = 1.0 / (1.0 + (-2f64).exp());
        let silu = 2.0 * s;
        let dsilu = s * (1.0 + 2.0 * (1.0 - s));
        let mut out = [0f32; 1];
        for (act, want) in [(Act::Identity, 2.0), (Act::Relu, 2.0), (Act::Silu, silu)] {
            forward_plane(&mut out, &[3.0], k, act);
            assert!((out[0] as f64 - want).abs() < 1e-6, "{act:?}: {}", out[0]);
        }
        // x = −1: z = −4, the ReLU is off.
        forward_plane(&mut out, &[-1.0], k, Act::Relu);
        assert_eq!(out[0], 0.0);
        assert_eq!(through_act(k, -1.0, 5.0, Act::Relu), 0.0);
        assert_eq!(through_act(k, 3.0, 5.0, Act::Relu), 5.0);
        let g = through_act(k, 3.0, 5.0, Act::Silu) as f64;
        assert!((g - 5.0 * dsilu).abs() < 1e-5, "SiLU gradient {g}");
    }
}
