// BatchNorm backward, per channel: out [2C] = [Σg … , Σg·x̂ …], g the output gradient
// through the activation (recomputed from x: zero where the ReLU was off, times SiLU's
// derivative) and x̂ = (x − mean) / sqrt(var + ε).
// Σg is β's gradient, Σg·x̂ γ's.

@group(0) @binding(0) var<storage, read_write> x_buf: array<f32>;
@group(0) @binding(1) var<storage, read_write> grad: array<f32>;
@group(0) @binding(2) var<storage, read_write> stats: array<f32>;
@group(0) @binding(3) var<storage, read_write> gamma: array<f32>;
@group(0) @binding(4) var<storage, read_write> beta: array<f32>;
@group(0) @binding(5) var<storage, read_write> out_buf: array<f32>;
@group(0) @binding(6) var<storage, read_write> info: array<u32>;

@compute @workgroup_size(256, 1, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let channels = info[2];
    let m = info[7];
    let c = workgroup_index(wid);
    let valid = c < channels;
    var sg = 0.0;
    var sgx = 0.0;
    if (valid) {
        let mean = stats[c];
        let sigma = sqrt(stats[channels + c] + epsilon());
        let gm = gamma[c];
        let bt = beta[c];
        let xs = strides_at(X);
        let gs = strides_at(GRAD);
        var at = walk_from(lid);
        for (var i = lid; i < m; i = i + WG) {
            let v = x_buf[walk_offset(at, c, xs)];
            var g = grad[walk_offset(at, c, gs)];
            at = walk_next(at);
            if (info[5] != 0u) {
                g = through_activation(affine(v, mean, sigma, gm, bt), g);
            }
            sg = sg + g;
            sgx = sgx + g * ((v - mean) / sigma);
        }
    }
    s_a[lid] = sg;
    s_b[lid] = sgx;
    reduce_pair(lid);
    if (valid && lid == 0u) {
        out_buf[c] = s_a[0];
        out_buf[channels + c] = s_b[0];
    }
}
