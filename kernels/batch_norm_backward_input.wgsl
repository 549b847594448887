// BatchNorm backward, the input gradient: dx = γ / σ · (g − Σg/M − x̂ · Σg·x̂/M) with the
// batch's statistics (info[6] != 0), γ / σ · g with running ones; g the output gradient
// through the activation info[5] names (recomputed from x). `sums` as batch_norm_backward_sums.wgsl gives them.

@group(0) @binding(0) var<storage, read_write> x_buf: array<f32>;
@group(0) @binding(1) var<storage, read_write> grad: array<f32>;
@group(0) @binding(2) var<storage, read_write> stats: array<f32>;
@group(0) @binding(3) var<storage, read_write> gamma: array<f32>;
@group(0) @binding(4) var<storage, read_write> beta: array<f32>;
@group(0) @binding(5) var<storage, read_write> sums: array<f32>;
@group(0) @binding(6) var<storage, read_write> out_buf: array<f32>;
@group(0) @binding(7) var<storage, read_write> info: array<u32>;

@compute @workgroup_size(256, 1, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = workgroup_index(wid) * WG + lid;
    if (i >= info[0]) {
        return;
    }
    let channels = info[2];
    let d = decode(i);
    let c = d.y;
    let mean = stats[c];
    let sigma = sqrt(stats[channels + c] + epsilon());
    let v = x_buf[offset(d.x, c, d.z, X)];
    var g = grad[offset(d.x, c, d.z, GRAD)];
    if (info[5] != 0u) {
        g = through_activation(affine(v, mean, sigma, gamma[c], beta[c]), g);
    }
    var mg = 0.0;
    var mgx = 0.0;
    if (info[6] != 0u) {
        let m = f32(info[7]);
        mg = sums[c] / m;
        mgx = sums[channels + c] / m;
    }
    out_buf[i] = gamma[c] / sigma * (g - mg - (v - mean) / sigma * mgx);
}
