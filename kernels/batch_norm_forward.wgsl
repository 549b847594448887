// BatchNorm forward: out = (x − mean) / sqrt(var + ε) · γ + β, then the activation info[5] names
// (none, ReLU, SiLU).

@group(0) @binding(0) var<storage, read_write> x_buf: array<f32>;
@group(0) @binding(1) var<storage, read_write> stats: array<f32>;
@group(0) @binding(2) var<storage, read_write> gamma: array<f32>;
@group(0) @binding(3) var<storage, read_write> beta: array<f32>;
@group(0) @binding(4) var<storage, read_write> out_buf: array<f32>;
@group(0) @binding(5) var<storage, read_write> info: array<u32>;

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
    let sigma = sqrt(stats[channels + c] + epsilon());
    out_buf[i] = activate(affine(x_buf[offset(d.x, c, d.z, X)], stats[c], sigma, gamma[c], beta[c]));
}
