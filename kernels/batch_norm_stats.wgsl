// BatchNorm statistics: out[0..2C] = [mean_0 … mean_C−1, var_0 … var_C−1] (biased
// variance), in two passes over the channel's values within one workgroup (mean, then
// Σ(x − mean)²); and the running statistics moved towards them, Burn's BatchNorm update
// r · (1 − m) + batch · m, at out[info[21] + c] (mean) and out[info[22] + c] (variance),
// f32(m) and f32(1 − m) in info[19] and info[20].

@group(0) @binding(0) var<storage, read_write> x_buf: array<f32>;
@group(0) @binding(1) var<storage, read_write> running_mean: array<f32>;
@group(0) @binding(2) var<storage, read_write> running_var: array<f32>;
@group(0) @binding(3) var<storage, read_write> out_buf: array<f32>;
@group(0) @binding(4) var<storage, read_write> info: array<u32>;

@compute @workgroup_size(256, 1, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let channels = info[2];
    let m = info[7];
    let c = workgroup_index(wid);
    let valid = c < channels;
    let xs = strides_at(X);
    var s = 0.0;
    if (valid) {
        var at = walk_from(lid);
        for (var i = lid; i < m; i = i + WG) {
            s = s + x_buf[walk_offset(at, c, xs)];
            at = walk_next(at);
        }
    }
    s_a[lid] = s;
    s_b[lid] = 0.0;
    reduce_pair(lid);
    let mean = s_a[0] / f32(m);
    workgroupBarrier();
    var q = 0.0;
    if (valid) {
        var at = walk_from(lid);
        for (var i = lid; i < m; i = i + WG) {
            let d = x_buf[walk_offset(at, c, xs)] - mean;
            q = q + d * d;
            at = walk_next(at);
        }
    }
    s_a[lid] = q;
    reduce_pair(lid);
    if (valid && lid == 0u) {
        let variance = s_a[0] / f32(m);
        out_buf[c] = mean;
        out_buf[channels + c] = variance;
        let momentum = bitcast<f32>(info[19]);
        let keep = bitcast<f32>(info[20]);
        out_buf[info[21] + c] = running_mean[c] * keep + mean * momentum;
        out_buf[info[22] + c] = running_var[c] * keep + variance * momentum;
    }
}
